"""InstaRevive: one-step image restoration distilled from a flow teacher (`specs/instarevive.py`): see README.md in this folder."""
