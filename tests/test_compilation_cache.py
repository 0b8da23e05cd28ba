"""The persistent compilation cache: a second process reads what the first compiled, 'off'
writes nothing, and the flag, XMODAL_COMPILATION_CACHE and jax's own variable are honoured in
that order."""
import collections
import os
import re
import subprocess
import sys

import pytest

from tests import cli
from xmodal.core import compilation_cache

SCRIPT = """
import jax, jax.numpy as jnp
from xmodal.core import compilation_cache as c
print(c.enable())
jax.jit(lambda x: jnp.sin(x) * 2 + 1)(jnp.arange(3.0)).block_until_ready()
print(c.summary())
"""


def run(devices=1, **env):
    e = cli.env(devices=devices)
    for key in ("XMODAL_COMPILATION_CACHE", "JAX_COMPILATION_CACHE_DIR",
                "XMODAL_COMPILATION_CACHE_MIN_SECS"):
        e.pop(key, None)
    e.update(env)
    r = subprocess.run([sys.executable, "-c", SCRIPT], cwd=cli.ROOT, env=e, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    return r.stdout.splitlines()


def test_second_process_reads_what_the_first_compiled(tmp_path):
    cache = str(tmp_path / "cache")
    # The test program compiles in milliseconds: below the default threshold, so lower it.
    first = run(XMODAL_COMPILATION_CACHE=cache, XMODAL_COMPILATION_CACHE_MIN_SECS="0")
    assert first[0] == cache and "0 programs read" in first[1] and " 0 compiled" not in first[1]
    written = sorted(os.listdir(cache))
    assert any(name.endswith("-cache") for name in written)
    second = run(XMODAL_COMPILATION_CACHE=cache, XMODAL_COMPILATION_CACHE_MIN_SECS="0")
    assert "0 programs read" not in second[1] and second[1].endswith(" 0 compiled")


def test_off_writes_nothing_even_where_jax_has_a_folder(tmp_path):
    jax_dir = tmp_path / "jax"
    out = run(XMODAL_COMPILATION_CACHE="off", JAX_COMPILATION_CACHE_DIR=str(jax_dir),
              XMODAL_COMPILATION_CACHE_MIN_SECS="0")
    assert out[0] == "None"
    assert not jax_dir.exists() or not os.listdir(jax_dir)


def test_where_the_cache_goes(monkeypatch, tmp_path):
    monkeypatch.delenv("XMODAL_COMPILATION_CACHE", raising=False)
    monkeypatch.delenv("JAX_COMPILATION_CACHE_DIR", raising=False)
    assert compilation_cache.resolve() == os.path.expanduser("~/.cache/xmodal/jax")
    monkeypatch.setenv("JAX_COMPILATION_CACHE_DIR", str(tmp_path / "j"))
    assert compilation_cache.resolve() == str(tmp_path / "j")
    monkeypatch.setenv("XMODAL_COMPILATION_CACHE", str(tmp_path / "x"))
    assert compilation_cache.resolve() == str(tmp_path / "x")
    assert compilation_cache.resolve(str(tmp_path / "flag")) == str(tmp_path / "flag")
    assert compilation_cache.resolve("OFF") is None
    monkeypatch.setenv("XMODAL_COMPILATION_CACHE", "off")
    assert compilation_cache.resolve() is None


SPLIT = """
import jax, jax.numpy as jnp, numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P
from xmodal.core import compilation_cache as c
c.enable()
mesh = jax.make_mesh((8,), ("data",))
x = jax.device_put(jnp.arange(16.0), NamedSharding(mesh, P("data")))
y = jnp.arange(4.0)
print(c.summary())
print(float(jax.jit(lambda v: jnp.sum(v * 3))(x)))                  # 8 devices: an all-reduce
print(c.summary())
print(float(jax.jit(lambda v: jnp.sum(jnp.cos(v)))(y)))             # one device
print(c.summary())
"""


def _read_and_compiled(line):
    m = re.match(r"compilation cache: (\d+) programs read .*, (\d+) compiled$", line)
    return int(m.group(1)), int(m.group(2))


def test_only_one_device_programs_on_a_cpu_split_into_several_devices(tmp_path):
    # Multi-device CPU programs read back from the cache deadlocked in XLA's collectives;
    # one-device programs (most of the test suite's) have none and are cached.
    e = cli.env(devices=8, XMODAL_COMPILATION_CACHE=str(tmp_path / "cache"),
                XMODAL_COMPILATION_CACHE_MIN_SECS="0")

    def steps():
        """(programs read, programs compiled through the cache) by the sharded and then by
        the one-device jit."""
        r = subprocess.run([sys.executable, "-c", SPLIT], cwd=cli.ROOT, env=e,
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr[-2000:]
        out = r.stdout.splitlines()
        assert out[1] == "360.0"
        counts = [_read_and_compiled(out[i]) for i in (0, 2, 4)]
        return [tuple(b - a for a, b in zip(counts[i], counts[i + 1])) for i in (0, 1)]

    sharded, single = steps()
    assert sharded == (0, 0) and single == (0, 1)   # the sharded one never reaches the cache
    sharded, single = steps()
    assert sharded == (0, 0) and single == (1, 0)   # the one-device one is read back


def test_prune_drops_the_least_recently_used_entries_down_to_eighty_percent(tmp_path):
    # Five 100-byte entries used at times 1..5 (k0 oldest), one with a bounded jax cache's
    # atime file beside it.
    for i in range(5):
        path = tmp_path / f"k{i}-cache"
        path.write_bytes(b"x" * 100)
        os.utime(path, (1000 + i, 1000 + i))
    (tmp_path / "k0-atime").write_bytes(b"\0" * 8)
    assert compilation_cache.prune(str(tmp_path), 500) == 0          # within the bound
    assert len(list(tmp_path.glob("*-cache"))) == 5
    # Over 350 bytes: the oldest go until at most 280 (80 %) remain.
    assert compilation_cache.prune(str(tmp_path), 350) == 300
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(".")) == \
        ["k3-cache", "k4-cache"]


@pytest.mark.parametrize("saved, says", [(12.4, "~12 s of compiling saved"),
                                         (-0.3, "~0 s of compiling saved"),
                                         (-4.6, "reading cost ~5 s more than compiling")])
def test_the_summary_says_what_reading_saved_or_cost(monkeypatch, saved, says):
    from xmodal.core import compilation_cache as c
    monkeypatch.setattr(c, "_COUNTS", collections.Counter(hits=3, compiled=1, saved_s=saved))
    assert c.summary() == f"compilation cache: 3 programs read ({says}), 1 compiled"
