"""`importance-sampler play`: what it publishes, when, and with which stamps (real processes)."""
import signal
import time

import pytest
import rclpy
from conftest import wait_until
from importance_sampler_ros.msg import DetectionArray
from live_graph_fixtures import (
    IMAGE_TOPIC,
    TRUTH_TOPIC,
    Listener,
    cli,
    domain_id,
    moving_box_frames,
    ros_env,
    write_drive,
)
from rclpy.serialization import serialize_message
from sensor_msgs.msg import Image

from importance_sampler_ros.bags import bag_io
from importance_sampler_ros.bags.bag_io import header_from_cdr, with_header_stamp
from importance_sampler_ros.bags.messages import detections_from_msg, stamp_to_ns
from importance_sampler_ros.nodes.player import PlayError, plan_topics

DOMAIN = domain_id(0)
DETECTIONS = '/importance_sampler/detections'
ARRAY = bag_io.msgtype('DetectionArray')


def test_plan_defaults_to_images_and_ground_truth():
    image, plan = plan_topics({IMAGE_TOPIC: bag_io.IMAGE_TYPE, TRUTH_TOPIC: ARRAY,
                               '/other': 'std_msgs/msg/String'})
    assert image == IMAGE_TOPIC
    assert [(p.bag_topic, p.out_topics) for p in plan] == [
        (IMAGE_TOPIC, (IMAGE_TOPIC,)), (TRUTH_TOPIC, (TRUTH_TOPIC,))]


def test_plan_detections_as_adds_an_output_topic():
    _, plan = plan_topics({IMAGE_TOPIC: bag_io.IMAGE_TYPE, TRUTH_TOPIC: ARRAY},
                          detections_as=DETECTIONS)
    assert plan[1].out_topics == (TRUTH_TOPIC, DETECTIONS)
    _, plan = plan_topics({IMAGE_TOPIC: bag_io.IMAGE_TYPE, TRUTH_TOPIC: ARRAY},
                          topics=[], detections_as=DETECTIONS)
    assert [(p.bag_topic, p.out_topics) for p in plan] == [
        (IMAGE_TOPIC, (IMAGE_TOPIC,)), (TRUTH_TOPIC, (DETECTIONS,))]


@pytest.mark.parametrize('kwargs,message', [
    ({'topics': ['/missing']}, 'not in the bag: /missing'),
    ({'image_topic': TRUTH_TOPIC}, 'not sensor_msgs/msg/Image'),
    ({'detections_as': DETECTIONS, 'detections_source': IMAGE_TOPIC},
     'not a DetectionArray topic'),
])
def test_plan_rejects_bad_options(kwargs, message):
    with pytest.raises(PlayError, match=message):
        plan_topics({IMAGE_TOPIC: bag_io.IMAGE_TYPE, TRUTH_TOPIC: ARRAY}, **kwargs)


def test_header_stamp_read_and_replaced_in_cdr():
    _, _, truth = next(moving_box_frames(1))
    from importance_sampler_ros.bags.messages import detections_to_msg
    from importance_sampler_ros.nodes.message_types import rclpy_types

    data = serialize_message(detections_to_msg(truth, rclpy_types()))
    assert header_from_cdr(data)[0] == truth.stamp_ns
    moved = with_header_stamp(data, 42 * 10**9 + 7)
    assert header_from_cdr(moved)[0] == 42 * 10**9 + 7 and len(moved) == len(data)
    back = bag_io.deserialize(moved, ARRAY)
    assert back.header.frame_id == 'camera' and back.detections[0].class_name == 'car'


@pytest.fixture
def ros(monkeypatch):
    monkeypatch.setenv('ROS_DOMAIN_ID', str(DOMAIN))
    rclpy.init()
    yield
    rclpy.shutdown()


def listen(*extra: str) -> Listener:
    listener = Listener()
    listener.subscribe(Image, IMAGE_TOPIC)
    for topic in (TRUTH_TOPIC, *extra):
        listener.subscribe(DetectionArray, topic)
    return listener.start()


@pytest.mark.ros
def test_play_publishes_every_frame_with_its_ground_truth_at_the_recorded_rate(ros, tmp_path):
    stamps = write_drive(tmp_path / 'drive', moving_box_frames(12, rate_hz=10.0))
    listener = listen(DETECTIONS)
    try:
        summary = tmp_path / 'summary.json'
        player = cli('play', str(tmp_path / 'drive'), '--rate', '2',
                     '--detections-as', DETECTIONS, '--summary-json', str(summary),
                     env=ros_env(DOMAIN))
        assert player.wait(timeout=30) == 0
        wait_until(lambda: len(listener.messages(DETECTIONS)) == 12, 'ground truth', 5.0)
        images = listener.messages(IMAGE_TOPIC)
        assert [stamp_to_ns(m.header) for m in images] == stamps
        truth = [detections_from_msg(m) for m in listener.messages(TRUTH_TOPIC)]
        assert [t.stamp_ns for t in truth] == stamps
        assert [detections_from_msg(m).boxes.tolist() for m in listener.messages(DETECTIONS)] \
            == [t.boxes.tolist() for t in truth]
        # recorded spacing 0.1 s at rate 2: 11 gaps of 0.05 s
        times = [t for t, _ in listener.received[IMAGE_TOPIC]]
        assert 0.35 < times[-1] - times[0] < 1.5
        assert '"images": 12' in summary.read_text()
    finally:
        listener.close()


@pytest.mark.ros
def test_play_restamps_and_loops_until_interrupted(ros, tmp_path):
    write_drive(tmp_path / 'drive', moving_box_frames(5, rate_hz=20.0))
    listener = listen()
    try:
        player = cli('play', str(tmp_path / 'drive'), '--loop', '--restamp',
                     env=ros_env(DOMAIN))
        wait_until(lambda: len(listener.messages(IMAGE_TOPIC)) >= 12, 'looped images', 20.0)
        player.send_signal(signal.SIGINT)
        assert player.wait(timeout=10) == 0
        images = listener.messages(IMAGE_TOPIC)
        image_stamps = [stamp_to_ns(m.header) for m in images]
        assert image_stamps == sorted(image_stamps) and len(set(image_stamps)) == len(images)
        assert abs(image_stamps[-1] / 1e9 - time.time()) < 10.0  # wall-clock stamps
        truth_stamps = {stamp_to_ns(m.header) for m in listener.messages(TRUTH_TOPIC)}
        assert set(image_stamps[:10]) <= truth_stamps  # a frame's messages share its stamp
    finally:
        listener.close()


@pytest.mark.ros
def test_as_fast_as_possible_waits_for_the_graph(ros, tmp_path):
    """Each image is published only after the previous one was answered on the pace topic."""
    stamps = write_drive(tmp_path / 'drive', moving_box_frames(6, rate_hz=1.0))
    answers = rclpy.create_node('answering_graph')
    pace = answers.create_publisher(DetectionArray, '/test/answers', 10)
    received: list[tuple[float, int]] = []  # (time, stamp) of each image
    answered: list[tuple[float, int]] = []  # (time, stamp) of each answer

    def answer(msg: Image) -> None:
        received.append((time.monotonic(), stamp_to_ns(msg.header)))
        time.sleep(0.1)  # a graph that takes its time
        pace.publish(DetectionArray(header=msg.header))
        answered.append((time.monotonic(), stamp_to_ns(msg.header)))

    answers.create_subscription(Image, IMAGE_TOPIC, answer, 10)
    summary = tmp_path / 'summary.json'
    player = cli('play', str(tmp_path / 'drive'), '--as-fast-as-possible',
                 '--pace-topic', '/test/answers', '--pace-timeout', '5',
                 '--summary-json', str(summary), env=ros_env(DOMAIN))
    try:
        deadline = time.monotonic() + 30
        while player.poll() is None and time.monotonic() < deadline:
            rclpy.spin_once(answers, timeout_sec=0.05)
        assert player.returncode == 0
        assert [s for _, s in received] == stamps
        assert '"pace_timeouts": 0' in summary.read_text()
        # image k came after the answer to image k - 1 ...
        assert all(received[k][0] >= answered[k - 1][0] for k in range(1, len(stamps)))
        # ... and not at the recorded pace (1 s apart)
        assert received[-1][0] - received[0][0] < 2.5
    finally:
        if player.poll() is None:
            player.kill()
        answers.destroy_node()


@pytest.mark.ros
def test_play_rejects_a_missing_bag(tmp_path):
    player = cli('play', str(tmp_path / 'nothing'), stderr=-1)
    _, err = player.communicate(timeout=30)
    assert player.returncode == 2 and b'no such bag' in err
