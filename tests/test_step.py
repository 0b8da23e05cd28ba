"""The pure train step: gradient accumulation, per-group cadence, EMA; the optimizer table."""
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from xmodal.core import optim
from xmodal.core import schema
from xmodal.core import train_state
from xmodal.core.step import accumulated_grads, make_train_step


@dataclasses.dataclass(frozen=True)
class Regression:
    """loss = mean((x·w_g + b - y)²) for each group g: a mean over examples."""
    groups: tuple = ("a",)
    cadence: dict = dataclasses.field(default_factory=dict)

    def loss(self, params, batch, rng, group):
        p = params[group]
        pred = batch["x"] @ p["w"] + p["b"]
        return jnp.mean((pred - batch["y"]) ** 2), {"pred_mean": pred.mean()}


def _batch(n=16, d=3, seed=0):
    r = np.random.default_rng(seed)
    return {"x": jnp.asarray(r.normal(size=(n, d)), jnp.float32),
            "y": jnp.asarray(r.normal(size=(n,)), jnp.float32)}


def _params(d=3):
    return {"w": jnp.arange(d, dtype=jnp.float32) / 10, "b": jnp.zeros((), jnp.float32)}


def _optim(**over):
    cfg = dict(schema.defaults()["optim"], **over)
    return cfg


def test_accumulation_equals_full_batch_for_a_mean_loss():
    obj, batch, p = Regression(), _batch(), {"a": _params()}
    grad_fn = jax.value_and_grad(lambda q, mb, r: obj.loss({"a": q}, mb, r, "a"), has_aux=True)
    (l1, _), g1 = accumulated_grads(grad_fn, p["a"], batch, jax.random.key(0), 1)
    (l4, _), g4 = accumulated_grads(grad_fn, p["a"], batch, jax.random.key(0), 4)
    np.testing.assert_allclose(l1, l4, rtol=1e-6)
    for a, b in zip(jax.tree.leaves(g1), jax.tree.leaves(g4)):
        np.testing.assert_allclose(a, b, rtol=1e-5)
    with pytest.raises(ValueError, match="not divisible by grad_accum=5"):
        accumulated_grads(grad_fn, p["a"], batch, jax.random.key(0), 5)


def _state(obj, ema=False, **optim_over):
    params = {g: _params() for g in obj.groups}
    txs, scheds = {}, {}
    for g in obj.groups:
        txs[g], scheds[g] = optim.make(_optim(**optim_over), params[g], total_steps=10)
    return train_state.create(params, txs, jax.random.key(0), ema=ema), txs, scheds


def test_cadence_updates_a_group_only_on_its_steps():
    obj = Regression(groups=("a", "b"), cadence={"a": (2, 0)})
    state, txs, scheds = _state(obj, name="sgd", momentum=0.0, lr=0.1, weight_decay=0.0,
                                schedule="constant", grad_clip_norm=0.0)
    step = jax.jit(make_train_step(obj, txs, scheds))
    batch = _batch()
    s1, m1 = step(state, batch)           # step 0: both update
    s2, m2 = step(s1, batch)              # step 1: only b updates
    assert not np.allclose(s1.params["a"]["w"], state.params["a"]["w"])
    np.testing.assert_array_equal(s2.params["a"]["w"], s1.params["a"]["w"])
    assert not np.allclose(s2.params["b"]["w"], s1.params["b"]["w"])
    assert float(m2["train/a/loss"]) == 0.0 and float(m2["train/b/loss"]) > 0
    assert int(s2.step) == 2


def test_a_cadenced_group_is_traced_once_and_its_skipped_metrics_are_zeros():
    # The skip branch takes its metric names from the update's own trace: compiling the step
    # traces each group's loss once (it was twice for a cadenced group: seconds for a DMD
    # generator's network), and a skipped step still reports every metric, as 0.
    traced = []

    @dataclasses.dataclass(frozen=True)
    class Counting(Regression):
        def loss(self, params, batch, rng, group):
            traced.append(group)
            return super().loss(params, batch, rng, group)

    obj = Counting(groups=("a", "b"), cadence={"a": (2, 1)})
    state, txs, scheds = _state(obj)
    step = jax.jit(make_train_step(obj, txs, scheds))
    _, m0 = step(state, _batch())                       # step 0: a skips
    assert sorted(traced) == ["a", "b"]
    assert {k for k in m0 if k.startswith("train/a/")} == {
        f"train/a/{k}" for k in ("loss", "grad_norm", "update_norm", "param_norm", "lr",
                                 "pred_mean")}
    assert all(float(v) == 0.0 for k, v in m0.items() if k.startswith("train/a/"))
    assert float(m0["train/b/loss"]) > 0


def test_ema_follows_parameters():
    obj = Regression()
    state, txs, scheds = _state(obj, ema=True)
    d = 0.9
    new, _ = jax.jit(make_train_step(obj, txs, scheds, ema_decay=d))(state, _batch())
    for e, p0, p1 in zip(jax.tree.leaves(new.ema), jax.tree.leaves(state.params),
                         jax.tree.leaves(new.params)):
        np.testing.assert_allclose(e, d * p0 + (1 - d) * p1, rtol=1e-6)


def test_freeze_and_lr_multiplier():
    obj = Regression()
    state, txs, scheds = _state(obj, name="sgd", momentum=0.0, lr=0.1, weight_decay=0.0,
                                schedule="constant", grad_clip_norm=0.0,
                                freeze=[r"b"], lr_mults=[(r"w", 0.5)])
    new, _ = jax.jit(make_train_step(obj, txs, scheds))(state, _batch())
    np.testing.assert_array_equal(new.params["a"]["b"], state.params["a"]["b"])
    grad_fn = jax.grad(lambda q: obj.loss({"a": q}, _batch(), None, "a")[0])
    g = grad_fn(state.params["a"])
    np.testing.assert_allclose(new.params["a"]["w"], state.params["a"]["w"] - 0.05 * g["w"],
                               rtol=1e-6)


def test_frozen_grads_do_not_count_towards_clipping():
    cfg = _optim(name="sgd", momentum=0.0, lr=1.0, weight_decay=0.0, schedule="constant",
                 grad_clip_norm=1.0, freeze=[r"b"])
    params = {"w": jnp.zeros(2), "b": jnp.zeros(())}
    tx, _ = optim.make(cfg, params, 10)
    grads = {"w": jnp.array([0.6, 0.0]), "b": jnp.array(100.0)}  # norm 0.6 without b
    upd, _ = tx.update(grads, tx.init(params), params)
    np.testing.assert_allclose(upd["w"], [-0.6, 0.0], rtol=1e-6)
    assert float(upd["b"]) == 0.0


def test_warmup_cosine_schedule():
    cfg = _optim(lr=1.0, warmup_steps=10, schedule="cosine", end_lr_factor=0.1)
    s = optim.schedule(cfg, total_steps=110)
    assert float(s(0)) == 0.0
    np.testing.assert_allclose(float(s(5)), 0.5, rtol=1e-6)
    np.testing.assert_allclose(float(s(10)), 1.0, rtol=1e-6)
    np.testing.assert_allclose(float(s(60)), 0.1 + 0.9 * 0.5, rtol=1e-5)
    np.testing.assert_allclose(float(s(110)), 0.1, rtol=1e-5)


def test_decay_mask_excludes_biases_and_scales():
    cfg = _optim(name="adamw", lr=0.0, weight_decay=1.0, schedule="constant", grad_clip_norm=0.0)
    labels = optim._decay_mask(cfg, {"dense": {"kernel": 0, "bias": 0}, "ln": {"scale": 0}})
    assert labels == {"dense": {"kernel": True, "bias": False}, "ln": {"scale": False}}


@dataclasses.dataclass(frozen=True)
class Chase:
    """Group "a" moves towards 1, group "b" towards a: b's loss reads a's parameters."""
    groups: tuple = ("a", "b")

    def loss(self, params, batch, rng, group):
        if group == "a":
            return jnp.sum((params["a"]["w"] - 1.0) ** 2), {}
        return jnp.sum((params["b"]["w"] - params["a"]["w"]) ** 2), {}


def test_a_later_group_reads_the_parameters_an_earlier_group_updated_in_the_same_step():
    obj, lr = Chase(), 0.1
    params = {g: {"w": jnp.zeros((2,), jnp.float32)} for g in obj.groups}
    txs, scheds = {}, {}
    for g in obj.groups:
        txs[g], scheds[g] = optim.make(_optim(name="sgd", momentum=0.0, lr=lr, weight_decay=0.0,
                                              schedule="constant", grad_clip_norm=0.0),
                                       params[g], total_steps=10)
    state = train_state.create(params, txs, jax.random.key(0), ema=False)
    new, _ = jax.jit(make_train_step(obj, txs, scheds))(state, _batch())
    a = 0.0 - lr * 2 * (0.0 - 1.0)                  # 0.2
    np.testing.assert_allclose(new.params["a"]["w"], a, rtol=1e-6)
    # b followed the updated a (0.2), not the a it started the step with (0).
    np.testing.assert_allclose(new.params["b"]["w"], 0.0 - lr * 2 * (0.0 - a), rtol=1e-6)
