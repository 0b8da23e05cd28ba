"""Scores of a clustering or temporal segmentation against the true one, per sequence.

A sequence (a lecture's clips, a video's frames) has a true label per element and a predicted
cluster id per element; the ids of the two need not agree (an unsupervised method names its
clusters arbitrarily), so every score here is invariant to renaming the predicted ids:

- ``nmi``: normalised mutual information (scikit-learn's, arithmetic-mean normaliser), 0 for a
  prediction that puts every element in one cluster.
- ``mof``: mean over frames: the share of elements whose predicted cluster is matched to their
  true label, clusters matched one-to-one to labels by the Hungarian method (scipy's
  ``linear_sum_assignment``) to maximise that share. One cluster scores the largest label's
  share.
- ``iou``: the mean over true labels of |T ∩ P| / |T ∪ P| with P the cluster matched to T
  (0 for a label left unmatched: fewer clusters than labels), the same matching as ``mof``.
- ``boundary_f1``: boundaries are the positions i where the label changes from i - 1; a
  predicted boundary within ``tolerance`` positions of a true one matches it, each at most
  once (the most such pairs: a maximum matching); F1 of precision and recall. A sequence
  with no true boundary and none predicted scores 1.

``single_cluster`` scores what a method that cannot tell elements apart gets (every element in
one cluster: the chance level the evaluators report beside each metric), ``uniform`` what
cutting the sequence into k equal runs gets (the baseline every segmentation paper reports).

scipy.optimize and scikit-learn are imported in the functions that use them: registry discovery
imports this module in every run, and the two cost ~1.7 s of start-up.
"""
from __future__ import annotations

import numpy as np

METRICS = ("NMI", "MoF", "IoU", "F1")


def _labels(pred, true) -> tuple[np.ndarray, np.ndarray]:
    pred, true = np.asarray(pred).ravel(), np.asarray(true).ravel()
    if pred.shape != true.shape or pred.size == 0:
        raise ValueError(f"segmentation: {pred.size} predicted and {true.size} true labels; "
                         "one per element, at least one element")
    return pred, true


def contingency(pred, true) -> np.ndarray:
    """[clusters, labels] counts of elements, rows and columns in sorted id order."""
    pred, true = _labels(pred, true)
    _, p = np.unique(pred, return_inverse=True)
    _, t = np.unique(true, return_inverse=True)
    table = np.zeros((p.max() + 1, t.max() + 1), np.int64)
    np.add.at(table, (p, t), 1)
    return table


def matching(pred, true) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The contingency table and the Hungarian pairs (cluster rows, label columns) that
    maximise the matched elements."""
    table = contingency(pred, true)
    from scipy.optimize import linear_sum_assignment
    rows, cols = linear_sum_assignment(table, maximize=True)
    return table, rows, cols


def nmi(pred, true) -> float:
    pred, true = _labels(pred, true)
    from sklearn.metrics import normalized_mutual_info_score
    return float(normalized_mutual_info_score(true, pred))


def mof(pred, true) -> float:
    table, rows, cols = matching(pred, true)
    return float(table[rows, cols].sum() / table.sum())


def iou(pred, true) -> float:
    table, rows, cols = matching(pred, true)
    inter = table[rows, cols]
    union = table.sum(1)[rows] + table.sum(0)[cols] - inter
    return float((inter / union).sum() / table.shape[1])


def boundaries(labels) -> np.ndarray:
    """Positions i (1 ≤ i < n) where ``labels[i] != labels[i - 1]``."""
    labels = np.asarray(labels).ravel()
    return np.flatnonzero(labels[1:] != labels[:-1]) + 1


def boundary_f1(pred, true, tolerance: int = 1) -> float:
    pred, true = _labels(pred, true)
    if tolerance < 0:
        raise ValueError(f"boundary tolerance {tolerance} must be >= 0")
    bp, bt = boundaries(pred), boundaries(true)
    if len(bp) == 0 and len(bt) == 0:
        return 1.0
    if len(bp) == 0 or len(bt) == 0:
        return 0.0
    # The most one-to-one pairs within the tolerance (a maximum matching): greedy nearest-first
    # matching can pair a boundary with the one another needed and count one hit too few.
    close = np.abs(bp[:, None] - bt[None, :]) <= tolerance
    from scipy.optimize import linear_sum_assignment
    rows, cols = linear_sum_assignment(close, maximize=True)
    hits = int(close[rows, cols].sum())
    if hits == 0:
        return 0.0
    precision, recall = hits / len(bp), hits / len(bt)
    return float(2 * precision * recall / (precision + recall))


def scores(pred, true, tolerance: int = 1) -> dict[str, float]:
    """Every metric in ``METRICS``, as fractions (0-1)."""
    return {"NMI": nmi(pred, true), "MoF": mof(pred, true), "IoU": iou(pred, true),
            "F1": boundary_f1(pred, true, tolerance)}


def single_cluster(true, tolerance: int = 1) -> dict[str, float]:
    """What one cluster for every element scores: the chance level of each metric."""
    true = np.asarray(true).ravel()
    return scores(np.zeros_like(true), true, tolerance)


def uniform(n: int, k: int) -> np.ndarray:
    """Labels cutting ``n`` elements into ``k`` runs of equal length (±1); k is capped at n."""
    if n < 1 or k < 1:
        raise ValueError(f"uniform segmentation of {n} elements into {k} runs")
    return (np.arange(n) * min(k, n)) // n
