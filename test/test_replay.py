"""Offline replay: the sampled bag read back with independent readers, the report, bad input."""
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from mcap.reader import make_reader
from mcap_ros2.decoder import DecoderFactory
from replay_bags import FPS, HEIGHT, START_NS, write_drive
from rosbags.highlevel import AnyReader

from importance_sampler_ros.bags import bag_io
from importance_sampler_ros.offline.replay import EXIT_TRUNCATED, ReplayError, replay_bag

# relabel force-keeps on (off by default): the relabel tests here replay them
RECORDER = {'keep_ratio': 0.3, 'seed': 4, 'buffer_seconds': 3.0, 'warmup_frames': 5,
            'relabel_keep_share': 0.5}
OVERRIDES = {'recorder_node': RECORDER}


def replay(tmp_path: Path, frames: int = 60, **kwargs):
    source = tmp_path / 'drive'
    written = write_drive(source, frames)
    result = replay_bag(source, tmp_path / 'out', use_recorded_detections=True,
                        overrides=OVERRIDES, **kwargs)
    return written, result


def read_output(out: Path) -> dict[str, list]:
    splits = sorted(p for p in out.iterdir() if p.is_dir())
    messages: dict[str, list] = {}
    with AnyReader(splits) as reader:
        for connection, stamp, raw in reader.messages():
            msg = reader.deserialize(raw, connection.msgtype)
            messages.setdefault(connection.topic, []).append((stamp, msg))
    return messages


def test_sampled_bag_holds_exactly_the_kept_frames(tmp_path):
    written, result = replay(tmp_path)
    report = result.report
    assert result.exit_code == 0
    assert report.frames_in == len(written) == 60
    out = read_output(tmp_path / 'out')
    decisions = out['/importance_sampler/decisions']
    images = out['/camera/image_raw']
    kept_stamps = [stamp for stamp, d in decisions if d.kept]
    assert len(decisions) == report.frames_kept == len(kept_stamps) > 0
    assert [stamp for stamp, _ in images] == kept_stamps
    assert [stamp for stamp, _ in out['/importance_sampler/detections']] == kept_stamps
    for stamp, decision in decisions:
        assert decision.__msgtype__ == bag_io.msgtype('SampleDecision')
        assert decision.kept and decision.reason in ('sampled', 'relabel', 'forced')
        expected_weight = 1.0 / decision.probability if decision.reason == 'sampled' else 1.0
        assert decision.weight == pytest.approx(expected_weight, rel=1e-5)
        assert stamp == decision.header.stamp.sec * 10**9 + decision.header.stamp.nanosec
    # the original image bytes are what was written
    source = {m.stamp_ns: m.rawdata for m in bag_io.read_messages(
        tmp_path / 'drive', ['/camera/image_raw'])}
    for stamp, image in images:
        assert bag_io.serialize(image) == source[stamp]


def test_relabelled_far_frames_are_kept_with_the_new_class(tmp_path):
    _, result = replay(tmp_path)
    assert result.report.relabel_events >= 1
    out = read_output(tmp_path / 'out')
    relabel_frames = {stamp for stamp, d in out['/importance_sampler/decisions']
                      if d.reason == 'relabel'}
    assert relabel_frames, 'the far frames named by the relabel should have been force-kept'
    relabels = {stamp: array for stamp, array in out['/importance_sampler/relabels']}
    for stamp in relabel_frames:
        (relabel,) = relabels[stamp].relabels
        assert (relabel.old_class_name, relabel.new_class_name) == ('car', 'truck')
        assert [o.stamp.sec * 10**9 + o.stamp.nanosec for o in relabel.observations] == [stamp]


def test_mcap_reader_agrees(tmp_path):
    _, result = replay(tmp_path)
    split = next(p for p in (tmp_path / 'out').iterdir() if p.is_dir())
    (mcap_file,) = split.glob('*.mcap')
    with open(mcap_file, 'rb') as stream:
        reader = make_reader(stream, decoder_factories=[DecoderFactory()])
        kept = [m.kept for _, _, _, m in reader.iter_decoded_messages(
            topics=['/importance_sampler/decisions'])]
    assert len(kept) == result.report.frames_kept and all(kept)


def test_report_files(tmp_path):
    _, result = replay(tmp_path)
    data = json.loads(result.report_path.read_text())
    assert data['frames_in'] == 60 and data['frames_kept'] == result.report.frames_kept
    assert 0 < data['relative_variance'] <= 1
    for name in ('importance_timeline', 'importance_histogram', 'relative_variance',
                 'relabel_examples'):
        assert Path(data['plots'][name]).stat().st_size > 1000, name


def test_same_seed_same_decisions(tmp_path):
    _, first = replay(tmp_path / 'a')
    _, second = replay(tmp_path / 'b')
    assert first.report.frames_kept == second.report.frames_kept > 0
    decisions = [[d.probability for _, d in read_output(p / 'out')[
        '/importance_sampler/decisions']] for p in (tmp_path / 'a', tmp_path / 'b')]
    assert len(decisions[0]) == first.report.frames_kept
    assert np.array_equal(decisions[0], decisions[1])
    # every frame's decision, the dropped ones too
    every = [[(f.stamp_ns, f.kept, f.probability, f.reason) for f in r.frames]
             for r in (first, second)]
    assert len(every[0]) == 60 and every[0] == every[1]


@pytest.mark.parametrize('make,message', [
    (lambda p: p / 'missing', 'no such bag'),
    (lambda p: (p / 'junk.mcap').write_bytes(b'garbage') and p / 'junk.mcap',
     'not a readable rosbag2'),
    (lambda p: write_drive(p / 'b', 3) and (p / 'b'), None),  # detections topic, asked image
    (lambda p: (p / 'notes').mkdir() or (p / 'notes' / 'a.txt').touch() or p / 'notes',
     r'notes is a directory but not a rosbag2 bag \(no metadata.yaml and no .mcap or .db3'),
])
def test_bad_input_is_one_clear_error(tmp_path, make, message):
    path = make(tmp_path)
    if message is None:
        with pytest.raises(ReplayError, match='topic /nope is not in the bag'):
            replay_bag(path, tmp_path / 'out', image_topic='/nope')
        return
    with pytest.raises(ReplayError, match=message):
        replay_bag(path, tmp_path / 'out', use_recorded_detections=True)


def test_image_topic_of_another_type_is_refused(tmp_path):
    write_drive(tmp_path / 'drive', 3)
    with pytest.raises(ReplayError, match='/recorded/detections has type importance_sampler_ros/'
                                          'msg/DetectionArray, not sensor_msgs/msg/Image'):
        replay_bag(tmp_path / 'drive', tmp_path / 'out', image_topic='/recorded/detections')


def test_bag_without_images(tmp_path):
    path = tmp_path / 'no_images'
    with bag_io.BagWriter(path) as writer:
        writer.write('/x', bag_io.msgtype('SampleDecision'), 1, bag_io.msg_types().SampleDecision(
            header=bag_io.msg_types().Header(stamp=bag_io.msg_types().Time(sec=0, nanosec=1),
                                             frame_id=''), kept=True, probability=1.0,
            weight=1.0, reason='forced', frame_importance=0.0, importance_mean=0.0,
            keep_ratio=1.0))
    with pytest.raises(ReplayError, match='no sensor_msgs/msg/Image topic'):
        replay_bag(path, tmp_path / 'out')


BAD_IMAGES = {3: {'encoding': 'yuv422'}, 6: {'step': 10}, 9: {'height': 4 * HEIGHT}}


def test_bad_images_are_skipped_as_the_detector_node_skips_them(tmp_path):
    write_drive(tmp_path / 'drive', 12, with_detections=False, bad_images=BAD_IMAGES)
    result = replay_bag(tmp_path / 'drive', tmp_path / 'out',
                        overrides={'recorder_node': {**RECORDER, 'keep_all': True}})
    assert result.exit_code == 0
    assert result.report.ground_truth['images_skipped'] == len(BAD_IMAGES)
    assert result.report.frames_in == 12 - len(BAD_IMAGES)
    bad_stamps = {START_NS + i * 10**9 // FPS for i in BAD_IMAGES}
    decided = {f.stamp_ns for f in result.frames}
    assert not decided & bad_stamps and len(decided) == 12 - len(BAD_IMAGES)
    recorded = {stamp for stamp, _ in read_output(tmp_path / 'out')['/camera/image_raw']}
    assert recorded == decided  # keep_all: every frame the detector saw, no bad one


def test_bad_images_with_recorded_detections_are_recorded_as_the_nodes_do(tmp_path):
    # the recorder (node and replay alike) refuses an image whose data does not fit its size
    # (step 10, height x4): never written; a consistent image it cannot decode (yuv422) goes
    # through, only its crops are lost
    write_drive(tmp_path / 'drive', 12, bad_images=BAD_IMAGES)
    result = replay_bag(tmp_path / 'drive', tmp_path / 'out', use_recorded_detections=True,
                        overrides=OVERRIDES)
    assert result.exit_code == 0 and result.report.frames_in == 12 - 2
    assert result.report.ground_truth['frames_rejected'] == 2
    assert result.report.ground_truth['images_undecoded'] == 1
    assert result.report.ground_truth['images_skipped'] == 0


def test_kept_images_go_under_the_input_image_topic(tmp_path):
    write_drive(tmp_path / 'drive', 20, image_topic='/front/image')
    result = replay_bag(tmp_path / 'drive', tmp_path / 'out', use_recorded_detections=True,
                        overrides=OVERRIDES, image_topic='/front/image')
    out = read_output(tmp_path / 'out')
    assert result.report.frames_kept > 0
    assert len(out['/front/image']) == result.report.frames_kept
    assert '/camera/image_raw' not in out


def test_truncated_bag_replays_up_to_the_damage(tmp_path):
    source = tmp_path / 'drive'
    write_drive(source, 120)  # ~5.5 MB: several of rosbags' 1 MiB chunks
    (mcap_file,) = source.glob('*.mcap')
    data = mcap_file.read_bytes()
    damaged = tmp_path / 'damaged'
    damaged.mkdir()
    (damaged / 'damaged.mcap').write_bytes(data[: int(len(data) * 0.6)])
    result = replay_bag(damaged / 'damaged.mcap', tmp_path / 'out',
                        use_recorded_detections=True, overrides=OVERRIDES)
    assert result.exit_code == EXIT_TRUNCATED
    assert 20 < result.report.frames_in < 120
    assert 'damaged' in result.report.truncated
    assert (damaged / 'damaged.mcap').stat().st_size == int(len(data) * 0.6)  # untouched


@pytest.mark.ros
def test_cli_prints_summary_and_fails_clearly(tmp_path):
    write_drive(tmp_path / 'drive', 20)
    cli = [sys.executable, '-m', 'importance_sampler_ros.cli', 'replay']
    ok = subprocess.run([*cli, str(tmp_path / 'drive'), '--out', str(tmp_path / 'out'),
                         '--use-recorded-detections', '--keep-ratio', '0.5'],
                        capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, ok.stderr
    assert 'frames in / kept: 20 /' in ok.stdout and 'report:' in ok.stdout
    bad = subprocess.run([*cli, str(tmp_path / 'nothing'), '--out', str(tmp_path / 'o2')],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 1
    assert bad.stderr.strip().splitlines()[-1].startswith('importance-sampler replay: error:')
    shutil.rmtree(tmp_path / 'out')


def test_ground_truth_replayed_as_the_recorded_detections_fills_both_roles(tmp_path):
    from live_graph_fixtures import moving_box_frames
    from live_graph_fixtures import write_drive as write_truth_drive

    from importance_sampler_ros.bags.frames import FrameSource

    stamps = write_truth_drive(tmp_path / 'drive', moving_box_frames(8))  # truth topic only
    source = FrameSource(tmp_path / 'drive', use_recorded_detections=True)
    frames = list(source)
    assert [f.stamp_ns for f in frames] == stamps
    assert all(f.detections is not None and f.truth is not None for f in frames)
    assert source.unmatched_images == source.unmatched_detections == 0
