"""tracker_node over rclpy (DetectionArray in; tracks, tracked detections, relabels out), and the
track / relabel message conversions for rclpy and rosbags classes."""
import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import spin_until
from live_graph_fixtures import domain_id

rclpy = pytest.importorskip('rclpy')
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.node import Node  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from rclpy.serialization import serialize_message  # noqa: E402

from importance_sampler_ros.bags import bag_io  # noqa: E402
from importance_sampler_ros.bags.messages import detections_to_msg, stamp_to_ns  # noqa: E402
from importance_sampler_ros.bags.tracking_messages import (  # noqa: E402
    relabels_from_msg,
    relabels_to_msg,
    tracks_to_msg,
)
from importance_sampler_ros.detection.detections import FrameDetections  # noqa: E402
from importance_sampler_ros.nodes.message_types import rclpy_types  # noqa: E402
from importance_sampler_ros.nodes.tracker_node import FRAME_QOS, TrackerNode  # noqa: E402
from importance_sampler_ros.tracking.relabel import (  # noqa: E402
    RelabelEvent,
    RelabelledObservation,
    TrackSummary,
)

pytestmark = pytest.mark.ros
DOMAIN_ID = str(domain_id(6))  # this module's own DDS domain
PREFIX = '/test_tracker_node'
TOPICS = {name: f'{PREFIX}/{name}' for name in
          ('detections', 'tracks', 'tracked_detections', 'relabels')}
MS = 1_000_000
T0 = 1_732_550_400 * 1_000_000_000

EVENT = RelabelEvent(
    stamp_ns=T0 + 900 * MS, frame_id='camera', track_id=3, old_class_id=1,
    old_class_name='car', new_class_id=2, new_class_name='van', confidence=0.75, reissued=True,
    observations=(RelabelledObservation(T0, (1.0, 2.0, 3.5, 4.25), 0),
                  RelabelledObservation(T0 + 100 * MS, (2.0, 2.0, 4.5, 5.25), 3)),
)
TRACK = TrackSummary(track_id=3, box=(1.0, 2.0, 3.5, 4.25), class_id=2, class_name='van',
                     class_history=((1, 6), (2, 4)), age=11, hits=10, time_since_update=0,
                     score=0.5)


@pytest.mark.parametrize('types', [rclpy_types(), bag_io.msg_types()], ids=['rclpy', 'rosbags'])
def test_relabel_messages_round_trip(types):
    msg = relabels_to_msg(T0 + 900 * MS, 'camera', [EVENT, EVENT], types)
    assert stamp_to_ns(msg.header) == T0 + 900 * MS
    assert relabels_from_msg(msg) == [EVENT, EVENT]
    assert relabels_from_msg(relabels_to_msg(T0, 'camera', [], types)) == []


def test_track_and_relabel_messages_serialize_identically():
    for build in (lambda t: tracks_to_msg(T0, 'camera', [TRACK, TRACK], t),
                  lambda t: relabels_to_msg(T0, 'camera', [EVENT], t)):
        rclpy_bytes = serialize_message(build(rclpy_types()))
        rosbags_msg = build(bag_io.msg_types())
        rosbags_bytes = bag_io.serialize(rosbags_msg)
        assert len(rclpy_bytes) == len(rosbags_bytes)
        back = bag_io.deserialize(rclpy_bytes, rosbags_msg.__msgtype__)
        assert bag_io.serialize(back) == rosbags_bytes
    track = tracks_to_msg(T0, 'camera', [TRACK], bag_io.msg_types()).tracks[0]
    assert track.class_history_ids.tolist() == [1, 2]
    assert track.class_history_counts.tolist() == [6, 4]


class Harness:
    """The tracker node and a test node (detections publisher, three subscribers), one executor."""

    def __init__(self, context):
        self.types = rclpy_types()
        overrides = [Parameter(f'{name}_topic', value=topic) for name, topic in TOPICS.items()]
        overrides.append(Parameter('warning_period_s', value=0.0))
        self.tracker_node = TrackerNode(context=context, parameter_overrides=overrides)
        self.node = Node('tracker_node_tester', context=context)
        self.publisher = self.node.create_publisher(
            self.types.DetectionArray, TOPICS['detections'], FRAME_QOS)
        self.received = {'tracks': [], 'tracked_detections': [], 'relabels': []}
        for name, msg_type in (('tracks', self.types.TrackArray),
                               ('tracked_detections', self.types.DetectionArray),
                               ('relabels', self.types.RelabelArray)):
            self.node.create_subscription(msg_type, TOPICS[name], self.received[name].append,
                                          FRAME_QOS)
        self.executor = SingleThreadedExecutor(context=context)
        self.executor.add_node(self.tracker_node)
        self.executor.add_node(self.node)
        node = self.tracker_node
        self.spin_until(lambda: self.publisher.get_subscription_count() > 0
                        and node.tracks_pub.get_subscription_count() > 0
                        and node.detections_pub.get_subscription_count() > 0
                        and node.relabels_pub.get_subscription_count() > 0,
                        'discovery between the test node and the tracker node')

    def spin_until(self, condition, what, timeout_s=20.0):
        spin_until(self.executor, condition, what, timeout_s)

    def close(self):
        self.executor.shutdown()
        self.tracker_node.destroy_node()
        self.node.destroy_node()


def approaching_object(t: int) -> FrameDetections:
    """One object growing from 40 px (an uncertain 'car' far away, score 0.7: below the default
    relabel_max_score) to 84 px tall (a 'van' near: >= 60 px and score >= 0.9, the default near
    field)."""
    h = 40.0 + 4.0 * t
    far = t < 5
    return FrameDetections(
        stamp_ns=T0 + t * 100 * MS, frame_id='camera',
        boxes=[[100 + t, 80, 100 + t + h / 2, 80 + h]],
        class_ids=[1 if far else 2], class_names=['car' if far else 'van'],
        scores=[0.7 if far else 0.95],
        importances=[0.25], distances=[50.0 - 3 * t],
    )


@pytest.fixture
def harness(context):
    h = Harness(context)
    yield h
    h.close()


def test_far_to_near_object_is_relabelled(harness):
    types = harness.types
    frames = [approaching_object(t) for t in range(12)]
    for f in frames:
        harness.publisher.publish(detections_to_msg(f, types))
    harness.spin_until(lambda: len(harness.received['relabels']) == 12, 'relabels of 12 frames')
    harness.spin_until(lambda: len(harness.received['tracked_detections']) == 12
                       and len(harness.received['tracks']) == 12, 'tracks of 12 frames')
    stamps = [f.stamp_ns for f in frames]
    for name in ('relabels', 'tracks', 'tracked_detections'):
        assert [stamp_to_ns(m.header) for m in harness.received[name]] == stamps
        assert all(m.header.frame_id == 'camera' for m in harness.received[name])
    events = [e for m in harness.received['relabels'] for e in relabels_from_msg(m)]
    assert len(events) == 1
    event = events[0]
    assert (event.old_class_name, event.new_class_name, event.reissued) == ('car', 'van', False)
    assert event.stamp_ns == stamps[7]  # the third near-field vote
    assert [o.stamp_ns for o in event.observations] == stamps[:5]
    tracked = harness.received['tracked_detections']
    assert [m.detections[0].track_id for m in tracked] == [0, 0] + [1] * 10
    last = tracked[-1].detections[0]
    assert (last.class_name, last.importance, last.distance) == ('van', 0.25, pytest.approx(17.0))
    last_track = harness.received['tracks'][-1].tracks[0]
    assert (last_track.track_id, last_track.class_name, last_track.hits) == (1, 'van', 12)
    assert list(last_track.class_history_ids) == [2, 1]  # most frequent first
    assert list(last_track.class_history_counts) == [7, 5]


def test_bad_input_is_skipped_and_the_node_keeps_running(harness):
    types = harness.types
    node = harness.tracker_node
    good = [approaching_object(t) for t in range(4)]
    nan_box = approaching_object(4)
    nan_box.boxes[0] = [np.nan, 1, 2, 3]
    inverted = FrameDetections(stamp_ns=T0 + 500 * MS, frame_id='camera',
                               boxes=[[50, 50, 10, 90], [105, 80, 125, 120]],
                               class_ids=[1, 1], class_names=['car', 'car'], scores=[0.9, 0.9])
    sequence = [*good[:3], good[1], good[2], nan_box, inverted, approaching_object(6)]
    for f in sequence:  # good[1] is out of order, good[2] a duplicate
        harness.publisher.publish(detections_to_msg(f, types))
    harness.spin_until(lambda: len(harness.received['relabels']) == 6, 'six processed frames')
    harness.spin_until(lambda: len(harness.received['tracked_detections']) == 6, 'detections')
    assert node.frames_skipped == 2
    assert node.detections_ignored == 2
    ids = [[d.track_id for d in m.detections] for m in harness.received['tracked_detections']]
    assert ids == [[0], [0], [1], [0], [0, 1], [1]]  # the track coasts over the NaN frame
    # a jump back by 10 s (a restarted bag) resets the tracker instead of stalling it
    restart = approaching_object(0)
    restart.stamp_ns = T0 - 10_000 * MS
    harness.publisher.publish(detections_to_msg(restart, types))
    harness.spin_until(lambda: len(harness.received['tracked_detections']) == 7, 'restart')
    assert node.frames_skipped == 2
    assert harness.received['tracked_detections'][-1].detections[0].track_id == 0  # tentative
    assert len(node.tracker.tracker) == 1 and len(node.tracker.relabeler) == 1


def test_invalid_parameter_ends_the_node_with_status_2():
    result = subprocess.run(
        [sys.executable, '-m', 'importance_sampler_ros.nodes.tracker_node', '--ros-args',
         '-p', 'near_rule:=xor'],
        env={**os.environ, 'ROS_DOMAIN_ID': DOMAIN_ID}, capture_output=True, text=True,
        timeout=60)
    assert result.returncode == 2
    assert 'near_rule' in result.stderr
