"""InstaRevive's dynamic control of the distillation's noise levels, as a DMD noise control
(``xmodal.distill.noise_control``). The paper's text available here is its abstract ("a dynamic
diffusing scope ... ensuring accurate distribution matching gradients"), so the rule is ours:

- signal: gap = mean |x - x_clean|, the student's one-step restoration against the batch's
  clean image (paired data: restoration knows the answer for its training images);
- state: gap_ema (EMA of the gap, decay ``decay``) and gap_peak (the largest gap_ema so far);
- noise levels: the generator's t ~ U[t_lo, t_max] with

      r = clip(gap_ema / gap_peak, floor, 1),   t_lo = t_max - r (t_max - t_min)

  the whole range [t_min, t_max] while the student is as far from the clean images as it has
  been (large noise: global structure), narrowing towards the data end (t = 1: fine detail) as
  it closes the gap, to the lowest-noise fraction ``floor`` of the range once the gap is at
  ``floor`` of its peak.

Why the peak and not the first step's gap: the student starts as the teacher's one-step
sample and the distribution-matching gradient first moves it *away* from the paired image
(runlocal: 0.1955 at step 1, 0.2085 by step 200). Measured against the first step, the
ratio stayed above 1, the range never narrowed, and the student trained bit for bit as
plain DMD.
"""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from xmodal.core.registry import SpecError
from xmodal.distill.noise_control import NOISE_CONTROLS


@NOISE_CONTROLS.register("instarevive_dynamic")
@dataclasses.dataclass(frozen=True)
class DynamicControl:
    decay: float = 0.98
    floor: float = 0.25

    def __post_init__(self):
        if not (0.0 < self.decay < 1.0 and 0.0 < self.floor <= 1.0):
            raise SpecError("instarevive_dynamic needs 0 < decay < 1 and 0 < floor <= 1; got "
                            f"decay={self.decay}, floor={self.floor}")

    def observe(self, x, data) -> dict:
        return {"clean_gap": jnp.mean(jnp.abs(x - data))}

    def init_state(self) -> dict:
        return {"gap_ema": jnp.zeros((), jnp.float32), "gap_peak": jnp.zeros((), jnp.float32)}

    def update(self, state, signals) -> dict:
        gap = signals["clean_gap"]
        first = state["gap_peak"] <= 0
        ema = jnp.where(first, gap, self.decay * state["gap_ema"] + (1 - self.decay) * gap)
        return {"gap_ema": ema, "gap_peak": jnp.maximum(state["gap_peak"], ema)}

    def ratio(self, state) -> jax.Array:
        """r: the smoothed gap over its peak, clipped to [floor, 1]; 1 before the first step."""
        r = jnp.where(state["gap_peak"] > 0,
                      state["gap_ema"] / jnp.maximum(state["gap_peak"], 1e-12), 1.0)
        return jnp.clip(r, self.floor, 1.0)

    def t_low(self, state, t_min: float, t_max: float) -> jax.Array:
        return t_max - self.ratio(state) * (t_max - t_min)



def plot(stage_dir: str, path: str) -> bool:
    """The control over a trained stage's steps as a PNG at ``path``: the logged gap, its EMA
    and peak (left axis) and the generator's noise range [t_lo, t_max] (right axis). False
    (nothing written) when the stage logged no dynamic-control state."""
    from xmodal.core.writers import read_metrics

    rows = [r for r in read_metrics(stage_dir) if "train/state/gap_peak" in r]
    if not rows:
        return False
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    step = [r["step"] for r in rows]
    fig, ax = plt.subplots(figsize=(6.0, 3.2), dpi=120)
    ax.plot(step, [r["train/fake_score/clean_gap"] for r in rows], color="tab:grey",
            linewidth=0.7, label="gap (logged window mean)")
    ax.plot(step, [r["train/state/gap_ema"] for r in rows], color="tab:blue", label="gap EMA")
    ax.plot(step, [r["train/state/gap_peak"] for r in rows], color="tab:blue", linestyle="--",
            label="gap peak")
    ax.set_xlabel("step")
    ax.set_ylabel("mean |x - x_clean|")
    gen = [r for r in rows if "train/generator/t_low" in r]
    right = ax.twinx()
    right.plot([r["step"] for r in gen], [r["train/generator/t_low"] for r in gen],
               color="tab:orange", label="t_lo (generator's lowest t)")
    right.set_ylim(0, 1)
    right.set_ylabel("t (1 = data)")
    lines = ax.get_legend_handles_labels()
    more = right.get_legend_handles_labels()
    ax.legend(lines[0] + more[0], lines[1] + more[1], fontsize=6, loc="lower left")
    ax.set_title("dynamic control: gap and noise range", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return True
