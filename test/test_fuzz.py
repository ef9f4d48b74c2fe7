"""Fuzz: a few thousand generated messages (valid, truncated, random bytes, bit flips, extreme
values) through the nodes' callbacks, the recorder's into a bag that must then decode.

The recorder node and the tracker node are real rclpy nodes (not spun: their callbacks are called
directly, as the executor would, with what the subscriptions deliver: raw CDR bytes for the
recorder, deserialized messages for the tracker, whose subscription rclpy deserializes first, so
only extreme values can reach it). The detector node's callback starts with image_to_rgb, which
is fuzzed on its own (the detector itself is not run: thousands of inferences on CPU). Nothing may
raise; every message written must decode with rosbags and the mcap reader (CRCs checked).
Seeded and bounded: ~10-20 s on the 2-core development machine.
"""
from __future__ import annotations

import contextlib
import math
from pathlib import Path

import numpy as np
import pytest
from live_graph_fixtures import domain_id

rclpy = pytest.importorskip('rclpy')
from mcap.reader import make_reader  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from rclpy.serialization import serialize_message  # noqa: E402
from rosbags.highlevel import AnyReader  # noqa: E402

from importance_sampler_ros.bags import bag_io  # noqa: E402
from importance_sampler_ros.bags.images import ImageError, image_to_rgb  # noqa: E402
from importance_sampler_ros.bags.messages import header_msg, time_msg  # noqa: E402
from importance_sampler_ros.nodes.message_types import rclpy_types  # noqa: E402
from importance_sampler_ros.nodes.recorder_node import RecorderNode  # noqa: E402
from importance_sampler_ros.nodes.tracker_node import TrackerNode  # noqa: E402
from importance_sampler_ros.recording.splits import split_paths  # noqa: E402

pytestmark = pytest.mark.ros
DOMAIN_ID = str(domain_id(8))
T0 = 1_732_550_400 * 1_000_000_000
FRAMES = 1500  # x (image + detections) + relabels + garbage: ~4000 messages to the recorder
EXTREME_FLOATS = (0.0, -0.0, 1e-45, -1.0, 1e38, -1e38, math.inf, -math.inf, math.nan)
ENCODINGS = ('rgb8', 'bgr8', 'mono8', 'rgba8', 'yuv422', '', 'nonsense', '16UC1')


class Generator:
    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.types = rclpy_types()

    def choice(self, values):
        return values[int(self.rng.integers(len(values)))]

    def real(self) -> float:
        return float(self.choice(EXTREME_FLOATS)) if self.rng.random() < 0.3 else \
            float(self.rng.normal(0, 100))

    def image(self, stamp_ns: int, extreme: bool):
        t = self.types
        width, height = (int(self.rng.integers(1, 48)), int(self.rng.integers(1, 24)))
        encoding = self.choice(ENCODINGS) if extreme else 'rgb8'
        step = width * 3
        size = step * height
        if extreme and self.rng.random() < 0.5:
            step = self.choice([0, 1, step - 1, step + 1, 2**32 - 1])
            width = self.choice([width, 0, 2**31, 2**32 - 1])
            size = int(self.rng.integers(0, 4 * max(size, 1)))
        return t.Image(header=header_msg(stamp_ns, self.frame_id(extreme), t), height=height,
                       width=width, encoding=encoding, is_bigendian=int(self.rng.integers(2)),
                       step=step, data=self.rng.integers(0, 256, size, np.uint8).tobytes())

    def frame_id(self, extreme: bool) -> str:
        if not extreme:
            return 'camera'
        return self.choice(['', 'camera', 'x' * 5000, 'kamera \u00e9\u4e2d', '\u0000'[:0]])

    def detections(self, stamp_ns: int, extreme: bool):
        t = self.types
        n = int(self.rng.integers(0, 200 if extreme else 6))
        detections = []
        for _ in range(n):
            x1, x2, y1, y2 = [self.real() for _ in range(4)] if extreme else \
                sorted(self.rng.uniform(0, 40, 2).tolist()) + sorted(self.rng.uniform(0, 20, 2))
            detections.append(t.Detection(
                box=t.BoundingBox(x1=x1, y1=y1, x2=x2, y2=y2),
                class_id=int(self.rng.integers(-5, 10)) if extreme else 1,
                class_name=self.choice(['car', '', 'x' * 300]),
                score=self.real() if extreme else 0.9,
                importance=self.real() if extreme else float(self.rng.exponential()),
                track_id=int(self.rng.integers(0, 2**32)) if extreme else 0,
                distance=self.real(),
                uncertainty=self.rng.normal(size=int(self.rng.integers(0, 4))).astype(
                    np.float32).tolist() if extreme else []))
        return t.DetectionArray(
            header=header_msg(stamp_ns, self.frame_id(extreme), t), detections=detections,
            frame_importance=self.real() if extreme else float(self.rng.exponential()),
            aggregation=self.choice(['sum', 'max', '']), model_name='fuzz',
            inference_ms=self.real(), scorer='', uncertainty_names=[], candidates=[],
            situations=[], frame_descriptor=self.rng.normal(size=int(self.rng.integers(0, 5)))
            .astype(np.float32))

    def relabels(self, stamp_ns: int, stamps: list[int], extreme: bool):
        t = self.types
        observations = [t.RelabelledObservation(
            stamp=time_msg(int(s), t), box=t.BoundingBox(x1=1.0, y1=1.0, x2=5.0, y2=5.0),
            detection_index=int(self.rng.integers(0, 2**32)) if extreme else 0)
            for s in stamps]
        relabel = t.Relabel(header=header_msg(stamp_ns, 'camera', t),
                            track_id=int(self.rng.integers(0, 2**32)), old_class_id=1,
                            old_class_name='car', new_class_id=2, new_class_name='van',
                            confidence=self.real() if extreme else 0.9, reissued=False,
                            observations=observations)
        return t.RelabelArray(header=header_msg(stamp_ns, 'camera', t), relabels=[relabel])

    def mangle(self, data: bytes) -> bytes:
        """Truncated, bit-flipped, grown, or random bytes (with a valid CDR header or not)."""
        kind = int(self.rng.integers(5)) if data else 4
        if kind == 0:
            return data[:int(self.rng.integers(0, len(data)))]
        if kind == 1:
            out = bytearray(data)
            for at in self.rng.integers(0, len(out), int(self.rng.integers(1, 8))):
                out[at] ^= 1 << int(self.rng.integers(8))
            return bytes(out)
        if kind == 2:
            return data + self.rng.integers(0, 256, int(self.rng.integers(1, 64)),
                                             np.uint8).tobytes()
        random = self.rng.integers(0, 256, int(self.rng.integers(0, 300)), np.uint8).tobytes()
        return (b'\x00\x01\x00\x00' + random) if kind == 3 else random


@pytest.fixture
def nodes(context, tmp_path: Path):
    recorder = RecorderNode(context=context, parameter_overrides=[
        Parameter('output_dir', value=str(tmp_path)), Parameter('bag_name', value='fuzz'),
        Parameter('keep_ratio', value=0.5), Parameter('seed', value=3),
        Parameter('buffer_seconds', value=1.0), Parameter('fsync', value=False),
        Parameter('split_bytes', value=50_000), Parameter('stats_period_s', value=0.0),
        Parameter('flush_interval_s', value=0.0)])
    tracker = TrackerNode(context=context)
    yield recorder, tracker
    tracker.destroy_node()
    recorder.destroy_node()


@pytest.mark.filterwarnings('error::RuntimeWarning')  # bad input is handled, never overflows
def test_fuzzed_messages_never_raise_and_the_bag_decodes(nodes, tmp_path: Path) -> None:
    recorder, tracker = nodes
    gen = Generator(seed=18)
    decisions_kept = 0
    for i in range(FRAMES):
        stamp = T0 + i * 33_333_333 + int(gen.rng.integers(0, 3)) * (i % 7 == 0)
        extreme = gen.rng.random() < 0.25
        image = gen.image(stamp, extreme)
        detections = gen.detections(stamp, extreme)
        image_cdr = serialize_message(image)
        detections_cdr = serialize_message(detections)
        if gen.rng.random() < 0.2:
            image_cdr = gen.mangle(image_cdr)
        if gen.rng.random() < 0.2:
            detections_cdr = gen.mangle(detections_cdr)
        # the detector callback's first step, then the tracker callback on what it would get
        with contextlib.suppress(ImageError, ValueError):
            image_to_rgb(image)
        tracker.on_detections(detections)
        # the recorder's three raw subscriptions, in either order
        if gen.rng.random() < 0.5:
            recorder.on_image(image_cdr)
            recorder.on_detections(detections_cdr)
        else:
            recorder.on_detections(detections_cdr)
            recorder.on_image(image_cdr)
        if i % 10 == 9:
            stamps = [T0 + j * 33_333_333 for j in gen.rng.integers(max(0, i - 40), i + 5, 4)]
            relabels = serialize_message(gen.relabels(stamp, stamps, extreme))
            recorder.on_relabels(gen.mangle(relabels) if gen.rng.random() < 0.3 else relabels)
        if i % 50 == 0:
            recorder.on_image(gen.mangle(b''))
            recorder.expire_pending()
    recorder.close()
    stats = recorder.stats()
    assert stats['error'] is None
    assert stats['bad_input'] > 300 and stats['frames'] > FRAMES // 2, stats
    assert tracker.frames_processed + tracker.frames_skipped == FRAMES
    splits = split_paths(tmp_path / 'fuzz')
    assert len(splits) > 3
    with AnyReader(splits, default_typestore=bag_io.typestore()) as reader:
        counts: dict[str, int] = {}
        for connection, _, raw in reader.messages():
            message = reader.deserialize(raw, connection.msgtype)
            if connection.msgtype == bag_io.IMAGE_TYPE:
                bag_io.check_image(message)
            if connection.msgtype.endswith('SampleDecision'):
                decisions_kept += bool(message.kept)
            counts[connection.topic] = counts.get(connection.topic, 0) + 1
    assert set(counts.values()) == {stats['kept']} == {decisions_kept}
    image_topic = recorder.recorder.config.image_topic
    for split in splits:
        (file,) = split.glob('*.mcap')
        with file.open('rb') as stream:
            assert sum(1 for _ in make_reader(stream, validate_crcs=True).iter_messages()) \
                == 4 * len(list(bag_io.read_messages(split, [image_topic])))
