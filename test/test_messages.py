"""The message contract: rclpy and rosbags agree byte for byte, and messages cross processes."""
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import rclpy
from live_graph_fixtures import domain_id
from message_samples import sample_detections, sample_messages
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from rclpy.serialization import deserialize_message, serialize_message

from importance_sampler_ros import msg
from importance_sampler_ros.bags import bag_io
from importance_sampler_ros.bags.messages import detections_from_msg
from importance_sampler_ros.nodes.message_types import rclpy_types

HERE = Path(__file__).parent
NAMES = bag_io.MESSAGE_NAMES


def test_every_msg_file_is_registered():
    assert sorted(NAMES) == sorted(p.stem for p in bag_io.msg_dir().glob('*.msg'))


def same_content(a: bytes, b: bytes, msgtype: str) -> bool:
    """CDR bytes equal except in alignment padding, which Fast CDR leaves uninitialised.

    rosbags zeroes padding and ignores it when reading, so re-serialising what it reads from `a`
    equals `b` exactly when every field agrees; differing bytes must be padding (zero in `b`).
    """
    differing = [i for i in range(len(b)) if a[i] != b[i]] if len(a) == len(b) else None
    return (
        differing is not None
        and all(b[i] == 0 for i in differing)
        and bag_io.serialize(bag_io.deserialize(a, msgtype)) == b
    )


@pytest.mark.parametrize('name', NAMES)
def test_rclpy_serialize_round_trip(name):
    message = sample_messages(rclpy_types())[name]
    data = serialize_message(message)
    back = deserialize_message(data, getattr(msg, name))
    assert same_content(serialize_message(back), bag_io.serialize(
        bag_io.deserialize(data, bag_io.msgtype(name))), bag_io.msgtype(name))


@pytest.mark.parametrize('name', NAMES)
def test_rosbags_cdr_equals_rclpy_cdr(name):
    rclpy_bytes = serialize_message(sample_messages(rclpy_types())[name])
    rosbags_bytes = bag_io.serialize(sample_messages(bag_io.msg_types())[name])
    assert len(rosbags_bytes) == len(rclpy_bytes)
    assert same_content(rclpy_bytes, rosbags_bytes, bag_io.msgtype(name))
    # and rclpy reads what rosbags writes
    from_rosbags = deserialize_message(rosbags_bytes, getattr(msg, name))
    assert same_content(serialize_message(from_rosbags), rosbags_bytes, bag_io.msgtype(name))


def test_same_content_detects_a_changed_field():
    types = bag_io.msg_types()
    decision = sample_messages(types)['SampleDecision']
    other = bag_io.serialize(types.SampleDecision(**{
        **{f: getattr(decision, f) for f in ('header', 'kept', 'probability', 'reason',
                                             'frame_importance', 'importance_mean',
                                             'keep_ratio')},
        'weight': 5.0}))
    assert not same_content(other, bag_io.serialize(decision), bag_io.msgtype('SampleDecision'))


def test_detections_survive_both_backends():
    original = sample_detections()
    for types in (rclpy_types(), bag_io.msg_types()):
        back = detections_from_msg(detections_to_msg_via(types, original))
        assert back.stamp_ns == original.stamp_ns
        assert back.class_names == original.class_names
        assert (back.boxes == original.boxes).all()
        assert back.distances[1] != back.distances[1]  # NaN survives
        assert back.track_ids.tolist() == [7, 0]
        np.testing.assert_array_equal(back.descriptor, original.descriptor)


def detections_to_msg_via(types, det):
    from importance_sampler_ros.bags.messages import detections_to_msg

    return detections_to_msg(det, types)


@pytest.fixture
def ros_domain(monkeypatch):
    monkeypatch.setenv('ROS_DOMAIN_ID', str(domain_id(9)))
    rclpy.init()
    yield
    rclpy.shutdown()


@pytest.mark.ros
def test_every_message_crosses_processes(ros_domain):
    publisher = subprocess.Popen(
        [sys.executable, str(HERE / 'ros_publisher_process.py'), '30'],
        env={**os.environ, 'PYTHONPATH': str(HERE)},
    )
    try:
        node = rclpy.create_node('sample_receiver')
        qos = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                         durability=DurabilityPolicy.TRANSIENT_LOCAL)
        expected = sample_messages(rclpy_types())
        received = {}
        for name in NAMES:
            node.create_subscription(
                getattr(msg, name), f'/samples/{name}',
                lambda m, name=name: received.setdefault(name, m), qos)
        deadline = time.monotonic() + 25
        while len(received) < len(NAMES) and time.monotonic() < deadline:
            rclpy.spin_once(node, timeout_sec=0.1)
            assert publisher.poll() is None, 'publisher process died'
        assert sorted(received) == sorted(NAMES)
        for name in NAMES:
            assert same_content(serialize_message(received[name]),
                                bag_io.serialize(bag_io.deserialize(
                                    serialize_message(expected[name]), bag_io.msgtype(name))),
                                bag_io.msgtype(name)), name
        node.destroy_node()
    finally:
        publisher.terminate()
        publisher.wait(10)


def test_frames_pickled_before_the_descriptor_existed_load_without_one():
    import pickle
    from dataclasses import replace

    old = sample_detections()
    del old.__dict__['descriptor']  # what an older pickle holds
    back = pickle.loads(pickle.dumps(old))
    assert back.descriptor.shape == (0,)
    assert replace(back, frame_importance=1.0).descriptor.shape == (0,)
