"""Generic neural network modules (Flax linen): mixed-precision dots, attention and MLP blocks,
ViT, text Transformers and bag-of-words/n-gram towers, the two-tower model, CNN and audio
encoders, conv/res blocks, DiT and U-Net velocity networks, cross-modal fusion.

Each module registers its spec names in ``xmodal.core.registry.MODELS``; a system's own networks
live in its project folder (``xmodal/projects/<system>/``). ``presets`` names the tower sizes
the specs share.
"""
