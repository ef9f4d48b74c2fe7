"""detector_node: camera images in, detections with last-layer importance out.

Subscribes sensor_msgs/Image with sensor-data QoS and a queue of one (when inference is slower
than the camera, old frames are dropped, never queued), runs the Detector, and publishes a
DetectionArray whose header is the image's. Images that cannot be converted (or fail inference)
are skipped with a rate-limited warning by frame_policy.FramePolicy, as replay skips them; the
node keeps running. Parameters: registry.NODES['detector_node']
(DetectorConfig and DetectorNodeSettings; defaults in config/importance_sampler.yaml).
"""
from __future__ import annotations

import sys

from rclpy.node import Node

from importance_sampler_ros.bags.messages import detections_to_msg
from importance_sampler_ros.detection.config import DetectorConfig
from importance_sampler_ros.detection.detector import CheckpointError, Detector, DetectorError
from importance_sampler_ros.frame_policy import FramePolicy
from importance_sampler_ros.nodes.image_watch import watch_topic
from importance_sampler_ros.nodes.message_types import rclpy_types
from importance_sampler_ros.nodes.parameters import declare_parameters, run_node
from importance_sampler_ros.nodes.qos import image_qos
from importance_sampler_ros.params import ParameterError
from importance_sampler_ros.registry import NODES, DetectorNodeSettings

NODE_NAME = 'detector_node'
# Best effort and a queue of one: a slow detector drops old frames instead of queueing them.
IMAGE_QOS = image_qos('best_effort', depth=1)


class DetectorNode(Node):
    """Image -> Detector -> DetectionArray."""

    def __init__(self, **node_options) -> None:
        super().__init__(NODE_NAME, **node_options)
        config = declare_parameters(self, NODES[NODE_NAME])
        self.params = config.of(DetectorNodeSettings)
        try:
            self.detector = Detector(config.of(DetectorConfig))
        except (CheckpointError, DetectorError, ValueError) as error:
            raise ParameterError(f'detector cannot start: {error}') from error
        self.types = rclpy_types()
        self.frames_processed = 0
        self.images_received = 0
        self.policy = FramePolicy.from_settings(self.params, warn=self.get_logger().warning)
        self.publisher = self.create_publisher(
            self.types.DetectionArray, self.params.detections_topic, 10
        )
        self.subscription = self.create_subscription(
            self.types.Image, self.params.image_topic, self.on_image, IMAGE_QOS
        )
        self.image_watch = watch_topic(self, self.params.image_topic,
                                       lambda: self.images_received, self.get_logger().warning)
        warm_up_ms = self.detector.warm_up()
        self.get_logger().info(
            f'{self.detector.model_name} on {self.detector.device} '
            f'(checkpoint {self.detector.checkpoint}, warm-up inference {warm_up_ms:.0f} ms): '
            f'{self.params.image_topic} -> {self.params.detections_topic}'
        )

    @property
    def images_skipped(self) -> int:
        return self.policy.counts.images_skipped

    def on_image(self, msg) -> None:
        self.images_received += 1
        result = self.policy.detect(self.detector, msg)
        if result is None:  # skipped (and warned about) as replay skips it
            return
        out = detections_to_msg(result[0], self.types)
        out.header = msg.header
        self.publisher.publish(out)
        self.frames_processed += 1


def main(args: list[str] | None = None) -> int:
    return run_node(DetectorNode, 'detector_node', args)


if __name__ == '__main__':
    sys.exit(main())
