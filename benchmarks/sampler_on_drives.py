"""The recorder's sampler over the shipped detector's cached output on synthetic drives, one
drive after another as a car records them: how many labelled errors the kept frames hold.

For each sampler setting, ImportanceSampler (the object the recorder runs, with the recorder's
defaults unless the row says otherwise) decides every frame of the drives in order. Either the
sampler restarts per drive (sampler_state '': each drive learns its own scale of g) or it
carries its state from drive to drive (the default sampler_state: SamplerState written at close,
resumed by the next run). Printed per row:

- kept enrichment: expected labelled errors per kept frame, sum(q e) / sum(q), over errors per
  frame of all drives (ground truth; errors as in evaluation/errors.py, truths >= 20 px);
- per drive: the same within each drive, and the drive's share of the expected keeps;
- rate: sum(q) / (rho N), the expected keeps against the budget;
- R / uniform: the paper's relative variance R = sum g^2 / sum(g^2 / q) of the row's own frame
  importance g over all drives, divided by the mean q (what uniform keeps of the same rate get):
  above 1 the 1/q-weighted kept frames estimate the total importance better than uniform ones.

The detector runs once per drive (drive_cache.py, build/tune_relabel_cache). Run from the
repository root:

    PYTHONPATH=$PWD .venv/bin/python benchmarks/sampler_on_drives.py --seeds 421 422 423 424
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from drive_cache import detections_of_drive

from importance_sampler_ros.detection.config import DetectorConfig
from importance_sampler_ros.detection.detections import (
    FrameDetections,
    FrameScoring,
    frame_importance,
)
from importance_sampler_ros.evaluation.errors import (
    LABELLED_MIN_HEIGHT_PX,
    enrichment,
    frame_errors,
    sampler_enrichment,
)
from importance_sampler_ros.params import parse_assignments, specs
from importance_sampler_ros.sampling.config import SamplerConfig
from importance_sampler_ros.sampling.sampler import ImportanceSampler, relative_variance
from importance_sampler_ros.tracking.config import RelabelConfig, TrackerConfig
from importance_sampler_ros.tracking.relabel import RelabelingTracker

# (row name, aggregation, sharpness, carry the state across drives)
ROWS = (
    ('defaults (sum, a = 2, state carried)', 'sum', 2.0, True),
    ('session-12 defaults (mean, a = 2, state carried)', 'mean', 2.0, True),
    ('sum, a = 3, state carried', 'sum', 3.0, True),
    ('sum, a = 3, restart per drive', 'sum', 3.0, False),
    ('mean, a = 3, state carried', 'mean', 3.0, True),
    ('session-9 defaults (mean, a = 2, restart per drive)', 'mean', 2.0, False),
    ('paper (sum, a = 1, restart per drive)', 'sum', 1.0, False),
    # not product settings: the sum of the k largest importances (>= 20 px), for issue 16
    ('top-3 sum, a = 2, state carried', 'top-3', 2.0, True),
    ('top-5 sum, a = 2, state carried', 'top-5', 2.0, True),
    # not product settings either: the sum over the same detections of each importance divided
    # by its class's running mean importance (every counted detection of that class so far,
    # drives in order), and two per-track forms (the tracker node's defaults give the tracks):
    # a track adds only what raises its largest importance so far (a drive's total is the sum
    # of its tracks' maxima), or its k-th detection adds importance / sqrt(k)
    ('class-baseline sum, a = 2, state carried', 'class-baseline', 2.0, True),
    ('per-track max, a = 2, state carried', 'track-max', 2.0, True),
    ('per-track 1/sqrt(k), a = 2, state carried', 'track-sqrt', 2.0, True),
)


def drive_importances(drives: list, aggregation: str, detector: DetectorConfig
                      ) -> list[np.ndarray]:
    """g of every frame of each drive: the detector's frame importance with `aggregation`, or
    for 'top-k' the sum of the k largest importances the detector counts toward the frame, or
    one of the class-baseline / per-track sums (ROWS)."""
    if aggregation in ('class-baseline', 'track-max', 'track-sqrt'):
        return reweighted_importances(drives, aggregation, detector)
    top_k = int(aggregation[4:]) if aggregation.startswith('top-') else 0
    scoring = FrameScoring('sum' if top_k else aggregation, detector.candidates_in_frame,
                           detector.frame_min_box_height)

    def score(det: FrameDetections) -> float:
        if not top_k:
            return frame_importance(det, scoring)
        counted = np.asarray(scoring.counted(det), np.float64)
        return float(np.sort(counted)[::-1][:top_k].sum())

    return [np.array([score(d) for d, _ in drive]) for drive in drives]


def reweighted_importances(drives: list, aggregation: str, detector: DetectorConfig
                           ) -> list[np.ndarray]:
    """The sum over the published detections >= frame_min_box_height of each importance times
    a weight: 1 / its class's running mean importance ('class-baseline'), or per track of the
    tracker node's defaults what raises the track's largest importance ('track-max') or
    1 / sqrt(k) for its k-th detection ('track-sqrt'); untracked detections count whole."""
    tall_enough = FrameScoring(min_box_height=detector.frame_min_box_height).tall_enough
    sums: dict[int, float] = {}
    counts: dict[int, int] = {}
    out = []
    per_track = aggregation != 'class-baseline'
    for drive in drives:
        tracker = RelabelingTracker(TrackerConfig(), RelabelConfig()) if per_track else None
        best: dict[int, float] = {}
        seen: dict[int, int] = {}
        g = np.zeros(len(drive))
        for frame_index, (det, _) in enumerate(drive):
            track_ids = (tracker.update(det).assigned_ids.tolist() if tracker
                         else [0] * len(det))
            total = 0.0
            for importance, class_id, track_id, counts_toward in zip(
                    det.importances.tolist(), det.class_ids.tolist(), track_ids,
                    tall_enough(det.boxes).tolist(), strict=True):
                if not counts_toward:
                    continue
                if aggregation == 'class-baseline':
                    # the first detection of a class is its own baseline (weight: one unit)
                    baseline = sums[class_id] / counts[class_id] if class_id in counts else 0.0
                    total += importance / baseline if baseline > 0.0 else 1.0
                    sums[class_id] = sums.get(class_id, 0.0) + importance
                    counts[class_id] = counts.get(class_id, 0) + 1
                elif track_id == 0:
                    total += importance
                elif aggregation == 'track-max':
                    previous = best.get(track_id, 0.0)
                    total += max(importance - previous, 0.0)
                    best[track_id] = max(previous, importance)
                else:
                    seen[track_id] = seen.get(track_id, 0) + 1
                    total += importance / np.sqrt(seen[track_id])
            g[frame_index] = total
        out.append(g)
    return out


def expected_keeps(importances: list[np.ndarray], config: SamplerConfig, carry: bool
                   ) -> list[np.ndarray]:
    """q of every frame of each drive, the drives decided in order."""
    state = None
    out = []
    for drive_index, g in enumerate(importances):
        sampler = ImportanceSampler(dataclasses.replace(config, seed=drive_index))
        if state is not None:
            sampler.resume(state)
        q = np.empty(len(g))
        for i, value in enumerate(g.tolist()):
            q[i] = sampler.decide(i, value).probability
            sampler.note_final(False)
        out.append(q)
        state = sampler.state('drives') if carry else None
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--seeds', type=int, nargs='+', default=[421, 422, 423, 424])
    parser.add_argument('--seconds', type=float, default=60.0)
    parser.add_argument('--keep-ratio', type=float, nargs='+', default=[0.1, 0.02])
    parser.add_argument('--set', nargs='*', default=[], metavar='NAME=VALUE',
                        help='SamplerConfig fields for every row, e.g. mean_window=1200')
    args = parser.parse_args(argv)
    overrides = parse_assignments(args.set, specs(SamplerConfig))
    detector = DetectorConfig()
    drives = [detections_of_drive(seed, args.seconds) for seed in args.seeds]
    errors = [np.array([frame_errors(d, t, detector.score_threshold,
                                     min_labelled_height=LABELLED_MIN_HEIGHT_PX).total
                        for d, t in drive], np.float64) for drive in drives]
    all_errors = np.concatenate(errors)
    per_frame = all_errors.mean()
    drive_of = np.concatenate([np.full(len(e), seed) for e, seed in zip(errors, args.seeds,
                                                                         strict=True)])
    top = enrichment(all_errors, all_errors, 0.1, drive_of)
    print(f'drives {args.seeds}, {len(all_errors)} frames; labelled errors per frame '
          f'{per_frame:.3f} (per drive: '
          + ', '.join(f'{e.mean():.2f}' for e in errors)
          + f'); oracle (top 10 % of each drive): {top:.2f}')
    # aggregation -> g of every frame, per drive
    importances = {aggregation: drive_importances(drives, aggregation, detector)
                   for aggregation in {row[1] for row in ROWS}}
    all_importances = {aggregation: np.concatenate(g) for aggregation, g in importances.items()}
    for rho in args.keep_ratio:
        print(f'\nrho = {rho:g}')
        print('| sampler | kept enrichment | per drive | share of keeps per drive | rate '
              '| R / uniform |')
        print('|---|---|---|---|---|---|')
        for name, aggregation, sharpness, carry in ROWS:
            config = SamplerConfig(**{**overrides, 'keep_ratio': rho, 'sharpness': sharpness})
            q = expected_keeps(importances[aggregation], config, carry)
            q_all = np.concatenate(q)
            kept = sampler_enrichment(q_all, all_errors)
            per_drive = ', '.join(f'{sampler_enrichment(qd, e):.2f}'
                                  for qd, e in zip(q, errors, strict=True))
            shares = ', '.join(f'{qd.sum() / q_all.sum():.2f}' for qd in q)
            # the paper's R of its own frame importance, against uniform keeps of the same rate
            r_uniform = relative_variance(all_importances[aggregation], q_all) / q_all.mean()
            print(f'| {name} | {kept:.2f} | {per_drive} | {shares} | '
                  f'{q_all.sum() / (rho * len(q_all)):.2f} | {r_uniform:.2f} |')
    return 0


if __name__ == '__main__':
    sys.exit(main())
