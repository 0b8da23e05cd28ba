"""IRRA (`specs/irra.py`): see README.md in this folder."""
