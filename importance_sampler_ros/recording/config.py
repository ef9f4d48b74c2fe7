"""The recorder core's parameters: where and how the sampled bag is written, and the sampler.

The recorder node's ROS-only parameters (subscriptions, log period) are in registry.py.
"""
from __future__ import annotations

from dataclasses import dataclass

from importance_sampler_ros import topics
from importance_sampler_ros.bags.formats import BAG_VERSIONS, DEFAULT_BAG_VERSION, STORAGES
from importance_sampler_ros.params import Settings, nested, param
from importance_sampler_ros.sampling.config import SamplerConfig


def _bag_version(version: int) -> str | None:
    if version in BAG_VERSIONS:
        return None
    return f'rosbag2 metadata version must be one of {BAG_VERSIONS}'


@dataclass(frozen=True)
class RecorderConfig(Settings):
    """Where and how the sampled bag is written.

    Layout: <output_dir>/<bag_name>/<bag_name>_NNNN/, each split a complete rosbag2 bag.
    """

    image_topic: str = param(topics.IMAGE, 'Camera image topic (sensor_msgs/Image), subscribed '
                             'raw; kept images are written to the bag under this name')
    output_dir: str = param('recordings', 'Directory the recording directory is created in')
    bag_name: str = param('', 'Name of the recording directory (and prefix of its splits); '
                          'empty = recording_<UTC time>')
    storage: str = param('mcap', 'rosbag2 storage of each split', choices=STORAGES)
    bag_version: int = param(DEFAULT_BAG_VERSION, 'rosbag2 metadata version of each split: 8 = '
                             'ros2 bag of Humble, Jazzy and Kilted reads it; 9 = Jazzy and later '
                             'only', check=_bag_version)
    split_bytes: int = param(1 << 30, 'Start a new split once the open one holds this many '
                             'bytes; 0 = no size limit', min_value=0)
    split_seconds: float = param(0.0, 'Start a new split once the open one spans this many '
                                 'seconds of header stamps; 0 = no duration limit', min_value=0.0)
    buffer_seconds: float = param(8.0, 'Ring buffer length by header stamps: how long a frame '
                                  'waits for relabels before its decision is final',
                                  min_value=0.0, max_value=3600.0)
    buffer_bytes: int = param(512 << 20, 'Ring buffer bound in bytes (image + detections)',
                              min_value=0)
    flush_interval_s: float = param(1.0, 'Wall-clock seconds between flushes of written data to '
                                    'the file (what a SIGKILL can lose at most); 0 = after '
                                    'every kept frame', min_value=0.0)
    fsync: bool = param(True, 'fsync at every flush and when a split closes (survives power '
                        'loss)')
    relabel_keep_gap_s: float = param(
        1.0, 'Of the buffered frames one relabel names, keep (reason relabel) only those at least '
        'this many seconds apart, from the earliest on; the others carry the relabel if sampled '
        'anyway; 0 = keep them all', min_value=0.0)
    sampler_state: str = param(
        'sampler_state.npz', "File the sampler's learnt scale of g (its window of g^a and "
        'keep-rate lead) is read from at start and written to at close, so that a car that '
        'restarts the recorder every drive keeps one scale across drives instead of learning '
        'it anew (and keeping as many frames of a dull drive as of a hard one; '
        "docs/measurements/frame_scores.md); relative paths are under output_dir; '' = learn "
        'afresh every run')
    sampler: SamplerConfig = nested(SamplerConfig)
