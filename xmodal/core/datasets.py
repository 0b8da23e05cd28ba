"""Datasets by short name: which TFDS builder makes each one and what it needs installed.

The builders live one module a source in ``xmodal/data/sets/`` and register here.

    builder = prepare("emoji/tiny")                 # builds once into default_data_dir()
    train = data_source("emoji/tiny", "train")      # random access, for grain

Data lives in ``$XMODAL_DATA_DIR`` (default ``~/.cache/xmodal/datasets``) in the usual TFDS
layout ``<data_dir>/<tfds name>/<config>/<version>/``. TFDS writes into an ``incomplete.*``
folder and renames it when done, so an interrupted prepare leaves no half dataset behind; a file
lock makes concurrent prepares on one machine wait for each other instead of racing.
"""
from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import importlib.util
import json
import os
from typing import Iterator

import tensorflow_datasets as tfds

from xmodal.core.registry import SpecError, discover

DATA_DIR_ENV = "XMODAL_DATA_DIR"

# Packages whose declared dependencies cannot be installed and are not needed (tinysoundfont
# declares pyaudio, which needs a C toolchain and PortAudio headers just to play sound).
NO_DEPS = frozenset({"tinysoundfont"})


class DataSourceMissing(RuntimeError):
    """A dataset needs a package that is not installed; the message has the pip command."""


@dataclasses.dataclass(frozen=True)
class DatasetEntry:
    builder: type[tfds.core.DatasetBuilder]
    config: str | None
    packages: tuple[str, ...]        # pip names
    modules: tuple[str, ...]         # import names, checked with importlib.util.find_spec
    install_hint: str                # one line for the error message
    apt: tuple[str, ...] = ()        # Debian packages (need root; `apt-get update` first)
    npm: tuple[str, ...] = ()        # npm packages, installed under npm_dir()
    files: tuple[str, ...] = ()      # paths that must exist once the system packages are in

    def pip_command(self) -> str:
        plain = [p for p in self.packages if p not in NO_DEPS]
        cmds = (["pip install " + " ".join(plain)] if plain else [])
        cmds += [f"pip install --no-deps {p}" for p in self.packages if p in NO_DEPS]
        return " && ".join(cmds)

    def install_commands(self) -> list[str]:
        """Shell commands that install everything this dataset needs."""
        cmds = []
        if self.packages:
            cmds.append(self.pip_command())
        if self.apt:
            cmds.append("apt-get update && apt-get install -y " + " ".join(self.apt))
        if self.npm:
            cmds.append(f"npm install --prefix {npm_dir()} " + " ".join(self.npm))
        return cmds


# Filled by the modules of ``xmodal/data/sets/`` (one per source), found by ``registry.discover``.
DATASETS: dict[str, DatasetEntry] = {}


def register(name: str, entry: DatasetEntry) -> None:
    """Adds a dataset; the modules of ``xmodal/data/sets/`` call this when imported."""
    if name in DATASETS:
        raise ValueError(f"dataset {name!r} registered twice")
    DATASETS[name] = entry


def install_report_path() -> str:
    """Where ``python -m xmodal.data install`` records the datasets it could not install."""
    return os.path.join(os.path.dirname(npm_dir()), "install_report.json")


def write_install_report(still_missing: dict) -> None:
    os.makedirs(os.path.dirname(install_report_path()), exist_ok=True)
    with open(install_report_path(), "w") as f:
        json.dump({"not_installable": still_missing}, f, indent=1, sort_keys=True)


def not_installable() -> dict:
    """``{dataset: why}`` from the last install run ({} when none ran or all went in)."""
    try:
        with open(install_report_path()) as f:
            return dict(json.load(f).get("not_installable", {}))
    except (OSError, ValueError):
        return {}


def npm_dir() -> str:
    """Where npm packages for datasets live: ``$XMODAL_NPM_DIR`` or ``~/.cache/xmodal/npm``."""
    return os.environ.get("XMODAL_NPM_DIR") or os.path.expanduser("~/.cache/xmodal/npm")


def npm_modules() -> str:
    return os.path.join(npm_dir(), "node_modules")


def debroot() -> str:
    """Root under which Debian packages' files are read (``/`` after a real apt-get install)."""
    return os.environ.get("DEBROOT", "/")


def default_data_dir() -> str:
    return os.environ.get(DATA_DIR_ENV) or os.path.expanduser("~/.cache/xmodal/datasets")


def names() -> list[str]:
    """Every registered dataset name."""
    discover()
    return sorted(DATASETS)


def dataset_entry(name: str) -> DatasetEntry:
    discover()
    if name not in DATASETS:
        raise SpecError(
            f"unknown dataset {name!r}; valid dataset names: {', '.join(sorted(DATASETS))}")
    return DATASETS[name]


def check_installed(name: str) -> None:
    """Raises DataSourceMissing with the pip command if a module ``name`` needs is missing."""
    entry = dataset_entry(name)
    missing = [m for m in entry.modules if importlib.util.find_spec(m) is None]
    missing += [f for f in entry.files if not os.path.exists(resolve_file(f))]
    missing += [p for p in entry.npm if not os.path.isdir(os.path.join(npm_modules(), p))]
    if missing:
        raise DataSourceMissing(
            f"dataset {name!r} needs {', '.join(missing)}, not installed "
            f"({entry.install_hint}); install with: {' && '.join(entry.install_commands())} "
            f"(or: python -m xmodal.data install {name})")


def resolve_file(path: str) -> str:
    """A Debian file path (``/usr/share/...``) under ``debroot()``."""
    return os.path.join(debroot(), path.lstrip("/"))


@contextlib.contextmanager
def _exclusive_lock(path: str) -> Iterator[None]:
    # flock is released by the kernel if the process dies, so a crash cannot leave it stuck.
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def builder_for(name: str, data_dir: str | None = None) -> tfds.core.DatasetBuilder:
    """The TFDS builder of dataset ``name`` in ``data_dir``, not prepared."""
    entry = dataset_entry(name)
    check_installed(name)
    kwargs = {"config": entry.config} if entry.config else {}
    return entry.builder(data_dir=data_dir or default_data_dir(), **kwargs)


def prepare(name: str, data_dir: str | None = None) -> tfds.core.DatasetBuilder:
    """Builds dataset ``name`` into ``data_dir`` unless it is there already; returns the builder.

    Raises SpecError for an unknown name and DataSourceMissing for a missing package.
    """
    data_dir = data_dir or default_data_dir()
    builder = builder_for(name, data_dir)
    if builder.is_prepared():
        return builder
    os.makedirs(data_dir, exist_ok=True)
    config = builder.builder_config.name if builder.builder_config else "default"
    lock = os.path.join(data_dir, f".{builder.name}-{config}.lock")
    with _exclusive_lock(lock):
        # A process that waited on the lock finds the dataset written and skips it.
        builder = builder_for(name, data_dir)
        builder.download_and_prepare()
    return builder


def data_source(name: str, split: str, data_dir: str | None = None):
    """Random-access source of ``split`` (an ArrayRecord ``tfds.data_source``), prepared first.

    Records are dicts of numpy arrays / ints / bytes (text features are UTF-8 bytes).
    """
    return _prepared_with_split(name, split, data_dir).as_data_source(split)


def num_examples(name: str, split: str, data_dir: str | None = None) -> int:
    return _prepared_with_split(name, split, data_dir).info.splits[split].num_examples


def _prepared_with_split(name: str, split: str, data_dir: str | None):
    builder = prepare(name, data_dir)
    if split not in builder.info.splits:
        raise ValueError(
            f"dataset {name!r} has no split {split!r}; splits: {', '.join(builder.info.splits)}")
    return builder
