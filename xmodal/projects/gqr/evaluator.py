"""The GQR evaluator: folder-name queries against the held-out drawings, every baseline of the
paper's table, hyper-parameters chosen on the dev queries, reported on the test queries.

Queries and relevance come from the archive's folder tree (``folders``), which neither
retriever reads (the primary reads the drawing, the complementary ones the item text the
transform's ``guide`` names: keywords and description, or the title):
- a query is the name of a folder that files at least one eval item (``food/fruit`` asks
  "fruit", ``signs_and_symbols/flags`` asks "flags"); folders of the same name are one query,
  and the ``unsorted`` tree is not a subject, so it asks nothing;
- an item's grade is 2 when it is filed in such a folder or below it, 1 when it is filed only
  in the folder's parent or below (a vegetable for "fruit"), else 0;
- queries are split into dev and test by sha1(query) % 2 (dev: even) (``benchmark.py``).

Retrievers: the primary is the two-tower model's text→image cosine (query text against the
drawings); the complementary ones score the items' guide text (``corpus``): ``text`` (the
same model's text tower, query text against item text) and ``bm25`` (``lexical.BM25``).
Every ranking breaks equal scores in one seeded random order (``refine.rank``), so a
retriever that cannot tell items apart gets ``graded_chance`` (declared as ``run.chance``).

Methods per complementary retriever (test nDCG@K and R@1; dev-chosen settings reported too):
``primary``, ``complementary``, ``rrf``, ``minmax`` and ``softmax`` score fusion over the
corpus (``fusion.py``), ``mixture`` (p* over U, GQR's target without refinement),
``gqr`` (the refined primary), ``oracle_single`` (per query the better of the two retrievers,
chosen with the test labels: a ceiling for routing) and ``oracle_U`` (U in the ideal order: the
ceiling of any re-ranking of the candidates GQR sees). nDCG uses trec_eval's linear gain.
"""
from __future__ import annotations

import itertools
import json
import os
import time

import numpy as np

from xmodal.core.eval_context import EvalContext
from xmodal.core.registry import EVALUATORS
from xmodal.evaluate.lexical import BM25
from xmodal.evaluate.ranking import graded_chance, graded_metrics, ndcg_at_k
from xmodal.projects.gqr import refine as gqr
from xmodal.projects.gqr.benchmark import dev_mask, folder_relevance
from xmodal.projects.gqr.fusion import minmax, rrf, softmax
from xmodal.projects.gqr.transform import from_bytes

GAIN = "linear"      # trec_eval's and BEIR's nDCG, as the paper's ViDoRe numbers
KEYS = ("image", "corpus", "corpus_bytes", "folders_bytes")
COMPLEMENTARY = ("text", "bm25")


class Case:
    """One complementary retriever's run over a subset of the queries (dev or test)."""

    def __init__(self, rows, q_emb, img, s1, s2, rel, k, t1, seed):
        self.q_emb, self.img = q_emb[rows], img
        self.s1, self.s2, self.rel, self.t1 = s1[rows], s2[rows], rel[rows], t1
        self.seed = seed
        self.idx, self.valid = gqr.candidates(self.s1, self.s2, k, seed)
        self.s1_u = np.take_along_axis(self.s1, self.idx, axis=1)
        self.s2_u = np.take_along_axis(self.s2, self.idx, axis=1)

    def over_u(self, scores_u):
        return gqr.order_candidates(np.asarray(scores_u), self.idx, self.valid, self.seed)

    def mixture(self, alpha, t2):
        return np.asarray(gqr.target_mixture(self.s1_u, self.s2_u, self.valid, alpha, self.t1,
                                             t2))

    def refined(self, alpha, lr, t2, steps, kind):
        target = self.mixture(alpha, t2)
        q, losses = gqr.refine(self.q_emb, self.img[self.idx], self.valid, target, lr,
                               self.t1, steps=steps, kind=kind)
        q = np.asarray(q)
        q = q / np.linalg.norm(q, axis=1, keepdims=True)
        scores_u = np.einsum("nud,nd->nu", self.img[self.idx], q)
        return self.over_u(scores_u), np.asarray(losses)

    def ideal_u(self):
        return self.over_u(np.take_along_axis(self.rel, self.idx, axis=1)
                           + 1e-6 * self.s1_u)  # ties among equal grades: primary order


def best_on_dev(ndcg_of, grid):
    """The grid point with the highest dev nDCG (first one on ties) and that nDCG."""
    scored = [(ndcg_of(*point), i, point) for i, point in enumerate(grid)]
    best = max(scored, key=lambda x: (x[0], -x[1]))
    return best[2], best[0]


@EVALUATORS.register("gqr")
def gqr_evaluator(k: int = 10, ks: tuple = (5,), steps: int = 50, divergence: str = "kl",
                  complementary: tuple = COMPLEMENTARY,
                  alphas: tuple = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9),
                  lrs: tuple = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1),
                  bm25_temperatures: tuple = (0.5, 1.0, 2.0, 4.0, 8.0, 16.0),
                  temperature: float = 0.0,
                  seed: int = 0):
    """GQR and its baselines (module docstring). ``temperature`` T1 of the primary (and of the
    text complementary, also a cosine): 0 = the model's learned 1/exp(logit_scale); BM25's T2
    is chosen on dev from ``bm25_temperatures``. ``seed``: the order of equal scores."""
    ks = tuple(int(x) for x in ks)
    if divergence not in gqr.DIVERGENCES:
        raise ValueError(f"gqr divergence={divergence!r}; valid: {', '.join(gqr.DIVERGENCES)}")
    unknown = [c for c in complementary if c not in COMPLEMENTARY]
    if unknown or not complementary:
        raise ValueError(f"gqr complementary={tuple(complementary)!r}; valid: "
                         f"{', '.join(COMPLEMENTARY)}")
    if max(ks) > k:
        raise ValueError(f"gqr ks={ks} reach past the top-k={k} lists that U is made of")

    def benchmark(ctx: EvalContext):
        """The queries, their relevance [Nq, N] and the dev / test query rows."""
        ctx.require(KEYS, "gqr needs the gqr_items transform (openclipart 1.1.0 or later)")
        queries, rel = folder_relevance([from_bytes(r).split(", ") if r.any() else []
                                         for r in ctx.arrays["folders_bytes"]])
        dev = dev_mask(queries)
        splits = {"dev": np.flatnonzero(dev), "test": np.flatnonzero(~dev)}
        if min(len(v) for v in splits.values()) == 0:
            raise ValueError(f"gqr: {len(queries)} folder names give an empty dev or test "
                             "query set; the eval split is too small")
        return queries, rel, splits

    def run(ctx: EvalContext) -> dict:
        queries, rel, splits = benchmark(ctx)
        a = ctx.arrays
        corpus = [from_bytes(r) for r in a["corpus_bytes"]]
        modality = ctx.modalities[0]
        t1 = temperature or float(1.0 / np.exp(ctx.params["model"]["logit_scale"]))

        img = np.asarray(ctx.encode(modality, a[modality]), np.float32)
        start = time.perf_counter()   # a query's cost: encode it, score the index
        q_emb = np.asarray(ctx.encode("text", ctx.tokenize(queries)), np.float32)
        s1 = q_emb @ img.T
        primary_ms = 1e3 * (time.perf_counter() - start) / len(queries)
        out = {"queries_dev": float(len(splits["dev"])), "queries_test": float(len(splits["test"])),
               "items": float(len(corpus)), "mean_relevant": float((rel > 0).sum(1).mean()),
               "mean_grade_2": float((rel == 2).sum(1).mean()),
               "temperature": t1, "index_bytes/primary": float(img.nbytes),
               "latency_ms/primary": primary_ms}
        table = {}
        for comp in complementary:
            # Index built first; a query's cost is scoring it (the text tower reuses the
            # query embedding the primary computed, so its cost is the product alone).
            if comp == "text":
                item_txt = np.asarray(ctx.encode("text", a["corpus"]), np.float32)
                start = time.perf_counter()
                s2 = q_emb @ item_txt.T
                t2_grid, index_bytes = (t1,), item_txt.nbytes
            else:
                bm25 = BM25(corpus)
                start = time.perf_counter()
                s2 = bm25.scores(queries)
                t2_grid, index_bytes = tuple(bm25_temperatures), bm25.index_bytes
            out[f"latency_ms/{comp}"] = 1e3 * (time.perf_counter() - start) / len(queries)
            out[f"index_bytes/{comp}"] = float(index_bytes)
            case = {name: Case(rows, q_emb, img, s1, s2, rel, k, t1, seed)
                    for name, rows in splits.items()}

            def ndcg(ranked, split="dev"):
                return float(ndcg_at_k(ranked, case[split].rel, ks[0], GAIN).mean())

            def full(scores):
                return gqr.top_k_indices(scores, k, seed)

            # Rankings as functions of (split, hyper-parameters), so dev picks and test reports.
            methods = {
                "primary": (lambda c: full(c.s1), [()]),
                "complementary": (lambda c: full(c.s2), [()]),
                "rrf": (lambda c: full(rrf(c.s1, c.s2, seed)), [()]),
                "minmax": (lambda c, al: full((1 - al) * minmax(c.s1) + al * minmax(c.s2)),
                           [(al,) for al in alphas]),
                "softmax": (lambda c, al, t2: full((1 - al) * softmax(c.s1, c.t1)
                                                   + al * softmax(c.s2, t2)),
                            list(itertools.product(alphas, t2_grid))),
                "mixture": (lambda c, al, t2: c.over_u(c.mixture(al, t2)),
                            list(itertools.product(alphas, t2_grid))),
                "gqr": (lambda c, al, lr, t2: c.refined(al, lr, t2, steps, divergence)[0],
                        list(itertools.product(alphas, lrs, t2_grid))),
            }
            rows = {}
            for name, (rank, grid) in methods.items():
                point, dev_ndcg = best_on_dev(lambda *p: ndcg(rank(case["dev"], *p)), grid)
                rank(case["test"], *point)   # compiles for the test shapes: not timed
                start = time.perf_counter()
                ranked = rank(case["test"], *point)
                seconds = time.perf_counter() - start
                rows[name] = {**graded_metrics(ranked, case["test"].rel, ks, GAIN),
                              "dev_nDCG": 100.0 * dev_ndcg, "setting": point,
                              "ms_per_query": 1e3 * seconds / len(splits["test"])}
            test = case["test"]
            per_query = [ndcg_at_k(full(s), test.rel, ks[0], GAIN) for s in (test.s1, test.s2)]
            best_single = np.where(per_query[0] >= per_query[1], 0, 1)
            oracle = np.where(best_single[:, None] == 0, full(test.s1), full(test.s2))
            rows["oracle_single"] = graded_metrics(oracle, test.rel, ks, GAIN)
            rows["oracle_U"] = graded_metrics(test.ideal_u(), test.rel, ks, GAIN)
            # The refinement's own effect: the KL it reaches at the dev-chosen setting.
            al, lr, t2 = rows["gqr"]["setting"]
            _, losses = test.refined(al, lr, t2, steps, divergence)
            out[f"{comp}/gqr/loss_first"] = float(losses[:, 0].mean())
            out[f"{comp}/gqr/loss_last"] = float(losses[:, -1].mean())
            out[f"{comp}/gqr/alpha"], out[f"{comp}/gqr/lr"] = float(al), float(lr)
            out[f"{comp}/candidates"] = float(test.valid.sum(1).mean())
            for name, r in rows.items():
                for key, value in r.items():
                    if key != "setting":
                        out[f"{comp}/{name}/{key}"] = float(value)
            table[comp] = rows
        if ctx.out_dir:
            write_table(ctx.out_dir, table, out, ks[0], ctx.step)
        return out

    def chance(ctx: EvalContext) -> dict:
        """A random order's test metrics (``graded_chance``), for every row the model alone
        ranks: the primary, and the text complementary with every fusion of it (BM25 is not the
        model, so its rows have no chance level to meet)."""
        _, rel, splits = benchmark(ctx)
        level = graded_chance(rel[splits["test"]], ks, GAIN)
        rows = {f"{comp}/primary" for comp in complementary}
        if "text" in complementary:
            rows |= {f"text/{m}" for m in ("complementary", "rrf", "minmax", "softmax",
                                           "mixture", "gqr")}
        return {f"{row}/{key}": value for row in sorted(rows) for key, value in level.items()}

    run.chance = chance
    return run


def write_table(out_dir: str, table: dict, out: dict, k: int, step: int) -> None:
    """``gqr_table.json`` and ``gqr_table.md``: every method's test row per complementary."""
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "gqr_table.json"), "w") as f:
        json.dump({"step": step, "rows": table, "summary": out}, f, indent=2, default=list)
    lines = [f"Test queries: {out['queries_test']:.0f} (dev {out['queries_dev']:.0f}), "
             f"{out['items']:.0f} items; settings chosen on dev nDCG@{k}.", ""]
    for comp, rows in table.items():
        lines += [f"Complementary: {comp}", "",
                  f"| method | nDCG@{k} | R@1 | dev nDCG@{k} | setting | ms / query |",
                  "|---|---|---|---|---|---|"]
        for name, r in rows.items():
            dev = f"{r['dev_nDCG']:.1f}" if "dev_nDCG" in r else ""
            ms = f"{r['ms_per_query']:.3f}" if "ms_per_query" in r else ""
            lines.append(f"| {name} | {r[f'nDCG@{k}']:.1f} | {r['R@1']:.1f} | {dev} | "
                         f"{r.get('setting', '') or ''} | {ms} |")
        lines.append("")
    with open(os.path.join(out_dir, "gqr_table.md"), "w") as f:
        f.write("\n".join(lines))
