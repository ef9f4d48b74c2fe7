"""tracker_node: detections in; tracks, detections with track ids and near-to-far relabels out.

Subscribes the DetectionArray of every processed frame and runs `relabel.RelabelingTracker` (SORT +
relabels) on it. For each frame it publishes the confirmed tracks (TrackArray), the same
DetectionArray with track ids filled in (header and every other field unchanged; 0 = not part of a
confirmed track) and a RelabelArray with the relabels that frame triggered (often empty); all three
carry the frame's header. Frames whose stamp is not newer than the last processed one are skipped,
except after a jump back of `reset_on_jump_back_s` or more (a restarted bag or simulation), which
resets the tracker (frame_policy.FramePolicy, as in replay); detections with NaN or inverted boxes
are not tracked (track id 0), and so are those beyond the tracker's `max_detections` / `max_tracks`
caps (the cost of a frame stays bounded). Skips and caps are logged at most once per
`warning_period_s`; the node keeps running. Candidates below the detector's threshold
(DetectionArray.candidates) feed the tracker's second association round; only the detections are
published. Parameters: registry.NODES['tracker_node'] (TrackerConfig, RelabelConfig,
TrackerNodeSettings).
"""
from __future__ import annotations

import sys

from rclpy.node import Node

from importance_sampler_ros.bags.messages import detections_from_msg, stamp_to_ns
from importance_sampler_ros.bags.tracking_messages import relabels_to_msg, tracks_to_msg
from importance_sampler_ros.frame_policy import FramePolicy
from importance_sampler_ros.nodes.message_types import rclpy_types
from importance_sampler_ros.nodes.parameters import declare_parameters, run_node
from importance_sampler_ros.nodes.qos import FRAME_QOS
from importance_sampler_ros.registry import NODES, TrackerNodeSettings
from importance_sampler_ros.tracking.config import RelabelConfig, TrackerConfig
from importance_sampler_ros.tracking.relabel import RelabelingTracker

NODE_NAME = 'tracker_node'


class TrackerNode(Node):
    """DetectionArray -> RelabelingTracker -> TrackArray, DetectionArray, RelabelArray."""

    def __init__(self, **node_options) -> None:
        super().__init__(NODE_NAME, **node_options)
        config = declare_parameters(self, NODES[NODE_NAME])
        self.params = config.of(TrackerNodeSettings)
        sort = config.of(TrackerConfig)
        self.tracker = RelabelingTracker(sort, config.of(RelabelConfig))
        self.types = rclpy_types()
        self.frames_processed = 0
        self.frames_malformed = 0
        self.policy = FramePolicy.from_settings(self.params, warn=self.get_logger().warning)
        self.detections_ignored = 0
        self.detections_dropped = 0
        self.relabels_published = 0
        p = self.params
        self.tracks_pub = self.create_publisher(self.types.TrackArray, p.tracks_topic, FRAME_QOS)
        self.detections_pub = self.create_publisher(
            self.types.DetectionArray, p.tracked_detections_topic, FRAME_QOS)
        self.relabels_pub = self.create_publisher(
            self.types.RelabelArray, p.relabels_topic, FRAME_QOS)
        self.subscription = self.create_subscription(
            self.types.DetectionArray, p.detections_topic, self.on_detections, FRAME_QOS)
        self.get_logger().info(
            f'{p.detections_topic} -> {p.tracks_topic}, {p.tracked_detections_topic}, '
            f'{p.relabels_topic} (iou_threshold {sort.iou_threshold}, max_age {sort.max_age}, '
            f'min_hits {sort.min_hits})')

    def on_detections(self, msg) -> None:
        stamp_ns = stamp_to_ns(msg.header)
        try:
            tracked = self.policy.track(self.tracker, detections_from_msg(msg))
        except ValueError as error:  # e.g. inconsistent arrays in a malformed message
            self.frames_malformed += 1
            self._warn(f'skipping frame with stamp {stamp_ns} ns: {error}')
            return
        if tracked is None:  # stale: skipped (and warned about) by the policy, as in replay
            return
        if tracked.dropped:
            self.detections_dropped += tracked.dropped
            self._warn(f'frame with stamp {stamp_ns} ns: {tracked.dropped} detections or '
                       'candidates not tracked (over max_detections per frame or max_tracks)')
        if len(tracked.ignored):
            self.detections_ignored += len(tracked.ignored)
            self._warn(f'frame with stamp {stamp_ns} ns: detections {tracked.ignored.tolist()} '
                       'have NaN or inverted boxes and are not tracked')
        for detection, track_id in zip(
                msg.detections, tracked.detections.track_ids.tolist(), strict=True):
            detection.track_id = track_id
        header = msg.header
        tracks = tracks_to_msg(stamp_ns, header.frame_id, tracked.tracks, self.types)
        relabels = relabels_to_msg(stamp_ns, header.frame_id, tracked.relabels, self.types)
        tracks.header = relabels.header = header
        self.detections_pub.publish(msg)
        self.tracks_pub.publish(tracks)
        self.relabels_pub.publish(relabels)
        self.frames_processed += 1
        self.relabels_published += len(tracked.relabels)

    @property
    def frames_skipped(self) -> int:
        return self.policy.counts.frames_stale + self.frames_malformed

    def _warn(self, text: str) -> None:
        self.policy.warning(f'{text} [{self.frames_skipped} frames skipped, '
                            f'{self.detections_ignored} detections ignored so far]')


def main(args: list[str] | None = None) -> int:
    return run_node(TrackerNode, 'tracker_node', args)


if __name__ == '__main__':
    sys.exit(main())
