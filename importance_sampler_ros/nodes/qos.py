"""The graph's QoS profiles, in one place (every publisher and subscription takes one of these).

- Images: sensor data (volatile, keep-last, best effort by default). A detector keeps a queue of
  one so that when inference is slower than the camera old frames are dropped, never queued.
- Per-frame results (detections, tracks, relabels, decisions): reliable with a deep queue; every
  frame matters to the tracker and the recorder, and they are small.
- Views (viz_node's debug image, markers, plottable values) and `play`'s non-image topics:
  reliable, shallow.
"""
from __future__ import annotations

from rclpy.qos import (
    DurabilityPolicy,
    HistoryPolicy,
    QoSProfile,
    ReliabilityPolicy,
    qos_profile_sensor_data,
)

RELIABILITY_CHOICES = ('best_effort', 'reliable')


def reliable_qos(depth: int) -> QoSProfile:
    """Reliable, volatile, keep-last `depth`."""
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=depth,
                      reliability=ReliabilityPolicy.RELIABLE,
                      durability=DurabilityPolicy.VOLATILE)


FRAME_QOS = reliable_qos(100)
VIEW_QOS = reliable_qos(10)


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
