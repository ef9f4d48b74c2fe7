"""Helpers shared by the live-graph tests: small drives written as bags, and rclpy listeners."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import yaml
from conftest import wait_until

from importance_sampler_ros import topics, transport
from importance_sampler_ros.bags import bag_io
from importance_sampler_ros.bags.images import rgb_to_image_msg
from importance_sampler_ros.bags.messages import detections_to_msg
from importance_sampler_ros.detection.detections import FrameDetections

REPO = Path(__file__).resolve().parent.parent
IMAGE_TOPIC = topics.IMAGE
DETECTIONS = topics.DETECTIONS
TRACKED = topics.TRACKED_DETECTIONS
RELABELS = topics.RELABELS
DECISIONS = topics.DECISIONS
DEBUG_IMAGE = topics.DEBUG_IMAGE
MARKERS = topics.MARKERS
FRAME_IMPORTANCE = topics.FRAME_IMPORTANCE
KEEP_RATIO = topics.KEEP_RATIO
TRUTH_TOPIC = topics.GROUND_TRUTH
START_NS = 1_700_000_000_000_000_000


def frame_stamps(count: int, rate_hz: float) -> list[int]:
    return [START_NS + round(i * 1e9 / rate_hz) for i in range(count)]


def moving_box_frames(count: int, width: int = 96, height: int = 64, rate_hz: float = 10.0,
                      importances: bool = False, seed: int = 0):
    """(stamp, rgb, truth) per frame: a bright box sliding right on a noisy background."""
    rng = np.random.default_rng(seed)
    for i, stamp in enumerate(frame_stamps(count, rate_hz)):
        rgb = rng.integers(0, 60, (height, width, 3), dtype=np.uint8)
        x1 = 4 + i * 2 % (width - 24)
        box = np.array([[x1, 10, x1 + 16, 30]], np.float32)
        rgb[10:30, x1:x1 + 16] = (220, 40, 40)
        importance = np.array([float(rng.gamma(1.0, 1.0)) if importances else 0.0], np.float32)
        truth = FrameDetections(
            stamp_ns=stamp, frame_id='camera', boxes=box, class_ids=np.array([1]),
            class_names=['car'], scores=np.array([1.0]), importances=importance,
            track_ids=np.array([1]), distances=np.array([20.0 - i * 0.1]),
            frame_importance=float(importance.sum()), model_name='ground_truth')
        yield stamp, rgb, truth


def write_drive(path: Path, frames, truth_topic: str = TRUTH_TOPIC) -> list[int]:
    """Write frames as a bag: images on /camera/image_raw, DetectionArrays on `truth_topic`."""
    types = bag_io.msg_types()
    stamps = []
    with bag_io.BagWriter(path) as writer:
        for stamp, rgb, truth in frames:
            writer.write(IMAGE_TOPIC, bag_io.IMAGE_TYPE, stamp,
                         rgb_to_image_msg(rgb, stamp, 'camera', types))
            writer.write(truth_topic, bag_io.msgtype('DetectionArray'), stamp,
                         detections_to_msg(truth, types))
            stamps.append(stamp)
    return stamps


def cli(*args: str, env: dict | None = None, **popen) -> subprocess.Popen:
    """`importance-sampler ARGS` as a process, with the venv's Python."""
    return subprocess.Popen([sys.executable, '-m', 'importance_sampler_ros.cli', *args],
                            cwd=REPO, env=env, **popen)


def domain_id(offset: int) -> int:
    """A ROS domain for this test process, one per `offset` (0-9, one per test module that
    starts nodes): other test runs on the same machine must not see our topics. Domains 20-219:
    ten per process, picked by process id (two runs collide only when their pids agree mod 20;
    Fast DDS takes domains up to 232)."""
    assert 0 <= offset < 10
    return 20 + (os.getpid() % 20) * 10 + offset


def ros_env(domain_id: int) -> dict[str, str]:
    """The environment of a process a test starts: its domain, on the car's transport (the
    package's Fast DDS profile, which conftest.py gave this process too)."""
    env = transport.graph_environment()
    env['ROS_DOMAIN_ID'] = str(domain_id)
    return env


class Listener:
    """An rclpy node spinning in a thread, recording (receive time, message) per topic."""

    def __init__(self, name: str = 'test_listener') -> None:
        import rclpy
        from rclpy.executors import SingleThreadedExecutor

        self.node = rclpy.create_node(name)
        self.received: dict[str, list[tuple[float, object]]] = {}
        self._lock = threading.Lock()
        self._executor = SingleThreadedExecutor()
        self._executor.add_node(self.node)
        self._thread = threading.Thread(target=self._spin, daemon=True)
        self._running = True

    def subscribe(self, msg_class: type, topic: str, qos=None, raw: bool = False) -> None:
        from rclpy.qos import QoSProfile, ReliabilityPolicy

        qos = qos or QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
        self.received[topic] = []

        def callback(msg, topic=topic):
            with self._lock:
                self.received[topic].append((time.time(), msg))

        self.node.create_subscription(msg_class, topic, callback, qos, raw=raw)

    def start(self) -> Listener:
        self._thread.start()
        return self

    def _spin(self) -> None:
        while self._running:
            self._executor.spin_once(timeout_sec=0.05)

    def messages(self, topic: str) -> list:
        with self._lock:
            return [msg for _, msg in self.received[topic]]

    def close(self) -> None:
        self._running = False
        self._thread.join(timeout=2.0)
        self._executor.remove_node(self.node)
        self.node.destroy_node()


def approaching_object_frames(count: int = 80, width: int = 640, height: int = 192,
                              rate_hz: float = 10.0, seed: int = 1):
    """(stamp, rgb, detections): one object approaching over the first 30 frames, then staying.

    Far away (box under 60 px high) it is detected as a pedestrian with score 0.6, near as a
    cyclist with score 0.95 (the default near field: >= 60 px and score >= 0.9): the tracker's
    near-field vote relabels the far observations. Per-
    detection importances are random (gamma), so the sampler has something to sample by.
    """
    rng = np.random.default_rng(seed)
    for i, stamp in enumerate(frame_stamps(count, rate_hz)):
        size = min(10.0 + 3.0 * i, 100.0)
        cx, bottom = 300.0 + 2.0 * min(i, 30), 120.0 + 0.6 * min(i, 30)
        box = np.array([[cx - size / 4, bottom - size, cx + size / 4, bottom]], np.float32)
        rgb = rng.integers(0, 40, (height, width, 3), dtype=np.uint8)
        x1, y1, x2, y2 = (int(v) for v in box[0])
        rgb[max(y1, 0):y2, max(x1, 0):x2] = (200, 200, 60)
        near = size >= 60.0
        importance = np.array([float(rng.gamma(0.7, 1.0))], np.float32)
        detections = FrameDetections(
            stamp_ns=stamp, frame_id='camera', boxes=box,
            class_ids=np.array([5 if near else 4]),
            class_names=['cyclist' if near else 'pedestrian'],
            scores=np.array([0.95 if near else 0.6]), importances=importance,
            frame_importance=float(importance.sum()), model_name='recorded')
        yield stamp, rgb, detections


def params_file(tmp_path: Path, **sections: dict) -> Path:
    """config/importance_sampler.yaml with some values changed."""
    document = yaml.safe_load((REPO / 'config' / 'importance_sampler.yaml').read_text())
    for node, values in sections.items():
        document[node]['ros__parameters'].update(values)
    path = tmp_path / 'params.yaml'
    path.write_text(yaml.safe_dump(document))
    return path


def drive_messages(path: Path) -> dict[int, bytes]:
    """stamp -> image CDR of a drive bag."""
    return {m.stamp_ns: m.rawdata for m in bag_io.read_messages(path, [IMAGE_TOPIC])}


def recorded_frames(recording: Path) -> dict[int, dict[str, object]]:
    """stamp -> {topic: message (image: raw CDR)} over every split of a recording."""
    stats = json.loads((recording / 'stats.json').read_text())
    frames: dict[int, dict[str, object]] = {}
    for split in stats['splits']:
        for message in bag_io.read_messages(split):  # rosbags AnyReader
            value = message.rawdata if message.topic == IMAGE_TOPIC else message.decode()
            frames.setdefault(message.stamp_ns, {})[message.topic] = value
    return frames


class Graph:
    """`importance-sampler up` plus a listener on its outputs, in one ROS domain."""

    def __init__(self, tmp_path: Path, domain: int, up_args: list[str], visualize: bool):
        from importance_sampler_ros.msg import DetectionArray, RelabelArray, SampleDecision
        from sensor_msgs.msg import Image
        from std_msgs.msg import Float32
        from visualization_msgs.msg import MarkerArray

        self.env = ros_env(domain)
        self.listener = Listener('e2e_listener')
        for msg_class, topic in ((DetectionArray, DETECTIONS), (DetectionArray, TRACKED),
                                 (RelabelArray, RELABELS), (SampleDecision, DECISIONS)):
            self.listener.subscribe(msg_class, topic)
        if visualize:
            for msg_class, topic in ((Image, DEBUG_IMAGE), (MarkerArray, MARKERS),
                                     (Float32, FRAME_IMPORTANCE), (Float32, KEEP_RATIO)):
                self.listener.subscribe(msg_class, topic)
        self.listener.start()
        self.log = (tmp_path / 'up.log').open('w+')
        self.up = cli('up', *up_args, *(['--visualize'] if visualize else []), env=self.env,
                      stdout=self.log, stderr=subprocess.STDOUT)

    def count(self, topic: str) -> int:
        return len(self.listener.messages(topic))

    def wait_ready(self, image_subscribers: int, timeout_s: float = 90.0) -> None:
        node = self.listener.node
        wait_until(lambda: node.count_subscribers(IMAGE_TOPIC) >= image_subscribers
                   and node.count_subscribers(TRACKED) >= 2  # recorder + this listener
                   and node.count_subscribers(DETECTIONS) >= 1
                   and node.count_publishers(DECISIONS) >= 1,
                   'graph start-up', timeout_s, process=self.up)

    def play(self, drive: Path, *args: str, subscribers: int) -> dict:
        summary = drive.parent / 'play.json'
        player = cli('play', str(drive), '--wait-subscribers', str(subscribers), '--settle', '3',
                     '--wait-timeout', '60',
                     '--summary-json', str(summary), *args, env=self.env)
        assert player.wait(timeout=150) == 0
        result = json.loads(summary.read_text())
        assert result['subscribers_at_start'] >= subscribers, 'the player did not see the graph'
        return result

    def stop(self) -> str:
        if self.up.poll() is None:
            self.up.send_signal(signal.SIGINT)
            try:
                self.up.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.up.kill()
                self.up.wait()
        self.listener.close()
        self.log.seek(0)
        log = self.log.read()
        print(log)  # shown by pytest when the test fails
        return log
