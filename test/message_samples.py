"""One message of each of the package's types with every field set to a non-default value.

Built only through messages.py's conventions (keyword arguments, `types.primitive_array`), so the
same function yields rclpy messages and rosbags messages that must serialize identically.
"""
from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import numpy as np

from importance_sampler_ros.bags.messages import box_msg, detections_to_msg, header_msg, time_msg
from importance_sampler_ros.detection.detections import FrameDetections

STAMP_NS = 1_732_550_400_123_456_789


def sample_detections() -> FrameDetections:
    return FrameDetections(
        stamp_ns=STAMP_NS,
        frame_id='camera',
        boxes=np.array([[10.5, 20.25, 60.0, 80.0], [300.0, 90.0, 302.0, 94.5]]),
        class_ids=[1, 4],
        class_names=['car', 'pedestrian'],
        scores=[0.97, 0.41],
        importances=[0.031, 0.82],
        track_ids=[7, 0],
        distances=[12.5, np.nan],
        frame_importance=0.851,
        aggregation='sum',
        model_name='isr_small@test',
        inference_ms=81.5,
        descriptor=np.array([0.5, 1.25, 0.0, 3.0], np.float32),
    )


def sample_messages(types: SimpleNamespace) -> dict[str, Any]:
    header = header_msg(STAMP_NS, 'camera', types)
    box = box_msg(np.array([1.0, 2.0, 30.5, 40.25]), types)
    detection_array = detections_to_msg(sample_detections(), types)
    track = types.Track(
        track_id=7, box=box, class_id=3, class_name='truck',
        class_history_ids=types.primitive_array([3, 1], 'int32'),
        class_history_counts=types.primitive_array([5, 2], 'uint32'),
        age=12, hits=7, time_since_update=1, score=0.88,
    )
    observation = types.RelabelledObservation(
        stamp=time_msg(STAMP_NS - 100_000_000, types), box=box, detection_index=2,
    )
    relabel = types.Relabel(
        header=header, track_id=7, old_class_id=1, old_class_name='car', new_class_id=3,
        new_class_name='truck', confidence=0.9, reissued=True, observations=[observation] * 2,
    )
    return {
        'BoundingBox': box,
        'Detection': detection_array.detections[0],
        'DetectionArray': detection_array,
        'Track': track,
        'TrackArray': types.TrackArray(header=header, tracks=[track, track]),
        'RelabelledObservation': observation,
        'Relabel': relabel,
        'RelabelArray': types.RelabelArray(header=header, relabels=[relabel]),
        'SampleDecision': types.SampleDecision(
            header=header, kept=True, probability=0.25, weight=4.0, reason='sampled',
            frame_importance=1.5, importance_mean=0.6, keep_ratio=0.1,
        ),
    }
