"""detector_node over rclpy: real Image messages in, DetectionArray out, bad images skipped."""
import os
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from conftest import spin_until
from live_graph_fixtures import domain_id

rclpy = pytest.importorskip('rclpy')
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.node import Node  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402

from importance_sampler_ros.detection.detector import (  # noqa: E402
    DEFAULT_CLASS_NAMES,
    build_model,
    save_checkpoint,
)
from importance_sampler_ros.nodes.detector_node import IMAGE_QOS, DetectorNode  # noqa: E402
from importance_sampler_ros.nodes.message_types import rclpy_types  # noqa: E402
from importance_sampler_ros.params import ParameterError  # noqa: E402

pytestmark = pytest.mark.ros
DOMAIN_ID = str(domain_id(5))  # this module's own DDS domain
HEIGHT, WIDTH = 96, 288
FRAME_MIN_BOX_HEIGHT = 12.0  # some of the random model's boxes count toward the frame, some not
IMAGE_TOPIC = '/test_detector_node/image'
DETECTIONS_TOPIC = '/test_detector_node/detections'


@pytest.fixture(scope='module')
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    model = build_model('isr_small', len(DEFAULT_CLASS_NAMES), HEIGHT, WIDTH)
    path = tmp_path_factory.mktemp('node') / 'random_isr_small.pt'
    save_checkpoint(path, model, architecture='isr_small', class_names=DEFAULT_CLASS_NAMES,
                    min_size=HEIGHT, max_size=WIDTH)
    return path


def overrides(checkpoint, **extra):
    values = {'checkpoint': str(checkpoint), 'score_threshold': 0.02,
              'image_topic': IMAGE_TOPIC, 'detections_topic': DETECTIONS_TOPIC, **extra}
    return [Parameter(name, value=value) for name, value in values.items()]


class Harness:
    """The detector node and a test node (image publisher, detections subscriber), one executor."""

    def __init__(self, context, checkpoint):
        self.types = rclpy_types()
        self.detector_node = DetectorNode(context=context, parameter_overrides=overrides(
            checkpoint, frame_min_box_height=FRAME_MIN_BOX_HEIGHT))
        self.node = Node('detector_node_tester', context=context)
        self.publisher = self.node.create_publisher(self.types.Image, IMAGE_TOPIC, IMAGE_QOS)
        self.received = []
        self.node.create_subscription(self.types.DetectionArray, DETECTIONS_TOPIC,
                                      self.received.append, 10)
        self.executor = SingleThreadedExecutor(context=context)
        self.executor.add_node(self.detector_node)
        self.executor.add_node(self.node)
        self.spin_until(lambda: self.publisher.get_subscription_count() > 0
                        and self.detector_node.publisher.get_subscription_count() > 0,
                        'discovery between the test node and the detector node')

    def spin_until(self, condition, what, timeout_s=20.0):
        spin_until(self.executor, condition, what, timeout_s)

    def spin_for(self, seconds, stop=lambda: False):
        until = time.monotonic() + seconds
        while not stop() and time.monotonic() < until:
            self.executor.spin_once(timeout_sec=0.05)

    def image(self, pixels, encoding, stamp_ns, step=None, height=None, width=None):
        pixels = np.ascontiguousarray(pixels, np.uint8)
        rows = pixels.reshape(pixels.shape[0], pixels[0].size if len(pixels) else 0)
        step = rows.shape[1] if step is None else step
        padded = np.zeros((rows.shape[0], max(step, rows.shape[1])), np.uint8)
        padded[:, :rows.shape[1]] = rows
        sec, nanosec = divmod(stamp_ns, 1_000_000_000)
        return self.types.Image(
            header=self.types.Header(stamp=self.types.Time(sec=sec, nanosec=nanosec),
                                     frame_id='camera_front'),
            height=pixels.shape[0] if height is None else height,
            width=pixels.shape[1] if width is None else width,
            encoding=encoding, is_bigendian=0, step=step,
            data=self.types.primitive_array(padded[:, :step].reshape(-1), 'uint8'))

    def detections_for(self, msg):
        """Publish msg (again, while unanswered: best-effort may drop it) and return the answer."""
        stamp = (msg.header.stamp.sec, msg.header.stamp.nanosec)

        def answered():
            return any((m.header.stamp.sec, m.header.stamp.nanosec) == stamp
                       for m in self.received)

        deadline = time.monotonic() + 30.0
        while not answered():
            assert time.monotonic() < deadline, f'no detections for stamp {stamp}'
            self.publisher.publish(msg)
            self.spin_for(2.0, stop=answered)
        return next(m for m in self.received
                    if (m.header.stamp.sec, m.header.stamp.nanosec) == stamp)

    def close(self):
        self.executor.shutdown()
        self.detector_node.destroy_node()
        self.node.destroy_node()


@pytest.fixture
def harness(context, checkpoint):
    harness = Harness(context, checkpoint)
    yield harness
    harness.close()


def test_detections_are_published_with_the_image_header(harness):
    rgb = np.random.default_rng(0).integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8)
    out = harness.detections_for(harness.image(rgb, 'rgb8', stamp_ns=1_700_000_000_123_456_789))
    assert (out.header.stamp.sec, out.header.stamp.nanosec) == (1_700_000_000, 123_456_789)
    assert out.header.frame_id == 'camera_front'
    assert len(out.detections) > 0
    assert out.model_name == 'isr_small:random_isr_small.pt'
    assert out.aggregation == 'sum' and out.inference_ms > 0
    importances = np.array([d.importance for d in out.detections])
    assert np.all(importances > 0)
    tall = np.array([d.box.y2 - d.box.y1 >= FRAME_MIN_BOX_HEIGHT for d in out.detections])
    assert 0 < tall.sum() < len(tall)
    assert out.frame_importance == pytest.approx(importances[tall].sum(), rel=1e-4)
    assert {d.class_name for d in out.detections} <= set(DEFAULT_CLASS_NAMES[1:])

    # the same pixels as bgr8 with padded rows give the same detections
    bgr = harness.image(rgb[:, :, ::-1], 'bgr8', stamp_ns=2_000_000_000, step=WIDTH * 3 + 8)
    again = harness.detections_for(bgr)
    assert [d.class_id for d in again.detections] == [d.class_id for d in out.detections]
    np.testing.assert_allclose([d.score for d in again.detections],
                               [d.score for d in out.detections], rtol=1e-5)


def test_bad_images_are_skipped_and_the_node_keeps_working(harness):
    rng = np.random.default_rng(1)
    rgb = rng.integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8)
    bad = [
        harness.image(rgb, 'yuv422', stamp_ns=10),  # unsupported encoding
        harness.image(np.zeros((0, 0, 3), np.uint8), 'rgb8', stamp_ns=11),  # empty
        harness.image(rgb, 'rgb8', stamp_ns=12, step=WIDTH * 3 - 3),  # step < width * 3
        harness.image(rgb[: HEIGHT // 2], 'rgb8', stamp_ns=13, height=HEIGHT),  # data too short
    ]
    node = harness.detector_node
    for count, msg in enumerate(bad, start=1):
        deadline = time.monotonic() + 20.0
        while node.images_skipped < count:  # best effort may drop one: publish until it arrived
            assert time.monotonic() < deadline, f'bad image {count} never reached the node'
            harness.publisher.publish(msg)
            harness.spin_for(1.0, stop=lambda count=count: node.images_skipped >= count)
    good = harness.detections_for(harness.image(rgb, 'rgb8', stamp_ns=14))
    assert len(good.detections) > 0
    stamps = {m.header.stamp.nanosec for m in harness.received}
    assert stamps == {14}, 'bad images must produce no DetectionArray'
    assert node.frames_processed >= 1


def test_mono8_and_bgra8_are_accepted(harness):
    gray = np.random.default_rng(2).integers(0, 256, (HEIGHT, WIDTH), dtype=np.uint8)
    mono = harness.detections_for(harness.image(gray[:, :, None], 'mono8', stamp_ns=20))
    bgra = np.stack([gray, gray, gray, np.full_like(gray, 255)], axis=2)
    four = harness.detections_for(harness.image(bgra, 'bgra8', stamp_ns=21))
    assert [d.class_id for d in mono.detections] == [d.class_id for d in four.detections]


def test_a_checkpoint_that_does_not_fit_stops_the_node_with_a_clear_error(context, checkpoint):
    with pytest.raises(ParameterError, match=r'random_isr_small\.pt.*trained on classes'):
        DetectorNode(context=context, parameter_overrides=overrides(
            checkpoint, class_names=['__background__', 'car']))


def test_main_exits_with_status_2_and_names_a_missing_checkpoint(tmp_path):
    missing = tmp_path / 'missing.pt'
    result = subprocess.run(
        [sys.executable, '-m', 'importance_sampler_ros.nodes.detector_node',
         '--ros-args', '-p', f'checkpoint:={missing}'],
        capture_output=True, text=True, timeout=120,
        env={**os.environ, 'ROS_DOMAIN_ID': DOMAIN_ID},
    )
    assert result.returncode == 2, result.stderr
    assert f'checkpoint {missing} does not exist' in result.stderr
