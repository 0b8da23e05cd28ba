"""Neural network modules (Flax linen): mixed precision, ViT, text Transformer, two-tower model,
and every other module a spec can name.

``MODELS`` maps a spec name to a module class ("vit", "text_transformer", "two_tower", ...).
Every module in this package is imported, so adding a model is adding a file.
"""
from xmodal.registry import Registry, import_all

MODELS = Registry("model")

import_all(__name__, __path__)  # every module registers what it defines

from xmodal.nn.precision import Policy, dot_general_for, mixed_dot_general  # noqa: E402
from xmodal.nn.text import TextTransformer  # noqa: E402
from xmodal.nn.two_tower import TwoTower  # noqa: E402
from xmodal.nn.vit import ViT  # noqa: E402

__all__ = ["MODELS", "Policy", "TextTransformer", "TwoTower", "ViT", "dot_general_for",
           "mixed_dot_general"]
