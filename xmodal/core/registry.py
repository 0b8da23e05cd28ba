"""Name → callable registries, so a spec can name components by string.

A spec says ``model.name = "two_tower"`` and gives keyword arguments; the registry maps the name
to the callable and checks the keyword arguments against its signature *before* anything is
built, so a misspelt key fails at start with the valid keys listed, never mid-run.

The component registries (``MODELS``, ``OBJECTIVES``, ``TRANSFORMS``, ``EVALUATORS``,
``COMMANDS``) live here, in the core, and the libraries and projects register into them. The
core never imports those packages by name: the first lookup in any registry imports every
module under ``COMPONENT_PACKAGES`` (big_vision imports ``models.<name>`` by string the same
way), so the import graph runs one way — projects → libraries → core — and adding a component
is adding a file.
"""
from __future__ import annotations

import importlib
import inspect
import pkgutil
from typing import Any, Callable, Mapping


class SpecError(ValueError):
    """A spec names something that does not exist or has the wrong type."""


class RunStateError(SpecError):
    """The spec is fine but the workdir's state stops the run: it is not writable, another run
    holds it, no checkpoint in it restores. The command line exits 1 (a failed run), not 2 (a
    wrong spec)."""


class CommandError(ValueError):
    """The user's input to a command cannot be used; the message says why and what to do."""


def command_parser(mode: str):
    """An argparse parser for ``--mode=<mode>``'s own flags whose errors (an unknown flag, a
    bad value) are one-line CommandErrors, as every other user error."""
    import argparse

    class Parser(argparse.ArgumentParser):
        def error(self, message):
            raise CommandError(f"--mode={mode}: {message}")

    return Parser(prog=f"python -m xmodal.main --mode={mode}", add_help=False)


# Packages whose modules register components; imported (by name) on the first lookup.
COMPONENT_PACKAGES = ("xmodal.data", "xmodal.nn", "xmodal.losses", "xmodal.evaluate",
                      "xmodal.distill", "xmodal.inference", "xmodal.projects")
_discovered = False


def discover() -> None:
    """Imports every module of ``COMPONENT_PACKAGES`` once, so each registers what it defines."""
    global _discovered
    if _discovered:
        return
    _discovered = True
    for package_name in COMPONENT_PACKAGES:
        package = importlib.import_module(package_name)
        for info in pkgutil.walk_packages(package.__path__, prefix=package_name + "."):
            if info.name.rsplit(".", 1)[-1] != "__main__":
                importlib.import_module(info.name)


class Registry:
    """``discovered=True`` (the component registries): lookups import the component packages
    first. A registry local to one library module (time samplers, flow paths) is complete once
    its module is imported and needs no discovery."""

    def __init__(self, kind: str, discovered: bool = False):
        self.kind = kind
        self.discovered = discovered
        self._items: dict[str, Callable[..., Any]] = {}

    def _complete(self) -> None:
        if self.discovered:
            discover()

    def register(self, name: str):
        def wrap(fn):
            if name in self._items:
                raise ValueError(f"{self.kind} {name!r} registered twice")
            self._items[name] = fn
            return fn
        return wrap

    def names(self) -> list[str]:
        self._complete()
        return sorted(self._items)

    def get(self, name: str) -> Callable[..., Any]:
        self._complete()
        if name not in self._items:
            raise SpecError(
                f"unknown {self.kind} {name!r}; valid {self.kind} names: {', '.join(self.names())}")
        return self._items[name]

    def check_kwargs(self, name: str, kwargs: Mapping[str, Any], where: str = "") -> None:
        """Raises SpecError naming the valid keys if ``kwargs`` has a key ``name`` does not take."""
        bad = unknown_kwargs(self.get(name), kwargs)
        if bad:
            valid = ", ".join(accepted_kwargs(self.get(name)))
            raise SpecError(
                f"{where or self.kind} {name!r} has no argument(s) {', '.join(sorted(bad))}; "
                f"valid keys: {valid}")

    def build(self, name: str, /, **kwargs):
        self.check_kwargs(name, kwargs)
        return self.get(name)(**kwargs)


def accepted_kwargs(fn: Callable[..., Any]) -> list[str]:
    """Keyword arguments a callable (function, class or flax dataclass) accepts."""
    sig = inspect.signature(fn)
    return [p.name for p in sig.parameters.values()
            if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
            and p.name not in ("self", "parent", "name")]


def unknown_kwargs(fn: Callable[..., Any], kwargs: Mapping[str, Any]) -> set[str]:
    sig = inspect.signature(fn)
    if any(p.kind == p.VAR_KEYWORD for p in sig.parameters.values()):
        return set()
    return set(kwargs) - set(accepted_kwargs(fn))


MODELS = Registry("model", discovered=True)
OBJECTIVES = Registry("objective", discovered=True)
TRANSFORMS = Registry("transform", discovered=True)
EVALUATORS = Registry("evaluator", discovered=True)
# --mode=<name> commands beyond train/eval: ``fn(spec, workdir, argv)``; bad user input raises
# CommandError (printed as one line, exit 1) and writes nothing.
COMMANDS = Registry("mode", discovered=True)
