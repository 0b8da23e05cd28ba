"""CLIP and SigLIP (`specs/clip.py`, `specs/siglip.py`): see README.md in this folder."""
