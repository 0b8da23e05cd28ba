"""Example-retrieval sheets: the top-k each query shows, the pair's rank, the PNG's frames."""
import numpy as np
import pytest
from PIL import Image

from xmodal.data import show
from xmodal.evaluate import retrieval_sheet as rs


def _unit(x):
    x = np.asarray(x, np.float32)
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def test_top_matches_orders_by_score_and_ranks_the_pair():
    # Query 0 is nearest gallery 2, then 0 (its pair), then 1.
    q = _unit([[1.0, 0.2, 0.0], [0.0, 1.0, 0.0]])
    g = _unit([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [1.0, 0.25, 0.0]])
    rows = rs.top_matches(q, g, [0, 1], k=2)
    assert rows[0].matches == (2, 0) and rows[0].pair_rank == 2
    assert rows[1].matches == (1, 2) and rows[1].pair_rank == 1
    np.testing.assert_allclose(rows[0].scores, (q[0] @ g[2], q[0] @ g[0]), rtol=1e-6)
    # k larger than the gallery shows the whole gallery.
    assert len(rs.top_matches(q, g, [0], k=10)[0].matches) == 3


def _pixel_frame(sheet: Image.Image, row_y: int, col: int):
    x = col * rs.CELL_W + show.PAD - rs.FRAME + 1
    return sheet.getpixel((x, row_y + show.PAD + show.THUMB // 2))


def test_sheet_frames_the_pair_green_and_reports_hits():
    rng = np.random.default_rng(0)
    n = 6
    items = rng.integers(0, 255, size=(n, 16, 16, 3), dtype=np.uint8)
    z = _unit(rng.normal(size=(n, 8)))
    # Texts equal to their images except text 3, which points at image 4: its pair is not top 1.
    zt = z.copy()
    zt[3] = z[4]
    sheet, hits = rs.retrieval_sheet(z, zt, items, [f"caption {i}" for i in range(n)],
                                     queries=n, k=2, title="t")
    assert sheet.size == (3 * rs.CELL_W, rs.HEADER * 3 + 2 * n * rs.CELL_H)
    # text->image rows start after the title and the section header.
    y0 = 2 * rs.HEADER
    for i in range(n):
        colour = _pixel_frame(sheet, y0 + i * rs.CELL_H, 1)
        assert colour == (rs.PAIR_COLOUR if i != 3 else rs.OTHER_COLOUR), (i, colour)
    rows = rs.top_matches(zt, z, range(n), 2)
    assert hits["t2i_in_top_k"] == np.mean([r.pair_rank <= 2 for r in rows])
    assert rows[3].matches[0] == 4


def test_sheet_draws_waveforms_as_spectrograms():
    rng = np.random.default_rng(1)
    waves = rng.normal(size=(3, 4000)).astype(np.float32)
    z = _unit(rng.normal(size=(3, 4)))
    sheet, hits = rs.retrieval_sheet(z, z, waves, ["a", "b", "c"], queries=3, k=3)
    assert hits == {"t2i_in_top_k": 1.0, "i2t_in_top_k": 1.0}
    assert np.asarray(sheet).std() > 10   # pictures were drawn, not a blank page


def test_sheet_rejects_mismatched_inputs():
    with pytest.raises(ValueError, match="as many"):
        rs.retrieval_sheet(np.zeros((3, 4)), np.zeros((2, 4)), np.zeros((3, 8, 8, 3), np.uint8),
                           ["a", "b", "c"])
