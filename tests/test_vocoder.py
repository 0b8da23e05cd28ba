"""The neural vocoder and its multi-resolution STFT loss."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from xmodal.audio.mel import MelConfig
from xmodal.core.registry import MODELS
from xmodal.core.registry import OBJECTIVES
from xmodal.projects.flowsep.vocoder_loss import multi_resolution_stft_loss, stft_losses, vocode

CFG = MelConfig(sample_rate=8000, n_fft=256, hop=128, n_mels=16)


def _np_stft_mag(x, n_fft, hop):
    # Independent oracle: centred reflect-padded frames, periodic hann, numpy rfft.
    pad = np.pad(x, (n_fft // 2, n_fft // 2), mode="reflect")
    w = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)
    frames = 1 + (len(pad) - n_fft) // hop
    return np.abs(np.stack([np.fft.rfft(pad[i * hop:i * hop + n_fft] * w)
                            for i in range(frames)]))


def test_stft_losses_match_a_numpy_oracle():
    r = np.random.default_rng(0)
    x, y = r.normal(size=(1, 2048)).astype(np.float32), r.normal(size=(1, 2048)).astype(np.float32)
    sc, mag = stft_losses(jnp.asarray(x), jnp.asarray(y), 256, 64)
    mx = np.sqrt(_np_stft_mag(x[0], 256, 64) ** 2 + 1e-10)
    my = np.sqrt(_np_stft_mag(y[0], 256, 64) ** 2 + 1e-10)
    assert float(sc) == pytest.approx(np.linalg.norm(my - mx) / np.linalg.norm(my), rel=1e-4)
    assert float(mag) == pytest.approx(np.mean(np.abs(np.log(my) - np.log(mx))), rel=1e-4)


def test_mr_stft_loss_is_zero_for_identical_and_grows_with_noise():
    y = jnp.asarray(np.random.default_rng(1).normal(size=(2, 2048)).astype(np.float32))
    res = ((128, 32), (256, 64))
    assert float(multi_resolution_stft_loss(y, y, res)) == pytest.approx(0.0, abs=1e-5)
    small = multi_resolution_stft_loss(y + 0.01, y, res)
    big = multi_resolution_stft_loss(y + 0.5 * jnp.flip(y, -1), y, res)
    assert 0 < float(small) < float(big)


def test_vocoder_spectrum_is_bounded_and_vocode_is_its_istft():
    """On the mel of silence (the extreme input) the predicted spectrum is finite with its
    magnitude inside the clip range, and ``vocode`` is exactly the iSTFT of that spectrum
    padded to the clip's frames, cut to the requested length."""
    voc = MODELS.build("mel_vocoder", n_fft=256, width=16, depth=1)
    mel = CFG.mel(jnp.zeros((2, 4096)))
    params = voc.init(jax.random.key(0), mel)["params"]
    spec = voc.apply({"params": params}, mel)
    assert spec.shape == (2, mel.shape[1], 129) and jnp.iscomplexobj(spec)
    mag = np.abs(np.asarray(spec))
    assert np.all(mag >= np.exp(-20.0) * (1 - 1e-4)) and np.all(mag <= np.exp(5.0) * (1 + 1e-4))
    wave = vocode(voc, params, mel, CFG, 4096)
    assert wave.shape == (2, 4096) and np.all(np.isfinite(np.asarray(wave)))
    np.testing.assert_allclose(wave, CFG.istft(CFG.pad_frames(spec, 4096), 4096), atol=1e-6)
    # A different mel gives a different waveform: the output depends on the input.
    loud = CFG.mel(0.3 * jnp.sin(jnp.arange(2 * 4096).reshape(2, 4096) * 0.3))
    assert float(jnp.max(jnp.abs(vocode(voc, params, loud, CFG, 4096) - wave))) > 1e-6


def test_vocoder_objective_learns_on_a_fixed_batch():
    import optax
    obj = OBJECTIVES.build("vocoder", mel=CFG.__dict__, resolutions=((128, 32), (256, 64)))(
        MODELS.build("mel_vocoder", n_fft=256, width=32, depth=1), None)
    t = np.arange(4096) / 8000
    tone = (0.1 * np.sin(2 * np.pi * 300 * t)).astype(np.float32)
    batch = {"target": jnp.asarray(tone[None]), "mixture": jnp.asarray(tone[None] * 0.5)}
    params = obj.init(jax.random.key(0), batch)
    opt = optax.adam(3e-3)
    state = opt.init(params)

    @jax.jit
    def step(params, state):
        (loss, _), g = jax.value_and_grad(obj.loss, has_aux=True)(params, batch, None)
        upd, state = opt.update(g, state)
        return optax.apply_updates(params, upd), state, loss

    losses = []
    for _ in range(25):
        params, state, loss = step(params, state)
        losses.append(float(loss))
    assert np.all(np.isfinite(losses)) and losses[-1] < 0.7 * losses[0]


def test_vocoder_objective_needs_a_resolution():
    with pytest.raises(ValueError, match="resolution"):
        OBJECTIVES.build("vocoder", resolutions=())
