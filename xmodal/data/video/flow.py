"""Optical flow of a clip, computed once when a set is prepared: OpenCV's Farneback dense flow
between consecutive frames (``cv2.calcOpticalFlowFarneback``, in ``opencv-python-headless``).

Flow t is the motion from frame t to frame t+1, (dx, dy) in pixels per output pixel of frame t:
T - 1 fields for T frames, rounded to ``QUANTUM`` (1/16 px, far below the method's error) and
stored as float16: the sub-quantum jitter Farneback reports on a static textured background
becomes exact zeros, so a clip's flow compresses (zlib) to a tenth of its unrounded size.
"""
from __future__ import annotations

import numpy as np

# Farneback's settings for small frames (64-128 px): a 3-level pyramid, a 9 px window, the
# polynomial expansion of 5 px neighbourhoods (OpenCV's documented example values, with a
# smaller window than its 15 for sprites a few tens of pixels wide).
FARNEBACK = dict(pyr_scale=0.5, levels=3, winsize=9, iterations=3, poly_n=5, poly_sigma=1.1,
                 flags=0)
QUANTUM = 1.0 / 16


def farneback(video: np.ndarray) -> np.ndarray:
    """Flow of a T x H x W x 3 uint8 clip: (T-1) x H x W x 2 float16 (dx, dy)."""
    import cv2

    if video.ndim != 4 or video.shape[-1] != 3 or video.dtype != np.uint8:
        raise ValueError(f"flow needs a T x H x W x 3 uint8 clip, got {video.dtype} "
                         f"{video.shape}")
    if len(video) < 2:
        raise ValueError(f"flow needs at least 2 frames, got {len(video)}")
    grey = [cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in video]
    out = np.empty((len(video) - 1,) + video.shape[1:3] + (2,), np.float16)
    for t in range(len(video) - 1):
        field = cv2.calcOpticalFlowFarneback(grey[t], grey[t + 1], None, **FARNEBACK)
        out[t] = np.round(field / QUANTUM) * QUANTUM
    return out


def flow_picture(flow: np.ndarray, max_magnitude: float | None = None) -> np.ndarray:
    """A flow field as an RGB picture (hue: direction, brightness: speed), to look at."""
    from PIL import Image

    dx, dy = flow[..., 0].astype(np.float32), flow[..., 1].astype(np.float32)
    mag = np.hypot(dx, dy)
    top = max_magnitude or max(float(mag.max()), 1e-6)
    hue = ((np.arctan2(dy, dx) / (2 * np.pi)) % 1.0) * 255
    hsv = np.stack([hue, np.full_like(hue, 255), np.clip(mag / top, 0, 1) * 255], -1)
    return np.asarray(Image.fromarray(hsv.astype(np.uint8), "HSV").convert("RGB"))
