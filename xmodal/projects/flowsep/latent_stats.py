"""The mel VAE stage's evaluator: reconstruction error and the latent's std on held-out audio.

The std the flow stage scales by is not this one: it is the VAE stage's output on its training
split (``MelVAEObjective.stage_outputs``, ``stage_outputs.json``); this is the held-out check.
"""
from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from xmodal.core.eval_context import EvalContext
from xmodal.core.registry import EVALUATORS


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
        return {"recon_l1": float(np.mean(out["l1"])), "latent_std": float(np.std(out["mean"]))}
    return run
