"""Replay speed: real-time factor with recorded detections, and time per stage with the detector.

    .venv/bin/python benchmarks/replay_speed.py [--seconds 30] [--keep-ratio 0.1]

1. Writes a synthetic drive (10 Hz, 640x192) with `importance-sampler synth`.
2. Replays it with the detector (the shipped default model) keeping every frame, which also gives
   a bag holding the detector's detections for every frame; prints the time per stage.
3. Replays that bag with --use-recorded-detections at the chosen keep ratio: the real-time factor
   of everything but inference (goal: >= 20x for a 10 Hz drive).
All numbers come from one run on this machine, so the stage times compare as ratios.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

from importance_sampler_ros import topics
from importance_sampler_ros.offline.replay import replay_bag


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--seconds', type=float, default=30.0)
    parser.add_argument('--keep-ratio', type=float, default=0.1)
    parser.add_argument('--device', default='cpu')
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix='replay-speed-') as scratch:
        scratch = Path(scratch)
        drive = scratch / 'drive'
        subprocess.run([sys.executable, '-m', 'importance_sampler_ros.cli', 'synth', '--out',
                        str(drive), '--seconds', str(args.seconds), '--fps', '10', '--seed', '11'],
                       check=True, stdout=subprocess.DEVNULL)
        detected = replay_bag(drive, scratch / 'detected', overrides={
            'recorder_node': {'keep_all': True, 'seed': 1},
            'detector_node': {'device': args.device}})
        report = detected.report
        total = sum(report.stage_seconds.values())
        print(f'with the detector ({report.ground_truth.get("model")}, {args.device}): '
              f'{report.frames_in} frames, {report.wall_seconds:.1f} s wall, '
              f'{report.real_time_factor:.2f}x real time')
        for stage, seconds in report.stage_seconds.items():
            print(f'  {stage:>20}: {seconds:7.2f} s  {100 * seconds / total:5.1f} %  '
                  f'{1000 * seconds / report.frames_in:7.2f} ms/frame')
        split = next(p for p in (scratch / 'detected').iterdir() if p.is_dir())
        recorded = replay_bag(split, scratch / 'recorded', use_recorded_detections=True,
                              detections_topic=topics.DETECTIONS,
                              overrides={'recorder_node': {'keep_ratio': args.keep_ratio,
                                                           'seed': 1}})
        report = recorded.report
        print(f'with recorded detections (keep ratio {args.keep_ratio}): {report.frames_in} '
              f'frames ({report.seconds_of_drive:.1f} s of drive) in {report.wall_seconds:.2f} s '
              f'= {report.real_time_factor:.1f}x real time; kept {report.frames_kept}')
        for stage, seconds in report.stage_seconds.items():
            print(f'  {stage:>20}: {1000 * seconds / report.frames_in:7.2f} ms/frame')
        print(f'real_time_factor_recorded={report.real_time_factor:.1f}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
