"""Frozen networks (teachers, VAEs, query encoders) are part of the train state: placed by the
spec's sharding rules over the mesh, passed to the step as arguments, read by the loss, never
updated and never in an optimizer."""
from __future__ import annotations

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P

from xmodal.core import spec as spec_lib
from xmodal.core import trainer
from xmodal.core.registry import OBJECTIVES

WIDTH = 64
SEEN: list = []  # shardings of the frozen kernel as the jitted step sees it


@dataclasses.dataclass(frozen=True, eq=False)
class Distil:
    """A student Dense regressing a frozen teacher Dense on the flattened images."""
    groups: tuple = ("student",)

    def load_frozen(self):
        kernel = np.random.default_rng(0).normal(size=(WIDTH, WIDTH)).astype(np.float32)
        return {"teacher": {"kernel": kernel, "bias": np.zeros(WIDTH, np.float32)}}

    def _x(self, batch):
        return batch["image"].reshape(batch["image"].shape[0], -1)[:, :WIDTH] / 255.0

    def init(self, rng, batch, frozen):
        assert frozen["teacher"]["kernel"].shape == (WIDTH, WIDTH)  # init sees the frozen part
        return {"student": nn.Dense(WIDTH).init(rng, self._x(batch))["params"]}

    def loss(self, params, batch, rng, group):
        jax.debug.inspect_array_sharding(params["teacher"]["kernel"], callback=SEEN.append)
        x = self._x(batch)
        target = nn.Dense(WIDTH).apply({"params": params["teacher"]}, x)
        pred = nn.Dense(WIDTH).apply({"params": params["student"]}, x)
        return jnp.mean(jnp.square(pred - target)), {}


@OBJECTIVES.register("test_frozen_distil")
def _distil():
    return lambda model, mesh: Distil()


def _spec(workdir_steps: int = 2):
    c = spec_lib.base()
    c.data.name = "emoji/tiny"
    c.data.transform = dict(name="image_text", image_size=8, max_text_len=8)
    c.data.batch_size = 16
    c.data.num_workers = 0
    c.model = dict(name="vit", patch_size=4, width=8, depth=1, num_heads=2, pool="gap")
    c.objective = dict(name="test_frozen_distil")
    c.mesh = dict(data=1, fsdp=8, model=1)
    c.sharding.rules = [(r".*/kernel$", ("fsdp",)), (r".*", ())]
    c.train.steps = workdir_steps
    c.train.log_every = 1
    c.train.eval_every = 0
    c.optim.warmup_steps = 0
    return spec_lib.validate(c)


def test_frozen_teacher_is_sharded_by_the_rules_inside_the_step(tmp_path):
    SEEN.clear()
    setup = trainer.build(_spec(), str(tmp_path))
    kernel = setup.state.frozen["teacher"]["kernel"]
    # Placed by the spec's first matching rule (frozen/teacher/kernel → fsdp), not replicated:
    # each of the 8 devices holds 64 / 8 rows.
    sharded = NamedSharding(setup.mesh, P("fsdp", None))
    assert kernel.sharding.is_equivalent_to(sharded, 2) and not kernel.sharding.is_fully_replicated
    assert {s.data.shape for s in kernel.addressable_shards} == {(WIDTH // 8, WIDTH)}
    assert setup.state.frozen["teacher"]["bias"].sharding.is_fully_replicated
    # Never in an optimizer; the trained group is.
    assert set(setup.state.opt_state) == {"student"} and set(setup.state.params) == {"student"}
    before = np.asarray(kernel)
    state, metrics = setup.step_fn(setup.state, {k: jnp.zeros(v.shape, v.dtype)
                                                 for k, v in setup.batch_spec.items()})
    # Inside the jitted step the loss reads the same sharded array (an argument, not a
    # closure constant, which would be replicated).
    assert SEEN and all(s.is_equivalent_to(sharded, 2) for s in SEEN)
    np.testing.assert_array_equal(np.asarray(state.frozen["teacher"]["kernel"]), before)
    assert state.frozen["teacher"]["kernel"].sharding.is_equivalent_to(sharded, 2)
    assert np.isfinite(float(metrics["train/loss"]))
    setup.mngr.close()
    setup.writer.close()
