"""The dev / test halves of a held-out set: stable, keyed, salted, a partition."""
import hashlib

import numpy as np
import pytest

from xmodal.data.sets.emoji import split_of
from xmodal.evaluate import heldout


def test_the_half_is_the_parity_of_the_salted_keys_sha1_and_a_key_never_straddles():
    keys = ["1F600", "1F44D", b"1F44D", "cat", "flag", "1F600"]
    dev = heldout.dev_half(keys, "s:")
    want = [int(hashlib.sha1(b"s:" + (k if isinstance(k, bytes) else k.encode()))
                .hexdigest(), 16) % 2 == 0 for k in keys]
    assert dev.tolist() == want
    assert dev[1] == dev[2] and dev[0] == dev[5]         # one key, one half (bytes or str)
    # About half of many keys; the same mask in any order.
    many = [f"{i:05X}" for i in range(2000)]
    mask = heldout.dev_half(many, "s:")
    assert 0.45 < mask.mean() < 0.55
    order = np.random.default_rng(0).permutation(2000)
    np.testing.assert_array_equal(heldout.dev_half([many[i] for i in order], "s:"), mask[order])


def test_the_salt_keeps_the_halves_apart_from_the_emoji_test_split():
    # The emoji's test split is sha1(base) % 10 == 0: every test base has an even digest, so
    # the unsalted parity puts them all in the dev half; a salt cuts them about in half.
    test_bases = [b for b in (f"1F{i:03X}" for i in range(4096)) if split_of(b) == "test"]
    assert len(test_bases) > 300
    assert heldout.dev_half(test_bases, "").all()
    assert 0.4 < heldout.dev_half(test_bases, "restoration:").mean() < 0.6


def test_select_partitions_the_set():
    dev = np.array([True, False, False, True, False])
    assert heldout.select("dev", dev).tolist() == [0, 3]
    assert heldout.select("test", dev).tolist() == [1, 2, 4]
    assert heldout.select("all", dev).tolist() == [0, 1, 2, 3, 4]
    with pytest.raises(ValueError, match="all, dev, test"):
        heldout.select("train", dev)
