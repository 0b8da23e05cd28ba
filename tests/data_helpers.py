"""Shared pieces of the data tests: skip when a source is not installed, read a split, compare
training batches, resume a loader through orbax."""
from __future__ import annotations

import itertools
from typing import Callable

import numpy as np
import orbax.checkpoint as ocp
import pytest

from xmodal.core import datasets as sources
from xmodal.core.input import iterator_checkpoint_args
from xmodal.data.tokenizer import ByteTokenizer


def missing(name: str) -> str | None:
    """Why dataset ``name`` cannot be built here (with the install command), or None."""
    try:
        sources.check_installed(name)
    except sources.DataSourceMissing as e:
        return str(e)
    return None


def skip_unless_installed(name: str):
    """A pytest mark for tests that read dataset ``name`` (acted on in ``conftest.py``).

    ``bash setup.sh`` installs every source. A source still missing skips only if set-up tried
    and could not install it here (``python -m xmodal.data install`` recorded why); missing for
    any other reason, the test fails, naming the command that installs it."""
    return pytest.mark.needs_data(name)


def check_data(name: str) -> None:
    """Skips or fails the running test as ``skip_unless_installed`` says."""
    reason = missing(name)
    if reason is None:
        return
    why = sources.not_installable().get(name)
    if why:
        pytest.skip(f"{name} cannot be installed here: {why}")
    pytest.fail(f"{reason}; run: bash setup.sh (or: python -m xmodal.data install {name})",
                pytrace=False)


def read_all(name: str, data_dir: str, splits=("train", "test")) -> dict[str, list]:
    """Every record of ``splits`` (tiny configs only), building the dataset first."""
    return {split: [sources.data_source(name, split, data_dir)[i]
                    for i in range(sources.num_examples(name, split, data_dir))]
            for split in splits}


def first(iterator, n: int) -> list:
    return list(itertools.islice(iterator, n))


def ids(batch, max_len: int = 64) -> list[str]:
    """The decoded text of each row: the tests put a unique record id in ``text``."""
    tok = ByteTokenizer(max_len)
    return [tok.decode(row) for row in batch["text"]]


def assert_same_batches(a, b) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert x.keys() == y.keys()
        for key in x:
            np.testing.assert_array_equal(x[key], y[key])


def assert_resumes_through_orbax(make_loader: Callable, k: int, n: int, path) -> None:
    """``n`` batches of a fresh loader whose iterator state was saved with orbax after ``k``
    batches equal batches ``k .. k + n`` of an uninterrupted one."""
    reference = first(iter(make_loader()), k + n)
    it = iter(make_loader())
    first(it, k)
    with ocp.CheckpointManager(path) as manager:
        manager.save(k, args=ocp.args.Composite(data=iterator_checkpoint_args(it)))
        manager.wait_until_finished()
    resumed = iter(make_loader())
    with ocp.CheckpointManager(path) as manager:
        manager.restore(k, args=ocp.args.Composite(
            data=iterator_checkpoint_args(resumed, restore=True)))
    assert_same_batches(first(resumed, n), reference[k:k + n])
