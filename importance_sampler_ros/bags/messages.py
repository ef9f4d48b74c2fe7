"""Core dataclasses <-> the package's messages, for rclpy and rosbags message classes alike.

Both kinds of message classes have the same names and fields, so every function here takes
`types`: a namespace of message classes, `bag_io.msg_types()` (rosbags) or
`nodes.message_types.rclpy_types()` (rclpy). Fields are passed as keyword arguments with plain
Python scalars, which both accept; primitive arrays go through `types.primitive_array`.
"""
from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import numpy as np

from importance_sampler_ros.detection.detections import FrameDetections

NS_PER_S = 1_000_000_000


def stamp_to_ns(stamp: Any) -> int:
    """Nanoseconds of a builtin_interfaces/Time (or of a Header's stamp)."""
    stamp = getattr(stamp, 'stamp', stamp)
    return int(stamp.sec) * NS_PER_S + int(stamp.nanosec)


def time_msg(stamp_ns: int, types: SimpleNamespace) -> Any:
    sec, nanosec = divmod(int(stamp_ns), NS_PER_S)
    return types.Time(sec=sec, nanosec=nanosec)


def header_msg(stamp_ns: int, frame_id: str, types: SimpleNamespace) -> Any:
    return types.Header(stamp=time_msg(stamp_ns, types), frame_id=frame_id)


def box_msg(box: np.ndarray, types: SimpleNamespace) -> Any:
    x1, y1, x2, y2 = (float(v) for v in box)
    return types.BoundingBox(x1=x1, y1=y1, x2=x2, y2=y2)


def box_array(box: Any) -> np.ndarray:
    return np.array([box.x1, box.y1, box.x2, box.y2], np.float32)


def _detection_msgs(det: FrameDetections, types: SimpleNamespace) -> list[Any]:
    return [
        types.Detection(
            box=box_msg(det.boxes[i], types),
            class_id=int(det.class_ids[i]),
            class_name=str(det.class_names[i]),
            score=float(det.scores[i]),
            importance=float(det.importances[i]),
            track_id=int(det.track_ids[i]),
            distance=float(det.distances[i]),
            uncertainty=types.primitive_array(det.uncertainty[i], 'float32'),
        )
        for i in range(len(det))
    ]


def detections_to_msg(det: FrameDetections, types: SimpleNamespace) -> Any:
    """A DetectionArray carrying every field of `det`, header from its stamp and frame_id."""
    candidates = det.candidates
    return types.DetectionArray(
        header=header_msg(det.stamp_ns, det.frame_id, types),
        detections=_detection_msgs(det, types),
        frame_importance=float(det.frame_importance),
        aggregation=det.aggregation,
        model_name=det.model_name,
        inference_ms=float(det.inference_ms),
        scorer=det.scorer,
        uncertainty_names=list(det.uncertainty_names),
        candidates=[] if candidates is None else _detection_msgs(candidates, types),
        situations=list(det.situations),
        frame_descriptor=np.asarray(det.descriptor, np.float32),
    )


def _frame_from_detection_msgs(dets: list[Any], stamp_ns: int, frame_id: str,
                               names: tuple[str, ...]) -> FrameDetections:
    n = len(dets)
    return FrameDetections(
        stamp_ns=stamp_ns,
        frame_id=frame_id,
        boxes=np.array([box_array(d.box) for d in dets], np.float32).reshape(n, 4),
        class_ids=np.array([d.class_id for d in dets], np.int32),
        class_names=[str(d.class_name) for d in dets],
        scores=np.array([d.score for d in dets], np.float32),
        importances=np.array([d.importance for d in dets], np.float32),
        track_ids=np.array([d.track_id for d in dets], np.uint32),
        distances=np.array([d.distance for d in dets], np.float32),
        uncertainty_names=names,
        uncertainty=(np.array([np.asarray(d.uncertainty, np.float32) for d in dets], np.float32)
                     if names and n else np.zeros((n, len(names)), np.float32)),
    )


def detections_from_msg(msg: Any) -> FrameDetections:
    """FrameDetections from a DetectionArray (rclpy or rosbags)."""
    stamp_ns, frame_id = stamp_to_ns(msg.header), str(msg.header.frame_id)
    names = tuple(str(n) for n in msg.uncertainty_names)
    det = _frame_from_detection_msgs(list(msg.detections), stamp_ns, frame_id, names)
    det.frame_importance = float(msg.frame_importance)
    det.aggregation = str(msg.aggregation)
    det.model_name = str(msg.model_name)
    det.inference_ms = float(msg.inference_ms)
    det.scorer = str(msg.scorer)
    det.situations = tuple(str(t) for t in msg.situations)
    det.descriptor = np.asarray(msg.frame_descriptor, np.float32).reshape(-1)
    if len(msg.candidates):
        det.candidates = _frame_from_detection_msgs(list(msg.candidates), stamp_ns, frame_id,
                                                    names)
    return det
