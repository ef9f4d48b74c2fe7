"""The graph's QoS profiles, in one place.

- Images: sensor data (volatile, keep-last, best effort by default). A detector keeps a queue of
  one so that when inference is slower than the camera old frames are dropped, never queued.
- Per-frame results (detections, tracks, relabels, decisions): reliable with a deep queue; every
  frame matters to the tracker and the recorder, and they are small.
"""
from __future__ import annotations

from rclpy.qos import (
    DurabilityPolicy,
    HistoryPolicy,
    QoSProfile,
    ReliabilityPolicy,
    qos_profile_sensor_data,
)

FRAME_QOS = QoSProfile(
    history=HistoryPolicy.KEEP_LAST,
    depth=100,
    reliability=ReliabilityPolicy.RELIABLE,
    durability=DurabilityPolicy.VOLATILE,
)
RELIABILITY_CHOICES = ('best_effort', 'reliable')


def image_qos(reliability: str = 'best_effort', depth: int = 1) -> QoSProfile:
    """Sensor-data QoS for image subscriptions, with the reliability and depth given."""
    if reliability not in RELIABILITY_CHOICES:
        raise ValueError(f'reliability must be one of {RELIABILITY_CHOICES}, got {reliability!r}')
    return QoSProfile(
        history=qos_profile_sensor_data.history,
        depth=depth,
        reliability=(ReliabilityPolicy.RELIABLE if reliability == 'reliable'
                     else ReliabilityPolicy.BEST_EFFORT),
        durability=qos_profile_sensor_data.durability,
    )
