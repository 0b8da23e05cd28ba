"""Neural network modules (Flax linen): mixed precision, ViT, text Transformer, two-tower model.

``MODELS`` maps a spec name to a module class: "vit", "text_transformer", "two_tower".
"""
from xmodal.registry import Registry

MODELS = Registry("model")

# Imported for their registrations; MODELS must exist first.
from xmodal.nn import text, two_tower, vit  # noqa: E402
from xmodal.nn.precision import Policy, dot_general_for, mixed_dot_general  # noqa: E402
from xmodal.nn.text import TextTransformer  # noqa: E402
from xmodal.nn.two_tower import TwoTower  # noqa: E402
from xmodal.nn.vit import ViT  # noqa: E402

__all__ = ["MODELS", "Policy", "TextTransformer", "TwoTower", "ViT", "dot_general_for",
           "mixed_dot_general", "text", "two_tower", "vit"]
