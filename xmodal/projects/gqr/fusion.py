"""Score and rank fusion of two retrievers over the whole corpus, GQR's baselines:
``minmax`` ((1-α) minmax(s1) + α minmax(s2)), ``softmax`` ((1-α) softmax(s1/T1) + α
softmax(s2/T2)) and ``rrf`` (reciprocal-rank fusion, k = 60, Cormack et al. 2009)."""
from __future__ import annotations

import numpy as np

from xmodal.projects.gqr import refine as gqr

RRF_K = 60


def minmax(s: np.ndarray) -> np.ndarray:
    lo, hi = s.min(axis=1, keepdims=True), s.max(axis=1, keepdims=True)
    return (s - lo) / np.maximum(hi - lo, 1e-12)


def softmax(s: np.ndarray, t: float) -> np.ndarray:
    z = s / t - (s / t).max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def rrf(s1: np.ndarray, s2: np.ndarray, seed: int = 0) -> np.ndarray:
    """Reciprocal-rank fusion score over the whole corpus (ranks from 1, ties as in
    ``refine.rank``)."""
    out = np.zeros_like(s1, np.float64)
    for s in (s1, s2):
        order = gqr.rank(s, seed)
        ranks = np.empty_like(order)
        np.put_along_axis(ranks, order, np.arange(1, s.shape[1] + 1)[None, :], axis=1)
        out += 1.0 / (RRF_K + ranks)
    return out
