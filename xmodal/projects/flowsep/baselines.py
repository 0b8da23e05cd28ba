"""Separation baselines and the scoring of any separator's estimates.

- ``mixture_estimate``: the unprocessed mixture (the floor: SI-SDRi = 0 by definition);
- ``oracle_irm``: the ideal ratio mask computed from the true target (an upper bound for
  real-valued masks on the mixture's STFT);
- ``mask_estimates``: a trained discriminative text-queried mask network
  (``specs/text_mask_sep.py``; model ``mask_separator``);
- ``score_estimates``: the mean metrics of a set of estimates, for the FlowSep table;
- evaluator ``mask_separation``: SI-SDR/SI-SDRi/log-mel distance of the mask network on the
  eval split, beside the mixture and the oracle IRM.
"""
from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from xmodal.audio import dsp as audio
from xmodal.core.eval_context import EvalContext
from xmodal.core.registry import EVALUATORS
from xmodal.core.stages import load_stage
from xmodal.evaluate.separation import (frechet_distance, log_mel_distance, si_sdr,
                                                sdr_improvement)

QUERY_PREFIX = "separate the "
CLAP_PROMPT = "{article} {label} playing a short phrase"


def mixture_estimate(mixture) -> np.ndarray:
    """The 'do nothing' baseline: the mixture itself as the estimate of the target."""
    return np.array(mixture, dtype=np.float32, copy=True)


def oracle_irm(mixture, target, n_fft: int = 1024, hop: int = 256,
               power: float = 1.0) -> np.ndarray:
    """Ideal ratio mask with the mixture's phase (Wang, Narayanan & Wang, "On Training Targets
    for Supervised Speech Separation", 2014):

        M = |S|^p / (|S|^p + |N|^p),   N = mixture − target,   ŝ = iSTFT(M ⊙ X)

    ``power=1`` (default): the magnitude form |S| / (|S| + |N|); ``power=2``: the power
    (Wiener-like) form. Bins where both are ~0 get M = 0. ``[B, T]`` (or ``[T]``) in and out.
    It needs the true target, so it is an oracle: an upper bound for a real mask, not a method.
    """
    mix = np.asarray(mixture, np.float32)
    tgt = np.asarray(target, np.float32)
    if mix.shape != tgt.shape or mix.ndim not in (1, 2):
        raise ValueError(f"oracle_irm: mixture and target must be [B, T] or [T] of the same "
                         f"shape, got {mix.shape} and {tgt.shape}")
    x = audio.stft(jnp.asarray(mix), n_fft, hop)
    s = audio.magnitude(audio.stft(jnp.asarray(tgt), n_fft, hop)) ** power
    n = audio.magnitude(audio.stft(jnp.asarray(mix - tgt), n_fft, hop)) ** power
    mask = s / jnp.maximum(s + n, 1e-12)
    return np.asarray(audio.istft(x * mask, n_fft, hop, length=mix.shape[-1]), np.float32)


# ------------------------------------------------------------------------------ mask network

def load_mask_separator(workdir: str):
    """(model, params, spec) of a trained ``specs/text_mask_sep.py`` workdir, newest step."""
    stage = load_stage(workdir).expect(model="mask_separator", what="mask_from")
    return stage.model, jax.tree.map(jnp.asarray, stage.params["model"]), stage.spec


def mask_estimates(workdir: str, mixture, query_tokens, sample_rate: int | None = None,
                   batch_size: int = 16) -> np.ndarray:
    """Estimates ``[B, T]`` of a trained mask network for mixtures ``[B, T]`` and query tokens
    ``[B, L]`` (the ByteTokenizer encoding of "separate the violin", as the transform makes).

    Mixtures are taken at the model's training rate (its spec's ``data.transform.sample_rate``)
    unless ``sample_rate`` says otherwise; then they are resampled to it and back.
    """
    model, params, spec = load_mask_separator(workdir)
    model_rate = int(spec["data"]["transform"].get("sample_rate", 16000))
    mix = np.asarray(mixture, np.float32)
    tokens = np.asarray(query_tokens, np.int32)
    if mix.ndim != 2 or tokens.ndim != 2 or len(mix) != len(tokens):
        raise ValueError(f"mask_estimates takes mixtures [B, T] and tokens [B, L], got "
                         f"{mix.shape} and {tokens.shape}")
    length = mix.shape[1]
    rate = int(sample_rate or model_rate)
    if rate != model_rate:
        mix = audio.resample(mix, rate, model_rate)
    fn = jax.jit(lambda p, m, q: model.apply({"params": p}, m, q)[0])
    out = []
    for i in range(0, len(mix), batch_size):
        m, q = mix[i:i + batch_size], tokens[i:i + batch_size]
        pad = batch_size - len(m)
        if pad:  # one compiled shape
            m = np.concatenate([m, np.repeat(m[-1:], pad, 0)])
            q = np.concatenate([q, np.repeat(q[-1:], pad, 0)])
        out.append(np.asarray(fn(params, jnp.asarray(m), jnp.asarray(q)))[:batch_size - pad])
    est = np.concatenate(out)
    if rate != model_rate:
        est = audio.resample(est, model_rate, rate)
        est = np.pad(est, ((0, 0), (0, max(0, length - est.shape[1]))))[:, :length]
    return est.astype(np.float32)



# ------------------------------------------------------------------------------ scoring

def clap_text(query: str, prompt: str = CLAP_PROMPT) -> str:
    """'separate the violin' -> 'a violin playing a short phrase' (the captions the audio-text
    model was trained on); a query without the prefix is used as the label as it is."""
    label = query[len(QUERY_PREFIX):] if query.startswith(QUERY_PREFIX) else query
    article = "an" if label[:1].lower() in "aeiou" and label else "a"
    return prompt.format(article=article, label=label)


def score_estimates(estimates, targets, mixtures, queries: Sequence[str], sample_rate: int,
                    scorer=None, n_fft: int = 1024, hop: int = 256, n_mels: int = 64,
                    prompt: str = CLAP_PROMPT) -> dict:
    """Mean metrics of estimates ``[B, T]`` against targets, for one row of a results table:

    ``si_sdr``, ``sdri`` (SI-SDRi over the mixture), ``log_mel_distance`` (n_fft/hop/n_mels as
    given), and with an ``AudioTextScorer`` (``clap_score.load_clap``) also ``fd`` (Fréchet
    distance between the audio embeddings of the estimates and of the targets) and
    ``clap_score`` (mean cosine of each estimate's audio embedding with its query's text
    embedding, the query turned into a caption by ``clap_text``). Audio is resampled from
    ``sample_rate`` to the scorer's rate for embedding. Non-finite estimate samples are an error.
    """
    est = np.asarray(estimates, np.float32)
    tgt = np.asarray(targets, np.float32)
    mix = np.asarray(mixtures, np.float32)
    if not (est.shape == tgt.shape == mix.shape) or est.ndim != 2:
        raise ValueError(f"estimates, targets and mixtures must all be [B, T]; got {est.shape}, "
                         f"{tgt.shape}, {mix.shape}")
    if len(queries) != len(est):
        raise ValueError(f"{len(est)} estimates but {len(queries)} queries")
    out = {"si_sdr": float(np.mean(si_sdr(est, tgt))),
           "sdri": float(np.mean(sdr_improvement(est, tgt, mix))),
           "log_mel_distance": float(np.mean(log_mel_distance(
               est, tgt, sample_rate, n_mels=n_mels, n_fft=n_fft, hop=hop)))}
    if scorer is not None:
        def up(x):
            return (x if scorer.sample_rate == sample_rate
                    else audio.resample(x, int(sample_rate), scorer.sample_rate))
        za, zref = scorer.embed_audio(up(est)), scorer.embed_audio(up(tgt))
        zt = scorer.embed_text([clap_text(q, prompt) for q in queries])
        out["fd"] = frechet_distance(za, zref)
        out["clap_score"] = float(np.mean(np.sum(za * zt, axis=1)))
    return out


# ------------------------------------------------------------------------------ evaluator

@EVALUATORS.register("mask_separation")
def mask_separation_eval(n_fft: int = 1024, hop: int = 256, n_mels: int = 64,
                         irm_n_fft: int = 0, irm_hop: int = 0):
    """On the eval split (``separation`` transform): SI-SDR, SI-SDRi and log-mel distance of the
    mask network, and the same for the unprocessed mixture and the oracle IRM (computed on the
    model's STFT unless ``irm_n_fft``/``irm_hop`` are set), so one run shows all three."""
    def run(ctx: EvalContext) -> dict:
        mixture = np.asarray(ctx.arrays["mixture"], np.float32)
        target = np.asarray(ctx.arrays["target"], np.float32)
        sr = ctx.transform.sample_rate
        model = ctx.model
        estimate = ctx.apply(_estimate_fn(model), mixture, np.asarray(ctx.arrays["query"]))
        irm = oracle_irm(mixture, target, irm_n_fft or model.n_fft, irm_hop or model.hop)
        out = {}
        for name, est in (("mask", estimate), ("mixture", mixture), ("oracle_irm", irm)):
            out[f"{name}_si_sdr"] = float(np.mean(si_sdr(est, target)))
            out[f"{name}_sdri"] = float(np.mean(sdr_improvement(est, target, mixture)))
            out[f"{name}_log_mel_distance"] = float(np.mean(log_mel_distance(
                est, target, sr, n_mels=n_mels, n_fft=n_fft, hop=hop)))
        return out
    return run


_FNS: dict = {}


def _estimate_fn(model):
    # One function object per model, so the Applier compiles it once.
    if id(model) not in _FNS:
        _FNS[id(model)] = lambda params, m, q: model.apply({"params": params["model"]}, m, q)[0]
    return _FNS[id(model)]
