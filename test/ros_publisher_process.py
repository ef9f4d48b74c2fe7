"""Run as a separate process by test_messages.py: publishes one sample of every message type.

Usage: python ros_publisher_process.py SECONDS. Publishes each sample on /samples/<Type> every
0.1 s (reliable, transient-local) until SECONDS have passed.
"""
import sys
import time

import rclpy
from message_samples import sample_messages
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy

from importance_sampler_ros.nodes.message_types import rclpy_types


def main() -> None:
    seconds = float(sys.argv[1])
    rclpy.init()
    node = rclpy.create_node('sample_publisher')
    qos = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                     durability=DurabilityPolicy.TRANSIENT_LOCAL)
    samples = sample_messages(rclpy_types())
    publishers = {name: node.create_publisher(type(msg), f'/samples/{name}', qos)
                  for name, msg in samples.items()}
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for name, msg in samples.items():
            publishers[name].publish(msg)
        rclpy.spin_once(node, timeout_sec=0.1)
    node.destroy_node()
    rclpy.shutdown()


if __name__ == '__main__':
    main()
