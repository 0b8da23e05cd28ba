"""Using trained models outside training: ``Embedder`` (embed images/audio and texts, classify
zero-shot) and the ``--mode=embed`` / ``--mode=zeroshot`` commands built on it."""
from xmodal.inference.two_tower import Embedder

__all__ = ["Embedder"]
