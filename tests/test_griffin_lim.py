"""Griffin-Lim in JAX: consistency with the target magnitude improves with iterations."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from xmodal.audio import dsp as audio
from xmodal.audio.griffin_lim import griffin_lim, spectral_convergence

N_FFT, HOP, T = 256, 64, 4096


def _signal():
    t = np.arange(T) / 8000
    x = (0.3 * np.sin(2 * np.pi * 440 * t) + 0.2 * np.sin(2 * np.pi * 1250 * t + 1.0)
         * (t > 0.2) + 0.05 * np.random.default_rng(0).normal(size=T))
    return jnp.asarray(x[None].astype(np.float32))


@pytest.mark.parametrize("momentum", [0.0, 0.99])
def test_spectral_convergence_improves_with_iterations(momentum):
    x = _signal()
    mag = jnp.abs(audio.stft(x, N_FFT, HOP))
    scs = [float(spectral_convergence(mag, griffin_lim(mag, T, N_FFT, HOP, iters=n,
                                                       momentum=momentum), N_FFT, HOP)[0])
           for n in (0, 4, 16, 64)]
    assert all(a > b for a, b in zip(scs, scs[1:])), scs
    assert scs[-1] < 0.5 * scs[0]


def test_exact_magnitude_with_true_phase_is_a_fixed_point():
    x = _signal()
    spec = audio.stft(x, N_FFT, HOP)
    y = audio.istft(spec, N_FFT, HOP, length=T)
    assert float(spectral_convergence(jnp.abs(spec), y, N_FFT, HOP)[0]) < 1e-4


def test_silence_stays_finite_and_random_init_works():
    mag = jnp.zeros((1, 65, N_FFT // 2 + 1))
    y = griffin_lim(mag, T, N_FFT, HOP, iters=3)
    assert np.all(np.isfinite(np.asarray(y))) and float(jnp.max(jnp.abs(y))) == 0.0
    x = _signal()
    mag = jnp.abs(audio.stft(x, N_FFT, HOP))
    y = griffin_lim(mag, T, N_FFT, HOP, iters=8, rng=jax.random.key(0))
    assert y.shape == (1, T) and np.all(np.isfinite(np.asarray(y)))
    with pytest.raises(ValueError, match="iters"):
        griffin_lim(mag, T, N_FFT, HOP, iters=-1)
