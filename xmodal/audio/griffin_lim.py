"""Griffin-Lim phase reconstruction in JAX (Griffin & Lim 1984, "Signal estimation from modified
short-time Fourier transform"), with the momentum of the fast variant (Perraudin, Balazs &
Sondergaard 2013, "A fast Griffin-Lim algorithm"), as ``librosa.griffinlim``:

    X_0 = |S| e^{i phi_0}
    repeat: A_k = STFT(iSTFT(X_k));  X_{k+1} = |S| C_k / |C_k|,  C_k = A_k - m / (1 + m) A_{k-1}

``momentum = 0`` is the original algorithm. Spectral convergence
||S| - |STFT(x)||_F / ||S||_F measures how consistent the result is with the target magnitude.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from xmodal.audio import dsp as audio


def spectral_convergence(magnitude, x, n_fft: int, hop: int):
    """|| |S| - |STFT(x)| ||_F / || |S| ||_F over the last two axes."""
    got = jnp.abs(audio.stft(x, n_fft, hop))
    num = jnp.sqrt(jnp.sum(jnp.square(magnitude - got), axis=(-2, -1)))
    den = jnp.sqrt(jnp.sum(jnp.square(magnitude), axis=(-2, -1)))
    return num / jnp.maximum(den, 1e-12)


def griffin_lim(magnitude, length: int, n_fft: int, hop: int, iters: int = 32,
                momentum: float = 0.99, rng: jax.Array | None = None):
    """Waveform ``[..., length]`` whose STFT magnitude approximates ``magnitude``
    ``[..., frames, n_fft//2+1]``. Initial phase: zeros, or uniform random with ``rng``."""
    if iters < 0:
        raise ValueError(f"griffin_lim iters must be >= 0, got {iters}")
    magnitude = jnp.asarray(magnitude, jnp.float32)
    if rng is None:
        phase = jnp.ones(magnitude.shape, jnp.complex64)
    else:
        angle = jax.random.uniform(rng, magnitude.shape, jnp.float32, 0, 2 * jnp.pi)
        phase = jnp.exp(1j * angle).astype(jnp.complex64)

    def project(spec):
        return audio.stft(audio.istft(spec, n_fft, hop, length=length), n_fft, hop)

    def unit(z):
        return z / jnp.maximum(jnp.abs(z), 1e-8)

    def body(_, carry):
        spec, prev = carry
        rebuilt = project(spec)
        accel = rebuilt - momentum / (1 + momentum) * prev
        return magnitude * unit(accel), rebuilt

    spec0 = magnitude * phase
    spec, _ = jax.lax.fori_loop(0, iters, body, (spec0, jnp.zeros_like(spec0)))
    return audio.istft(spec, n_fft, hop, length=length)
