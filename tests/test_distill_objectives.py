"""The distillation objectives against a real (tiny) flow teacher stage on disk: which group
learns what, the generator's gradient through the objective, and bad teachers and students."""
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests import cli
from xmodal.core import spec as spec_lib
from xmodal.core import trainer
from xmodal.core.registry import MODELS, OBJECTIVES, SpecError
from xmodal.core.stages import load_stage
from xmodal.distill.teacher import x1_prediction
from xmodal.losses import distillation as dl

# Each test here trains a stage through the trainer (a module-scoped teacher, sampler or
# workdir): part of the whole suite, not of the quick `-m "not slow"` loop.
pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("on_one_device")]

SPEC = os.path.join(cli.ROOT, "specs/eight_gaussians.py") + ":tiny"


@pytest.fixture(scope="module")
def teacher_dir(tmp_path_factory):
    wd = str(tmp_path_factory.mktemp("eg"))
    trainer.run(spec_lib.validate(spec_lib.load(SPEC)), wd, only=("teacher",))
    return os.path.join(wd, "teacher")


def _bind(teacher_dir, name="dmd", model=None, **kw):
    stage = load_stage(teacher_dir)
    obj = OBJECTIVES.build(name, teacher_from=teacher_dir, **kw)(model or stage.model, None)
    return obj, stage


def _batch(n=16, seed=0):
    r = np.random.default_rng(seed)
    return {"x": jnp.asarray(r.normal(size=(n, 2)), jnp.float32),
            "label": jnp.asarray(r.integers(0, 8, n), jnp.int32)}


def _params(obj, batch):
    frozen = jax.tree.map(jnp.asarray, obj.load_frozen())
    return dict(frozen, **obj.init(jax.random.key(1), batch, frozen))


def test_groups_start_from_the_teacher_and_update_in_order(teacher_dir):
    obj, stage = _bind(teacher_dir)
    assert obj.groups == ("fake_score", "generator") and obj.cadence == {"generator": (5, 4)}
    params = _params(obj, _batch())
    for g in ("fake_score", "generator"):
        for a, b in zip(jax.tree.leaves(params[g]), jax.tree.leaves(stage.params["model"])):
            np.testing.assert_array_equal(a, b)


def test_fake_score_learns_the_generators_samples_not_the_data(teacher_dir):
    obj, _ = _bind(teacher_dir)
    batch, rng = _batch(), jax.random.key(2)
    params = _params(obj, batch)

    def fake_loss(gen, batch=batch):
        return obj.loss(dict(params, generator=gen), batch, rng, "fake_score")[0]

    # The target is the detached generator sample: no gradient reaches the generator...
    grads = jax.grad(fake_loss)(params["generator"])
    assert all(float(jnp.abs(g).max()) == 0.0 for g in jax.tree.leaves(grads))
    # ...the data points are never read (data-free), but the generator's samples are.
    other = dict(batch, x=batch["x"] + 10.0)
    assert float(fake_loss(params["generator"], other)) == float(fake_loss(params["generator"]))
    moved = jax.tree.map(lambda p: p * 1.5, params["generator"])
    assert float(fake_loss(moved)) != float(fake_loss(params["generator"]))


def test_generator_gradient_is_the_dm_gradient_pulled_back_through_the_generator(teacher_dir):
    obj, _ = _bind(teacher_dir)
    batch, rng = _batch(), jax.random.key(3)
    params = _params(obj, batch)
    params["fake_score"] = jax.tree.map(lambda p: p * 0.9, params["fake_score"])  # fake ≠ real
    got = jax.grad(lambda g: obj.loss(dict(params, generator=g), batch, rng, "generator")[0])(
        params["generator"])
    # The same draws as the objective, written out: g = (x_fake - x_real) / mean|x - x_real|.
    k_z, k_noise, _ = jax.random.split(rng, 3)
    z = obj.noise(k_z, params, batch)
    gen = lambda p: obj.generate(p, z, batch["label"])  # noqa: E731
    x, pullback = jax.vjp(gen, params["generator"])
    x_t, t = obj.noised(k_noise, x)
    x_real, x_fake = obj.real_x1(params, x_t, t, batch["label"]), obj.fake_x1(params, x_t, t,
                                                                               batch["label"])
    scale = jnp.mean(jnp.abs(x - x_real), axis=1, keepdims=True)
    (want,) = pullback((x_fake - x_real) / scale / x.size)
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
        np.testing.assert_allclose(a, b, rtol=2e-4, atol=1e-7)
    assert max(float(jnp.abs(a).max()) for a in jax.tree.leaves(got)) > 0


@pytest.fixture(scope="module")
def icfm_teacher_dir(tmp_path_factory):
    wd = str(tmp_path_factory.mktemp("eg_icfm"))
    spec = spec_lib.validate(spec_lib.load(SPEC + ",path=icfm"))
    trainer.run(spec, wd, only=("teacher",))
    return os.path.join(wd, "teacher")


@pytest.mark.parametrize("name", ["dmd", "sid"])
def test_students_of_a_stochastic_path_teacher_train(icfm_teacher_dir, name):
    # I-CFM with sigma > 0 noises with a key of its own: the student's noising must pass one.
    obj, stage = _bind(icfm_teacher_dir, name)
    assert stage.model is not None and obj.teacher.path.stochastic
    batch = _batch()
    params = _params(obj, batch)
    for g in obj.groups:
        loss, _ = obj.loss(params, batch, jax.random.key(4), g)
        assert np.isfinite(float(loss)), g
    x_a, _ = obj.noised(jax.random.key(0), batch["x"])
    x_b, _ = obj.noised(jax.random.key(1), batch["x"])
    assert not np.allclose(x_a, x_b)


def test_sid_and_reflow_groups(teacher_dir):
    sid, _ = _bind(teacher_dir, "sid", alpha=1.2)
    assert sid.groups == ("fake_score", "generator") and not getattr(sid, "cadence", None)
    batch, rng = _batch(), jax.random.key(4)
    params = _params(sid, batch)

    def generator_loss(gen, params=params, obj=sid):
        return obj.loss(dict(params, generator=gen), batch, rng, "generator")[0]

    def largest_gradient(params):
        grads = jax.grad(generator_loss)(params["generator"], params)
        return max(float(jnp.abs(g).max()) for g in jax.tree.leaves(grads))

    # The fake score starts as the teacher: d = x_real - x_fake = 0, so the loss is exactly 0
    # and its gradient 0 up to rounding (nothing to match yet).
    assert float(generator_loss(params["generator"])) == 0.0
    at_start = largest_gradient(params)
    # Once it differs, the loss is SiD's, written out from the same draws...
    params = dict(params, fake_score=jax.tree.map(lambda p: p * 0.9, params["fake_score"]))
    k_z, k_noise, _ = jax.random.split(rng, 3)
    x = sid.generate(params["generator"], sid.noise(k_z, params, batch), batch["label"])
    x_t, t = sid.noised(k_noise, x)
    x_real = sid.real_x1(params, x_t, t, batch["label"])
    x_fake = x1_prediction(sid.teacher, params["fake_score"], x_t, t, batch["label"])
    got = float(generator_loss(params["generator"], params))
    assert got == pytest.approx(float(dl.sid_loss(x, x_real, x_fake, 1.2)), rel=1e-5)
    # ...alpha weighs -d^2 (SiDA's alpha = 1 is higher by 0.2 mean(d^2 / scale) > 0), and the
    # generator gets a gradient.
    sida, _ = _bind(teacher_dir, "sid", alpha=1.0)
    scale = jnp.mean(jnp.abs(x - x_real), axis=1, keepdims=True)
    np.testing.assert_allclose(float(generator_loss(params["generator"], params, sida)) - got,
                               0.2 * float(jnp.mean(jnp.square(x_real - x_fake) / scale)),
                               rtol=1e-4)
    assert at_start < 1e-4 * largest_gradient(params), at_start
    fake_loss, _ = sid.loss(params, batch, rng, "fake_score")
    assert float(fake_loss) > 0
    reflow, _ = _bind(teacher_dir, "reflow", target="flow", teacher_steps=2)
    params = _params(reflow, batch)
    assert set(params) == {"teacher", "model"}
    # At the start the reflowed flow is the teacher, so its 2-step sample is the teacher's.
    noise = jax.random.normal(jax.random.key(5), (16, 2))
    np.testing.assert_allclose(reflow.sample(params, noise, batch, 2),
                               reflow.teacher_sample(params, noise, batch, 2, "euler"), rtol=1e-5)


def test_bad_teachers_and_students_fail_at_start_naming_them(teacher_dir, tmp_path):
    model = MODELS.build("velocity_mlp", num_classes=8, width=32, depth=1)
    with pytest.raises(SpecError, match="no spec.json"):
        OBJECTIVES.build("dmd", teacher_from=str(tmp_path / "missing"))(model, None)
    with pytest.raises(SpecError, match="teacher_from is empty"):
        OBJECTIVES.build("sid")(model, None)
    wider = MODELS.build("velocity_mlp", num_classes=8, width=48, depth=1)
    obj, _ = _bind(teacher_dir, model=wider)
    with pytest.raises(SpecError, match="teacher's architecture"):
        _params(obj, _batch())
    obj, _ = _bind(teacher_dir, model=wider, student_init="scratch")
    assert _params(obj, _batch())["generator"]["Dense_0"]["kernel"].shape[1] == 48
    with pytest.raises(SpecError, match="fake_updates"):
        OBJECTIVES.build("dmd", teacher_from=teacher_dir, fake_updates=0)
    with pytest.raises(SpecError, match="t_min"):
        OBJECTIVES.build("sid", teacher_from=teacher_dir, t_min=0.9, t_max=0.1)
    with pytest.raises(SpecError, match="student_init"):
        _bind(teacher_dir, student_init="random")


def test_a_distillation_stage_is_not_a_teacher(teacher_dir, tmp_path):
    spec = spec_lib.validate(spec_lib.load(SPEC))
    wd = os.path.dirname(teacher_dir)
    trainer.run(spec, wd, only=("dmd",))
    with pytest.raises(SpecError, match="not a flow teacher"):
        _bind(os.path.join(wd, "dmd"))


def test_a_cadence_that_never_updates_a_group_fails_at_start(teacher_dir, tmp_path):
    spec = spec_lib.load(SPEC)
    spec.stages.dmd.objective.fake_updates = 10      # first generator update at step 9 of 4
    spec.stages.dmd.objective.teacher_from = teacher_dir
    with pytest.raises(SpecError, match="generator"):
        trainer.run(spec_lib.validate(spec), str(tmp_path / "wd"), only=("dmd",))
    assert not os.path.exists(tmp_path / "wd")


def test_a_noise_control_moves_the_generators_noise_levels(teacher_dir):
    """The hook with InstaRevive's rule (xmodal/projects/instarevive/dynamic_control.py): the
    range narrows as the smoothed gap falls below its peak, and only then."""
    control = {"name": "instarevive_dynamic", "decay": 0.5, "floor": 0.25}
    obj, _ = _bind(teacher_dir, noise_control=control, t_min=0.1, t_max=0.9)
    state = obj.init_state()
    assert float(obj.t_low(state)) == pytest.approx(0.1)      # no gap seen yet: the full range

    def step(gap):
        return obj.update_state(state, {"train/fake_score/clean_gap": jnp.float32(gap),
                                         "train/fake_score/loss": jnp.float32(9.0)})
    state = step(2.0)
    assert (float(state["gap_ema"]), float(state["gap_peak"])) == (2.0, 2.0)
    assert float(obj.t_low(state)) == pytest.approx(0.1)
    state = step(4.0)                       # the gap grows first (as DMD's gradient moves it)
    assert (float(state["gap_ema"]), float(state["gap_peak"])) == (3.0, 3.0)
    assert float(obj.t_low(state)) == pytest.approx(0.1)      # at its peak: still the full range
    state = step(0.0)
    assert (float(state["gap_ema"]), float(state["gap_peak"])) == (1.5, 3.0)
    assert float(obj.t_low(state)) == pytest.approx(0.9 - 0.5 * 0.8)   # half the peak: half range
    state = step(0.0)
    state = step(0.0)
    assert float(obj.t_low(state)) == pytest.approx(0.9 - 0.25 * 0.8)  # held at the floor
    # The generator's noise levels are drawn from [t_low, t_max] and say so.
    batch = _batch(64)
    params = _params(obj, batch)
    _, aux = obj.loss(params, batch, jax.random.key(6), "generator", objective_state=state)
    assert float(aux["t_low"]) == pytest.approx(0.7)
    k_z, k_noise, _ = jax.random.split(jax.random.key(6), 3)
    x = obj.generate(params["generator"], obj.noise(k_z, params, batch), obj.condition(params,
                                                                                       batch))
    _, t = obj.noised(k_noise, x, aux["t_low"])
    assert float(t.min()) >= 0.7 and float(t.max()) <= 0.9
    # The fake-score group measures the control's signal: mean |G(z) - data|.
    _, aux = obj.loss(params, batch, jax.random.key(6), "fake_score", objective_state=state)
    x = obj.generate(params["generator"], obj.noise(jax.random.split(jax.random.key(6), 3)[0],
                                                    params, batch), obj.condition(params, batch))
    want = float(jnp.mean(jnp.abs(x - obj.teacher.flow_data(params, batch))))
    assert float(aux["clean_gap"]) == pytest.approx(want, rel=1e-5) and want > 0
    # Without a control: no state, the fixed range.
    plain, _ = _bind(teacher_dir, t_min=0.1, t_max=0.9)
    assert plain.init_state() == {} and float(plain.t_low({})) == pytest.approx(0.1)
    with pytest.raises(SpecError, match="decay"):
        OBJECTIVES.build("dmd", teacher_from=teacher_dir,
                         noise_control=dict(control, decay=1.0))
    with pytest.raises(SpecError, match="valid noise control names: instarevive_dynamic"):
        OBJECTIVES.build("dmd", teacher_from=teacher_dir, noise_control={"name": "nope"})
    with pytest.raises(SpecError, match="valid keys: decay, floor"):
        OBJECTIVES.build("dmd", teacher_from=teacher_dir, noise_control=dict(control, flor=0.5))


def test_objective_state_trains_and_resumes_exactly_and_steers_the_noise_levels(teacher_dir,
                                                                                tmp_path):
    def spec():
        s = spec_lib.load(SPEC)
        s.stages.dmd.objective.teacher_from = teacher_dir
        s.stages.dmd.objective.noise_control = {"name": "instarevive_dynamic", "decay": 0.5}
        s.stages.dmd.objective.fake_updates = 1            # the generator at every step
        s.stages.dmd.objective.t_min, s.stages.dmd.objective.t_max = 0.1, 0.9
        s.stages.dmd.train.steps = 8
        s.stages.dmd.train.ckpt_every = 4
        return spec_lib.validate(s)

    def rows(wd):
        rows = [json.loads(line) for line in open(os.path.join(wd, "dmd", "metrics.jsonl"))]
        return [r for r in rows if "train/state/gap_ema" in r]

    whole, parts = str(tmp_path / "whole"), str(tmp_path / "parts")
    trainer.run(spec(), whole, only=("dmd",))
    trainer.run(spec(), parts, only=("dmd",), until_step=4)
    trainer.run(spec(), parts, only=("dmd",))
    run = rows(whole)
    assert [r["step"] for r in run] == list(range(1, 9))
    assert run[0]["train/state/gap_peak"] > 0
    assert [(r["step"], r["train/state/gap_ema"]) for r in rows(parts)] == \
        [(r["step"], r["train/state/gap_ema"]) for r in run]
    # Each step's noise levels follow the state the step before left (log_every = 1), and the
    # range narrows at each step after one whose smoothed gap fell below its peak.
    t_min, t_max = 0.1, 0.9
    assert run[0]["train/generator/t_low"] == pytest.approx(t_min)
    narrowed = 0
    for before, r in zip(run, run[1:]):
        ratio = before["train/state/gap_ema"] / before["train/state/gap_peak"]
        want = t_max - min(max(ratio, 0.25), 1.0) * (t_max - t_min)
        assert r["train/generator/t_low"] == pytest.approx(want, rel=1e-5, abs=1e-6), r["step"]
        narrowed += ratio < 1
    assert narrowed, "the gap never fell below its peak: the test shows nothing"


def test_multi_step_student_trains_by_backward_simulation(teacher_dir):
    """DMD2's multi-step student: per example a step k; its input is the generator's own chain
    from z (no gradient), t_k = k / K; the gradient flows through the last call only."""
    obj, _ = _bind(teacher_dir, generator_steps=2)
    batch = _batch(64)
    params = _params(obj, batch)
    gen = jax.tree.map(lambda p: p * 1.1, params["generator"])   # not the teacher any more
    label, rng = batch["label"], jax.random.key(8)
    z = obj.noise(jax.random.key(9), params, batch)
    x = obj.backward_simulate(gen, z, label, rng)
    # The same draws written out: k per example; k = 1 starts from G(z, 0) noised to t = 1/2.
    k_pick, k_chain = jax.random.split(rng)
    k = np.asarray(jax.random.randint(k_pick, (64,), 0, 2))
    assert 10 < k.sum() < 54                                   # both steps are trained
    first = obj.generate(gen, z, label)
    half = jnp.full((64,), 0.5)
    x_half = obj.renoise(jax.random.fold_in(k_chain, 1), first, half)
    second = obj.generate_at(gen, x_half, half, label)
    want = np.where(k[:, None] == 1, second, first)
    np.testing.assert_allclose(x, want, rtol=1e-5, atol=1e-6)
    # No gradient through the chain: the same as the last call on a constant input.
    x_in = jnp.where(k[:, None] == 1, x_half, z)
    t_in = jnp.asarray(k / 2, jnp.float32)
    got = jax.grad(lambda p: jnp.sum(obj.backward_simulate(p, z, label, rng) ** 2))(gen)
    ref = jax.grad(lambda p: jnp.sum(obj.generate_at(p, x_in, t_in, label) ** 2))(gen)
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(ref)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
    # Sampling runs the whole chain, deterministic in its noise; one step is G(z, 0).
    p = dict(params, generator=gen)
    s = obj.sample(p, z, batch)
    np.testing.assert_array_equal(s, obj.sample(p, z, batch))
    assert float(jnp.abs(s - first).max()) > 1e-3
    one, _ = _bind(teacher_dir)
    np.testing.assert_allclose(one.sample(p, z, batch), first, rtol=1e-6)
    with pytest.raises(SpecError, match="generator_steps must be an integer >= 1"):
        _bind(teacher_dir, generator_steps=0)
    with pytest.raises(SpecError, match="regression_target='teacher'"):
        _bind(teacher_dir, generator_steps=2, regression_weight=0.25)


def test_multi_step_dmd_and_sid_train_through_the_trainer(teacher_dir, tmp_path):
    c = spec_lib.load(SPEC)
    for name in ("dmd", "sid"):
        c.stages[name].objective.generator_steps = 3
        c.stages[name].objective.teacher_from = teacher_dir
    out = trainer.run(spec_lib.validate(c), str(tmp_path), only=("dmd", "sid"))
    teacher = load_stage(teacher_dir).params["model"]
    for name in ("dmd", "sid"):
        assert np.isfinite(out[name]["eval/sw@1"]), out[name]
        rows = [json.loads(line) for line in open(tmp_path / name / "metrics.jsonl")]
        assert any(r.get("train/generator/loss", 0.0) != 0.0 for r in rows)
        # The 3-step student was trained: it starts as the teacher and has moved from it.
        stage = load_stage(str(tmp_path / name))
        assert stage.spec["objective"]["generator_steps"] == 3
        moved = [float(jnp.abs(a - b).max()) for a, b in zip(
            jax.tree.leaves(stage.params["generator"]), jax.tree.leaves(teacher))]
        assert max(moved) > 0, name


def test_gan_losses_follow_their_formulas():
    real, fake = jnp.array([2.0, -1.0]), jnp.array([0.5, -3.0])
    sp = lambda v: np.log1p(np.exp(v))  # noqa: E731
    want_d = np.mean(sp(-np.asarray(real))) + np.mean(sp(np.asarray(fake)))
    np.testing.assert_allclose(dl.gan_discriminator_loss(real, fake), want_d, rtol=1e-6)
    np.testing.assert_allclose(dl.gan_generator_loss(fake), np.mean(sp(-np.asarray(fake))),
                               rtol=1e-6)


def test_gan_features_are_what_the_output_layer_reads(teacher_dir):
    from xmodal.distill import gan
    stage = load_stage(teacher_dir)
    net = stage.params["model"]
    x, t, label = jnp.ones((4, 2)), jnp.full((4,), 0.3), jnp.arange(4)
    out, h = gan.features(lambda: stage.model.apply({"params": net}, x, t, label))
    last = sorted((k for k in net if k.startswith("Dense_")), key=lambda k: int(k[6:]))[-1]
    # The output layer applied to the tapped features gives the network's output.
    np.testing.assert_allclose(h @ net[last]["kernel"] + net[last]["bias"], out, rtol=1e-5,
                               atol=1e-6)
    _, named = gan.features(lambda: stage.model.apply({"params": net}, x, t, label), "Dense_0")
    assert named.shape == (4, h.shape[1])
    with pytest.raises(SpecError, match="matches no module"):
        gan.features(lambda: stage.model.apply({"params": net}, x, t, label), "nope")


def test_gan_head_trains_with_the_fake_score_and_pushes_the_generator(teacher_dir):
    obj, _ = _bind(teacher_dir, gan_weight=0.5, gan_fake_weight=0.1, gan_width=8)
    plain, _ = _bind(teacher_dir)
    batch, rng = _batch(), jax.random.key(12)
    params = _params(obj, batch)
    assert set(params["fake_score"]) == {"net", "head"}
    # The fake score's loss now reads the data (the classifier's "real" side)...
    fake = lambda p, b=batch: obj.loss(dict(params, fake_score=p), b, rng, "fake_score")[0]  # noqa: E731
    other = dict(batch, x=batch["x"] + 3.0)
    assert float(fake(params["fake_score"], other)) != float(fake(params["fake_score"]))
    # ...and its gradient reaches the head and the fake score network's own weights.
    grads = jax.grad(fake)(params["fake_score"])
    for part in ("net", "head"):
        assert max(float(jnp.abs(g).max()) for g in jax.tree.leaves(grads[part])) > 0, part
    # The generator's loss is DMD's plus gan_weight x softplus(-D) at the same noised sample.
    with_gan, aux = obj.loss(params, batch, rng, "generator")
    plain_params = dict(params, fake_score=params["fake_score"]["net"])
    without, _ = plain.loss(plain_params, batch, rng, "generator")
    np.testing.assert_allclose(with_gan - without, 0.5 * aux["gan_g_loss"], rtol=1e-5)
    assert float(aux["gan_g_loss"]) > 0
    with pytest.raises(SpecError, match="gan_fake_weight = 0"):
        _bind(teacher_dir, gan_weight=0.5, gan_fake_weight=0.0)


def test_dmd_with_gan_head_trains_through_the_trainer(teacher_dir, tmp_path):
    c = spec_lib.load(SPEC)
    c.stages.dmd.objective.update(gan_weight=0.01, gan_fake_weight=0.1, gan_width=8,
                                  teacher_from=teacher_dir)
    out = trainer.run(spec_lib.validate(c), str(tmp_path), only=("dmd",))
    assert np.isfinite(out["dmd"]["eval/sw@1"])
    rows = [json.loads(line) for line in open(tmp_path / "dmd" / "metrics.jsonl")]
    d = [r["train/fake_score/gan_d_loss"] for r in rows if "train/fake_score/gan_d_loss" in r]
    assert d and all(np.isfinite(d)) and 0 < d[0] < 5
    # What the trainer logged is DMD's loss plus 0.01 x the GAN generator loss, on every
    # generator update.
    gen = [r for r in rows if r.get("train/generator/loss", 0.0) != 0.0]
    assert gen
    for r in gen:
        assert r["train/generator/gan_g_loss"] > 0
        assert r["train/generator/loss"] == pytest.approx(
            r["train/generator/dm_loss"] + 0.01 * r["train/generator/gan_g_loss"], rel=1e-5)
