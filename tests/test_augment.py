"""Augmentation is real (changes pixels), bounded, and deterministic in the pipeline."""
import numpy as np
import pytest
from absl import flags

from xmodal.data.augment import RandomResizedCrop
from xmodal.core.input import train_loader


def _image(h=16, w=16):
    y, x = np.mgrid[:h, :w]
    return np.stack([x * 16, y * 16, (x + y) * 8], -1).astype(np.uint8)


def test_crop_keeps_shape_and_dtype_and_changes_pixels():
    aug = RandomResizedCrop((0.5, 0.6))
    out = aug.random_map({"image": _image(), "text": 1}, np.random.default_rng(0))
    assert out["image"].shape == (16, 16, 3) and out["image"].dtype == np.uint8
    assert out["text"] == 1
    assert not np.array_equal(out["image"], _image())


def test_full_scale_crop_is_identity():
    out = RandomResizedCrop((1.0, 1.0)).random_map({"image": _image()}, np.random.default_rng(0))
    np.testing.assert_array_equal(out["image"], _image())


def test_bad_scale_is_rejected():
    with pytest.raises(ValueError, match="0 < lo <= hi <= 1"):
        RandomResizedCrop((0.0, 1.2))



def test_augmented_stream_is_deterministic_and_worker_independent():
    import grain

    class Ident(grain.transforms.Map):
        def map(self, r):
            return r

    flags.FLAGS.mark_as_parsed()
    source = [{"image": np.roll(_image(), i, axis=1)} for i in range(32)]
    kw = dict(global_batch_size=8, seed=3, shard_index=0, shard_count=1,
              augment=RandomResizedCrop((0.5, 0.9)))
    a = [next(it)["image"] for it in [iter(train_loader(source, Ident(), worker_count=0, **kw))]
         for _ in range(3)]
    it0 = iter(train_loader(source, Ident(), worker_count=0, **kw))
    it2 = iter(train_loader(source, Ident(), worker_count=2, **kw))
    for _ in range(3):
        np.testing.assert_array_equal(next(it0)["image"], next(it2)["image"])
    plain = iter(train_loader(source, Ident(), worker_count=0,
                              **dict(kw, augment=None)))
    assert not np.array_equal(next(plain)["image"], a[0])
