"""The mel VAE, its objective, and the shared mel features."""
import os

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


@pytest.mark.slow
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


def test_latent_std_is_a_stage_output_of_the_training_records_only(tmp_path):
    """The flow stage's latent scale comes from the VAE stage's training split
    (``stage_outputs``), not from the evaluator on held-out audio, which writes nothing."""
    import ml_collections as mlc

    from xmodal.core import parallel
    from xmodal.core.eval_context import Applier, EvalContext
    from xmodal.core.registry import EVALUATORS
    obj = OBJECTIVES.build("mel_vae", mel=CFG.__dict__)(
        MODELS.build("mel_vae", latent_channels=4, widths=(8, 8)), None)
    train = {"target": np.asarray(_waves(8, seed=3)), "mixture": np.asarray(_waves(8, seed=4))}
    held_out = {k: 3.0 * v for k, v in train.items()}  # louder audio: another latent spread
    params = obj.init(jax.random.key(0), {k: jnp.asarray(v) for k, v in train.items()})
    mesh = parallel.make_mesh(mlc.ConfigDict({"data": -1, "fsdp": 1, "model": 1}))

    def ctx(arrays):
        return EvalContext(arrays=arrays, class_names=[], params=params, model=obj.model,
                           objective=obj, applier=Applier(mesh, 8), out_dir=str(tmp_path), step=5)
    out = obj.stage_outputs(ctx(train))
    means = np.concatenate([np.asarray(obj.model.apply(
        {"params": params["model"]}, obj.mel.mel(jnp.asarray(train[k])), method="encode")[0])
        for k in ("target", "mixture")])
    assert out["latent_std"] == pytest.approx(float(np.std(means)), rel=1e-5)
    ev = EVALUATORS.build("mel_vae")(ctx(held_out))
    assert np.isfinite(ev["recon_l1"]) and ev["latent_std"] != pytest.approx(out["latent_std"])
    assert os.listdir(tmp_path) == []


def test_flow_stage_refuses_a_vae_stage_without_its_latent_std(tmp_path):
    """No silent fallback to scale 1: a VAE workdir whose outputs lack latent_std is an error
    naming the fix."""
    import json

    import orbax.checkpoint as ocp

    from xmodal.core.registry import SpecError
    vae = MODELS.build("mel_vae", latent_channels=4, widths=(8, 8))
    params = vae.init(jax.random.key(0), jnp.zeros((1, 16, CFG.n_mels)), jax.random.key(0))
    (tmp_path / "spec.json").write_text(json.dumps({
        "model": {"name": "mel_vae", "latent_channels": 4, "widths": [8, 8]},
        "objective": {"name": "mel_vae", "mel": CFG.__dict__}}))
    with ocp.StandardCheckpointer() as ckptr:
        ckptr.save(str(tmp_path / "checkpoints" / "1" / "state"),
                   {"params": {"model": params["params"]}, "ema": {}})
    net = MODELS.build("dit", patch=2, width=32, depth=1, num_heads=2, text_width=16,
                       text_depth=1, text_max_len=16)
    with pytest.raises(SpecError, match="no latent_std output.*--mode=eval"):
        OBJECTIVES.build("flowsep", vae_from=str(tmp_path), max_text_len=16)(net, None)
    (tmp_path / "stage_outputs.json").write_text('{"latent_std": 0.5}')
    obj = OBJECTIVES.build("flowsep", vae_from=str(tmp_path), max_text_len=16)(net, None)
    assert obj.latent_scale == pytest.approx(2.0)
