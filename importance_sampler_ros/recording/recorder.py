"""The recorder core: a ring buffer of recent frames, delayed sampling decisions, relabel-driven
keeps, and split rosbag2 writing. No rclpy: the recorder node and offline replay both drive it.

Frame life: `add_frame` throws the sampler's coin at once (so q depends on nothing that happens
later) and puts the frame in the ring buffer. The frame leaves the buffer when it is older than
`buffer_seconds` (by header stamps) than the newest frame, or when the buffer holds more than
`buffer_bytes`; only then is its decision final and, if kept, the frame written. A relabel
(RelabelArray from the tracker) naming frames still in the buffer keeps them, thinned to frames at
least `relabel_keep_gap_s` apart from the earliest on: reason 'relabel' and weight 1 when the coin
had said drop (msg/SampleDecision.msg), reason 'sampled' and weight 1/q when the coin had kept it
anyway. Every named frame that is written carries the relabel. The sampler hears of each final
frame whether a relabel kept it (note_final), to count relabel keeps inside its keep ratio.
Relabels naming frames that already left the buffer are counted by what had become of the frame
(kept without them / dropped / never seen) and reported in `stats()`, never silently lost.

What a kept frame writes (docs/ARCHITECTURE.md "Output bag"), all logged at the frame's header
stamp: its DetectionArray as received on /importance_sampler/detections, a RelabelArray on
/importance_sampler/relabels (header = the frame's stamp and frame_id; each Relabel cut down to
the observations in this frame, possibly an empty list), its SampleDecision on
/importance_sampler/decisions, and last the original image CDR on the image topic. The image goes
last so that a 1.4 MB image closes the MCAP chunk holding the whole frame.

Layout and crash safety (recorder_bag.py): <output_dir>/<bag_name>/<bag_name>_NNNN/ are the
splits, each a complete rosbag2 bag; a split closes when it holds `split_bytes` or spans
`split_seconds`. Written data is flushed to the file at most `flush_interval_s` (wall clock) after
it was written (and fsynced with `fsync`), so SIGKILL loses at most that much; closed splits are
never touched again, and `importance-sampler bag-repair` (recording/repair.py) recovers the open
one. A write error (disk full, I/O error) stops recording: the open split is aborted (repairable),
closed splits stay as they are, and the call that met the error raises RecordingStoppedError once
with a clear message (and the frames it decided in `results`). After that the recorder keeps
deciding frames (the node keeps publishing decisions) but writes nothing; kept frames that were
not written are counted (`kept_not_written`).

Validation: a frame is checked when it arrives (add_frame): the image CDR must decode and its
data length fit its size, the DetectionArray must decode, both carry the same stamp; a bad frame
raises ValueError, is counted (`frames_rejected`) and never buffered, so nothing that was
accepted can poison a split. `close()` writes stats() to <output_dir>/<bag_name>/stats.json,
atomically (a temporary file renamed over it).
"""
from __future__ import annotations

import functools
import json
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from importance_sampler_ros import topics
from importance_sampler_ros.bags import bag_io
from importance_sampler_ros.bags.messages import detections_to_msg, header_msg, stamp_to_ns
from importance_sampler_ros.detection.detections import FrameDetections
from importance_sampler_ros.files import write_atomically
from importance_sampler_ros.recording.config import RecorderConfig
from importance_sampler_ros.recording.splits import BagSink, split_path
from importance_sampler_ros.sampling.sampler import (
    REASON_RELABEL,
    Decision,
    ImportanceSampler,
    RelativeVarianceTally,
    SamplerState,
)

log = logging.getLogger(__name__)

# The bag's topics: images under RecorderConfig.image_topic, the rest under these.
IMAGE_TOPIC = topics.IMAGE
DETECTIONS_TOPIC = topics.DETECTIONS
RELABELS_TOPIC = topics.RELABELS
DECISIONS_TOPIC = topics.DECISIONS
_DETECTION_ARRAY = bag_io.msgtype('DetectionArray')
_RELABEL_ARRAY = bag_io.msgtype('RelabelArray')
_SAMPLE_DECISION = bag_io.msgtype('SampleDecision')
_NS = 1_000_000_000
_DEPARTED_MEMORY = 100_000  # departed frames remembered to classify late relabels
_FLOAT32_MAX = float(np.finfo(np.float32).max)


class DecidedStamps:
    """The last `capacity` frames that left the ring buffer, stamp -> kept, in two arrays
    allocated once, so that the recorder's memory is flat from the first frame (an OrderedDict of
    100 000 stamps grew by ~0.5 MB/min at 100 Hz for 17 minutes: benchmarks/recorder_soak.py).
    A lookup scans the array (~0.1 ms for 100 000 stamps); it runs once per frame and once per
    relabelled frame, never in a loop over the buffer."""

    def __init__(self, capacity: int) -> None:
        self._stamps = np.zeros(capacity, np.int64)
        self._kept = np.zeros(capacity, bool)
        self._size = 0
        self._next = 0

    def add(self, stamp_ns: int, kept: bool) -> None:
        self._stamps[self._next] = stamp_ns
        self._kept[self._next] = kept
        self._next = (self._next + 1) % len(self._stamps)
        self._size = min(self._size + 1, len(self._stamps))

    def get(self, stamp_ns: int) -> bool | None:
        """Whether the frame with this stamp was kept; None if it is not remembered."""
        hits = np.flatnonzero(self._stamps[:self._size] == stamp_ns)
        return bool(self._kept[hits[0]]) if len(hits) else None

    def __contains__(self, stamp_ns: int) -> bool:
        return self.get(stamp_ns) is not None


class RecorderError(RuntimeError):
    """The recorder cannot start (e.g. the output directory cannot be created)."""


class RecordingStoppedError(RecorderError):
    """Writing failed (disk full, I/O error): recording has stopped; closed splits are intact.
    `results`: the frames the failing call decided all the same."""

    def __init__(self, message: str, results: list[FrameResult] | None = None) -> None:
        super().__init__(message)
        self.results = results or []


@dataclass
class FrameResult:
    """A frame whose decision is final: what the node publishes and replay tallies."""

    decision: Decision
    frame_id: str
    relabels: int  # relabels written with the frame
    decision_cdr: bytes  # the SampleDecision, serialized


@dataclass
class _Buffered:
    stamp_ns: int
    frame_id: str
    image_cdr: bytes
    detections_cdr: bytes
    track_ids: np.ndarray
    track_importances: np.ndarray
    decision: Decision
    relabels: list[Any] = field(default_factory=list)
    relabel_keep: bool = False  # a relabel keeps it (relabel_keep_gap_s thins them)
    descriptor: np.ndarray | None = None  # DetectionArray.frame_descriptor (coverage score)

    @property
    def nbytes(self) -> int:
        return len(self.image_cdr) + len(self.detections_cdr)


WriterFactory = Callable[[Path, str], BagSink]


class Recorder:
    """Importance-samples frames into a split rosbag2 recording.

    `writer_factory(path, storage)` opens one split (default: bag_io.BagWriter with the
    configured bag version); tests inject faults through it. Call `close()` (or use as a
    context manager) to finish: it decides the frames still in the buffer and closes the open
    split.
    """

    def __init__(
        self,
        config: RecorderConfig,
        writer_factory: WriterFactory = bag_io.BagWriter,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        if writer_factory is bag_io.BagWriter:
            writer_factory = functools.partial(bag_io.BagWriter, version=config.bag_version)
        self._writer_factory = writer_factory
        self._clock = clock
        name = config.bag_name or datetime.now(UTC).strftime('recording_%Y%m%d_%H%M%S')
        self.recording_dir = Path(config.output_dir) / name
        try:
            self.recording_dir.mkdir(parents=True, exist_ok=False)
        except OSError as error:
            raise RecorderError(
                f'cannot create the recording directory {self.recording_dir}: {error}'
            ) from error
        self.sampler = ImportanceSampler(config.sampler)
        self._state_path = (Path(config.output_dir) / config.sampler_state
                            if config.sampler_state else None)
        self._resume_state = self._read_sampler_state()
        self._scale = ''  # what the latest frame's g was computed by (SamplerState.scale)
        self._resumed_from = ''  # the sampler_state file this run started from, if any
        _warm_up()
        self._buffer: deque[_Buffered] = deque()
        self._by_stamp: dict[int, _Buffered] = {}
        self._buffer_bytes = 0
        self._departed = DecidedStamps(_DEPARTED_MEMORY)
        self._split: BagSink | None = None
        self._split_index = 0
        self._split_start_ns = 0
        self._last_flush = clock()
        self._unflushed = 0  # frames written to the open split since its last flush
        self.closed_splits: list[Path] = []
        self.error: str | None = None
        self._error_raised = False
        self._closed = False
        self._tally = RelativeVarianceTally()
        self._counts = dict.fromkeys(
            ('frames', 'kept', 'sampled', 'relabel', 'forced', 'dropped', 'budget',
             'bytes_written', 'relabels_received', 'relabel_observations_buffered',
             'relabel_observations_late_kept', 'relabel_observations_late_dropped',
             'relabel_observations_unknown', 'relabel_keeps_over_cap', 'frames_rejected',
             'kept_not_written'), 0)

    # --- input ---------------------------------------------------------------------------

    def add_frame(
        self, image_cdr: bytes, detections: bytes | FrameDetections | Any
    ) -> list[FrameResult]:
        """One frame: its image as CDR bytes and its detections as DetectionArray CDR bytes, a
        rosbags DetectionArray or FrameDetections. Both must carry the same header stamp.
        Returns the frames whose decision this call made final (those pushed out of the ring
        buffer). A frame that fails validation (module docstring) raises ValueError."""
        self._check_open()
        try:
            stamp_ns, array, detections_cdr = self._validated(image_cdr, detections)
        except ValueError:
            self._counts['frames_rejected'] += 1
            raise
        self._scale = f'{array.model_name}|{array.scorer}|{array.aggregation}'
        if self._resume_state is not None:
            self._resume_sampler(self._resume_state)
        track_ids = np.array([d.track_id for d in array.detections], np.int64)
        track_g = np.array([d.importance for d in array.detections], np.float64)
        descriptor = np.asarray(array.frame_descriptor, np.float32)
        try:
            decision = self.sampler.decide(
                stamp_ns, float(array.frame_importance), len(image_cdr) + len(detections_cdr),
                track_ids, track_g, descriptor,
            )
        except ValueError:
            self._counts['frames_rejected'] += 1
            raise
        frame = _Buffered(stamp_ns, str(array.header.frame_id), bytes(image_cdr),
                          detections_cdr, track_ids, track_g, decision, descriptor=descriptor)
        self._buffer.append(frame)
        self._by_stamp[stamp_ns] = frame
        self._buffer_bytes += frame.nbytes
        self._counts['frames'] += 1
        results = self._evict(force=False)
        self._flush_if_due()
        self._raise_new_error(results)
        return results

    def _validated(self, image_cdr: bytes,
                   detections: bytes | FrameDetections | Any) -> tuple[int, Any, bytes]:
        """(stamp, DetectionArray, its CDR) of a frame that passes validation, or ValueError."""
        detections_cdr, array = _detections(detections)
        stamp_ns = stamp_to_ns(array.header)
        image = bag_io.validate_message(image_cdr, bag_io.IMAGE_TYPE)
        image_stamp_ns = stamp_to_ns(image.header)
        if image_stamp_ns != stamp_ns:
            raise ValueError(
                f'image stamp {image_stamp_ns} differs from detections stamp {stamp_ns}'
            )
        if stamp_ns in self._by_stamp:
            raise ValueError(f'a frame with stamp {stamp_ns} is already in the ring buffer')
        if stamp_ns in self._departed:
            raise ValueError(f'a frame with stamp {stamp_ns} was already decided')
        return stamp_ns, array, detections_cdr

    def add_relabels(self, relabels: bytes | Any) -> int:
        """A RelabelArray (CDR bytes or rosbags message). Each observation's frame, if still in
        the buffer, will be kept with the relabel. Returns the observations that found their
        frame in the buffer."""
        self._check_open()
        array = _deserialize(relabels, _RELABEL_ARRAY) if _is_bytes(relabels) else relabels
        self._counts['relabels_received'] += len(array.relabels)
        found = 0
        gap_ns = self.config.relabel_keep_gap_s * _NS
        for relabel in array.relabels:
            by_frame: dict[int, list[Any]] = {}
            for observation in relabel.observations:
                by_frame.setdefault(stamp_to_ns(observation.stamp), []).append(observation)
            last_keep_ns: int | None = None
            for stamp_ns, observations in sorted(by_frame.items()):
                frame = self._by_stamp.get(stamp_ns)
                if frame is not None:
                    frame.relabels.append(replace(relabel, observations=observations))
                    found += len(observations)
                    if last_keep_ns is None or stamp_ns - last_keep_ns >= gap_ns:
                        frame.relabel_keep = True
                        last_keep_ns = stamp_ns
                    continue
                kept = self._departed.get(stamp_ns)
                key = ('relabel_observations_unknown' if kept is None else
                       'relabel_observations_late_kept' if kept else
                       'relabel_observations_late_dropped')
                self._counts[key] += len(observations)
        self._counts['relabel_observations_buffered'] += found
        return found

    # --- output --------------------------------------------------------------------------

    def flush_if_due(self) -> None:
        """Flush what was written to the open split if `flush_interval_s` has passed since the
        last flush (add_frame calls this; a node may call it from a timer, so that a quiet
        stretch without new frames does not leave kept frames in memory)."""
        self._flush_if_due()
        self._raise_new_error([])

    def _flush_if_due(self) -> None:
        if self._split is None or not self._unflushed or self.error is not None:
            return
        now = self._clock()
        if now - self._last_flush >= self.config.flush_interval_s:
            split = self._split
            self._guarded(lambda: split.flush(self.config.fsync))
            self._last_flush = now
            self._unflushed = 0

    def flush(self) -> list[FrameResult]:
        """Decide every frame in the buffer now (at shutdown) and flush the open split."""
        self._check_open()
        results = self._evict(force=True)
        if self._split is not None:
            split = self._split
            self._guarded(lambda: split.flush(self.config.fsync))
            self._last_flush, self._unflushed = self._clock(), 0
        self._raise_new_error(results)
        return results

    def close(self, extra_stats: dict[str, Any] | None = None) -> list[FrameResult]:
        """Decide the buffered frames, close the open split, write stats() (plus
        `extra_stats`, e.g. the node's join counts) to <recording_dir>/stats.json. Idempotent;
        after a write error the buffered frames are decided but not written. Raises
        RecordingStoppedError if writing fails here (the stats are written all the same)."""
        if self._closed:
            return []
        results: list[FrameResult] = []
        try:
            results = self._evict(force=True)
            if self.error is None:
                self._close_split()
        finally:
            self._closed = True
            self._save_coverage_bank()
            self._save_sampler_state()
            self._write_stats(extra_stats or {})
        self._raise_new_error(results)
        return results

    def _read_sampler_state(self) -> SamplerState | None:
        """The state an earlier run left in sampler_state; None (and a log line) when there is
        none or it cannot be used: the sampler then learns g's scale afresh."""
        path = self._state_path
        if path is None or not path.exists():
            return None
        try:
            return SamplerState.from_bytes(path.read_bytes())
        except (OSError, ValueError) as error:
            log.warning('sampler state %s not used (%s): learning the importance scale afresh',
                        path, error)
            return None

    def _resume_sampler(self, state: SamplerState) -> None:
        """Before the first decision: start from `state` if it was learnt on the same scale."""
        self._resume_state = None
        why = state.mismatch(self._scale, self.config.sampler)
        if why:
            log.warning('sampler state %s not used: %s; learning the importance scale afresh',
                        self._state_path, why)
            return
        self.sampler.resume(state)
        self._resumed_from = str(self._state_path)
        log.info('sampler resumed from %s (%d frames of g^a, mean %.4g)', self._state_path,
                 len(state.window), self.sampler.importance_mean)

    def _save_sampler_state(self) -> None:
        if self._state_path is None or not self._scale:
            return  # no frame seen: an earlier state stays as it was
        try:
            write_atomically(self._state_path, self.sampler.state(self._scale).to_bytes(),
                             sync=self.config.fsync)
        except OSError as error:  # the next run learns the scale afresh, nothing else lost
            log.error('cannot write the sampler state %s: %s', self._state_path, error)

    def _save_coverage_bank(self) -> None:
        try:
            path = self.sampler.save_coverage_bank()
        except OSError as error:  # the next run starts with an empty bank, nothing else lost
            log.error('cannot write the coverage bank %s: %s', self.config.sampler.coverage_bank,
                      error)
            return
        if path is not None:
            log.info('coverage bank of %d kept frames written to %s',
                     self.sampler.coverage_bank_size, path)

    def _write_stats(self, extra: dict[str, Any]) -> None:
        stats = {**self.stats(), **extra}
        path = self.recording_dir / 'stats.json'
        try:
            write_atomically(path, (json.dumps(stats, indent=1, default=str) + '\n').encode(),
                             sync=self.config.fsync)
        except OSError as error:  # e.g. the disk that stopped the recording is still full
            log.error('cannot write %s: %s; stats: %s', path, error, json.dumps(stats, default=str))

    def __enter__(self) -> Recorder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def split_paths(self) -> list[Path]:
        """Splits closed so far plus the open one."""
        return self.closed_splits + ([self._split.path] if self._split is not None else [])

    def stats(self) -> dict[str, Any]:
        stats: dict[str, Any] = dict(self._counts)
        stats.update(self._tally.result())
        stats.update(
            buffered_frames=len(self._buffer),
            buffered_bytes=self._buffer_bytes,
            keep_ratio=self.sampler.keep_ratio,
            importance_mean=self.sampler.importance_mean,
            redundancy_suppressed=self.sampler.suppressed,
            sampler_resumed_from=self._resumed_from,
            splits=[str(p) for p in self.split_paths],
            error=self.error,
        )
        stats['relabel_observations_late'] = sum(
            stats[k] for k in ('relabel_observations_late_kept',
                               'relabel_observations_late_dropped',
                               'relabel_observations_unknown'))
        return stats

    # --- internals -----------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise RecorderError('the recorder is closed')

    def _raise_new_error(self, results: list[FrameResult]) -> None:
        """Raise RecordingStoppedError once, from the call that met the write error."""
        if self.error is not None and not self._error_raised:
            self._error_raised = True
            raise RecordingStoppedError(self.error, results)

    def _evict(self, force: bool) -> list[FrameResult]:
        results = []
        limit_ns = self.config.buffer_seconds * _NS
        while self._buffer and (
            force
            or self._buffer_bytes > self.config.buffer_bytes
            or self._buffer[-1].stamp_ns - self._buffer[0].stamp_ns > limit_ns
        ):
            frame = self._buffer.popleft()
            del self._by_stamp[frame.stamp_ns]
            self._buffer_bytes -= frame.nbytes
            results.append(self._finalize(frame))
        return results

    def _finalize(self, frame: _Buffered) -> FrameResult:
        decision = frame.decision
        self._tally.add(decision.importance, decision.probability)
        relabel_keep = frame.relabel_keep and self.sampler.allow_relabel_keep()
        if frame.relabel_keep and not relabel_keep:
            self._counts['relabel_keeps_over_cap'] += 1
        self.sampler.note_final(relabel_keep)
        if not decision.kept and relabel_keep:
            decision = replace(decision, kept=True, weight=1.0, reason=REASON_RELABEL)
            self.sampler.note_kept(frame.stamp_ns, frame.nbytes, frame.track_ids,
                                   frame.track_importances, frame.descriptor)
        self._counts[decision.reason] += 1
        self._departed.add(frame.stamp_ns, decision.kept)
        decision_cdr = bag_io.serialize(decision_message(decision, frame.frame_id))
        if decision.kept:
            self._counts['kept'] += 1
            if self.error is None:
                self._write(frame, decision_cdr)
            else:
                self._counts['kept_not_written'] += 1
        return FrameResult(decision, frame.frame_id, len(frame.relabels), decision_cdr)

    def _write(self, frame: _Buffered, decision_cdr: bytes) -> None:
        types = bag_io.msg_types()
        relabel_array = types.RelabelArray(
            header=header_msg(frame.stamp_ns, frame.frame_id, types), relabels=frame.relabels
        )
        relabels_cdr = bag_io.serialize(relabel_array)

        def write() -> None:
            if self._split is None:
                self._open_split(frame.stamp_ns)
            split = self._split
            # validate=False: the image and detections were validated in add_frame, the
            # relabels and the decision serialized here from message objects.
            split.write(DETECTIONS_TOPIC, _DETECTION_ARRAY, frame.stamp_ns, frame.detections_cdr,
                        validate=False)
            split.write(RELABELS_TOPIC, _RELABEL_ARRAY, frame.stamp_ns, relabels_cdr,
                        validate=False)
            split.write(DECISIONS_TOPIC, _SAMPLE_DECISION, frame.stamp_ns, decision_cdr,
                        validate=False)
            split.write(self.config.image_topic, bag_io.IMAGE_TYPE, frame.stamp_ns,
                        frame.image_cdr, validate=False)
            self._unflushed += 1

        before = self._split.bytes_written if self._split is not None else 0
        if not self._guarded(write):
            self._counts['kept_not_written'] += 1
            return
        self._counts['bytes_written'] += self._split.bytes_written - before
        self._flush_if_due()
        if self._split is None:
            return
        split_bytes = self.config.split_bytes
        split_ns = self.config.split_seconds * _NS
        if (split_bytes and self._split.bytes_written >= split_bytes) or (
            split_ns and frame.stamp_ns - self._split_start_ns >= split_ns
        ):
            self._close_split()

    def _open_split(self, stamp_ns: int) -> None:
        path = split_path(self.recording_dir, self._split_index)
        self._split = self._writer_factory(path, self.config.storage)
        self._split_index += 1
        self._split_start_ns = stamp_ns
        self._last_flush = self._clock()

    def _close_split(self) -> None:
        if self._split is None:
            return
        split = self._split
        if not self._guarded(lambda: split.close(self.config.fsync)):
            return
        self.closed_splits.append(split.path)
        self._split = None
        self._unflushed = 0
        log.info('closed split %s', split.path)

    def _guarded(self, action: Callable[[], None]) -> bool:
        """Run a bag operation; on OSError (disk full, I/O error) or a writer error, stop
        recording with a clear message (self.error), abort the open split and leave closed
        splits as they are. False when it failed; the public method then raises."""
        try:
            action()
        except Exception as error:  # rosbags raises WriterError, the OS OSError
            open_path = self._split.path if self._split is not None else None
            self.error = (
                f'recording stopped: writing {open_path or self.recording_dir} failed: {error}. '
                f'Closed splits are intact ({len(self.closed_splits)})'
                + (f'; recover the open one with: importance-sampler bag-repair {open_path}'
                   if open_path else '')
            )
            # what the open split held unflushed is lost with it (a failed write() counts
            # its own frame)
            self._counts['kept_not_written'] += self._unflushed
            self._unflushed = 0
            if self._split is not None:
                try:
                    self._split.abort()
                except Exception as abort_error:  # already failing; the message above counts
                    log.debug('abort after write error failed: %s', abort_error)
                self._split = None
            log.error(self.error)
            return False
        return True


def decision_message(decision: Decision, frame_id: str, types: Any = None) -> Any:
    """A SampleDecision message (rosbags classes by default, or any `types` namespace)."""
    types = types or bag_io.msg_types()
    return types.SampleDecision(
        header=header_msg(decision.stamp_ns, frame_id, types),
        kept=bool(decision.kept),
        probability=_float32(decision.probability),
        weight=_float32(decision.weight),
        reason=decision.reason,
        frame_importance=_float32(decision.importance),
        importance_mean=_float32(decision.importance_mean),
        keep_ratio=_float32(decision.keep_ratio),
    )


def _float32(value: float) -> float:
    """`value` for a float32 field: finite values beyond its range saturate at +-max (a sharpened
    mean of g^a or the weight of a tiny q can pass it; CDR would refuse the frame)."""
    value = float(value)
    return max(-_FLOAT32_MAX, min(_FLOAT32_MAX, value)) if np.isfinite(value) else value


def _warm_up() -> None:
    """rosbags compiles a type's (de)serialiser on first use: do it now, not on the first
    frames, which a live node would otherwise fall behind on."""
    types = bag_io.msg_types()
    header = header_msg(0, '', types)
    bag_io.serialize(decision_message(Decision(0, False, 0.0, 0.0, REASON_RELABEL, 0.0, 0.0, 0.0),
                                      ''))
    for empty in (types.RelabelArray(header=header, relabels=[]),
                  types.DetectionArray(header=header, detections=[], frame_importance=0.0,
                                       aggregation='sum', model_name='', inference_ms=0.0,
        scorer='', uncertainty_names=[], candidates=[], situations=[],
        frame_descriptor=np.zeros(0, np.float32))):
        bag_io.deserialize(bag_io.serialize(empty), empty.__msgtype__)
    image = types.Image(header=header, height=1, width=1, encoding='rgb8', is_bigendian=0,
                        step=3, data=np.zeros(3, np.uint8))
    bag_io.validate_message(bag_io.serialize(image), bag_io.IMAGE_TYPE)  # add_frame checks each


def _deserialize(data: bytes | bytearray | memoryview, msgtype: str) -> Any:
    return bag_io.validate_message(data, msgtype)


def _is_bytes(value: Any) -> bool:
    return isinstance(value, bytes | bytearray | memoryview)


def _detections(detections: bytes | FrameDetections | Any) -> tuple[bytes, Any]:
    """(CDR bytes, rosbags DetectionArray) from any of the three."""
    if isinstance(detections, FrameDetections):
        detections = detections_to_msg(detections, bag_io.msg_types())
    if _is_bytes(detections):
        data = bytes(detections)
        return data, _deserialize(data, _DETECTION_ARRAY)
    if getattr(detections, '__msgtype__', None) != _DETECTION_ARRAY:
        raise TypeError(
            'detections must be DetectionArray CDR bytes, a rosbags DetectionArray or '
            'FrameDetections, '
            f'got {type(detections).__name__}'
        )
    return bag_io.serialize(detections), detections

