"""A damaged newest checkpoint is reported in one line and the next older one is used; when none
restores the run stops in one line and starts nothing from scratch. Checksums written with each
checkpoint catch bytes that changed on disk."""
from __future__ import annotations

import json
import os
import shutil
import subprocess

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests import cli
from xmodal.core import checkpoint as ckpt_lib

pytestmark = pytest.mark.slow


def _train(wd, steps: int, *args: str):
    # One device: which checkpoint restores does not depend on the device count, and a
    # one-device train step is read back from the compilation cache by the four restarts.
    return subprocess.run(cli.command("specs/clip.py:runlocal", wd, f"--spec.train.steps={steps}",
                                      "--spec.train.ckpt_every=1", "--spec.train.keep_ckpts=8",
                                      *args),
                          cwd=cli.ROOT, env=cli.env(devices=1), capture_output=True, text=True,
                          timeout=600)


def _largest_file(folder):
    files = [os.path.join(r, f) for r, _, fs in os.walk(folder) for f in fs]
    return max(files, key=os.path.getsize)


def _steps(wd):
    return sorted(int(d) for d in os.listdir(wd / "checkpoints") if d.isdigit())


def test_each_damage_falls_back_to_the_next_older_checkpoint(tmp_path):
    # Seven checkpoints; the six newest each get a different damage, newest first, and one
    # restart must name each in its own line (its step and, where it has one, its reason), set
    # each aside and go on to the next older, ending at step 1: each damage is seen through
    # the same fallback a single damaged checkpoint takes, in one CLI restart instead of six.
    wd = tmp_path / "run"
    r = _train(wd, 7)
    assert r.returncode == 0, r.stderr[-2000:]
    assert _steps(wd) == [1, 2, 3, 4, 5, 6, 7]

    damages = {
        # a data file cut in half (a partial copy, a full disk)
        "truncated": lambda d: os.truncate(_largest_file(d / "state"),
                                           os.path.getsize(_largest_file(d / "state")) // 2),
        # the arrays deleted
        "state deleted": lambda d: shutil.rmtree(d / "state"),
        # the metadata JSON broken
        "meta corrupt": lambda d: (d / "meta" / "metadata").write_text("{not json"),
        # 16 bytes overwritten in the middle of the largest data file
        "bytes overwritten": lambda d: _overwrite(_largest_file(d / "state"), 16),
        # the input pipeline's saved position edited (would resume on other batches)
        "data position edited": _edit_position,
        # every OCDBT manifest overwritten with zeros (a block device's lost writes)
        "manifests zeroed": _zero_manifests,
    }
    reasons = {"manifests zeroed": "not an OCDBT manifest",
               "data position edited": "differs from its checksum"}
    damaged = dict(zip(range(7, 1, -1), damages))          # step -> damage, 7 .. 2
    for step, name in damaged.items():
        damages[name](wd / "checkpoints" / str(step))

    r = _train(wd, 8)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "Traceback" not in r.stderr, r.stderr[-3000:]
    said = [l for l in r.stderr.splitlines() if "does not restore" in l]
    assert len(said) == len(damaged), r.stderr[-3000:]
    for line, (step, name) in zip(said, damaged.items()):
        assert f"checkpoints/{step} does not restore" in line, (name, line)
        assert reasons.get(name, "") in line, (name, line)
        assert (wd / "checkpoints" / f"{step}.unrestorable").is_dir(), name
    assert "from workdir checkpoint 1," in r.stdout, r.stdout[-2000:]
    assert _steps(wd)[-1] == 8
    rows = [json.loads(l) for l in open(wd / "metrics.jsonl")]
    train_steps = [row["step"] for row in rows if "train/loss" in row]
    assert train_steps == list(range(1, 9))


def test_no_restorable_checkpoint_is_one_line_and_starts_nothing(tmp_path):
    # Trained with grain workers, whose positions the restore hands to the new run's workers:
    # the stop must not be followed by their shutdown's tracebacks.
    wd = tmp_path / "run"
    workers = "--spec.data.num_workers=2"
    assert _train(wd, 2, workers).returncode == 0
    steps = _steps(wd)
    assert steps
    for step in steps:
        (wd / "checkpoints" / str(step) / "meta" / "metadata").write_text("")
    r = _train(wd, 3, workers)
    assert r.returncode == 1
    lines = [l for l in r.stderr.splitlines() if l.strip()]
    assert len(lines) == len(steps) + 1, r.stderr[-3000:]   # one per checkpoint, one to stop
    assert lines[-1].startswith("error: no checkpoint in ") and "move " in lines[-1]
    assert "training " not in r.stdout          # nothing started from scratch
    assert sorted(os.listdir(wd / "checkpoints")) == [f"{s}.unrestorable" for s in steps]


def _edit_position(step_dir):
    (path,) = (step_dir / "data").glob("process_*.json")
    text = path.read_text()
    edited = text.replace('"next_index": ', '"next_index": 1', 1)   # e.g. 3 -> 13
    assert edited != text, text
    path.write_text(edited)


def _zero_manifests(step_dir):
    for folder, _, files in os.walk(step_dir / "state"):
        if "manifest.ocdbt" in files:
            path = os.path.join(folder, "manifest.ocdbt")
            with open(path, "r+b") as f:
                f.write(bytes(os.path.getsize(path)))


def _overwrite(path, n):
    with open(path, "r+b") as f:
        f.seek(os.path.getsize(path) // 2)
        f.write(os.urandom(n))


def test_checksums_name_the_array_whose_bytes_changed():
    tree = {"params": {"w": jnp.arange(12, dtype=jnp.float32).reshape(3, 4),
                       "b": jnp.ones(3, jnp.bfloat16)},
            "step": jnp.int32(7), "rng": jax.random.key_data(jax.random.key(0))}
    sums = ckpt_lib.checksums(tree)
    assert set(sums) == {"params/w", "params/b", "step", "rng"}
    ckpt_lib.verify(tree, sums)                                 # unchanged: passes
    ckpt_lib.verify(tree, None)                                 # written without: passes
    w = np.asarray(tree["params"]["w"]).copy()
    w.reshape(-1).view(np.uint8)[17] ^= 1                                  # one bit of one float
    changed = dict(tree, params=dict(tree["params"], w=jnp.asarray(w)))
    with pytest.raises(ValueError, match="array params/w differs from its checksum"):
        ckpt_lib.verify(changed, sums)
    # Two words swapped keep the plain sum; the position-weighted one catches it.
    swapped = np.asarray(tree["params"]["w"]).reshape(-1)[[1, 0, *range(2, 12)]].reshape(3, 4)
    moved = dict(tree, params=dict(tree["params"], w=jnp.asarray(swapped)))
    assert ckpt_lib.checksums(moved)["params/w"][0] == sums["params/w"][0]
    with pytest.raises(ValueError, match="params/w"):
        ckpt_lib.verify(moved, sums)
