"""viz_node: RViz / Foxglove views of the pipeline (off on the vehicle unless asked for).

Subscribes (topic, QoS):
  image_topic (/camera/image_raw)            sensor_msgs/Image   sensor data: best effort
                                                                 (image_reliability), depth 1
  /importance_sampler/tracked_detections     DetectionArray      reliable, depth 10
  /importance_sampler/relabels               RelabelArray        reliable, depth 10
  /importance_sampler/decisions              SampleDecision      reliable, depth 10
Publishes (reliable, depth 10 unless said):
  /importance_sampler/debug_image            sensor_msgs/Image (rgb8, the frame's header),
                                             depth 2: boxes coloured by importance, labels,
                                             relabel marks, frame importance and keep ratio
  /importance_sampler/markers                visualization_msgs/MarkerArray (short lifetimes)
  /importance_sampler/frame_importance       std_msgs/Float32 per frame with detections
  /importance_sampler/keep_ratio             std_msgs/Float32, running share of kept frames,
                                             per decision

Image and detections are paired by header stamp (stamp_join.StampJoin); a frame is drawn once its
image, its tracked detections and its RelabelArray are in (or relabel_wait_s after the detections,
without relabels). The debug image and markers are only drawn while someone subscribes to them.
"""
from __future__ import annotations

import time
from types import SimpleNamespace

from builtin_interfaces.msg import Duration, Time
from geometry_msgs.msg import Point, Pose, Quaternion, Vector3
from rclpy.node import Node
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import ColorRGBA, Float32, Header
from visualization_msgs.msg import Marker, MarkerArray, MeshFile

from importance_sampler_ros import topics
from importance_sampler_ros.bags import images, messages
from importance_sampler_ros.detection.detections import FrameDetections
from importance_sampler_ros.msg import DetectionArray, RelabelArray, SampleDecision
from importance_sampler_ros.nodes.message_types import rclpy_types
from importance_sampler_ros.nodes.parameters import declare_parameters, run_node
from importance_sampler_ros.nodes.qos import VIEW_QOS, image_qos, reliable_qos
from importance_sampler_ros.registry import NODES
from importance_sampler_ros.stamp_join import JoinedFrame, StampJoin
from importance_sampler_ros.viz import drawing as visualization
from importance_sampler_ros.viz.config import VizConfig

TRACKED_DETECTIONS_TOPIC = topics.TRACKED_DETECTIONS
RELABELS_TOPIC = topics.RELABELS
DECISIONS_TOPIC = topics.DECISIONS
DEBUG_IMAGE_TOPIC = topics.DEBUG_IMAGE
MARKERS_TOPIC = topics.MARKERS
FRAME_IMPORTANCE_TOPIC = topics.FRAME_IMPORTANCE
KEEP_RATIO_TOPIC = topics.KEEP_RATIO


def marker_types() -> SimpleNamespace:
    """The rclpy message classes visualization.marker_array needs."""
    return SimpleNamespace(
        Marker=Marker, MarkerArray=MarkerArray, MeshFile=MeshFile,
        CompressedImage=CompressedImage, Point=Point, Pose=Pose, Quaternion=Quaternion,
        Vector3=Vector3, ColorRGBA=ColorRGBA, Duration=Duration, Header=Header, Time=Time,
        primitive_array=rclpy_types().primitive_array,
    )


class VizNode(Node):
    def __init__(self) -> None:
        super().__init__('viz_node')
        self.params = declare_parameters(self, NODES['viz_node']).of(VizConfig)
        self.scale = visualization.ImportanceScale(
            self.params.importance_color_max, self.params.importance_decay)
        self.keep_ratio = visualization.RunningKeepRatio(self.params.keep_ratio_window)
        self.types = rclpy_types()
        self.marker_types = marker_types()
        # image + tracked detections, awaiting the RelabelArray, by header stamp
        self.join = StampJoin(('image', 'detections'), ('relabels',), timeout_s=None,
                              awaited_s=self.params.relabel_wait_s,
                              max_pending=self.params.cache_frames)
        self.last_decision = ''
        self.frames_drawn = 0

        reliable = VIEW_QOS
        camera_qos = image_qos(self.params.image_reliability, qos_profile_sensor_data.depth)
        self.debug_image_pub = self.create_publisher(
            Image, DEBUG_IMAGE_TOPIC, reliable_qos(2))
        self.markers_pub = self.create_publisher(MarkerArray, MARKERS_TOPIC, reliable)
        self.frame_importance_pub = self.create_publisher(Float32, FRAME_IMPORTANCE_TOPIC, reliable)
        self.keep_ratio_pub = self.create_publisher(Float32, KEEP_RATIO_TOPIC, reliable)
        self.create_subscription(Image, self.params.image_topic, self.on_image, camera_qos)
        self.create_subscription(DetectionArray, TRACKED_DETECTIONS_TOPIC, self.on_detections,
                                 reliable)
        self.create_subscription(RelabelArray, RELABELS_TOPIC, self.on_relabels, reliable)
        self.create_subscription(SampleDecision, DECISIONS_TOPIC, self.on_decision, reliable)
        self.create_timer(0.05, self.flush_waiting)
        self.get_logger().info(
            f'drawing {TRACKED_DETECTIONS_TOPIC} on {self.params.image_topic} -> '
            f'{DEBUG_IMAGE_TOPIC}, {MARKERS_TOPIC}')

    # -- inputs

    def on_image(self, msg: Image) -> None:
        self._draw_all(self.join.add('image', messages.stamp_to_ns(msg.header), msg,
                                     time.monotonic()))

    def on_detections(self, msg: DetectionArray) -> None:
        try:
            det = messages.detections_from_msg(msg)
        except (ValueError, TypeError) as error:
            self.get_logger().error(f'bad DetectionArray ignored: {error}')
            return
        self.frame_importance_pub.publish(Float32(data=float(det.frame_importance)))
        self.scale.update(det.importances.tolist())
        self._draw_all(self.join.add('detections', det.stamp_ns, det, time.monotonic()))

    def on_relabels(self, msg: RelabelArray) -> None:
        self._draw_all(self.join.add('relabels', messages.stamp_to_ns(msg.header),
                                     visualization.relabel_marks(msg), time.monotonic()))

    def on_decision(self, msg: SampleDecision) -> None:
        ratio = self.keep_ratio.add(bool(msg.kept))
        self.keep_ratio_pub.publish(Float32(data=float(ratio)))
        self.last_decision = (f'last decision: {"kept" if msg.kept else "dropped"} '
                              f'({msg.reason}, q={msg.probability:.3f})')

    # -- drawing

    def flush_waiting(self) -> None:
        """Draw frames whose RelabelArray did not come within relabel_wait_s."""
        self._draw_all(self.join.expire(time.monotonic()))

    def _draw_all(self, frames: list[JoinedFrame]) -> None:
        for frame in frames:
            self._draw(frame.stamp_ns, frame.parts['image'], frame.parts['detections'],
                       frame.get('relabels') or {})

    def _draw(self, stamp_ns: int, image: Image, det: FrameDetections,
              relabels: dict[int, visualization.RelabelMark]) -> None:
        want_image = self.debug_image_pub.get_subscription_count() > 0
        want_markers = self.markers_pub.get_subscription_count() > 0
        if not (want_image or want_markers):
            return
        try:
            rgb = images.image_to_rgb(image)
        except images.ImageError as error:
            self.get_logger().error(f'image at {stamp_ns} ns not drawn: {error}',
                                    throttle_duration_sec=5.0)
            return
        if want_image:
            status = [f'frame importance {det.frame_importance:.3g} ({det.aggregation})',
                      f'keep ratio {self.keep_ratio.value:.3f} '
                      f'({self.keep_ratio.kept}/{self.keep_ratio.decided})']
            if self.last_decision:
                status.append(self.last_decision)
            drawn = visualization.draw_debug_image(
                rgb, det, importance_scale=self.scale.value, relabels=relabels,
                status_lines=status, line_width=self.params.line_width,
                font_size=self.params.font_size)
            out = images.rgb_to_image_msg(drawn, stamp_ns, str(image.header.frame_id),
                                          self.types)
            self.debug_image_pub.publish(out)
        if want_markers:
            camera = visualization.CameraModel(rgb.shape[1], rgb.shape[0],
                                               self.params.focal_length_px)
            self.markers_pub.publish(visualization.marker_array(
                det, self.marker_types, camera=camera, importance_scale=self.scale.value,
                relabels=relabels, lifetime_s=self.params.marker_lifetime_s,
                default_depth_m=self.params.marker_depth_m))
        self.frames_drawn += 1


def main(args: list[str] | None = None) -> int:
    return run_node(VizNode, 'viz_node', args)


if __name__ == '__main__':
    raise SystemExit(main())
