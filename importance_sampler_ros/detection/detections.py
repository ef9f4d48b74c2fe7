"""Per-frame detections as plain numpy arrays: the core's one currency between stages.

Boxes are in image pixels, corners (x1, y1, x2, y2), x right, y down (msg/BoundingBox.msg).
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from importance_sampler_ros.detection.config import AGGREGATIONS


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
    `distances` is NaN when unknown (only synthetic ground truth knows it). `uncertainty` is
    (N, K): every scorer's value per detection, named by `uncertainty_names`; `importances` holds
    the column of `scorer`. `candidates` are the sub-threshold boxes (never published as
    detections), `situations` the frame's situation tags (ground truth only), `descriptor` the
    mean and standard deviation of the box head's features over the frame's proposals (empty for
    ground truth; msg/DetectionArray.msg frame_descriptor).
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
    scorer: str = ''
    uncertainty_names: tuple[str, ...] = ()
    uncertainty: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32))
    candidates: FrameDetections | None = None
    situations: tuple[str, ...] = ()
    descriptor: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))

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
        self.uncertainty_names = tuple(self.uncertainty_names)
        k = len(self.uncertainty_names)
        values = np.asarray(self.uncertainty, np.float32)
        self.uncertainty = (np.zeros((n, k), np.float32) if values.size == 0
                            else values.reshape(n, k))
        self.situations = tuple(self.situations)
        self.descriptor = np.asarray(self.descriptor, np.float32).reshape(-1)

    def __setstate__(self, state: dict) -> None:
        # frames pickled before the descriptor existed (closed-loop disk caches) have none
        state.setdefault('descriptor', np.zeros(0, np.float32))
        self.__dict__.update(state)

    def __len__(self) -> int:
        return len(self.boxes)

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
            uncertainty=self.uncertainty[keep],
        )

    def with_track_ids(self, track_ids: np.ndarray) -> FrameDetections:
        """A shallow copy with these per-detection track ids (uint32, one per detection); the
        other arrays are shared and not validated again (the tracker's per-frame output)."""
        copied = object.__new__(FrameDetections)
        copied.__dict__.update(self.__dict__)
        copied.track_ids = track_ids
        return copied

    def uncertainty_of(self, name: str) -> np.ndarray:
        """The column of scorer `name` (KeyError naming the available ones if absent)."""
        if name not in self.uncertainty_names:
            raise KeyError(f'no {name!r} scores here (have: {", ".join(self.uncertainty_names)})')
        return self.uncertainty[:, self.uncertainty_names.index(name)]


def _filled(values: np.ndarray, n: int, fill: float, dtype: type) -> np.ndarray:
    values = np.asarray(values, dtype)
    if values.size == 0 and n > 0:
        return np.full(n, fill, dtype)
    return values.reshape(n)


@dataclass(frozen=True)
class FrameScoring:
    """How the frame importance is made from the detections' importances: the detector node's
    aggregation, candidates_in_frame and frame_min_box_height parameters."""

    aggregation: str = 'sum'
    candidates_in_frame: bool = False
    # detections (and candidates) with a box shorter than this (px) do not count; 0 = all count
    min_box_height: float = 0.0

    @classmethod
    def of(cls, detector_values: Mapping[str, Any]) -> FrameScoring:
        """The scoring named by a detector configuration's values (DetectorConfig fields)."""
        return cls(str(detector_values['aggregation']),
                   bool(detector_values['candidates_in_frame']),
                   float(detector_values['frame_min_box_height']))

    def tall_enough(self, boxes: np.ndarray) -> np.ndarray:
        """Per box: whether it is tall enough (min_box_height) to count toward the frame."""
        return (boxes[:, 3] - boxes[:, 1]) >= self.min_box_height

    def counted(self, det: FrameDetections) -> np.ndarray:
        """The importances that make `det`'s frame importance."""
        parts = [det]
        if self.candidates_in_frame and det.candidates is not None:
            parts.append(det.candidates)
        if self.min_box_height > 0.0:
            return np.concatenate([p.importances[self.tall_enough(p.boxes)] for p in parts])
        return np.concatenate([p.importances for p in parts])


def frame_importance(det: FrameDetections, scoring: FrameScoring) -> float:
    """The frame importance of `det` under `scoring`."""
    return aggregate_importance(scoring.counted(det), scoring.aggregation)


def with_candidate_floor(det: FrameDetections, candidate_floor: float | None) -> FrameDetections:
    """`det` as a detector publishing candidates from `candidate_floor` (DetectorConfig's
    published_candidate_floor; None: none) hands it on: candidates scored below the floor
    dropped (det's own candidates reach at least as low)."""
    if det.candidates is None:
        return det
    kept = (None if candidate_floor is None
            else det.candidates.select(det.candidates.scores >= candidate_floor))
    return replace(det, candidates=kept)


def rescored(det: FrameDetections, scorer: str, scoring: FrameScoring) -> FrameDetections:
    """A copy of `det` whose importances are scorer `scorer`'s column of its uncertainty (and its
    candidates' likewise) and whose frame importance is made by `scoring`: what the detector
    would have published with that configuration, from the same forward pass."""
    candidates = det.candidates
    if candidates is not None:
        candidates = replace(candidates, importances=candidates.uncertainty_of(scorer).copy(),
                             scorer=scorer)
    out = replace(det, importances=det.uncertainty_of(scorer).copy(), scorer=scorer,
                  aggregation=scoring.aggregation, candidates=candidates)
    out.frame_importance = frame_importance(out, scoring)
    return out
