import os
import zipfile

import numpy as np
import pytest

from xmodal.core import datasets as sources
from xmodal.data.sets import motion as mo

NAME = "motion/tiny"


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("data"))
    try:
        mo.download_wheel(os.path.join(path, "downloads", "pybullet"))
    except RuntimeError as e:  # no PyPI: the message holds the pip download command
        pytest.skip(f"needs the pybullet wheel from PyPI: {e}")
    return path


@pytest.fixture(scope="module")
def records(data_dir):
    return {split: [sources.data_source(NAME, split, data_dir)[i]
                    for i in range(sources.num_examples(NAME, split, data_dir))]
            for split in ("train", "test")}


def test_splits_by_clip(records):
    clips = {split: [r["clip"].decode() for r in rs] for split, rs in records.items()}
    assert sorted(clips["test"]) == ["walker/0walk_forward", "walker/turn_left1",
                                     "walker/turn_right1"]
    assert len(clips["train"]) == 17 and not set(clips["train"]) & set(clips["test"])
    # each test clip is a second take of an action trained on
    train_labels = {r["label"] for r in records["train"]}
    assert all(r["label"] in train_labels for r in records["test"])


def test_frames_are_resampled_humanoid_poses(records):
    for r in records["train"] + records["test"]:
        frames = r["frames"]
        assert frames.dtype == np.float32 and frames.shape[1] == 44 and r["fps"] == 10
        np.testing.assert_allclose(frames[:, 0], 0.1, rtol=1e-6)
        for start in mo.QUATERNION_STARTS:
            np.testing.assert_allclose(np.linalg.norm(frames[:, start:start + 4], axis=1),
                                       1.0, atol=1e-5)
        assert frames[:, 1:].std(axis=0).max() > 0.01, r["clip"]  # the body moves
        assert r["label"].decode()


def test_clip_durations_survive_resampling(data_dir, records):
    wheel = mo.download_wheel(os.path.join(data_dir, "downloads", "pybullet"))
    with zipfile.ZipFile(wheel) as archive:
        assert "pybullet_data/data/motions/laikago_walk.txt" in archive.namelist()
    recorded = {c.name: c.frames for c in mo.read_clips(wheel)}
    assert len(recorded) == 20 and "laikago_walk" not in recorded
    for r in records["train"] + records["test"]:
        duration = recorded[r["clip"].decode()][:-1, 0].sum()
        assert len(r["frames"]) == int(np.floor(duration * 10 + 1e-2)) + 1


def test_slerp_halfway_between_rotations_about_z():
    identity = np.array([[1.0, 0.0, 0.0, 0.0]])
    quarter_turn = np.array([[np.cos(np.pi / 4), 0.0, 0.0, np.sin(np.pi / 4)]])
    half = mo.slerp(identity, quarter_turn, np.array([0.5]))
    np.testing.assert_allclose(half, [[np.cos(np.pi / 8), 0, 0, np.sin(np.pi / 8)]], atol=1e-12)
    # -q is the same rotation: the shorter arc is taken
    np.testing.assert_allclose(mo.slerp(identity, -quarter_turn, np.array([0.5])), half,
                               atol=1e-12)


def test_resample_60_to_30_fps_keeps_every_other_frame():
    rng = np.random.default_rng(0)
    frames = rng.normal(size=(9, 44))
    for start in mo.QUATERNION_STARTS:
        frames[:, start:start + 4] /= np.linalg.norm(frames[:, start:start + 4], axis=1,
                                                     keepdims=True)
    frames[:, 0] = 1 / 60
    out = mo.resample(frames.astype(np.float32), 30)
    assert out.shape == (5, 44)
    expected = frames[::2].copy()
    for start in mo.QUATERNION_STARTS:  # q and -q are equal; compare up to sign
        sign = np.sign(np.sum(expected[:, start:start + 4] * out[:, start:start + 4], axis=1))
        expected[:, start:start + 4] *= sign[:, None]
    expected[:, 0] = 1 / 30
    np.testing.assert_allclose(out, expected, atol=1e-5)


def test_resample_rejects_zero_durations():
    frames = np.zeros((3, 44), np.float32)
    with pytest.raises(ValueError, match="positive durations"):
        mo.resample(frames, 30)


def test_failed_download_gives_the_pip_command(monkeypatch, tmp_path):
    monkeypatch.setattr(mo, "PYBULLET_VERSION", "0.0.0.999")  # no such release
    with pytest.raises(RuntimeError, match=r"run by hand: .* -m pip download --no-deps "
                                           r"--only-binary=:all: pybullet==0\.0\.0\.999"):
        mo.download_wheel(str(tmp_path / "pybullet"))
