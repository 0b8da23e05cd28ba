"""Shared pieces of the data-source tests: skip when a source is not installed, read a split."""
from __future__ import annotations

import pytest

from xmodal.data import sources


def missing(name: str) -> str | None:
    """Why dataset ``name`` cannot be built here (with the install command), or None."""
    try:
        sources.check_installed(name)
    except sources.DataSourceMissing as e:
        return str(e)
    return None


def skip_unless_installed(name: str):
    """A pytest mark skipping a module whose source is missing; CI installs every source."""
    reason = missing(name)
    return pytest.mark.skipif(reason is not None, reason=str(reason))


def read_all(name: str, data_dir: str) -> dict[str, list]:
    """Every record of both splits (tiny configs only), building the dataset first."""
    return {split: [sources.data_source(name, split, data_dir)[i]
                    for i in range(sources.num_examples(name, split, data_dir))]
            for split in ("train", "test")}
