"""The persistent compilation cache: a second process reads what the first compiled, 'off'
writes nothing, and the flag, XMODAL_COMPILATION_CACHE and jax's own variable are honoured in
that order."""
import os
import subprocess
import sys

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


def test_off_on_a_cpu_split_into_several_devices(tmp_path):
    # Multi-device CPU programs read back from the cache deadlocked in XLA's collectives.
    cache = tmp_path / "cache"
    out = run(devices=8, XMODAL_COMPILATION_CACHE=str(cache),
              XMODAL_COMPILATION_CACHE_MIN_SECS="0")
    assert out[0] == "None" and (not cache.exists() or not os.listdir(cache))
