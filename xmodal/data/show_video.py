"""Looking at a video set: a contact sheet of frames with their instance masks, and a GIF.

The sheet has one band per example: ``FRAMES_SHOWN`` frames spread over the clip, the same
frames with each instance's mask tinted in its own colour below them, and the caption under
both. The GIF plays the examples side by side (a grid, like ``show.contact_sheet``), each with
its masks' outlines, at the clip's frame rate. Chosen by a source's ``CARD["show"] =
{"video": FIELD, "masks": FIELD, "caption": FIELD, "ms_per_frame": MS}``.
"""
from __future__ import annotations

import os
from typing import Any, Mapping, Sequence

import numpy as np
from PIL import Image, ImageDraw

from xmodal.data import show

FRAMES_SHOWN = 6
TILE = 96
# One colour per instance id (1, 2, ...), chosen to stand out on grass, sand and snow.
COLOURS = np.array([(230, 25, 75), (60, 180, 75), (0, 130, 200), (245, 130, 48),
                    (145, 30, 180), (70, 240, 240), (240, 50, 230), (255, 225, 25)], np.uint8)


def tint(frame: np.ndarray, ids: np.ndarray, weight: float = 0.55) -> np.ndarray:
    """The frame with instance k's pixels blended towards colour k (background untouched)."""
    out = frame.astype(np.float32)
    for k in np.unique(ids[ids > 0]):
        hit = ids == k
        out[hit] = (1 - weight) * out[hit] + weight * COLOURS[(int(k) - 1) % len(COLOURS)]
    return out.astype(np.uint8)


def outline(frame: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """The frame with each instance's boundary pixels in its colour."""
    out = frame.copy()
    padded = np.pad(ids, 1, mode="edge")
    edge = np.zeros(ids.shape, bool)
    for dy, dx in ((0, 1), (2, 1), (1, 0), (1, 2)):
        edge |= padded[dy:dy + ids.shape[0], dx:dx + ids.shape[1]] != ids
    edge &= ids > 0
    out[edge] = COLOURS[(ids[edge].astype(np.int64) - 1) % len(COLOURS)]
    return out


def _resized(frame: np.ndarray) -> Image.Image:
    return Image.fromarray(frame).resize((TILE, TILE), Image.Resampling.NEAREST)


def video_sheet(records: Sequence[Mapping[str, Any]], video: str, masks: str | None,
                caption: str | None, fonts: show.FontChain) -> Image.Image:
    width = FRAMES_SHOWN * (TILE + show.PAD) + show.PAD
    band = (2 if masks else 1) * (TILE + show.PAD) + show.PAD + \
        show.CAPTION_LINES * show.LINE_HEIGHT
    sheet = Image.new("RGB", (width, band * len(records)), show.BACKGROUND)
    draw = ImageDraw.Draw(sheet)
    for i, record in enumerate(records):
        frames = np.asarray(record[video])
        chosen = show.spread_indices(len(frames), FRAMES_SHOWN)
        y0 = i * band + show.PAD
        for j, t in enumerate(chosen):
            x = show.PAD + j * (TILE + show.PAD)
            sheet.paste(_resized(frames[t]), (x, y0))
            if masks:
                ids = np.asarray(record[masks])[t]
                sheet.paste(_resized(tint(frames[t], ids)), (x, y0 + TILE + show.PAD))
        text = show.caption_of(record, show.ShowFields(None, None, caption))
        y = y0 + (2 if masks else 1) * (TILE + show.PAD)
        for line in show.wrap(text, fonts, width - 2 * show.PAD, show.CAPTION_LINES):
            x = show.PAD
            for run, font in fonts.runs(line):
                draw.text((x, y), run, font=font, fill=show.TEXT_COLOUR)
                x += font.getlength(run)
            y += show.LINE_HEIGHT
    return sheet


def write_gif(records: Sequence[Mapping[str, Any]], video: str, masks: str | None, out: str,
              ms_per_frame: int) -> int:
    """The examples side by side, playing; returns the number of GIF frames."""
    rows, cols = show.grid_shape(len(records))
    length = min(len(np.asarray(r[video])) for r in records)
    pictures = []
    for t in range(length):
        grid = Image.new("RGB", (cols * (TILE + show.PAD) + show.PAD,
                                 rows * (TILE + show.PAD) + show.PAD), show.BACKGROUND)
        for i, record in enumerate(records):
            frame = np.asarray(record[video])[t]
            if masks:
                frame = outline(frame, np.asarray(record[masks])[t])
            grid.paste(_resized(frame), (show.PAD + (i % cols) * (TILE + show.PAD),
                                         show.PAD + (i // cols) * (TILE + show.PAD)))
        pictures.append(grid)
    pictures[0].save(out, format="GIF", save_all=True, append_images=pictures[1:],
                     duration=ms_per_frame, loop=0)
    return len(pictures)


def write_video_sheet(name: str, split: str, n: int, out: str, data_dir: str | None = None,
                      caption: str | None = None) -> show.Sheet:
    """Prepares ``name`` if needed and writes the sheet of ``n`` examples of ``split`` to
    ``out`` (PNG) and their GIF beside it (same name, ``.gif``)."""
    given = show.sheet_input(name, split, n, data_dir, caption)
    fields = given.fields
    if not fields.video:
        raise ValueError(f"dataset {name!r} names no video field in CARD['show']")
    fonts = show.load_fonts()
    video_sheet(given.records, fields.video, fields.masks, fields.caption,
                fonts).save(out, format="PNG")
    write_gif(given.records, fields.video, fields.masks, os.path.splitext(out)[0] + ".gif",
              given.ms_per_frame)
    return show.Sheet(out, len(given.records), FRAMES_SHOWN, len(given.records), fields,
                      fonts.describe())
