"""Specs: loading ``specs/<name>.py:arg``, validating against the schema, writing ``spec.json``.

A spec file defines ``get_config(arg: str | None) -> ConfigDict``. The part after ``:`` is parsed
like big_vision's ``parse_arg``: ``runlocal,batch=64`` → ``{"runlocal": True, "batch": 64}``.
Validation happens once, at start: every key must exist in the schema (``xmodal/schema.py``) or,
under a component node (one with a ``name``), be an argument the named component accepts.
"""
from __future__ import annotations

import ast
import importlib.util
import json
import math
import os
from typing import Any, Mapping

import ml_collections as mlc

from xmodal.core import schema
from xmodal.core.registry import SpecError


def parse_arg(arg: str | None, **defaults: Any) -> mlc.ConfigDict:
    """``"runlocal,batch=64"`` → ConfigDict(runlocal=True, batch=64), typed by ``defaults``.

    Unknown names fail, listing the valid ones, so ``:runlokal`` does not silently do nothing.
    """
    out = dict(defaults)
    for item in filter(None, (arg or "").split(",")):
        key, eq, value = item.partition("=")
        key = key.strip()
        if key not in defaults:
            raise SpecError(f"unknown spec argument {key!r}; valid: {', '.join(sorted(defaults))}")
        if not eq:
            out[key] = True
            continue
        default = defaults[key]
        if isinstance(default, bool):
            out[key] = value.lower() in ("1", "true", "yes")
        elif isinstance(default, (int, float)):
            try:
                out[key] = type(default)(ast.literal_eval(value))
            except (ValueError, SyntaxError) as e:
                raise SpecError(f"spec argument {key}={value!r}: expected {type(default).__name__}") from e
        else:
            out[key] = value
    return mlc.ConfigDict(out)


def apply_size_args(c: mlc.ConfigDict, a: mlc.ConfigDict) -> mlc.ConfigDict:
    """Sets ``data.batch_size`` and ``train.steps`` from a spec's ``batch=N`` and ``steps=N``
    arguments; 0, their default, keeps the spec's own."""
    if a.batch:
        c.data.batch_size = a.batch
    if a.steps:
        c.train.steps = a.steps
    return c


def base() -> mlc.ConfigDict:
    """The schema's defaults as a ConfigDict for a spec to start from and change.

    Starting from it makes every valid key overridable on the command line
    (``--spec.train.keep_ckpts=5``) even if the spec file never mentions it. Component nodes
    (``model``, ``objective``) have no default and must be set by the spec.
    """
    return mlc.ConfigDict(_defaults(schema.defaults()))


def mix_source(name: str, transform: Mapping[str, Any], **given: Any) -> dict:
    """A ``data.mix`` entry with every key of the schema's, so each is overridable on the
    command line like ``base()``'s (``--spec.data.mix.effects.eval_split=train``)."""
    return {**_defaults(schema.mix_source()), "name": name, "transform": dict(transform),
            **given}


def _defaults(node: Mapping[str, Any]) -> dict:
    out = {}
    for key, value in node.items():
        if isinstance(value, (schema.Components, schema.Entries)):
            out[key] = {}
        elif isinstance(value, schema.Component):
            if value.default is not None:
                out[key] = dict(value.default)
        elif isinstance(value, Mapping):
            out[key] = _defaults(value)
        else:
            out[key] = _copy(value)
    return out


def _import(path: str):
    if not os.path.isfile(path):
        raise SpecError(f"spec file {path!r} does not exist")
    name = "xmodal_spec_" + os.path.splitext(os.path.basename(path))[0]
    mod_spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(mod_spec)
    mod_spec.loader.exec_module(module)
    return module


def sibling(this_file: str, name: str):
    """Another spec file in the same folder, as a module: lets a spec derive from another."""
    return _import(os.path.join(os.path.dirname(os.path.abspath(this_file)), name))


def load(path_and_arg: str) -> mlc.ConfigDict:
    """Imports ``specs/x.py`` and calls its ``get_config(arg)``; no validation yet."""
    path, _, arg = path_and_arg.partition(":")
    module = _import(path)
    if not hasattr(module, "get_config"):
        raise SpecError(f"spec file {path!r} defines no get_config(arg)")
    return module.get_config(arg or None)


# -------------------------------------------------------------------------------------------
# Validation.


def validate(spec: mlc.ConfigDict) -> mlc.ConfigDict:
    """Returns a new, locked spec with defaults filled in; raises SpecError on the first problem.

    A multi-stage spec (``stages``: name → stage spec) has each stage validated on its own.
    """
    raw = spec.to_dict() if isinstance(spec, mlc.ConfigDict) else dict(spec)
    if "stages" in raw:
        extra = set(raw) - {"stages", "seed", "order"}
        if extra:
            raise SpecError(f"a multi-stage spec has only 'stages', 'order' and 'seed' at top "
                            f"level, not {sorted(extra)}; put these keys inside a stage")
        # ConfigDict sorts its keys, so the run order of the stages is a list of its own.
        order = list(raw.get("order") or sorted(raw["stages"]))
        if sorted(order) != sorted(raw["stages"]):
            raise SpecError(f"spec 'order' {order} must list each stage once; stages: "
                            f"{sorted(raw['stages'])}")
        stages = {}
        # The top-level seed shifts every stage's own seed, so ``--spec.seed=1`` reruns a whole
        # pipeline with other randomness (stage specs built from base() all carry a seed).
        top = int(raw.get("seed", 0))
        for name, stage in raw["stages"].items():
            stage = dict(stage)
            stage["seed"] = int(stage.get("seed", 0)) + top
            stages[name] = _fill(stage, schema.defaults(), f"stages.{name}")
        out = mlc.ConfigDict({"stages": stages, "seed": raw.get("seed", 0), "order": order})
    else:
        out = mlc.ConfigDict(_fill(raw, schema.defaults(), ""))
    _check_components(out)
    out.lock()
    return out


def _fill(given: Mapping[str, Any], default: Mapping[str, Any], where: str) -> dict:
    out = {}
    for key, value in given.items():
        path = f"{where}.{key}" if where else key
        if key not in default:
            raise SpecError(f"unknown spec key {path!r}; valid keys at "
                            f"{where or 'top level'}: {', '.join(sorted(default))}")
        out[key] = _typed(value, default[key], path)
    for key, value in default.items():
        if key in out:
            continue
        if isinstance(value, schema.Component) and value.default is not None:
            out[key] = dict(value.default)
            continue
        if isinstance(value, schema.Component):
            raise SpecError(f"spec needs {(where + '.' if where else '') + key!r} = "
                            f"{{'name': one of {', '.join(value.registry().names())}, ...}}")
        if isinstance(value, (schema.Components, schema.Entries)):
            out[key] = {}
        elif isinstance(value, Mapping):
            out[key] = _fill({}, value, f"{where}.{key}" if where else key)
        else:
            out[key] = _copy(value)
    return out


def _entries(value: Any, default: schema.Entries, path: str) -> dict:
    """Each entry of a name → node mapping, filled and checked against the entries' schema."""
    node = default.schema()
    valid = f"valid keys: {', '.join(sorted(node))}"
    if not isinstance(value, Mapping):
        raise SpecError(f"spec key {path!r} must map names to mappings ({valid}), got "
                        f"{type(value).__name__}")
    out = {}
    for name, entry in value.items():
        where = f"{path}.{name}"
        if not isinstance(entry, Mapping):
            raise SpecError(f"spec key {where!r} must be a mapping ({valid}), got "
                            f"{type(entry).__name__} {entry!r}")
        missing = [k for k in default.required if not entry.get(k)]
        if missing:
            raise SpecError(f"spec key {where!r} must set {', '.join(missing)}; {valid}")
        out[name] = _fill(entry, node, where)
    return out


def _copy(value):
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    return list(value) if isinstance(value, list) else value


def _typed(value: Any, default: Any, path: str) -> Any:
    if isinstance(default, schema.Component):
        if not isinstance(value, Mapping) or "name" not in value:
            raise SpecError(f"spec key {path!r} must be a mapping with a 'name' "
                            f"(one of: {', '.join(default.registry().names())})")
        return dict(value)
    if isinstance(default, schema.Components):
        if not isinstance(value, Mapping):
            raise SpecError(f"spec key {path!r} must map names to components")
        return {k: _typed(v, schema.Component(default.registry), f"{path}.{k}")
                for k, v in value.items()}
    if isinstance(default, schema.Entries):
        return _entries(value, default, path)
    if isinstance(default, Mapping):
        if not isinstance(value, Mapping):
            raise SpecError(f"spec key {path!r} must be a mapping, got {type(value).__name__}")
        return _fill(value, default, path)
    if default is None or value is None:
        return value
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise SpecError(f"spec key {path!r} must be a bool, got {value!r}")
        return value
    if isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if isinstance(default, (list, tuple)):
        if not isinstance(value, (list, tuple)):
            raise SpecError(f"spec key {path!r} must be a list, got {type(value).__name__}")
        return [tuple(v) if isinstance(v, list) else v for v in value]
    if not isinstance(value, type(default)) or isinstance(value, bool) != isinstance(default, bool):
        raise SpecError(f"spec key {path!r} must be {type(default).__name__}, "
                        f"got {type(value).__name__} {value!r}")
    return value


def _check_components(spec: mlc.ConfigDict) -> None:
    stages = spec.stages.items() if "stages" in spec else [("", spec)]
    for stage_name, stage in stages:
        prefix = f"stages.{stage_name}." if stage_name else ""
        _check_components_in(stage, schema.defaults(), prefix)
        _check_ranges(stage, prefix)
        _check_mix(stage, prefix)


def _check_ranges(stage: mlc.ConfigDict, prefix: str) -> None:
    for path, valid in schema.RANGES.items():
        node, key = path.rsplit(".", 1)
        value = stage[node][key]
        if not valid.holds(value):
            finite = "" if valid.choices or math.isfinite(value) else "a finite number "
            raise SpecError(f"spec key '{prefix}{path}' = {value!r} is out of range: it must be "
                            f"{finite}{valid.describe()}")


def _check_mix(stage: mlc.ConfigDict, prefix: str) -> None:
    """Sampling weights are > 0; an evaluator's ``data`` names an eval set: '' (data.name's)
    or a ``data.mix`` entry."""
    weights = {"data.weight": stage.data.weight}
    weights.update({f"data.mix.{k}.weight": v.weight for k, v in stage.data.mix.items()})
    for path, weight in weights.items():
        if not 0 < weight < float("inf"):
            raise SpecError(f"spec key '{prefix}{path}' must be a finite number > 0, got "
                            f"{weight!r} (drop the data.mix entry to leave a source out)")
    for name, comp in stage.evals.items():
        data = comp.get("data", "")
        if data != "" and (not isinstance(data, str) or data not in stage.data.mix):
            valid = ", ".join(["'' (data.name)"] + sorted(stage.data.mix))
            raise SpecError(f"spec key '{prefix}evals.{name}.data' = {data!r} names no eval set; "
                            f"valid: {valid} (the names of data.mix)")


def _check_components_in(node, defaults: Mapping[str, Any], prefix: str) -> None:
    for key, default in defaults.items():
        if isinstance(default, schema.Component):
            _check_one(default.registry(), node[key], prefix + key)
        elif isinstance(default, schema.Components):
            for name, comp in node[key].items():
                comp = {k: v for k, v in comp.items() if k not in default.reserved}
                _check_one(default.registry(), comp, f"{prefix}{key}.{name}")
        elif isinstance(default, schema.Entries):
            for name, entry in node[key].items():
                _check_components_in(entry, default.schema(), f"{prefix}{key}.{name}.")
        elif isinstance(default, Mapping):
            _check_components_in(node[key], default, f"{prefix}{key}.")


def _check_one(registry, comp: Mapping[str, Any], where: str) -> None:
    comp = _plain(comp)
    kwargs = {k: v for k, v in comp.items() if k != "name"}
    registry.check_kwargs(comp["name"], kwargs, where=where)
    # Nested components of the same kind (a model's towers, or a mapping of them: a two-tower
    # model's ``towers``) are checked too.
    for key, value in kwargs.items():
        if _is_component(value, registry):
            _check_one(registry, value, f"{where}.{key}")
        elif isinstance(value, Mapping):
            for name, inner in value.items():
                if _is_component(inner, registry):
                    _check_one(registry, inner, f"{where}.{key}.{name}")


def _is_component(value, registry) -> bool:
    return isinstance(value, Mapping) and "name" in value and value["name"] in registry.names()


def component_kwargs(comp: Mapping[str, Any], reserved: tuple = ()) -> dict:
    """The keyword arguments of a component node (everything but ``name`` and the ``reserved``
    keys its schema node keeps for the trainer), as plain dicts."""
    return {k: _plain(v) for k, v in comp.items() if k != "name" and k not in reserved}


def _plain(v):
    if isinstance(v, mlc.ConfigDict):
        return v.to_dict()
    return v


# -------------------------------------------------------------------------------------------
# spec.json


def write_json(spec: mlc.ConfigDict, workdir: str) -> str:
    """Writes the resolved spec to ``workdir/spec.json`` (atomically) and returns the path."""
    os.makedirs(workdir, exist_ok=True)
    path = os.path.join(workdir, "spec.json")
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(spec.to_dict(), f, indent=2, sort_keys=True, default=str)
    os.replace(tmp, path)
    return path


def stages_of(spec: mlc.ConfigDict) -> list[tuple[str, mlc.ConfigDict]]:
    """``[(stage_name, stage_spec)]`` in run order (the spec's ``order``, else by name); a
    single-stage spec is one stage named ''."""
    if "stages" in spec:
        order = list(spec.get("order") or sorted(spec.stages))
        return [(name, spec.stages[name]) for name in order]
    return [("", spec)]

