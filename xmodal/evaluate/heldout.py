"""A held-out set cut in two by a stable key: a dev half where settings are chosen and a test
half read once for the table.

The half of an item is decided by the SHA-1 of a salt and its key (a query, an emoji's base
code points), so it never changes with the order, the size of the set or the run, and every
item sharing a key (all skin tones of one emoji) falls in the same half. The salt keeps the cut
independent of any other rule on the same keys: the emoji's test split is the bases with
sha1(base) % 10 == 0, all of them even, so the unsalted parity would put every test emoji in
the dev half.
"""
from __future__ import annotations

import hashlib
from typing import Iterable

import numpy as np

HALVES = ("all", "dev", "test")


def dev_half(keys: Iterable[str | bytes], salt: str) -> np.ndarray:
    """Bool [N]: True where the key's item is in the dev half (about half of the keys); the
    parity of sha1(salt + key)."""
    def digest(k):
        k = k if isinstance(k, bytes) else k.encode()
        return int(hashlib.sha1(salt.encode() + k).hexdigest(), 16)
    return np.array([digest(k) % 2 == 0 for k in keys], bool)


def select(half: str, dev: np.ndarray) -> np.ndarray:
    """Indices of ``half`` ('all', 'dev' or 'test') given the dev mask."""
    if half not in HALVES:
        raise ValueError(f"half must be one of {', '.join(HALVES)}; got {half!r}")
    dev = np.asarray(dev, bool)
    return np.flatnonzero(np.ones_like(dev) if half == "all" else dev if half == "dev" else ~dev)
