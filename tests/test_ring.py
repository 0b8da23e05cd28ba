"""Ring losses: same value and gradients as the plain losses, and O(B^2/n^2) logit memory."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import AxisType, NamedSharding, PartitionSpec as P

from xmodal.losses.contrastive import clip_loss, siglip_loss
from xmodal.losses.ring import ring_clip_loss, ring_siglip_loss


def make_mesh(shape, names):
    return jax.make_mesh(shape, names, axis_types=(AxisType.Auto,) * len(names))


def unit_rows(key, b, d):
    x = jax.random.normal(key, (b, d))
    return x / jnp.linalg.norm(x, axis=1, keepdims=True)


def pair(b, d, seed=0):
    kx, ky = jax.random.split(jax.random.key(seed))
    x = unit_rows(kx, b, d)
    # Texts near their images, so the positives matter and accuracies are neither 0 nor 1.
    y = unit_rows(ky, b, d) + 0.7 * x
    return x, y / jnp.linalg.norm(y, axis=1, keepdims=True)


def assert_same_loss_and_grads(plain, ring, args, sharded_args):
    value = lambda f: (lambda *a: f(*a)[0])
    argnums = tuple(range(len(args)))
    want_loss, want_aux = jax.jit(plain)(*args)
    got_loss, got_aux = jax.jit(ring)(*sharded_args)
    np.testing.assert_allclose(got_loss, want_loss, rtol=1e-5)
    for key in ("i2t_acc", "t2i_acc"):
        np.testing.assert_allclose(got_aux[key], want_aux[key], rtol=1e-6)
    want = jax.jit(jax.grad(value(plain), argnums=argnums))(*args)
    got = jax.jit(jax.grad(value(ring), argnums=argnums))(*sharded_args)
    for g, w in zip(got, want):
        scale = np.max(np.abs(w))
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-5 * scale)


@pytest.mark.parametrize("scale", [10.0, 100.0])
def test_ring_clip_matches_plain_on_8_devices(scale):
    mesh = make_mesh((8,), ("data",))
    x, y = pair(64, 16)
    shard = NamedSharding(mesh, P("data"))
    xs, ys = jax.device_put(x, shard), jax.device_put(y, shard)
    _, aux = clip_loss(x, y, scale)
    assert 0.0 < aux["i2t_acc"] < 1.0
    assert_same_loss_and_grads(
        clip_loss, lambda a, b, s: ring_clip_loss(a, b, s, mesh=mesh),
        (x, y, jnp.float32(scale)), (xs, ys, jnp.float32(scale)))


@pytest.mark.parametrize("scale,bias", [(10.0, -10.0), (100.0, -3.0)])
def test_ring_siglip_matches_plain_on_8_devices(scale, bias):
    mesh = make_mesh((8,), ("data",))
    x, y = pair(64, 16, seed=1)
    shard = NamedSharding(mesh, P("data"))
    xs, ys = jax.device_put(x, shard), jax.device_put(y, shard)
    args = (x, y, jnp.float32(scale), jnp.float32(bias))
    assert_same_loss_and_grads(
        siglip_loss, lambda a, b, s, t: ring_siglip_loss(a, b, s, t, mesh=mesh),
        args, (xs, ys) + args[2:])


def test_ring_over_two_mesh_axes():
    mesh = make_mesh((4, 2, 1), ("data", "fsdp", "model"))
    axis = ("data", "fsdp")
    x, y = pair(32, 8, seed=2)
    shard = NamedSharding(mesh, P(axis))
    xs, ys = jax.device_put(x, shard), jax.device_put(y, shard)
    s, t = jnp.float32(20.0), jnp.float32(-5.0)
    assert_same_loss_and_grads(
        clip_loss, lambda a, b, c: ring_clip_loss(a, b, c, mesh=mesh, axis=axis),
        (x, y, s), (xs, ys, s))
    assert_same_loss_and_grads(
        siglip_loss, lambda a, b, c, d: ring_siglip_loss(a, b, c, d, mesh=mesh, axis=axis),
        (x, y, s, t), (xs, ys, s, t))


def test_ring_on_one_axis_of_a_larger_mesh():
    # Batch over "data" only; the computation is replicated over "fsdp".
    mesh = make_mesh((4, 2), ("data", "fsdp"))
    x, y = pair(16, 8, seed=3)
    xs, ys = (jax.device_put(a, NamedSharding(mesh, P("data"))) for a in (x, y))
    got, _ = jax.jit(lambda a, b: ring_clip_loss(a, b, 7.0, mesh=mesh))(xs, ys)
    np.testing.assert_allclose(got, clip_loss(x, y, 7.0)[0], rtol=1e-5)


def test_ring_identical_embeddings_and_bf16():
    mesh = make_mesh((8,), ("data",))
    x = jnp.tile(unit_rows(jax.random.key(4), 1, 8), (16, 1)).astype(jnp.bfloat16)
    loss, aux = jax.jit(lambda a: ring_clip_loss(a, a, 100.0, mesh=mesh))(x)
    assert loss.dtype == jnp.float32
    np.testing.assert_allclose(loss, clip_loss(x, x, 100.0)[0], rtol=1e-5)
    np.testing.assert_allclose(aux["i2t_acc"], 0.0)
    loss, _ = jax.jit(lambda a: ring_siglip_loss(a, a, 100.0, -10.0, mesh=mesh))(x)
    np.testing.assert_allclose(loss, siglip_loss(x, x, 100.0, -10.0)[0], rtol=1e-5)


def test_ring_rejects_bad_input():
    mesh = make_mesh((8,), ("data",))
    x = jnp.zeros((12, 4))
    with pytest.raises(ValueError, match="12 is not divisible by the 8 devices"):
        ring_clip_loss(x, x, 1.0, mesh=mesh)
    with pytest.raises(ValueError, match="'batch' is not a mesh axis"):
        ring_siglip_loss(x, x, 1.0, 0.0, mesh=mesh, axis="batch")
    with pytest.raises(ValueError, match=r"\(16, 4\).*\(16, 5\)"):
        ring_clip_loss(jnp.zeros((16, 4)), jnp.zeros((16, 5)), 1.0, mesh=mesh)


def temp_bytes(fn, b, d, mesh):
    emb = jax.ShapeDtypeStruct((b, d), jnp.float32, sharding=NamedSharding(mesh, P("data")))
    scalar = jax.ShapeDtypeStruct((), jnp.float32)
    forward = jax.jit(lambda *a: fn(*a)[0]).lower(emb, emb, scalar)
    backward = jax.jit(jax.grad(lambda *a: fn(*a)[0], argnums=(0, 1, 2))).lower(emb, emb, scalar)
    return [f.compile().memory_analysis().temp_size_in_bytes for f in (forward, backward)]


def test_ring_memory_stays_blockwise():
    n, b, d = 8, 2048, 64
    mesh = make_mesh((n,), ("data",))
    full = b * b * 4
    block = (b // n) ** 2 * 4

    # The all-gather form, measured the same way, must show the full matrix; this checks that
    # memory_analysis on this backend sees the logits at all.
    def gathered(x, y, s):
        x = jax.lax.all_gather(x, "data", tiled=True)
        y = jax.lax.all_gather(y, "data", tiled=True)
        return clip_loss(x, y, s)[0][None]

    gather = jax.shard_map(gathered, mesh=mesh, in_specs=(P("data"), P("data"), P()),
                           out_specs=P("data"))
    assert temp_bytes(lambda *a: (gather(*a)[0],), b, d, mesh)[0] >= full

    rings = {
        "clip": lambda x, y, s: ring_clip_loss(x, y, s, mesh=mesh),
        "siglip": lambda x, y, s: ring_siglip_loss(x, y, s, -s, mesh=mesh),
    }
    for name, fn in rings.items():
        forward, backward = temp_bytes(fn, b, d, mesh)
        # Below even one row-slab [B/n, B] of logits, yet at least one [B/n, B/n] block. Keeping
        # every step's block for the backward pass (no checkpoint) would cost B*B/n as well.
        assert block <= forward < full / n, (name, forward)
        assert block <= backward < full / n, (name, backward)
