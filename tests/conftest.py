"""Test setup: 8 fake CPU devices, set before JAX touches a backend."""
import contextlib
import os
import shutil

import pytest

os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8").strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")
# Keep each xdist worker to one intra-op thread pool that fits two cores.
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
# The persistent compilation cache, as a user's run has it (~/.cache/xmodal/jax unless
# XMODAL_COMPILATION_CACHE says otherwise), in every worker and every CLI subprocess a test
# starts (they inherit this environment): a program an earlier test or run compiled is read
# back. With 8 fake devices (this process, most tests) only one-device programs are cached:
# see compilation_cache.several_cpu_devices.
os.environ.setdefault("XMODAL_COMPILATION_CACHE",
                      os.path.expanduser(os.path.join("~", ".cache", "xmodal", "jax")))
# Every program, down to the op-by-op ones (tests run much un-jitted model code, each op a
# program of 10-50 ms to compile): on three in-process test files, 100-127 s with the users'
# 0.1 s floor, 57-71 s read back with none, 167 s the run that writes them
# (WORKSPACE_NOTES, "Test suite time").
os.environ.setdefault("XMODAL_COMPILATION_CACHE_MIN_SECS", "0")

import jax  # noqa: E402

from xmodal.core import compilation_cache  # noqa: E402

jax.config.update("jax_threefry_partitionable", True)
compilation_cache.enable()


@contextlib.contextmanager
def one_device():
    """In-process training on the first of the 8 fake devices only: ``jax.devices()`` (what
    ``parallel.make_mesh`` lays the spec's mesh over) lists one device. For tests of what a
    run learns or logs, not of how it is sharded: a one-device program skips the 8-way split
    on 2 cores and is read back from the compilation cache, which a multi-device CPU program
    is not (``compilation_cache.several_cpu_devices``). Sharding has its own tests."""
    everything = jax.devices

    def first(*args, **kwargs):
        return everything(*args, **kwargs) if args or kwargs else everything()[:1]
    jax.devices = first
    try:
        yield
    finally:
        jax.devices = everything


@pytest.fixture(scope="module")
def on_one_device():
    """``one_device`` for a whole module: ``pytestmark = pytest.mark.usefixtures(...)`` runs
    it before the module's other module-scoped fixtures (a trained teacher)."""
    with one_device():
        yield


def pytest_runtest_setup(item):
    # Tests marked ``needs_data(name)`` (tests/data_helpers.skip_unless_installed).
    from tests.data_helpers import check_data
    for mark in item.iter_markers(name="needs_data"):
        check_data(mark.args[0])


def shared_workdir(tmp_path_factory, name: str, build) -> "os.PathLike":
    """``root/name``, made once per test run by ``build(workdir)`` and shared by the xdist
    workers (a file lock: the first worker to need it builds it, the others wait and reuse it).
    Tests never change it: they copy it (``cli.copy_workdir``) or read it."""
    from filelock import FileLock

    # Under xdist every worker has its own base temp inside the run's; outside it, the run's.
    root = tmp_path_factory.getbasetemp()
    root = root.parent if os.environ.get("PYTEST_XDIST_WORKER") else root
    wd = root / name
    with FileLock(str(root / f"{name}.lock")):
        if not (wd / "TRAINED").exists():
            shutil.rmtree(wd, ignore_errors=True)
            build(wd)
            (wd / "TRAINED").write_text("")
    return wd


@pytest.fixture(scope="session")
def trained_clip(tmp_path_factory):
    """A workdir of ``specs/clip.py:runlocal`` at the tests' tiny size trained for 2 steps
    through the CLI (one device). Train once, assert many: eval-only, re-evaluation, resume and
    failed-start tests all start from a trained run."""
    from tests import cli
    return shared_workdir(tmp_path_factory, "shared_trained_clip", lambda wd: cli.run(
        "specs/clip.py:runlocal", wd, "--spec.train.steps=2"))


@pytest.fixture(scope="session")
def eight_gaussians_teacher(tmp_path_factory):
    """The teacher stage of ``specs/eight_gaussians.py`` at the tests' size
    (``toy_runs.eight_gaussians_spec``: a 64-wide MLP trained 2000 steps), the stage folder
    itself. Shared by the distillation quality test and the sample command's tests, which
    each put a copy in a workdir of their own as its ``teacher`` stage."""
    from tests import toy_runs
    from xmodal.core import spec as spec_lib
    from xmodal.core import trainer

    def build(wd):
        with one_device():
            trainer.run(spec_lib.validate(toy_runs.eight_gaussians_spec()), str(wd),
                        only=("teacher",))
    return shared_workdir(tmp_path_factory, "shared_eight_gaussians", build) / "teacher"


def pytest_collection_modifyitems(config, items):
    """The test files holding slow tests run first, each file's tests kept together and in
    order (module fixtures are set up once). Under xdist a minute-long CLI test then starts
    while quick tests can still fill the other worker, rather than late, one worker running it
    alone while the other has nothing left."""
    slow_files = {item.path for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: item.path not in slow_files)
