"""SORT multi-object tracker: a filterpy Kalman filter per track, Hungarian assignment on IoU.

Each track owns a `filterpy.kalman.KalmanFilter` over the SORT state
(cx, cy, area, aspect, d cx, d cy, d area): constant velocity for centre and area, constant
aspect ratio, measured as (cx, cy, area, aspect). The filters hold the model (F, H, Q, R, shared
by all tracks and never written to) and the state, but the tracker advances all of them in one
batched numpy step instead of calling each filter's `predict()` / `update()`: the arithmetic is
filterpy's own (same equations, Joseph-form covariance update; test_tracking checks it against
`KalmanFilter.predict/update`), without the per-filter Python overhead that dominates the
reference SORT. The filters' `x` and `P` are views into the tracker's stacked state, so they
always show the current state; do not call their methods yourself.

Ids and confirmation (differences to the reference SORT, on purpose):
- Ids come from a counter owned by each tracker (1, 2, 3, ... in creation order), never global.
- `hits` counts every detection of the track, the first included. A track is confirmed once
  `hits >= min_hits` and stays confirmed (SORT forgets confirmation after every missed frame,
  which hides a track for `min_hits` frames after each dropout).
- Per-detection track ids are the id of the confirmed track the detection belongs to after this
  frame, or 0 when that track is still tentative (or the detection was invalid). The detection
  that confirms a track already carries its id. `assigned_ids` gives the (possibly tentative)
  track of every valid detection, for bookkeeping such as relabel histories.
- Confirmed tracks are matched first; tentative tracks get the detections left over.
- The association IoU is taken on boxes padded by `association_padding_px` on every side: a
  pixel of noise or camera pitch otherwise drops the IoU of a 4 px tall far object below any
  gate, and its track breaks up.
- Invalid detections (non-finite or empty boxes) are ignored and reported in `ignored`.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field

import numpy as np
from filterpy.kalman import KalmanFilter
from scipy.optimize import linear_sum_assignment

from importance_sampler_ros.detection.detections import FrameDetections
from importance_sampler_ros.tracking.config import TrackerConfig

STATE_DIM = 7
MEASUREMENT_DIM = 4

def boxes_to_measurements(boxes: np.ndarray) -> np.ndarray:
    """(N, 4) boxes x1, y1, x2, y2 -> (N, 4) measurements cx, cy, area, aspect (w / h)."""
    boxes = np.asarray(boxes, np.float64)
    w = boxes[:, 2] - boxes[:, 0]
    h = boxes[:, 3] - boxes[:, 1]
    return np.stack([boxes[:, 0] + w / 2, boxes[:, 1] + h / 2, w * h, w / h], axis=1)


def states_to_boxes(states: np.ndarray) -> np.ndarray:
    """(N, >=4) states starting cx, cy, area, aspect -> (N, 4) boxes; NaN where area*aspect <= 0."""
    cx, cy, area, aspect = (states[:, i].reshape(-1) for i in range(4))
    with np.errstate(invalid='ignore', divide='ignore'):
        w = np.sqrt(area * aspect)
        h = area / w
    boxes = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)
    boxes[~(w > 0)] = np.nan
    return boxes


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(N, M) intersection over union of boxes a (N, 4) and b (M, 4), all pairs."""
    a = a[:, None, :]
    b = b[None, :, :]
    w = np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0])
    h = np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1])
    inter = np.maximum(w, 0.0) * np.maximum(h, 0.0)
    area_a = (a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1])
    area_b = (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
    return inter / (area_a + area_b - inter)


def valid_boxes(boxes: np.ndarray) -> np.ndarray:
    """Boolean mask of boxes that are finite with x1 < x2 and y1 < y2."""
    boxes = np.asarray(boxes)
    with np.errstate(invalid='ignore'):
        return (
            np.isfinite(boxes).all(axis=1)
            & (boxes[:, 2] > boxes[:, 0])
            & (boxes[:, 3] > boxes[:, 1])
        )


def associate(
    det_boxes: np.ndarray, track_boxes: np.ndarray, iou_threshold: float
) -> tuple[np.ndarray, np.ndarray]:
    """Matched (detection, track) index pairs maximising the summed IoU among pairs >= threshold."""
    if len(det_boxes) == 0 or len(track_boxes) == 0:
        empty = np.zeros(0, np.intp)
        return empty, empty
    return match_iou(iou_matrix(det_boxes, track_boxes), iou_threshold)


def match_iou(iou: np.ndarray, iou_threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """(row, column) pairs of an IoU matrix maximising the summed IoU among pairs >= threshold.

    When every row and every column has at most one candidate the pairs are taken as they are;
    otherwise the Hungarian algorithm decides.
    """
    if iou.size == 0:
        empty = np.zeros(0, np.intp)
        return empty, empty
    allowed = (iou >= iou_threshold) & (iou > 0.0)
    if allowed.sum(axis=0).max() <= 1 and allowed.sum(axis=1).max() <= 1:
        return np.nonzero(allowed)
    rows, cols = linear_sum_assignment(np.where(allowed, iou, 0.0), maximize=True)
    keep = allowed[rows, cols]
    return rows[keep], cols[keep]


def sort_box_filter() -> KalmanFilter:
    """A KalmanFilter with the SORT constant-velocity box model and its tuned noise levels."""
    kf = KalmanFilter(dim_x=STATE_DIM, dim_z=MEASUREMENT_DIM)
    kf.F = np.eye(STATE_DIM)
    kf.F[0, 4] = kf.F[1, 5] = kf.F[2, 6] = 1.0
    kf.H = np.eye(MEASUREMENT_DIM, STATE_DIM)
    kf.R[2:, 2:] *= 10.0
    kf.P[4:, 4:] *= 1000.0  # velocities are not observed at first: large uncertainty
    kf.P *= 10.0
    kf.Q[-1, -1] *= 0.01
    kf.Q[4:, 4:] *= 0.01
    return kf


@dataclass
class ConfirmedTracks:
    """The confirmed tracks after one frame, one row each, ordered by track id.

    `boxes` are the matched detection's box for tracks updated this frame, the Kalman prediction
    otherwise (time_since_update > 0). Class and score are those of the latest detection.
    """

    track_ids: np.ndarray = field(default_factory=lambda: np.zeros(0, np.uint32))
    boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.float32))
    class_ids: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int32))
    class_names: list[str] = field(default_factory=list)
    scores: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    ages: np.ndarray = field(default_factory=lambda: np.zeros(0, np.uint32))
    hits: np.ndarray = field(default_factory=lambda: np.zeros(0, np.uint32))
    time_since_update: np.ndarray = field(default_factory=lambda: np.zeros(0, np.uint32))

    def __len__(self) -> int:
        return len(self.track_ids)


@dataclass
class TrackingStep:
    """What one `SortTracker.update` produced.

    Per detection of the frame (same order): `track_ids` (confirmed track id or 0),
    `assigned_ids` (the track, tentative or confirmed, a valid detection updated or started; 0
    for ignored detections) and `ignored` (invalid boxes). `ended_track_ids`: tracks removed
    this frame (too old, or a degenerate prediction).
    """

    track_ids: np.ndarray
    assigned_ids: np.ndarray
    ignored: np.ndarray
    tracks: ConfirmedTracks
    ended_track_ids: np.ndarray


class SortTracker:
    """SORT over boxes; call `update` once per frame, also for frames without detections."""

    def __init__(self, config: TrackerConfig | None = None) -> None:
        self.config = config or TrackerConfig()
        self._model = sort_box_filter()
        self._next_id = 1
        self.frame_count = 0
        # Row i of every array below (and self._filters[i]) is the i-th live track.
        self._filters: list[KalmanFilter] = []
        self._x = np.zeros((0, STATE_DIM, 1))
        self._P = np.zeros((0, STATE_DIM, STATE_DIM))
        self._ids = np.zeros(0, np.uint32)
        self._boxes = np.zeros((0, 4))
        self._class_ids = np.zeros(0, np.int32)
        self._class_names: list[str] = []
        self._scores = np.zeros(0, np.float32)
        self._ages = np.zeros(0, np.uint32)
        self._hits = np.zeros(0, np.uint32)
        self._since_update = np.zeros(0, np.uint32)

    def __len__(self) -> int:
        """Number of live tracks, tentative ones included."""
        return len(self._ids)

    def reset(self) -> np.ndarray:
        """End every track (ids keep counting up); returns the ids of the ended tracks."""
        ended = self._ids.copy()
        self._keep(np.zeros(len(ended), bool))
        return ended

    def filter_of(self, track_id: int) -> KalmanFilter:
        """The Kalman filter of a live track (its x and P are the current state)."""
        rows = np.flatnonzero(self._ids == track_id)
        if len(rows) == 0:
            raise KeyError(f'no live track {track_id}')
        return self._filters[int(rows[0])]

    def update(
        self,
        frame: FrameDetections | np.ndarray,
        class_ids: np.ndarray | None = None,
        scores: np.ndarray | None = None,
        class_names: list[str] | None = None,
    ) -> TrackingStep:
        """Advance every track one frame and match the frame's detections.

        `frame` is a FrameDetections, or an (N, 4) array of boxes x1, y1, x2, y2 in pixels with
        optional per-detection `class_ids`, `scores` and `class_names`.
        """
        boxes, class_ids, scores, class_names = _detection_arrays(
            frame, class_ids, scores, class_names
        )
        self.frame_count += 1
        n_dets = len(boxes)
        ignored = ~valid_boxes(boxes)
        valid = np.flatnonzero(~ignored)

        predicted = self._predict()
        alive = np.isfinite(predicted).all(axis=1)
        ended = [self._ids[~alive]]
        if not alive.all():
            self._keep(alive)
            predicted = predicted[alive]
        self._boxes = predicted

        matched_dets, track_rows = self._associate(boxes, valid, predicted)
        self._correct(track_rows, boxes[matched_dets])
        self._boxes[track_rows] = boxes[matched_dets]
        self._class_ids[track_rows] = class_ids[matched_dets]
        self._scores[track_rows] = scores[matched_dets]
        for det, row in zip(matched_dets.tolist(), track_rows.tolist(), strict=True):
            self._class_names[row] = class_names[det]
        self._hits[track_rows] += 1
        self._since_update[track_rows] = 0

        stale = self._since_update > self.config.max_age
        if stale.any():
            ended.append(self._ids[stale])
            fresh = ~stale
            # row numbers of the matched tracks after dropping the stale ones
            track_rows = (np.cumsum(fresh) - 1)[track_rows]
            self._keep(fresh)

        rows = np.full(n_dets, -1, np.intp)  # each detection's track row, -1 when ignored
        rows[matched_dets] = track_rows
        unmatched = np.ones(n_dets, bool)
        unmatched[matched_dets] = False
        unmatched &= ~ignored
        new_dets = np.flatnonzero(unmatched)
        if len(new_dets):
            rows[new_dets] = len(self._ids) + np.arange(len(new_dets))
            self._start(new_dets, boxes, class_ids, scores, class_names)

        tracked = np.flatnonzero(rows >= 0)
        assigned = np.zeros(n_dets, np.uint32)
        assigned[tracked] = self._ids[rows[tracked]]
        track_ids = np.zeros(n_dets, np.uint32)
        confirmed = tracked[self._hits[rows[tracked]] >= self.config.min_hits]
        track_ids[confirmed] = assigned[confirmed]
        return TrackingStep(
            track_ids=track_ids,
            assigned_ids=assigned,
            ignored=ignored,
            tracks=self._confirmed(),
            ended_track_ids=np.concatenate(ended).astype(np.uint32),
        )

    def _associate(self, boxes: np.ndarray, valid: np.ndarray, predicted: np.ndarray
                   ) -> tuple[np.ndarray, np.ndarray]:
        """(detection, track row) pairs: confirmed tracks first, then tentative tracks take
        what is left (a tentative track, often a false positive, never outbids a confirmed one).
        """
        if len(valid) == 0 or len(predicted) == 0:
            empty = np.zeros(0, np.intp)
            return empty, empty
        pad = np.array([-1.0, -1.0, 1.0, 1.0]) * self.config.association_padding_px
        iou = iou_matrix(boxes[valid] + pad, predicted + pad)
        confirmed = self._hits >= self.config.min_hits
        if confirmed.all() or not confirmed.any():
            det_rows, track_rows = match_iou(iou, self.config.iou_threshold)
            return valid[det_rows], track_rows
        first, second = np.flatnonzero(confirmed), np.flatnonzero(~confirmed)
        det_rows, track_rows = match_iou(iou[:, first], self.config.iou_threshold)
        left = np.delete(np.arange(len(valid)), det_rows)
        left_rows, second_rows = match_iou(iou[left][:, second], self.config.iou_threshold)
        return (valid[np.concatenate([det_rows, left[left_rows]])],
                np.concatenate([first[track_rows], second[second_rows]]))

    def _predict(self) -> np.ndarray:
        """KalmanFilter.predict for every track at once; returns the predicted boxes."""
        x, cov = self._x, self._P
        transition, process_noise = self._model.F, self._model.Q
        if len(x):
            # SORT: an area about to shrink below zero stops shrinking.
            x[(x[:, 6, 0] + x[:, 2, 0]) <= 0, 6, 0] = 0.0
            x[:] = transition @ x
            cov[:] = transition @ cov @ transition.T + process_noise
        self._ages += 1
        self._since_update += 1
        return states_to_boxes(x)

    def _correct(self, rows: np.ndarray, boxes: np.ndarray) -> None:
        """KalmanFilter.update (Joseph form, H selecting the first four states) for these rows.

        With H = [I 0]: P H' is the first four columns of P and H P H' its top-left block.
        """
        if len(rows) == 0:
            return
        meas_noise = self._model.R
        x = self._x[rows]
        cov = self._P[rows]
        residual = boxes_to_measurements(boxes)[:, :, None] - x[:, :MEASUREMENT_DIM]
        cov_ht = cov[:, :, :MEASUREMENT_DIM]
        innovation_cov = cov_ht[:, :MEASUREMENT_DIM] + meas_noise
        gain = cov_ht @ np.linalg.inv(innovation_cov)
        i_kh = np.broadcast_to(np.eye(STATE_DIM), cov.shape).copy()
        i_kh[:, :, :MEASUREMENT_DIM] -= gain
        gain_t = gain.transpose(0, 2, 1)
        self._x[rows] = x + gain @ residual
        self._P[rows] = i_kh @ cov @ i_kh.transpose(0, 2, 1) + gain @ meas_noise @ gain_t

    def _start(
        self,
        dets: np.ndarray,
        boxes: np.ndarray,
        class_ids: np.ndarray,
        scores: np.ndarray,
        class_names: list[str],
    ) -> None:
        """New tentative tracks for detections `dets`, appended as the last rows."""
        n = len(dets)
        ids = np.arange(self._next_id, self._next_id + n, dtype=np.uint32)
        self._next_id += n
        x = np.zeros((n, STATE_DIM, 1))
        x[:, :MEASUREMENT_DIM, 0] = boxes_to_measurements(boxes[dets])
        model = self._model
        # shallow copies: the model matrices (F, H, Q, R) are shared and never written to
        self._filters.extend(copy.copy(model) for _ in range(n))
        self._x = np.concatenate([self._x, x])
        self._P = np.concatenate([self._P, np.broadcast_to(model.P, (n, STATE_DIM, STATE_DIM))])
        self._ids = np.concatenate([self._ids, ids])
        self._boxes = np.concatenate([self._boxes, boxes[dets]])
        self._class_ids = np.concatenate([self._class_ids, class_ids[dets]])
        self._class_names.extend(class_names[d] for d in dets.tolist())
        self._scores = np.concatenate([self._scores, scores[dets]])
        self._ages = np.concatenate([self._ages, np.zeros(n, np.uint32)])
        self._hits = np.concatenate([self._hits, np.ones(n, np.uint32)])
        self._since_update = np.concatenate([self._since_update, np.zeros(n, np.uint32)])
        self._link_filters()

    def _keep(self, keep: np.ndarray) -> None:
        """Drop the tracks whose `keep` entry is False."""
        rows = np.flatnonzero(keep)
        self._filters = [self._filters[i] for i in rows.tolist()]
        self._class_names = [self._class_names[i] for i in rows.tolist()]
        self._x = self._x[rows]
        self._P = self._P[rows]
        self._ids = self._ids[rows]
        self._boxes = self._boxes[rows]
        self._class_ids = self._class_ids[rows]
        self._scores = self._scores[rows]
        self._ages = self._ages[rows]
        self._hits = self._hits[rows]
        self._since_update = self._since_update[rows]
        self._link_filters()

    def _link_filters(self) -> None:
        """Point every filter's x and P at its rows of the stacked state (after reallocation)."""
        for kf, x, cov in zip(self._filters, self._x, self._P, strict=True):
            kf.x = x
            kf.P = cov

    def _confirmed(self) -> ConfirmedTracks:
        rows = np.flatnonzero(self._hits >= self.config.min_hits)
        names = self._class_names
        return ConfirmedTracks(
            track_ids=self._ids[rows],
            boxes=self._boxes[rows].astype(np.float32),
            class_ids=self._class_ids[rows],
            class_names=[names[i] for i in rows.tolist()],
            scores=self._scores[rows],
            ages=self._ages[rows],
            hits=self._hits[rows],
            time_since_update=self._since_update[rows],
        )


def _detection_arrays(
    frame: FrameDetections | np.ndarray,
    class_ids: np.ndarray | None,
    scores: np.ndarray | None,
    class_names: list[str] | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    if isinstance(frame, FrameDetections):
        return (
            frame.boxes.astype(np.float64),
            frame.class_ids,
            frame.scores,
            frame.class_names,
        )
    boxes = np.asarray(frame, np.float64)
    if boxes.ndim != 2 or boxes.shape[1] < 4:
        if boxes.size == 0:
            boxes = boxes.reshape(0, 4)
        else:
            raise ValueError(f'boxes must have shape (N, 4), got {boxes.shape}')
    boxes = boxes[:, :4]
    n = len(boxes)
    class_ids = np.zeros(n, np.int32) if class_ids is None else np.asarray(class_ids, np.int32)
    scores = np.ones(n, np.float32) if scores is None else np.asarray(scores, np.float32)
    class_names = [''] * n if class_names is None else list(class_names)
    if not len(class_ids) == len(scores) == len(class_names) == n:
        raise ValueError(f'{n} boxes but {len(class_ids)} class ids, {len(scores)} scores, '
                         f'{len(class_names)} class names')
    return boxes, class_ids, scores, class_names
