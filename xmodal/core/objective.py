"""What the trainer asks of an objective: the protocol every family (contrastive, flow,
distillation) implements.

A spec's ``objective = {"name": "clip", **kwargs}`` names a factory in
``registry.OBJECTIVES``; the factory takes the spec kwargs and returns
``bind(model, mesh) -> Objective``.

Required:
- ``groups``: names of the trained parameter groups, in update order (``step.py``);
- ``init(rng, batch) -> {group: params}``;
- ``loss(params, batch, rng, group) -> (loss, aux)``, pure. ``params`` holds every group and
  every frozen network by name; the gradient is taken for ``group`` only. A loss whose signature
  has ``step`` also gets the step number (schedules over training).

Optional (read through the functions below, so a missing one has one meaning):
- ``cadence``: ``{group: (every, offset)}``, the group updates on steps where
  ``step % every == offset``;
- ``load_frozen() -> {name: numpy params}``: frozen networks from earlier stages
  (``stages.load_stage``), placed by the trainer into ``TrainState.frozen``; ``init`` then
  takes them as ``frozen=`` (e.g. to know a VAE's latent shape);
- ``stage_outputs(ctx) -> {name: float}``: what the stage hands to later stages (a VAE's
  latent std), computed after its last step on its *training* split: ``ctx`` is an
  ``EvalContext`` over training records (``stages.OUTPUTS``);
- ``init_state() -> pytree`` and ``update_state(state, metrics) -> pytree``: running statistics
  (``TrainState.objective_state``). ``update_state`` runs once per step after every group's
  update, on that step's metrics (``train/<group>/<aux>``); a loss whose signature has
  ``objective_state`` reads the state as it was at the start of the step.

Evaluators ask more of an objective only through declared protocols, never ``hasattr``:
``sampling.Sampler`` (generates), ``distill.teacher.FlowTeacher`` (a flow's data, condition and
velocity), ``distill.student.Distilled`` (a student's teacher), and the protocols an evaluator
declares beside itself (m3el's ``RanksEntities``, m3pt's ``TagsItems``, InstaRevive's
``Restores``).
"""
from __future__ import annotations

import inspect
from typing import Any, Mapping, Protocol, runtime_checkable

from xmodal.core import spec as spec_lib
from xmodal.core.precision import Policy
from xmodal.core.registry import MODELS, OBJECTIVES, SpecError


@runtime_checkable
class Objective(Protocol):
    groups: tuple

    def init(self, rng, batch) -> dict: ...

    def loss(self, params, batch, rng, group): ...


def build(spec, mesh) -> tuple[Any, Any]:
    """The spec's model (at its precision policy) and its objective bound to it, checked
    against this protocol and the run's length."""
    policy = Policy.from_mapping(spec.precision)
    model = MODELS.build(spec.model.name, dtype=policy.compute_dtype,
                         param_dtype=policy.param_dtype, **spec_lib.component_kwargs(spec.model))
    objective = OBJECTIVES.build(spec.objective.name,
                                 **spec_lib.component_kwargs(spec.objective))(model, mesh)
    check(objective)
    check_cadence(objective, spec.train.steps)
    return model, objective


def check(objective: Any) -> None:
    if not isinstance(objective, Objective):
        missing = [a for a in ("groups", "init", "loss") if not hasattr(objective, a)]
        raise SpecError(f"objective {type(objective).__name__} lacks {', '.join(missing)} "
                        "(xmodal.core.objective.Objective)")


def check_cadence(objective: Any, steps: int) -> None:
    """Raises SpecError unless every cadence names a group, has 1 <= every and
    0 <= offset < every, and updates its group at least once in ``steps`` steps."""
    for group, (every, offset) in dict(getattr(objective, "cadence", {}) or {}).items():
        where = f"objective {type(objective).__name__} cadence of group {group!r}"
        if group not in objective.groups:
            raise SpecError(f"{where}: no such group; groups: {list(objective.groups)}")
        if not (isinstance(every, int) and isinstance(offset, int) and 0 <= offset < every):
            raise SpecError(f"{where} is (every={every!r}, offset={offset!r}); needs integers "
                            "with 0 <= offset < every")
        if steps and offset >= steps:
            raise SpecError(f"{where} first updates at step {offset}, but the stage trains "
                            f"{steps} steps: the group would never update")


def cadence_of(objective: Any, group: str) -> tuple[int, int]:
    """``(every, offset)`` of ``group``: (1, 0) when it updates every step."""
    return tuple(dict(getattr(objective, "cadence", {}) or {}).get(group, (1, 0)))


def updates_in(objective: Any, group: str, steps: int) -> int:
    """How many times ``group`` updates in ``steps`` steps: the length of its learning-rate
    schedule, which runs on the group's own update count (optax counts the updates it applies),
    so a generator updated every 5th step warms up and decays over its own updates, in step
    with a fake score updated every step."""
    every, offset = cadence_of(objective, group)
    return max(0, -(-(steps - offset) // every))


def load_frozen(objective: Any) -> dict:
    """The objective's frozen networks, ``{}`` when it has none; names must not be groups."""
    load = getattr(objective, "load_frozen", None)
    frozen = dict(load()) if load is not None else {}
    clash = sorted(set(frozen) & set(objective.groups))
    if clash:
        raise SpecError(f"objective {type(objective).__name__}: frozen networks {clash} have "
                        "the names of trained groups")
    return frozen


def init(objective: Any, rng, batch, frozen: Mapping[str, Any]) -> dict:
    if "frozen" in inspect.signature(objective.init).parameters:
        return objective.init(rng, batch, frozen=frozen)
    return objective.init(rng, batch)


def init_state(objective: Any) -> dict:
    make = getattr(objective, "init_state", None)
    return make() if make else {}


def has_stage_outputs(objective: Any) -> bool:
    return getattr(objective, "stage_outputs", None) is not None


def stage_outputs(objective: Any, ctx: Any) -> dict:
    if not has_stage_outputs(objective):
        return {}
    return {k: float(v) for k, v in objective.stage_outputs(ctx).items()}
