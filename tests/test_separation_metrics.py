"""Separation metrics against an independent implementation (fast_bss_eval) and closed forms.

fast_bss_eval's top-level ``si_sdr`` touches its torch backend even for numpy input and fails
without torch installed, so the numpy backend module is called directly.
"""
import numpy as np
import pytest

from xmodal.evaluate.separation import (frechet_distance, log_mel_distance, si_sdr,
                                                sdr_improvement)


def _signals(seed=0, b=4, t=4000):
    rng = np.random.default_rng(seed)
    ref = rng.normal(size=(b, t))
    est = 0.7 * ref + rng.normal(scale=[[0.1], [0.5], [1.0], [3.0]][:b], size=(b, t))
    return est, ref


def test_si_sdr_matches_fast_bss_eval():
    import fast_bss_eval.numpy as reference_impl
    est, ref = _signals()
    est = est + 0.3          # an offset: both implementations remove the mean
    ours = si_sdr(est, ref)
    theirs = np.array([reference_impl.si_sdr(ref[i:i + 1], est[i:i + 1], zero_mean=True)[0]
                       for i in range(len(ref))])
    np.testing.assert_allclose(ours, theirs, atol=1e-4)


def test_sdri_matches_fast_bss_eval_difference():
    import fast_bss_eval.numpy as reference_impl
    est, ref = _signals(1)
    mix = ref + np.random.default_rng(2).normal(size=ref.shape)
    theirs = np.array([
        reference_impl.si_sdr(ref[i:i + 1], est[i:i + 1], zero_mean=True)[0]
        - reference_impl.si_sdr(ref[i:i + 1], mix[i:i + 1], zero_mean=True)[0]
        for i in range(len(ref))])
    np.testing.assert_allclose(sdr_improvement(est, ref, mix), theirs, atol=1e-4)


def test_si_sdr_hand_case_and_scale_invariance():
    # ŝ = s + n with n ⟂ s, ||n|| = ||s|| / 10 -> exactly 20 dB, at any gain of ŝ.
    t = np.arange(1000)
    s = np.sin(2 * np.pi * t / 50)
    n = np.sin(2 * np.pi * t / 20) * np.sqrt(np.sum(s ** 2) / np.sum(np.sin(2 * np.pi * t / 20) ** 2)) / 10
    np.testing.assert_allclose(si_sdr(s + n, s), [20.0], atol=1e-6)
    np.testing.assert_allclose(si_sdr(5 * (s + n), s), [20.0], atol=1e-6)
    np.testing.assert_allclose(si_sdr(s + n, 0.1 * s), [20.0], atol=1e-6)


def test_mixture_has_zero_improvement_and_silence_is_finite():
    est, ref = _signals()
    np.testing.assert_allclose(sdr_improvement(est, ref, est), 0.0, atol=1e-12)
    zeros = np.zeros((2, 100))
    assert np.all(np.isfinite(si_sdr(zeros, zeros)))
    np.testing.assert_allclose(si_sdr(zeros, zeros), 0.0)
    assert si_sdr(np.ones((1, 100)) + np.arange(100), np.zeros((1, 100)))[0] < -50


def test_bad_shapes_and_nan_are_refused():
    with pytest.raises(ValueError, match="same shape"):
        si_sdr(np.zeros((2, 10)), np.zeros((2, 11)))
    with pytest.raises(ValueError, match="NaN"):
        si_sdr(np.full((1, 10), np.nan), np.zeros((1, 10)))


def test_log_mel_distance():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 4000)).astype(np.float32) * 0.1
    np.testing.assert_allclose(log_mel_distance(x, x, 16000), 0.0, atol=1e-6)
    # A gain g shifts every unclipped log-mel bin by log(g²): here all bins are above the floor.
    d = log_mel_distance(2 * x, x, 16000)
    np.testing.assert_allclose(d, np.log(4.0), rtol=1e-3)
    assert np.all(np.isfinite(log_mel_distance(np.zeros_like(x), x, 16000)))


def test_frechet_distance_closed_form_diagonal():
    # Diagonal Gaussians: FD = |mu_a - mu_b|² + sum (sigma_a - sigma_b)².
    rng = np.random.default_rng(0)
    a = rng.normal(size=(200_000, 2)) * [1.0, 2.0] + [0.0, 1.0]
    b = rng.normal(size=(200_000, 2)) * [3.0, 0.5] + [1.0, -1.0]
    expected = (1 + 4) + (1 - 3) ** 2 + (2 - 0.5) ** 2
    assert frechet_distance(a, b) == pytest.approx(expected, rel=0.02)


def test_frechet_distance_identical_and_singular():
    rng = np.random.default_rng(1)
    a = rng.normal(size=(50, 8))
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)
    # Fewer points than dimensions: singular covariances, still finite and ~0 for the same set.
    few = rng.normal(size=(5, 32))
    assert np.isfinite(frechet_distance(few, few))
    assert frechet_distance(few, few) < 1e-3
    assert frechet_distance(few, few + 1.0) == pytest.approx(32.0, rel=1e-3)
    with pytest.raises(ValueError, match="at least 2"):
        frechet_distance(a[:1], a)
    with pytest.raises(ValueError, match="same D"):
        frechet_distance(a, a[:, :4])
