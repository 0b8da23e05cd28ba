"""Unsupervised audio-visual lecture segmentation (seed system 17): TW-FINCH over clip
embeddings (``twfinch.py``)."""
