"""Live = offline: one bag through the live graph (`up`, fed by `play`) and through `replay`, with
the same parameter file and seed, gives the same decisions and the same bag.

The bag (replay_bags.write_drive) holds images and recorded detections of an object that drives
towards the camera and is relabelled near, so sampled, relabel-kept and dropped frames all occur.
Live: `up --skip detector_node` (tracker + recorder) and `play --detections-as`, reliable and at
10 Hz, so no frame is lost. Offline: `replay --use-recorded-detections`. Compared: every decision
the recorder published (stamp, kept, q, reason, weight) against replay's decision of that frame,
the recorder's counts, and the two recordings message by message (topic, log time, CDR bytes:
images byte for byte, the others with CDR alignment padding zeroed, which rclpy leaves unset),
each read back with rosbags' AnyReader.
"""
import json
from pathlib import Path

import pytest
from conftest import wait_until
from live_graph_fixtures import (
    DECISIONS,
    DETECTIONS,
    IMAGE_TOPIC,
    TRACKED,
    Graph,
    domain_id,
    params_file,
)
from replay_bags import write_drive
from rosbags.highlevel import AnyReader

from importance_sampler_ros.bags import bag_io
from importance_sampler_ros.bags.messages import stamp_to_ns
from importance_sampler_ros.offline.replay import replay_bag

pytestmark = [pytest.mark.ros, pytest.mark.slow]
FRAMES = 60
RECORDED = '/recorded/detections'
RECORDER = {'bag_name': 'drive', 'keep_ratio': 0.3, 'seed': 4, 'buffer_seconds': 1.0,
            'warmup_frames': 5, 'fsync': False, 'image_reliability': 'reliable',
            'join_timeout_s': 10.0, 'relabel_keep_share': 0.5}
CORE_COUNTS = ('frames', 'kept', 'sampled', 'relabel', 'forced', 'dropped', 'budget',
               'bytes_written', 'relabels_received', 'relabel_observations_buffered',
               'relabel_observations_late_kept', 'relabel_observations_late_dropped',
               'relabel_observations_unknown')


def recording_contents(recording: Path) -> tuple[dict, list[tuple[str, int, bytes]]]:
    """(stats.json, every message of every split as (topic, log time ns, CDR bytes))."""
    stats = json.loads((recording / 'stats.json').read_text())
    splits = [Path(p) for p in stats['splits']]
    assert splits and [p.name for p in splits] == sorted(p.name for p in splits)
    messages = []
    for split in splits:
        with AnyReader([split], default_typestore=bag_io.typestore()) as reader:
            messages += [(c.topic, log_ns, bytes(raw)) for c, log_ns, raw in reader.messages()]
    return stats, messages


@pytest.mark.parametrize('ros', [domain_id(4)], indirect=True)
def test_live_graph_and_replay_decide_and_record_the_same(ros, tmp_path):
    drive = tmp_path / 'input'
    write_drive(drive, FRAMES)
    params = params_file(tmp_path, recorder_node=RECORDER)
    graph = Graph(tmp_path, ros, ['--params', str(params), '--skip', 'detector_node',
                                  '--output-dir', str(tmp_path / 'live')], visualize=False)
    try:
        graph.wait_ready(image_subscribers=1)
        summary = graph.play(drive, '--rate', '1', '--image-reliability', 'reliable',
                             '--topics', RECORDED, '--detections-as', DETECTIONS,
                             '--detections-source', RECORDED, subscribers=1)
        assert summary['images'] == FRAMES
        wait_until(lambda: graph.count(TRACKED) == FRAMES, 'every frame tracked', 20)
        # frames leave the 1 s ring buffer as newer ones come: all but the last second decided
        wait_until(lambda: graph.count(DECISIONS) >= FRAMES - 12, 'decisions', 20)
    finally:
        log = graph.stop()
    assert graph.up.returncode == 0, log

    offline = replay_bag(drive, tmp_path / 'offline' / 'drive', params_file=params,
                         use_recorded_detections=True)
    assert offline.exit_code == 0 and len(offline.frames) == FRAMES

    # decisions: each one the recorder published is replay's decision of that frame
    replayed = {f.stamp_ns: (f.kept, f.probability, f.reason, f.weight) for f in offline.frames}
    published = {stamp_to_ns(d.header): (d.kept, d.probability, d.reason, d.weight)
                 for d in graph.listener.messages(DECISIONS)}
    assert len(published) == graph.count(DECISIONS) >= FRAMES - 12
    for stamp, (kept, q, reason, weight) in published.items():
        # q and weight are float32 in SampleDecision, float64 in replay's records
        assert (kept, reason) == replayed[stamp][::2], f'frame {stamp}'
        assert (q, weight) == pytest.approx(replayed[stamp][1::2], rel=1e-6), f'frame {stamp}'
    reasons = {reason for _, _, reason, _ in replayed.values()}
    assert {'sampled', 'relabel'} <= reasons and any(not k for k, *_ in replayed.values())

    # the recordings: same counts, same messages, byte for byte
    live_stats, live_messages = recording_contents(tmp_path / 'live' / 'drive')
    offline_stats, offline_messages = recording_contents(tmp_path / 'offline' / 'drive')
    assert live_stats['error'] is None and offline_stats['error'] is None
    assert {k: live_stats[k] for k in CORE_COUNTS} == {k: offline_stats[k] for k in CORE_COUNTS}
    assert live_stats['unmatched_images'] == live_stats['unmatched_detections'] == 0
    assert live_stats['frames'] == FRAMES and live_stats['kept'] == offline.report.frames_kept
    assert [Path(p).name for p in live_stats['splits']] == [
        Path(p).name for p in offline_stats['splits']]
    assert len(live_messages) == len(offline_messages) > 0
    types = dict(bag_io.topics(Path(live_stats['splits'][0])))
    for index, (ours, theirs) in enumerate(zip(live_messages, offline_messages, strict=True)):
        assert ours[:2] == theirs[:2], f'message {index}: {ours[:2]} live, {theirs[:2]} replay'
        if ours[0] == IMAGE_TOPIC:  # passed through untouched on both paths
            assert ours[2] == theirs[2], f'image {ours[1]}: bytes differ'
        else:  # rclpy's CDR leaves alignment padding unset: compare with the padding zeroed
            assert canonical(ours[2], types[ours[0]]) == canonical(theirs[2], types[ours[0]]), (
                f'message {index} ({ours[0]} at {ours[1]}) differs')


def canonical(cdr: bytes, msgtype: str) -> bytes:
    """The message's CDR as rosbags writes it (alignment padding zeroed)."""
    return bag_io.serialize(bag_io.deserialize(cdr, msgtype))
