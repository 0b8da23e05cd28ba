"""MVL-SIB's multiple-choice topical-matching tasks over any embeddings, scored per language.

MVL-SIB (Schmidt et al., 2025) asks whether a model matches a sentence and images by *topic*,
not by object: a topic is shown by k reference items, and there are always ``n_options`` = 4
choices, so chance is 25 %. Two shapes of task, each cross-modal (references are images) or
text-only (references are sentences in the same language):

- ``one_to_sets`` (sentence → topic): the query is one sentence; the options are n_options
  topics (its own and n_options − 1 others), each shown by k references. Cross-modal this is
  the paper's s2i, text-only its sentence → sentence-sets task.
- ``set_to_one`` (topic → sentence): the query is k references of one topic; the options are
  n_options sentences, one of that topic and one from each of n_options − 1 other topics.
  Cross-modal this is the paper's i2s.

An option's score is the mean cosine between it and the references (the references' mean
direction, as a prototype classifier would use). The query's own item (the stamp whose
sentence is asked about) is never among its references, so an image can not be matched to its
own caption: only its topic helps. Options and references are drawn with a generator seeded
from (seed, task, language), so every model is asked exactly the same questions.

A question is worth 1 when the truth alone has the best score, 1/n when it shares the best score
with n − 1 other options, 0 otherwise (``evaluate.ties.expected_hit``: a random tie-break on
average). The truth is listed first, but the score depends on the option scores only, never on
their order, so a model that cannot tell the options apart (identical embeddings, a language it
cannot read) scores 1/n_options, chance.
"""
from __future__ import annotations

import zlib
from typing import Mapping, Sequence

import numpy as np

from xmodal.evaluate.ties import expected_hit

N_OPTIONS = 4


def rng_for(seed: int, *names: str) -> np.random.Generator:
    """The same questions for every model and run: a generator keyed by seed and names."""
    return np.random.default_rng([seed, zlib.crc32("/".join(names).encode())])


def unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def check_languages(requested: Sequence[str], available: Sequence[str]) -> list[str]:
    """``requested`` in order; an unknown code is one error naming the valid ones."""
    unknown = [code for code in requested if code not in available]
    if unknown:
        raise ValueError(f"mvl_sib: unknown language code(s) {', '.join(unknown)}; valid: "
                         f"{', '.join(sorted(available))}")
    return list(requested)


def _check(k: int, n_options: int) -> None:
    if not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"mvl_sib: k (references per topic) must be a positive int, got {k!r}")
    if not isinstance(n_options, (int, np.integer)) or n_options < 2:
        raise ValueError(f"mvl_sib: n_options must be an int of at least 2, got {n_options!r}")


def _pool(topics: np.ndarray, items: np.ndarray | None = None) -> dict[int, np.ndarray]:
    return {int(t): np.flatnonzero(topics == t) for t in np.unique(topics)}


def _references(pool: np.ndarray, items: np.ndarray, exclude_item: int, k: int,
                rng: np.random.Generator) -> np.ndarray | None:
    """k reference rows of a topic's pool, none of them the item ``exclude_item``."""
    rows = pool[items[pool] != exclude_item]
    if len(rows) < k:
        return None
    return rng.choice(rows, size=k, replace=False)


def one_to_sets(query: np.ndarray, query_topic: np.ndarray, query_item: np.ndarray,
                refs: np.ndarray, ref_topic: np.ndarray, ref_item: np.ndarray, k: int,
                rng: np.random.Generator, n_options: int = N_OPTIONS) -> np.ndarray:
    """Sentence → topic. Returns the score in [0, 1] of each answered query, −1 where it could
    not be asked (its topic has fewer than k references besides its own item)."""
    _check(k, n_options)
    query, refs = unit(query), unit(refs)
    pools = _pool(ref_topic, ref_item)
    eligible = [t for t, rows in pools.items() if len(rows) >= k]
    out = np.full(len(query), -1.0)
    for i in range(len(query)):
        own = int(query_topic[i])
        others = [t for t in eligible if t != own]
        if own not in pools or len(others) < n_options - 1:
            continue
        correct = _references(pools[own], ref_item, int(query_item[i]), k, rng)
        if correct is None:
            continue
        options = [correct] + [_references(pools[t], ref_item, int(query_item[i]), k, rng)
                               for t in rng.choice(others, n_options - 1, replace=False)]
        if any(o is None for o in options):
            continue
        scores = [float((refs[o] @ query[i]).mean()) for o in options]
        out[i] = expected_hit(scores, 0)
    return out


def set_to_one(answers: np.ndarray, answer_topic: np.ndarray, answer_item: np.ndarray,
               refs: np.ndarray, ref_topic: np.ndarray, ref_item: np.ndarray, k: int,
               rng: np.random.Generator, n_options: int = N_OPTIONS) -> np.ndarray:
    """Topic → sentence: one question per answer row (its topic shown by k references, not
    from its own item; the distractors one sentence each from other topics). Score in [0, 1],
    or −1."""
    _check(k, n_options)
    answers, refs = unit(answers), unit(refs)
    ref_pools, answer_pools = _pool(ref_topic, ref_item), _pool(answer_topic, answer_item)
    out = np.full(len(answers), -1.0)
    for i in range(len(answers)):
        own = int(answer_topic[i])
        others = [t for t in answer_pools if t != own]
        if own not in ref_pools or len(others) < n_options - 1:
            continue
        shown = _references(ref_pools[own], ref_item, int(answer_item[i]), k, rng)
        if shown is None:
            continue
        options = [i] + [int(rng.choice(answer_pools[t]))
                         for t in rng.choice(others, n_options - 1, replace=False)]
        prototype = refs[shown].mean(axis=0)
        scores = answers[options] @ prototype
        out[i] = expected_hit(scores, 0)
    return out


def accuracy(outcomes: np.ndarray) -> tuple[float, int]:
    """Percent correct over the answered questions, and how many were answered."""
    asked = outcomes >= 0
    n = int(asked.sum())
    return (100.0 * float(outcomes[asked].mean()) if n else float("nan")), n


def resource_trend(accuracy_by_language: Mapping[str, float],
                   resource_by_language: Mapping[str, float]) -> dict[str, float]:
    """Least-squares slope of accuracy (points) per decade of a language's resource (e.g. its
    training captions) and Spearman's rho: the paper's finding is that cross-modal accuracy
    falls faster than text-only as the resource shrinks, i.e. a larger cross-modal slope."""
    from scipy import stats

    langs = [code for code in accuracy_by_language
             if code in resource_by_language and np.isfinite(accuracy_by_language[code])]
    if len(langs) < 3:
        raise ValueError(f"mvl_sib: a trend needs at least 3 languages with a resource count, "
                         f"got {len(langs)}")
    x = np.log10(np.maximum([resource_by_language[c] for c in langs], 1.0))
    y = np.array([accuracy_by_language[c] for c in langs])
    fit = stats.linregress(x, y)
    return {"slope_per_decade": float(fit.slope),
            "spearman": float(stats.spearmanr(x, y).statistic), "languages": float(len(langs))}
