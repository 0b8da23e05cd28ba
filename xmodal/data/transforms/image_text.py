"""The image-text transform of CLIP-style training."""
from __future__ import annotations

from xmodal.data.augment import RandomResizedCrop
from xmodal.data.pipeline import ImageTextTransform
from xmodal.data.transforms import TRANSFORMS


@TRANSFORMS.register("image_text")
def image_text(image_size: int = 32, max_text_len: int = 32, text_field: str = "name",
               label_field: str = "group", crop_scale: tuple = (1.0, 1.0)) -> ImageTextTransform:
    """{"image": uint8 [S, S, 3], "text": byte tokens, "label": record[label_field]};
    ``crop_scale`` != (1, 1) adds a random resized crop of that area range in training."""
    transform = ImageTextTransform(image_size, max_text_len, text_field=text_field,
                                   label_field=label_field)
    crop = tuple(crop_scale)
    transform.augment = RandomResizedCrop(crop) if crop != (1.0, 1.0) else None
    return transform
