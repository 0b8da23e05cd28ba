"""Image–text retrieval metrics (Recall@K, median/mean rank, MRR), computed in query chunks.

Scores are float32 dot products of the embeddings (assumed L2-normalised, i.e. cosine
similarity). Queries are scored against the whole gallery ``chunk_size`` at a time by one jitted
kernel, so the [N_queries, N_gallery] score matrix never exists; the last chunk is padded so the
kernel compiles once.

Rank rule: rank = 1 + (number of NON-positive gallery items whose score is higher than the
positive's score), with the non-positives that TIE with it placed at random: every metric is its
exact expectation over that random order (``xmodal.evaluate.ties``), so a model that scores
everything alike gets chance (R@K = K/N, median rank (N+1)/2), never a perfect score. Other
positives never push a positive down. For image→text, an image's positive score is the best score
over all its texts (COCO-style: an image has several captions, retrieving any one of them counts);
its texts tied at that score share the random order with the tied non-positives.
"""
from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from xmodal.evaluate.ties import TiedRanks, summary as tied_summary


def check_query_gallery(queries, gallery, name_q: str, name_g: str) -> tuple[jax.Array, jax.Array]:
    """float32 [Nq, D] and [Ng, D] arrays, or a ValueError naming both arguments' shapes."""
    q = jnp.asarray(queries, jnp.float32)
    g = jnp.asarray(gallery, jnp.float32)
    if q.ndim != 2 or g.ndim != 2:
        raise ValueError(
            f"{name_q} and {name_g} must be 2-D [N, D]; got {tuple(q.shape)} and "
            f"{tuple(g.shape)}.")
    if q.shape[1] != g.shape[1]:
        raise ValueError(
            f"{name_q} {tuple(q.shape)} and {name_g} {tuple(g.shape)} have different embedding "
            f"dims; both towers must project to the same dimension.")
    if q.shape[0] == 0 or g.shape[0] == 0:
        raise ValueError(
            f"need at least one query and one gallery item; got {name_q} {tuple(q.shape)} and "
            f"{name_g} {tuple(g.shape)}.")
    return q, g


def check_embeddings(img_emb, txt_emb, txt_to_img) -> tuple[jax.Array, jax.Array, np.ndarray]:
    """float32 [Ni, D], [Nt, D] arrays and an int64 [Nt] index, or a ValueError saying why not."""
    img, txt = check_query_gallery(img_emb, txt_emb, "img_emb", "txt_emb")
    index = np.asarray(txt_to_img)
    if index.shape != (txt.shape[0],):
        raise ValueError(
            f"txt_to_img must have shape [Nt] = ({txt.shape[0]},), one image index per text; "
            f"got {index.shape}.")
    if not np.issubdtype(index.dtype, np.integer):
        raise ValueError(f"txt_to_img must hold integer image indices; got dtype {index.dtype}.")
    if index.min() < 0 or index.max() >= img.shape[0]:
        raise ValueError(
            f"txt_to_img values must lie in [0, {img.shape[0]}) (the number of images); got "
            f"range [{index.min()}, {index.max()}].")
    return img, txt, index.astype(np.int64)


def check_chunk_size(chunk_size: int) -> None:
    if not isinstance(chunk_size, (int, np.integer)) or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive int; got {chunk_size!r}.")


@jax.jit
def t2i_chunk(queries: jax.Array, positive: jax.Array, gallery: jax.Array) -> jax.Array:
    """[B, 3]: per query, the gallery items strictly above gallery[positive[q]], those tied with
    it (itself not counted) and 1 positive (see ``ties.TiedRanks``)."""
    scores = queries @ gallery.T
    pos = jnp.take_along_axis(scores, positive[:, None], axis=1)
    greater = jnp.sum(scores > pos, axis=1)
    tied = jnp.sum(scores == pos, axis=1) - 1
    return jnp.stack([greater, tied, jnp.ones_like(greater)], axis=1)


@jax.jit
def i2t_chunk(queries: jax.Array, query_ids: jax.Array, gallery: jax.Array,
              gallery_owner: jax.Array) -> jax.Array:
    """[B, 3] counts (greater, tied, positives at the best score) of each query's best positive;
    positives are the gallery items the query owns."""
    scores = queries @ gallery.T
    is_pos = gallery_owner[None, :] == query_ids[:, None]
    best = jnp.max(jnp.where(is_pos, scores, -jnp.inf), axis=1, keepdims=True)
    greater = jnp.sum((scores > best) & ~is_pos, axis=1)
    tied = jnp.sum((scores == best) & ~is_pos, axis=1)
    positives = jnp.sum((scores == best) & is_pos, axis=1)
    return jnp.stack([greater, tied, positives], axis=1)


def chunked(kernel, queries: jax.Array, per_query: np.ndarray, fixed: tuple,
            chunk_size: int) -> np.ndarray:
    """``kernel(query_chunk, per_query_chunk, *fixed)`` over query chunks of one padded shape."""
    n = queries.shape[0]
    size = min(chunk_size, n)
    out = []
    for start in range(0, n, size):
        stop = min(start + size, n)
        pad = size - (stop - start)
        q = jnp.pad(queries[start:stop], ((0, pad), (0, 0)))
        # Repeating the last entry keeps padded rows valid; their ranks are dropped below.
        extra = jnp.asarray(np.pad(per_query[start:stop], (0, pad), mode="edge"))
        # Kept as device arrays so the next chunk is dispatched while this one computes.
        out.append(kernel(q, extra, *fixed)[:stop - start])
    return np.concatenate([np.asarray(r) for r in out]).astype(np.int64)


def _tied(counts: np.ndarray) -> TiedRanks:
    return TiedRanks(counts[:, 0], counts[:, 1], counts[:, 2])


def ranks_t2i(img_emb, txt_emb, txt_to_img, chunk_size: int = 256) -> TiedRanks:
    """Rank (1 = best) of each text's image among all images, [Nt] queries, ties at random."""
    img, txt, index = check_embeddings(img_emb, txt_emb, txt_to_img)
    check_chunk_size(chunk_size)
    return _tied(chunked(t2i_chunk, txt, index, (img,), chunk_size))


def ranks_i2t(img_emb, txt_emb, txt_to_img,
              chunk_size: int = 256) -> tuple[np.ndarray, TiedRanks]:
    """Rank (1 = best) of the best of each image's texts among all texts, ties at random.

    Images without any text have no positive and are left out. Returns ``(image_ids, ranks)``:
    the sorted indices of the images that have at least one text, and their ranks.
    """
    img, txt, index = check_embeddings(img_emb, txt_emb, txt_to_img)
    check_chunk_size(chunk_size)
    image_ids = np.unique(index)
    queries = img[jnp.asarray(image_ids)]
    counts = chunked(i2t_chunk, queries, image_ids, (txt, jnp.asarray(index)), chunk_size)
    return image_ids, _tied(counts)


def ranks_from_scores(scores, positive) -> TiedRanks:
    """Ranks from a whole score matrix ``[Q, G]`` (higher = better) whose query q has the one
    positive ``positive[q]``, ties at random (module docstring). For scorers that give a matrix
    rather than embeddings (a captioner's likelihoods)."""
    scores = np.asarray(scores, np.float64)
    positive = np.asarray(positive, np.int64)
    if scores.ndim != 2 or positive.shape != (scores.shape[0],):
        raise ValueError(f"ranks_from_scores: scores {scores.shape} must be [Q, G] with one "
                         f"positive per query, got positives {positive.shape}")
    pos = scores[np.arange(len(scores)), positive][:, None]
    return TiedRanks(np.sum(scores > pos, 1), np.sum(scores == pos, 1) - 1)


def rank_summary(ranks, ks: Sequence[int], prefix: str) -> dict[str, float]:
    """R@k in percent, median and mean rank, and mean reciprocal rank: of a ``TiedRanks``
    (each at its expectation over a random order of the ties), or of exact int ranks."""
    if not isinstance(ranks, TiedRanks):
        ranks = TiedRanks.exact(ranks)
    return tied_summary(ranks, ks, prefix)


def check_ks(ks: Sequence[int]) -> tuple[int, ...]:
    ks = tuple(ks)
    if not ks or any(not isinstance(k, (int, np.integer)) or k < 1 for k in ks):
        raise ValueError(f"ks must be a non-empty sequence of positive ints, e.g. (1, 5, 10); "
                         f"got {ks!r}.")
    return ks


def retrieval_metrics(img_emb, txt_emb, txt_to_img, ks: Sequence[int] = (1, 5, 10),
                      chunk_size: int = 256) -> dict[str, float]:
    """Text→image and image→text retrieval metrics, as reported for COCO / Flickr30k.

    ``img_emb`` [Ni, D], ``txt_emb`` [Nt, D] and ``txt_to_img`` [Nt] (index of each text's image;
    several texts may share an image). Returns ``t2i_R@{k}`` and ``i2t_R@{k}`` in percent
    (0-100), ``{t2i,i2t}_medr`` (median rank), ``{t2i,i2t}_meanr`` and ``{t2i,i2t}_mrr`` (mean
    of 1/rank). Ranks follow the rule in the module docstring.
    """
    ks = check_ks(ks)
    t2i = ranks_t2i(img_emb, txt_emb, txt_to_img, chunk_size)
    _, i2t = ranks_i2t(img_emb, txt_emb, txt_to_img, chunk_size)
    return {**rank_summary(t2i, ks, "t2i"), **rank_summary(i2t, ks, "i2t")}
