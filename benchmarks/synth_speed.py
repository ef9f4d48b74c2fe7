"""Rendering speed of the synthetic world: ms per frame along a drive and per random training
frame (a fresh drive each). Prints numbers only; run with `python benchmarks/synth_speed.py`."""
from __future__ import annotations

import argparse
import time

from importance_sampler_ros.synth.world import Drive, SynthConfig, random_frame


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument('--frames', type=int, default=100)
    parser.add_argument('--seeds', type=int, nargs='+', default=[0, 5, 12])
    args = parser.parse_args()
    for seed in args.seeds:
        drive = Drive(SynthConfig(seconds=args.frames / 10.0, seed=seed))
        start = time.perf_counter()
        objects = sum(len(frame.truth) for frame in drive)
        ms = (time.perf_counter() - start) * 1000 / len(drive)
        print(f'drive seed {seed} ({drive.lighting.name}): {ms:.1f} ms/frame, '
              f'{objects / len(drive):.1f} objects/frame')
    start = time.perf_counter()
    n = max(10, args.frames // 5)
    for i in range(n):
        random_frame(10_000 + i)
    print(f'random training frame (new drive each): '
          f'{(time.perf_counter() - start) * 1000 / n:.1f} ms/frame')


if __name__ == '__main__':
    main()
