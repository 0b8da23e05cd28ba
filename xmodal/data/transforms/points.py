"""Points with a class label (2-D toys): record → {"x": float32 [D], "label": int32}."""
from __future__ import annotations

from typing import Any, Mapping

import grain
import numpy as np

from xmodal.core.registry import TRANSFORMS


class PointsTransform(grain.transforms.Map):
    label_field = "label"

    def __init__(self, point_field: str = "point", label_field: str = "label"):
        self.point_field = point_field
        self.label_field = label_field

    def __repr__(self) -> str:
        return f"PointsTransform(point_field={self.point_field!r}, label_field={self.label_field!r})"

    def map(self, record: Mapping[str, Any]) -> dict[str, np.ndarray]:
        for field in (self.point_field, self.label_field):
            if field not in record:
                raise KeyError(f"PointsTransform: record has no field {field!r}; fields: "
                               f"{', '.join(sorted(record))}")
        return {"x": np.asarray(record[self.point_field], np.float32),
                "label": np.asarray(record[self.label_field], np.int32)}


@TRANSFORMS.register("points")
def points(point_field: str = "point", label_field: str = "label") -> PointsTransform:
    return PointsTransform(point_field, label_field)
