"""Which frame score finds the frames with detector errors: every scorer x aggregation x
candidates x box-height filter x sharpening, on the shipped detector's output.

    PYTHONPATH=$PWD .venv/bin/python benchmarks/frame_scores.py [--seeds 401 402 403 404]
        [--seconds 60] [--keep-ratio 0.1] [--markdown docs/measurements/frame_scores.md]

Runs the detector once per long-tailed drive (default mix; seeds disjoint from training, from
the model card's common evaluation 301-306 and from the closed loop's pools), caches its output
with the sub-threshold candidates (drive_cache.py), and per frame counts the detector's errors at
the node's score threshold (evaluation.errors, selection-metrics.md), on every object and on
labelled objects (truths >= LABELLED_MIN_HEIGHT_PX; smaller ones are don't care). Then for each
frame score g (detection.detections.FrameScoring over the published detections' scorer column):

- top 10 %: errors per frame among the top 10 % of each drive's frames by g / errors per frame;
- sampler a: the expected errors per kept frame of q = min(1, rho g^a / mean(g^a)) (the
  recorder's rule with sharpness a and its mean over the whole run) / errors per frame;
- R/rho at a = 1 (selection-metrics.md: 1 + CV^2 of g) and the share of the kept frames in a
  rare situation at the last a.

The oracle rows rank by the true error counts. Prints a markdown table (and writes it with
--markdown).
"""
from __future__ import annotations

import argparse
import itertools
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from drive_cache import detections_of_drive

from importance_sampler_ros.detection.config import AGGREGATIONS, SCORERS, DetectorConfig
from importance_sampler_ros.detection.detections import FrameScoring, rescored
from importance_sampler_ros.evaluation.errors import (
    LABELLED_MIN_HEIGHT_PX,
    enrichment,
    frame_errors,
    sampler_enrichment,
)
from importance_sampler_ros.sampling.sampler import importance_probabilities
from importance_sampler_ros.synth.situations import COMMON_TAGS

SHARPNESS = (1.0, 2.0, 3.0, 4.0)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--seeds', type=int, nargs='+', default=[401, 402, 403, 404])
    parser.add_argument('--seconds', type=float, default=60.0)
    parser.add_argument('--keep-ratio', type=float, default=0.1)
    parser.add_argument('--markdown', type=Path, default=None)
    args = parser.parse_args()
    start = time.perf_counter()
    defaults = DetectorConfig()
    threshold = defaults.score_threshold
    frames, drives = [], []
    for seed in args.seeds:
        for det, truth in detections_of_drive(seed, args.seconds, threshold=threshold):
            frames.append((det, truth))
            drives.append(seed)
    drives = np.asarray(drives)
    every = np.array([frame_errors(d, t, threshold).total for d, t in frames], np.float64)
    labelled = np.array([frame_errors(d, t, threshold,
                                      min_labelled_height=LABELLED_MIN_HEIGHT_PX).total
                         for d, t in frames], np.float64)
    rare = np.array([bool(set(t.situations) - set(COMMON_TAGS)) for _, t in frames])
    default = (defaults.scorer, defaults.aggregation, defaults.candidates_in_frame,
               defaults.frame_min_box_height)
    header = ('| scorer | aggregation | candidates | boxes >= px | top 10 % | '
              + ' | '.join(f'sampler a={a:g}' for a in SHARPNESS)
              + f' | R/rho a=1 | rare kept a={SHARPNESS[-1]:g} | top 10 %, every object |')
    lines = [header, '|---' * (8 + len(SHARPNESS)) + '|']
    for errors, name in ((labelled, 'oracle (labelled errors)'), (every, 'oracle (every error)')):
        lines.append(f'| {name} | | | | {enrichment(errors, labelled, 0.1, drives):.2f} | '
                     + ' | ' * len(SHARPNESS) + ' | | '
                     f'{enrichment(errors, every, 0.1, drives):.2f} |')
    for scorer, aggregation, candidates, height in itertools.product(
            SCORERS, AGGREGATIONS, (False, True), (0.0, LABELLED_MIN_HEIGHT_PX)):
        scoring = FrameScoring(aggregation, candidates, height)
        g = np.array([rescored(d, scorer, scoring).frame_importance for d, _ in frames])
        sampled = [sampler_enrichment(importance_probabilities(g ** a, args.keep_ratio), labelled)
                   for a in SHARPNESS]
        q = importance_probabilities(g ** SHARPNESS[-1], args.keep_ratio)
        cv2 = float(g.var() / max(g.mean() ** 2, 1e-24))
        mark = ' **(default)**' if (scorer, aggregation, candidates, height) == default else ''
        lines.append(
            f'| {scorer}{mark} | {aggregation} | {candidates} | {height:g} | '
            f'{enrichment(g, labelled, 0.1, drives):.2f} | '
            + ' | '.join(f'{s:.2f}' for s in sampled)
            + f' | {1 + cv2:.2f} | {float((q * rare).sum() / max(q.sum(), 1e-12)):.2f} | '
            f'{enrichment(g, every, 0.1, drives):.2f} |')
    intro = [
        f'{len(frames)} frames of drives {args.seeds} ({args.seconds:g} s, 10 fps, default '
        f'mix; rare-situation share {rare.mean():.2f}); score threshold {threshold}; errors per '
        f'frame: {every.mean():.2f} on every object, {labelled.mean():.2f} on labelled objects '
        f'(>= {LABELLED_MIN_HEIGHT_PX:g} px). Enrichment of labelled errors unless the column '
        f'says otherwise; keep ratio {args.keep_ratio}; {time.perf_counter() - start:.0f} s.', '']
    text = '\n'.join(intro + lines)
    print(text)
    if args.markdown:
        args.markdown.write_text(text + '\n')
    return 0


if __name__ == '__main__':
    sys.exit(main())
