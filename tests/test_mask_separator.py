"""The text-queried mask separator: model, objective, evaluator, spec, mask_estimates."""
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests import cli
from tests.data_helpers import skip_unless_installed
from xmodal.evaluate.separation import si_sdr
from xmodal.core.registry import MODELS
from xmodal.core.registry import OBJECTIVES
from xmodal.projects.flowsep.mask_loss import si_sdr_jax

TEXT = dict(name="text_transformer", max_len=8, width=8, depth=1, num_heads=2)


def _model(**kw):
    return MODELS.build("mask_separator", text=TEXT, n_fft=64, hop=16, width=8, depth=2, **kw)


def _batch(b=2, t=800, seed=0):
    rng = np.random.default_rng(seed)
    target = rng.normal(size=(b, t)).astype(np.float32) * 0.1
    other = rng.normal(size=(b, t)).astype(np.float32) * 0.1
    return {"mixture": jnp.asarray(target + other), "target": jnp.asarray(target),
            "query": jnp.asarray(rng.integers(3, 200, size=(b, 8)), jnp.int32)}


def test_si_sdr_jax_matches_numpy_metric():
    rng = np.random.default_rng(0)
    ref = rng.normal(size=(3, 500))
    est = ref + rng.normal(size=(3, 500)) * [[0.1], [1.0], [5.0]]
    np.testing.assert_allclose(si_sdr_jax(jnp.asarray(est), jnp.asarray(ref)),
                               si_sdr(est, ref), atol=1e-3)
    zeros = jnp.zeros((1, 100))
    assert np.isfinite(float(si_sdr_jax(zeros, zeros)[0]))


def test_shapes_and_mask_range():
    model, batch = _model(), _batch()
    params = model.init(jax.random.key(0), batch["mixture"], batch["query"])
    est, mask = model.apply(params, batch["mixture"], batch["query"])
    assert est.shape == batch["mixture"].shape
    assert mask.shape == (2, 800 // 16 + 1, 33)
    assert float(mask.min()) >= 0 and float(mask.max()) <= 1
    # A mask of 1 gives back the mixture: the estimate is iSTFT(M ⊙ STFT(x)).
    spec = model.apply(params, batch["mixture"], method="spectrum")
    from xmodal.audio import dsp as audio
    np.testing.assert_allclose(audio.istft(spec, 64, 16, length=800), batch["mixture"],
                               atol=1e-5)
    silent, _ = model.apply(params, jnp.zeros((2, 800)), batch["query"])
    assert np.all(np.isfinite(silent))
    with pytest.raises(ValueError, match="mono"):
        model.apply(params, jnp.zeros((2, 1, 800)), batch["query"])


def test_query_changes_the_mask():
    # FiLM starts at zero (unconditioned); after perturbing it the query must matter.
    model, batch = _model(), _batch()
    params = model.init(jax.random.key(0), batch["mixture"], batch["query"])
    noise = jax.random.normal(jax.random.key(1), (8, 16)) * 0.5
    params = jax.tree_util.tree_map_with_path(
        lambda p, x: x + noise if "film" in jax.tree_util.keystr(p) and x.ndim == 2 else x,
        params)
    q2 = batch["query"].at[:, 1].set(7)
    _, m1 = model.apply(params, batch["mixture"], batch["query"])
    _, m2 = model.apply(params, batch["mixture"], q2)
    assert float(jnp.max(jnp.abs(m1 - m2))) > 1e-4


@pytest.mark.parametrize("loss", ["si_sdr", "l1_mag", "both"])
def test_objective_loss_finite_and_decreases(loss):
    import optax
    model, batch = _model(), _batch()
    obj = OBJECTIVES.build("mask_separation", loss=loss)(model, None)
    params = obj.init(jax.random.key(0), batch)
    opt = optax.adam(1e-2)
    state = opt.init(params)

    @jax.jit
    def step(params, state):
        (l, aux), g = jax.value_and_grad(obj.loss, has_aux=True)(params, batch,
                                                                  jax.random.key(1))
        updates, state = opt.update(g, state)
        return optax.apply_updates(params, updates), state, l, aux

    first = None
    for _ in range(30):
        params, state, l, aux = step(params, state)
        first = float(l) if first is None else first
        assert np.isfinite(float(l))
    assert float(l) < first
    assert set(aux) >= {"si_sdr", "sdri", "mask_mean"}
    with pytest.raises(ValueError, match="loss"):
        OBJECTIVES.build("mask_separation", loss="l2")


@pytest.mark.slow
@skip_unless_installed("lass_mix/tiny")
def test_text_mask_sep_spec_cli_and_mask_estimates(tmp_path):
    from xmodal.projects.flowsep.baselines import mask_estimates
    workdir = tmp_path / "mask"
    r = subprocess.run(
        [sys.executable, "-m", "xmodal.main", "--spec=specs/text_mask_sep.py:tiny,data=lass_mix/tiny",
         f"--workdir={workdir}"],
        cwd=cli.ROOT, env=cli.env(), capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-4000:]
    assert "eval/mask_sdri" in r.stdout and "eval/oracle_irm_sdri" in r.stdout
    rng = np.random.default_rng(0)
    mix = rng.normal(size=(3, 16384)).astype(np.float32) * 0.1
    from xmodal.data.tokenizer import ByteTokenizer
    tokens = ByteTokenizer(48).encode_batch(["separate the violin"] * 3)
    est = mask_estimates(str(workdir), mix, tokens, batch_size=2)
    assert est.shape == mix.shape and np.all(np.isfinite(est))
    # Given at 16 kHz, the 8 kHz model's estimate comes back at 16 kHz and the same length.
    est16 = mask_estimates(str(workdir), mix, tokens, sample_rate=16000)
    assert est16.shape == mix.shape and np.all(np.isfinite(est16))
    with pytest.raises(ValueError, match="tokens"):
        mask_estimates(str(workdir), mix, tokens[:2])
