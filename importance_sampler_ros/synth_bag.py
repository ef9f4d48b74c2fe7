"""Writing a synthetic drive to a rosbag2: rgb8 images and the ground truth, per frame."""
from __future__ import annotations

from pathlib import Path

from importance_sampler_ros.bag_io import IMAGE_TYPE, BagWriter, msg_types, msgtype
from importance_sampler_ros.images import rgb_to_image_msg
from importance_sampler_ros.messages import detections_to_msg
from importance_sampler_ros.synth import (
    CAMERA_FRAME_ID,
    GROUND_TRUTH_TOPIC,
    IMAGE_TOPIC,
    Drive,
    SynthConfig,
)


def write_drive_bag(config: SynthConfig, out: str | Path, storage: str = 'mcap') -> int:
    """Render the drive of `config` into a new bag at `out`; returns the number of frames.

    Each frame gives one sensor_msgs/Image (rgb8, frame_id 'camera') on /camera/image_raw and one
    DetectionArray (the ground truth) on /ground_truth/detections, both logged at the frame's
    stamp. The bag's bytes depend only on the config (and the versions of rosbags and numpy).
    """
    out = Path(out)
    if out.exists():
        raise FileExistsError(f'{out} already exists; choose a new --out path')
    types = msg_types()
    detections_type = msgtype('DetectionArray')
    count = 0
    with BagWriter(out, storage=storage) as writer:
        for frame in Drive(config):
            writer.write(IMAGE_TOPIC, IMAGE_TYPE, frame.stamp_ns,
                         rgb_to_image_msg(frame.image, frame.stamp_ns, CAMERA_FRAME_ID, types))
            writer.write(GROUND_TRUTH_TOPIC, detections_type, frame.stamp_ns,
                         detections_to_msg(frame.truth, types))
            count += 1
    return count
