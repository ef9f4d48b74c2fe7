"""Fleet replay throughput: bags per minute on a local Ray with 1 and 2 workers (same bags, same
run), through the real work of `replay-fleet`: the detector's first pass (frame importances,
detections cached), the fleet-wide normaliser, the sampling pass.

Bags are synthetic drives (`importance-sampler synth`), generated once into --bags-dir. The
detector is the shipped default model when it exists, else random weights with a low score
threshold (so that frames carry detections); which one is printed. For each worker count a fresh
local Ray is started (its start-up time is printed apart and not counted), its workers are warmed
up (package and torch imported), then the fleet is replayed into a fresh output directory and
timed end to end; worker counts alternate over --repeats runs and the best run of each counts
(the machine may be shared: the 1-minute load average is printed per row). Numbers from one run
are comparable with each other only: speedup = ratio.

Usage: python benchmarks/fleet_throughput.py [--bags 6] [--seconds 4] [--workers 1 2]
Last line: `speedup_<max>_vs_<min>_workers=<ratio>`.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from importance_sampler_ros.offline import fleet


def make_bags(directory: Path, bags: int, seconds: float, width: int, height: int) -> None:
    from importance_sampler_ros.synth.bag import write_drive_bag
    from importance_sampler_ros.synth.world import SynthConfig

    directory.mkdir(parents=True, exist_ok=True)
    for seed in range(bags):
        path = directory / f'drive_{seed:02d}'
        if not (path / 'metadata.yaml').exists():
            shutil.rmtree(path, ignore_errors=True)
            write_drive_bag(SynthConfig(width=width, height=height, fps=10.0, seconds=seconds,
                                        seed=seed), path)


def detector_params(scratch: Path, width: int, height: int) -> tuple[Path, str]:
    """A parameter file naming the checkpoint to use, and a description of it."""
    from importance_sampler_ros.detection.detector import (
        DEFAULT_CLASS_NAMES,
        build_model,
        default_checkpoint_path,
        save_checkpoint,
    )

    params = scratch / 'params.yaml'
    shipped = default_checkpoint_path()
    if shipped.exists():
        params.write_text('detector_node:\n  ros__parameters: {}\n')
        return params, f'shipped model {shipped.name}'
    import torch

    torch.manual_seed(0)
    checkpoint = scratch / 'random_isr_small.pt'
    save_checkpoint(checkpoint, build_model('isr_small', len(DEFAULT_CLASS_NAMES), height, width),
                    architecture='isr_small', class_names=DEFAULT_CLASS_NAMES, min_size=height,
                    max_size=width)
    params.write_text(f'detector_node:\n  ros__parameters:\n    checkpoint: {checkpoint}\n'
                      '    score_threshold: 0.05\n')
    return params, 'random-weight isr_small (no shipped model found), score threshold 0.05'


def warm_up(workers: int, params: Path) -> None:
    """Start every worker process and load the detector once in each."""
    import ray

    @ray.remote(num_cpus=1)
    def load(params_file: str) -> int:
        from importance_sampler_ros.detection.config import DetectorConfig
        from importance_sampler_ros.detection.detector import Detector
        from importance_sampler_ros.offline.pipeline import load_parameters

        Detector(load_parameters(params_file)[0]['detector_node'].of(DetectorConfig))
        time.sleep(1.0)  # hold the CPU so that the next warm-up task lands on another worker
        return os.getpid()

    pids = set(ray.get([load.remote(str(params)) for _ in range(workers)]))
    if len(pids) != workers:
        print(f'  (warm-up reached {len(pids)} of {workers} workers)')


def time_fleet(args: argparse.Namespace, workers: int, params: Path, out: Path) -> float | None:
    """One timed fleet replay on a fresh local Ray; prints a row, returns bags per minute."""
    import ray

    before = time.perf_counter()
    fleet.start_ray(None, workers)
    ray_start = time.perf_counter() - before
    try:
        warm_up(workers, params)
        result = fleet.run_fleet(args.bags_dir, out, num_workers=workers,
                                 fleet_keep_ratio=args.fleet_keep_ratio, params_file=params,
                                 overrides={'recorder_node': {'seed': 1, 'fsync': False}},
                                 echo=lambda line: None)
    finally:
        ray.shutdown()
    report = result.report
    totals = report['totals']
    if totals['failed']:
        print(f'failed bags: {[(b["name"], b["reason"]) for b in report["bags"] if b["reason"]]}')
        return None
    wall = report['wall_seconds']
    bags_per_minute = 60.0 * totals['bags'] / wall
    print(f'{workers:>7} {ray_start:>11.1f} {wall:>7.1f} {report["first_pass_seconds"]:>12.1f} '
          f'{report["sampling_seconds"]:>10.1f} {bags_per_minute:>12.1f} '
          f'{totals["frames_in"] / wall:>12.1f} {totals["frames_kept"]:>5} '
          f'{os.getloadavg()[0]:>6.1f}')
    return bags_per_minute


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--bags', type=int, default=6)
    parser.add_argument('--seconds', type=float, default=4.0, help='length of each drive')
    parser.add_argument('--width', type=int, default=640)
    parser.add_argument('--height', type=int, default=192)
    parser.add_argument('--workers', type=int, nargs='+', default=[1, 2])
    parser.add_argument('--fleet-keep-ratio', type=float, default=0.1)
    parser.add_argument('--repeats', type=int, default=2,
                        help='runs per worker count, alternating; the best is summarised')
    parser.add_argument('--bags-dir', type=Path,
                        default=Path(tempfile.gettempdir()) / 'fleet_throughput_bags')
    args = parser.parse_args()

    started = time.perf_counter()
    make_bags(args.bags_dir, args.bags, args.seconds, args.width, args.height)
    print(f'{args.bags} synthetic bags of {args.seconds:g} s at 10 fps, {args.width}x'
          f'{args.height}, in {args.bags_dir} (ready after {time.perf_counter() - started:.1f} s)')
    scratch = Path(tempfile.mkdtemp(prefix='fleet_throughput_'))
    params, model = detector_params(scratch, args.width, args.height)
    print(f'detector: {model}; fleet keep ratio {args.fleet_keep_ratio:g}; '
          f'{os.cpu_count()} CPU cores on this machine')
    print(f'{"workers":>7} {"ray_start_s":>11} {"wall_s":>7} {"first_pass_s":>12} '
          f'{"sampling_s":>10} {"bags_per_min":>12} {"frames_per_s":>12} {"kept":>5} '
          f'{"load1":>6}')
    per_minute: dict[int, float] = {}
    try:
        for repeat in range(args.repeats):
            for workers in args.workers:
                row = time_fleet(args, workers, params, scratch / f'out_{workers}_{repeat}')
                if row is None:
                    return 1
                per_minute[workers] = max(per_minute.get(workers, 0.0), row)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    print('best of ' + str(args.repeats) + ': ' + ', '.join(
        f'{w} worker(s) {v:.1f} bags/min' for w, v in per_minute.items()))
    low, high = min(per_minute), max(per_minute)
    print(f'speedup_{high}_vs_{low}_workers={per_minute[high] / per_minute[low]:.2f}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
