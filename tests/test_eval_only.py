"""--mode=eval and eval-only stages build the model, the parameters, the evaluators and the eval
data only: no optimizer, no training loader, and only the parameters read from a checkpoint."""
from __future__ import annotations

import json
import shutil

import jax
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from xmodal.core import checkpoint as ckpt_lib
from xmodal.core import evaluation
from xmodal.core import objective as objective_lib
from xmodal.core import parallel
from xmodal.core import input as pipeline
from xmodal.core import optim
from xmodal.core import spec as spec_lib
from xmodal.core import trainer
from xmodal.core.registry import SpecError


def _spec(steps: int = 3, ema: float = 0.0, width: int = 16):
    c = spec_lib.base()
    c.data.name = "emoji/tiny"
    c.data.transform = dict(name="image_text", image_size=16, max_text_len=16, text_field="name",
                            label_field="group")
    c.data.batch_size = 16
    c.data.num_workers = 0
    c.model = dict(name="two_tower", embed_dim=16, towers=dict(
        image=dict(name="vit", patch_size=8, width=width, depth=1, num_heads=2, pool="gap"),
        text=dict(name="text_transformer", max_len=16, width=width, depth=1, num_heads=2,
                  pool="eos")))
    c.objective = dict(name="clip")
    c.mesh = dict(data=2, fsdp=4, model=1)
    c.sharding.rules = [(r".*/(kernel|embedding)$", ("fsdp",)), (r".*", ())]
    c.train.steps = steps
    c.train.log_every = 1
    c.train.eval_every = 0
    c.train.ema_decay = ema
    c.optim.lr = 3e-3
    c.optim.warmup_steps = 0
    c.evals = dict(retrieval=dict(name="retrieval"))
    return spec_lib.validate(c)


class _Trained(dict):
    """``trained[ema]`` -> (workdir, the training run's final eval), trained on first use."""

    def __init__(self, factory):
        super().__init__()
        self.factory = factory

    def __missing__(self, ema):
        wd = self.factory.mktemp(f"trained_ema{ema}")
        self[ema] = (wd, trainer.run_stage(_spec(ema=ema), str(wd)))
        return self[ema]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Train once, assert many: the default model, 3 steps on the 8-device mesh, with or
    without EMA, each trained once per worker on first use (under xdist a module's tests may
    be split between the workers). Tests that write into a workdir (an eval appends its row)
    copy it first."""
    return _Trained(tmp_path_factory)


def _copy(trained, ema, dst):
    shutil.copytree(trained[ema][0], dst)
    return dst, trained[ema][1]


def _forbid_training_parts(monkeypatch):
    def refuse(*a, **k):
        raise AssertionError("the eval path built a training part")
    monkeypatch.setattr(optim, "make", refuse)
    monkeypatch.setattr(pipeline, "train_loader", refuse)
    monkeypatch.setattr(pipeline, "mixture_loader", refuse)


@pytest.mark.slow
@pytest.mark.parametrize("ema", [0.0, 0.5])
def test_eval_mode_gives_the_training_eval_without_an_optimizer(tmp_path, monkeypatch, ema,
                                                                trained):
    wd, final = _copy(trained, ema, tmp_path / "run")
    assert final["eval/t2i_R@1"] >= 0 and "eval/i2t_medr" in final
    _forbid_training_parts(monkeypatch)
    again = trainer.run_stage(_spec(ema=ema), str(wd), mode="eval")
    # The same parameters (the EMA copy when EMA is on) give the same numbers.
    assert again == pytest.approx(final, rel=1e-6, abs=1e-6)
    rows = [json.loads(l) for l in open(wd / "metrics.jsonl")]
    assert rows[-1]["step"] == 3 and rows[-1]["eval/t2i_R@1"] == pytest.approx(
        final["eval/t2i_R@1"])


def test_eval_state_reads_only_parameters_sharded_by_the_rules(trained):
    spec, wd = _spec(ema=0.5), trained[0.5][0]     # read only
    mesh = parallel.make_mesh(spec.mesh)
    _, objective = objective_lib.build(spec, mesh)
    data = evaluation.load_data(spec)
    state, source = evaluation.restore_eval_state(spec, str(wd), mesh, objective,
                                                  data.example())
    assert source.endswith("checkpoints/3") and int(state.step) == 3
    saved = ckpt_lib.read_numpy(str(wd / "checkpoints" / "3" / "state"))
    for part in ("params", "ema"):
        got = jax.tree.leaves(jax.tree.map(np.asarray, getattr(state, part)))
        want = jax.tree.leaves(saved[part])
        assert len(got) == len(want) and all(np.array_equal(a, b) for a, b in zip(got, want))
    # EMA differs from the trained parameters after 3 steps at decay 0.5.
    assert not all(np.array_equal(a, b) for a, b in zip(
        jax.tree.leaves(saved["params"]), jax.tree.leaves(saved["ema"])))
    # Split by the rule, not replicated: every kernel whose first dimension divides by 4.
    kernels = [(parallel.path_str(p), x) for p, x in jax.tree_util.tree_leaves_with_path(
        state.params) if parallel.path_str(p).endswith("/kernel") and x.shape[0] % 4 == 0]
    assert len(kernels) >= 4
    assert all(x.sharding.spec == P("fsdp") for _, x in kernels), kernels


def test_a_checkpoint_of_another_model_is_one_line(tmp_path, trained):
    wd, _ = _copy(trained, 0.0, tmp_path / "run")           # trained at width 16
    with pytest.raises(SpecError, match="does not hold this spec's parameters"):
        trainer.run_stage(_spec(width=32), str(wd), mode="eval")


def test_an_eval_only_stage_initialises_without_a_checkpoint(tmp_path, monkeypatch):
    _forbid_training_parts(monkeypatch)
    out = trainer.run_stage(_spec(steps=0), str(tmp_path))
    assert 0 <= out["eval/t2i_R@1"] <= 100
    assert (tmp_path / "spec.json").exists()


def test_eval_reads_resume_when_the_workdir_has_no_checkpoint_yet(tmp_path, trained):
    src, final = trained[0.0]                                # read only
    (tmp_path / "ev" / "checkpoints").mkdir(parents=True)   # an empty checkpoints folder
    spec = spec_lib.validate(dict(_spec().to_dict(), resume=str(src)))
    again = trainer.run_stage(spec, str(tmp_path / "ev"), mode="eval")
    assert again == pytest.approx(final, rel=1e-6, abs=1e-6)
