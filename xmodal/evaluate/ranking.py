"""Ranking metrics beyond one-positive retrieval, computed in query chunks.

- ``person_retrieval_metrics``: Rank-K (CMC), mAP and mINP for text-to-image person retrieval
  as evaluated by IRRA (Jiang & Ye 2023): a gallery with several images of each identity, every
  gallery image of the query's identity is a positive. INP = |G| / R_hard, where R_hard is the
  position of the last positive (Ye et al. 2021, "Deep Learning for Person Re-identification: A
  Survey and Outlook").
- ``entity_linking_metrics``: Hits@K and MRR of the gold entity among all entities (multimodal
  entity linking, e.g. M3EL).
- ``tagging_metrics``: P@K, R@K and F1@K of the top-K tags of each item (multi-label tagging,
  e.g. M3PT).
- ``ndcg_at_k`` / ``graded_metrics``: nDCG@K with graded relevance, and R@1 at the top grade,
  of ranked lists that any retriever produced (e.g. GQR's fused and refined rankings);
  ``graded_chance`` is their expectation over a uniformly random order. The lists are made by
  the caller, so their ties are the caller's to break at random (GQR's ``refine.rank``).

Scores are float32 dot products (cosine similarity for L2-normalised embeddings), computed one
chunk of queries at a time by a jitted kernel; the last chunk is padded so it compiles once.

Ties never favour the truth (``xmodal.evaluate.ties``): Rank-K, Hits@K, MRR and the top-K tags'
P/R/F1 are their exact expectation over a random order of the tied items; mAP and mINP are
those of one fixed random order of the gallery among equal scores (seeded, the same for every
model), an unbiased estimate of that expectation. A model that scores everything alike thus
gets chance on each. Percentages are 0-100; MRR is a fraction in (0, 1] as in ``rank_summary``.
"""
from __future__ import annotations

import functools
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from xmodal.evaluate.retrieval import check_chunk_size, check_ks, check_query_gallery, ranks_t2i
from xmodal.evaluate.ties import TiedRanks




def check_labels(values, shape: tuple[int, ...], name: str, what: str) -> np.ndarray:
    values = np.asarray(values)
    if values.shape != shape:
        raise ValueError(f"{name} must have shape {shape}, {what}; got {values.shape}.")
    return values


def chunk_rows(kernel: Callable, queries: jax.Array, per_query: tuple[np.ndarray, ...],
               fixed: tuple, chunk_size: int) -> tuple[np.ndarray, ...]:
    """``kernel(query_chunk, *per_query_chunks, *fixed) -> tuple of [chunk]`` over all queries.

    ``per_query`` arrays have the queries along axis 0 and any trailing shape.
    """
    n = queries.shape[0]
    size = min(chunk_size, n)
    outs = []
    for start in range(0, n, size):
        stop = min(start + size, n)
        pad = size - (stop - start)
        q = jnp.pad(queries[start:stop], ((0, pad), (0, 0)))
        # Repeating the last row keeps padded queries valid; their results are dropped below.
        extra = [jnp.asarray(np.pad(a[start:stop], [(0, pad)] + [(0, 0)] * (a.ndim - 1),
                                    mode="edge")) for a in per_query]
        outs.append([r[:stop - start] for r in kernel(q, *extra, *fixed)])
    return tuple(np.concatenate([np.asarray(o[i]) for o in outs]) for i in range(len(outs[0])))


@jax.jit
def person_chunk(queries, query_ids, gallery, gallery_ids, tie_order):
    """Per query: the tie counts of its first positive (``ties.TiedRanks``), AP, INP and the
    number of positives.

    The gallery sorted by (score descending, ``tie_order``: a random permutation) is one random
    order of the ties; with hits_k the number of positives among its first k items,
    AP = 1/|G| sum_{k: item k positive} hits_k / k and INP = |G| / (position of the last
    positive).
    """
    scores = queries @ gallery.T
    is_pos = gallery_ids[None, :] == query_ids[:, None]
    order = jnp.broadcast_to(tie_order[None, :], scores.shape)
    _, _, matches = jax.lax.sort((-scores, order, is_pos.astype(jnp.int32)),
                                 dimension=1, num_keys=2)
    position = jnp.arange(1, scores.shape[1] + 1, dtype=jnp.float32)
    hits = jnp.cumsum(matches, axis=1).astype(jnp.float32)
    n_pos = hits[:, -1]
    safe = jnp.maximum(n_pos, 1.0)
    ap = jnp.sum(jnp.where(matches > 0, hits / position, 0.0), axis=1) / safe
    last = scores.shape[1] - jnp.argmax(matches[:, ::-1], axis=1)
    inp = n_pos / last.astype(jnp.float32)
    best = jnp.max(jnp.where(is_pos, scores, -jnp.inf), axis=1, keepdims=True)
    greater = jnp.sum((scores > best) & ~is_pos, axis=1)
    tied = jnp.sum((scores == best) & ~is_pos, axis=1)
    positives = jnp.sum((scores == best) & is_pos, axis=1)
    return greater, tied, positives, ap, inp, n_pos


def person_retrieval_metrics(query_emb, query_ids, gallery_emb, gallery_ids,
                             ks: Sequence[int] = (1, 5, 10),
                             chunk_size: int = 256, seed: int = 0) -> dict[str, float]:
    """Rank-K, mAP and mINP (percent) of queries against a gallery with identity labels.

    ``query_emb`` [Nq, D] (e.g. captions), ``query_ids`` [Nq], ``gallery_emb`` [Ng, D] (e.g.
    images), ``gallery_ids`` [Ng]; every gallery item with the query's id is a positive.
    Returns ``R@{k}`` (percent of queries with a positive in the top k), ``mAP``, ``mINP`` and
    ``num_queries``: queries with no positive in the gallery have no AP and are left out of
    every metric, so ``num_queries`` may be below Nq.
    """
    ks = check_ks(ks)
    check_chunk_size(chunk_size)
    q, g = check_query_gallery(query_emb, gallery_emb, "query_emb", "gallery_emb")
    qid = check_labels(query_ids, (q.shape[0],), "query_ids", "one identity per query")
    gid = check_labels(gallery_ids, (g.shape[0],), "gallery_ids", "one identity per item")
    for name, ids in (("query_ids", qid), ("gallery_ids", gid)):
        if not np.issubdtype(ids.dtype, np.integer):
            raise ValueError(f"{name} must be integer identity labels; got dtype {ids.dtype}.")
    # Dense int32 codes: raw ids may be int64 values that int32 device arrays cannot hold.
    _, codes = np.unique(np.concatenate([qid, gid]), return_inverse=True)
    codes = codes.astype(np.int32)
    tie_order = jnp.asarray(np.random.default_rng(seed).permutation(g.shape[0]), jnp.int32)
    *counts, ap, inp, n_pos = chunk_rows(person_chunk, q, (codes[:q.shape[0]],),
                                         (g, jnp.asarray(codes[q.shape[0]:]), tie_order),
                                         chunk_size)
    valid = n_pos > 0
    if not valid.any():
        raise ValueError(
            "no query has a positive in the gallery (no gallery_ids value equals any "
            "query_ids value); check that both use the same identity labels.")
    first = TiedRanks(*counts).select(valid)
    ap, inp = ap[valid], inp[valid]
    out = {f"R@{k}": float(100.0 * np.mean(first.hit_at(k))) for k in ks}
    out["mAP"] = float(100.0 * np.mean(ap))
    out["mINP"] = float(100.0 * np.mean(inp))
    out["num_queries"] = float(valid.sum())
    return out


def person_retrieval_chance(query_ids, gallery_ids, ks: Sequence[int] = (1, 5, 10)) -> dict:
    """What a random order of the gallery scores, per query with R positives among N items,
    averaged over the queries that have a positive:

        Rank-K = 1 - C(N-R, K) / C(N, K)
        AP     = H_N / N + (R-1)(N - H_N) / (N(N-1))          (H_N the N-th harmonic number)
        INP    = sum_{j=R..N} (R/j) C(j-1, R-1) / C(N, R)     (j: where the last positive falls)
    """
    from scipy.special import gammaln

    gid = np.asarray(gallery_ids)
    n = len(gid)
    counts = [int(np.sum(gid == q)) for q in np.asarray(query_ids)]
    counts = np.array([c for c in counts if c > 0])
    harmonic = float(np.sum(1.0 / np.arange(1, n + 1)))
    out = {}
    for k in check_ks(ks):
        kk = min(k, n)
        miss = np.exp(gammaln(n - counts + 1) + gammaln(n - kk + 1)
                      - gammaln(n - counts - kk + 1) - gammaln(n + 1))
        out[f"R@{k}"] = float(100.0 * np.mean(1.0 - np.where(n - counts >= kk, miss, 0.0)))
    ap = harmonic / n + (counts - 1) * (n - harmonic) / (n * max(n - 1, 1))
    out["mAP"] = float(100.0 * np.mean(ap))
    inp = []
    for r in counts:
        j = np.arange(r, n + 1)
        log_p = gammaln(j) - gammaln(r) - gammaln(j - r + 1) - (gammaln(n + 1) - gammaln(r + 1)
                                                                - gammaln(n - r + 1))
        inp.append(float(np.sum(r / j * np.exp(log_p))))
    out["mINP"] = float(100.0 * np.mean(inp))
    return out


def entity_linking_metrics(mention_emb, entity_emb, gold, ks: Sequence[int] = (1, 3, 5),
                           chunk_size: int = 256) -> dict[str, float]:
    """Hits@K (percent) and MRR of each mention's gold entity among all entities.

    ``mention_emb`` [Nm, D], ``entity_emb`` [Ne, D], ``gold`` [Nm] (entity index per mention).
    Returns ``H@{k}`` and ``MRR``; ranks are those of ``ranks_t2i``, mentions as the queries.
    """
    ks = check_ks(ks)
    m, e = check_query_gallery(mention_emb, entity_emb, "mention_emb", "entity_emb")
    gold = check_labels(gold, (m.shape[0],), "gold", "one entity index per mention")
    if not np.issubdtype(gold.dtype, np.integer) or gold.min() < 0 or gold.max() >= e.shape[0]:
        raise ValueError(
            f"gold must hold integer entity indices in [0, {e.shape[0]}) (rows of entity_emb); "
            f"got dtype {gold.dtype} and range [{gold.min()}, {gold.max()}].")
    ranks = ranks_t2i(e, m, gold, chunk_size)
    out = {f"H@{k}": float(100.0 * np.mean(ranks.hit_at(k))) for k in ks}
    out["MRR"] = float(np.mean(ranks.reciprocal_rank()))
    return out


@functools.partial(jax.jit, static_argnames="ks")
def tagging_chunk(queries, labels, tags, ks: tuple):
    """Per item and per K in ks: the expected number of positives among its top-K tags when
    the tags tied at the K-th score are drawn at random: the positives strictly above that
    score, plus the (K - number above) drawn from the tied ones times their positive share."""
    scores = queries @ tags.T
    top, _ = jax.lax.top_k(scores, max(ks))
    out = []
    for k in ks:
        kth = top[:, k - 1:k]
        above, at = scores > kth, scores == kth
        n_above = jnp.sum(above, axis=1).astype(jnp.float32)
        n_at = jnp.sum(at, axis=1).astype(jnp.float32)
        pos_above = jnp.sum(above & labels, axis=1).astype(jnp.float32)
        pos_at = jnp.sum(at & labels, axis=1).astype(jnp.float32)
        out.append(pos_above + (k - n_above) * pos_at / n_at)
    return jnp.stack(out, axis=1), jnp.sum(labels, axis=1)


def tagging_metrics(item_emb, tag_emb, labels, ks: Sequence[int] = (1, 3, 5),
                    chunk_size: int = 256) -> dict[str, float]:
    """P@K, R@K and F1@K (percent) of each item's top-K scoring tags.

    ``item_emb`` [N, D], ``tag_emb`` [T, D], ``labels`` [N, T] bool (True = the tag applies).
    For one item with positive tags P and top-K tags S_K:

        P@K = |S_K n P| / K,    R@K = |S_K n P| / |P|

    both averaged over items, and F1@K = 2 P@K R@K / (P@K + R@K) of the averages (0 when both
    are 0). Items without any positive tag have no recall and are left out; ``num_items``
    counts the items scored. Every K must be at most T.
    """
    ks = check_ks(ks)
    check_chunk_size(chunk_size)
    q, t = check_query_gallery(item_emb, tag_emb, "item_emb", "tag_emb")
    labels = check_labels(labels, (q.shape[0], t.shape[0]), "labels",
                          "[items, tags], True where the tag applies")
    if labels.dtype != np.bool_:
        raise ValueError(f"labels must be boolean (True = positive tag); got {labels.dtype}.")
    if max(ks) > t.shape[0]:
        raise ValueError(f"every k must be at most the number of tags {t.shape[0]}; got {ks}.")
    hits, n_pos = chunk_rows(functools.partial(tagging_chunk, ks=ks), q, (labels,), (t,),
                             chunk_size)
    valid = n_pos > 0
    if not valid.any():
        raise ValueError("no item has a positive tag (labels is all False); nothing to score.")
    hits, n_pos = hits[valid].astype(np.float64), n_pos[valid].astype(np.float64)
    out = {}
    for i, k in enumerate(ks):
        p = float(np.mean(hits[:, i] / k))
        r = float(np.mean(hits[:, i] / n_pos))
        out[f"P@{k}"] = 100.0 * p
        out[f"R@{k}"] = 100.0 * r
        out[f"F1@{k}"] = 100.0 * (2 * p * r / (p + r) if p + r > 0 else 0.0)
    out["num_items"] = float(valid.sum())
    return out


def check_ranked(ranked, relevance) -> tuple[np.ndarray, np.ndarray]:
    """int64 [Nq, K] item indices and float64 [Nq, N] grades, or a ValueError saying why not."""
    ranked = np.asarray(ranked)
    relevance = np.asarray(relevance, np.float64)
    if ranked.ndim != 2 or relevance.ndim != 2 or ranked.shape[0] != relevance.shape[0]:
        raise ValueError(f"ranked must be [Nq, K] item indices and relevance [Nq, N] grades for "
                         f"the same queries; got {ranked.shape} and {relevance.shape}.")
    if not np.issubdtype(ranked.dtype, np.integer) or ranked.size and (
            ranked.min() < 0 or ranked.max() >= relevance.shape[1]):
        raise ValueError(f"ranked must hold integer item indices in [0, {relevance.shape[1]}).")
    if (relevance < 0).any():
        raise ValueError("relevance grades must be >= 0.")
    return ranked.astype(np.int64), relevance


# The gain of a grade: trec_eval's ``ndcg`` (and so BEIR) uses the grade itself (Järvelin &
# Kekäläinen 2002); ``exponential`` is 2^rel - 1 (Burges et al. 2005, "Learning to rank using
# gradient descent"), which weighs the top grade more. Numbers are comparable only with the
# same gain, so every table says which it uses.
GAINS = {"linear": lambda rel: rel, "exponential": lambda rel: 2.0 ** rel - 1.0}


def ndcg_at_k(ranked, relevance, k: int, gain: str = "linear") -> np.ndarray:
    """nDCG@k of each query's ranked list, float64 [Nq], with log2 discount:

        DCG@k = sum_{j=1..k} gain(rel(d_j)) / log2(j + 1),   nDCG@k = DCG@k / ideal DCG@k

    ``gain``: ``linear`` (gain = rel, trec_eval's ``ndcg`` and BEIR) or ``exponential``
    (2^rel - 1); see ``GAINS``. ``ranked`` [Nq, >= k]: item indices, best first;
    ``relevance`` [Nq, N]: each item's grade (0 = not relevant). The ideal list sorts every item
    of the corpus by grade. A query with no relevant item has nDCG 0 (and its count should be
    reported beside it).
    """
    ranked, relevance = check_ranked(ranked, relevance)
    if not isinstance(k, (int, np.integer)) or not 1 <= k <= ranked.shape[1]:
        raise ValueError(f"k must be an int in [1, {ranked.shape[1]}] (the ranked lists' "
                         f"length); got {k!r}.")
    if gain not in GAINS:
        raise ValueError(f"gain must be one of {', '.join(GAINS)}; got {gain!r}.")
    to_gain = GAINS[gain]
    discount = 1.0 / np.log2(np.arange(2, k + 2))
    gains = to_gain(np.take_along_axis(relevance, ranked[:, :k], axis=1))
    ideal = to_gain(-np.sort(-relevance, axis=1)[:, :k])
    idcg = ideal @ discount
    return np.where(idcg > 0, (gains @ discount) / np.maximum(idcg, 1e-12), 0.0)


def graded_chance(relevance, ks: Sequence[int] = (5,), gain: str = "linear") -> dict[str, float]:
    """What ``graded_metrics`` gives a uniformly random order, in expectation: every position
    holds each item with probability 1/N, so E[DCG@k] = mean gain × sum_j 1/log2(j + 1), and
    R@1 is the share of the corpus at the query's top grade (means over the queries)."""
    relevance = np.asarray(relevance, np.float64)
    to_gain = GAINS[gain]
    out = {}
    for k in check_ks(ks):
        discount = 1.0 / np.log2(np.arange(2, k + 2))
        idcg = to_gain(-np.sort(-relevance, axis=1)[:, :k]) @ discount
        expected = to_gain(relevance).mean(axis=1) * discount.sum()
        out[f"nDCG@{k}"] = float(100.0 * np.mean(np.where(
            idcg > 0, expected / np.maximum(idcg, 1e-12), 0.0)))
    top = relevance.max(axis=1, keepdims=True)
    out["R@1"] = float(100.0 * np.mean(np.where(
        top[:, 0] > 0, (relevance == top).mean(axis=1), 0.0)))
    return out


def graded_metrics(ranked, relevance, ks: Sequence[int] = (5,),
                   gain: str = "linear") -> dict[str, float]:
    """``nDCG@{k}`` (percent, with ``gain``) and ``R@1``: percent of queries whose first item
    has the top grade the query has in the corpus (with graded relevance, "the" answer is an
    item of the highest grade; an item of a lower grade at rank 1 does not count)."""
    ranked, relevance = check_ranked(ranked, relevance)
    out = {f"nDCG@{k}": float(100.0 * ndcg_at_k(ranked, relevance, k, gain).mean())
           for k in check_ks(ks)}
    top = relevance.max(axis=1)
    first = np.take_along_axis(relevance, ranked[:, :1], axis=1)[:, 0]
    out["R@1"] = float(100.0 * np.mean((first == top) & (top > 0)))
    return out
