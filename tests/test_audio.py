
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from xmodal.audio import dsp as audio



def _noise(shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def test_stft_matches_numpy_dft_of_a_frame():
    x = _noise(1000)
    n_fft, hop = 64, 16
    spec = np.asarray(audio.stft(x, n_fft, hop, center=False))
    assert spec.shape == (1 + (1000 - 64) // 16, 33)
    n = np.arange(n_fft)
    hann = 0.5 - 0.5 * np.cos(2 * np.pi * n / n_fft)
    t = 7
    frame = x[t * hop:t * hop + n_fft] * hann
    k = np.arange(33)[:, None]
    expected = (frame[None, :] * np.exp(-2j * np.pi * k * n[None, :] / n_fft)).sum(1)
    np.testing.assert_allclose(spec[t], expected, atol=1e-4)


@pytest.mark.parametrize("center", [True, False])
def test_istft_reconstructs_hann_quarter_hop(center):
    x = _noise((3, 4000))
    n_fft, hop = 256, 64
    spec = audio.stft(x, n_fft, hop, center=center)
    y = np.asarray(audio.istft(spec, n_fft, hop, center=center, length=4000))
    if center:
        np.testing.assert_allclose(y, x, atol=1e-5)
    else:
        # without padding the first/last n_fft - hop samples are covered by too few windows
        np.testing.assert_allclose(y[:, n_fft:-n_fft], x[:, n_fft:-n_fft], atol=1e-5)


def test_istft_length_pads_and_trims():
    x = _noise(1000)
    spec = audio.stft(x, 128, 32)
    assert audio.istft(spec, 128, 32, length=900).shape == (900,)
    y = np.asarray(audio.istft(spec, 128, 32, length=1100))
    assert y.shape == (1100,)
    np.testing.assert_allclose(y[:1000], x, atol=1e-5)
    # 32 frames reach sample 31 * 32 + 128 of the padded signal, 1056 - 64 of x's padding;
    # past that there is nothing to reconstruct and the result is zero-filled.
    np.testing.assert_array_equal(y[1056:], 0.0)
    assert np.abs(y[1000:1056]).max() > 0  # the reflect padding, reconstructed


def test_stft_matches_librosa():
    import librosa
    x = _noise(3000, seed=1)
    ours = np.asarray(audio.stft(x, 512, 128)).T
    ref = librosa.stft(x, n_fft=512, hop_length=128, window="hann", center=True,
                       pad_mode="reflect")
    np.testing.assert_allclose(ours, ref, atol=2e-3, rtol=1e-4)


@pytest.mark.parametrize("htk,norm,fmin,fmax", [
    (False, "slaney", 0.0, None), (True, "slaney", 30.0, 7000.0),
    (False, None, 50.0, 4000.0), (True, None, 0.0, None)])
def test_mel_filterbank_matches_librosa(htk, norm, fmin, fmax):
    import librosa
    ours = audio.mel_filterbank(16000, 512, 64, fmin, fmax, htk=htk, norm=norm)
    ref = librosa.filters.mel(sr=16000, n_fft=512, n_mels=64, fmin=fmin, fmax=fmax, htk=htk,
                              norm=norm)
    assert ours.shape == ref.shape == (64, 257)
    np.testing.assert_allclose(ours, ref, atol=1e-4, rtol=0)


def test_slaney_mel_scale_known_points():
    # Slaney: linear 3 mel per 200 Hz below 1 kHz (15 mel at 1 kHz), 27 mel per log(6.4) above.
    np.testing.assert_allclose(audio.hz_to_mel([0, 200, 1000, 6400]), [0, 3, 15, 42])
    np.testing.assert_allclose(audio.hz_to_mel(1000, htk=True), 2595 * np.log10(1 + 1000 / 700))
    f = np.array([20.0, 440.0, 999.0, 1001.0, 7000.0])
    for htk in (False, True):
        np.testing.assert_allclose(audio.mel_to_hz(audio.hz_to_mel(f, htk), htk), f, rtol=1e-9)


def test_log_mel_of_pure_tone_peaks_at_the_band_centred_on_it():
    sr, f0, n_mels = 16000, 1500.0, 40
    t = np.arange(sr) / sr
    x = np.sin(2 * np.pi * f0 * t).astype(np.float32)
    lm = np.asarray(audio.log_mel(x, sr, n_fft=1024, hop=256, n_mels=n_mels, htk=True, norm=None))
    assert lm.shape == (1 + sr // 256, n_mels)
    # HTK band centres, from the formula: n_mels + 2 points equally spaced in mel over 0..sr/2.
    top = 2595 * np.log10(1 + (sr / 2) / 700)
    centres = 700 * (10 ** (np.linspace(0, top, n_mels + 2)[1:-1] / 2595) - 1)
    expected = int(np.argmin(np.abs(centres - f0)))
    peaks = lm[2:-2].argmax(axis=1)  # skip edge frames with reflect padding
    assert (peaks == expected).all(), (peaks, expected)
    # a tone leaves far-away bands at the floor-ish level: >60 dB below the peak
    assert lm[10, expected] - lm[10, 0] > np.log(1e6)


def test_log_mel_of_silence_is_the_floor():
    lm = np.asarray(audio.log_mel(np.zeros(4000, np.float32), 16000, n_fft=256, hop=64,
                                  n_mels=16, floor=1e-8))
    np.testing.assert_allclose(lm, np.log(1e-8), rtol=1e-6)


def test_transforms_jit_and_batch():
    x = _noise((2, 5, 2048))
    f = jax.jit(lambda v: audio.istft(audio.stft(v, 256, 64), 256, 64, length=2048))
    np.testing.assert_allclose(np.asarray(f(x)), x, atol=1e-5)
    lm = jax.jit(lambda v: audio.log_mel(v, 16000, n_fft=256, hop=64, n_mels=32))(x)
    eager = audio.log_mel(x, 16000, n_fft=256, hop=64, n_mels=32)
    assert lm.shape == (2, 5, 33, 32)
    np.testing.assert_allclose(np.asarray(lm), np.asarray(eager), atol=1e-4)
    loud = jax.jit(lambda v: audio.loudness_normalise(v, -20.0))(x)
    assert loud.shape == x.shape


def test_log_mel_has_gradients_even_on_silence():
    x = jnp.asarray(_noise(1024))
    grad = jax.grad(lambda v: audio.log_mel(v, 16000, n_fft=256, hop=64, n_mels=16).sum())
    g = np.asarray(grad(x))
    assert np.isfinite(g).all() and np.abs(g).sum() > 0
    assert np.isfinite(np.asarray(grad(jnp.zeros(1024)))).all()


def test_magnitude_powers():
    spec = jnp.asarray([3 + 4j, 0j, -1j], jnp.complex64)
    np.testing.assert_allclose(np.asarray(audio.magnitude(spec)), [5, 0, 1])
    np.testing.assert_allclose(np.asarray(audio.magnitude(spec, 2.0)), [25, 0, 1])


def test_loudness_normalise_sets_rms_dbfs():
    x = _noise((4, 8000)) * np.array([[0.01], [0.1], [1.0], [3.0]], np.float32)
    y = np.asarray(audio.loudness_normalise(x, -23.0))
    rms = np.sqrt((y.astype(np.float64) ** 2).mean(-1))
    np.testing.assert_allclose(20 * np.log10(rms), -23.0, atol=1e-4)
    np.testing.assert_allclose(np.asarray(audio.rms_db(y)), -23.0, atol=1e-4)
    # a full-scale sine has RMS 1/sqrt(2): -3.01 dBFS
    sine = np.sin(2 * np.pi * 100 * np.arange(16000) / 16000)
    np.testing.assert_allclose(float(audio.rms_db(sine)), -3.0103, atol=1e-3)


def test_loudness_normalise_leaves_silence_alone():
    y = np.asarray(audio.loudness_normalise(np.zeros((2, 100), np.float32), -20.0))
    np.testing.assert_array_equal(y, 0.0)


def test_resample_keeps_a_tone_and_sets_length():
    sr_in, sr_out, f0 = 8000, 16000, 440.0
    x = np.sin(2 * np.pi * f0 * np.arange(sr_in) / sr_in).astype(np.float32)
    y = audio.resample(x, sr_in, sr_out)
    assert y.dtype == np.float32 and y.shape == (16000,)
    expected = np.sin(2 * np.pi * f0 * np.arange(sr_out) / sr_out)
    # away from the edges (filter transients) the upsampled tone is the tone
    np.testing.assert_allclose(y[500:-500], expected[500:-500], atol=2e-3)
    z = audio.resample(y, 16000, 22050)
    assert z.shape == (22050,)
    spectrum = np.abs(np.fft.rfft(z))
    assert abs(np.argmax(spectrum) * 22050 / len(z) - f0) < 2


@pytest.mark.parametrize("sr_in,sr_out", [(16000, 8000), (44100, 16000), (16000, 22050),
                                           (8000, 16000), (16000, 16000)])
@pytest.mark.parametrize("start,length", [(0, 4096), (1000, 777), (7, 33), (9000, 4000)])
def test_resample_span_equals_cropping_the_full_resampling(sr_in, sr_out, start, length):
    x = np.random.default_rng(0).normal(size=(2, 12000)).astype(np.float32)
    full = audio.resample(x, sr_in, sr_out)
    span = audio.resample_span(x, sr_in, sr_out, start, length)
    # same samples (also where the crop runs past the end: then shorter, like the slice)
    np.testing.assert_allclose(span, full[..., start:start + length], atol=1e-6)


def test_bad_arguments_name_the_problem():
    x = np.zeros(1000, np.float32)
    with pytest.raises(ValueError, match="hop must be"):
        audio.stft(x, 256, 0)
    with pytest.raises(ValueError, match="window 'kaiser'"):
        audio.stft(x, 256, 64, win="kaiser")
    with pytest.raises(ValueError, match="too short"):
        audio.stft(np.zeros(100, np.float32), 256, 64)
    with pytest.raises(ValueError, match="fmax <= sr / 2"):
        audio.mel_filterbank(16000, 512, 40, fmax=9000)
    with pytest.raises(ValueError, match="n_fft // 2 \\+ 1 = 129"):
        audio.istft(jnp.zeros((10, 100), jnp.complex64), 256, 64)
    with pytest.raises(ValueError, match="sample rates"):
        audio.resample(x, 8000.0, 16000)
