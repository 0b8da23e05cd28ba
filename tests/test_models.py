"""ViT, text Transformer and two-tower model: shapes, dtypes, padding, specs, sharding, training."""
import math
import re

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax.traverse_util import flatten_dict
from jax.sharding import AxisType

from xmodal.core.precision import Policy
from xmodal.core.registry import MODELS
from xmodal.nn.text import TextTransformer
from xmodal.nn.two_tower import TwoTower
from xmodal.nn.vit import ViT
from xmodal.core.registry import SpecError

TINY = dict(width=32, depth=2, num_heads=2)


def images(batch=4, size=16, seed=0):
    return jnp.asarray(np.random.default_rng(seed).integers(0, 256, (batch, size, size, 3)),
                       jnp.uint8)


def texts(batch=4, length=8, seed=0):
    """Byte-level ids: bos, random bytes, eos, then pads; lengths vary per row."""
    rng = np.random.default_rng(seed)
    ids = np.zeros((batch, length), np.int32)
    for i in range(batch):
        n = int(rng.integers(1, length - 1))
        ids[i, 0] = 1
        ids[i, 1:n + 1] = rng.integers(3, 259, n)
        ids[i, n + 1] = 2
    return jnp.asarray(ids)


def two_tower(policy="f32", bias_init=None, depth=2):
    pol = Policy.from_name(policy)
    tower = {**TINY, "depth": depth}
    return TwoTower(towers={"image": {"name": "vit", "patch_size": 4, **tower},
                            "text": {"name": "text_transformer", "max_len": 16, **tower}},
                    embed_dim=16, bias_init=bias_init, dtype=pol.compute_dtype,
                    param_dtype=pol.param_dtype)


@pytest.mark.parametrize("pool", ["gap", "cls", "map"])
def test_vit_shapes_and_pixel_normalisation(pool):
    model = ViT(patch_size=4, pool=pool, **TINY)
    x = images()
    params = model.init(jax.random.key(0), x)["params"]
    out = model.apply({"params": params}, x)
    assert out.shape == (4, 32) and out.dtype == jnp.float32
    assert params["pos_embedding"].shape == (1, 16, 32)  # (16 / 4)^2 patches
    assert params["patch_embed"]["kernel"].shape == (4 * 4 * 3, 32)
    # uint8 pixels are mapped to [-1, 1] inside: 0 -> -1, 255 -> 1.
    floats = np.asarray(x, np.float32) / 127.5 - 1.0
    np.testing.assert_allclose(model.apply({"params": params}, jnp.asarray(floats)), out,
                               rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("pool", ["eos", "mean"])
@pytest.mark.parametrize("causal", [False, True])
def test_text_padding_does_not_change_output(pool, causal):
    model = TextTransformer(max_len=16, pool=pool, causal=causal, **TINY)
    ids = texts(length=8)
    padded = jnp.pad(ids, ((0, 0), (0, 8)))  # same texts, L = 16
    params = model.init(jax.random.key(0), padded)["params"]
    short = model.apply({"params": params}, ids)
    long = model.apply({"params": params}, padded)
    assert short.shape == (4, 32)
    np.testing.assert_allclose(short, long, rtol=1e-5, atol=1e-5)
    # The check is not vacuous: a real token in place of a pad does change the output.
    changed = padded.at[:, -1].set(65)
    assert not np.allclose(model.apply({"params": params}, changed), long, atol=1e-3)


@pytest.mark.slow
def test_text_eos_pool_reads_the_last_real_token():
    model = TextTransformer(max_len=16, pool="eos", causal=True, width=32, depth=1, num_heads=2)
    ids = texts(length=16)
    params = model.init(jax.random.key(0), ids)["params"]
    out = model.apply({"params": params}, ids)
    # Causal attention: the state at the last real token depends only on tokens before it, so
    # truncating each text right after its eos (dropping the pads) gives the same vector.
    lengths = np.asarray(jnp.sum(ids != 0, axis=1))
    for i, n in enumerate(lengths):
        alone = model.apply({"params": params}, ids[i:i + 1, :n])
        np.testing.assert_allclose(alone[0], out[i], rtol=1e-5, atol=1e-5)


def test_two_tower_outputs_unit_norm_f32_and_logit_params():
    model = two_tower(bias_init=-10.0)
    variables = model.init(jax.random.key(0), images(), texts())
    zimg, ztxt, aux = model.apply(variables, images(), texts())
    assert zimg.shape == (4, 16) and ztxt.shape == (4, 16)
    assert zimg.dtype == jnp.float32 and ztxt.dtype == jnp.float32
    np.testing.assert_allclose(np.linalg.norm(zimg, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(ztxt, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(aux["logit_scale"], 10.0, rtol=1e-6)  # exp(log 10)
    np.testing.assert_allclose(aux["logit_bias"], -10.0)
    np.testing.assert_allclose(model.apply(variables, images(), "image", method="encode"), zimg)
    np.testing.assert_allclose(model.apply(variables, texts(), "text", method="encode"), ztxt)
    params = variables["params"]
    assert params["img_head"]["kernel"].shape == (32, 16) and "bias" not in params["img_head"]
    assert "logit_bias" not in two_tower().init(jax.random.key(0), images(), texts())["params"]
    clip = TwoTower(towers=model.towers, temperature_init=math.log(1 / 0.07))
    _, _, aux = clip.apply(clip.init(jax.random.key(0), images(), texts()), images(), texts())
    np.testing.assert_allclose(aux["logit_scale"], 1 / 0.07, rtol=1e-5)
    assert aux["logit_bias"] is None


def test_parameter_names_for_sharding_rules():
    params = two_tower().init(jax.random.key(0), images(), texts())["params"]
    names = set(flatten_dict(params, sep="/"))
    for name in ["img/encoder/block_0/attn/query/kernel", "img/encoder/block_1/attn/out/kernel",
                 "img/encoder/block_0/mlp/fc1/kernel", "img/encoder/block_0/mlp/fc2/kernel",
                 "img/patch_embed/kernel", "img/pos_embedding", "txt/token_embed/embedding",
                 "txt/pos_embedding", "txt/encoder/ln_final/scale", "img_head/kernel",
                 "txt_head/kernel", "logit_scale"]:
        assert name in names, sorted(names)


@pytest.mark.slow
def test_bf16_policy_keeps_params_f32_and_runs_activations_bf16():
    model = two_tower("bf16")
    variables = model.init(jax.random.key(0), images(), texts())
    assert {p.dtype for p in jax.tree.leaves(variables["params"])} == {jnp.dtype(jnp.float32)}
    apply = jax.jit(lambda v, i, t: model.apply(v, i, t, capture_intermediates=True,
                                                mutable=["intermediates"]))
    (zimg, ztxt, _), state = apply(variables, images(), texts())
    acts = flatten_dict(state["intermediates"], sep="/")
    for path in ["img/encoder/block_0/__call__", "img/encoder/block_0/mlp/fc1/__call__",
                 "txt/encoder/block_1/attn/out/__call__", "img/__call__", "txt_head/__call__"]:
        assert acts[path][0].dtype == jnp.bfloat16, path
    assert zimg.dtype == jnp.float32 and ztxt.dtype == jnp.float32  # normalised in f32
    grads = jax.jit(jax.grad(lambda p: jnp.sum(model.apply({"params": p}, images(), texts())[0])))(
        variables["params"])
    assert {g.dtype for g in jax.tree.leaves(grads)} == {jnp.dtype(jnp.float32)}


def test_bf16_gradient_products_all_read_bf16_operands():
    """Every matrix product of a bf16 model's gradient, forward and backward, reads bf16 operands
    and accumulates in f32 (an f32 x bf16 product would fall off the fast path silently)."""
    model = two_tower("bf16", depth=1)
    params = model.init(jax.random.key(0), images(), texts())["params"]

    def loss(p):
        zimg, ztxt, _ = model.apply({"params": p}, images(), texts())
        return jnp.sum(zimg * ztxt)

    text = jax.jit(jax.grad(loss)).lower(params).as_text()
    types = re.findall(r"stablehlo\.dot_general.*?:\s*\(tensor<([^>]*)>,\s*tensor<([^>]*)>\)"
                       r"\s*->\s*tensor<([^>]*)>", text)
    dots = [tuple(t.rsplit("x", 1)[-1] for t in ts) for ts in types]
    # Per tower: 6 in the block (q, k, v, logits, weighted sum, out), 2 in the MLP, 1 head;
    # the patch embedding adds 1. Each has a forward and two backward products, except that
    # nothing asks for the gradient of the pixels.
    assert len(dots) == 3 * (2 * 9 + 1) - 1, len(dots)
    assert set(dots) == {("bf16", "bf16", "f32")}, set(dots)


def test_misspelt_tower_key_lists_valid_keys():
    with pytest.raises(SpecError, match=r"widht.*valid keys:.*width"):
        MODELS.check_kwargs("vit", {"widht": 32})
    text = {"name": "text_transformer"}
    model = TwoTower(towers={"image": {"name": "vit", "widht": 32}, "text": text})
    with pytest.raises(SpecError,
                       match=r"two_tower towers.image 'vit' has no argument\(s\) widht"):
        model.init(jax.random.key(0), images(), texts())
    model = TwoTower(towers={"image": {"name": "vit", "dtype": "bfloat16"}, "text": text})
    with pytest.raises(SpecError, match="set it on the two_tower model"):
        model.init(jax.random.key(0), images(), texts())
    model = TwoTower(towers={"image": {"name": "resnet"}, "text": text})
    with pytest.raises(SpecError, match=r"unknown model.*text_transformer.*two_tower.*vit"):
        model.init(jax.random.key(0), images(), texts())
    # Two towers, one of them text: an audio tower without text is a spec error, in one line.
    model = TwoTower(towers={"image": {"name": "vit"}, "audio": {"name": "audio_encoder"}})
    with pytest.raises(SpecError, match="must name text and one other modality"):
        model.init(jax.random.key(0), images(), texts())


def test_bad_shapes_and_options_raise_clear_errors():
    with pytest.raises(ValueError, match="not a multiple of patch_size=5"):
        ViT(patch_size=5, **TINY).init(jax.random.key(0), images())
    with pytest.raises(ValueError, match="pool='avg' is not one of gap, cls, map"):
        ViT(pool="avg", **TINY).init(jax.random.key(0), images())
    with pytest.raises(ValueError, match="not divisible by num_heads=3"):
        ViT(width=32, depth=1, num_heads=3).init(jax.random.key(0), images())
    with pytest.raises(ValueError, match="max_len=8; truncate"):
        TextTransformer(max_len=8, **TINY).init(jax.random.key(0), texts(length=16))


def test_dropout_uses_the_dropout_rng_only_in_training():
    model = TextTransformer(max_len=16, dropout=0.5, **TINY)
    ids = texts()
    variables = model.init(jax.random.key(0), ids)
    eval_out = model.apply(variables, ids)
    np.testing.assert_array_equal(model.apply(variables, ids), eval_out)
    a = model.apply(variables, ids, train=True, rngs={"dropout": jax.random.key(1)})
    b = model.apply(variables, ids, train=True, rngs={"dropout": jax.random.key(2)})
    assert not np.allclose(a, eval_out) and not np.allclose(a, b)


def test_logical_constraints_are_a_noop_without_rules_and_shard_with_them():
    model = two_tower()
    variables = model.init(jax.random.key(0), images(8), texts(8))
    plain = jax.jit(model.apply)(variables, images(8), texts(8))
    mesh = jax.make_mesh((8,), ("data",), axis_types=(AxisType.Auto,))
    rules = (("batch", "data"), ("length", None), ("embed", None), ("mlp", None),
             ("heads", None), ("kv", None))
    with jax.set_mesh(mesh), nn.logical_axis_rules(rules):
        lowered = jax.jit(model.apply).lower(variables, images(8), texts(8))
        sharded = lowered.compile()(variables, images(8), texts(8))
    assert "sharding_constraint" in lowered.as_text()  # the annotations took effect
    for a, b in zip(jax.tree.leaves(plain), jax.tree.leaves(sharded)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
    assert "sharding_constraint" not in jax.jit(model.apply).lower(
        variables, images(8), texts(8)).as_text()


@pytest.mark.slow
@pytest.mark.parametrize("policy", ["f32", "bf16"])
def test_train_step_overfits_a_fixed_batch(policy):
    model = two_tower(policy, depth=1)
    img, txt = images(8, seed=1), texts(8, seed=1)
    params = model.init(jax.random.key(0), img, txt)["params"]
    opt = optax.adam(3e-3)

    def loss_fn(p):
        # CLIP loss: cross-entropy over matching pairs, image->text and text->image.
        zimg, ztxt, aux = model.apply({"params": p}, img, txt, train=True)
        logits = aux["logit_scale"] * zimg @ ztxt.T
        labels = jnp.arange(logits.shape[0])
        return 0.5 * (optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
                      + optax.softmax_cross_entropy_with_integer_labels(logits.T, labels).mean())

    @jax.jit
    def step(p, s):
        loss, grads = jax.value_and_grad(loss_fn)(p)
        updates, s = opt.update(grads, s, p)
        return optax.apply_updates(p, updates), s, loss

    state = opt.init(params)
    losses = []
    for _ in range(30):
        params, state, loss = step(params, state)
        losses.append(float(loss))
    assert np.all(np.isfinite(losses))
    assert losses[-1] < 0.25 * losses[0], losses
