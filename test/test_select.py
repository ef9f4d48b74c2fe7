"""`importance-sampler select`: the labelling set picked from recordings, read back with rosbags."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from rosbags.highlevel import AnyReader
from test_recorder import make_frame, stamp

from importance_sampler_ros.bags.bag_io import typestore
from importance_sampler_ros.cli import main
from importance_sampler_ros.recording.recorder import Recorder, RecorderConfig
from importance_sampler_ros.sampling.sampler import SamplerConfig
from importance_sampler_ros.topics import DETECTIONS, IMAGE

SCENES = (40, 40, 3)  # frames per scene: the third is rare


def _record(out: Path, name: str, descriptors: bool = True) -> Path:
    config = RecorderConfig(output_dir=out, bag_name=name, buffer_seconds=0.0, fsync=False,
                            sampler=SamplerConfig(keep_all=True))
    rng = np.random.default_rng(0)
    centres = 10.0 * np.eye(6)[:len(SCENES)]
    with Recorder(config) as recorder:
        i = 0
        for scene, n in enumerate(SCENES):
            for _ in range(n):
                image, detections = make_frame(i)
                detections.frame_descriptor = (
                    (centres[scene] + rng.normal(0.0, 0.2, 6)).astype(np.float32)
                    if descriptors else np.zeros(0, np.float32))
                recorder.add_frame(image, detections)
                i += 1
    return out / name


def _scene(i: int) -> int:
    return int(np.searchsorted(np.cumsum(SCENES), i, side='right'))


def test_select_covers_every_scene_and_writes_a_bag_of_the_picked_frames(tmp_path):
    recording = _record(tmp_path, 'drive')
    out = tmp_path / 'labels'
    assert main(['select', str(recording), '--count', '3', '--no-reference',
                 '--out', str(out)]) == 0
    summary = json.loads((out / 'selection.json').read_text())
    assert summary['candidates'] == sum(SCENES) and summary['picked'] == 3
    picked = sorted(f['stamp_ns'] for f in summary['frames'])
    frame_index = [(s - stamp(0)) // (stamp(1) - stamp(0)) for s in picked]
    assert sorted(_scene(i) for i in frame_index) == [0, 1, 2]  # random would miss the rare one
    with AnyReader([out / 'selected'], default_typestore=typestore()) as reader:
        by_topic: dict[str, list[int]] = {}
        for connection, _t, raw in reader.messages():
            message = reader.deserialize(raw, connection.msgtype)
            by_topic.setdefault(connection.topic, []).append(
                message.header.stamp.sec * 1_000_000_000 + message.header.stamp.nanosec)
    assert sorted(by_topic[IMAGE]) == picked and sorted(by_topic[DETECTIONS]) == picked


def test_select_refuses_what_it_cannot_use_with_one_line(tmp_path, capsys):
    recording = _record(tmp_path, 'drive')
    full = tmp_path / 'full'
    full.mkdir()
    (full / 'x').write_text('x')
    assert main(['select', str(recording), '--count', '3', '--out', str(full)]) == 1
    assert main(['select', str(recording), '--share', '1.5', '--out', str(tmp_path / 'a')]) == 2
    bare = _record(tmp_path, 'bare', descriptors=False)
    assert main(['select', str(bare), '--count', '3', '--out', str(tmp_path / 'b')]) == 1
    assert main(['select', str(tmp_path / 'nothing'), '--count', '3',
                 '--out', str(tmp_path / 'c')]) == 1
    errors = capsys.readouterr().err.strip().splitlines()
    assert len(errors) == 4 and all(e.startswith('importance-sampler select: ') for e in errors)
    assert 'without one' in errors[2]


def test_select_with_the_shipped_reference_picks_the_share_asked(tmp_path):
    # the shipped model's reference has its descriptor size: build frames of that size
    from importance_sampler_ros.offline.select import _default_reference

    reference = np.load(_default_reference())
    config = RecorderConfig(output_dir=tmp_path, bag_name='drive', buffer_seconds=0.0,
                            fsync=False, sampler=SamplerConfig(keep_all=True))
    rng = np.random.default_rng(1)
    with Recorder(config) as recorder:
        for i in range(50):
            image, detections = make_frame(i)
            detections.frame_descriptor = reference[rng.integers(len(reference))] + rng.normal(
                0.0, 0.01, reference.shape[1]).astype(np.float32)
            recorder.add_frame(image, detections)
    out = tmp_path / 'labels'
    assert main(['select', str(tmp_path / 'drive'), '--share', '0.1', '--out', str(out),
                 '--no-bag']) == 0
    summary = json.loads((out / 'selection.json').read_text())
    assert summary['picked'] == 5 and summary['reference'].endswith('.coverage.npy')
    assert not (out / 'selected').exists()
