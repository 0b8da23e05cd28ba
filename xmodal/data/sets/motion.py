"""Humanoid motion-capture clips with text labels: the DeepMimic reference motions.

Source: the motion files of Peng et al. 2018, "DeepMimic: Example-Guided Deep Reinforcement
Learning of Physics-Based Character Skills", as shipped in the ``pybullet`` wheel under
``pybullet_data/data/motions``. The wheel is fetched once with
``pip download --no-deps pybullet==<version>`` into the TFDS download folder and read as a zip;
pybullet itself is never installed. pip reaches PyPI at prepare time only.

Frame layout (44 floats, angles as quaternions w, x, y, z or single revolute angles):
  0 dt | 1-3 root position | 4-7 root rotation | 8-11 chest | 12-15 neck | 16-19 right hip |
  20 right knee | 21-24 right ankle | 25-28 right shoulder | 29 right elbow | 30-33 left hip |
  34 left knee | 35-38 left ankle | 39-42 left shoulder | 43 left elbow
The clips are recorded at 16-60 fps; every clip is resampled to one rate (30 fps by default):
positions and revolute angles linearly, quaternions by slerp. Column 0 then holds 1/fps.
"""
from __future__ import annotations

import dataclasses
import glob
import json
import os
import subprocess
import sys
import zipfile
from typing import Iterator

import numpy as np
import tensorflow_datasets as tfds

from xmodal.core import datasets as sources
from xmodal.data.builder import Builder

PYBULLET_VERSION = "3.2.7"
MOTIONS = "pybullet_data/data/motions/"
FRAME_SIZE = 44
QUATERNION_STARTS = (4, 8, 12, 16, 21, 25, 30, 35, 39)
LINEAR_COLUMNS = (1, 2, 3, 20, 29, 34, 43)
# Clip (path under motions/ without .txt) -> label. Written from the clip names; two takes of
# one action share a label.
LABELS: dict[str, str] = {
    "humanoid3d_backflip": "backflip",
    "humanoid3d_cartwheel": "cartwheel",
    "humanoid3d_crawl": "crawl",
    "humanoid3d_dance_a": "dance, first routine",
    "humanoid3d_dance_b": "dance, second routine",
    "humanoid3d_getup_facedown": "get up from lying face down",
    "humanoid3d_getup_faceup": "get up from lying face up",
    "humanoid3d_jump": "jump",
    "humanoid3d_kick": "kick",
    "humanoid3d_punch": "punch",
    "humanoid3d_roll": "roll",
    "humanoid3d_run": "run",
    "humanoid3d_spin": "spin",
    "humanoid3d_spinkick": "spin kick",
    "humanoid3d_walk": "walk",
    "walker/0walk_forward": "walk",
    "walker/turn_left0": "walk turning left",
    "walker/turn_left1": "walk turning left",
    "walker/turn_right0": "walk turning right",
    "walker/turn_right1": "walk turning right",
}
# Second takes of actions whose first take is in train.
TEST_CLIPS = ("walker/0walk_forward", "walker/turn_left1", "walker/turn_right1")
# A quadruped (Laikago robot) clip with 20 floats per frame: not the humanoid body.
SKIPPED_CLIPS = {"laikago_walk": "Laikago quadruped, 20 floats per frame, not the humanoid"}

CARD = {
    "title": "DeepMimic humanoid motion clips (xmodal_motion)",
    "sources": f"pybullet {PYBULLET_VERSION} wheel from PyPI (pinned in motion.py), fetched at "
               "prepare time with `pip download --no-deps --only-binary=:all: "
               f"pybullet=={PYBULLET_VERSION}` into <data_dir>/downloads/pybullet; the motion "
               "files are read from the zip, pybullet is not installed.",
    "licence": "pybullet is zlib-licensed; the DeepMimic motions (Peng et al. 2018) are "
               "distributed with it and with DeepMimic (MIT); cite DeepMimic.",
    "splits": f"By clip: test = {', '.join(TEST_CLIPS)} (3 clips: second takes of 'walk', "
              "'walk turning left', 'walk turning right', whose other take is in train); "
              "train = the other 17 humanoid clips. With 20 clips the test set measures "
              "generalisation across recordings of a seen action only.",
    "languages": "English labels, written from the clip names.",
    "skipped": "; ".join(f"{k}: {v}" for k, v in SKIPPED_CLIPS.items()) + ". A motion file "
               "not in LABELS or SKIPPED_CLIPS, or with frames other than 44 floats, stops "
               "the build with its name.",
    "fields": {
        "clip": "file name under pybullet_data/data/motions without .txt.",
        "label": "text label, e.g. 'get up from lying face down'.",
        "frames": "float32 [T, 44] resampled frames (layout in motion.py); column 0 = 1/fps.",
        "fps": "frame rate after resampling.",
        "loop": "1 if the clip is a loop ('wrap' in the file), else 0.",
    },
}


@dataclasses.dataclass(frozen=True)
class Clip:
    name: str
    frames: np.ndarray  # float32 [T, 44] as recorded
    loop: bool


def download_wheel(directory: str) -> str:
    """Path of the pybullet wheel in ``directory``, fetched with pip if it is not there."""
    def found():
        return sorted(glob.glob(os.path.join(directory, f"pybullet-{PYBULLET_VERSION}-*.whl")))

    if not found():
        os.makedirs(directory, exist_ok=True)
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
                   f"pybullet=={PYBULLET_VERSION}", "-d", directory]
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode != 0 or not found():
            raise RuntimeError(
                f"could not download the pybullet wheel (it holds the motion clips): "
                f"{result.stderr.strip()[-500:]}\nrun by hand: {' '.join(command)}")
    return found()[0]


def read_clips(wheel: str) -> list[Clip]:
    """Humanoid clips of the wheel's motions folder, sorted by name."""
    clips = []
    with zipfile.ZipFile(wheel) as archive:
        for member in sorted(archive.namelist()):
            if not (member.startswith(MOTIONS) and member.endswith(".txt")):
                continue
            name = member[len(MOTIONS):-len(".txt")]
            if name in SKIPPED_CLIPS:
                continue
            if name not in LABELS:
                raise ValueError(f"{wheel}:{member} is a motion without a label; add it to "
                                 "LABELS or SKIPPED_CLIPS in motion.py")
            data = json.loads(archive.read(member))
            frames = np.asarray(data["Frames"], dtype=np.float32)
            if frames.ndim != 2 or frames.shape[1] != FRAME_SIZE or len(frames) < 2:
                raise ValueError(f"{wheel}:{member} has frames of shape {frames.shape}, "
                                 f"expected [T >= 2, {FRAME_SIZE}]")
            clips.append(Clip(name=name, frames=frames, loop=data.get("Loop") == "wrap"))
    return clips


def slerp(q0: np.ndarray, q1: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Spherical linear interpolation of unit quaternions [N, 4] (Shoemake 1985).

    slerp = sin((1-t)w)/sin(w) q0 + sin(tw)/sin(w) q1, cos(w) = <q0, q1>, after flipping q1
    to the hemisphere of q0 (q and -q are the same rotation); nearly equal quaternions are
    interpolated linearly and renormalised, where sin(w) -> 0.
    """
    q0 = q0 / np.linalg.norm(q0, axis=-1, keepdims=True)
    q1 = q1 / np.linalg.norm(q1, axis=-1, keepdims=True)
    dot = np.sum(q0 * q1, axis=-1, keepdims=True)
    q1 = np.where(dot < 0, -q1, q1)
    dot = np.abs(dot)
    t = t[:, None]
    omega = np.arccos(np.clip(dot, -1.0, 1.0))
    sin_omega = np.sin(omega)
    close = sin_omega < 1e-6
    safe = np.where(close, 1.0, sin_omega)
    w0 = np.where(close, 1.0 - t, np.sin((1.0 - t) * omega) / safe)
    w1 = np.where(close, t, np.sin(t * omega) / safe)
    out = w0 * q0 + w1 * q1
    return out / np.linalg.norm(out, axis=-1, keepdims=True)


def resample(frames: np.ndarray, fps: float) -> np.ndarray:
    """[T, 44] frames with per-frame durations in column 0 -> frames every 1/fps seconds.

    Frame i is at time sum(dt[:i]); the output covers [0, time of the last frame].
    """
    times = np.concatenate([[0.0], np.cumsum(frames[:-1, 0].astype(np.float64))])
    if np.any(np.diff(times) <= 0):
        raise ValueError("motion frames must have positive durations (column 0) except the "
                         f"last; got {frames[:-1, 0].tolist()}")
    # Durations are float32 (0.0333 for 1/30 s): allow 1 ms so the last frame is not lost.
    new_times = np.minimum(np.arange(0.0, times[-1] + 1e-3, 1.0 / fps), times[-1])
    upper = np.clip(np.searchsorted(times, new_times, side="right"), 1, len(times) - 1)
    lower = upper - 1
    t = (new_times - times[lower]) / (times[upper] - times[lower])
    out = np.empty((len(new_times), FRAME_SIZE), dtype=np.float64)
    out[:, 0] = 1.0 / fps
    for c in LINEAR_COLUMNS:
        out[:, c] = (1 - t) * frames[lower, c] + t * frames[upper, c]
    for s in QUATERNION_STARTS:
        out[:, s:s + 4] = slerp(frames[lower, s:s + 4].astype(np.float64),
                                frames[upper, s:s + 4].astype(np.float64), t)
    return out.astype(np.float32)


def split_of(clip: str) -> str:
    return "test" if clip in TEST_CLIPS else "train"


@dataclasses.dataclass
class MotionConfig(tfds.core.BuilderConfig):
    fps: int = 30


class Motion(Builder):
    """TFDS builder ``xmodal_motion``."""

    name = "xmodal_motion"
    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": f"DeepMimic clips from pybullet {PYBULLET_VERSION}."}
    BUILDER_CONFIGS = [
        MotionConfig(name="default", description="All 20 humanoid clips at 30 fps.", fps=30),
        MotionConfig(name="tiny", description="All 20 humanoid clips at 10 fps.", fps=10),
    ]

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self,
            description="DeepMimic humanoid motion clips (44 floats per frame) with labels.",
            features=tfds.features.FeaturesDict({
                "clip": tfds.features.Text(),
                "label": tfds.features.Text(),
                "frames": tfds.features.Tensor(shape=(None, FRAME_SIZE), dtype=np.float32),
                "fps": tfds.features.Scalar(dtype=np.int64),
                "loop": tfds.features.Scalar(dtype=np.int64),
            }),
            homepage="https://github.com/xbpeng/DeepMimic",
            license="zlib (pybullet); DeepMimic data MIT",
        )

    def _split_generators(self, dl_manager) -> dict[str, Iterator]:
        wheel = download_wheel(os.path.join(os.fspath(dl_manager.download_dir), "pybullet"))
        clips = read_clips(wheel)
        by_split: dict[str, list[Clip]] = {"train": [], "test": []}
        for clip in clips:
            by_split[split_of(clip.name)].append(clip)
        return {split: self._generate_examples(items) for split, items in by_split.items()}

    def _generate_examples(self, clips: list[Clip]):
        fps = self.builder_config.fps
        for clip in clips:
            yield clip.name, {"clip": clip.name, "label": LABELS[clip.name],
                              "frames": resample(clip.frames, fps), "fps": fps,
                              "loop": int(clip.loop)}


_HINT = ("the clips are read from the pybullet wheel, which prepare fetches with pip "
         "download (needs PyPI)")
for _name, _config in (("motion", "default"), ("motion/tiny", "tiny")):
    sources.register(_name, sources.DatasetEntry(
        Motion, _config, packages=(), modules=(), install_hint=_HINT))
