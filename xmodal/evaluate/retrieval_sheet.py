"""Example-retrieval sheets: a few eval queries and their top-k matches, as a PNG to look at.

Two sections, one row per query:

    text -> image:  [query caption] [match 1] ... [match k]    (the score under each match)
    image -> text:  [query image]   [match 1] ... [match k]

A match that is the query's own pair (text i describes item i, the retrieval evaluator's rule)
is framed green, the others grey; a row whose pair is not among its top k says at which rank it
is. Queries are spread evenly over the split (``show.spread_indices``), so the sheets of one run,
eval after eval, show the same queries. Pictures are images or, for audio, spectrograms, drawn
as ``xmodal.data.show`` draws a contact sheet.
"""
from __future__ import annotations

import dataclasses
from typing import Callable, Sequence

import numpy as np
from PIL import Image, ImageDraw

from xmodal.data import show

PAIR_COLOUR = (0, 160, 60)
OTHER_COLOUR = (200, 200, 200)
FRAME = 3
HEADER = 22
CELL_W = show.CELL_WIDTH
CELL_H = show.THUMB + 2 * show.PAD + 2 * show.LINE_HEIGHT   # a picture or text box + 2 lines
TEXT_LINES = show.THUMB // show.LINE_HEIGHT                 # lines of a caption in a box


@dataclasses.dataclass(frozen=True)
class Row:
    query: int                  # index of the query in the split
    matches: tuple[int, ...]    # top-k gallery indices, best first
    scores: tuple[float, ...]   # their cosine similarities
    pair_rank: int              # 1 + number of gallery items scored strictly above the pair


def top_matches(queries: np.ndarray, gallery: np.ndarray, rows: Sequence[int], k: int
                ) -> list[Row]:
    """Top-``k`` gallery items of ``queries[i]`` for each i in ``rows`` (pair: gallery[i])."""
    q = np.asarray(queries, np.float32)[list(rows)]
    scores = q @ np.asarray(gallery, np.float32).T                       # [n, N]
    k = min(k, scores.shape[1])
    out = []
    for i, s in zip(rows, scores):
        # Stable sort on -score: ties keep gallery order, so a sheet is reproducible.
        order = np.argsort(-s, kind="stable")[:k]
        out.append(Row(int(i), tuple(int(j) for j in order), tuple(float(s[j]) for j in order),
                       int(1 + np.sum(s > s[i]))))
    return out


def array_picture(array: np.ndarray) -> Image.Image:
    """A uint8 [H, W, 3|1] image or a float [T] waveform (as its spectrogram), THUMB square."""
    array = np.asarray(array)
    fields = (show.ShowFields("x", None, None) if array.ndim >= 2
              else show.ShowFields(None, "x", None))
    return show.picture({"x": array}, fields)


def _text(draw, fonts, xy, text: str, width: int, lines: int, fill=show.TEXT_COLOUR) -> None:
    x0, y = xy
    for line in show.wrap(text, fonts, width, lines):
        x = x0
        for run, font in fonts.runs(line):
            draw.text((x, y), run, font=font, fill=fill)
            x += font.getlength(run)
        y += show.LINE_HEIGHT


def _frame(draw, x: int, y: int, colour) -> None:
    draw.rectangle([x - FRAME, y - FRAME, x + show.THUMB + FRAME - 1, y + show.THUMB + FRAME - 1],
                   outline=colour, width=FRAME)


def draw_sheet(t2i: Sequence[Row], i2t: Sequence[Row], picture: Callable[[int], Image.Image],
               captions: Sequence[str], k: int, title: str = "") -> Image.Image:
    """The sheet of the module docstring: ``picture(i)`` draws item i, ``captions[i]`` its text."""
    fonts = show.load_fonts()
    cols = 1 + k
    height = 2 * HEADER + (len(t2i) + len(i2t)) * CELL_H + (HEADER if title else 0)
    sheet = Image.new("RGB", (cols * CELL_W, height), show.BACKGROUND)
    draw = ImageDraw.Draw(sheet)
    y = 0
    if title:
        _text(draw, fonts, (show.PAD, y + 4), title, cols * CELL_W, 1)
        y += HEADER
    for name, rows, query_is_text in (("text -> image", t2i, True),
                                      ("image -> text", i2t, False)):
        _text(draw, fonts, (show.PAD, y + 4), f"{name}: query, then its top {k} (green: its "
              "pair)", cols * CELL_W, 1)
        y += HEADER
        for row in rows:
            top = y + show.PAD
            x = show.PAD
            if query_is_text:
                _text(draw, fonts, (x, top), captions[row.query], show.THUMB, TEXT_LINES)
            else:
                sheet.paste(picture(row.query), (x, top))
            if row.pair_rank > len(row.matches):
                _text(draw, fonts, (x, top + show.THUMB + show.PAD),
                      f"pair at rank {row.pair_rank}", show.THUMB, 1)
            for c, (j, score) in enumerate(zip(row.matches, row.scores), start=1):
                x = c * CELL_W + show.PAD
                if query_is_text:
                    sheet.paste(picture(j), (x, top))
                else:
                    _text(draw, fonts, (x, top), captions[j], show.THUMB, TEXT_LINES)
                _frame(draw, x, top, PAIR_COLOUR if j == row.query else OTHER_COLOUR)
                _text(draw, fonts, (x, top + show.THUMB + show.PAD), f"{score:.3f}",
                      show.THUMB, 1)
            y += CELL_H
    return sheet


def retrieval_sheet(item_emb: np.ndarray, text_emb: np.ndarray, items: np.ndarray,
                    captions: Sequence[str], queries: int = 8, k: int = 5, title: str = ""
                    ) -> tuple[Image.Image, dict[str, float]]:
    """The sheet for ``queries`` pairs spread over the split, and how many of the sheet's
    queries find their pair in their top k (``t2i_in_top_k``, ``i2t_in_top_k``, fractions):
    ``items[i]`` is item i (image or waveform), text i describes it."""
    n = len(captions)
    if not (len(item_emb) == len(text_emb) == len(items) == n) or n == 0:
        raise ValueError(f"retrieval_sheet needs as many item embeddings, text embeddings, items "
                         f"and captions (> 0); got {len(item_emb)}, {len(text_emb)}, "
                         f"{len(items)}, {n}")
    rows = show.spread_indices(n, queries)
    t2i = top_matches(text_emb, item_emb, rows, k)
    i2t = top_matches(item_emb, text_emb, rows, k)
    sheet = draw_sheet(t2i, i2t, lambda i: array_picture(items[i]), captions, min(k, n), title)
    hits = {f"{d}_in_top_k": float(np.mean([r.pair_rank <= k for r in rs]))
            for d, rs in (("t2i", t2i), ("i2t", i2t))}
    return sheet, hits
