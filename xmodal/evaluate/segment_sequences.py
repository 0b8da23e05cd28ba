"""Segmenting held-out sequences (lectures, videos) into topics without labels, scored against
the true segments: the ``segmentation`` evaluator.

Each sequence of the eval split (its clips share ``sequence``, ordered by ``order``) is cut
into as many clusters as it has true segments (``truth``; the number is given, as in the
TW-FINCH and lecture-segmentation papers), by each method on each feature set:

- methods: ``uniform`` (k equal runs; no features), ``kmeans`` (scikit-learn, 10 starts, seed
  0), ``finch`` and ``twfinch`` (``xmodal.evaluate.finch``);
- features (``features``: display name -> recipe): a recipe is eval-array keys and
  ``model:<modality>`` towers joined by ``+``, e.g. ``"image+audio_features"`` or
  ``"model:image+model:text"``. Each part is flattened (images pooled to ``pool`` px first), centred
  on its sequence's mean (what every clip of a lecture shares says nothing about where topics
  change) and unit-normalised; parts are concatenated. Centring uses only the sequence's own
  features, never its labels.

A ``constant`` feature set is always scored: every clip the same vector, what a collapsed model
outputs. Its rows are where a method stands on time alone (``twfinch``'s temporal links) or on
ties; a learned embedding that does not beat them has learned nothing usable.
Metrics (``xmodal.evaluate.segmentation``) are averaged over sequences, in percent.
Writes ``segmentation_table.{json,md}`` and, for ``plot`` (a feature set), a time line per
sequence (``segments_<i>.png``: truth and each method's segments).
"""
from __future__ import annotations

import os

import numpy as np

from xmodal.core.eval_context import EvalContext
from xmodal.core.registry import EVALUATORS
from xmodal.evaluate import finch
from xmodal.evaluate import segmentation as seg

METHODS = ("uniform", "kmeans", "finch", "twfinch")
CONSTANT = "constant (a collapsed model)"
NO_FEATURES = "none"


def segment(method: str, x: np.ndarray, k: int) -> np.ndarray:
    """Labels [n] of ``method`` on features ``x`` [n, d] (rows in time order), k clusters."""
    n = len(x)
    if method == "uniform":
        return seg.uniform(n, k)
    if method in ("finch", "twfinch"):
        return finch.cluster(x, k, temporal=method == "twfinch")
    if method == "kmeans":
        import warnings
        from sklearn.cluster import KMeans
        k = min(k, n)
        with warnings.catch_warnings():      # identical rows: fewer distinct clusters than k
            warnings.simplefilter("ignore")
            return KMeans(n_clusters=k, n_init=10, random_state=0).fit_predict(x)
    raise ValueError(f"segmentation method {method!r}; methods: {', '.join(METHODS)}")


def prepare(x: np.ndarray, pool: int = 0) -> np.ndarray:
    """One feature part of one sequence: flattened (an image batch [n, S, S, C] mean-pooled to
    ``pool`` px first), centred on the sequence's mean, rows unit-normalised."""
    x = np.asarray(x, np.float64)
    if x.ndim == 4 and pool and x.shape[1] > pool:
        f = x.shape[1] // pool
        x = x[:, :pool * f, :pool * f].reshape(len(x), pool, f, pool, f, -1).mean((2, 4))
    x = x.reshape(len(x), -1)
    x = x - x.mean(0, keepdims=True)
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    return np.where(norm > 1e-9, x / np.maximum(norm, 1e-12), 0.0)


def feature_parts(ctx: EvalContext, recipe: str) -> list[np.ndarray]:
    """The whole split's arrays of each part of ``recipe`` (before per-sequence preparation)."""
    parts = []
    for part in recipe.split("+"):
        if part.startswith("model:"):
            modality = part[len("model:"):]
            ctx.require([modality], f"segmentation feature {part!r} encodes eval array "
                                    f"{modality!r}")
            parts.append(ctx.encode(modality, ctx.arrays[modality]))
        else:
            ctx.require([part], f"segmentation feature {part!r} is an eval array")
            parts.append(ctx.arrays[part])
    return parts


def sequences(ctx: EvalContext, sequence: str, order: str) -> list[np.ndarray]:
    """Indices of each sequence's clips in time order; sequences by first appearance."""
    ids, pos = ctx.arrays[sequence], ctx.arrays[order]
    _, first = np.unique(ids, return_index=True)
    return [np.flatnonzero(ids == ids[i])[np.argsort(pos[ids == ids[i]], kind="stable")]
            for i in np.sort(first)]


@EVALUATORS.register("segmentation")
def segmentation(features: dict | None = None, methods: tuple = METHODS, sequence: str = "lecture",
                 order: str = "position", truth: str = "segment", tolerance: int = 1,
                 pool: int = 16, plot: str = ""):
    """Returns ``<feature>/<method>/<metric>`` (percent, averaged over sequences),
    ``one_cluster/<metric>``, ``sequences`` and ``clips`` (module docstring). Its chance levels
    are each method's score on constant features: a collapsed model scores exactly those."""
    features = dict(features or {"image": "image"})
    for m in methods:
        if m not in METHODS:
            raise ValueError(f"segmentation method {m!r}; methods: {', '.join(METHODS)}")
    if plot and plot not in features:
        raise ValueError(f"segmentation plot={plot!r} is not a feature set: {sorted(features)}")

    clustering = [m for m in methods if m != "uniform"]

    def scored(ctx: EvalContext, named: dict, plots: list | None = None) -> dict:
        """``{feature set: {method: {metric: percent}}}``; the uniform row under
        NO_FEATURES; ``plots`` collects the ``plot`` feature set's segments per sequence."""
        ctx.require([sequence, order, truth], "segmentation needs each clip's sequence, order "
                                              "and true segment")
        seqs = sequences(ctx, sequence, order)
        truths = [ctx.arrays[truth][idx] for idx in seqs]
        ks = [len(np.unique(t)) for t in truths]
        rows: dict = {}
        if "uniform" in methods:          # needs no features: one row
            rows[NO_FEATURES] = {"uniform": mean_scores(
                [seg.scores(seg.uniform(len(t), k), t, tolerance) for t, k in zip(truths, ks)])}
        for name, parts in named.items():
            per_method = {m: [] for m in clustering}
            for s, (idx, true, k) in enumerate(zip(seqs, truths, ks)):
                x = np.concatenate([prepare(p[idx], pool) for p in parts], axis=1)
                preds = {m: segment(m, x, k) for m in clustering}
                for m in clustering:
                    per_method[m].append(seg.scores(preds[m], true, tolerance))
                if plots is not None and name == plot:
                    if "uniform" in methods:
                        preds = {"uniform": seg.uniform(len(true), k), **preds}
                    plots.append((s, true, preds))
            rows[name] = {m: mean_scores(per_method[m]) for m in clustering}
        return rows

    def one_cluster(ctx: EvalContext) -> dict:
        return mean_scores([seg.single_cluster(ctx.arrays[truth][idx], tolerance)
                            for idx in sequences(ctx, sequence, order)])

    def constant(ctx: EvalContext) -> list[np.ndarray]:
        return [np.zeros((len(ctx.arrays[truth]), 1))]

    def run(ctx: EvalContext) -> dict:
        named = {**{name: feature_parts(ctx, r) for name, r in features.items()},
                 CONSTANT: constant(ctx)}
        plots: list = []
        rows = scored(ctx, named, plots if ctx.out_dir else None)
        chance = one_cluster(ctx)
        n_seq, n_clips = len(sequences(ctx, sequence, order)), len(ctx.arrays[truth])
        if ctx.out_dir:
            from xmodal.evaluate.segment_report import time_line, write_table
            write_table(ctx.out_dir, rows, chance, n_seq, n_clips, tolerance)
            for s, true, preds in plots:
                time_line(os.path.join(ctx.out_dir, f"segments_{s}.png"), true, preds,
                          f"held-out sequence {s}, {len(true)} clips; features: {plot}")
        return dict(flatten(rows), **{f"one_cluster/{k}": v for k, v in chance.items()},
                    sequences=float(n_seq), clips=float(n_clips))

    def chance(ctx: EvalContext) -> dict:
        """What each method scores with nothing to go on, for every feature set: its score on
        constant features (TW-FINCH's is time alone); uniform runs, which read no features,
        are their own; and one cluster per sequence."""
        rows = scored(ctx, {CONSTANT: constant(ctx)})
        const = rows[CONSTANT]
        out = {f"{slug(name)}/{m}/{metric}": const[m][metric]
               for name in (*features, CONSTANT) for m in clustering for metric in seg.METRICS}
        if NO_FEATURES in rows:
            out.update(flatten({NO_FEATURES: rows[NO_FEATURES]}))
        out.update({f"one_cluster/{k}": v for k, v in one_cluster(ctx).items()})
        return out
    run.chance = chance
    return run


def flatten(rows: dict) -> dict:
    """``{feature set: {method: {metric: v}}}`` -> ``{"<feature>/<method>/<metric>": v}``."""
    return {f"{slug(name)}/{m}/{metric}": v for name, r in rows.items()
            for m, ms in r.items() for metric, v in ms.items()}


def mean_scores(per_sequence: list[dict]) -> dict:
    """Each metric's mean over sequences, in percent."""
    return {m: 100 * float(np.mean([r[m] for r in per_sequence])) for m in seg.METRICS}


def slug(name: str) -> str:
    out = "".join(c if c.isalnum() else "_" for c in name.lower())
    return "_".join(filter(None, out.split("_")))
