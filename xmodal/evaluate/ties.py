"""Ties scored as a random tie-break scores them on average, so ties never favour the truth.

A model that gives every candidate the same score (a collapsed embedding, a language whose
sentences it cannot tell apart) knows nothing, and must score chance. Counting a tie in the
truth's favour (rank = 1 + the number of items strictly above it) gives such a model perfect
recall; breaking it by position (``argmax``, ``top_k``, a stable sort) rewards whatever order
the candidates came in. Here every metric is the exact expectation over a uniformly random
order of the tied items, computed in closed form (no sampling):

- ``expected_hit``: a multiple-choice question is worth 1/n when the truth is one of n options
  sharing the best score, 0 when it is not among them.
- ``TiedRanks``: the rank of the first positive when ``greater`` non-positive items score
  strictly above the best positive and, at that score, ``tied`` non-positive items share it
  with ``positives`` positives. The number X of tied non-positives placed before the first
  positive then has P(X >= j) = C(tied, j) / C(tied + positives, j), and rank = greater + 1 + X.
  With one positive X is uniform on 0..tied.
"""
from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np
from scipy.special import gammaln


def expected_hit(scores, truth: int) -> float:
    """1/n if ``scores[truth]`` is one of the n largest-and-equal scores, else 0."""
    scores = np.asarray(scores)
    best = scores.max()
    if scores[truth] < best:
        return 0.0
    return 1.0 / float(np.sum(scores == best))


def _tail(tied: np.ndarray, positives: np.ndarray, j: np.ndarray) -> np.ndarray:
    """P(X >= j) = C(tied, j) / C(tied + positives, j), elementwise; 0 where j > tied."""
    m = tied + positives
    ok = (j <= tied) & (j >= 0)
    jj = np.where(ok, j, 0)
    log_p = gammaln(tied + 1) + gammaln(m - jj + 1) - gammaln(tied - jj + 1) - gammaln(m + 1)
    return np.where(j <= 0, 1.0, np.where(ok, np.exp(log_p), 0.0))


@dataclasses.dataclass(frozen=True)
class TiedRanks:
    """Per query: ``greater`` non-positives strictly above the best positive, ``tied``
    non-positives equal to it, ``positives`` positives at that score (1 for one positive)."""
    greater: np.ndarray
    tied: np.ndarray
    positives: np.ndarray | None = None

    def __post_init__(self):
        g = np.asarray(self.greater, np.int64)
        object.__setattr__(self, "greater", g)
        object.__setattr__(self, "tied", np.asarray(self.tied, np.int64))
        p = np.ones_like(g) if self.positives is None else np.asarray(self.positives, np.int64)
        object.__setattr__(self, "positives", p)

    def __len__(self) -> int:
        return len(self.greater)

    def select(self, mask) -> "TiedRanks":
        return TiedRanks(self.greater[mask], self.tied[mask], self.positives[mask])

    def hit_at(self, k: int) -> np.ndarray:
        """P(rank <= k) per query."""
        return 1.0 - _tail(self.tied, self.positives, k - self.greater)

    def expected_rank(self) -> np.ndarray:
        """E[rank] = greater + 1 + tied / (positives + 1)."""
        return self.greater + 1.0 + self.tied / (self.positives + 1.0)

    def reciprocal_rank(self, cutoff: int | None = None) -> np.ndarray:
        """E[1 / rank] per query: sum over j of P(X = j) / (greater + 1 + j). With ``cutoff``
        k, a rank beyond k counts 0: the average precision at k of a query with one relevant
        item (mAP@k, as DCASE's audio-text retrieval reports it)."""
        def inverse(rank):
            return np.where(rank <= (cutoff or np.inf), 1.0 / rank, 0.0)
        out = inverse(self.greater + 1.0)
        for i in np.flatnonzero(self.tied > 0):  # a loop only over queries that have ties
            j = np.arange(self.tied[i] + 1)
            t, p = self.tied[i], self.positives[i]
            pmf = _tail(t, p, j) - _tail(t, p, j + 1)
            out[i] = float(np.sum(pmf * inverse(self.greater[i] + 1.0 + j)))
        return out

    @classmethod
    def exact(cls, ranks) -> "TiedRanks":
        """Ranks with no ties (rank = greater + 1)."""
        ranks = np.asarray(ranks, np.int64)
        return cls(ranks - 1, np.zeros_like(ranks))


def summary(ranks: TiedRanks, ks: Sequence[int], prefix: str) -> dict[str, float]:
    """R@k in percent, median and mean (expected) rank, and MRR, ties at their expectation."""
    sep = "_" if prefix else ""
    out = {f"{prefix}{sep}R@{k}": float(100.0 * np.mean(ranks.hit_at(k))) for k in ks}
    expected = ranks.expected_rank()
    out[f"{prefix}{sep}medr"] = float(np.median(expected))
    out[f"{prefix}{sep}meanr"] = float(np.mean(expected))
    out[f"{prefix}{sep}mrr"] = float(np.mean(ranks.reciprocal_rank()))
    return out
