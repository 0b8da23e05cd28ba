"""M3EL: multimodal entity linking (`specs/m3el.py`): see README.md in this folder."""
