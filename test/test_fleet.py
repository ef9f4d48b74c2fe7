"""replay-fleet on a local Ray with 2 workers: per-bag outputs, a corrupt bag, re-runs, and the
fleet-wide importance normaliser."""
from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from replay_bags import write_drive
from rosbags.highlevel import AnyReader

from importance_sampler_ros.bags import bag_io
from importance_sampler_ros.bags.images import rgb_to_image_msg
from importance_sampler_ros.bags.messages import detections_to_msg
from importance_sampler_ros.detection.detections import FrameDetections
from importance_sampler_ros.offline import fleet

RECORDER = {'keep_ratio': 0.3, 'seed': 4, 'buffer_seconds': 2.0, 'warmup_frames': 5,
            'fsync': False}
OVERRIDES = {'recorder_node': RECORDER}
START_NS = 1_700_000_000_000_000_000


@pytest.fixture(scope='module')
def local_ray():
    """One local Ray (2 CPUs) for the module, started the way run_fleet starts it."""
    import ray

    started = fleet.start_ray(None, 2)
    assert ray.is_initialized()
    assert ray.cluster_resources()['CPU'] == 2
    yield
    if started:
        ray.shutdown()


def write_level_drive(path: Path, frames: int, level: float, seed: int) -> np.ndarray:
    """A drive whose one object keeps its class (no relabels) and whose frame importances are
    `level` times a random factor in [0.5, 1.5); returns the importances."""
    types = bag_io.msg_types()
    rng = np.random.default_rng(seed)
    importances = level * rng.uniform(0.5, 1.5, frames)
    with bag_io.BagWriter(path) as writer:
        for index, g in enumerate(importances):
            stamp = START_NS + index * 100_000_000
            det = FrameDetections(
                stamp_ns=stamp, frame_id='camera', boxes=[[8.0, 6.0, 20.0, 18.0]],
                class_ids=[1], class_names=['car'], scores=[0.9], importances=[g],
                frame_importance=float(g), model_name='handmade')
            rgb = rng.integers(0, 256, (24, 32, 3), np.uint8)
            writer.write('/camera/image_raw', bag_io.IMAGE_TYPE, stamp,
                         rgb_to_image_msg(rgb, stamp, 'camera', types))
            writer.write('/recorded/detections', bag_io.msgtype('DetectionArray'), stamp,
                         detections_to_msg(det, types))
    return importances


def make_fleet(root: Path) -> Path:
    """drive_a: a rosbag2 directory; drive_b.mcap: a lone file; broken.mcap: not a bag."""
    fleet_dir = root / 'fleet'
    (fleet_dir / 'day1').mkdir(parents=True)
    write_drive(fleet_dir / 'day1' / 'drive_a', frames=40)
    write_drive(root / 'scratch', frames=30)
    shutil.move(next((root / 'scratch').glob('*.mcap')), fleet_dir / 'drive_b.mcap')
    (fleet_dir / 'broken.mcap').write_bytes(b'\x89MCAP0\r\n' + b'not a bag at all ' * 64)
    (fleet_dir / 'notes.txt').write_text('not a bag, not looked at\n')
    return fleet_dir


def read_recording(recording: Path) -> dict[str, list]:
    splits = sorted(p for p in recording.iterdir() if (p / 'metadata.yaml').exists())
    messages: dict[str, list] = {}
    with AnyReader(splits) as reader:
        for connection, _stamp, raw in reader.messages():
            messages.setdefault(connection.topic, []).append(
                reader.deserialize(raw, connection.msgtype))
    return messages


def by_name(report: dict) -> dict[str, dict]:
    return {bag['name']: bag for bag in report['bags']}


def test_discovery_rules(tmp_path):
    fleet_dir = make_fleet(tmp_path)
    (fleet_dir / '.hidden').mkdir()
    (fleet_dir / '.hidden' / 'x.mcap').write_bytes(b'')
    (fleet_dir / 'day1' / 'drive_b.db3').write_bytes(b'')
    out = fleet_dir / 'out'
    (out / 'old').mkdir(parents=True)
    (out / 'old' / 'metadata.yaml').write_text('')
    names = [bag.name for bag in fleet.discover_bags(fleet_dir, exclude=out)]
    assert names == ['broken', 'day1__drive_a', 'day1__drive_b', 'drive_b']
    with pytest.raises(fleet.FleetError, match='not a directory'):
        fleet.discover_bags(fleet_dir / 'drive_b.mcap')


@pytest.mark.slow
def test_fleet_replay_reports_each_bag_and_skips_complete_ones_on_rerun(tmp_path, local_ray):
    fleet_dir = make_fleet(tmp_path)
    out = tmp_path / 'out'
    lines: list[str] = []
    result = fleet.run_fleet(fleet_dir, out, num_workers=2, use_recorded_detections=True,
                             overrides=OVERRIDES, echo=lines.append)
    report = json.loads((out / 'fleet_report.json').read_text())
    bags = by_name(report)
    assert set(bags) == {'broken', 'day1__drive_a', 'drive_b'}
    assert bags['day1__drive_a']['status'] == 'ok' and bags['drive_b']['status'] == 'ok'
    assert bags['broken']['status'] == 'failed'
    assert 'broken.mcap' in bags['broken']['reason']
    assert 'not a readable rosbag2' in bags['broken']['reason']
    assert result.exit_code == fleet.EXIT_FAILED
    assert report['totals'] == result.report['totals']
    assert report['totals']['ok'] == 2 and report['totals']['failed'] == 1
    assert report['totals']['frames_in'] == 70
    for name, frames in (('day1__drive_a', 40), ('drive_b', 30)):
        bag = bags[name]
        assert bag['frames_in'] == frames
        own = json.loads(Path(bag['report']).read_text())
        assert own['frames_kept'] == bag['frames_kept'] > 0
        assert own['fleet']['normaliser'] == 'sliding window'
        messages = read_recording(out / name)
        decisions = messages['/importance_sampler/decisions']
        assert len(decisions) == len(messages['/camera/image_raw']) == bag['frames_kept']
        assert all(d.kept for d in decisions)
        assert (out / name / fleet.MARKER).exists()
        assert len(np.load(out / name / fleet.IMPORTANCES_FILE)) == frames
    assert not (out / 'broken').exists()
    assert report['totals']['frames_kept'] == sum(b.get('frames_kept', 0) for b in bags.values())
    for plot in report['plots'].values():
        assert Path(plot).stat().st_size > 0

    # Re-run: complete bags are skipped, untouched; the broken one is tried (and fails) again;
    # a bag whose marker is gone (an interrupted run) is redone from scratch.
    marker_b = (out / 'drive_b' / fleet.MARKER).stat().st_mtime_ns
    (out / 'day1__drive_a' / fleet.MARKER).unlink()
    lines.clear()
    again = fleet.run_fleet(fleet_dir, out, num_workers=2, use_recorded_detections=True,
                            overrides=OVERRIDES, echo=lines.append)
    bags_again = by_name(again.report)
    assert 'drive_b: output complete from an earlier run, skipped' in lines
    assert bags_again['drive_b']['skipped'] is True
    assert bags_again['drive_b']['frames_kept'] == bags['drive_b']['frames_kept']
    assert (out / 'drive_b' / fleet.MARKER).stat().st_mtime_ns == marker_b
    assert bags_again['day1__drive_a']['skipped'] is False
    assert bags_again['day1__drive_a']['status'] == 'ok'
    assert bags_again['day1__drive_a']['frames_kept'] == bags['day1__drive_a']['frames_kept']
    assert bags_again['broken']['status'] == 'failed'
    assert again.report['totals']['skipped_complete'] == 1

    # Other settings into the same --out: the finished outputs are not overwritten.
    other = fleet.run_fleet(fleet_dir, out, num_workers=2, use_recorded_detections=True,
                            overrides={'recorder_node': dict(RECORDER, keep_ratio=0.5)},
                            echo=lines.append)
    assert all(b['status'] == 'failed' for b in other.report['bags'])
    assert 'other settings' in by_name(other.report)['drive_b']['reason']
    assert (out / 'drive_b' / fleet.MARKER).stat().st_mtime_ns == marker_b


@pytest.mark.slow
def test_fleet_keep_ratio_keeps_fewer_frames_of_a_dull_drive(tmp_path, local_ray):
    fleet_dir = tmp_path / 'fleet'
    fleet_dir.mkdir()
    dull = write_level_drive(fleet_dir / 'dull', frames=80, level=0.1, seed=1)
    hard = write_level_drive(fleet_dir / 'hard', frames=80, level=1.0, seed=2)
    # a = 2: at the default a = 3 the dull drive's q (0.1^3 / mean) keeps none of its 80 frames
    sharpness = 2.0
    recorder = {k: v for k, v in RECORDER.items() if k != 'keep_ratio'} | {'sharpness': sharpness}
    result = fleet.run_fleet(fleet_dir, tmp_path / 'out', num_workers=2, fleet_keep_ratio=0.25,
                             use_recorded_detections=True, overrides={'recorder_node': recorder},
                             echo=lambda line: None)
    report = result.report
    bags = by_name(report)
    assert result.exit_code == 0, [(b['name'], b['reason']) for b in report['bags']]
    # the sampler normalises g^a: the fleet mean is the mean of g^a
    dull, hard = dull ** sharpness, hard ** sharpness
    fleet_mean = np.concatenate([dull, hard]).mean()
    assert report['importance_mean_fleet'] == pytest.approx(fleet_mean)
    for name in ('dull', 'hard'):
        assert bags[name]['importance_mean_used'] == pytest.approx(fleet_mean)
        decisions = read_recording(tmp_path / 'out' / name)['/importance_sampler/decisions']
        assert len(decisions) == bags[name]['frames_kept']
        assert all(d.importance_mean == pytest.approx(fleet_mean) for d in decisions)
    assert bags['dull']['frames_kept'] < bags['hard']['frames_kept'] / 3
    # q = min(1, 0.25 g^a / g_mean): the expected number of kept frames is sum q.
    expected = np.minimum(1.0, 0.25 * np.concatenate([dull, hard]) / fleet_mean).sum()
    assert report['totals']['expected_keep_ratio'] == pytest.approx(expected / 160)
    assert abs(report['totals']['frames_kept'] - expected) < 4 * np.sqrt(expected)

    # Per-bag normalisers on the same drives keep about the same share of each.
    per_bag = fleet.run_fleet(fleet_dir, tmp_path / 'out_window', num_workers=2,
                              use_recorded_detections=True,
                              overrides={'recorder_node': dict(recorder, keep_ratio=0.25)},
                              echo=lambda line: None)
    window = by_name(per_bag.report)
    assert window['dull']['frames_kept'] > 2 * bags['dull']['frames_kept']
    assert abs(window['dull']['frames_kept'] - window['hard']['frames_kept']) < 12


@pytest.mark.slow
def test_detector_runs_once_per_frame_and_its_cache_is_removed(tmp_path, local_ray):
    """Without recorded detections the first pass runs the detector and caches its detections;
    the sampling pass replays the cache, and the bag's report names the original input."""
    import torch

    from importance_sampler_ros.detection.detector import (
        DEFAULT_CLASS_NAMES,
        build_model,
        save_checkpoint,
    )

    torch.manual_seed(0)
    checkpoint = tmp_path / 'random.pt'
    save_checkpoint(checkpoint, build_model('isr_small', len(DEFAULT_CLASS_NAMES), 96, 160,
                                            score_threshold=0.02),
                    architecture='isr_small', class_names=DEFAULT_CLASS_NAMES, min_size=96,
                    max_size=160)
    fleet_dir = tmp_path / 'fleet'
    fleet_dir.mkdir()
    for name in ('one', 'two'):
        write_drive(fleet_dir / name, frames=12)
    params = tmp_path / 'params.yaml'
    params.write_text(f'detector_node:\n  ros__parameters:\n    checkpoint: {checkpoint}\n'
                      '    score_threshold: 0.02\n')
    recorder = {k: v for k, v in RECORDER.items() if k != 'keep_ratio'}
    out = tmp_path / 'out'
    result = fleet.run_fleet(fleet_dir, out, num_workers=2, fleet_keep_ratio=0.5,
                             params_file=params, overrides={'recorder_node': recorder},
                             echo=lambda line: None)
    assert result.exit_code == 0, [(b['name'], b['reason']) for b in result.report['bags']]
    assert not (out / fleet.CACHE_DIR).exists()
    for name, bag in by_name(result.report).items():
        own = json.loads(Path(bag['report']).read_text())
        assert own['input_bag'] == str(fleet_dir / name)
        assert own['ground_truth']['model'] == 'isr_small:random.pt'
        assert own['frames_in'] == 12 and own['stage_seconds']['detector (first pass)'] > 0
        decisions = read_recording(out / name)['/importance_sampler/decisions']
        assert len(decisions) == bag['frames_kept']
        assert all(d.importance_mean == pytest.approx(result.report['importance_mean_fleet'])
                   for d in decisions)
    assert result.report['importance_mean_fleet'] > 0


def test_bad_settings_fail_before_any_work(tmp_path):
    fleet_dir = make_fleet(tmp_path)
    with pytest.raises(fleet.FleetError, match='fleet-keep-ratio'):
        fleet.run_fleet(fleet_dir, tmp_path / 'out', fleet_keep_ratio=1.5)
    with pytest.raises(fleet.FleetError, match='exclude each other'):
        fleet.run_fleet(fleet_dir, tmp_path / 'out', fleet_keep_ratio=0.1,
                        overrides={'recorder_node': {'keep_ratio': 0.2}})
    with pytest.raises(fleet.FleetError, match='unknown parameter'):
        fleet.run_fleet(fleet_dir, tmp_path / 'out', overrides={'recorder_node': {'nope': 1}})
    empty = tmp_path / 'empty'
    empty.mkdir()
    with pytest.raises(fleet.FleetError, match='no bags'):
        fleet.run_fleet(empty, tmp_path / 'out2')
    assert not (tmp_path / 'out2').exists()


@pytest.mark.slow
def test_command_line(tmp_path, local_ray, capsys):
    from importance_sampler_ros.cli import main

    fleet_dir = tmp_path / 'fleet'
    fleet_dir.mkdir()
    write_drive(fleet_dir / 'drive', frames=20)
    (fleet_dir / 'broken').mkdir()
    (fleet_dir / 'broken' / 'metadata.yaml').write_text('rosbag2_bagfile_information: [\n')
    write_drive(tmp_path / 'long', frames=120)  # several 1 MiB chunks: cut in the middle
    (whole,) = (tmp_path / 'long').glob('*.mcap')
    data = whole.read_bytes()
    (fleet_dir / 'cut.mcap').write_bytes(data[: int(len(data) * 0.6)])
    code = main(['replay-fleet', str(fleet_dir), '--out', str(tmp_path / 'out'),
                 '--num-workers', '2', '--use-recorded-detections', '--seed', '3',
                 '--keep-ratio', '0.5'])
    captured = capsys.readouterr()
    assert code == fleet.EXIT_FAILED
    assert 'bags: 3 (1 ok, 1 truncated, 1 failed, 0 skipped as complete)' in captured.out
    assert 'broken: failed: ' in captured.err
    assert 'cut: truncated: ' in captured.err and 'damaged' in captured.err
    report = json.loads((tmp_path / 'out' / 'fleet_report.json').read_text())
    cut = by_name(report)['cut']
    assert 20 < cut['frames_in'] < 120 and (tmp_path / 'out' / 'cut' / fleet.MARKER).exists()
    # Without the broken bag only the truncation is left: exit status 3, the cut bag skipped.
    shutil.rmtree(fleet_dir / 'broken')
    assert main(['replay-fleet', str(fleet_dir), '--out', str(tmp_path / 'out'),
                 '--num-workers', '2', '--use-recorded-detections', '--seed', '3',
                 '--keep-ratio', '0.5']) == fleet.EXIT_TRUNCATED
    assert 'output complete from an earlier run, skipped' in capsys.readouterr().out
    assert main(['replay-fleet', str(tmp_path / 'none'), '--out', str(tmp_path / 'o')]) == 2
    assert 'not a directory' in capsys.readouterr().err


@pytest.mark.slow
def test_more_gpus_per_task_than_the_cluster_has_is_refused(tmp_path, local_ray):
    """Such tasks would wait forever for a GPU; the fleet refuses them at once instead."""
    fleet_dir = tmp_path / 'fleet'
    fleet_dir.mkdir()
    write_drive(fleet_dir / 'drive', frames=5)
    with pytest.raises(fleet.FleetError, match='needs 1000 GPU'):
        fleet.run_fleet(fleet_dir, tmp_path / 'out', gpus_per_task=1000,
                        overrides={'detector_node': {'device': 'cuda'}}, echo=lambda line: None)
    # Recorded detections run no detector: no GPU asked for.
    result = fleet.run_fleet(fleet_dir, tmp_path / 'out', gpus_per_task=1000,
                             use_recorded_detections=True, echo=lambda line: None)
    assert result.exit_code == 0


def test_seeds_differ_per_bag_and_are_stable():
    assert fleet.bag_seed(3, 'a') == fleet.bag_seed(3, 'a')
    assert fleet.bag_seed(3, 'a') != fleet.bag_seed(3, 'b')
    assert 0 <= fleet.bag_seed(3, 'a') < 2**31


def test_cli_parser_has_the_issue_options():
    parser = argparse.ArgumentParser()
    fleet.configure_replay_fleet_parser(parser)
    args = parser.parse_args(['in', '--out', 'o', '--ray-address', 'auto', '--num-workers', '3',
                              '--fleet-keep-ratio', '0.05'])
    assert (args.ray_address, args.num_workers, args.fleet_keep_ratio) == ('auto', 3, 0.05)
