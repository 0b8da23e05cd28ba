"""Image + caption, no class label: for sets whose grouping field is free text (Tux Paint's
``category``), which ``image_text``'s int ``label_field`` cannot take."""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from xmodal.data.augment import RandomResizedCrop
from xmodal.data.transforms.image_text import ImageTextTransform
from xmodal.core.registry import TRANSFORMS


class ImageCaptionTransform(ImageTextTransform):
    """Record -> {"image": uint8 [S, S, 3], "text": int32 [max_text_len]} from ``image_field``
    and ``text_field``; an empty caption encodes to [bos, eos, pad, ...]."""

    def __init__(self, image_size: int, max_text_len: int, text_field: str = "caption",
                 image_field: str = "image"):
        super().__init__(image_size, max_text_len, text_field=text_field, label_field=None)
        self.image_field = image_field

    def __repr__(self) -> str:
        return (f"ImageCaptionTransform(image_size={self.image_size}, "
                f"max_text_len={self.tokenizer.max_len}, text_field={self.text_field!r}, "
                f"image_field={self.image_field!r})")

    def map(self, record: Mapping[str, Any]) -> dict[str, np.ndarray]:
        for field in (self.image_field, self.text_field):
            if field not in record:
                raise KeyError(
                    f"ImageCaptionTransform: record has no field {field!r}; fields: "
                    f"{', '.join(sorted(record))} (set image_field/text_field to one of them)")
        return {"image": self.resize(np.asarray(record[self.image_field])),
                "text": self.tokenizer.encode(record[self.text_field])}


@TRANSFORMS.register("image_caption")
def image_caption(image_size: int = 32, max_text_len: int = 32, text_field: str = "caption",
                  image_field: str = "image", crop_scale: tuple = (1.0, 1.0)
                  ) -> ImageCaptionTransform:
    """{"image", "text"} (no label); ``crop_scale`` != (1, 1) adds a random resized crop."""
    transform = ImageCaptionTransform(image_size, max_text_len, text_field, image_field)
    crop = tuple(crop_scale)
    transform.augment = RandomResizedCrop(crop) if crop != (1.0, 1.0) else None
    return transform
