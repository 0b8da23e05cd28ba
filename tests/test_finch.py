"""FINCH against the authors' package (``finch-clust``) on the same features; TW-FINCH's time
weighting by hand and on a lecture whose first topic comes back after the second."""
import warnings

import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score

from xmodal.evaluate import segmentation as seg
from xmodal.evaluate import finch


def blobs(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(5, 8)) * 3
    return np.concatenate([c + rng.normal(size=(rng.integers(5, 20), 8))
                           for c in centers]).astype(np.float32)


@pytest.mark.parametrize("seed", range(6))
def test_finch_partitions_and_requested_counts_match_the_authors_package(seed):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")     # finch-clust warns that pynndescent is absent
        from finch import FINCH
        x = blobs(seed)
        theirs, counts, _ = FINCH(x, distance="cosine", ensure_early_exit=False, verbose=False)
        ours = finch.partitions(x)
        assert [p.max() + 1 for p in ours] == list(counts)
        for level, labels in enumerate(ours):
            assert adjusted_rand_score(theirs[:, level], labels) == 1.0, level
        for k in (2, 3, counts[-1] + 1):
            _, _, wanted = FINCH(x, req_clust=k, distance="cosine", ensure_early_exit=False,
                                 verbose=False)
            got = finch.cluster(x, k)
            assert got.max() + 1 == k
            assert adjusted_rand_score(wanted, got) == 1.0, k


def test_time_weighting_changes_the_first_neighbour_by_hand():
    # Element 0 is nearer element 3 than element 1 in content, but 3 is three steps away in
    # time and 1 is next to it: weighted by |Δt|, element 1 becomes its first neighbour.
    x = np.array([[1.0, 0.0], [np.cos(0.284), np.sin(0.284)], [0.0, 1.0],
                  [np.cos(0.2), np.sin(0.2)]])
    d = 1 - np.cos([0.284, 0.2])                      # to 1: 0.0401, to 3: 0.0199
    assert d[1] < d[0]                                # plain: 3 is 0's first neighbour
    assert d[0] * 0.25 < d[1] * 0.75                  # weighted by |Δt|: 1 is
    plain = finch._distances(x, None)
    timed = finch._distances(x, finch._time(4, True))
    assert np.argmin(plain[0]) == 3 and np.argmin(timed[0]) == 1
    np.testing.assert_allclose(timed[0, [1, 3]], [d[0] * 0.25, d[1] * 0.75], rtol=1e-9)


def test_tw_finch_keeps_a_returning_topic_as_its_own_segment():
    # A lecture of three runs, topic A, topic B, then A again: plain FINCH puts both A runs in
    # one cluster; TW-FINCH cuts the three runs.
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=16), rng.normal(size=16)
    x = np.concatenate([a + 0.3 * rng.normal(size=(12, 16)), b + 0.3 * rng.normal(size=(12, 16)),
                        a + 0.3 * rng.normal(size=(12, 16))])
    truth = np.repeat([0, 1, 2], 12)
    timed = finch.cluster(x, 3, temporal=True)
    assert seg.mof(timed, truth) == 1.0 and seg.boundary_f1(timed, truth, 0) == 1.0
    plain = finch.cluster(x, 2)
    assert adjusted_rand_score(plain, np.repeat([0, 1, 0], 12)) == 1.0


def test_small_and_bad_input_has_a_defined_answer():
    one = np.ones((1, 4))
    np.testing.assert_array_equal(finch.cluster(one, 3, temporal=True), [0])
    x = blobs(0)[:5]
    np.testing.assert_array_equal(np.sort(finch.cluster(x, 9)), np.arange(5))  # k capped at n
    assert finch.cluster(x, 4).max() + 1 == 4
    with pytest.raises(ValueError, match="k >= 1"):
        finch.cluster(x, 0)
    with pytest.raises(ValueError, match=r"shape \(0, 4\)"):
        finch.partitions(np.zeros((0, 4)))
