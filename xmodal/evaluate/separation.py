"""Source-separation metrics: SI-SDR, SI-SDRi, log-mel distance, Fréchet distance.

Waveform metrics are per example (``[B]``) in float64 numpy; callers average them. The
Fréchet distance compares two *sets* of embeddings (FAD of Kilgour et al., "Fréchet Audio
Distance", 2019, with our own audio-text model's audio tower as the embedding).

Why several metrics: a generative separator (FlowSep) decodes a mel spectrogram through a
vocoder, so its waveform is not phase-aligned with the reference and SI-SDR punishes it for
phase it never tried to match; log-mel distance and embedding metrics do not look at phase.
"""
from __future__ import annotations

import numpy as np

EPS = 1e-8


def _pair(estimate, reference, what: str = "estimate") -> tuple[np.ndarray, np.ndarray]:
    est = np.asarray(estimate, dtype=np.float64)
    ref = np.asarray(reference, dtype=np.float64)
    if est.ndim == 1:
        est = est[None]
    if ref.ndim == 1:
        ref = ref[None]
    if est.ndim != 2 or est.shape != ref.shape:
        raise ValueError(f"{what} and reference must both be [B, T] (or [T]) waveforms of the "
                         f"same shape; got {np.shape(estimate)} and {np.shape(reference)}")
    if est.shape[1] < 1:
        raise ValueError("waveforms are empty (T = 0)")
    if not (np.all(np.isfinite(est)) and np.all(np.isfinite(ref))):
        raise ValueError(f"{what} or reference holds NaN/Inf samples")
    return est, ref


def si_sdr(estimate, reference, eps: float = EPS) -> np.ndarray:
    """Scale-invariant signal-to-distortion ratio in dB, per example: ``[B, T]`` -> ``[B]``.

    Le Roux, Wisdom, Erdogan & Hershey, "SDR – half-baked or well done?", ICASSP 2019: with
    both signals made zero-mean,

        alpha    = <ŝ, s> / ||s||²          (the optimal scaling of the reference)
        e_target = alpha s,   e_res = ŝ − alpha s
        SI-SDR   = 10 log10(||e_target||² / ||e_res||²)

    ``eps`` is added to the numerator and denominator of both alpha and the ratio, so silence
    gives a finite number instead of NaN: a silent reference with any estimate gives about
    10 log10(eps / (||ŝ||² + eps)) (very negative), and silent estimate and reference give 0 dB.
    """
    est, ref = _pair(estimate, reference)
    est = est - est.mean(axis=1, keepdims=True)
    ref = ref - ref.mean(axis=1, keepdims=True)
    alpha = (np.sum(est * ref, axis=1, keepdims=True) + eps) / (
        np.sum(ref * ref, axis=1, keepdims=True) + eps)
    target = alpha * ref
    residual = est - target
    return 10 * np.log10((np.sum(target ** 2, axis=1) + eps) / (np.sum(residual ** 2, axis=1) + eps))


def sdr_improvement(estimate, reference, mixture, eps: float = EPS) -> np.ndarray:
    """SI-SDRi (dB, ``[B]``): SI-SDR(estimate, reference) − SI-SDR(mixture, reference), the gain
    over doing nothing (the unprocessed mixture scores 0 by definition)."""
    est, ref = _pair(estimate, reference)
    mix, _ = _pair(mixture, reference, "mixture")
    return si_sdr(est, ref, eps) - si_sdr(mix, ref, eps)


def log_mel_distance(estimate, reference, sample_rate: int, n_mels: int = 64,
                     n_fft: int = 1024, hop: int = 256, floor: float = 1e-5) -> np.ndarray:
    """Mean absolute difference of log-mel spectrograms, per example: ``[B, T]`` -> ``[B]``.

    d = mean_{t,m} |log max(M|STFT ŝ|², floor) − log max(M|STFT s|², floor)| with
    ``xmodal.audio.dsp.log_mel`` (librosa conventions, slaney mel, natural log). Phase-blind,
    so it scores a vocoder's output fairly. ``floor`` (1e-5, about −50 dB re. a full-scale
    sine's bin energy) keeps near-silent bins from dominating: below it both are clipped equal.
    """
    from xmodal.audio import dsp as audio  # jax: imported only when used

    est, ref = _pair(estimate, reference)
    if est.shape[1] <= n_fft // 2:
        raise ValueError(f"waveforms of {est.shape[1]} samples are too short for n_fft={n_fft}")
    kw = dict(sr=int(sample_rate), n_fft=n_fft, hop=hop, n_mels=n_mels, floor=floor)
    a = np.asarray(audio.log_mel(est.astype(np.float32), **kw), np.float64)
    b = np.asarray(audio.log_mel(ref.astype(np.float32), **kw), np.float64)
    return np.mean(np.abs(a - b), axis=(1, 2))


def frechet_distance(emb_a, emb_b, ridge: float = 1e-6) -> float:
    """Fréchet distance between Gaussians fit to two embedding sets ``[N, D]`` and ``[M, D]``:

        FD = ||mu_a − mu_b||² + tr(S_a + S_b − 2 (S_a S_b)^{1/2})

    (Heusel et al. 2017 for FID; Kilgour et al. 2019 for FAD). The matrix square root is
    ``scipy.linalg.sqrtm``. With fewer examples than dimensions the covariances are singular
    and sqrtm can return non-finite values or a complex result: as in pytorch-fid, if it is not
    finite, ``ridge`` · I is added to both covariances and it is recomputed; the imaginary part
    (numerical noise of a product of PSD matrices) is dropped. The result is clipped at 0.
    N and M must be >= 2 (a covariance needs two points).
    """
    from scipy import linalg

    a = np.asarray(emb_a, dtype=np.float64)
    b = np.asarray(emb_b, dtype=np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"embeddings must be [N, D] and [M, D] with the same D; got "
                         f"{a.shape} and {b.shape}")
    if len(a) < 2 or len(b) < 2:
        raise ValueError(f"need at least 2 embeddings per set for a covariance; got {len(a)} "
                         f"and {len(b)}")
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
        raise ValueError("embeddings hold NaN/Inf")
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a = np.atleast_2d(np.cov(a, rowvar=False))
    cov_b = np.atleast_2d(np.cov(b, rowvar=False))
    root = linalg.sqrtm(cov_a @ cov_b)
    if not np.all(np.isfinite(root)):
        offset = np.eye(len(cov_a)) * ridge
        root = linalg.sqrtm((cov_a + offset) @ (cov_b + offset))
    root = np.real(root)
    fd = np.sum((mu_a - mu_b) ** 2) + np.trace(cov_a) + np.trace(cov_b) - 2 * np.trace(root)
    return float(max(fd, 0.0))
