"""The mel VAE, its objective, and the shared mel features."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from xmodal.audio.mel import MelConfig
from xmodal.core.registry import MODELS
from xmodal.core.registry import OBJECTIVES
from xmodal.projects.flowsep.vae_loss import gaussian_kl

CFG = MelConfig(sample_rate=8000, n_fft=256, hop=128, n_mels=16)


def _waves(b=2, t=4096, seed=0):
    return jnp.asarray(np.random.default_rng(seed).normal(0, 0.1, (b, t)).astype(np.float32))


def test_gaussian_kl_hand_computed():
    # KL(N(1, e^0) || N(0, 1)) = 0.5 (1 + 1 - 1 - 0) = 0.5; N(0, 1) itself: 0.
    assert float(gaussian_kl(jnp.array(1.0), jnp.array(0.0))) == pytest.approx(0.5)
    assert float(gaussian_kl(jnp.array(0.0), jnp.array(0.0))) == pytest.approx(0.0)
    # mean 0, variance e: 0.5 (e - 1 - 1)
    assert float(gaussian_kl(jnp.array(0.0), jnp.array(1.0))) == pytest.approx(0.5 * (np.e - 2))


def test_vae_shapes_and_latent_downsampling():
    vae = MODELS.build("mel_vae", latent_channels=4, widths=(8, 8))
    mel = CFG.mel(_waves())
    assert mel.shape == (2, CFG.frames(4096), 16) and mel.shape[1] % 4 == 0
    params = vae.init(jax.random.key(0), mel, jax.random.key(1))
    recon, mean, logvar = vae.apply(params, mel, jax.random.key(1))
    assert recon.shape == mel.shape
    assert mean.shape == logvar.shape == (2, mel.shape[1] // 4, 4, 4)
    z, _ = vae.apply(params, mel, method="encode")
    assert vae.apply(params, z, method="decode").shape == mel.shape


def test_vae_rejects_indivisible_mel():
    vae = MODELS.build("mel_vae", latent_channels=4, widths=(8, 8))
    with pytest.raises(ValueError, match="divisible by 4"):
        vae.init(jax.random.key(0), jnp.zeros((1, 10, 16)), jax.random.key(1))


def test_vae_objective_learns_on_a_fixed_batch():
    import optax
    obj = OBJECTIVES.build("mel_vae", kl_weight=1e-3, mel=CFG.__dict__)(
        MODELS.build("mel_vae", latent_channels=4, widths=(8, 8)), None)
    batch = {"target": _waves(seed=1), "mixture": _waves(seed=2)}
    params = obj.init(jax.random.key(0), batch)
    opt = optax.adam(3e-3)
    state = opt.init(params)

    @jax.jit
    def step(params, state, rng):
        (loss, aux), g = jax.value_and_grad(obj.loss, has_aux=True)(params, batch, rng)
        upd, state = opt.update(g, state)
        return optax.apply_updates(params, upd), state, loss

    losses = []
    for i in range(30):
        params, state, loss = step(params, state, jax.random.key(i))
        losses.append(float(loss))
    assert np.all(np.isfinite(losses)) and losses[-1] < 0.6 * losses[0]


def test_mel_features_silence_is_finite_and_ratio_mask_properties():
    silence = jnp.zeros((1, 4096))
    mel = CFG.mel(silence)
    assert np.all(np.isfinite(np.asarray(mel)))
    assert np.allclose(mel, (np.log(CFG.floor) - CFG.offset) / CFG.scale)
    x = _waves(1)
    m = CFG.mel(x)
    # estimate == mixture: the mask passes everything (1 at every bin).
    assert np.allclose(CFG.mel_ratio_mask(m, m), 1.0, atol=1e-5)
    # estimate far below the mixture: the mask is ~0; above: clipped at 1.
    assert float(jnp.max(CFG.mel_ratio_mask(m - 10.0, m))) < 1e-3
    assert np.allclose(CFG.mel_ratio_mask(m + 1.0, m), 1.0)
    # pad_frames restores the STFT frame count for the inverse STFT.
    assert CFG.pad_frames(m, 4096).shape[1] == CFG.stft(x).shape[1]


def test_mel_to_magnitude_roughly_inverts_the_filterbank():
    t = np.arange(8192) / 8000
    x = jnp.asarray((0.1 * np.sin(2 * np.pi * 440 * t))[None].astype(np.float32))
    mag = np.abs(np.asarray(CFG.stft(x)))[:, : CFG.frames(8192)]
    est = np.asarray(CFG.mel_to_magnitude(CFG.mel(x)))
    # The energy lands at the right frequency: the peak bin is within one mel band of 440 Hz.
    peak_true = mag[0].mean(0).argmax()
    peak_est = est[0].mean(0).argmax()
    assert abs(int(peak_true) - int(peak_est)) <= 4


def test_vae_evaluator_writes_latent_stats_once_per_step(tmp_path):
    import json

    import ml_collections as mlc

    from xmodal.core import parallel
    from xmodal.core.registry import EVALUATORS
    from xmodal.core.eval_context import Applier, EvalContext
    obj = OBJECTIVES.build("mel_vae", mel=CFG.__dict__)(
        MODELS.build("mel_vae", latent_channels=4, widths=(8, 8)), None)
    arrays = {"target": np.asarray(_waves(8, seed=3)), "mixture": np.asarray(_waves(8, seed=4))}
    params = obj.init(jax.random.key(0), {k: jnp.asarray(v) for k, v in arrays.items()})
    mesh = parallel.make_mesh(mlc.ConfigDict({"data": -1, "fsdp": 1, "model": 1}))
    ctx = EvalContext(arrays=arrays, class_names=[], params=params, model=obj.model,
                      objective=obj, applier=Applier(mesh, 8), workdir=str(tmp_path), step=5)
    out = EVALUATORS.build("mel_vae")(ctx)
    assert np.isfinite(out["recon_l1"]) and out["latent_std"] > 0
    first = json.load(open(tmp_path / "latent_stats.json"))
    assert first["step"] == 5 and first["examples"] == 16
    # A later eval of the same step on fewer examples must not change the flow's scale.
    EVALUATORS.build("mel_vae", max_examples=1)(ctx)
    assert json.load(open(tmp_path / "latent_stats.json")) == first
    ctx.step = 6
    EVALUATORS.build("mel_vae", max_examples=1)(ctx)
    assert json.load(open(tmp_path / "latent_stats.json"))["step"] == 6
