"""The ``segmentation`` evaluator on sequences with known segments: a feature that names the
segment scores 100, a collapsed model scores exactly the constant rows, uniform runs score what
is worked out by hand, and a one-clip lecture has a defined answer."""
import json

import numpy as np
import pytest
from PIL import Image

from xmodal.core.eval_context import EvalContext
from xmodal.evaluate import segment_sequences as ss
from xmodal.evaluate import segmentation as seg


class FakeContext(EvalContext):
    """Eval arrays as given; ``encode`` is a fixed function of the inputs (no model)."""

    def __init__(self, arrays, encode=None, out_dir=""):
        super().__init__(arrays=arrays, class_names=[], params={}, out_dir=out_dir)
        self._encode = encode

    def encode(self, modality, x):
        return self._encode(modality, x)


def lectures(seed=0):
    """Two lectures (ids 7 and 3) of segments with lengths 4, 6, 3 and 5, 5; clips shuffled
    in the split, ``position`` giving the time order; ``x`` names the segment (one-hot plus
    small noise); ``image`` a flat red, green or blue by segment."""
    rng = np.random.default_rng(seed)
    rows = []
    for lecture, lengths in ((7, (4, 6, 3)), (3, (5, 5))):
        pos = 0
        for s, n in enumerate(lengths):
            for _ in range(n):
                rows.append((lecture, pos, s))
                pos += 1
    rows = [rows[i] for i in rng.permutation(len(rows))]
    lecture, position, segment = (np.array(c, np.int32) for c in zip(*rows))
    x = np.eye(3)[segment] + 0.01 * rng.normal(size=(len(rows), 3))
    image = np.zeros((len(rows), 8, 8, 3), np.uint8)
    image[np.arange(len(rows)), :, :, segment] = 200
    return {"lecture": lecture, "position": position, "segment": segment, "x": x,
            "image": image}


def test_features_that_name_the_segment_score_100_and_uniform_scores_its_hand_worked_value():
    arrays = lectures()
    run = ss.segmentation(features={"exact": "x", "pixels": "image"}, pool=4)
    out = run(FakeContext(arrays))
    assert out["sequences"] == 2 and out["clips"] == 23
    for method in ("kmeans", "finch", "twfinch"):
        for metric in seg.METRICS:
            assert out[f"exact/{method}/{metric}"] == pytest.approx(100.0), (method, metric)
            assert out[f"pixels/{method}/{metric}"] == pytest.approx(100.0), (method, metric)
    # Uniform: lecture 7 (13 clips, k 3) cuts at 5 and 9 against true 4 and 10: 11 of 13
    # clips matched; lecture 3 (10 clips, k 2) is exact.
    assert out["none/uniform/MoF"] == pytest.approx(100 * (11 / 13 + 1) / 2)
    assert out["none/uniform/F1"] == pytest.approx(100.0)          # within ±1 clip
    one = 100 * (6 / 13 + 5 / 10) / 2          # the largest segment's share, per lecture
    assert out["one_cluster/MoF"] == run.chance(FakeContext(arrays))["one_cluster/MoF"] == \
        pytest.approx(one)


def test_a_collapsed_model_scores_exactly_the_constant_rows():
    arrays = lectures()
    same = ss.segmentation(features={"learned": "model:image"})(
        FakeContext(arrays, encode=lambda m, x: np.ones((len(x), 4), np.float32)))
    constant = ss.slug(ss.CONSTANT)
    for method in ("kmeans", "finch", "twfinch"):
        for metric in seg.METRICS:
            assert same[f"learned/{method}/{metric}"] == same[f"{constant}/{method}/{metric}"]
    # With nothing to go on, k-means puts every clip in one cluster: the one-cluster level.
    for metric in seg.METRICS:
        assert same[f"{constant}/kmeans/{metric}"] == pytest.approx(same[f"one_cluster/{metric}"])


def test_prepare_pools_centres_and_normalises():
    x = np.zeros((2, 4, 4, 1))
    x[0, :2, :2] = 4.0                        # top-left quarter of the first image
    got = ss.prepare(x, pool=2)               # pooled: [1, 0, 0, 0] and [0, 0, 0, 0]
    np.testing.assert_allclose(got, [[0.5, 0, 0, 0], [-0.5, 0, 0, 0]] / np.sqrt(0.25))
    np.testing.assert_array_equal(ss.prepare(np.ones((3, 2))), np.zeros((3, 2)))


def test_a_one_clip_lecture_and_bad_settings(tmp_path):
    arrays = {"lecture": np.array([1, 2, 2, 2]), "position": np.array([0, 0, 1, 2]),
              "segment": np.array([0, 0, 0, 1]), "x": np.eye(4)}
    out = ss.segmentation(features={"x": "x"}, plot="x")(FakeContext(arrays,
                                                                       out_dir=str(tmp_path)))
    assert out["sequences"] == 2
    assert all(np.isfinite(v) for v in out.values())
    table = json.loads((tmp_path / "segmentation_table.json").read_text())
    assert table["rows"]["x"]["twfinch"]["MoF"] == pytest.approx(out["x/twfinch/MoF"])
    assert "| x | twfinch |" in (tmp_path / "segmentation_table.md").read_text()
    assert Image.open(tmp_path / "segments_1.png").size[0] > 300
    with pytest.raises(ValueError, match="methods: uniform, kmeans, finch, twfinch"):
        ss.segmentation(methods=("dbscan",))
    with pytest.raises(ValueError, match="not a feature set"):
        ss.segmentation(features={"x": "x"}, plot="y")
    with pytest.raises(ValueError, match="missing audio"):
        ss.segmentation(features={"a": "audio"})(FakeContext(arrays))
