"""viz_node's parameters (drawing, markers, pairing); no numpy / PIL, so registry.py can read it."""
from __future__ import annotations

from dataclasses import dataclass

from importance_sampler_ros import topics
from importance_sampler_ros.params import Settings, param

RELIABILITIES = ('best_effort', 'reliable')


@dataclass(frozen=True)
class VizConfig(Settings):
    """Debug image, markers and plottable values (viz_node runs only with visualize:=true)."""

    importance_color_max: float = param(
        0.0, 'Detection importance drawn in full red; 0 = automatic (decaying maximum of the '
        'importances seen)', min_value=0.0)
    importance_decay: float = param(
        0.99, 'Per-frame decay of the automatic importance maximum (ignored when '
        'importance_color_max > 0)', min_value=0.0, max_value=1.0)
    line_width: int = param(2, 'Box outline width in the debug image, in pixels',
                            min_value=1, max_value=20)
    font_size: int = param(12, 'Label text height in the debug image, in pixels',
                           min_value=6, max_value=64)
    marker_lifetime_s: float = param(0.5, 'Lifetime of the markers, in seconds (short, so that '
                                     'stale ones vanish)', min_value=0.01, max_value=60.0)
    focal_length_px: float = param(721.5, 'Camera focal length in pixels, to place markers in '
                                   'the camera optical frame', min_value=1.0)
    marker_depth_m: float = param(10.0, 'Depth at which markers of detections with unknown '
                                  'distance are drawn, in metres', min_value=0.1, max_value=1000.0)
    image_topic: str = param(topics.IMAGE, 'sensor_msgs/Image topic to draw on')
    cache_frames: int = param(30, 'Images (and detections) held while waiting for the matching '
                              'message', min_value=1, max_value=1000)
    relabel_wait_s: float = param(0.2, 'How long a frame with detections waits for its '
                                  'RelabelArray before it is drawn without one, in seconds',
                                  min_value=0.0, max_value=10.0)
    keep_ratio_window: int = param(0, 'Decisions over which keep_ratio is computed; 0 = since '
                                   'start', min_value=0)
    image_reliability: str = param('best_effort', 'QoS reliability of the image subscription '
                                   '(sensor data QoS otherwise)', choices=RELIABILITIES)
