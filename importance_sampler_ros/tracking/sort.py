"""SORT multi-object tracker: a filterpy Kalman filter per track, Hungarian assignment on IoU.

Each track is a `filterpy.kalman.KalmanFilter` over the SORT state
(cx, cy, area, aspect, d cx, d cy, d area): constant velocity for centre and area, constant
aspect ratio, measured as (cx, cy, area, aspect). One filter holds the model (F, H, Q, R, shared
by all tracks and never written to); the tracker keeps every track's state stacked and advances
all of them in one batched numpy step instead of calling a filter's `predict()` / `update()`
per track: the equations are filterpy's (test_tracking checks them against
`KalmanFilter.predict/update`), without the per-filter Python overhead that
dominates the reference SORT. `filter_of(track_id)` gives a snapshot of a track's filter.

The model decouples: F only adds each velocity to its own position (cx, cy, area), H observes
the four positions, and the initial P, Q and R are diagonal. Every covariance the filter reaches
is therefore zero outside the pairs (position i, velocity i) and the aspect's own variance, and
the innovation covariance is diagonal. The tracker keeps only those 10 entries per track
(POSITION_VARIANCE, CROSS_COVARIANCE, VELOCITY_VARIANCE) and runs predict and update as scalar
arithmetic on them: the same numbers as the 7 x 7 matrices, without a matrix product or inverse
(test_tracking holds the model to this structure).

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
- Duplicates: a detection of another class on (nearly) the same box as a better-scored one
  joins its track and is published untracked (`_split_duplicates`).
- Far-field survival (what motion-only trackers such as ByteTrack and OC-SORT do, no
  appearance): a second round matches the detector's sub-threshold candidates to the confirmed
  tracks left unmatched (kept alive, never published); a confirmed track whose box is shorter
  than `far_height_px` coasts for `far_max_age` frames instead of `max_age`; the predicted box
  of a lost track is padded more for every frame it is lost, so that the object is found again
  where the prediction drifted from it (an approaching object grows faster than the constant
  area velocity learnt far away).
- Fast movers near by (C-BIoU's buffered IoU): an object passing close to the camera moves more
  than its own width per frame, so its boxes of two frames do not overlap and a new track starts
  every frame. Detections and tracks at least `buffer_min_height_px` tall that both IoU rounds
  left unmatched get one more round on boxes grown by `buffer_ratio` times their width and
  height; its matches report the plain padded IoU, which the relabeler's purity rules read.
- Bounded cost: at most `max_detections` detections (and candidates) per frame, the best
  scored, and `max_tracks` live tracks; what is left is counted in `dropped`. Large gated
  assignments run per connected component of the gated pairs.
- Invalid detections (non-finite or empty boxes, or a coordinate beyond MAX_COORDINATE_PX) are
  ignored and reported in `ignored`.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field

import numpy as np
from filterpy.kalman import KalmanFilter
from scipy.optimize import linear_sum_assignment
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from importance_sampler_ros.detection.detections import FrameDetections
from importance_sampler_ros.tracking.config import TrackerConfig

STATE_DIM = 7
MEASUREMENT_DIM = 4

# The covariance entries a track keeps (see the module docstring), as columns of one array:
# variances of cx, cy, area, aspect; covariances of (cx, d cx), (cy, d cy), (area, d area);
# variances of d cx, d cy, d area.
POSITION_VARIANCE = slice(0, 4)
CROSS_COVARIANCE = slice(4, 7)
VELOCITY_VARIANCE = slice(7, 10)
COVARIANCE_ENTRIES = 10
_MOVING = np.arange(3)  # cx, cy, area: the states with a velocity (state i + 4)

# Above this many (detection, track) pairs the assignment runs per connected component of the
# gated pairs (a frame of thousands of boxes costs what its clusters cost, not O(n^3)).
SPARSE_ASSIGNMENT_PAIRS = 4096
# Boxes with a coordinate beyond this are invalid: no camera is that large, and the Kalman
# arithmetic on such values overflows the float32 of the published boxes.
MAX_COORDINATE_PX = 1e6


def boxes_to_measurements(boxes: np.ndarray) -> np.ndarray:
    """(N, 4) boxes x1, y1, x2, y2 -> (N, 4) measurements cx, cy, area, aspect (w / h)."""
    boxes = np.asarray(boxes, np.float64)
    size = boxes[:, 2:] - boxes[:, :2]
    out = np.empty((len(boxes), 4))
    out[:, :2] = boxes[:, :2] + size / 2
    out[:, 2] = size[:, 0] * size[:, 1]
    out[:, 3] = size[:, 0] / size[:, 1]
    return out


def states_to_boxes(states: np.ndarray) -> np.ndarray:
    """(N, >=4) states starting cx, cy, area, aspect -> (N, 4) boxes; NaN where area*aspect <= 0."""
    states = states.reshape(len(states), states.shape[1])
    area = states[:, 2]
    width_sq = area * states[:, 3]
    if not (width_sq > 0).all():  # NaN boxes, without warnings and without writing into states
        degenerate = ~(width_sq > 0)
        area = area.copy()
        width_sq[degenerate] = area[degenerate] = np.nan
    out = np.empty((len(states), 4))
    half = out[:, 2:]
    np.sqrt(width_sq, out=half[:, 0])
    np.divide(area, half[:, 0], out=half[:, 1])
    half *= 0.5
    np.subtract(states[:, :2], half, out=out[:, :2])
    half += states[:, :2]
    return out


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


def _pair_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(N,) IoU of the box pairs a[i], b[i]."""
    w = np.minimum(a[:, 2], b[:, 2]) - np.maximum(a[:, 0], b[:, 0])
    h = np.minimum(a[:, 3], b[:, 3]) - np.maximum(a[:, 1], b[:, 1])
    inter = np.maximum(w, 0.0) * np.maximum(h, 0.0)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    return inter / (area_a + area_b - inter)


def padded_iou_matrix(a: np.ndarray, b: np.ndarray, pad: np.ndarray) -> np.ndarray:
    """(N, M) IoU of boxes a (N, 4) and b (M, 4) after padding both boxes of pair (i, j) by
    pad[j] pixels on every side: the same box pair scores higher the more it is padded, so a
    larger pad is a wider gate around b."""
    grow = 2.0 * np.asarray(pad, np.float64)
    x1a, y1a, x2a, y2a = a.T
    x1b, y1b, x2b, y2b = b.T
    w = np.minimum.outer(x2a, x2b)
    w -= np.maximum.outer(x1a, x1b)
    w += grow
    h = np.minimum.outer(y2a, y2b)
    h -= np.maximum.outer(y1a, y1b)
    h += grow
    inter = np.maximum(w, 0.0, out=w)
    inter *= np.maximum(h, 0.0, out=h)
    union = np.add.outer(x2a - x1a, grow)
    union *= np.add.outer(y2a - y1a, grow)
    union += (x2b - x1b + grow) * (y2b - y1b + grow)
    union -= inter
    return inter / union


def buffered_iou_matrix(a: np.ndarray, b: np.ndarray, ratio: float) -> np.ndarray:
    """(N, M) IoU of boxes a and b each grown by `ratio` times its own width and height on
    every side (the buffered IoU of C-BIoU): boxes of an object that moved up to about 2 ratio
    widths still overlap."""
    def grown(boxes: np.ndarray) -> np.ndarray:
        size = boxes[:, 2:] - boxes[:, :2]
        size *= ratio
        out = np.empty_like(boxes)
        np.subtract(boxes[:, :2], size, out=out[:, :2])
        np.add(boxes[:, 2:], size, out=out[:, 2:])
        return out

    return iou_matrix(grown(np.asarray(a, np.float64)), grown(np.asarray(b, np.float64)))


def valid_boxes(boxes: np.ndarray) -> np.ndarray:
    """Boolean mask of boxes with x1 < x2 and y1 < y2, every coordinate within
    +-MAX_COORDINATE_PX (which also rules out NaN and infinities)."""
    boxes = np.asarray(boxes)
    # comparisons with NaN are False and raise no warning
    return ((np.abs(boxes) <= MAX_COORDINATE_PX).all(axis=1) & (boxes[:, 2] > boxes[:, 0])
            & (boxes[:, 3] > boxes[:, 1]))


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
    otherwise the Hungarian algorithm decides, on the whole matrix while it is small and per
    connected component of the allowed pairs beyond SPARSE_ASSIGNMENT_PAIRS entries (the same
    optimum: pairs of different components never compete).
    """
    if iou.size == 0:
        empty = np.zeros(0, np.intp)
        return empty, empty
    return _match_allowed(iou, _gate(iou, iou_threshold))


def _match_allowed(iou: np.ndarray, allowed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """match_iou on pairs already gated (`allowed`): no need to compare the IoUs again."""
    rows, cols = allowed.nonzero()
    if _one_to_one(rows, cols):
        return rows, cols
    return _assign(iou, allowed)


def _assign(iou: np.ndarray, allowed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The Hungarian part of match_iou, for gated pairs that compete."""
    if iou.size <= SPARSE_ASSIGNMENT_PAIRS:
        return _hungarian(iou, allowed)
    return _hungarian_by_component(iou, allowed)


def _gate(iou: np.ndarray, iou_threshold: float) -> np.ndarray:
    """The mask of the pairs that pass the gate (never a pair that does not overlap)."""
    allowed = iou >= iou_threshold
    if iou_threshold <= 0.0:
        allowed &= iou > 0.0
    return allowed


def _one_to_one(rows: np.ndarray, cols: np.ndarray) -> bool:
    """Whether no row and no column has two pairs (rows ascending): nothing to decide."""
    return not (rows[1:] == rows[:-1]).any() and len(set(cols.tolist())) == len(cols)


def _hungarian(iou: np.ndarray, allowed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    rows, cols = linear_sum_assignment(np.where(allowed, iou, 0.0), maximize=True)
    keep = allowed[rows, cols]
    return rows[keep], cols[keep]


def _hungarian_by_component(iou: np.ndarray, allowed: np.ndarray
                            ) -> tuple[np.ndarray, np.ndarray]:
    n_rows, n_cols = iou.shape
    pair_rows, pair_cols = np.nonzero(allowed)
    graph = coo_matrix((np.ones(len(pair_rows)), (pair_rows, n_rows + pair_cols)),
                       shape=(n_rows + n_cols, n_rows + n_cols))
    _, labels = connected_components(graph, directed=False)
    pair_labels = labels[pair_rows]
    sizes = np.bincount(pair_labels)
    single = sizes[pair_labels] == 1  # a pair alone in its component is matched as it is
    out_rows, out_cols = [pair_rows[single]], [pair_cols[single]]
    order = (~single).nonzero()[0]
    order = order[np.argsort(pair_labels[order], kind='stable')]
    bounds = np.diff(pair_labels[order]).nonzero()[0] + 1
    for group in np.split(order, bounds) if len(order) else ():
        rows, cols = pair_rows[group], pair_cols[group]
        sub_rows, row_index = np.unique(rows, return_inverse=True)
        sub_cols, col_index = np.unique(cols, return_inverse=True)
        sub = np.zeros((len(sub_rows), len(sub_cols)))
        sub_allowed = np.zeros(sub.shape, bool)
        sub[row_index, col_index] = iou[rows, cols]
        sub_allowed[row_index, col_index] = True
        r, c = _hungarian(sub, sub_allowed)
        out_rows.append(sub_rows[r])
        out_cols.append(sub_cols[c])
    return np.concatenate(out_rows), np.concatenate(out_cols)


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


def is_decoupled(kf: KalmanFilter) -> bool:
    """Whether a filter has the structure the tracker's scalar Kalman steps rely on: F the
    identity plus velocity i added to position i (i < 3), H = [I 0], P, Q and R diagonal."""
    transition = np.eye(STATE_DIM)
    transition[_MOVING, _MOVING + 4] = 1.0
    diagonal = [np.count_nonzero(m - np.diag(np.diag(m))) == 0 for m in (kf.P, kf.Q, kf.R)]
    return (np.array_equal(kf.F, transition)
            and np.array_equal(kf.H, np.eye(MEASUREMENT_DIM, STATE_DIM)) and all(diagonal))


def compact_covariance(cov: np.ndarray) -> np.ndarray:
    """(..., 7, 7) covariances -> (..., COVARIANCE_ENTRIES) entries the tracker keeps."""
    out = np.empty((*cov.shape[:-2], COVARIANCE_ENTRIES))
    out[..., POSITION_VARIANCE] = cov[..., np.arange(4), np.arange(4)]
    out[..., CROSS_COVARIANCE] = cov[..., _MOVING, _MOVING + 4]
    out[..., VELOCITY_VARIANCE] = cov[..., _MOVING + 4, _MOVING + 4]
    return out


def full_covariance(entries: np.ndarray) -> np.ndarray:
    """(COVARIANCE_ENTRIES,) kept entries -> the 7 x 7 covariance (zeros elsewhere)."""
    cov = np.zeros((STATE_DIM, STATE_DIM))
    cov[np.arange(4), np.arange(4)] = entries[POSITION_VARIANCE]
    cov[_MOVING, _MOVING + 4] = cov[_MOVING + 4, _MOVING] = entries[CROSS_COVARIANCE]
    cov[_MOVING + 4, _MOVING + 4] = entries[VELOCITY_VARIANCE]
    return cov


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
    for ignored or dropped detections), `match_ious` (the association IoU, on padded boxes,
    between the detection and the prediction of the track it updated; NaN where it started a
    track or was not tracked; for a duplicate the smaller of its primary's and its IoU with
    the primary), `duplicates` (joined the track of a better-scored detection on the same
    object, see `_split_duplicates`; published with track id 0) and `ignored` (invalid
    boxes). `ended_track_ids`: tracks removed this frame (too old, or a degenerate
    prediction). `dropped`: valid detections and candidates not tracked because of
    max_detections / max_tracks. `candidate_matches`: tracks kept alive this frame by a
    sub-threshold candidate.
    """

    track_ids: np.ndarray
    assigned_ids: np.ndarray
    ignored: np.ndarray
    tracks: ConfirmedTracks
    ended_track_ids: np.ndarray
    match_ious: np.ndarray = field(default_factory=lambda: np.zeros(0))
    duplicates: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))
    dropped: int = 0
    candidate_matches: int = 0


class SortTracker:
    """SORT over boxes; call `update` once per frame, also for frames without detections."""

    def __init__(self, config: TrackerConfig | None = None) -> None:
        self.config = config or TrackerConfig()
        self._model = sort_box_filter()
        self._initial_cov = compact_covariance(self._model.P)
        self._process_noise = compact_covariance(self._model.Q)
        self._meas_noise = np.diag(self._model.R).copy()
        self._next_id = 1
        self.frame_count = 0
        # Row i of every array below is the i-th live track.
        self._x = np.zeros((0, STATE_DIM))
        self._cov = np.zeros((0, COVARIANCE_ENTRIES))
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
        """A snapshot of a live track's Kalman filter: the shared model with x and P copied from
        the track's current state."""
        rows = (self._ids == track_id).nonzero()[0]
        if len(rows) == 0:
            raise KeyError(f'no live track {track_id}')
        kf = copy.copy(self._model)  # shallow: F, H, Q, R are shared and never written to
        kf.x = self._x[int(rows[0])][:, None].copy()
        kf.P = full_covariance(self._cov[int(rows[0])])
        return kf

    def update(
        self,
        frame: FrameDetections | np.ndarray,
        class_ids: np.ndarray | None = None,
        scores: np.ndarray | None = None,
        class_names: list[str] | None = None,
        candidates: FrameDetections | np.ndarray | None = None,
    ) -> TrackingStep:
        """Advance every track one frame and match the frame's detections.

        `frame` is a FrameDetections (its `candidates` are the second round's boxes), or an
        (N, 4) array of boxes x1, y1, x2, y2 in pixels with optional per-detection `class_ids`,
        `scores`, `class_names` and `candidates`: sub-threshold detections, a FrameDetections
        or (M, 4) boxes best first.

        Round one matches the detections, confirmed tracks first; round two lets the confirmed
        tracks still unmatched take candidates (ByteTrack): a candidate corrects the track's
        filter and keeps it alive but is not a detection of it (no hit, no id, class and score
        unchanged). Unmatched detections start tentative tracks.
        """
        cfg = self.config
        boxes, class_ids, scores, class_names = _detection_arrays(
            frame, class_ids, scores, class_names
        )
        if candidates is None and isinstance(frame, FrameDetections):
            candidates = frame.candidates
        candidates, dropped = self._usable_candidates(candidates)
        self.frame_count += 1
        n_dets = len(boxes)
        ignored = ~valid_boxes(boxes)
        valid = (~ignored).nonzero()[0]
        if len(valid) > cfg.max_detections:
            dropped += len(valid) - cfg.max_detections
            best = np.argsort(-scores[valid], kind='stable')[:cfg.max_detections]
            valid = np.sort(valid[best])
        valid, duplicates, duplicate_of = self._split_duplicates(boxes, class_ids, scores,
                                                                 valid)

        predicted = self._predict()
        alive = np.isfinite(predicted).all(axis=1)
        ended = [self._ids[~alive]]
        if not alive.all():
            self._keep(alive)
            predicted = predicted[alive]
        self._boxes = predicted
        track_pad = self._track_padding(predicted)
        # one IoU matrix for both rounds: the detections' rows, then the candidates'
        iou = (padded_iou_matrix(np.concatenate([boxes[valid], candidates]), predicted,
                                 track_pad) if len(predicted) else None)

        matched_dets, track_rows, ious = self._associate(valid, iou)
        if cfg.buffer_ratio > 0.0 and len(track_rows) < min(len(valid), len(predicted)):
            matched_dets, track_rows, ious = self._match_buffered(
                boxes, valid, predicted, matched_dets, track_rows, ious, iou)
        self._boxes[track_rows] = boxes[matched_dets]
        self._class_ids[track_rows] = class_ids[matched_dets]
        self._scores[track_rows] = scores[matched_dets]
        for det, row in zip(matched_dets.tolist(), track_rows.tolist(), strict=True):
            self._class_names[row] = class_names[det]
        self._hits[track_rows] += 1
        self._since_update[track_rows] = 0

        corrected = track_rows
        if len(candidates) and iou is not None:
            candidate_rows = self._match_candidates(candidates, iou[len(valid):])
            if len(candidate_rows):
                corrected = np.concatenate([track_rows, candidate_rows])
        # one batched filter update for both rounds (their tracks are disjoint)
        self._correct(corrected, self._boxes[corrected])
        candidate_matches = len(corrected) - len(track_rows)

        stale = self._since_update > cfg.max_age
        if stale.any():
            stale &= self._since_update > self._max_ages()
        if stale.any():
            ended.append(self._ids[stale])
            fresh = ~stale
            # row numbers of the matched tracks after dropping the stale ones
            track_rows = (np.cumsum(fresh) - 1)[track_rows]
            self._keep(fresh)

        rows = np.full(n_dets, -1, np.intp)  # each detection's track row, -1 when untracked
        rows[matched_dets] = track_rows
        match_ious = np.full(n_dets, np.nan)
        match_ious[matched_dets] = ious
        unmatched = np.zeros(n_dets, bool)
        unmatched[valid] = True
        unmatched[matched_dets] = False
        new_dets = unmatched.nonzero()[0]
        room = cfg.max_tracks - len(self._ids)
        if len(new_dets) > room:
            dropped += len(new_dets) - max(room, 0)
            best = np.argsort(-scores[new_dets], kind='stable')[:max(room, 0)]
            new_dets = np.sort(new_dets[best])
        if len(new_dets):
            rows[new_dets] = len(self._ids) + np.arange(len(new_dets))
            self._start(new_dets, boxes, class_ids, scores, class_names)

        is_duplicate = np.zeros(n_dets, bool)
        if len(duplicates):
            rows[duplicates] = rows[duplicate_of]
            is_duplicate[duplicates] = True
            # a duplicate matched its track as well as its primary did, and as it overlaps that
            with np.errstate(invalid='ignore'):
                match_ious[duplicates] = np.fmin(match_ious[duplicate_of], _pair_iou(
                    boxes[duplicates], boxes[duplicate_of]))
        tracked = (rows >= 0).nonzero()[0]
        assigned = np.zeros(n_dets, np.uint32)
        assigned[tracked] = self._ids[rows[tracked]]
        track_ids = np.zeros(n_dets, np.uint32)
        confirmed = tracked[self._hits[rows[tracked]] >= cfg.min_hits]
        track_ids[confirmed] = assigned[confirmed]
        track_ids[is_duplicate] = 0  # one published box per track and frame
        return TrackingStep(
            track_ids=track_ids,
            assigned_ids=assigned,
            ignored=ignored,
            tracks=self._confirmed(),
            ended_track_ids=np.concatenate(ended).astype(np.uint32),
            match_ious=match_ious,
            duplicates=is_duplicate,
            dropped=dropped,
            candidate_matches=candidate_matches,
        )

    def _split_duplicates(self, boxes: np.ndarray, class_ids: np.ndarray, scores: np.ndarray,
                          valid: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(primaries, duplicates, the primary of each duplicate) among the valid detections.

        A detector with per-class NMS often reports one object twice (car 0.8 and van 0.4 on
        the same box); two tracks then share the object and take turns on it, and neither
        holds its whole history. A detection whose IoU with a better-scored one is at least
        duplicate_iou is a duplicate: it joins that detection's track and is never matched
        on its own.
        """
        empty = np.zeros(0, np.intp)
        threshold = self.config.duplicate_iou
        if (threshold <= 0.0 and self.config.duplicate_containment <= 0.0) or len(valid) < 2:
            return valid, empty, empty
        x1, y1, x2, y2 = boxes[valid].T
        w = np.minimum.outer(x2, x2) - np.maximum.outer(x1, x1)
        h = np.minimum.outer(y2, y2) - np.maximum.outer(y1, y1)
        inter = np.maximum(w, 0.0, out=w) * np.maximum(h, 0.0, out=h)
        area = (x2 - x1) * (y2 - y1)
        classes = class_ids[valid]
        close = classes[:, None] != classes[None, :]  # never the diagonal
        close &= inter > 0.0
        if threshold > 0.0:
            same = inter >= threshold * (area[:, None] + area[None, :] - inter)
        else:
            same = np.zeros(close.shape, bool)
        containment = self.config.duplicate_containment
        if containment > 0.0:
            same |= inter >= containment * np.minimum.outer(area, area)
        close &= same
        if not close.any():
            return valid, empty, empty
        by_score = np.argsort(-scores[valid], kind='stable')
        order = valid[by_score]
        close = close[np.ix_(by_score, by_score)]  # rows and columns in score order
        primary_of = list(range(len(order)))
        for better, worse in zip(*(i.tolist() for i in np.nonzero(close)), strict=True):
            # rows are in score order: (better, worse) pairs only, worse joins once
            if better < worse and primary_of[better] == better and primary_of[worse] == worse:
                primary_of[worse] = better
        primary_of = np.array(primary_of)
        dup = primary_of != np.arange(len(order))
        return np.sort(order[~dup]), order[dup], order[primary_of[dup]]

    def _track_padding(self, predicted: np.ndarray) -> np.ndarray:
        """(T,) pixels by which each track's association pads its pairs: the fixed padding, plus
        a share of the box height per frame the track has been lost (at most one height)."""
        cfg = self.config
        lost = self._since_update.astype(np.float64) - 1.0  # 0 for a track matched last frame
        heights = predicted[:, 3] - predicted[:, 1]
        return cfg.association_padding_px + np.minimum(
            cfg.lost_padding_per_frame * lost, 1.0) * heights

    def _max_ages(self) -> np.ndarray:
        """Per track: frames it may go unmatched (far_max_age for confirmed small boxes)."""
        cfg = self.config
        small = (self._boxes[:, 3] - self._boxes[:, 1]) < cfg.far_height_px
        far = small & (self._hits >= cfg.min_hits)
        return np.where(far, max(cfg.max_age, cfg.far_max_age), cfg.max_age)

    def _usable_candidates(self, candidates: FrameDetections | np.ndarray | None
                           ) -> tuple[np.ndarray, int]:
        """(the candidate boxes round two may take, how many max_detections dropped): valid
        boxes, the best scored first; none when match_candidates is off."""
        cfg = self.config
        if not cfg.match_candidates or candidates is None or len(candidates) == 0:
            return np.zeros((0, 4)), 0
        if isinstance(candidates, FrameDetections):
            boxes = candidates.boxes.astype(np.float64)
            if len(boxes) > cfg.max_detections:
                boxes = boxes[np.argsort(-candidates.scores, kind='stable')]
        else:  # boxes handed on best first, as detectors do
            boxes = np.asarray(candidates, np.float64).reshape(-1, 4)
        boxes = boxes[valid_boxes(boxes)]
        return boxes[:cfg.max_detections], max(len(boxes) - cfg.max_detections, 0)

    def _associate(self, valid: np.ndarray, iou: np.ndarray | None
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(detection, track row, IoU) of the matches: confirmed tracks first, then tentative
        tracks take what is left (a tentative track, often a false positive, never outbids a
        confirmed one). `iou`: padded IoU of the valid detections (its first rows) with the
        tracks' predictions.
        """
        if len(valid) == 0 or iou is None:
            empty = np.zeros(0, np.intp)
            return empty, empty, np.zeros(0)
        iou = iou[:len(valid)]
        threshold = self.config.iou_threshold
        allowed = _gate(iou, threshold)
        det_rows, track_rows = allowed.nonzero()
        if _one_to_one(det_rows, track_rows):  # no pair competes: what both rounds would take
            return valid[det_rows], track_rows, iou[det_rows, track_rows]
        confirmed = self._hits >= self.config.min_hits
        if confirmed.all() or not confirmed.any():  # one round, on the pairs gated above
            det_rows, track_rows = _assign(iou, allowed)
            return valid[det_rows], track_rows, iou[det_rows, track_rows]
        first, second = confirmed.nonzero()[0], (~confirmed).nonzero()[0]
        det_rows, track_rows = _match_allowed(iou[:, first], allowed[:, first])
        is_left = np.ones(len(valid), bool)
        is_left[det_rows] = False
        left = is_left.nonzero()[0]
        left_rows, second_rows = _match_allowed(iou[left][:, second], allowed[left][:, second])
        det_rows = np.concatenate([det_rows, left[left_rows]])
        track_rows = np.concatenate([first[track_rows], second[second_rows]])
        return valid[det_rows], track_rows, iou[det_rows, track_rows]

    def _match_buffered(self, boxes: np.ndarray, valid: np.ndarray, predicted: np.ndarray,
                        dets: np.ndarray, rows: np.ndarray, ious: np.ndarray,
                        iou: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The buffered round: detections and tracks at least buffer_min_height_px tall that the
        IoU rounds left unmatched, on buffered IoU; returns every match of all rounds
        (detections, track rows, their padded IoU: what the relabeler's purity rules read)."""
        cfg = self.config
        free_rows = predicted[:, 3] - predicted[:, 1] >= cfg.buffer_min_height_px
        free_rows[rows] = False
        if not free_rows.any():
            return dets, rows, ious
        free_dets = np.zeros(len(boxes), bool)
        free_dets[valid] = True
        free_dets[dets] = False
        free_dets = free_dets.nonzero()[0]  # valid boxes only: the heights of the rest may be NaN
        free_dets = free_dets[boxes[free_dets, 3] - boxes[free_dets, 1]
                              >= cfg.buffer_min_height_px]
        if not len(free_dets):
            return dets, rows, ious
        free_rows = free_rows.nonzero()[0]
        buffered = buffered_iou_matrix(boxes[free_dets], predicted[free_rows], cfg.buffer_ratio)
        det_rows, track_rows = match_iou(buffered, cfg.iou_threshold)
        if not len(det_rows):
            return dets, rows, ious
        new_dets, new_rows = free_dets[det_rows], free_rows[track_rows]
        return (np.concatenate([dets, new_dets]), np.concatenate([rows, new_rows]),
                np.concatenate([ious, iou[np.searchsorted(valid, new_dets), new_rows]]))

    def _match_candidates(self, candidates: np.ndarray, iou: np.ndarray) -> np.ndarray:
        """Round two: confirmed tracks unmatched so far take candidate boxes (their filters are
        corrected by the caller); returns the rows of those tracks. `iou`: padded IoU of the
        candidates with every track's prediction."""
        cfg = self.config
        waiting = ((self._since_update > 0) & (self._hits >= cfg.min_hits)).nonzero()[0]
        if len(waiting) == 0:
            return waiting
        cand_rows, rows = match_iou(iou[:, waiting], cfg.candidate_iou_threshold)
        rows = waiting[rows]
        self._boxes[rows] = candidates[cand_rows]
        self._since_update[rows] = 0
        return rows

    def _predict(self) -> np.ndarray:
        """KalmanFilter.predict for every track at once; returns the predicted boxes.

        Per (position, velocity) pair with variances a, c and covariance b, F P F' + Q is
        a + 2b + c, b + c, c (plus Q's diagonal); the aspect's variance only gains Q.
        """
        x, cov = self._x, self._cov
        if len(x):
            # SORT: an area about to shrink below zero stops shrinking.
            shrinking = (x[:, 6] + x[:, 2]) <= 0
            if shrinking.any():
                x[shrinking, 6] = 0.0
            x[:, :3] += x[:, 4:]
            positions = cov[:, :3]
            cross, velocity = cov[:, CROSS_COVARIANCE], cov[:, VELOCITY_VARIANCE]
            positions += cross
            positions += cross
            positions += velocity
            cross += velocity
            cov += self._process_noise
        self._ages += 1
        self._since_update += 1
        return states_to_boxes(x)

    def _correct(self, rows: np.ndarray, boxes: np.ndarray) -> None:
        """KalmanFilter.update for these rows, per decoupled pair.

        The innovation covariance is diagonal, s = a + r; the gains of position and velocity
        are k1 = a / s and k2 = b / s, and the updated covariance (I - KH) P is a (1 - k1),
        b (1 - k1), c - k2 b: for this optimal gain the same as filterpy's Joseph form
        (I - KH) P (I - KH)' + K R K', to rounding (test_tracking holds them to 1e-10).
        """
        if len(rows) == 0:
            return
        x = self._x[rows]
        cov = self._cov[rows]
        variance, cross = cov[:, POSITION_VARIANCE], cov[:, CROSS_COVARIANCE]
        keep = self._meas_noise / (variance + self._meas_noise)  # 1 - k1 = r / s
        velocity_gain = cross * keep[:, :3] / self._meas_noise[:3]  # k2 = b / s
        residual = boxes_to_measurements(boxes) - x[:, :MEASUREMENT_DIM]
        x[:, MEASUREMENT_DIM:] += velocity_gain * residual[:, :3]
        residual -= keep * residual
        x[:, :MEASUREMENT_DIM] += residual  # k1 y = y - (1 - k1) y
        self._x[rows] = x
        cov[:, VELOCITY_VARIANCE] -= velocity_gain * cross
        variance *= keep
        cross *= keep[:, :3]
        self._cov[rows] = cov

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
        x = np.zeros((n, STATE_DIM))
        x[:, :MEASUREMENT_DIM] = boxes_to_measurements(boxes[dets])
        self._x = np.concatenate([self._x, x])
        cov = np.empty((len(self._cov) + n, COVARIANCE_ENTRIES))
        cov[:len(self._cov)] = self._cov
        cov[len(self._cov):] = self._initial_cov
        self._cov = cov
        self._ids = np.concatenate([self._ids, ids])
        self._boxes = np.concatenate([self._boxes, boxes[dets]])
        self._class_ids = np.concatenate([self._class_ids, class_ids[dets]])
        self._class_names.extend(class_names[d] for d in dets.tolist())
        self._scores = np.concatenate([self._scores, scores[dets]])
        self._ages = np.concatenate([self._ages, np.zeros(n, np.uint32)])
        self._hits = np.concatenate([self._hits, np.ones(n, np.uint32)])
        self._since_update = np.concatenate([self._since_update, np.zeros(n, np.uint32)])

    def _keep(self, keep: np.ndarray) -> None:
        """Drop the tracks whose `keep` entry is False."""
        rows = keep.nonzero()[0]
        self._class_names = [self._class_names[i] for i in rows.tolist()]
        self._x = self._x[rows]
        self._cov = self._cov[rows]
        self._ids = self._ids[rows]
        self._boxes = self._boxes[rows]
        self._class_ids = self._class_ids[rows]
        self._scores = self._scores[rows]
        self._ages = self._ages[rows]
        self._hits = self._hits[rows]
        self._since_update = self._since_update[rows]

    def _confirmed(self) -> ConfirmedTracks:
        rows = (self._hits >= self.config.min_hits).nonzero()[0]
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
