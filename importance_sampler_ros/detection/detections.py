"""Per-frame detections as plain numpy arrays: the core's one currency between stages.

Boxes are in image pixels, corners (x1, y1, x2, y2), x right, y down (msg/BoundingBox.msg).
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

AGGREGATIONS = ('sum', 'max', 'mean')


def aggregate_importance(importances: np.ndarray, aggregation: str = 'sum') -> float:
    """Frame importance from per-detection importances; 0.0 for a frame with no detections."""
    if aggregation not in AGGREGATIONS:
        raise ValueError(f'aggregation must be one of {AGGREGATIONS}, got {aggregation!r}')
    if len(importances) == 0:
        return 0.0
    return float(getattr(np, aggregation)(np.asarray(importances, dtype=np.float64)))


@dataclass
class FrameDetections:
    """Everything known about one frame's detections.

    All per-detection arrays have the same length N. `track_ids` is 0 for untracked detections;
    `distances` is NaN when unknown (only synthetic ground truth knows it).
    """

    stamp_ns: int
    frame_id: str = ''
    boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.float32))
    class_ids: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int32))
    class_names: list[str] = field(default_factory=list)
    scores: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    importances: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    track_ids: np.ndarray = field(default_factory=lambda: np.zeros(0, np.uint32))
    distances: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    frame_importance: float = 0.0
    aggregation: str = 'sum'
    model_name: str = ''
    inference_ms: float = 0.0

    def __post_init__(self) -> None:
        n = len(self.boxes)
        self.boxes = np.asarray(self.boxes, np.float32).reshape(n, 4)
        self.class_ids = np.asarray(self.class_ids, np.int32).reshape(n)
        self.scores = np.asarray(self.scores, np.float32).reshape(n)
        self.importances = _filled(self.importances, n, 0.0, np.float32)
        self.track_ids = _filled(self.track_ids, n, 0, np.uint32)
        self.distances = _filled(self.distances, n, np.nan, np.float32)
        if len(self.class_names) != n:
            raise ValueError(f'{len(self.class_names)} class names for {n} detections')

    def __len__(self) -> int:
        return len(self.boxes)

    def with_track_ids(self, track_ids: np.ndarray) -> FrameDetections:
        return replace(self, track_ids=np.asarray(track_ids, np.uint32))

    def select(self, keep: np.ndarray) -> FrameDetections:
        """The detections at boolean mask or index array `keep`, frame fields unchanged."""
        return replace(
            self,
            boxes=self.boxes[keep],
            class_ids=self.class_ids[keep],
            class_names=[self.class_names[i] for i in np.arange(len(self))[keep]],
            scores=self.scores[keep],
            importances=self.importances[keep],
            track_ids=self.track_ids[keep],
            distances=self.distances[keep],
        )


def _filled(values: np.ndarray, n: int, fill: float, dtype: type) -> np.ndarray:
    values = np.asarray(values, dtype)
    if values.size == 0 and n > 0:
        return np.full(n, fill, dtype)
    return values.reshape(n)
