"""Relabel and tracker settings against ground truth, on the default detector's output.

    .venv/bin/python benchmarks/tune_relabel.py [--seeds 201 202 203] [--seconds 60]

Runs the detector once per synthetic drive (seeds disjoint from training 1e9+ and from the
model card's evaluation 101-108, and from the demo's 7), caches the detections with the ground
truth, then replays only tracker + relabeler over a grid of settings and prints, per setting:
relabel events per minute, relabelled observations, class accuracy of matched detections before
and after relabelling (far field and all), and the share of errors corrected and of correct labels
made wrong. The defaults in config/importance_sampler.yaml were chosen from this table.
"""
from __future__ import annotations

import argparse
import itertools
import pickle
import sys
from pathlib import Path

import numpy as np

from importance_sampler_ros.offline.pipeline import FAR_DISTANCE_M, GroundTruthTally
from importance_sampler_ros.registry import NODES, NodeConfig
from importance_sampler_ros.tracking.config import RelabelConfig, TrackerConfig
from importance_sampler_ros.tracking.relabel import RelabelingTracker

CACHE = Path('build/tune_relabel_cache')


def detections_of_drive(seed: int, seconds: float) -> list:
    path = CACHE / f'drive_{seed}_{seconds:g}.pkl'
    if path.exists():
        return pickle.loads(path.read_bytes())
    from importance_sampler_ros.detection.detector import Detector, DetectorConfig
    from importance_sampler_ros.synth.world import SynthConfig, generate_drive

    detector = Detector(DetectorConfig())
    frames = [(detector.detect(f.image, f.stamp_ns, 'camera'), f.truth)
              for f in generate_drive(SynthConfig(seconds=seconds, fps=10.0, seed=seed))]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(frames))
    return frames


def evaluate(drives: list[list], config: NodeConfig) -> dict:
    events = observations = 0
    tally = GroundTruthTally()
    frames = 0
    for drive in drives:
        tracker = RelabelingTracker(config.of(TrackerConfig), config.of(RelabelConfig))
        for detections, truth in drive:
            tracked = tracker.update(detections)
            tally.add_frame(tracked.detections, truth)
            for event in tracked.relabels:
                events += 1
                observations += len(event.observations)
                tally.add_relabel(event)
            frames += 1
    truth, before, distance = (np.array(v) for v in zip(*tally.matches.values(), strict=True))
    after = np.array([tally.corrected.get(k, p) for k, p in zip(tally.matches, before,
                                                                strict=True)])
    far = distance >= FAR_DISTANCE_M
    wrong_before = before != truth
    return {
        'events_per_min': events / (frames / 10.0 / 60.0),
        'observations': observations,
        'far_before': float(np.mean(~wrong_before[far])),
        'far_after': float(np.mean(after[far] == truth[far])),
        'all_before': float(np.mean(~wrong_before)),
        'all_after': float(np.mean(after == truth)),
        'corrected': int((wrong_before & (after == truth)).sum()),
        'made_wrong': int((~wrong_before & (after != truth)).sum()),
    }


GRID = {
    'near_min_height_px': [40.0, 60.0],
    'near_min_score': [0.8, 0.9],
    'near_window': [5, 9],
    'segment_min_iou': [0.0, 0.3, 0.5],
    'iou_threshold': [0.3, 0.5],
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--seeds', type=int, nargs='+', default=[201, 202, 203])
    parser.add_argument('--seconds', type=float, default=60.0)
    args = parser.parse_args()
    drives = [detections_of_drive(seed, args.seconds) for seed in args.seeds]
    names = list(GRID)
    rows = []
    for combo in itertools.product(*GRID.values()):
        overrides = dict(zip(names, combo, strict=True))
        if overrides['near_window'] == 9:
            overrides['near_min_votes'] = 5
        rows.append((overrides, evaluate(drives, NODES['tracker_node'].build(overrides))))
    rows.sort(key=lambda row: row[1]['all_after'] - row[1]['all_before'], reverse=True)
    defaults = evaluate(drives, NODES['tracker_node'].build({}))
    header = ' '.join(f'{n[:12]:>12}' for n in names)
    print(f'{header} {"ev/min":>7} {"obs":>6} {"far b->a":>13} {"all b->a":>13} '
          f'{"fixed":>6} {"broken":>6}')
    for overrides, m in [({'(defaults)': ''}, defaults), *rows[:15], *rows[-3:]]:
        cells = ' '.join(f'{overrides.get(n, "-")!s:>12}' for n in names)
        if '(defaults)' in overrides:
            cells = f'{"(defaults)":>12}' + ' ' * (13 * (len(names) - 1))
        print(f'{cells} {m["events_per_min"]:7.1f} {m["observations"]:6d} '
              f'{m["far_before"]:.3f}->{m["far_after"]:.3f} '
              f'{m["all_before"]:.3f}->{m["all_after"]:.3f} {m["corrected"]:6d} '
              f'{m["made_wrong"]:6d}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
