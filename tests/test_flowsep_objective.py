"""The FlowSep objective (flow in a frozen VAE latent), its sampler, and the separation
transform."""
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from xmodal.data.tokenizer import ByteTokenizer
from xmodal.core.registry import TRANSFORMS
from xmodal.core.registry import MODELS
from xmodal.core.registry import OBJECTIVES

MEL = dict(sample_rate=8000, n_fft=256, hop=128, n_mels=16)
VAE = dict(latent_channels=4, widths=(8, 8))
NET = dict(patch=2, width=32, depth=1, num_heads=2, text_width=16, text_depth=1, text_max_len=16)


def _objective(**kw):
    net = MODELS.build("dit", **NET)
    return OBJECTIVES.build("flowsep", vae=VAE, mel=MEL, max_text_len=16, **kw)(net, None)


def _params(obj, batch, seed=0):
    """The mapping the trainer gives the loss: the trained "model" group and the frozen
    networks of ``load_frozen`` (the VAE, and the query encoder when there is one)."""
    frozen = jax.tree.map(jnp.asarray, obj.load_frozen())
    return {**frozen, **obj.init(jax.random.key(seed), batch, frozen)}


def _batch(b=4, seed=0):
    r = np.random.default_rng(seed)
    tgt = r.normal(0, 0.1, (b, 4096)).astype(np.float32)
    mix = tgt + r.normal(0, 0.1, (b, 4096)).astype(np.float32)
    q = ByteTokenizer(16).encode_batch(["separate the violin"] * b)
    return {"target": jnp.asarray(tgt), "mixture": jnp.asarray(mix), "query": jnp.asarray(q)}


@pytest.mark.slow
def test_loss_is_finite_and_the_flow_learns_a_fixed_batch():
    import optax
    obj = _objective()
    batch = _batch()
    params = _params(obj, batch)
    loss, aux = obj.loss(params, batch, jax.random.key(1))
    assert np.isfinite(float(loss)) and set(aux) >= {"mse", "t_mean", "cond_dropped"}
    opt = optax.adam(3e-3)
    frozen = {"vae": params.pop("vae")}
    state = opt.init(params)

    @jax.jit
    def step(params, state, rng):
        (loss, _), g = jax.value_and_grad(
            lambda p: obj.loss({**frozen, **p}, batch, rng), has_aux=True)(params)
        upd, state = opt.update(g, state)
        return optax.apply_updates(params, upd), state, loss

    # Fixed noise/time (same rng) so the decrease is the fit, not luck of the draw.
    first = None
    for _ in range(15):
        params, state, loss = step(params, state, jax.random.key(3))
        first = first if first is not None else float(loss)
    assert float(loss) < 0.7 * first


def test_target_latent_is_the_scaled_vae_mean_and_frozen():
    obj = _objective(latent_scale=2.0)
    batch = _batch()
    params = _params(obj, batch)
    z = obj.encode(params, batch["target"])
    assert z.shape == (4, 8, 4, 4)  # frames 32 / 4, mels 16 / 4, C = 4
    mean, _ = obj.vae.apply({"params": params["vae"]}, obj.mel.mel(batch["target"]),
                            method="encode")
    np.testing.assert_allclose(z, 2.0 * mean, rtol=1e-6)
    # No gradient flows into the VAE: d(encode)/d(wave) through stop_gradient is 0, and the
    # loss has none w.r.t. the VAE's parameters.
    # Jitted gradients: one program each (cached), not the loss op by op.
    g = jax.jit(jax.grad(lambda w: jnp.sum(obj.encode(params, w))))(batch["target"])
    assert float(jnp.max(jnp.abs(g))) == 0.0
    gv = jax.jit(jax.grad(lambda v: obj.loss(dict(params, vae=v), batch, jax.random.key(1))[0]))(
        params["vae"])
    assert all(float(jnp.max(jnp.abs(x))) == 0.0 for x in jax.tree.leaves(gv))
    # decode undoes the scale.
    np.testing.assert_allclose(obj.decode_mel(params, z),
                               obj.vae.apply({"params": params["vae"]}, mean,
                                             method="decode"), rtol=1e-5, atol=1e-5)


def test_cfg_drop_one_uses_only_the_empty_query():
    obj = _objective(cfg_drop=1.0)
    batch = _batch()
    params = _params(obj, batch)
    other = dict(batch, query=jnp.asarray(ByteTokenizer(16).encode_batch(["separate the oboe"] * 4)))
    l1, a1 = obj.loss(params, batch, jax.random.key(5))
    l2, _ = obj.loss(params, other, jax.random.key(5))
    assert float(a1["cond_dropped"]) == 1.0 and float(l1) == pytest.approx(float(l2))


@pytest.mark.slow
@pytest.mark.parametrize("solver,steps,nfe", [("euler", 10, 10), ("heun", 3, 6)])
def test_separate_latent_counts_evaluations_and_cfg(solver, steps, nfe):
    obj = _objective()
    batch = _batch(2)
    params = _params(obj, batch)
    z, n = obj.separate_latent(params, batch["mixture"], batch["query"], jax.random.key(1),
                               steps=steps, solver=solver)
    assert n == nfe and z.shape == (2, 8, 4, 4)
    # Untrained (zero-output) network: the ODE does not move the noise, with or without CFG.
    x0 = jax.random.normal(jax.random.key(1), z.shape)
    np.testing.assert_allclose(z, x0, atol=1e-5)
    zg, _ = obj.separate_latent(params, batch["mixture"], batch["query"], jax.random.key(1),
                                steps=steps, solver=solver, cfg_scale=3.0)
    np.testing.assert_allclose(zg, x0, atol=1e-5)
    assert obj.decode_mel(params, z).shape == (2, 32, 16)


@pytest.mark.slow
def test_x1_prediction_is_converted_to_the_path_velocity():
    """With prediction="x1" the network's output is the clean latent: a perfect x1 prediction
    gives exactly the CondOT velocity x1 - (1 - sigma_min) x0 (away from t = 1, where the
    division is bounded), so the loss of the velocity MSE is zero for it."""
    obj = _objective(prediction="x1")
    r = np.random.default_rng(0)
    x0, x1 = (jnp.asarray(r.normal(size=(3, 8, 4, 4)), jnp.float32) for _ in range(2))
    t = jnp.asarray([0.0, 0.3, 0.9])
    x_t = obj.path.sample(x0, x1, t).x_t

    class Constant:  # stands in for the network: predicts the same x1 whatever it is given
        def __init__(self, value):
            self.value = value

        def apply(self, variables, x, tt, mix, query):
            return self.value
    v = dataclasses.replace(obj, model=Constant(x1)).network_velocity({}, x_t, t, None, None)
    np.testing.assert_allclose(v, x1 - (1 - 1e-4) * x0, rtol=1e-4, atol=1e-4)
    # Near t = 1 the bound keeps the velocity finite and bounded for a wrong prediction.
    t1 = jnp.ones((3,))
    wrong = dataclasses.replace(obj, model=Constant(jnp.zeros_like(x1)))
    v1 = wrong.network_velocity({}, x1, t1, None, None)
    assert np.all(np.isfinite(v1)) and float(jnp.max(jnp.abs(v1))) <= 20 * float(
        jnp.max(jnp.abs(x1))) + 1e-3
    # The whole loss trains and samples with it.
    batch = _batch(2)
    params = _params(obj, batch)
    loss, _ = obj.loss(params, batch, jax.random.key(1))
    z, n = obj.separate_latent(params, batch["mixture"], batch["query"], jax.random.key(1),
                               steps=4, cfg_scale=2.0)
    assert np.isfinite(float(loss)) and n == 4 and np.all(np.isfinite(z))


def _with_query_encoder(obj):
    """``obj`` with a frozen two-tower text encoder (as ``query_from`` loads one)."""
    clap = MODELS.build("two_tower", embed_dim=8,
                        towers=dict(
                            audio=dict(name="audio_encoder", sample_rate=8000, n_fft=256,
                                       hop=128, n_mels=16, channels=(4,), width=8),
                            text=dict(name="text_transformer", max_len=16, width=8, depth=1,
                                      num_heads=2)))
    qp = clap.init(jax.random.key(7), jnp.zeros((1, 4096)), jnp.zeros((1, 16), jnp.int32))
    return dataclasses.replace(obj, query_encoder=clap, query_params=qp["params"])


@pytest.mark.slow
def test_frozen_query_encoder_conditions_the_flow_by_its_text_embedding():
    obj = _with_query_encoder(_objective())
    batch = _batch()
    params = _params(obj, batch)
    assert set(params) == {"model", "vae", "query_encoder"}
    q = obj.encode_query(params, batch["query"])
    assert q.shape == (4, 8) and q.dtype == jnp.float32
    np.testing.assert_allclose(np.linalg.norm(q, axis=1), 1.0, atol=1e-5)  # CLAP embedding
    assert obj.null_query(params).shape == (8,)
    # The network takes the embedding through its query MLP, not the byte-token Transformer.
    assert "query_fc1" in params["model"]["text"] and "token_embed" not in params["model"]["text"]
    # Frozen: the loss has no gradient path into the encoder (its params are not trained).
    g = jax.grad(lambda qp: obj.encode_query(dict(params, query_encoder=qp),
                                             batch["query"]).sum())(params["query_encoder"])
    assert all(float(jnp.max(jnp.abs(x))) == 0.0 for x in jax.tree.leaves(g))
    # The query changes the velocity once the network is not at its zero init.
    params = dict(params, model=jax.tree.map(lambda x: x + 0.05 * jnp.ones_like(x),
                                             params["model"]))
    other = jnp.asarray(ByteTokenizer(16).encode_batch(["separate the oboe"] * 4))
    mix = obj.encode(params, batch["mixture"])
    t = jnp.full((4,), 0.5)
    v1 = obj.network_velocity(params["model"], mix, t, mix, obj.encode_query(params, batch["query"]))
    v2 = obj.network_velocity(params["model"], mix, t, mix, obj.encode_query(params, other))
    assert float(jnp.max(jnp.abs(v1 - v2))) > 1e-4
    # CFG dropout swaps in the empty query's embedding; sampling with guidance runs.
    drop = dataclasses.replace(obj, cfg_drop=1.0)
    l1, _ = drop.loss(params, batch, jax.random.key(5))
    l2, _ = drop.loss(params, dict(batch, query=other), jax.random.key(5))
    assert float(l1) == pytest.approx(float(l2))
    z, n = obj.separate_latent(params, batch["mixture"], batch["query"], jax.random.key(1),
                               steps=2, cfg_scale=2.0)
    assert n == 2 and z.shape == mix.shape and np.all(np.isfinite(z))


def test_flowsep_rejects_bad_arguments_and_missing_vae(tmp_path):
    with pytest.raises(ValueError, match="cfg_drop"):
        OBJECTIVES.build("flowsep", cfg_drop=1.5)
    with pytest.raises(ValueError, match="velocity.*x1"):
        OBJECTIVES.build("flowsep", prediction="noise")
    from xmodal.core.registry import SpecError
    with pytest.raises(SpecError, match="spec.json"):
        OBJECTIVES.build("flowsep", vae_from=str(tmp_path))(MODELS.build("dit", **NET), None)


def test_separation_transform_resamples_crops_and_tokenizes():
    t = TRANSFORMS.build("separation", sample_rate=8000, source_rate=16000, length=1000,
                         offset=0.25, max_text_len=32)
    ramp = np.arange(16000, dtype=np.float32) / 16000
    rec = {"mixture": ramp, "target": 0.5 * ramp, "query": b"separate the violin"}
    out = t.map(rec)
    assert set(out) == {"mixture", "target", "query"}
    assert out["mixture"].shape == (1000,) and out["mixture"].dtype == np.float32
    # 0.25 s in: the (resampled) ramp reads ~0.25 there; target keeps its scale relative to mix.
    assert out["mixture"][0] == pytest.approx(0.25, abs=0.01)
    np.testing.assert_allclose(out["target"], 0.5 * out["mixture"], atol=1e-6)
    assert t.tokenizer.decode(out["query"]) == "separate the violin"
    np.testing.assert_array_equal(t.map(rec)["mixture"], out["mixture"])  # deterministic
    with pytest.raises(ValueError, match="need length"):
        TRANSFORMS.build("separation", length=20000).map(rec)
    with pytest.raises(KeyError, match="query"):
        t.map({"mixture": ramp, "target": ramp})


def test_mixture_phase_renderers_pass_the_mixture_through_for_its_own_mel():
    """An estimate equal to the ratio's reference gives mask 1: the mixture comes back (up to
    the STFT round trip). ``mixture_phase`` refers to the mixture's mel, ``vae_ratio`` to its
    VAE reconstruction, so each passes the mixture for its own reference only."""
    from xmodal.projects.flowsep.separator import render
    obj = _objective()
    batch = _batch(2)
    mix, params = batch["mixture"], _params(obj, batch)
    own = obj.mel.mel(mix)
    decoded = obj.decode_mel(params, obj.encode(params, mix))
    out = render(obj, params, own, mix, which=("mixture_phase",))
    np.testing.assert_allclose(out["mixture_phase"], mix, atol=1e-4)
    out = render(obj, params, decoded, mix, which=("vae_ratio", "mixture_phase"))
    np.testing.assert_allclose(out["vae_ratio"], mix, atol=1e-4)
    assert float(jnp.max(jnp.abs(out["mixture_phase"] - mix))) > 1e-3  # untrained VAE ≠ mel
    # A silent estimate silences both.
    quiet = render(obj, params, jnp.full_like(own, -20.0), mix, which=("vae_ratio",))["vae_ratio"]
    assert float(jnp.max(jnp.abs(quiet))) < 1e-2 * float(jnp.max(jnp.abs(mix)))


@pytest.mark.slow
def test_flowsep_is_a_flow_teacher_and_samples_in_one_step():
    """What score distillation reads of FlowSep: the condition (mixture latent + encoded
    query), guidance that drops only the query, the network's velocity; and the one-step
    sampler a distilled student separates with, G(x0) = x1(x0, t=0)."""
    from xmodal.distill.teacher import FlowTeacher, guided_velocity, x1_prediction
    obj = _objective()
    assert isinstance(obj, FlowTeacher)
    batch = _batch()
    params = _params(obj, batch)
    params = dict(params, model=jax.tree.map(lambda x: x + 0.05 * jnp.ones_like(x),
                                             params["model"]))
    x1 = obj.flow_data(params, batch)
    np.testing.assert_array_equal(x1, obj.encode(params, batch["target"]))
    cond = obj.flow_condition(params, batch)
    np.testing.assert_array_equal(cond["mixture"], obj.encode(params, batch["mixture"]))
    null = obj.null_condition(params, cond)
    np.testing.assert_array_equal(null["mixture"], cond["mixture"])   # the mixture stays
    empty = obj.encode_query(params, jnp.asarray(ByteTokenizer(16).encode_batch([""] * 4)))
    np.testing.assert_array_equal(null["query"], empty)
    t = jnp.full((4,), 0.3)
    x_t = jax.random.normal(jax.random.key(3), x1.shape)
    v = obj.velocity(params["model"], x_t, t, cond)
    np.testing.assert_array_equal(
        v, obj.network_velocity(params["model"], x_t, t, cond["mixture"], cond["query"]))
    # Guidance at scale 2 is 2 v_c - v_null, with v_null from the empty query.
    v_null = obj.velocity(params["model"], x_t, t, null)
    g = guided_velocity(obj, params["model"], x_t, t, cond, null, 2.0)
    np.testing.assert_allclose(g, 2 * v - v_null, rtol=1e-4, atol=1e-5)
    assert float(jnp.max(jnp.abs(v - v_null))) > 1e-4
    # One step: the x1-prediction at t = 0 from the same noise the sampler draws.
    rng = jax.random.key(7)
    z, nfe = obj.separate_latent(params, batch["mixture"], batch["query"], rng,
                                 solver="one_step", noise_scale=0.5)
    x0 = 0.5 * jax.random.normal(rng, x1.shape, jnp.float32)
    want = x1_prediction(obj, params["model"], x0, jnp.zeros((4,)), cond)
    assert nfe == 1
    np.testing.assert_allclose(z, want, rtol=1e-5, atol=1e-6)
    # For the CondOT path x1 = x0 + v(x0, 0) - sigma_min x0: one Euler step, up to sigma_min.
    euler, _ = obj.separate_latent(params, batch["mixture"], batch["query"], rng, steps=1,
                                   noise_scale=0.5)
    np.testing.assert_allclose(z, euler - 1e-4 * x0, rtol=1e-4, atol=1e-5)
