"""Log-mel features of the separation models, and their way back to STFT magnitudes.

One frozen ``MelConfig`` is shared by the VAE, the flow, the vocoder and the evaluation, so every
stage sees the same features:

    mel(x)  = (log(max(M |STFT(x)|^2, floor)) - offset) / scale      [..., frames, n_mels]

with M the slaney mel filterbank (``xmodal.audio.dsp``), STFT centred with a hann window.
``offset`` and ``scale`` bring log-mel values of typical audio to about [-1, 1] so the VAE and
flow see unit-scale inputs. ``frames`` is cut to a multiple of 4 (the VAE's down-sampling);
``pad_frames`` restores the STFT's frame count for an inverse STFT by repeating the last frame.

Back to magnitudes: ``mel_to_magnitude`` inverts M by its pseudo-inverse (clipped at 0), the
usual initialisation of Griffin-Lim (librosa's ``mel_to_stft`` solves the same problem by NNLS).
``mel_ratio_mask`` turns an estimated and a mixture mel into a mask on the mixture's STFT bins.
"""
from __future__ import annotations

import dataclasses

import jax.numpy as jnp
import numpy as np

from xmodal.audio import dsp as audio


@dataclasses.dataclass(frozen=True)
class MelConfig:
    sample_rate: int = 16000
    n_fft: int = 1024
    hop: int = 160
    n_mels: int = 64
    floor: float = 1e-5          # power floor: log(1e-5) = -11.5, silence stays finite
    offset: float = -5.0         # log-mel → (log-mel - offset) / scale
    scale: float = 4.0

    def frames(self, length: int) -> int:
        """Frames the features of ``length`` samples have (a multiple of 4)."""
        return audio.num_frames(length, self.n_fft, self.hop) // 4 * 4

    def filterbank(self) -> np.ndarray:
        return audio.mel_filterbank(self.sample_rate, self.n_fft, self.n_mels)

    def stft(self, x):
        return audio.stft(x, self.n_fft, self.hop)

    def istft(self, spec, length: int):
        return audio.istft(spec, self.n_fft, self.hop, length=length)

    def mel(self, x):
        """Normalised log-mel ``[..., frames, n_mels]`` of waveforms ``x[..., T]``."""
        power = audio.magnitude(self.stft(x), 2.0)
        return self.mel_from_power(power)[..., : self.frames(x.shape[-1]), :]

    def mel_from_power(self, power):
        mel = power @ jnp.asarray(self.filterbank().T, power.dtype)
        return (jnp.log(jnp.maximum(mel, self.floor)) - self.offset) / self.scale

    def log_mel_power(self, mel):
        """Inverse of the normalisation: mel power ``exp(mel * scale + offset)``."""
        return jnp.exp(mel * self.scale + self.offset)

    def pad_frames(self, x, length: int):
        """``x[..., frames, F]`` → the STFT's frame count for ``length`` samples (last frame
        repeated), so an inverse STFT of it has ``length`` samples."""
        need = audio.num_frames(length, self.n_fft, self.hop) - x.shape[-2]
        if need <= 0:
            return x
        last = jnp.repeat(x[..., -1:, :], need, axis=-2)
        return jnp.concatenate([x, last], axis=-2)

    def mel_to_magnitude(self, mel):
        """Linear STFT magnitude ``[..., frames, n_fft//2+1]`` from normalised mel by the
        filterbank's pseudo-inverse, clipped at 0 (power domain), then square-rooted."""
        pinv = np.linalg.pinv(self.filterbank()).T.astype(np.float32)  # [n_mels, bins]
        power = self.log_mel_power(mel) @ jnp.asarray(pinv)
        return jnp.sqrt(jnp.maximum(power, 0.0))

    def mel_ratio_mask(self, mel_est, mel_mix):
        """Mask ``[..., frames, bins]`` in [0, 1] on the mixture STFT: the mel-power ratio
        estimate / mixture per band, clipped to [0, 1], spread to STFT bins by ``band_to_bin``
        (each bin the weighted mean of the bands covering it), square-rooted to a magnitude
        ratio."""
        ratio = jnp.clip(self.log_mel_power(mel_est) / self.log_mel_power(mel_mix), 0.0, 1.0)
        power_ratio = ratio @ jnp.asarray(self.band_to_bin())
        return jnp.sqrt(jnp.clip(power_ratio, 0.0, 1.0))

    def band_to_bin(self) -> np.ndarray:
        """[n_mels, bins]: each STFT bin's weights over the mel bands (columns sum to 1); a bin
        no band covers (DC, Nyquist) takes the weights of the nearest covered bin."""
        fb = self.filterbank().astype(np.float64)
        covered = np.flatnonzero(fb.sum(axis=0) > 0)
        nearest = covered[np.abs(np.arange(fb.shape[1])[:, None] - covered[None]).argmin(1)]
        fb = fb[:, nearest]
        return (fb / fb.sum(axis=0, keepdims=True)).astype(np.float32)
