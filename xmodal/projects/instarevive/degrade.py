"""A second-order degradation pipeline (Real-ESRGAN, Wang et al. 2021, sec. 3), scaled to the
small images of this framework's data, seeded per record.

Each of two orders applies, in this order:

    blur      Gaussian, sigma ~ U[sigma_range] pixels (scipy.ndimage.gaussian_filter)
    resize    to size * U[resize_range] (order 1) or to size / scale (order 2), with a kernel
              drawn from bicubic, bilinear and area (Pillow's BICUBIC, BILINEAR, BOX)
    noise     additive Gaussian, std ~ U[noise_range] / 255, grey (one channel for all three)
              with probability 0.4 as in Real-ESRGAN, else per channel
    JPEG      quality ~ U[jpeg_range] (Pillow's encoder, 4:2:0 chroma subsampling)

The second order's ranges are narrower (Real-ESRGAN's second-order settings), and it ends at
``size // scale``: the low-quality (LQ) image. The network sees it upsampled back to ``size`` by
bicubic interpolation (``upsample``).

Every draw comes from ``numpy.random.default_rng(seed)`` with ``seed`` derived from the record
(``record_seed``), so a record is degraded the same way in every epoch, every worker and every
run: the train and test degradations are fixed, reproducible data, not augmentation.
"""
from __future__ import annotations

import dataclasses
import hashlib
import io

import numpy as np
from PIL import Image

KERNELS = (Image.Resampling.BICUBIC, Image.Resampling.BILINEAR, Image.Resampling.BOX)


@dataclasses.dataclass(frozen=True)
class Order:
    sigma_range: tuple[float, float]
    resize_range: tuple[float, float]
    noise_range: tuple[float, float]
    jpeg_range: tuple[int, int]


# Real-ESRGAN's first- and second-order settings, the resize ranges shrunk for 32-64 px images
# (its [0.15, 1.5] would leave a few pixels of a 32 px image).
FIRST = Order(sigma_range=(0.2, 1.5), resize_range=(0.6, 1.0), noise_range=(1.0, 15.0),
              jpeg_range=(40, 95))
SECOND = Order(sigma_range=(0.2, 0.8), resize_range=(1.0, 1.0), noise_range=(1.0, 10.0),
               jpeg_range=(50, 95))


def record_seed(key: str, seed: int = 0) -> int:
    """A 63-bit seed from a record's key (its name) and the pipeline's seed."""
    return int.from_bytes(hashlib.sha1(f"{seed}:{key}".encode()).digest()[:8], "big") >> 1


def _resize(x: np.ndarray, size: int, kernel) -> np.ndarray:
    img = Image.fromarray(np.clip(np.rint(x), 0, 255).astype(np.uint8))
    return np.asarray(img.resize((size, size), kernel), np.float64)


def _jpeg(x: np.ndarray, quality: int) -> np.ndarray:
    buf = io.BytesIO()
    Image.fromarray(np.clip(np.rint(x), 0, 255).astype(np.uint8)).save(buf, "JPEG",
                                                                       quality=int(quality))
    buf.seek(0)
    with Image.open(buf) as img:
        return np.asarray(img.convert("RGB"), np.float64)


def _order(x: np.ndarray, order: Order, out_size: int, rng: np.random.Generator) -> np.ndarray:
    sigma = rng.uniform(*order.sigma_range)
    from scipy.ndimage import gaussian_filter   # here: discovery imports this in every run
    x = gaussian_filter(x, sigma=(sigma, sigma, 0), mode="reflect")
    x = _resize(x, out_size, KERNELS[rng.integers(len(KERNELS))])
    std = rng.uniform(*order.noise_range)
    shape = x.shape[:2] + (1,) if rng.uniform() < 0.4 else x.shape
    x = x + rng.normal(0.0, std, shape)
    return _jpeg(x, rng.integers(order.jpeg_range[0], order.jpeg_range[1] + 1))


def degrade(image: np.ndarray, scale: int, seed: int) -> np.ndarray:
    """uint8 [S, S, 3] → the LQ image, uint8 [S // scale, S // scale, 3] (module docstring)."""
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[-1] != 3 or \
            image.shape[0] != image.shape[1]:
        raise ValueError(f"degrade expects a square uint8 [S, S, 3] image; got {image.dtype} "
                         f"{image.shape}")
    size = image.shape[0]
    if not isinstance(scale, int) or scale < 1 or size % scale:
        raise ValueError(f"degrade scale must be a positive int dividing the size {size}; got "
                         f"{scale!r}")
    rng = np.random.default_rng(seed)
    x = image.astype(np.float64)
    mid = max(size // scale, int(round(size * rng.uniform(*FIRST.resize_range))))
    x = _order(x, FIRST, mid, rng)
    x = _order(x, SECOND, size // scale, rng)
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


def upsample(lq: np.ndarray, size: int, kernel=Image.Resampling.BICUBIC) -> np.ndarray:
    """The LQ image back at ``size`` (bicubic by default; ``Image.Resampling.NEAREST`` shows
    the pixels as they are)."""
    return np.asarray(Image.fromarray(lq).resize((size, size), kernel), np.uint8)
