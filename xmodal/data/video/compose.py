"""Clips composed from sprites: pictures with alpha placed on a background frame by frame, with
each object's instance mask taken from the same alpha that drew it.

Objects are drawn in order of their picture's bottom edge (lower on screen is nearer, drawn
over the others, as in a game seen from above), at ``scale`` times the output resolution, then
every frame is box-filtered down to the output. An output pixel belongs to the object that covers
most of it (its visible alpha, after what is drawn over it, averaged over the pixel's
``scale`` x ``scale`` block) when that cover is at least half the pixel; otherwise to the
background (id 0). Objects are numbered 1..K in the order given.
"""
from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np


@dataclasses.dataclass(frozen=True)
class Placement:
    """One object in one frame: an RGBA picture with its top-left corner at (x, y) canvas
    pixels (either may be negative or past the edge: what is outside is not drawn), its
    alpha multiplied by ``opacity``."""
    picture: np.ndarray
    x: int
    y: int
    opacity: float = 1.0


def compose_frame(background: np.ndarray, objects: Sequence[Placement | None], scale: int
                  ) -> tuple[np.ndarray, np.ndarray]:
    """One frame: (RGB uint8 at the output size, instance ids uint8 at the output size)."""
    h, w = background.shape[:2]
    if h % scale or w % scale:
        raise ValueError(f"background {h}x{w} is not a multiple of scale {scale}")
    if len(objects) > 254:
        raise ValueError(f"{len(objects)} objects: instance ids are uint8 (at most 254)")
    rgb = background.astype(np.float32)
    cover = np.zeros((len(objects), h, w), np.float32)
    order = sorted((i for i, p in enumerate(objects) if p is not None),
                   key=lambda i: objects[i].y + objects[i].picture.shape[0])
    for i in order:
        p = objects[i]
        ph, pw = p.picture.shape[:2]
        y0, x0, y1, x1 = max(p.y, 0), max(p.x, 0), min(p.y + ph, h), min(p.x + pw, w)
        if y0 >= y1 or x0 >= x1:
            continue
        crop = p.picture[y0 - p.y:y1 - p.y, x0 - p.x:x1 - p.x].astype(np.float32)
        alpha = crop[..., 3] / 255.0 * float(p.opacity)
        region = rgb[y0:y1, x0:x1]
        region *= 1.0 - alpha[..., None]
        region += crop[..., :3] * alpha[..., None]
        cover[:, y0:y1, x0:x1] *= 1.0 - alpha          # what this object hides of the others
        cover[i, y0:y1, x0:x1] += alpha
    small = rgb.reshape(h // scale, scale, w // scale, scale, 3).mean(axis=(1, 3))
    frame = np.clip(np.round(small), 0, 255).astype(np.uint8)
    if not len(objects):
        return frame, np.zeros((h // scale, w // scale), np.uint8)
    pooled = cover.reshape(len(objects), h // scale, scale, w // scale, scale).mean(axis=(2, 4))
    best = pooled.argmax(axis=0)
    ids = np.where(pooled.max(axis=0) >= 0.5, best + 1, 0).astype(np.uint8)
    return frame, ids


def compose(backgrounds: np.ndarray | Sequence[np.ndarray],
            frames: Sequence[Sequence[Placement | None]], scale: int = 1
            ) -> tuple[np.ndarray, np.ndarray]:
    """A clip: ``frames[t][k]`` places object k+1 at time t (None: not in that frame) over
    ``backgrounds`` (one RGB picture for every frame, or one per frame). Returns (video
    T x H x W x 3 uint8, masks T x H x W uint8 instance ids, 0 = background)."""
    if not len(frames):
        raise ValueError("a clip needs at least one frame")
    counts = {len(f) for f in frames}
    if len(counts) != 1:
        raise ValueError(f"every frame must list the same objects (None where absent); "
                         f"got {sorted(counts)} objects")
    single = isinstance(backgrounds, np.ndarray) and backgrounds.ndim == 3
    video, masks = [], []
    for t, objects in enumerate(frames):
        frame, ids = compose_frame(backgrounds if single else backgrounds[t], objects, scale)
        video.append(frame)
        masks.append(ids)
    return np.stack(video), np.stack(masks)


def boxes(masks: np.ndarray, count: int) -> np.ndarray:
    """Each object's box per frame from the masks: [T, count, 4] float32 (x0, y0, x1, y1) in
    pixels, x1/y1 exclusive; all -1 where the object has no pixel."""
    out = np.full((len(masks), count, 4), -1.0, np.float32)
    for t, m in enumerate(masks):
        for k in range(count):
            ys, xs = np.nonzero(m == k + 1)
            if len(xs):
                out[t, k] = (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
    return out
