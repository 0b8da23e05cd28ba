"""LightCLIP (`specs/lightclip.py`): see README.md in this folder."""
