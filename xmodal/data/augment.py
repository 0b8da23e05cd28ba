"""Image augmentation for training pipelines, deterministic under grain's per-record RNG.

grain gives ``random_map`` a generator seeded from the pipeline seed and the record's position,
so an augmented stream is reproducible and resumes exactly, whatever the worker count.
"""
from __future__ import annotations

import grain
import numpy as np
from PIL import Image


class RandomResizedCrop(grain.transforms.RandomMap):
    """Crops a random square covering ``scale`` of the image area, resized back to its size.

    No horizontal flip: many of our images carry direction or text (arrows, flags, letters,
    playing-card indices) whose caption a mirror image would contradict.
    """

    def __init__(self, scale: tuple[float, float] = (0.7, 1.0), field: str = "image"):
        lo, hi = scale
        if not 0 < lo <= hi <= 1:
            raise ValueError(f"RandomResizedCrop scale must satisfy 0 < lo <= hi <= 1, got {scale}")
        self.scale, self.field = (lo, hi), field

    def random_map(self, element: dict, rng: np.random.Generator) -> dict:
        image = np.asarray(element[self.field])
        h, w = image.shape[:2]
        side = int(round(np.sqrt(rng.uniform(*self.scale)) * min(h, w)))
        side = max(1, min(side, h, w))
        top = int(rng.integers(0, h - side + 1))
        left = int(rng.integers(0, w - side + 1))
        crop = image[top:top + side, left:left + side]
        if side != h or side != w:
            crop = np.asarray(Image.fromarray(crop).resize((w, h), Image.Resampling.BILINEAR))
        return dict(element, **{self.field: crop.astype(image.dtype)})
