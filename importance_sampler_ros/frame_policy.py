"""What happens to a frame that cannot go through as it came: one policy, live and offline.

The nodes (detector_node, tracker_node) and replay's pipeline hold the same `FramePolicy`, so a
replayed drive meets the same rules as the car:

- **Bad images** (unknown encoding, step too small, data shorter than step x height, or the
  detector failing on it): the frame is skipped, counted, and a warning is logged at most once per
  `warning_period_s`. Nothing downstream sees it (live, the recorder counts its image unmatched).
- **Time**: a frame whose stamp is not newer than the previous one is skipped (counted, warned);
  a jump back of `reset_on_jump_back_s` or more (a restarted bag or simulation) resets the tracker
  and tracks the frame.

The stamp join that pairs the separate messages of one frame is `stamp_join.StampJoin`.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from importance_sampler_ros.bags.images import ImageError, image_to_rgb
from importance_sampler_ros.bags.messages import stamp_to_ns
from importance_sampler_ros.detection.detections import FrameDetections
from importance_sampler_ros.tracking.relabel import RelabelingTracker, StaleFrameError, TrackedFrame

log = logging.getLogger(__name__)

class Detects(Protocol):
    def detect(self, rgb: np.ndarray, stamp_ns: int, frame_id: str) -> FrameDetections: ...


@dataclass
class PolicyCounts:
    """Frames the policy did not pass on as they came (each a count of frames)."""

    images_skipped: int = 0  # bad image or failed inference: no detections for it
    frames_stale: int = 0  # stamp not newer than the previous frame's: not tracked
    tracker_resets: int = 0  # jumps back in time that reset the tracker


@dataclass
class FramePolicy:
    """See the module docstring. `warn` receives every warning that the rate limit lets through
    (the nodes pass their rclpy logger's `warning`); `clock` is in seconds."""

    reset_on_jump_back_s: float = 5.0  # registry.TrackerNodeSettings has the parameter
    warning_period_s: float = 5.0
    warn: Callable[[str], Any] = log.warning
    clock: Callable[[], float] = time.monotonic
    counts: PolicyCounts = field(default_factory=PolicyCounts)
    _last_warning: float | None = field(default=None, init=False, repr=False)

    @classmethod
    def from_settings(cls, settings: Any, **kwargs: Any) -> FramePolicy:
        """From a node's settings (registry.TrackerNodeSettings, DetectorNodeSettings): the
        fields `reset_on_jump_back_s` and `warning_period_s` it has."""
        known = {name: getattr(settings, name) for name in
                 ('reset_on_jump_back_s', 'warning_period_s') if hasattr(settings, name)}
        return cls(**known, **kwargs)

    def warning(self, text: str) -> None:
        """Log `text` unless a warning went out less than warning_period_s ago."""
        now = self.clock()
        if self._last_warning is None or now - self._last_warning >= self.warning_period_s:
            self._last_warning = now
            self.warn(text)

    # -- images

    def detect(self, detector: Detects, image: Any) -> tuple[FrameDetections, np.ndarray] | None:
        """(detections, RGB pixels) of a sensor_msgs/Image (rclpy or rosbags), or None when the
        frame is skipped (bad image, failed inference)."""
        try:
            rgb = image_to_rgb(image)
            return detector.detect(rgb, stamp_to_ns(image.header), image.header.frame_id), rgb
        except (ImageError, ValueError) as error:
            self._skip_image(image, str(error))
        except RuntimeError as error:  # e.g. CUDA out of memory: skip the frame, keep serving
            self._skip_image(image, f'inference failed: {error}')
        return None

    def _skip_image(self, image: Any, reason: str) -> None:
        self.counts.images_skipped += 1
        stamp = image.header.stamp
        self.warning(f'skipping image {image.width}x{image.height} {image.encoding!r} '
                     f'(stamp {stamp.sec}.{stamp.nanosec:09d}): {reason} '
                     f'[{self.counts.images_skipped} skipped so far]')

    # -- time

    def track(self, tracker: RelabelingTracker, frame: FrameDetections) -> TrackedFrame | None:
        """The tracked frame, or None when it is stale and skipped. ValueError from the tracker
        (malformed arrays) propagates."""
        try:
            return tracker.update(frame)
        except StaleFrameError as error:
            limit_ns = self.reset_on_jump_back_s * 1e9
            if not (limit_ns > 0 and error.previous_ns - error.stamp_ns >= limit_ns):
                self.counts.frames_stale += 1
                self.warning(f'skipping frame: {error} [{self.counts.frames_stale} stale '
                             'frames skipped so far]')
                return None
        self.counts.tracker_resets += 1
        # not rate-limited: a reset is rare and changes every track id that follows
        self.warn(f'time jumped back (frame stamp {frame.stamp_ns} ns, previous '
                  f'{tracker.last_stamp_ns} ns): tracker reset')
        tracker.reset()
        return tracker.update(frame)
