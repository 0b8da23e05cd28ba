"""Audio-text contrastive model (`specs/clap.py`): the scorer behind Fréchet distance and CLAPScore: see README.md in this folder."""
