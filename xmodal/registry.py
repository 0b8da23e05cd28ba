"""Name → callable registries, so a spec can name components by string.

A spec says ``model.name = "two_tower"`` and gives keyword arguments; the registry maps the name
to the callable and checks the keyword arguments against its signature *before* anything is
built, so a misspelt key fails at start with the valid keys listed, never mid-run.
"""
from __future__ import annotations

import importlib
import inspect
import pkgutil
from typing import Any, Callable, Mapping


class SpecError(ValueError):
    """A spec names something that does not exist or has the wrong type."""


class Registry:
    def __init__(self, kind: str):
        self.kind = kind
        self._items: dict[str, Callable[..., Any]] = {}

    def register(self, name: str):
        def wrap(fn):
            if name in self._items:
                raise ValueError(f"{self.kind} {name!r} registered twice")
            self._items[name] = fn
            return fn
        return wrap

    def names(self) -> list[str]:
        return sorted(self._items)

    def get(self, name: str) -> Callable[..., Any]:
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


def import_all(package_name: str, package_path) -> None:
    """Imports every module of a package, so adding a component is adding a file.

    Called at the end of a package's ``__init__`` (after its registry exists); each module
    registers what it defines when imported.
    """
    for info in pkgutil.iter_modules(package_path):
        importlib.import_module(f"{package_name}.{info.name}")
