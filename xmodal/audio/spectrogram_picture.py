"""Mel spectrograms as a PNG, for people to look at (FlowSep's evaluator, ``--mode=sample``)."""
from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw


def colormap(x: np.ndarray) -> np.ndarray:
    """[H, W] in [0, 1] → uint8 [H, W, 3], a dark-blue → green → yellow ramp (viridis-like)."""
    stops = np.array([[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98],
                      [253, 231, 37]], np.float64)
    pos = np.clip(x, 0, 1) * (len(stops) - 1)
    i = np.minimum(pos.astype(int), len(stops) - 2)
    frac = (pos - i)[..., None]
    return (stops[i] * (1 - frac) + stops[i + 1] * frac).astype(np.uint8)


def save_spectrograms(path: str, mels: list[np.ndarray], titles: list[str]) -> None:
    """Mel spectrograms [F, M] stacked top to bottom (low frequencies at the bottom of each),
    each labelled, as one PNG."""
    lo = min(float(m.min()) for m in mels)
    hi = max(float(m.max()) for m in mels)
    tiles = []
    for mel, title in zip(mels, titles):
        img = colormap((mel.T[::-1] - lo) / max(hi - lo, 1e-6))
        img = np.repeat(np.repeat(img, 3, axis=0), 3, axis=1)
        label = Image.new("RGB", (img.shape[1], 14), "white")
        ImageDraw.Draw(label).text((2, 1), title, fill="black")
        tiles += [np.asarray(label), img]
    Image.fromarray(np.concatenate(tiles, axis=0)).save(path)
