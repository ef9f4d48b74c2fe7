"""Tracker speed: frames per second of RelabelingTracker (SORT + history + relabel bookkeeping)
at 10, 15, 50 and 200 objects per frame, on one core, against the reference SORT timed in the
same run: the two take turns every 10 frames of a stream (the machine's speed drifts), and each
round is one pass over the stream.

Streams are evaluate_tracking.py's simple road scenes turned into detections with its 'medium'
noise (jitter, 15 % dropouts, false positives, far-field class confusions). Each tracker gets the
input in the form it takes (FrameDetections for ours, prepared arrays for the reference), built
before timing. `--drives SEED ...` adds the shipped detector's output on synthetic drives
(drive_cache.py: about 10 published boxes and, at the default candidate_floor 0.1, 33 candidates
per frame, which only our tracker takes). Run from the repository root:

    nice .venv/bin/python benchmarks/tracker_speed.py [--frames 300] [--rounds 7] [--set name=value]
"""
from __future__ import annotations

import os

# one core: no BLAS / OpenMP threads (set before numpy is imported)
for _var in ('OMP_NUM_THREADS', 'OPENBLAS_NUM_THREADS', 'MKL_NUM_THREADS'):
    os.environ[_var] = '1'

import argparse  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from evaluate_tracking import (  # noqa: E402
    DEFAULT_CACHE,
    NOISE_LEVELS,
    load_reference_sort,
    noisy_detections,
    reference_rows,
    simple_drive,
    tracker_node_config,
)

from importance_sampler_ros.detection.config import DetectorConfig  # noqa: E402
from importance_sampler_ros.registry import NodeConfig  # noqa: E402
from importance_sampler_ros.tracking.config import RelabelConfig, TrackerConfig  # noqa: E402
from importance_sampler_ros.tracking.relabel import RelabelingTracker  # noqa: E402

CHUNK_FRAMES = 10


def time_both(sort_class, frames, rows, config: NodeConfig) -> tuple[float, float]:
    """(ours, reference) frames per second over one pass of the stream. The two trackers take
    turns every CHUNK_FRAMES frames (each keeps its state), so both are timed within the same
    few milliseconds and the machine's drift cancels out of their ratio."""
    ours = RelabelingTracker(config.of(TrackerConfig), config.of(RelabelConfig))
    reference = sort_class(max_age=3, min_hits=3, iou_threshold=0.3)
    ours_s = reference_s = 0.0
    for lo in range(0, len(frames), CHUNK_FRAMES):
        start = time.perf_counter()
        for frame in frames[lo:lo + CHUNK_FRAMES]:
            ours.update(frame)
        middle = time.perf_counter()
        for r in rows[lo:lo + CHUNK_FRAMES]:
            reference.update(r, None)
        ours_s += middle - start
        reference_s += time.perf_counter() - middle
    return len(frames) / ours_s, len(frames) / reference_s


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--objects', type=int, nargs='*', default=[10, 17, 50, 200],
                        help='objects in view (17 gives about 15 detections per frame)')
    parser.add_argument('--frames', type=int, default=300)
    parser.add_argument('--rounds', type=int, default=7)
    parser.add_argument('--cache-dir', type=Path, default=DEFAULT_CACHE)
    parser.add_argument('--set', nargs='*', default=[], metavar='NAME=VALUE',
                        help='tracker_node parameters other than the defaults')
    parser.add_argument('--drives', type=int, nargs='*', default=[],
                        help="synthetic drives' cached detector output to time as well")
    args = parser.parse_args(argv)
    config = tracker_node_config(args.set)
    if hasattr(os, 'sched_setaffinity'):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    sort_class = load_reference_sort(args.cache_dir)
    print(f'one core ({sorted(os.sched_getaffinity(0))}), {args.frames} frames per stream, '
          f'{args.rounds} interleaved rounds; medians over rounds')
    print(f'{"stream":>10}{"dets/frame":>12}{"ours fps":>11}{"SORT fps":>11}{"ratio":>8}'
          f'{"ratio min-max":>16}')
    streams = [(str(n), noisy_detections(simple_drive(seed=n, n_frames=args.frames, objects=n),
                                         NOISE_LEVELS['medium'], seed=n).frames)
               for n in args.objects]
    if args.drives:
        from drive_cache import detections_of_drive
        floor = DetectorConfig().published_candidate_floor
        streams += [(f'drive {seed}', [d for d, _ in detections_of_drive(
            seed, candidate_floor=floor)][:args.frames]) for seed in args.drives]
    for name, frames in streams:
        rows = [reference_rows(f) if len(f) else np.empty((0, 6)) for f in frames]
        dets_per_frame = np.mean([len(f) for f in frames])
        ours, ref, ratios = [], [], []
        for _ in range(args.rounds):
            ours_fps, ref_fps = time_both(sort_class, frames, rows, config)
            ours.append(ours_fps)
            ref.append(ref_fps)
            ratios.append(ours_fps / ref_fps)
        print(f'{name:>10}{dets_per_frame:>12.1f}{statistics.median(ours):>11.0f}'
              f'{statistics.median(ref):>11.0f}{statistics.median(ratios):>8.2f}'
              f'{min(ratios):>8.2f}-{max(ratios):.2f}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
