"""detector -> tracker -> recorder in one process: what the three nodes do, without DDS.

The stages are the very core objects the nodes wrap (Detector, RelabelingTracker, Recorder), fed
the same messages in the same order, with parameters read from the same YAML file and validated
by the same specs; bad images and jumps in time meet the nodes' FramePolicy. So replay measures
what the car does.
"""
from __future__ import annotations

import dataclasses
import itertools
import logging
import time
from collections import OrderedDict, defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from importance_sampler_ros import registry
from importance_sampler_ros.bags import bag_io
from importance_sampler_ros.bags.frames import InputFrame
from importance_sampler_ros.bags.images import ImageError, image_to_rgb
from importance_sampler_ros.bags.messages import detections_to_msg
from importance_sampler_ros.bags.tracking_messages import relabels_to_msg
from importance_sampler_ros.detection.config import DetectorConfig
from importance_sampler_ros.detection.detections import FrameDetections
from importance_sampler_ros.evaluation.errors import LABELLED_MIN_HEIGHT_PX, frame_errors
from importance_sampler_ros.frame_policy import FramePolicy
from importance_sampler_ros.offline.report import FrameRecord, RelabelExample
from importance_sampler_ros.params import ParameterError, load_node_parameters, own_specs, specs
from importance_sampler_ros.recording.config import RecorderConfig
from importance_sampler_ros.recording.recorder import FrameResult, Recorder
from importance_sampler_ros.registry import (
    NODE_NAMES,
    DetectorNodeSettings,
    NodeConfig,
    RecorderNodeSettings,
    TrackerNodeSettings,
)
from importance_sampler_ros.tracking.config import RelabelConfig, TrackerConfig
from importance_sampler_ros.tracking.relabel import (
    RelabelEvent,
    RelabelingTracker,
)

DEFAULT_PARAMS_FILE = registry.default_params_file()
# The nodes' ROS-only settings: replay reads them from the file (and checks them) but has no use.
ROS_ONLY = (DetectorNodeSettings, TrackerNodeSettings, RecorderNodeSettings)
NODE_CORE_NAMES = {node: {s.name for cls in registry.NODES[node].groups if cls not in ROS_ONLY
                          for s in specs(cls)} for node in NODE_NAMES}
# Ground truth farther than this (metres) counts as far field in the report.
FAR_DISTANCE_M = 40.0
DISTANCE_BINS_M = (0.0, 20.0, 40.0, 60.0, 80.0, float('inf'))
CROP_SIZE = 48
CROPS_PER_TRACK = 100  # 10 s at 10 fps: a far object's earliest relabelled observation
CROP_TRACKS = 48  # tracks whose recent crops are held for the relabel strip (least recent go)
EXAMPLE_LIMIT = 6


def load_parameters(params_file: str | Path | None,
                    overrides: Mapping[str, Mapping[str, Any]] | None = None
                    ) -> tuple[dict[str, NodeConfig], list[str]]:
    """Each node's config from a node-parameter YAML file (default: the one the launcher uses)
    plus overrides, checked as the nodes check them (registry.load; ParameterError, one line).

    The second value names the keys of the file that replay does not use: the nodes' ROS-only
    parameters (topics, QoS, log periods) and names no node declares.
    """
    path = Path(params_file) if params_file else DEFAULT_PARAMS_FILE
    if not path.is_file():  # refused as `up` refuses it, never silently the code defaults
        raise ParameterError(f'parameter file {path} does not exist')
    configs, unknown = registry.load(path, overrides, NODE_NAMES)
    ros_only = {spec.name for cls in ROS_ONLY for spec in own_specs(cls)}
    used = [f'{node}.{key}' for node in NODE_NAMES
            for key in (load_node_parameters(path, node) if path.is_file() else {})
            if key in ros_only and key not in NODE_CORE_NAMES[node]]
    return configs, used + unknown


@dataclass
class GroundTruthTally:
    """Detector errors per frame and far-field label accuracy before / after relabelling."""

    # (stamp, detection index) -> (true class, predicted class, distance)
    matches: OrderedDict[tuple[int, int], tuple[int, int, float]] = field(
        default_factory=OrderedDict)
    corrected: dict[tuple[int, int], int] = field(default_factory=dict)

    def add_frame(self, detections: FrameDetections, truth: FrameDetections
                  ) -> tuple[int, int, int, int]:
        """Match detections to truth (evaluation.errors: greedy by IoU >= 0.5, any class).

        Returns (errors, visible errors, labelled errors, matched boxes): errors = misses +
        false positives + wrong classes; visible errors leave out the misses, which no
        detection's importance can reflect; labelled errors count only objects of the labelling
        height (LABELLED_MIN_HEIGHT_PX, the others are don't care).
        """
        found = frame_errors(detections, truth)
        labelled = frame_errors(detections, truth, min_labelled_height=LABELLED_MIN_HEIGHT_PX)
        for row, col in enumerate(found.detection_truth.tolist()):
            if col >= 0:
                self.matches[(detections.stamp_ns, row)] = (
                    int(truth.class_ids[col]), int(detections.class_ids[row]),
                    float(truth.distances[col]))
        return (found.total, found.visible, labelled.total,
                int((found.detection_truth >= 0).sum()))

    def add_relabel(self, event: RelabelEvent) -> None:
        for observation in event.observations:
            self.corrected[(observation.stamp_ns, observation.detection_index)] = (
                event.new_class_id)

    def summary(self) -> dict[str, Any]:
        if not self.matches:
            return {}
        truth, before, distance = (np.array(v) for v in zip(*self.matches.values(), strict=True))
        after = np.array([self.corrected.get(key, predicted)
                          for key, predicted in zip(self.matches, before, strict=True)])
        far = distance >= FAR_DISTANCE_M
        result: dict[str, Any] = {
            'matched_detections': len(truth),
            'far_field_threshold_m': FAR_DISTANCE_M,
        }
        if far.any():
            errors_before = before[far] != truth[far]
            result['far_accuracy_before_relabel'] = float(np.mean(~errors_before))
            result['far_accuracy_after_relabel'] = float(np.mean(after[far] == truth[far]))
            fixed = errors_before & (after[far] == truth[far])
            result['far_errors_corrected_ratio'] = (
                float(fixed.sum() / errors_before.sum()) if errors_before.any() else float('nan'))
        by_bin = {}
        for low, high in itertools.pairwise(DISTANCE_BINS_M):
            in_bin = (distance >= low) & (distance < high)
            if in_bin.any():
                by_bin[f'{low:g}-{high:g} m'] = {
                    'n': int(in_bin.sum()),
                    'before': float(np.mean(before[in_bin] == truth[in_bin])),
                    'after': float(np.mean(after[in_bin] == truth[in_bin])),
                }
        result['accuracy_by_distance'] = by_bin
        return result


class Pipeline:
    """Run frames through detector (or recorded detections), tracker and recorder."""

    def __init__(self, params: Mapping[str, NodeConfig], output_dir: Path,
                 need_detector: bool, image_topic: str | None = None) -> None:
        """`image_topic`: the name kept images are written under (default: the recorder's
        image_topic parameter); replay passes its input topic."""
        self.params = params
        self.types = bag_io.msg_types()
        self.detector = None
        if need_detector:
            from importance_sampler_ros.detection.detector import Detector  # torch: when needed

            self.detector = Detector(params['detector_node'].of(DetectorConfig))
        tracker = params['tracker_node']
        self.tracker = RelabelingTracker(tracker.of(TrackerConfig), tracker.of(RelabelConfig))
        self.policy = FramePolicy.from_settings(tracker.of(TrackerNodeSettings))
        self.images_undecoded = 0  # with recorded detections: no crops, otherwise as any frame
        # frames the recorder refused (an image whose data does not fit its size): the node's
        # bad_input, never written
        self.frames_rejected = 0
        recording = params['recorder_node'].of(RecorderConfig)
        self.recorder = Recorder(dataclasses.replace(
            recording, output_dir=str(output_dir.parent), bag_name=output_dir.name,
            image_topic=image_topic or recording.image_topic))
        self.stage_seconds: dict[str, float] = defaultdict(float)
        self.records: OrderedDict[int, FrameRecord] = OrderedDict()
        self.finished: list[FrameRecord] = []
        self.frames_kept = 0
        self.truth = GroundTruthTally()
        self.has_truth = False
        self.relabel_events = 0
        self.relabelled_observations = 0
        self.examples: list[RelabelExample] = []
        # set to a list to collect every relabel event (the closed loop's self-labels)
        self.relabel_log: list[RelabelEvent] | None = None
        # track id -> (stamp, detection index) -> crop, while the relabel strip wants examples
        self._crops: OrderedDict[int, OrderedDict[tuple[int, int], np.ndarray]] = OrderedDict()

    @property
    def model_name(self) -> str:
        return self.detector.model_name if self.detector is not None else 'recorded detections'

    def process(self, frame: InputFrame) -> None:
        """One frame through the stages, skipped where the nodes would skip it (FramePolicy)."""
        started = time.perf_counter()
        rgb = None
        if frame.detections is not None:
            detections = frame.detections
        else:
            detected = self.policy.detect(self.detector, frame.image)
            if detected is None:
                return
            detections, rgb = detected
        detect_done = time.perf_counter()
        tracked = self.policy.track(self.tracker, detections)
        if tracked is None:
            return
        detection_msg = detections_to_msg(tracked.detections, self.types)
        relabel_msg = relabels_to_msg(detections.stamp_ns, detections.frame_id, tracked.relabels,
                                      self.types)
        track_done = time.perf_counter()
        self.recorder.add_relabels(relabel_msg)
        try:
            results = self.recorder.add_frame(frame.image_cdr, detection_msg)
        except ValueError as error:  # the recorder node skips it the same way (bad_input)
            self.frames_rejected += 1
            if self.frames_rejected == 1:
                logging.getLogger('importance_sampler.replay').warning(
                    'frame with stamp %d ns not recorded: %s (counted as frames_rejected)',
                    frame.stamp_ns, error)
            return
        record_done = time.perf_counter()

        self.stage_seconds['detector' if self.detector else 'recorded detections'] += (
            detect_done - started)
        self.stage_seconds['tracker'] += track_done - detect_done
        self.stage_seconds['recorder'] += record_done - track_done
        self._note_frame(frame, tracked.detections, len(frame.image_cdr))
        self._note_relabels(tracked.relabels, frame, tracked.detections, tracked.assigned_ids,
                            rgb)
        self._note_results(results)

    def close(self) -> None:
        self._note_results(self.recorder.close())

    def _note_frame(self, frame: InputFrame, detections: FrameDetections, nbytes: int) -> None:
        errors = visible = labelled = matched = None
        if frame.truth is not None:
            self.has_truth = True
            errors, visible, labelled, matched = self.truth.add_frame(detections, frame.truth)
        self.records[frame.stamp_ns] = FrameRecord(
            stamp_ns=frame.stamp_ns, frame_importance=float(detections.frame_importance),
            probability=float('nan'), kept=False, reason='', weight=0.0, image_bytes=nbytes,
            detections=len(detections), detector_errors=errors, visible_errors=visible,
            labelled_errors=labelled, matched=matched,
            situations=tuple(frame.truth.situations) if frame.truth is not None else ())

    def _note_results(self, results: list[FrameResult]) -> None:
        for result in results:
            record = self.records.pop(result.decision.stamp_ns, None)
            if record is None:
                continue
            decision = result.decision
            record.probability = decision.probability
            record.kept = decision.kept
            record.reason = decision.reason
            record.weight = decision.weight
            self.finished.append(record)
            self.frames_kept += record.kept

    def _note_relabels(self, events: list[RelabelEvent], frame: InputFrame,
                       detections: FrameDetections, track_ids: np.ndarray,
                       rgb: np.ndarray | None) -> None:
        if len(detections) and self.examples_wanted:
            self._keep_crops(frame, detections, track_ids, rgb)
        if self.relabel_log is not None:
            self.relabel_log.extend(events)
        by_track: dict[int, list[RelabelEvent]] = {}
        for event in events:
            self.relabel_events += 1
            self.relabelled_observations += len(event.observations)
            self.truth.add_relabel(event)
            by_track.setdefault(event.track_id, []).append(event)
        for track_events in by_track.values():
            if self.examples_wanted:
                self._add_example(track_events, frame)
        if not self.examples_wanted:
            self._crops.clear()

    @property
    def examples_wanted(self) -> bool:
        return len(self.examples) < EXAMPLE_LIMIT

    def _keep_crops(self, frame: InputFrame, detections: FrameDetections,
                    track_ids: np.ndarray, rgb: np.ndarray | None) -> None:
        """The latest crops of each tracked detection (tentative tracks too: a far object's
        first observations come before its track is confirmed), bounded per track and in
        tracks."""
        if rgb is None:
            try:
                rgb = image_to_rgb(frame.image)
            except ImageError as error:  # the nodes never decode it either: tracked, recorded
                self.images_undecoded += 1
                self.policy.warning(f'no relabel crops of image {frame.stamp_ns} ns: {error}')
                return
        for i, track_id in enumerate(track_ids.tolist()):
            crop = _crop(rgb, detections.boxes[i]) if track_id else None
            if crop is None:
                continue
            crops = self._crops.setdefault(track_id, OrderedDict())
            self._crops.move_to_end(track_id)
            crops[(frame.stamp_ns, i)] = crop
            while len(crops) > CROPS_PER_TRACK:
                crops.popitem(last=False)
        while len(self._crops) > CROP_TRACKS:
            self._crops.popitem(last=False)

    def _add_example(self, events: list[RelabelEvent], frame: InputFrame) -> None:
        """One row per track: its relabelled far observations of this frame's events (the
        earliest first, up to four spread over them), then the near-field frame that decided.
        """
        event = events[0]
        if any(e.track_id == event.track_id for e in self.examples):
            return
        crops = self._crops.get(event.track_id, {})
        keys = sorted((o.stamp_ns, o.detection_index) for e in events for o in e.observations
                      if (o.stamp_ns, o.detection_index) in crops
                      and o.stamp_ns < frame.stamp_ns)
        old_classes = {(o.stamp_ns, o.detection_index): e.old_class_name
                       for e in events for o in e.observations}
        now = [key for key in crops if key[0] == frame.stamp_ns]
        if not keys or not now:
            return
        chosen = [keys[i] for i in np.linspace(0, len(keys) - 1, min(4, len(keys))).astype(int)]
        captions = [f'{(key[0] - frame.stamp_ns) / 1e9:+.1f} s\n{old_classes[key]}'
                    for key in chosen]
        self.examples.append(RelabelExample(
            track_id=event.track_id, old_class=old_classes[chosen[0]],
            new_class=event.new_class_name,
            crops=[crops[k] for k in chosen] + [crops[now[-1]]],
            captions=[*captions, f'now (near)\n{event.new_class_name}'],
        ))


def _crop(rgb: np.ndarray, box: np.ndarray) -> np.ndarray | None:
    """The box's pixels (with a margin) resized to CROP_SIZE x CROP_SIZE, nearest neighbour;
    None for a box that lies outside the image or is not finite."""
    height, width = rgb.shape[:2]
    if not np.isfinite(box).all():
        return None
    x1, y1, x2, y2 = box.tolist()
    margin = 0.15 * max(x2 - x1, y2 - y1, 4.0)
    x1, x2 = int(max(0, x1 - margin)), int(min(width, x2 + margin + 1))
    y1, y2 = int(max(0, y1 - margin)), int(min(height, y2 + margin + 1))
    if x2 <= x1 or y2 <= y1:
        return None
    patch = rgb[y1:y2, x1:x2]
    rows = np.linspace(0, patch.shape[0] - 1, CROP_SIZE).astype(int)
    cols = np.linspace(0, patch.shape[1] - 1, CROP_SIZE).astype(int)
    return patch[rows][:, cols].copy()
