"""Small bags for the replay tests: tiny images, hand-made detections with known importances.

One object drives towards the camera: far (small box) it is detected as class 1 'car', near (big
box, confident) as class 3 'truck', so the tracker must relabel its far frames.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from importance_sampler_ros.bags import bag_io
from importance_sampler_ros.bags.images import rgb_to_image_msg
from importance_sampler_ros.bags.messages import detections_to_msg
from importance_sampler_ros.detection.detections import FrameDetections

WIDTH, HEIGHT = 160, 96
FPS = 10
START_NS = 1_700_000_000_000_000_000
CLASSES = ['__background__', 'car', 'van', 'truck']


def frame_detections(index: int, frames: int) -> FrameDetections:
    """The approaching object at frame `index`: 6 px tall far away, 90 px tall at the end, near
    (>= 60 px, score 0.95) in the last third."""
    progress = index / max(frames - 1, 1)
    height = 6 + 84 * progress
    cx, cy = 80.0, 48.0
    box = [cx - height / 2, cy - height / 2, cx + height / 2, cy + height / 2]
    near = height >= 60
    importance = 0.05 + 0.9 * (1 - progress) * (index % 3 == 0)
    class_id = 3 if near else 1
    return FrameDetections(
        stamp_ns=START_NS + index * 1_000_000_000 // FPS, frame_id='camera',
        boxes=np.array([box]), class_ids=[class_id], class_names=[CLASSES[class_id]],
        scores=[0.95 if near else 0.6], importances=[importance],
        frame_importance=importance, aggregation='sum', model_name='handmade',
    )


def write_drive(path: Path, frames: int = 60, storage: str = 'mcap',
                with_detections: bool = True, image_topic: str = '/camera/image_raw',
                bad_images: dict[int, dict] | None = None) -> list[FrameDetections]:
    """`bad_images`: frame index -> Image fields to overwrite (e.g. {'step': 5})."""
    types = bag_io.msg_types()
    rng = np.random.default_rng(0)
    written = []
    with bag_io.BagWriter(path, storage=storage) as writer:
        for index in range(frames):
            det = frame_detections(index, frames)
            rgb = rng.integers(0, 256, (HEIGHT, WIDTH, 3), np.uint8)
            image = rgb_to_image_msg(rgb, det.stamp_ns, 'camera', types)
            for key, value in (bad_images or {}).get(index, {}).items():
                setattr(image, key, value)
            # the bad ones on purpose: the writer would refuse them (they stand for a camera's)
            writer.write(image_topic, bag_io.IMAGE_TYPE, det.stamp_ns, image,
                         validate=index not in (bad_images or {}))
            if with_detections:
                writer.write('/recorded/detections', bag_io.msgtype('DetectionArray'),
                             det.stamp_ns, detections_to_msg(det, types))
            written.append(det)
    return written
