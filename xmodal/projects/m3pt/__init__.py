"""M3PT: multi-modal POI tagging (`specs/m3pt.py`): see README.md in this folder."""
