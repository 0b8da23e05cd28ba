"""Sample quality on the eight Gaussians: sliced Wasserstein distance to held-out points.

For each requested step count the objective's sampler (``xmodal.sampling.Sampler``; for a
distillation stage also its teacher, ``teacher_steps``) draws one sample per held-out point,
conditioned on that point's label, from fixed noise (seed ``seed``, the same for every row of
the table). Metrics, for a step count k:

- ``sw@k``: the sliced 2-Wasserstein distance (Rabin et al. 2011) between the samples and the
  held-out points, sqrt of the mean over ``n_proj`` fixed random directions of the 1-D W_2^2
  (ott-jax's ``tools.sliced.sliced_wasserstein`` with the squared Euclidean cost);
- ``mode_acc@k``: the fraction of samples whose nearest mode centre is their label's;
- ``sw_floor``: the same distance between a fresh draw of the true distribution with the same
  labels and the held-out points: what a perfect sampler scores at this sample size.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from xmodal import sampling
from xmodal.core.eval_context import EvalContext
from xmodal.core.registry import EVALUATORS, SpecError
from xmodal.data.sets.eight_gaussians import CENTRES, STD
from xmodal.distill.student import Distilled


def sliced_w2(a: np.ndarray, b: np.ndarray, n_proj: int = 256, seed: int = 0) -> float:
    from ott.tools import sliced  # ott-jax: only this evaluator needs it

    cost, _ = sliced.sliced_wasserstein(jnp.asarray(a, jnp.float32), jnp.asarray(b, jnp.float32),
                                        n_proj=n_proj, rng=jax.random.key(seed))
    return float(np.sqrt(max(float(cost), 0.0)))


def mode_accuracy(points: np.ndarray, labels: np.ndarray) -> float:
    nearest = np.argmin(((points[:, None, :] - CENTRES[None]) ** 2).sum(-1), axis=1)
    return float(np.mean(nearest == labels))


@EVALUATORS.register("sliced_wasserstein")
def sliced_wasserstein(steps: tuple = (1,), teacher_steps: tuple = (), max_examples: int = 2048,
                       n_proj: int = 256, seed: int = 0):
    """``steps``: step counts of the objective's sampler; ``teacher_steps``: of a distillation
    stage's teacher (``objective.teacher_sample``)."""
    steps, teacher_steps = tuple(int(k) for k in steps), tuple(int(k) for k in teacher_steps)
    if not steps and not teacher_steps or any(k < 1 for k in steps + teacher_steps):
        raise SpecError("sliced_wasserstein needs step counts >= 1 in steps or teacher_steps")

    def sampler_fn(method: str, k: int):
        def fn(params, noise, label, objective):
            return getattr(objective, method)(params, noise, {"x": noise, "label": label}, k)
        return fn

    fns: dict = {}

    def run(ctx: EvalContext) -> dict:
        obj = ctx.objective
        if not isinstance(obj, sampling.Sampler):
            raise SpecError(f"sliced_wasserstein: objective {type(obj).__name__} cannot sample")
        if teacher_steps and not isinstance(obj, Distilled):
            raise SpecError("sliced_wasserstein teacher_steps needs a distillation objective")
        n = min(max_examples, len(ctx.arrays["x"]))
        held_out, labels = ctx.arrays["x"][:n], ctx.arrays["label"][:n]
        noise = np.random.default_rng(seed).normal(size=held_out.shape).astype(np.float32)
        fresh = CENTRES[labels] + STD * np.random.default_rng(10_000 + seed).normal(
            size=held_out.shape)
        out = {"sw_floor": sliced_w2(fresh, held_out, n_proj, seed)}
        for prefix, method, ks in (("", "sample", steps), ("teacher_", "teacher_sample",
                                                            teacher_steps)):
            for k in ks:
                key = (id(obj), method, k)
                if key not in fns:  # one function per row, so the applier compiles it once
                    f = sampler_fn(method, k)
                    fns[key] = lambda p, z, c, f=f, obj=obj: f(p, z, c, obj)
                x = np.asarray(ctx.apply(fns[key], noise, labels))
                out[f"{prefix}sw@{k}"] = sliced_w2(x, held_out, n_proj, seed)
                out[f"{prefix}mode_acc@{k}"] = mode_accuracy(x, labels)
        return out
    return run
