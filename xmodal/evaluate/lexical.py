"""Okapi BM25 over short texts: the lexical retriever beside the learned towers.

Written by hand (a scipy.sparse document-term matrix and the formula) rather than taken from
``rank_bm25`` or ``bm25s``: the scoring is a dozen lines, and either library would be a
dependency for one formula. The variant is Lucene's (Robertson–Walker idf with the +1 that
keeps it positive):

    idf(w)       = ln(1 + (N - df(w) + 0.5) / (df(w) + 0.5))
    score(q, d)  = sum_{w in q} idf(w) * tf(w, d) * (k1 + 1) / (tf(w, d) + k1 * (1 - b + b * |d| / avgdl))

Words are lower-cased runs of letters and digits (``words``); a query word repeated counts
once per occurrence, as in Lucene's BooleanQuery of SHOULD clauses.
"""
from __future__ import annotations

import re
from typing import Sequence

import numpy as np
import scipy.sparse as sp

WORD = re.compile(r"[^\W_]+", re.UNICODE)


def words(text: str) -> list[str]:
    """Lower-cased runs of letters and digits: ``"Red-eyed tree frog!"`` → red, eyed, tree, frog."""
    return WORD.findall(text.lower())


class BM25:
    """``BM25(documents).scores(queries)`` → float32 [Nq, Nd]; ``k1``, ``b`` as in Lucene."""

    def __init__(self, documents: Sequence[str], k1: float = 1.2, b: float = 0.75):
        if not documents:
            raise ValueError("BM25 needs at least one document")
        if k1 < 0 or not 0.0 <= b <= 1.0:
            raise ValueError(f"BM25 needs k1 >= 0 and 0 <= b <= 1; got k1={k1}, b={b}")
        self.k1, self.b = float(k1), float(b)
        self.vocab: dict[str, int] = {}
        rows, cols = [], []
        for d, text in enumerate(documents):
            for w in words(text):
                rows.append(d)
                cols.append(self.vocab.setdefault(w, len(self.vocab)))
        n = len(documents)
        tf = sp.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)),
                           shape=(n, max(1, len(self.vocab))))
        tf.sum_duplicates()
        length = np.asarray(tf.sum(axis=1)).ravel()
        avgdl = max(float(length.mean()), 1e-9)
        df = np.bincount(tf.indices, minlength=tf.shape[1])
        self.idf = np.log1p((n - df + 0.5) / (df + 0.5)).astype(np.float32)
        # The per-(document, word) weight does not depend on the query: store it, so a query
        # is one sparse row times this matrix.
        norm = self.k1 * (1.0 - self.b + self.b * length / avgdl)
        weight = tf.copy()
        weight.data = (tf.data * (self.k1 + 1.0)
                       / (tf.data + np.repeat(norm, np.diff(tf.indptr)))).astype(np.float32)
        self.weights = sp.csc_matrix(weight.multiply(self.idf[None, :]), dtype=np.float32)
        self.num_documents = n

    def query_matrix(self, queries: Sequence[str]) -> sp.csr_matrix:
        """[Nq, vocabulary] counts of each query's words (words not in any document dropped)."""
        rows, cols = [], []
        for q, text in enumerate(queries):
            for w in words(text):
                if w in self.vocab:
                    rows.append(q)
                    cols.append(self.vocab[w])
        return sp.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)),
                             shape=(len(queries), self.weights.shape[1]))

    def scores(self, queries: Sequence[str]) -> np.ndarray:
        """BM25 score of every document for every query, float32 [Nq, Nd] (0 = no shared word)."""
        if not queries:
            raise ValueError("BM25.scores needs at least one query")
        return np.asarray((self.query_matrix(queries) @ self.weights.T).toarray(), np.float32)

    @property
    def index_bytes(self) -> int:
        """Memory of the index: the sparse weight matrix and the idf vector (the vocabulary's
        Python dict is left out; its size depends on the interpreter)."""
        w = self.weights
        return int(w.data.nbytes + w.indices.nbytes + w.indptr.nbytes + self.idf.nbytes)
