"""Audio transforms in JAX: STFT / inverse STFT, mel filterbank, log-mel, loudness.

Conventions follow librosa so features match the usual reference implementation:

* A spectrogram is ``complex[..., frames, n_fft // 2 + 1]`` (time before frequency, the layout
  a model consumes; librosa puts frequency first).
* ``center=True`` reflect-pads ``n_fft // 2`` samples on both sides, so frame ``t`` is centred
  on sample ``t * hop``.
* Windows are periodic ("DFT-even"), as ``scipy.signal.get_window(win, n_fft, fftbins=True)``.

Everything except ``resample`` is pure ``jax.numpy`` and jit-able with ``n_fft``, ``hop``,
``length``, sample rates and mel settings static (Python numbers). ``mel_filterbank`` returns a
numpy array: it is a constant, and under jit it is folded into the computation.
"""
from __future__ import annotations

import math
from typing import Union

import jax.numpy as jnp
import numpy as np

Window = Union[str, np.ndarray]

WINDOWS = ("hann", "hamming", "rect")
MEL_NORMS = ("slaney", None)


def window(win: Window, n_fft: int) -> np.ndarray:
    """Periodic window of length ``n_fft``: "hann", "hamming", "rect", or an explicit array.

    hann[n] = 0.5 - 0.5 cos(2 pi n / N); hamming[n] = 0.54 - 0.46 cos(2 pi n / N).
    Periodic (divide by N, not N - 1) so shifted copies at hop N/4 sum to a constant.
    """
    if isinstance(win, str):
        n = np.arange(n_fft)
        if win == "hann":
            return 0.5 - 0.5 * np.cos(2 * np.pi * n / n_fft)
        if win == "hamming":
            return 0.54 - 0.46 * np.cos(2 * np.pi * n / n_fft)
        if win == "rect":
            return np.ones(n_fft)
        raise ValueError(
            f"window {win!r} is not one of {WINDOWS}; or pass an array of n_fft values")
    w = np.asarray(win, dtype=np.float64)
    if w.shape != (n_fft,):
        raise ValueError(f"window array has shape {w.shape}; it must be (n_fft,) = ({n_fft},)")
    return w


def _check_fft_sizes(n_fft: int, hop: int) -> None:
    if not (isinstance(n_fft, int) and n_fft >= 2):
        raise ValueError(f"n_fft must be an int >= 2 (static under jit), got {n_fft!r}")
    if not (isinstance(hop, int) and 1 <= hop <= n_fft):
        raise ValueError(
            f"hop must be an int in [1, n_fft={n_fft}] (static under jit), got {hop!r}")


def num_frames(length: int, n_fft: int, hop: int, center: bool = True) -> int:
    """Frames ``stft`` gives: 1 + (length [+ 2 (n_fft // 2) if centred] - n_fft) // hop."""
    padded = length + 2 * (n_fft // 2) if center else length
    return 1 + (padded - n_fft) // hop


def stft(x: jnp.ndarray, n_fft: int, hop: int, win: Window = "hann",
         center: bool = True) -> jnp.ndarray:
    """Short-time Fourier transform: ``x[..., T]`` -> ``complex[..., frames, n_fft // 2 + 1]``.

    X[t, k] = sum_n w[n] x[t * hop + n] exp(-2 pi i k n / n_fft), on the reflect-padded signal
    when ``center`` (librosa.stft's default, with pad_mode="reflect").
    """
    _check_fft_sizes(n_fft, hop)
    x = jnp.asarray(x)
    length = x.shape[-1]
    if center:
        pad = n_fft // 2
        if length <= pad:
            raise ValueError(
                f"signal of {length} samples is too short to reflect-pad by n_fft // 2 = {pad}; "
                "use a longer signal, a smaller n_fft, or center=False")
        x = jnp.pad(x, [(0, 0)] * (x.ndim - 1) + [(pad, pad)], mode="reflect")
    elif length < n_fft:
        raise ValueError(f"signal of {length} samples is shorter than n_fft = {n_fft}")
    frames = num_frames(length, n_fft, hop, center)
    index = np.arange(frames)[:, None] * hop + np.arange(n_fft)[None, :]
    w = jnp.asarray(window(win, n_fft), dtype=x.dtype if jnp.issubdtype(x.dtype, jnp.floating)
                    else jnp.float32)
    return jnp.fft.rfft(x[..., index] * w, n=n_fft, axis=-1)


def istft(spec: jnp.ndarray, n_fft: int, hop: int, win: Window = "hann", center: bool = True,
          length: int | None = None) -> jnp.ndarray:
    """Inverse of ``stft`` by weighted overlap-add (Griffin & Lim 1984, "Signal estimation from
    modified short-time Fourier transform"): x[n] = sum_t w[n - t hop] y_t[n - t hop] /
    sum_t w[n - t hop]^2, where y_t is the inverse FFT of frame t.

    Exact (to float precision) wherever the squared windows overlap to a non-zero sum, e.g. hann
    with hop <= n_fft / 2; samples where the sum is ~0 are left as the unnormalised sum, as in
    librosa. ``length`` trims or zero-pads the result to that many samples (pass the original
    length: without it a tail shorter than a hop is cut). With ``center``, samples up to
    n_fft // 2 past the end come back as the reflect padding that ``stft`` added; beyond the
    last frame's reach the result is zeros.
    """
    _check_fft_sizes(n_fft, hop)
    spec = jnp.asarray(spec)
    if spec.ndim < 2 or spec.shape[-1] != n_fft // 2 + 1:
        raise ValueError(
            f"spectrogram has shape {spec.shape}; expected [..., frames, n_fft // 2 + 1 = "
            f"{n_fft // 2 + 1}] for n_fft = {n_fft}")
    frames = spec.shape[-2]
    w = window(win, n_fft)
    y = jnp.fft.irfft(spec, n=n_fft, axis=-1) * jnp.asarray(w, dtype=jnp.float32)
    total = n_fft + hop * (frames - 1)
    index = (np.arange(frames)[:, None] * hop + np.arange(n_fft)[None, :]).reshape(-1)
    batch = spec.shape[:-2]
    out = jnp.zeros(batch + (total,), y.dtype).at[..., index].add(
        y.reshape(batch + (frames * n_fft,)))
    # The window-square envelope is a constant of the static sizes: built in numpy.
    envelope = np.zeros(total)
    np.add.at(envelope, index, np.tile(w ** 2, frames))
    nonzero = envelope > np.finfo(np.float32).tiny
    out = out / jnp.asarray(np.where(nonzero, envelope, 1.0), dtype=out.dtype)
    if center:
        out = out[..., n_fft // 2:]
    if length is not None:
        have = out.shape[-1]
        if have >= length:
            out = out[..., :length]
        else:
            out = jnp.pad(out, [(0, 0)] * (out.ndim - 1) + [(0, length - have)])
    elif center:
        out = out[..., :total - 2 * (n_fft // 2)]
    return out


def magnitude(spec: jnp.ndarray, power: float = 1.0) -> jnp.ndarray:
    """|X|^power of a complex spectrogram (power 2: energy spectrogram).

    Computed as (re^2 + im^2)^(power / 2): for power 2 that has finite gradients everywhere,
    silence included, where |X| = sqrt(re^2 + im^2) has none at 0.
    """
    energy = jnp.square(spec.real) + jnp.square(spec.imag)
    return energy if power == 2 else energy ** (power / 2)


def hz_to_mel(freq: np.ndarray, htk: bool = False) -> np.ndarray:
    """Hz -> mel. HTK: 2595 log10(1 + f / 700). Slaney (Auditory Toolbox, as librosa's default):
    linear f / (200 / 3) below 1 kHz, then 15 + 27 log(f / 1000) / log(6.4)."""
    freq = np.asarray(freq, dtype=np.float64)
    if htk:
        return 2595.0 * np.log10(1.0 + freq / 700.0)
    f_sp = 200.0 / 3
    min_log_hz, min_log_mel, log_step = 1000.0, 1000.0 / f_sp, math.log(6.4) / 27.0
    linear = freq / f_sp
    logarithmic = min_log_mel + np.log(np.maximum(freq, min_log_hz) / min_log_hz) / log_step
    return np.where(freq >= min_log_hz, logarithmic, linear)


def mel_to_hz(mel: np.ndarray, htk: bool = False) -> np.ndarray:
    """Inverse of ``hz_to_mel``."""
    mel = np.asarray(mel, dtype=np.float64)
    if htk:
        return 700.0 * (10.0 ** (mel / 2595.0) - 1.0)
    f_sp = 200.0 / 3
    min_log_hz, min_log_mel, log_step = 1000.0, 1000.0 / f_sp, math.log(6.4) / 27.0
    linear = f_sp * mel
    logarithmic = min_log_hz * np.exp(log_step * (np.maximum(mel, min_log_mel) - min_log_mel))
    return np.where(mel >= min_log_mel, logarithmic, linear)


def mel_filterbank(sr: int, n_fft: int, n_mels: int = 128, fmin: float = 0.0,
                   fmax: float | None = None, htk: bool = False,
                   norm: str | None = "slaney") -> np.ndarray:
    """Triangular mel filters ``float32[n_mels, n_fft // 2 + 1]``, as ``librosa.filters.mel``.

    Band m rises linearly from mel point m to m + 1 and falls to m + 2, with n_mels + 2 points
    equally spaced in mel between fmin and fmax (default sr / 2). norm="slaney" scales band m by
    2 / (f[m + 2] - f[m]) so each filter has unit area in Hz; norm=None leaves peaks at 1.
    """
    if fmax is None:
        fmax = sr / 2
    if not 0 <= fmin < fmax <= sr / 2:
        raise ValueError(
            f"need 0 <= fmin < fmax <= sr / 2 = {sr / 2}; got fmin={fmin}, fmax={fmax}")
    if norm not in MEL_NORMS:
        raise ValueError(f"mel norm {norm!r} is not one of {MEL_NORMS}")
    if n_mels < 1:
        raise ValueError(f"n_mels must be >= 1, got {n_mels}")
    fft_freqs = np.fft.rfftfreq(n_fft, d=1.0 / sr)
    mel_points = mel_to_hz(np.linspace(hz_to_mel(fmin, htk), hz_to_mel(fmax, htk), n_mels + 2), htk)
    widths = np.diff(mel_points)
    ramps = mel_points[:, None] - fft_freqs[None, :]
    lower = -ramps[:-2] / widths[:-1, None]
    upper = ramps[2:] / widths[1:, None]
    weights = np.maximum(0.0, np.minimum(lower, upper))
    if norm == "slaney":
        weights *= (2.0 / (mel_points[2:] - mel_points[:-2]))[:, None]
    return weights.astype(np.float32)


def log_mel(x: jnp.ndarray, sr: int, n_fft: int = 1024, hop: int = 256, n_mels: int = 80,
            fmin: float = 0.0, fmax: float | None = None, power: float = 2.0,
            floor: float = 1e-10, win: Window = "hann", center: bool = True,
            htk: bool = False, norm: str | None = "slaney") -> jnp.ndarray:
    """log(max(M |STFT(x)|^power, floor)) with M = ``mel_filterbank``: ``x[..., T]`` ->
    ``[..., frames, n_mels]`` (natural log; ``floor`` keeps silence finite)."""
    fb = mel_filterbank(sr, n_fft, n_mels, fmin, fmax, htk=htk, norm=norm)
    spec = magnitude(stft(x, n_fft, hop, win=win, center=center), power)
    mel = spec @ jnp.asarray(fb.T, dtype=spec.dtype)
    return jnp.log(jnp.maximum(mel, floor))


def resample(x: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    """Polyphase resampling on the host (``scipy.signal.resample_poly``; not jit-able).

    Up by sr_out / g, down by sr_in / g (g = gcd), anti-aliased by scipy's default Kaiser
    (beta 5) FIR low-pass. Along the last axis; returns float32 with
    ceil(T * sr_out / sr_in) samples. For data preparation, not inside a model.
    """
    from scipy import signal

    if not (isinstance(sr_in, int) and isinstance(sr_out, int) and sr_in > 0 and sr_out > 0):
        raise ValueError(
            f"sample rates must be positive ints, got sr_in={sr_in!r}, sr_out={sr_out!r}")
    x = np.asarray(x, dtype=np.float32)
    if sr_in == sr_out:
        return x.copy()
    g = math.gcd(sr_in, sr_out)
    return signal.resample_poly(x, sr_out // g, sr_in // g, axis=-1).astype(np.float32)


def resample_span(x: np.ndarray, sr_in: int, sr_out: int, start: int, length: int) -> np.ndarray:
    """``resample(x, sr_in, sr_out)[..., start:start + length]`` computed from only the input
    samples it needs (plus the filter's reach), so cropping a short clip out of a long
    recording costs the clip, not the recording. The input window starts at a whole polyphase
    period, so the kept samples equal the full resampling's (float rounding aside)."""
    g = math.gcd(sr_in, sr_out)
    up, down = sr_out // g, sr_in // g
    # scipy's low-pass reaches 10 * max(up, down) samples of the upsampled signal each side.
    reach = -(-10 * max(up, down) // up) + 2          # in input samples
    k = max(0, (start * down // up - reach) // down)  # whole periods skipped
    stop = -(-(start + length) * down // up) + reach + 1
    y = resample(np.asarray(x)[..., k * down:stop], sr_in, sr_out)
    return y[..., start - k * up:start - k * up + length]


def rms_db(x: jnp.ndarray, floor: float = 1e-10) -> jnp.ndarray:
    """RMS level in dBFS over the last axis: 20 log10(sqrt(mean(x^2))) (full scale = 1.0)."""
    rms = jnp.sqrt(jnp.mean(jnp.square(x), axis=-1))
    return 20.0 * jnp.log10(jnp.maximum(rms, floor))


def loudness_normalise(x: jnp.ndarray, target_db: float, floor: float = 1e-10) -> jnp.ndarray:
    """Scales ``x`` (over its last axis) so its RMS level is ``target_db`` dBFS.

    This is plain RMS, not perceptual loudness: no K-weighting and no gating as in LUFS
    (ITU-R BS.1770), so low bass counts as much as 3 kHz. A signal with RMS below ``floor``
    (silence) is returned unchanged instead of being blown up to noise.
    """
    rms = jnp.sqrt(jnp.mean(jnp.square(x), axis=-1, keepdims=True))
    gain = jnp.where(rms > floor, 10.0 ** (target_db / 20.0) / jnp.maximum(rms, floor), 1.0)
    return x * gain
