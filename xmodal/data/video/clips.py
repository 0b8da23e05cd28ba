"""The video example and the clip sampler of the input pipeline.

A video example is a record with ``video`` (T x H x W x 3 uint8 frames) and, optionally,
``masks`` (T x H x W instance ids, aligned with the frames), ``flow`` (T-1 x H x W x 2: frame t
to t+1) and text fields. A model sees a clip of ``length`` of its frames, chosen by a
``ClipSampler``:

- ``uniform``: ``length`` frames spread evenly over the whole video (the centre of each of
  ``length`` equal segments, as TSN samples): deterministic, covers the video;
- ``strided``: ``length`` frames ``stride`` apart, the window centred in the video:
  deterministic (evaluation);
- ``random``: ``length`` frames ``stride`` apart from a random start (training); ``start``
  is drawn by grain's per-record generator, so it is reproducible and resumes exactly.

A transform that samples clips defines ``map`` (the deterministic clip, for evaluation) and
``random_map`` (the training clip); the training loaders call ``random_map`` with grain's
per-record generator (``core/input.py``). Flow for a chosen frame t is field t (t to t+1);
the video's last frame has none and takes field T-2 (its motion into that frame).
"""
from __future__ import annotations

import dataclasses
from typing import Any, Mapping

import numpy as np

MODES = ("uniform", "strided", "random")


@dataclasses.dataclass(frozen=True)
class ClipSampler:
    length: int
    mode: str = "uniform"
    stride: int = 1

    def __post_init__(self):
        if self.mode not in MODES:
            raise ValueError(f"clip mode {self.mode!r} is not one of {', '.join(MODES)}")
        if self.length < 1 or self.stride < 1:
            raise ValueError(f"a clip needs length >= 1 and stride >= 1, got length "
                             f"{self.length}, stride {self.stride}")

    @property
    def span(self) -> int:
        """Frames a strided or random clip covers, first to last."""
        return (self.length - 1) * self.stride + 1

    def indices(self, num_frames: int, rng: np.random.Generator | None = None) -> np.ndarray:
        """The frames of one clip of a ``num_frames`` video, in time order."""
        need = self.length if self.mode == "uniform" else self.span
        if num_frames < need:
            what = (f"{self.length} frames" if self.mode == "uniform" else
                    f"{self.length} frames {self.stride} apart ({self.span} frames)")
            raise ValueError(f"a video of {num_frames} frames is shorter than the clip of "
                             f"{what}; lower the clip length or stride")
        if self.mode == "uniform":
            return ((np.arange(self.length) + 0.5) * num_frames / self.length).astype(np.int64)
        if self.mode == "strided" or rng is None:
            start = (num_frames - self.span) // 2
        else:
            start = int(rng.integers(0, num_frames - self.span + 1))
        return start + self.stride * np.arange(self.length)


def check_video(record: Mapping[str, Any], video_field: str = "video",
                masks_field: str = "", flow_field: str = "") -> np.ndarray:
    """The record's frames as T x H x W x 3 uint8, after checking that its masks and flow
    (when named) belong to the same frames; one line naming the field otherwise."""
    if video_field not in record:
        raise KeyError(f"video record has no field {video_field!r}; fields: "
                       f"{', '.join(sorted(record))}")
    video = np.asarray(record[video_field])
    if video.ndim != 4 or video.shape[-1] != 3 or video.dtype != np.uint8:
        raise ValueError(f"{video_field!r} must be T x H x W x 3 uint8 frames, got "
                         f"{video.dtype} {video.shape}")
    t, h, w = video.shape[:3]
    if masks_field:
        masks = np.asarray(record[masks_field])
        if masks.shape != (t, h, w):
            raise ValueError(f"{masks_field!r} of shape {masks.shape} does not match the "
                             f"{t} frames of {h} x {w} of {video_field!r}")
    if flow_field:
        flow = np.asarray(record[flow_field])
        if flow.shape != (t - 1, h, w, 2):
            raise ValueError(f"{flow_field!r} of shape {flow.shape} does not match the "
                             f"{t} frames of {h} x {w} of {video_field!r} (want "
                             f"{(t - 1, h, w, 2)})")
    return video


def flow_indices(frames: np.ndarray, num_frames: int) -> np.ndarray:
    """The flow field of each chosen frame: t -> t+1, the last frame's motion into it."""
    return np.minimum(frames, num_frames - 2)


def take_clip(record: Mapping[str, Any], frames: np.ndarray, video_field: str = "video",
              masks_field: str = "", flow_field: str = "") -> dict[str, np.ndarray]:
    """The chosen frames of the video and, when named, of its masks and flow."""
    video = np.asarray(record[video_field])
    out = {"video": video[frames]}
    if masks_field:
        out["masks"] = np.asarray(record[masks_field])[frames]
    if flow_field:
        out["flow"] = np.asarray(record[flow_field])[flow_indices(frames, len(video))]
    return out
