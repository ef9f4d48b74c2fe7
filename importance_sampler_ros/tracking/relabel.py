"""Near-to-far relabels over track histories (the seed paper's Algorithm 1), and the tracker
that feeds them (`RelabelingTracker`: SORT + relabels, what the tracker node and replay run).

An object seen near (large box and/or confident detection) is classified more reliably than the
same object seen far away. Each track keeps a bounded history of its observations. Once a
confirmed track has at least `relabel_min_observations` observations and its latest near-field
observations agree on a class c (at least `near_min_votes` of the last `near_window` near-field
observations, a share >= `near_min_agreement` voting c, and share x mean score of those votes
>= `relabel_min_confidence`), every observation in its history whose label is not c is relabelled
to c, and so is every later one.

- An observation is relabelled once. If the near-field class later changes to c', every
  observation whose current label (after relabels) is not c' is re-issued with c'
  (`reissued=True`), including observations whose original class is c' (old class = new class:
  the earlier correction is withdrawn).
- When the votes stop agreeing, the last agreed class stays in force.
- Only observations a correction can trust are relabelled: far ones (unless
  `relabel_near_field`), well matched to the track (`relabel_min_match_iou`), scored below
  `relabel_max_score` (a detection the detector is sure of keeps its class) and no older than
  `relabel_max_span_s`. A weak association (`segment_min_iou`) or a track found again after
  `segment_max_gap_s` without an observation starts a new history: the track may have jumped to
  another object, whose observations the new votes must not reach.
- A track that dies before its near field agrees produces no relabel. Histories hold at most
  `relabel_history_size` observations (older ones are forgotten and can no longer be relabelled);
  ended tracks are freed.
- One event per (track, old class, reissued) group of one frame, oldest observation first: the
  shape of msg/Relabel.msg.
"""
from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from importance_sampler_ros.detection.detections import FrameDetections
from importance_sampler_ros.tracking.config import RelabelConfig, TrackerConfig
from importance_sampler_ros.tracking.sort import SortTracker


class Observation:
    """One detection of a track. `relabelled_to`: class id it was relabelled to, or None.
    `match_iou`: its association IoU with the track's prediction (NaN: it started the track)."""

    __slots__ = ('box', 'class_id', 'class_name', 'detection_index', 'importance', 'match_iou',
                 'near', 'relabelled_to', 'score', 'stamp_ns')

    def __init__(self, stamp_ns: int, box: tuple[float, float, float, float], class_id: int,
                 class_name: str, score: float, importance: float, detection_index: int,
                 near: bool, match_iou: float = float('nan')) -> None:
        self.stamp_ns = stamp_ns
        self.box = box
        self.class_id = class_id
        self.class_name = class_name
        self.score = score
        self.importance = importance
        self.detection_index = detection_index
        self.near = near
        self.match_iou = match_iou
        self.relabelled_to: int | None = None

    def label(self) -> int:
        """The class this observation has now: its relabel if any, else its own."""
        return self.class_id if self.relabelled_to is None else self.relabelled_to


@dataclass(frozen=True, slots=True)
class RelabelledObservation:
    stamp_ns: int
    box: tuple[float, float, float, float]
    detection_index: int


@dataclass(frozen=True, slots=True)
class RelabelEvent:
    """Observations of one track whose class `old_class_id` is corrected to `new_class_id`.

    `stamp_ns` / `frame_id`: the frame whose near-field observation triggered it.
    """

    stamp_ns: int
    frame_id: str
    track_id: int
    old_class_id: int
    old_class_name: str
    new_class_id: int
    new_class_name: str
    confidence: float
    reissued: bool
    observations: tuple[RelabelledObservation, ...]


def _box_iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    """IoU of two boxes as plain tuples: called once per observation in observe()'s loop,
    where tracking.iou_matrix's array set-up would cost more than the arithmetic."""
    width = min(a[2], b[2]) - max(a[0], b[0])
    height = min(a[3], b[3]) - max(a[1], b[1])
    if width <= 0.0 or height <= 0.0:
        return 0.0
    inter = width * height
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


class _TrackHistory:
    __slots__ = ('class_counts', 'confidence', 'count', 'near_class', 'near_class_name',
                 'observations', 'sorted_counts', 'votes', 'well_matched')

    def __init__(self, history_size: int, window: int) -> None:
        self.observations: deque[Observation] = deque(maxlen=history_size)
        self.votes: deque[Observation] = deque(maxlen=window)  # latest near-field observations
        self.class_counts: dict[int, int] = {}  # over the kept observations
        self.sorted_counts: tuple[tuple[int, int], ...] | None = None  # cached, most first
        self.count = 0  # observations ever, kept or not
        self.well_matched = 0  # kept observations with match_iou >= relabel_min_match_iou
        self.near_class: int | None = None
        self.near_class_name = ''
        self.confidence = 0.0

    def restart(self) -> None:
        """Forget everything: the track now follows another object (an identity switch)."""
        self.observations.clear()
        self.votes.clear()
        self.class_counts.clear()
        self.sorted_counts = None
        self.count = 0
        self.well_matched = 0
        self.near_class = None
        self.near_class_name = ''
        self.confidence = 0.0


class NearToFarRelabeler:
    """Per-track observation histories and the near-field vote; see the module docstring."""

    def __init__(self, config: RelabelConfig | None = None) -> None:
        self.config = config or RelabelConfig()
        self._tracks: dict[int, _TrackHistory] = {}

    def __len__(self) -> int:
        """Number of tracks whose history is held."""
        return len(self._tracks)

    def is_near(self, box_height: float | np.ndarray, score: float | np.ndarray
                ) -> bool | np.ndarray:
        """Whether a detection (or each of arrays of them) is in the near field."""
        tall = np.greater_equal(box_height, self.config.near_min_height_px)
        confident = np.greater_equal(score, self.config.near_min_score)
        return tall & confident if self.config.near_rule == 'and' else tall | confident

    def observe(
        self,
        frame: FrameDetections,
        track_ids: np.ndarray,
        confirmed: np.ndarray | None = None,
        match_ious: np.ndarray | None = None,
        duplicates: np.ndarray | None = None,
    ) -> list[RelabelEvent]:
        """Record the frame's detections under `track_ids` (0 = none) and return new relabels.

        `confirmed[i]` tells whether detection i's track is confirmed; only confirmed tracks
        relabel (their observations from before confirmation count). Default: all confirmed.
        `match_ious[i]`: the association IoU of detection i with its track's prediction (NaN
        where it started the track); without it the IoU with the track's previous observation
        stands in. `duplicates[i]`: detection i is a second box on an object another detection
        of its track stands for (its match IoU never starts a new segment).
        """
        cfg = self.config
        events: list[RelabelEvent] = []
        ids = np.asarray(track_ids).tolist()
        confirmed_list = [True] * len(ids) if confirmed is None else np.asarray(confirmed).tolist()
        boxes = frame.boxes.tolist()
        class_ids = frame.class_ids.tolist()
        scores = frame.scores.tolist()
        importances = frame.importances.tolist()
        ious = [None] * len(ids) if match_ious is None else np.asarray(match_ious).tolist()
        second = [False] * len(ids) if duplicates is None else np.asarray(duplicates).tolist()
        with np.errstate(invalid='ignore', over='ignore'):  # invalid boxes are never tracked
            near = self.is_near(frame.boxes[:, 3] - frame.boxes[:, 1], frame.scores).tolist()
        stamp_ns, names, tracks = frame.stamp_ns, frame.class_names, self._tracks
        max_gap_ns = round(cfg.segment_max_gap_s * 1e9)
        for index, track_id in enumerate(ids):
            if track_id == 0:
                continue
            history = tracks.get(track_id)
            if history is None:
                history = tracks[track_id] = _TrackHistory(
                    cfg.relabel_history_size, cfg.near_window)
            box = tuple(boxes[index])
            match = ious[index]
            if match is None:
                match = (_box_iou(history.observations[-1].box, box)
                         if history.observations else float('nan'))
            obs = Observation(stamp_ns, box, class_ids[index], names[index], scores[index],
                              importances[index], index, near[index], match)
            if history.observations and not second[index] and (
                    match < cfg.segment_min_iou
                    or 0 < max_gap_ns < stamp_ns - history.observations[-1].stamp_ns):
                history.restart()
            self._append(history, obs)
            if (not confirmed_list[index] or history.count < cfg.relabel_min_observations
                    # no class agreed and too few votes for one: _relabel would find nothing
                    or (history.near_class is None
                        and len(history.votes) < cfg.near_min_votes)):
                continue
            relabelled = self._relabel(history, obs)
            if relabelled:
                events.extend(self._events(frame, track_id, history, relabelled))
        return events

    def forget(self, track_ids: Iterable[int]) -> None:
        """Free the histories of ended tracks."""
        for track_id in track_ids.tolist() if isinstance(track_ids, np.ndarray) else track_ids:
            self._tracks.pop(int(track_id), None)

    def history(self, track_id: int) -> tuple[Observation, ...]:
        """The kept observations of a track, oldest first (empty for unknown tracks)."""
        history = self._tracks.get(track_id)
        return tuple(history.observations) if history else ()

    def votes(self, track_id: int) -> tuple[Observation, ...]:
        """The near-field observations that vote on a track's class now, oldest first."""
        history = self._tracks.get(track_id)
        return tuple(history.votes) if history else ()

    def summary(self, track_id: int, class_id: int, class_name: str
                ) -> tuple[int, str, tuple[tuple[int, int], ...]]:
        """(class id, class name, class history) of a track as published: the near-field class
        when agreed, else the class of its latest observation (class_id / class_name for a track
        with no history), and (class id, count) over the kept observations, most frequent
        first."""
        history = self._tracks.get(track_id)
        if history is None:
            return class_id, class_name, ()
        if history.near_class is not None:
            class_id, class_name = history.near_class, history.near_class_name
        elif history.observations:
            latest = history.observations[-1]
            class_id, class_name = latest.class_id, latest.class_name
        if history.sorted_counts is None:
            counts = history.class_counts
            history.sorted_counts = (tuple(counts.items()) if len(counts) == 1 else tuple(
                sorted(counts.items(), key=lambda item: (-item[1], item[0]))))
        return class_id, class_name, history.sorted_counts

    def _well_matched(self, obs: Observation) -> bool:
        return not obs.match_iou < self.config.relabel_min_match_iou  # NaN (track start): yes

    def _append(self, history: _TrackHistory, obs: Observation) -> None:
        observations = history.observations
        counts = history.class_counts
        ranked = history.sorted_counts
        min_match = self.config.relabel_min_match_iou  # _well_matched, inlined (per detection)
        if len(observations) == observations.maxlen:
            dropped = observations[0]
            counts[dropped.class_id] -= 1
            if counts[dropped.class_id] == 0:
                del counts[dropped.class_id]
            history.well_matched -= not dropped.match_iou < min_match
            ranked = None
        observations.append(obs)
        count = counts[obs.class_id] = counts.get(obs.class_id, 0) + 1
        # another observation of the leading class keeps the order: only its count changes
        history.sorted_counts = (((obs.class_id, count), *ranked[1:])
                                 if ranked and ranked[0][0] == obs.class_id else None)
        history.count += 1
        history.well_matched += not obs.match_iou < min_match
        if obs.near:
            history.votes.append(obs)

    def _vote(self, history: _TrackHistory) -> tuple[int, str, float] | None:
        """The agreed near-field class, its name and confidence, or None.

        Confidence: winning share x mean score of its votes x the share of the track's kept
        observations that matched it well (a track that took over other boxes on the way is
        trusted less).
        """
        cfg = self.config
        votes = history.votes
        if len(votes) < cfg.near_min_votes:
            return None
        counts: dict[int, int] = {}
        for vote in votes:
            counts[vote.class_id] = counts.get(vote.class_id, 0) + 1
        best_count = max(counts.values())
        # ties go to the class voted most recently
        best = next(v for v in reversed(votes) if counts[v.class_id] == best_count)
        share = best_count / len(votes)
        if share < cfg.near_min_agreement:
            return None
        mean_score = sum(v.score for v in votes if v.class_id == best.class_id) / best_count
        purity = history.well_matched / len(history.observations)
        confidence = share * mean_score * purity
        if confidence < cfg.relabel_min_confidence:
            return None
        return best.class_id, best.class_name, confidence

    def _relabel(self, history: _TrackHistory, obs: Observation) -> list[Observation]:
        """Observations to relabel now (their `relabelled_to` not yet updated)."""
        if obs.near or history.near_class is None:
            decided = self._vote(history)
            if decided is not None:
                new_class, new_name, confidence = decided
                history.confidence = confidence
                if new_class != history.near_class:
                    history.near_class = new_class
                    history.near_class_name = new_name
                    oldest = obs.stamp_ns - round(self.config.relabel_max_span_s * 1e9)
                    return [o for o in history.observations
                            if o.label() != new_class and self._correctable(o)
                            and o.stamp_ns >= oldest]
        if (history.near_class is not None and obs.label() != history.near_class
                and self._correctable(obs)):
            return [obs]
        return []

    def _correctable(self, obs: Observation) -> bool:
        cfg = self.config
        return ((cfg.relabel_near_field or not obs.near) and self._well_matched(obs)
                and (obs.score < cfg.relabel_max_score or cfg.relabel_max_score >= 1.0))

    @staticmethod
    def _events(frame: FrameDetections, track_id: int, history: _TrackHistory,
                relabelled: list[Observation]) -> list[RelabelEvent]:
        groups: dict[tuple[int, bool], list[Observation]] = {}
        names: dict[int, str] = {}
        for obs in relabelled:
            groups.setdefault((obs.class_id, obs.relabelled_to is not None), []).append(obs)
            names[obs.class_id] = obs.class_name
            obs.relabelled_to = history.near_class
        return [
            RelabelEvent(
                stamp_ns=frame.stamp_ns,
                frame_id=frame.frame_id,
                track_id=track_id,
                old_class_id=old_class,
                old_class_name=names[old_class],
                new_class_id=history.near_class,
                new_class_name=history.near_class_name,
                confidence=history.confidence,
                reissued=reissued,
                observations=tuple(
                    RelabelledObservation(o.stamp_ns, o.box, o.detection_index) for o in group),
            )
            for (old_class, reissued), group in groups.items()
        ]


class TrackSummary(NamedTuple):
    """One confirmed track at one frame: the content of msg/Track.msg (a named tuple: the
    tracker builds one per confirmed track and frame)."""

    track_id: int
    box: tuple[float, float, float, float]
    class_id: int
    class_name: str
    class_history: tuple[tuple[int, int], ...]
    age: int
    hits: int
    time_since_update: int
    score: float


@dataclass
class TrackedFrame:
    """One frame through the tracker: detections with track ids, confirmed tracks, relabels.

    `ignored`: indices of detections with invalid boxes (not tracked, track id 0).
    `assigned_ids`: per detection, the track (tentative or confirmed) it updated or started, 0
    when untracked; `detections.track_ids` holds only the confirmed ones (what is published).
    """

    detections: FrameDetections
    tracks: list[TrackSummary]
    relabels: list[RelabelEvent]
    ignored: np.ndarray
    assigned_ids: np.ndarray = field(default_factory=lambda: np.zeros(0, np.uint32))
    dropped: int = 0


class StaleFrameError(ValueError):
    """A frame whose stamp is not newer than the previous frame's."""

    def __init__(self, message: str, stamp_ns: int, previous_ns: int) -> None:
        super().__init__(message)
        self.stamp_ns = stamp_ns
        self.previous_ns = previous_ns


class RelabelingTracker:
    """SORT tracking plus near-to-far relabels, one frame at a time (frames in stamp order)."""

    def __init__(self, tracker: TrackerConfig | None = None,
                 relabel: RelabelConfig | None = None) -> None:
        self.tracker = SortTracker(tracker)
        self.relabeler = NearToFarRelabeler(relabel)
        self.last_stamp_ns: int | None = None

    def reset(self) -> None:
        """Forget every track and history (after a jump back in time); ids keep counting up."""
        self.relabeler.forget(self.tracker.reset())
        self.last_stamp_ns = None

    def update(self, frame: FrameDetections) -> TrackedFrame:
        """Track one frame; StaleFrameError (state unchanged) when its stamp is not newer."""
        if self.last_stamp_ns is not None and frame.stamp_ns <= self.last_stamp_ns:
            kind = 'duplicate' if frame.stamp_ns == self.last_stamp_ns else 'out-of-order'
            raise StaleFrameError(
                f'{kind} frame stamp {frame.stamp_ns} ns (previous {self.last_stamp_ns} ns)',
                frame.stamp_ns, self.last_stamp_ns)
        self.last_stamp_ns = frame.stamp_ns
        step = self.tracker.update(frame)
        relabels = self.relabeler.observe(frame, step.assigned_ids, step.track_ids != 0,
                                          step.match_ious, step.duplicates)
        self.relabeler.forget(step.ended_track_ids)
        confirmed = step.tracks
        tracks = []
        summary = self.relabeler.summary
        # tuple.__new__ skips the named tuple's Python-level __new__ (a third of the cost of
        # this loop, which runs once per confirmed track and frame); the fields are in order
        make = tuple.__new__
        for track_id, box, class_id, name, score, age, hits, since in zip(
                confirmed.track_ids.tolist(), confirmed.boxes.tolist(),
                confirmed.class_ids.tolist(), confirmed.class_names, confirmed.scores.tolist(),
                confirmed.ages.tolist(), confirmed.hits.tolist(),
                confirmed.time_since_update.tolist(), strict=True):
            current_id, current_name, class_history = summary(track_id, class_id, name)
            tracks.append(make(TrackSummary, (track_id, tuple(box), current_id, current_name,
                                              class_history, age, hits, since, score)))
        detections = frame.with_track_ids(step.track_ids)
        return TrackedFrame(
            detections=detections,
            tracks=tracks,
            relabels=relabels,
            ignored=np.flatnonzero(step.ignored),
            assigned_ids=step.assigned_ids,
            dropped=step.dropped,
        )
