"""Segmentation and clustering scores against values worked out by hand; a prediction that
puts every element in one cluster scores chance, whatever order the elements come in."""
import math

import numpy as np
import pytest

from xmodal.evaluate import segmentation as seg

TRUE = np.array([0, 0, 0, 0, 1, 1, 1, 1, 2, 2])     # three topics: 4, 4, 2 clips


def test_a_renamed_perfect_segmentation_scores_one_everywhere():
    pred = np.array([7, 7, 7, 7, 3, 3, 3, 3, 5, 5])
    assert seg.scores(pred, TRUE) == {"NMI": pytest.approx(1.0), "MoF": 1.0, "IoU": 1.0,
                                      "F1": 1.0}


def test_mof_and_iou_match_clusters_one_to_one_by_hand():
    # Two clusters for three topics: cluster 0 covers topic 0 and half of topic 1.
    pred = np.array([0, 0, 0, 0, 0, 0, 1, 1, 1, 1])
    # The best one-to-one pairing: cluster 0 -> topic 0 (4 clips), cluster 1 -> topic 1 (2)
    # or topic 2 (2): 6 of 10 either way.
    assert seg.mof(pred, TRUE) == pytest.approx(0.6)
    # IoU: topic 0 vs cluster 0: 4 / 6; the matched one of topics 1, 2 vs cluster 1: 2 / 6
    # (topic 1: |{6,7}| / |{4..9}|) or 2 / 4 (topic 2: |{8,9}| / |{6..9}|); the Hungarian tie
    # may take either, so check both.
    assert seg.iou(pred, TRUE) in (pytest.approx((4 / 6 + 2 / 6) / 3),
                                   pytest.approx((4 / 6 + 2 / 4) / 3))


def test_nmi_by_hand():
    # Two equal halves against a prediction that moves one element across: MI / mean entropy.
    true = np.array([0, 0, 1, 1])
    pred = np.array([0, 1, 1, 1])
    p_t, p_p = np.array([.5, .5]), np.array([.25, .75])
    joint = np.array([[.25, 0], [.25, .5]])      # [pred, true]
    mi = sum(joint[i, j] * math.log(joint[i, j] / (p_p[i] * p_t[j]))
             for i in range(2) for j in range(2) if joint[i, j] > 0)
    h = lambda p: -sum(x * math.log(x) for x in p)   # noqa: E731
    assert seg.nmi(pred, true) == pytest.approx(mi / ((h(p_t) + h(p_p)) / 2))


def test_boundary_f1_counts_a_maximum_matching_within_the_tolerance():
    true = np.zeros(20, int)
    true[5:], true[8:] = 1, 2                        # boundaries at 5 and 8
    pred = np.zeros(20, int)
    pred[7:], pred[10:], pred[15:] = 1, 2, 3         # boundaries at 7, 10, 15
    # tolerance 2: 7 may match 5 or 8, 10 only 8: the maximum matching pairs 7-5 and 10-8
    # (nearest-first would pair 7 with 8, at distance 1, and leave 10 unmatched).
    f1 = lambda p, r: 2 * p * r / (p + r)            # noqa: E731
    assert seg.boundary_f1(pred, true, tolerance=2) == pytest.approx(f1(2 / 3, 1))
    assert seg.boundary_f1(pred, true, tolerance=1) == pytest.approx(f1(1 / 3, 1 / 2))
    assert seg.boundary_f1(pred, true, tolerance=0) == 0.0
    one = np.zeros(6, int)
    assert seg.boundary_f1(one, one) == 1.0          # nothing to find, nothing found
    with pytest.raises(ValueError, match="tolerance -1"):
        seg.boundary_f1(pred, true, tolerance=-1)


@pytest.mark.parametrize("seed", range(3))
def test_one_cluster_scores_chance_in_any_order(seed):
    order = np.random.default_rng(seed).permutation(len(TRUE))
    true = TRUE[order]
    chance = seg.single_cluster(true)
    assert chance["NMI"] == 0.0
    assert chance["MoF"] == pytest.approx(0.4)            # the largest topic's share
    assert chance["IoU"] == pytest.approx(0.4 / 3)        # one topic matched: 4 / 10
    assert chance["F1"] == 0.0
    # a constant with any id is the same prediction
    assert seg.scores(np.full(len(true), 9), true) == chance


def test_uniform_runs_and_bad_input():
    np.testing.assert_array_equal(seg.uniform(7, 3), [0, 0, 0, 1, 1, 2, 2])
    np.testing.assert_array_equal(seg.uniform(2, 5), [0, 1])   # at most one run per element
    # runs 0-3, 4-6, 7-9 against topics 0-3, 4-7, 8-9: 4 + 3 + 2 matched
    assert seg.mof(seg.uniform(10, 3), TRUE) == pytest.approx(0.9)
    with pytest.raises(ValueError, match="3 predicted and 2 true"):
        seg.mof([0, 1, 2], [0, 1])
    with pytest.raises(ValueError, match="0 predicted and 0 true"):
        seg.nmi([], [])
