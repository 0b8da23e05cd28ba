"""The restoration transform: a clean image, its fixed degradation and its caption.

    record -> {"image": uint8 [S, S, 3]    the clean image (Lanczos-resized to S)
               "lq": uint8 [S, S, 3]       its degradation (``degrade.degrade``) upsampled to S
                                           by bicubic interpolation: what the networks read
               "lq_small": uint8 [S/r, S/r, 3]   the degradation itself (r = ``scale``)
               "text": int32 [L]           the caption (``text_field``), byte tokens
               "label": int32              ``label_field``
               "dev_half": bool}           the record's half of a held-out split
                                           (``xmodal.evaluate.heldout``, keyed by ``half_field``:
                                           every skin tone of an emoji in one half)

The degradation is seeded by ``record[seed_field]`` (the emoji's name): the same record is
degraded the same way in every epoch and run, in training and in evaluation.
"""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from xmodal.core.registry import TRANSFORMS
from xmodal.evaluate import heldout
from xmodal.data.transforms.image_text import ImageTextTransform
from xmodal.projects.instarevive.degrade import degrade, record_seed, upsample


# The held-out emoji are cut into dev and test halves by sha1(HALF_SALT + base) (heldout.py
# says why the salt).
HALF_SALT = "restoration:"


class RestorationTransform(ImageTextTransform):
    def __init__(self, image_size: int, max_text_len: int, scale: int, seed: int,
                 text_field: str, label_field: str, seed_field: str, half_field: str):
        super().__init__(image_size, max_text_len, text_field=text_field, label_field=label_field)
        if not isinstance(scale, int) or scale < 1 or image_size % scale:
            raise ValueError(f"restoration scale must be a positive int dividing image_size "
                             f"{image_size}; got {scale!r}")
        self.scale, self.seed, self.seed_field = scale, int(seed), seed_field
        self.half_field = half_field

    def __repr__(self) -> str:
        return (f"RestorationTransform(image_size={self.image_size}, scale={self.scale}, "
                f"seed={self.seed}, text_field={self.text_field!r})")

    def map(self, record: Mapping[str, Any]) -> dict[str, np.ndarray]:
        out = super().map(record)
        if self.seed_field not in record:
            raise KeyError(f"restoration: record has no field {self.seed_field!r} to seed its "
                           f"degradation; fields: {', '.join(sorted(record))}")
        key = record[self.seed_field]
        key = key.decode() if isinstance(key, bytes) else str(key)
        small = degrade(out["image"], self.scale, record_seed(key, self.seed))
        out["lq_small"] = small
        out["lq"] = upsample(small, self.image_size)
        if self.half_field not in record:
            raise KeyError(f"restoration: record has no field {self.half_field!r} to put it in "
                           f"a dev or test half; fields: {', '.join(sorted(record))}")
        out["dev_half"] = heldout.dev_half([record[self.half_field]], HALF_SALT)[0]
        return out


@TRANSFORMS.register("restoration")
def restoration(image_size: int = 32, max_text_len: int = 32, scale: int = 2, seed: int = 0,
                text_field: str = "name", label_field: str = "group",
                seed_field: str = "name", half_field: str = "base") -> RestorationTransform:
    """See the module docstring: ``scale`` is the LQ image's downsampling factor, ``seed`` the
    degradation pipeline's (with the record's ``seed_field``)."""
    return RestorationTransform(image_size, max_text_len, scale, seed, text_field, label_field,
                                seed_field, half_field)
