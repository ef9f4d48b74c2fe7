"""Rendering speed of the synthetic world: ms per frame along long-tailed drives, per forced
situation tag, and per random training frame (a fresh drive each, common mix). Prints numbers
only; run with `python benchmarks/synth_speed.py`. Compare ratios within one run: the machine
is shared."""
from __future__ import annotations

import argparse
import time

from importance_sampler_ros.synth.situations import RARE_TAGS, parse_situations
from importance_sampler_ros.synth.world import Drive, SynthConfig, random_frame


def _ms_per_frame(config: SynthConfig, frames: int) -> tuple[float, float]:
    drive = Drive(config)
    start = time.perf_counter()
    objects = sum(len(drive.render(k).truth) for k in range(min(frames, len(drive))))
    n = min(frames, len(drive))
    return (time.perf_counter() - start) * 1000 / n, objects / n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument('--frames', type=int, default=100)
    parser.add_argument('--seeds', type=int, nargs='+', default=[0, 5, 12])
    parser.add_argument('--tags', nargs='*', default=list(RARE_TAGS),
                        help='rare tags to time when forced (default: all)')
    args = parser.parse_args()
    for seed in args.seeds:
        drive = Drive(SynthConfig(seconds=args.frames / 10.0, seed=seed))
        kinds = sorted({e.kind for e in drive.episodes})
        ms, objects = _ms_per_frame(drive.config, args.frames)
        print(f'drive seed {seed} (episodes {kinds}): {ms:.1f} ms/frame, '
              f'{objects:.1f} objects/frame')
    short = max(10, args.frames // 4)
    base, _ = _ms_per_frame(SynthConfig(seconds=short / 10.0, seed=3,
                                        situations=parse_situations(['common'])), short)
    print(f'common only (seed 3): {base:.1f} ms/frame')
    for tag in args.tags:
        ms, objects = _ms_per_frame(SynthConfig(seconds=short / 10.0, seed=3,
                                                situations=parse_situations([tag])), short)
        print(f'  forced {tag:<22} {ms:6.1f} ms/frame ({ms / base:.2f}x), '
              f'{objects:.1f} objects/frame')
    start = time.perf_counter()
    n = max(10, args.frames // 5)
    for i in range(n):
        random_frame(10_000 + i, mix='common')
    print(f'random training frame (new drive each, common mix): '
          f'{(time.perf_counter() - start) * 1000 / n:.1f} ms/frame')


if __name__ == '__main__':
    main()
