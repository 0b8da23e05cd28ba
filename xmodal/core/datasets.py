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

import bisect
import contextlib
import dataclasses
import fcntl
import hashlib
import importlib.util
import itertools
import json
import os
from typing import Iterator

import numpy as np
import tensorflow_datasets as tfds

from xmodal.core.registry import SpecError, discover

DATA_DIR_ENV = "XMODAL_DATA_DIR"

# Packages whose declared dependencies cannot be installed and are not needed (tinysoundfont
# declares pyaudio, which needs a C toolchain and PortAudio headers just to play sound).
NO_DEPS = frozenset({"tinysoundfont"})


class DataSourceMissing(RuntimeError):
    """A dataset needs a package that is not installed; the message has the pip command."""


class DataDamaged(RuntimeError):
    """A prepared dataset's files cannot be read; the message names the dataset, the file and
    the command that rebuilds it."""


def rebuild_command(name: str) -> str:
    return f"python -m xmodal.data prepare {name} --force"


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


def prepare(name: str, data_dir: str | None = None,
            force: bool = False) -> tfds.core.DatasetBuilder:
    """Builds dataset ``name`` into ``data_dir`` unless it is there already; returns the builder.
    ``force`` rebuilds it: into a folder beside it, which then replaces the old one, so an
    interrupted rebuild leaves the old copy as it was.

    Raises SpecError for an unknown name, DataSourceMissing for a missing package and
    DataDamaged for a prepared copy whose metadata cannot be read.
    """
    data_dir = data_dir or default_data_dir()
    if force:
        return _rebuild(name, data_dir)
    try:
        builder = builder_for(name, data_dir)
    except (SpecError, DataSourceMissing):
        raise
    except Exception as e:  # the prepared copy's dataset_info.json / features.json
        raise DataDamaged(f"dataset {name} in {data_dir} cannot be opened ({type(e).__name__}: "
                          f"{_first_line(e)}); rebuild it: {rebuild_command(name)}") from None
    if builder.is_prepared():
        return builder
    os.makedirs(data_dir, exist_ok=True)
    config = builder.builder_config.name if builder.builder_config else "default"
    lock = os.path.join(data_dir, f".{builder.name}-{config}.lock")
    with _exclusive_lock(lock):
        # A process that waited on the lock finds the dataset written and skips it.
        builder = builder_for(name, data_dir)
        if not builder.is_prepared():
            _remove_stale_builds(str(builder.data_path))
            builder.download_and_prepare()
            record_shards(builder)
    return builder


def _remove_stale_builds(data_path: str) -> None:
    """A prepare killed mid-build (``kill -9``: TFDS's own cleanup never ran) leaves its
    ``incomplete.*`` folder beside the version folder. Under the prepare lock no build is
    running, so any there are stale: removed before building again."""
    import shutil
    folder = os.path.dirname(data_path)
    if os.path.isdir(folder):
        for entry in os.listdir(folder):
            if entry.startswith("incomplete."):
                shutil.rmtree(os.path.join(folder, entry), ignore_errors=True)


def data_source(name: str, split: str, data_dir: str | None = None) -> "CheckedSource":
    """Random-access source of ``split`` (an ArrayRecord ``tfds.data_source``), prepared first.

    Records are dicts of numpy arrays / ints / bytes (text features are UTF-8 bytes). A record
    that cannot be read raises DataDamaged naming its shard file.
    """
    builder = _prepared_with_split(name, split, data_dir)
    info = builder.info.splits[split]
    files = [str(f) for f in info.filepaths]
    missing = [f for f in files if not os.path.isfile(f) or os.path.getsize(f) == 0]
    if missing:
        raise DataDamaged(f"dataset {name} split {split}: shard {missing[0]} is missing or "
                          f"empty; rebuild it: {rebuild_command(name)}")
    check_shard_sizes(name, builder, files)
    try:
        source = builder.as_data_source(split)
    except Exception as e:
        raise DataDamaged(f"dataset {name} split {split} in {os.path.dirname(files[0])} cannot "
                          f"be opened ({_first_line(e)}); rebuild it: "
                          f"{rebuild_command(name)}") from None
    return CheckedSource(source, name, split, files, list(info.shard_lengths))


class CheckedSource:
    """A tfds data source whose read errors name the dataset, the shard file and the rebuild
    command (ArrayRecord's own say only "Corrupted Riegeli/records file ... at byte N")."""

    def __init__(self, source, name: str, split: str, files: list[str], shard_lengths: list):
        self.source, self.name, self.split = source, name, split
        self.files, self.ends = files, list(itertools.accumulate(int(n) for n in shard_lengths))

    def __len__(self) -> int:
        return len(self.source)

    def shard_of(self, index) -> str:
        return self.files[min(bisect.bisect_right(self.ends, int(index)), len(self.files) - 1)]

    def __getitem__(self, index):
        try:
            record = self.source[index]
        except (RuntimeError, OSError, ValueError) as e:
            raise DataDamaged(f"dataset {self.name} split {self.split}: record {index} of "
                              f"{self.shard_of(index)} cannot be read ({_first_line(e)}); "
                              f"rebuild it: {rebuild_command(self.name)}") from None
        return self._checked(index, record)

    def _getitems(self, indices) -> list:
        """Many records in one batched ArrayRecord read (grain's batched-read protocol, which
        ``input.ReadBatches`` uses): about half the time per record of one read each (250 -> 120
        us for eight_gaussians' small records), since the reader works per chunk, not per
        record. A failed batch is read again one record at a time, so the error still names
        the record and its shard."""
        indices = [int(i) for i in indices]
        if not hasattr(self.source, "__getitems__"):
            return [self[i] for i in indices]
        try:
            records = self.source.__getitems__(indices)
        except (RuntimeError, OSError, ValueError, IndexError):
            return [self[i] for i in indices]
        return [self._checked(i, r) for i, r in zip(indices, records)]

    def _checked(self, index, record):
        # A NaN/Inf in a stored float field (a corrupt record, or a bug in a builder) would
        # surface as a NaN loss steps later; here it names its record. isfinite over one
        # record's floats costs microseconds next to decoding it.
        if isinstance(record, dict):
            for field, value in record.items():
                if (isinstance(value, np.ndarray) and value.dtype.kind == "f"
                        and not np.isfinite(value).all()):
                    raise DataDamaged(
                        f"dataset {self.name} split {self.split}: record {index} field "
                        f"{field!r} holds NaN or Inf ({self.shard_of(index)}); rebuild it: "
                        f"{rebuild_command(self.name)}")
        return record

    def __repr__(self) -> str:
        return f"CheckedSource({self.name}:{self.split}, {len(self)} records)"


def _first_line(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0][:200]


def _rebuild(name: str, data_dir: str) -> tfds.core.DatasetBuilder:
    """Builds ``name`` into a fresh folder beside ``data_dir`` and swaps its version folder in
    (one rename each way), so the old copy is replaced only once the new one is complete."""
    import shutil
    import tempfile
    os.makedirs(data_dir, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=".rebuild-", dir=data_dir)
    try:
        fresh = builder_for(name, staging)
        fresh.download_and_prepare()
        record_shards(fresh)
        relative = os.path.relpath(str(fresh.data_path), staging)
        target = os.path.join(data_dir, relative)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        old = target + ".replaced"
        if os.path.exists(target):
            os.replace(target, old)
        os.replace(str(fresh.data_path), target)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return builder_for(name, data_dir)


def num_examples(name: str, split: str, data_dir: str | None = None) -> int:
    return _prepared_with_split(name, split, data_dir).info.splits[split].num_examples


def _prepared_with_split(name: str, split: str, data_dir: str | None):
    builder = prepare(name, data_dir)
    if split not in builder.info.splits:
        raise ValueError(
            f"dataset {name!r} has no split {split!r}; splits: {', '.join(builder.info.splits)}")
    return builder


# --------------------------------------------------------------------------- shard integrity
# ``<data_path>/xmodal_shards.json``: every file of the prepared version folder with its size
# and sha256, written when the dataset is built. Opening a split compares sizes (a stat per
# shard: catches truncated, partly copied and replaced files at start, not at step 12,000);
# ``verify`` re-hashes everything (``python -m xmodal.data verify NAME``: catches flipped
# bytes too, at the cost of reading the whole dataset). A dataset built before this record
# existed gets it on its first open: its damage, if any, is still caught by ArrayRecord's own
# chunk hashes when read (CheckedSource names the file), and later damage by the record.
SHARDS_FILE = "xmodal_shards.json"


def sha256_of(path: str, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _data_files(folder: str) -> list[str]:
    return sorted(f for f in os.listdir(folder)
                  if f != SHARDS_FILE and os.path.isfile(os.path.join(folder, f)))


def record_shards(builder: tfds.core.DatasetBuilder) -> dict:
    """Writes (atomically) and returns the size and sha256 of every file of the version folder."""
    folder = str(builder.data_path)
    record = {"files": {f: {"bytes": os.path.getsize(os.path.join(folder, f)),
                            "sha256": sha256_of(os.path.join(folder, f))}
                        for f in _data_files(folder)}}
    tmp = os.path.join(folder, f".{SHARDS_FILE}.{os.getpid()}")
    with open(tmp, "w") as f:
        json.dump(record, f, indent=1, sort_keys=True)
    os.replace(tmp, os.path.join(folder, SHARDS_FILE))
    return record


def read_shards(name: str, builder: tfds.core.DatasetBuilder) -> dict | None:
    path = os.path.join(str(builder.data_path), SHARDS_FILE)
    if not os.path.exists(path):
        return None
    try:
        with open(path) as f:
            record = json.load(f)
        record["files"].items()
    except (OSError, ValueError, KeyError, AttributeError) as e:
        raise DataDamaged(f"dataset {name}: {path} cannot be read ({_first_line(e)}); rebuild "
                          f"it: {rebuild_command(name)}") from None
    return record


def check_shard_sizes(name: str, builder: tfds.core.DatasetBuilder, files: list[str]) -> None:
    """DataDamaged naming the first of ``files`` whose size is not the recorded one."""
    record = read_shards(name, builder)
    if record is None:
        try:
            record = record_shards(builder)
        except OSError:   # a read-only data dir: nothing to compare against, nothing lost
            return
    for path in files:
        expected = record["files"].get(os.path.basename(path))
        actual = os.path.getsize(path)
        if expected is None or expected["bytes"] != actual:
            what = ("is not in its shard record" if expected is None else
                    f"has {actual} bytes, {expected['bytes']} when it was built")
            raise DataDamaged(f"dataset {name}: shard {path} {what}; rebuild it: "
                              f"{rebuild_command(name)}")


def has_shard_record(name: str, data_dir: str | None = None) -> bool:
    return os.path.exists(os.path.join(str(prepare(name, data_dir).data_path), SHARDS_FILE))


def read_every_record(name: str, builder: tfds.core.DatasetBuilder) -> list[str]:
    """The first record of each split that cannot be read, one line each; [] when all read.
    Reading is the check: ArrayRecord verifies each chunk's hash as it decodes it."""
    problems = []
    for split, info in builder.info.splits.items():
        source = CheckedSource(builder.as_data_source(split), name, split,
                               [str(f) for f in info.filepaths], list(info.shard_lengths))
        for start in range(0, len(source), 512):
            try:
                source._getitems(range(start, min(start + 512, len(source))))  # noqa: SLF001
            except DataDamaged as e:
                problems.append(str(e).split("; rebuild it:")[0].split(": ", 1)[-1])
                break
    return problems


def verify(name: str, data_dir: str | None = None) -> list[str]:
    """Every problem of the prepared copy of ``name`` against its shard record (missing,
    resized or re-hashed files), one line each; [] when intact. A copy built before the record
    existed has nothing to compare with: every record is read instead (``read_every_record``),
    and only a copy that reads whole is recorded, so a damaged file is never blessed."""
    builder = prepare(name, data_dir)
    folder = str(builder.data_path)
    record = read_shards(name, builder)
    if record is None:
        problems = read_every_record(name, builder)
        if not problems:
            record_shards(builder)
        return problems
    problems = []
    for f, expected in sorted(record["files"].items()):
        path = os.path.join(folder, f)
        if not os.path.isfile(path):
            problems.append(f"{path} is missing")
        elif os.path.getsize(path) != expected["bytes"]:
            problems.append(f"{path} has {os.path.getsize(path)} bytes, {expected['bytes']} "
                            "when it was built")
        elif sha256_of(path) != expected["sha256"]:
            problems.append(f"{path} does not have the checksum it was built with")
    return problems
