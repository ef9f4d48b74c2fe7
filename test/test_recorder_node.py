"""recorder_node in a subprocess, fed by real rclpy publishers in this process; the bag it leaves
is read back with AnyReader."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import spin_until
from live_graph_fixtures import domain_id

rclpy = pytest.importorskip('rclpy')
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.node import Node  # noqa: E402
from rclpy.qos import QoSProfile, ReliabilityPolicy  # noqa: E402
from rclpy.serialization import serialize_message  # noqa: E402
from rosbags.highlevel import AnyReader  # noqa: E402

from importance_sampler_ros.bags import bag_io  # noqa: E402
from importance_sampler_ros.bags.messages import header_msg, stamp_to_ns, time_msg  # noqa: E402
from importance_sampler_ros.nodes.message_types import rclpy_types  # noqa: E402
from importance_sampler_ros.nodes.recorder_node import FRAME_QOS  # noqa: E402
from importance_sampler_ros.recording.recorder import (  # noqa: E402
    DECISIONS_TOPIC,
    DETECTIONS_TOPIC,
    RELABELS_TOPIC,
)
from importance_sampler_ros.recording.splits import split_paths  # noqa: E402

pytestmark = pytest.mark.ros
DOMAIN_ID = str(domain_id(7))  # this module's own DDS domain
PREFIX = '/test_recorder_node'
IMAGE_TOPIC = f'{PREFIX}/image'
INPUT_TOPICS = {'image_topic': IMAGE_TOPIC, 'detections_topic': f'{PREFIX}/tracked_detections',
                'relabels_topic': f'{PREFIX}/relabels', 'decisions_topic': f'{PREFIX}/decisions'}
T0 = 1_732_550_400 * 1_000_000_000
FRAME_NS = 100_000_000
N_FRAMES = 40
NO_IMAGE, NO_DETECTIONS = 7, 9  # frames published with one half missing
RELABELLED = list(range(25, 30))  # named by a relabel published right after frame 30


def stamp(i: int) -> int:
    return T0 + i * FRAME_NS


def node_command(out: Path, **params: object) -> list[str]:
    values = {**INPUT_TOPICS, 'output_dir': str(out), 'bag_name': 'run', 'keep_ratio': 0.3,
              'seed': 4, 'buffer_seconds': 1.0, 'relabel_keep_gap_s': 0.0,
              'relabel_keep_share': 1.0, 'join_timeout_s': 0.5, 'fsync': False,
              'stats_period_s': 0.0, 'image_reliability': 'reliable', **params}
    args = [f'{k}:={v}' for k, v in values.items()]
    return [sys.executable, '-m', 'importance_sampler_ros.nodes.recorder_node', '--ros-args',
            *[a for arg in args for a in ('-p', arg)]]


def make_frame(types, i: int, stamp_ns: int | None = None) -> tuple[object, object]:
    header = header_msg(stamp(i) if stamp_ns is None else stamp_ns, 'camera', types)
    pixels = np.random.default_rng(i).integers(0, 255, 64 * 32 * 3, dtype=np.uint8)
    image = types.Image(header=header, height=32, width=64, encoding='rgb8', is_bigendian=0,
                        step=64 * 3, data=pixels.tobytes())
    g = float(np.random.default_rng(100 + i).exponential(1.0))
    detection = types.Detection(
        box=types.BoundingBox(x1=1.0, y1=2.0, x2=30.0, y2=20.0), class_id=1, class_name='car',
        score=0.8, importance=g, track_id=5, distance=float('nan'),
        uncertainty=np.zeros(0, np.float32))
    detections = types.DetectionArray(header=header, detections=[detection], frame_importance=g,
                                      aggregation='sum', model_name='test', inference_ms=2.0,
        scorer='', uncertainty_names=[], candidates=[], situations=[],
        frame_descriptor=np.zeros(0, np.float32))
    return image, detections


def make_relabels(types, trigger: int, frames: list[int]) -> object:
    header = header_msg(stamp(trigger), 'camera', types)
    observations = [types.RelabelledObservation(
        stamp=time_msg(stamp(i), types), box=types.BoundingBox(x1=1.0, y1=2.0, x2=30.0, y2=20.0),
        detection_index=0) for i in frames]
    relabel = types.Relabel(header=header, track_id=5, old_class_id=1, old_class_name='car',
                            new_class_id=2, new_class_name='van', confidence=0.9, reissued=False,
                            observations=observations)
    return types.RelabelArray(header=header, relabels=[relabel])


def canonical(image_cdr: bytes) -> bytes:
    return bag_io.serialize(bag_io.deserialize(image_cdr, bag_io.IMAGE_TYPE))


def read_bag(paths: list[Path]) -> dict[str, dict[int, tuple[object, bytes]]]:
    out: dict[str, dict[int, tuple[object, bytes]]] = {}
    with AnyReader(paths, default_typestore=bag_io.typestore()) as reader:
        for connection, log_ns, raw in reader.messages():
            message = reader.deserialize(raw, connection.msgtype)
            assert log_ns == stamp_to_ns(message.header)
            out.setdefault(connection.topic, {})[log_ns] = (message, bytes(raw))
    return out


@pytest.mark.slow
@pytest.mark.parametrize('stop_signal', [signal.SIGTERM, signal.SIGINT], ids=['TERM', 'INT'])
def test_node_records_sampled_frames_and_closes_on_signal(context, tmp_path: Path,
                                                          stop_signal: int) -> None:
    types = rclpy_types()
    env = {**os.environ, 'ROS_DOMAIN_ID': DOMAIN_ID}
    process = subprocess.Popen(node_command(tmp_path), env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    node = Node('recorder_node_tester', context=context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    try:
        image_pub = node.create_publisher(
            types.Image, IMAGE_TOPIC, QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE))
        detections_pub = node.create_publisher(
            types.DetectionArray, INPUT_TOPICS['detections_topic'], FRAME_QOS)
        relabels_pub = node.create_publisher(
            types.RelabelArray, INPUT_TOPICS['relabels_topic'], FRAME_QOS)
        decisions = []
        node.create_subscription(types.SampleDecision, INPUT_TOPICS['decisions_topic'],
                                 decisions.append, FRAME_QOS)
        publishers = (image_pub, detections_pub, relabels_pub)
        spin_until(executor, lambda: all(p.get_subscription_count() > 0 for p in publishers)
                   and node.count_publishers(INPUT_TOPICS['decisions_topic']) > 0,
                   'discovery between the test node and recorder_node')

        images = {}
        for i in range(N_FRAMES):
            image, detections = make_frame(types, i)
            images[stamp(i)] = serialize_message(image)
            if i != NO_IMAGE:
                image_pub.publish(image)
            if i != NO_DETECTIONS:
                detections_pub.publish(detections)
            if i == 30:
                relabels_pub.publish(make_relabels(types, 30, RELABELLED))
            if i == 20:
                # a malformed DetectionArray (cut inside its first detection) with a matching
                # image, between two good frames: logged and skipped. Sent mid-stream, so the
                # good frames after it show the node handled it before the signal comes.
                bad_image, bad_detections = make_frame(
                    types, N_FRAMES + 5, stamp_ns=stamp(i) + FRAME_NS // 2)
                image_pub.publish(bad_image)
                detections_pub.publish(serialize_message(bad_detections)[:40])
            executor.spin_once(timeout_sec=0.05)
        # frames leave the 1 s buffer as newer ones come: all but the last ~11 are decided
        # (checked below, after shutdown, together with the node's statistics)
        deadline = time.monotonic() + 20
        while len(decisions) < N_FRAMES - 2 - 11 and time.monotonic() < deadline:
            executor.spin_once(timeout_sec=0.05)
        assert process.poll() is None
        process.send_signal(stop_signal)
        output, _ = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
        executor.shutdown()
        node.destroy_node()
    assert process.returncode == 0, output

    published = {stamp_to_ns(d.header): d for d in decisions}
    assert len(published) == len(decisions)  # one decision per frame
    assert stamp(NO_IMAGE) not in published and stamp(NO_DETECTIONS) not in published
    splits = split_paths(tmp_path / 'run')
    assert splits and all((s / 'metadata.yaml').exists() for s in splits)
    bag = read_bag(splits)
    kept = set(bag[IMAGE_TOPIC])
    # every frame the node published as kept is in the bag; the frames still buffered at
    # the signal were decided at shutdown and are in the bag with their decision
    assert {ns for ns, d in published.items() if d.kept} <= kept
    assert kept & set(published), 'no kept frame was decided before the signal'
    for topic in (DETECTIONS_TOPIC, RELABELS_TOPIC, DECISIONS_TOPIC):
        assert set(bag[topic]) == kept, topic
    for ns in kept:
        decision, _ = bag[DECISIONS_TOPIC][ns]
        assert decision.kept
        if ns in published:
            assert (decision.reason, decision.weight) == \
                (published[ns].reason, pytest.approx(published[ns].weight))
        if decision.reason == 'sampled':
            assert decision.weight == pytest.approx(1 / decision.probability, rel=1e-6)
        # the image as published (compared re-serialised: CDR padding bytes are unspecified)
        assert canonical(bag[IMAGE_TOPIC][ns][1]) == canonical(images[ns])
    for i in RELABELLED:
        assert stamp(i) in kept
        relabels = bag[RELABELS_TOPIC][stamp(i)][0].relabels
        assert [(r.new_class_id, r.new_class_name) for r in relabels] == [(2, 'van')]
    stats = json.loads((tmp_path / 'run' / 'stats.json').read_text())
    assert stats['frames'] == N_FRAMES - 2, stats
    assert stats['unmatched_images'] == 1 and stats['unmatched_detections'] == 1
    assert stats['bad_input'] == 1 and stats['frames_matched'] == N_FRAMES - 1
    assert stats['kept'] == len(kept)
    assert stats['decisions_published'] == len(decisions)
    assert 'recording closed' in output


def test_unwritable_output_directory_ends_the_node_with_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / 'a_file'
    blocker.write_text('')
    result = subprocess.run(node_command(blocker), env={**os.environ, 'ROS_DOMAIN_ID': DOMAIN_ID},
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert 'cannot create the recording directory' in result.stderr


def test_invalid_parameter_ends_the_node_with_status_2(tmp_path: Path) -> None:
    result = subprocess.run(node_command(tmp_path, storage='tape'),
                            env={**os.environ, 'ROS_DOMAIN_ID': DOMAIN_ID},
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert 'storage' in result.stderr


def test_ctrl_c_while_starting_up_still_closes_the_recording(tmp_path: Path) -> None:
    """SIGINT as soon as the recording directory exists, usually before the node has finished
    starting: exit 0, stats.json written, one line saying the recording was closed."""
    env = {**os.environ, 'ROS_DOMAIN_ID': DOMAIN_ID}
    process = subprocess.Popen(node_command(tmp_path), env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    recording = tmp_path / 'run'
    deadline = time.monotonic() + 30
    while not recording.exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    process.send_signal(signal.SIGINT)
    output, _ = process.communicate(timeout=60)
    assert process.returncode == 0, output
    assert json.loads((recording / 'stats.json').read_text())['frames'] == 0
    assert f'recording closed: {recording}' in output
    assert 'Traceback' not in output


def _limit_file_size(limit: int):
    """preexec_fn: files the node writes cannot grow past `limit` bytes (writes beyond fail with
    EFBIG, like a full disk; Python ignores SIGXFSZ)."""
    import resource

    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return apply


@pytest.mark.slow
@pytest.mark.parametrize('exit_status', [None, 7], ids=['default', 'asked'])
def test_a_write_error_stops_recording_but_not_the_node(context, tmp_path: Path,
                                                        exit_status: int | None) -> None:
    """Splits cannot grow past 60 kB (RLIMIT_FSIZE): recording stops part-way; the node keeps
    deciding, publishing decisions and logging statistics, closes cleanly, writes stats.json and
    exits 0 (or the status it was asked for). A malformed image is rejected, never written."""
    types = rclpy_types()
    params = {'keep_all': True, 'flush_interval_s': 0.0, 'stats_period_s': 0.3}
    if exit_status is not None:
        params['write_error_exit_status'] = exit_status
    env = {**os.environ, 'ROS_DOMAIN_ID': DOMAIN_ID}
    process = subprocess.Popen(node_command(tmp_path, **params), env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True,
                               preexec_fn=_limit_file_size(60_000))
    node = Node('recorder_node_tester', context=context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    n_frames = 30  # 6.2 kB each: the split fills after about 9
    try:
        image_pub = node.create_publisher(
            types.Image, IMAGE_TOPIC, QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE))
        detections_pub = node.create_publisher(
            types.DetectionArray, INPUT_TOPICS['detections_topic'], FRAME_QOS)
        decisions = []
        node.create_subscription(types.SampleDecision, INPUT_TOPICS['decisions_topic'],
                                 decisions.append, FRAME_QOS)
        spin_until(executor, lambda: image_pub.get_subscription_count() > 0
                   and detections_pub.get_subscription_count() > 0
                   and node.count_publishers(INPUT_TOPICS['decisions_topic']) > 0,
                   'discovery between the test node and recorder_node')
        for i in range(n_frames):
            image, detections = make_frame(types, i)
            if i == 3:  # a valid header, a data length the body does not have
                cdr = bytearray(serialize_message(image))
                at = len(cdr) - len(image.data) - 4
                cdr[at:at + 4] = (368640).to_bytes(4, 'little')
                image_pub.publish(bytes(cdr))
            else:
                image_pub.publish(image)
            detections_pub.publish(detections)
            executor.spin_once(timeout_sec=0.05)
        # decided once 1 s of newer frames came: all but the last ~11, stopped or not
        spin_until(executor, lambda: len(decisions) >= n_frames - 1 - 11,
                   'decisions after the write error')
        time.sleep(1.0)  # a few statistics ticks after the stop
        process.send_signal(signal.SIGINT)
        output, _ = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
        executor.shutdown()
        node.destroy_node()
    assert process.returncode == (exit_status or 0), output
    assert output.count('recording stopped') >= 2, output  # the error line, then every tick
    assert 'Traceback' not in output and 'severity' not in output, output
    assert 'recording closed' in output, output
    stats = json.loads((tmp_path / 'run' / 'stats.json').read_text())
    assert stats['error'].startswith('recording stopped') and 'File too large' in stats['error']
    assert stats['bad_input'] == 1 and stats['frames'] == n_frames - 1
    assert stats['kept_not_written'] > 0
    # every frame decided (the buffered ones at shutdown, when rclpy cannot publish any more)
    assert stats['kept'] == n_frames - 1
    assert stats['decisions_published'] == len(decisions) >= n_frames - 1 - 11
    (split,) = split_paths(tmp_path / 'run')
    assert not (split / 'metadata.yaml').exists()  # aborted: bag-repair recovers it
    from importance_sampler_ros.recording.repair import repair

    (result,) = repair(split)
    assert result.status == 'repaired' and not result.lost_inside, result.detail
    bag = read_bag([split])
    written = stats['kept'] - stats['kept_not_written']
    assert len(bag[IMAGE_TOPIC]) == written > 0
    assert stamp(3) not in bag[IMAGE_TOPIC]
