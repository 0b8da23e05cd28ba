"""GQR (`specs/gqr.py`): see README.md in this folder."""
