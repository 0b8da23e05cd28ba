"""Named tower sizes for specs: ``text_tower("small")`` is a ``text_transformer`` node and
``vit_tower("base")`` a ``vit`` one, plain dicts a spec sets as a model's towers
(``c.model.towers.text``, ``c.model.towers.image``; ``c.model.image`` for the image-text models
with fixed tower names).

A size is width, depth and heads, the same for both kinds of tower; whatever a spec changes
beyond that (``max_len``, ``patch_size``, ``vocab_size``) is a keyword override at its call
site, so the spec still shows how its towers differ from the preset. These are xmodal's own
sizes (what its specs train on emoji and short audio clips), not those of the ViT paper.
"""
from __future__ import annotations

from typing import Any

from xmodal.core.registry import SpecError

SIZES = {
    "tiny": dict(width=16, depth=1, num_heads=2),      # 2-step smoke tests
    # mini and small: runlocal sizes, minutes on a 2-core CPU
    "mini": dict(width=96, depth=2, num_heads=4),
    "small": dict(width=128, depth=3, num_heads=4),
    "medium": dict(width=384, depth=6, num_heads=6),
    "base": dict(width=512, depth=8, num_heads=8),
}


def _size(size: str) -> dict:
    if size not in SIZES:
        raise SpecError(f"tower size {size!r}; one of {', '.join(SIZES)}")
    return dict(SIZES[size])


def text_tower(size: str, **overrides: Any) -> dict:
    """A byte ``text_transformer`` of a named size, pooled at eos, over up to 48 tokens (the
    caption length most transforms cut to, ``max_text_len``)."""
    return dict(name="text_transformer", max_len=48, **_size(size), pool="eos") | overrides


def vit_tower(size: str, **overrides: Any) -> dict:
    """A ``vit`` of a named size with 8-pixel patches and mean pooling."""
    return dict(name="vit", patch_size=8, **_size(size), pool="gap") | overrides
