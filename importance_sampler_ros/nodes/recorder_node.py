"""recorder_node: importance-samples camera frames into a split rosbag2 (recorder.Recorder).

Subscribes (topic parameter, default; QoS):
  image_topic       /camera/image_raw                       sensor_msgs/Image, raw CDR bytes;
                                                            sensor data QoS (volatile, best
                                                            effort unless image_reliability =
                                                            reliable), depth image_queue_depth
  detections_topic  /importance_sampler/tracked_detections  DetectionArray, raw; reliable, depth 100
  relabels_topic    /importance_sampler/relabels            RelabelArray, raw; reliable, depth 100
Publishes:
  decisions_topic   /importance_sampler/decisions           SampleDecision of every frame once its
                                                            decision is final; reliable, depth 100

The CDR bytes of a raw subscription go into the bag as they are, after the recorder core has
checked that they decode (an image whose data does not fit its size is rejected, never written;
their header stamp is read from the bytes). An image and a DetectionArray are joined by exact
header stamp (stamp_join.StampJoin, the join replay uses too); either waits at most
`join_timeout_s` for the other, then it is counted unmatched and dropped. A matched frame also
waits (at most `join_timeout_s`) for the RelabelArray of its stamp, which goes to the recorder
first, as in replay. Bad input is logged
(throttled) and skipped. A write error (disk full, I/O error) stops recording with one error line;
the node keeps running, deciding and publishing decisions and logging its statistics, and exits
with `write_error_exit_status` (0 unless set). SIGINT / SIGTERM: the frames still in the ring
buffer are decided (and written unless recording stopped), the open split is closed, and the
statistics go to the log and to <recording>/stats.json (written atomically). Parameters:
registry.NODES['recorder_node'] (RecorderConfig with its SamplerConfig, and
RecorderNodeSettings).
"""
from __future__ import annotations

import sys
import time
from typing import Any

from rclpy.node import Node

from importance_sampler_ros.bags.bag_io import header_from_cdr
from importance_sampler_ros.nodes.image_watch import watch_topic
from importance_sampler_ros.nodes.message_types import rclpy_types
from importance_sampler_ros.nodes.parameters import declare_parameters, run_node
from importance_sampler_ros.nodes.qos import FRAME_QOS, image_qos
from importance_sampler_ros.recording.config import RecorderConfig
from importance_sampler_ros.recording.recorder import (
    Recorder,
    RecorderError,
    RecordingStoppedError,
)
from importance_sampler_ros.registry import NODES, RecorderNodeSettings
from importance_sampler_ros.stamp_join import JoinedFrame, StampJoin

NODE_NAME = 'recorder_node'
_WARNING_PERIOD_S = 5.0


class RecorderNode(Node):
    """Joins images with tracked detections and feeds the recorder core."""

    def __init__(self, **node_options: Any) -> None:
        super().__init__(NODE_NAME, **node_options)
        config = declare_parameters(self, NODES[NODE_NAME])
        self.params = p = config.of(RecorderNodeSettings)
        recording = config.of(RecorderConfig)
        self.recorder = Recorder(recording)
        try:
            self._start(p, recording)
        except BaseException:
            # e.g. Ctrl-C while starting up (rclpy shuts the context down under us): the
            # recording directory exists, so it gets its stats.json, and says so in one line
            self.recorder.close(extra_stats={})
            print(f'[recorder_node] stopped while starting; recording closed: '
                  f'{self.recorder.recording_dir}', file=sys.stderr)
            raise

    def _start(self, p: RecorderNodeSettings, recording: RecorderConfig) -> None:
        self.types = rclpy_types()
        # image and DetectionArray CDR by header stamp, on the monotonic clock; a frame also
        # waits (at most join_timeout_s) for its RelabelArray, which the tracker sends every frame
        self.join = StampJoin(('image', 'DetectionArray'), ('RelabelArray',),
                              timeout_s=p.join_timeout_s, awaited_s=p.join_timeout_s)
        self.counts = dict.fromkeys(
            ('images_received', 'detections_received', 'frames_matched', 'unmatched_images',
             'unmatched_detections', 'bad_input', 'decisions_published'), 0)
        self.stopped = False

        self.decisions_pub = self.create_publisher(
            self.types.SampleDecision, p.decisions_topic, FRAME_QOS)
        self.create_subscription(self.types.Image, recording.image_topic, self.on_image,
                                 image_qos(p.image_reliability, p.image_queue_depth), raw=True)
        self.create_subscription(self.types.DetectionArray, p.detections_topic,
                                 self.on_detections, FRAME_QOS, raw=True)
        self.create_subscription(self.types.RelabelArray, p.relabels_topic, self.on_relabels,
                                 FRAME_QOS, raw=True)
        self.create_timer(min(0.1, max(p.join_timeout_s / 2, 0.01)), self.expire_pending)
        self.image_watch = watch_topic(self, recording.image_topic,
                                       lambda: self.counts['images_received'],
                                       lambda text: self._log('warning', text))
        if p.stats_period_s > 0:
            self.create_timer(p.stats_period_s, self.log_stats)
        self.get_logger().info(
            f'recording {recording.image_topic} + {p.detections_topic} (+ {p.relabels_topic}) '
            f'into {self.recorder.recording_dir} ({recording.storage}), keep ratio '
            f'{recording.sampler.keep_ratio}'
            + (f', budget {recording.sampler.bytes_per_hour:.3g} B/h'
               if recording.sampler.bytes_per_hour else '')
            + f'; decisions on {p.decisions_topic}')

    # -- inputs

    def on_image(self, data: bytes) -> None:
        self.counts['images_received'] += 1
        self._arrive(data, 'image')

    def on_detections(self, data: bytes) -> None:
        self.counts['detections_received'] += 1
        self._arrive(data, 'DetectionArray')

    def _arrive(self, data: bytes, what: str) -> None:
        try:
            stamp_ns, _ = header_from_cdr(data)
        except ValueError as error:
            self._bad_input(f'{what} ignored: {error}')
            return
        self._add_frames(self.join.add(what, stamp_ns, bytes(data), time.monotonic()))

    def _add_frames(self, frames: list[JoinedFrame]) -> None:
        self._count_unmatched()
        for frame in frames:
            self.counts['frames_matched'] += 1
            self._add_frame(frame.parts['image'], frame.parts['DetectionArray'], frame.stamp_ns)

    def _add_frame(self, image: bytes, detections: bytes, stamp_ns: int) -> None:
        try:
            results = self.recorder.add_frame(image, detections)
        except RecordingStoppedError as error:
            self._stop(error)
            results = error.results
        except (ValueError, TypeError) as error:  # malformed CDR, mismatched stamps, NaN g
            self._bad_input(f'frame with stamp {stamp_ns} ns ignored: '
                            f'{type(error).__name__}: {error}')
            return
        self._publish(results)

    def _publish(self, results: list) -> None:
        for result in results:
            self.decisions_pub.publish(result.decision_cdr)
            self.counts['decisions_published'] += 1

    def on_relabels(self, data: bytes) -> None:
        """The core gets a frame's relabels after every earlier frame (those they name) and
        before the frame itself, which waits for them: the order replay feeds it."""
        try:
            stamp_ns, _ = header_from_cdr(data)
            self._add_frames(self.join.release_older(stamp_ns))
            self.recorder.add_relabels(data)
        except RecordingStoppedError as error:
            self._stop(error)
            return
        except (ValueError, TypeError) as error:
            self._bad_input(f'RelabelArray ignored: {type(error).__name__}: {error}')
            return
        self._add_frames(self.join.add('RelabelArray', stamp_ns, True, time.monotonic()))

    # -- housekeeping

    def expire_pending(self) -> None:
        """Timer: give up join partners that waited too long; flush the bag if due."""
        try:
            self.recorder.flush_if_due()
        except RecordingStoppedError as error:
            self._stop(error)
        self._add_frames(self.join.expire(time.monotonic()))

    def _unmatched(self) -> tuple[int, int]:
        return self.join.unmatched['image'], self.join.unmatched['DetectionArray']

    def _count_unmatched(self) -> None:
        before = self.counts['unmatched_images'], self.counts['unmatched_detections']
        images, detections = self._unmatched()
        self.counts['unmatched_images'], self.counts['unmatched_detections'] = images, detections
        if (images, detections) != before:
            self.get_logger().warning(
                f'{images} images and {detections} detection arrays found no partner with the '
                f'same stamp within join_timeout_s ({self.params.join_timeout_s} s) so far; '
                'dropped', throttle_duration_sec=_WARNING_PERIOD_S)

    def _bad_input(self, text: str) -> None:
        self.counts['bad_input'] += 1
        self.get_logger().warning(f'{text} [{self.counts["bad_input"]} bad inputs so far]',
                                  throttle_duration_sec=_WARNING_PERIOD_S)

    def _stop(self, error: Exception) -> None:
        self.stopped = True
        self._log('error', str(error))

    def _log(self, level: str, text: str) -> None:
        """Log through rclpy while the context lives; after shutdown (close() runs then) rclpy
        cannot publish to /rosout any more, so print instead. rclpy ties a severity to the call
        site (file and line) and raises if one site logs at two levels: one call per level."""
        if not self.context.ok():
            print(f'[{level.upper()}] [{NODE_NAME}]: {text}', file=sys.stderr, flush=True)
        elif level == 'error':
            self.get_logger().error(text)
        elif level == 'warning':
            self.get_logger().warning(text)
        else:
            self.get_logger().info(text)

    def stats(self) -> dict[str, Any]:
        return {**self.recorder.stats(), **self.counts}

    def log_stats(self) -> None:
        s = self.stats()
        text = (
            f'{s["frames"]} frames, {s["kept"]} kept ({s["sampled"]} sampled, {s["relabel"]} '
            f'relabel, {s["budget"]} budget drops), {s["bytes_written"] / 1e6:.1f} MB; '
            f'rho {s["keep_ratio"]:.4f}, R {s["relative_variance"]:.3f} vs uniform '
            f'{s["relative_variance_uniform"]:.3f}; unmatched images {s["unmatched_images"]}, '
            f'detections {s["unmatched_detections"]}; relabel observations late '
            f'{s["relabel_observations_late"]}'
        )
        self._log('info', text + (f'; STOPPED: {s["error"]}' if s['error'] else ''))

    def close(self) -> None:
        """Called once on shutdown (run_node): decide the buffer, close the split, report."""
        self._add_frames(self.join.drain())  # frames still awaiting their relabels
        self._count_unmatched()
        try:
            results = self.recorder.close(extra_stats=self.counts)
        except RecordingStoppedError as error:
            self._stop(error)
            results = error.results
        if self.context.ok():
            self._publish(results)
        self.log_stats()
        self._log('info', f'recording closed: {self.recorder.recording_dir}'
                  + (' (stopped early by a write error)' if self.stopped else ''))


def main(args: list[str] | None = None) -> int:
    nodes: list[RecorderNode] = []

    def make_node() -> RecorderNode:
        nodes.append(RecorderNode())
        return nodes[-1]

    try:
        status = run_node(make_node, 'recorder_node', args)
    except RecorderError as error:
        print(f'[ERROR] recorder_node: {error}', file=sys.stderr)
        return 1
    if status == 0 and nodes and nodes[0].stopped:
        return int(nodes[0].params.write_error_exit_status)
    return status


if __name__ == '__main__':
    sys.exit(main())
