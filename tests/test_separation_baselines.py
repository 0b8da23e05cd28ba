"""Separation baselines (mixture, oracle IRM) and score_estimates."""
import numpy as np
import pytest

from xmodal.projects.flowsep.baselines import (clap_text, mixture_estimate, oracle_irm,
                                                  score_estimates)
from xmodal.evaluate.separation import si_sdr

SR = 8000


def _sources(b=2, t=8000, seed=0):
    rng = np.random.default_rng(seed)
    time = np.arange(t) / SR
    target = np.stack([0.3 * np.sin(2 * np.pi * (300 + 100 * i) * time) for i in range(b)])
    noise = 0.3 * rng.normal(size=(b, t))
    return target.astype(np.float32), (target + noise).astype(np.float32)


def test_mixture_estimate_is_a_copy():
    _, mix = _sources()
    est = mixture_estimate(mix)
    np.testing.assert_array_equal(est, mix)
    est[0, 0] = 99.0
    assert mix[0, 0] != 99.0


@pytest.mark.parametrize("power", [1.0, 2.0])
def test_irm_of_the_mixture_itself_returns_it(power):
    _, mix = _sources()
    # N = 0 everywhere -> M = 1 -> iSTFT(STFT(x)) = x.
    np.testing.assert_allclose(oracle_irm(mix, mix, n_fft=256, hop=64, power=power), mix,
                               atol=1e-4)


@pytest.mark.parametrize("power, mask", [(1.0, 0.25), (2.0, 0.1)])
def test_irm_of_a_scaled_mixture_is_the_formulas_constant_mask(power, mask):
    _, mix = _sources()
    # S = a X and N = (1 - a) X in every bin: M = a^p / (a^p + (1 - a)^p), the same everywhere,
    # so the estimate is M x: 0.25 for p = 1 and 0.0625 / (0.0625 + 0.5625) = 0.1 for p = 2.
    np.testing.assert_allclose(oracle_irm(mix, 0.25 * mix, n_fft=256, hop=64, power=power),
                               mask * mix, atol=1e-4)


def test_irm_of_silence_target_is_silent_and_irm_separates():
    target, mix = _sources()
    zeros = np.zeros_like(mix)
    np.testing.assert_allclose(oracle_irm(mix, zeros, n_fft=256, hop=64), 0.0, atol=1e-6)
    est = oracle_irm(mix, target, n_fft=256, hop=64)
    assert est.shape == mix.shape and np.all(np.isfinite(est))
    # A sine in white noise: the oracle mask must beat the mixture by a wide margin.
    assert np.all(si_sdr(est, target) > si_sdr(mix, target) + 10)
    # 1-D input works too.
    np.testing.assert_allclose(oracle_irm(mix[0], target[0], 256, 64), est[0], atol=1e-5)
    with pytest.raises(ValueError, match="same shape"):
        oracle_irm(mix, target[:, :100])


def test_clap_text():
    assert clap_text("separate the violin") == "a violin playing a short phrase"
    assert clap_text("separate the oboe") == "an oboe playing a short phrase"
    assert clap_text("cello", prompt="{label}") == "cello"
    assert clap_text("") == "a  playing a short phrase"


def test_score_estimates_without_scorer():
    target, mix = _sources()
    perfect = score_estimates(target, target, mix, ["separate the violin"] * 2, SR,
                              n_fft=256, hop=128)
    assert perfect["log_mel_distance"] == pytest.approx(0.0, abs=1e-6)
    assert perfect["si_sdr"] > 70 and perfect["sdri"] > 60
    assert "fd" not in perfect and "clap_score" not in perfect
    # (with a scorer: tests/test_clap.py, on a trained tiny audio-text model)
    floor = score_estimates(mix, target, mix, ["q", "q"], SR, n_fft=256, hop=128)
    assert floor["sdri"] == pytest.approx(0.0, abs=1e-9)
    with pytest.raises(ValueError, match="queries"):
        score_estimates(mix, target, mix, ["q"], SR)
    with pytest.raises(ValueError, match=r"\[B, T\]"):
        score_estimates(mix[:, :100], target, mix, ["q", "q"], SR)
