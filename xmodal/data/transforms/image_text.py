"""The image-text transform of CLIP-style training."""
from __future__ import annotations

from typing import Any, Mapping

import grain
import numpy as np
from PIL import Image

from xmodal.core.registry import TRANSFORMS
from xmodal.data.augment import RandomResizedCrop
from xmodal.data.tokenizer import ByteTokenizer

TOKENIZERS = ("byte", "clip_bpe")


def make_tokenizer(tokenizer: str, max_text_len: int, vocab: str = ""):
    """``"byte"``: xmodal's ByteTokenizer (no vocabulary); ``"clip_bpe"``: CLIP's BPE tokenizer
    over the ``vocab`` file (``bpe_simple_vocab_16e6.txt.gz``), as converted open_clip models
    read their text."""
    if tokenizer == "byte":
        if vocab:
            raise ValueError(f"image_text vocab={vocab!r} is read only by tokenizer='clip_bpe'")
        return ByteTokenizer(max_text_len)
    if tokenizer == "clip_bpe":
        if not vocab:
            raise ValueError("image_text tokenizer='clip_bpe' needs vocab=<path to "
                             "bpe_simple_vocab_16e6.txt.gz>")
        # Imported here so that byte-tokenised runs never load ftfy and regex.
        from xmodal.data.clip_bpe import ClipBPETokenizer
        return ClipBPETokenizer(vocab, context_length=max_text_len)
    raise ValueError(f"image_text tokenizer={tokenizer!r} is not one of {', '.join(TOKENIZERS)}")


class ImageTextTransform(grain.transforms.Map):
    """Record -> {"image": uint8 [S, S, 3], "text": int32 [max_text_len], "label": int32}.

    ``text`` is the ByteTokenizer encoding of ``record[text_field]`` (or CLIP's BPE encoding
    with ``tokenizer="clip_bpe"``); an empty caption encodes to [bos, eos, pad, ...] like any
    other. ``label`` is ``record[label_field]`` (the emoji
    group). Images whose stored size differs from ``image_size`` are resized with Lanczos.
    """

    def __init__(self, image_size: int, max_text_len: int, text_field: str = "name",
                 label_field: str = "group", tokenizer: str = "byte", vocab: str = ""):
        if not isinstance(image_size, int) or image_size < 1:
            raise ValueError(f"ImageTextTransform image_size must be a positive int, "
                             f"got {image_size!r}")
        self.image_size = image_size
        self.tokenizer = make_tokenizer(tokenizer, max_text_len, vocab)
        # Shown only when not the default, so the byte transform's repr is what it always was.
        self.tokenizer_args = (f", tokenizer={tokenizer!r}, vocab={vocab!r}"
                               if tokenizer != "byte" else "")
        self.text_field = text_field
        self.label_field = label_field

    def __repr__(self) -> str:
        return (f"ImageTextTransform(image_size={self.image_size}, "
                f"max_text_len={self.tokenizer.max_len}, text_field={self.text_field!r}, "
                f"label_field={self.label_field!r}{self.tokenizer_args})")

    def map(self, record: Mapping[str, Any]) -> dict[str, np.ndarray]:
        for field in ("image", self.text_field, self.label_field):
            if field not in record:
                raise KeyError(
                    f"ImageTextTransform: record has no field {field!r}; fields: "
                    f"{', '.join(sorted(record))} (set text_field/label_field to one of them)")
        return {
            "image": self.resize(np.asarray(record["image"])),
            "text": self.tokenizer.encode(record[self.text_field]),
            "label": np.int32(record[self.label_field]),
        }

    def resize(self, image: np.ndarray) -> np.ndarray:
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[-1] != 3:
            raise ValueError(f"ImageTextTransform expects uint8 [H, W, 3] images, got "
                             f"{image.dtype} {image.shape}")
        size = self.image_size
        if image.shape[:2] == (size, size):
            return image
        resized = Image.fromarray(image).resize((size, size), Image.Resampling.LANCZOS)
        return np.asarray(resized, dtype=np.uint8)


@TRANSFORMS.register("image_text")
def image_text(image_size: int = 32, max_text_len: int = 32, text_field: str = "name",
               label_field: str = "group", crop_scale: tuple = (1.0, 1.0),
               tokenizer: str = "byte", vocab: str = "") -> ImageTextTransform:
    """{"image": uint8 [S, S, 3], "text": byte tokens, "label": record[label_field]};
    ``crop_scale`` != (1, 1) adds a random resized crop of that area range in training;
    ``tokenizer="clip_bpe"`` with ``vocab=<bpe_simple_vocab_16e6.txt.gz>`` gives CLIP's BPE ids
    instead of bytes (for models converted from open_clip)."""
    transform = ImageTextTransform(image_size, max_text_len, text_field=text_field,
                                   label_field=label_field, tokenizer=tokenizer, vocab=vocab)
    crop = tuple(crop_scale)
    transform.augment = RandomResizedCrop(crop) if crop != (1.0, 1.0) else None
    return transform
