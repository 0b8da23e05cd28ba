"""The mel VAE stage's evaluator: reconstruction error on held-out audio, and the latent's std,
which it saves (``latent_stats.json`` in the stage workdir, once per checkpoint step) for the
flow stage to scale by."""
from __future__ import annotations

import json
import os

import jax.numpy as jnp
import numpy as np

from xmodal.core.registry import EVALUATORS
from xmodal.core.eval_context import EvalContext
from xmodal.projects.flowsep.objective import LATENT_STATS


def _same_step(path: str, step: int) -> bool:
    try:
        with open(path) as f:
            return json.load(f).get("step") == step
    except (OSError, ValueError):
        return False


@EVALUATORS.register("mel_vae")
def mel_vae_eval(max_examples: int = 256):
    """``recon_l1`` (normalised log-mel units) and ``latent_std`` over targets and mixtures."""
    def run(ctx: EvalContext) -> dict:
        obj = ctx.objective
        n = min(max_examples, len(ctx.arrays["target"]))
        waves = np.concatenate([ctx.arrays["target"][:n], ctx.arrays["mixture"][:n]])

        def fn(params, wave):
            mel = obj.mel.mel(wave)
            mean, _ = obj.model.apply({"params": params["model"]}, mel, method="encode")
            recon = obj.model.apply({"params": params["model"]}, mean, method="decode")
            return {"l1": jnp.mean(jnp.abs(recon - mel), (1, 2)), "mean": mean}

        out = ctx.apply(fn, waves)
        std = float(np.std(out["mean"]))
        stats = {"latent_std": std, "latent_mean": float(np.mean(out["mean"])),
                 "step": ctx.step, "examples": int(len(waves))}
        path = os.path.join(ctx.workdir, LATENT_STATS) if ctx.workdir else ""
        if path and not _same_step(path, ctx.step):
            # Written once per trained step: the flow stage scales its latents by this std, so
            # a later --mode=eval (maybe on fewer examples) must not change it under a trained flow.
            os.makedirs(ctx.workdir, exist_ok=True)
            with open(path, "w") as f:
                json.dump(stats, f, indent=2)
        return {"recon_l1": float(np.mean(out["l1"])), "latent_std": std}
    return run
