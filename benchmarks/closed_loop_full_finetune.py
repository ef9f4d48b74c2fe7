"""The closed loop with the *whole* detector retrained (backbone, RPN and box head), for the two
strategies that matter: the product's sampler as the recorder runs it, and as many random frames.

`importance-sampler closed-loop` retrains only the box head's top layers, from cached features:
cheap, but its gains saturate (60 or 240 random frames give the same test mAP), so it cannot tell
selections apart. Here each strategy's frames fine-tune a copy of the shipped model for
`--iterations` steps (batch 4: 3 selected frames, 1 frame of the model's own training mix), and
the result is evaluated on the closed loop's test set (natural drives + one forced drive per rare
situation kind). CPU cost: about 4-9 min per run at 150 iterations on 2 cores.

Usage:
    python benchmarks/closed_loop_full_finetune.py --cache-dir CACHE [--iterations 150]
        [--seeds 0 1 2] [--budget 0.05] [--strategies random sampler] [--out result.json]
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from importance_sampler_ros.closed_loop import experiment as ex
from importance_sampler_ros.closed_loop.selection import (
    run_product_sampler,
    select_random,
)
from importance_sampler_ros.detection.config import DetectorConfig
from importance_sampler_ros.detection.detections import FrameDetections
from importance_sampler_ros.detection.detector import Detector
from importance_sampler_ros.offline.pipeline import load_parameters
from importance_sampler_ros.synth.world import Drive, SynthConfig, random_frame
from importance_sampler_ros.training.train import learning_rate_factor, training_example

POOL_SEEDS = (5001, 5002, 5003)
TEST_SEEDS = (6001, 6002)
SECONDS, FPS, STRIDE, TAIL_SECONDS = 40.0, 10.0, 4, 6.0
LR, REPLAY_SEED_BASE = 2e-4, 10**9


def evaluate(model, detector: Detector, test: list, n_natural: int) -> dict:
    """Test mAP (experiment._evaluate) of `model` over every box scoring >= 0.05."""
    model.eval()
    threshold = model.roi_heads.score_thresh
    model.roi_heads.score_thresh = 0.05
    out = []
    with torch.no_grad():
        for k in range(0, len(test), 8):
            part = test[k:k + 8]
            images = [detector.to_tensor(f.image) for f in part]
            for frame, found in zip(part, model(images), strict=True):
                labels = found['labels'].numpy()
                out.append(FrameDetections(
                    stamp_ns=frame.stamp_ns, boxes=found['boxes'].numpy(), class_ids=labels,
                    class_names=[detector.class_names[int(c)] for c in labels],
                    scores=found['scores'].numpy()))
    model.roi_heads.score_thresh = threshold
    return ex._evaluate([f.truth for f in test], out, n_natural)


def finetune(model, initial: dict, frames: list, iterations: int, seed: int) -> None:
    """Whole-model fine-tuning from `initial` on (image, target) pairs plus replay frames."""
    model.load_state_dict(initial)
    model.train()
    rng = np.random.default_rng(seed)
    optimiser = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=1e-4)
    for step in range(iterations):
        for group in optimiser.param_groups:
            group['lr'] = LR * learning_rate_factor(step / iterations, step, 10)
        batch = [frames[j] for j in rng.integers(len(frames), size=3)]
        replay = random_frame(REPLAY_SEED_BASE + seed * 100_000 + step, mix='common')
        batch.append(training_example(replay.image, replay.truth))
        losses = model([b[0] for b in batch], [b[1] for b in batch])
        loss = sum(losses.values())
        optimiser.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0)
        optimiser.step()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--cache-dir', type=Path, required=True,
                        help="closed-loop cache of the detector's output on the pool")
    parser.add_argument('--iterations', type=int, default=150)
    parser.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2])
    parser.add_argument('--budget', type=float, default=0.05)
    parser.add_argument('--strategies', nargs='+', default=['random', 'sampler'],
                        choices=['random', 'sampler'])
    parser.add_argument('--out', type=Path, default=None, help='JSON of every run')
    args = parser.parse_args()
    torch.set_num_threads(2)
    settings = ex.ClosedLoopSettings(out=Path('.'), pool_seeds=POOL_SEEDS, test_seeds=TEST_SEEDS,
                                     seconds=SECONDS, cache_dir=args.cache_dir)
    overrides = {'device': 'cpu', 'candidate_floor': ex.CANDIDATE_FLOOR}
    params, _ = load_parameters(None, {'detector_node': overrides})
    detector = Detector(params['detector_node'].of(DetectorConfig))
    n_pool = round(SECONDS * FPS) * len(POOL_SEEDS)
    pool = ex._cache(detector, ex._drive_frames(POOL_SEEDS, SECONDS, FPS, 1), n_pool, True,
                     'pool', settings, ex.detector_key(detector, settings),
                     {'seeds': POOL_SEEDS, 'seconds': SECONDS})
    drives = {s: Drive(SynthConfig(seconds=SECONDS, fps=FPS, seed=s)) for s in POOL_SEEDS}
    test = list(ex._drive_frames(TEST_SEEDS, SECONDS, FPS, STRIDE))
    n_natural = len(test)
    test += list(ex._tail_drives(ex.TAIL_SEED_BASE, TAIL_SECONDS, FPS, STRIDE))
    initial = {k: v.clone() for k, v in detector.model.state_dict().items()}
    base = evaluate(detector.model, detector, test, n_natural)
    print(f"base model: test mAP {base['mAP']:.4f}, rare tags {base['rare_tags']:.4f}",
          flush=True)
    rows = []
    for seed in args.seeds:
        run_params, _ = load_parameters(None, {
            'recorder_node': {'keep_ratio': args.budget, 'seed': seed},
            'detector_node': overrides})
        kept = np.flatnonzero(run_product_sampler(pool, run_params).kept)
        for strategy in args.strategies:
            indices = (kept if strategy == 'sampler'
                       else select_random(len(pool), len(kept), seed).indices)
            started = time.perf_counter()
            frames = []
            for i in indices:
                rendered = drives[pool[i].drive_seed].render(pool[i].index)
                frames.append(training_example(rendered.image, rendered.truth))
            finetune(detector.model, initial, frames, args.iterations, 1000 + seed)
            result = evaluate(detector.model, detector, test, n_natural)
            row = {'strategy': strategy, 'seed': seed, 'frames': len(indices),
                   'mAP': result['mAP'], 'rare_tags': result['rare_tags'],
                   'by_tag': result['by_tag'], 'seconds': round(time.perf_counter() - started)}
            rows.append(row)
            print(f"seed {seed} {strategy:<8} {len(indices)} frames: test mAP {row['mAP']:.4f}, "
                  f"rare tags {row['rare_tags']:.4f} ({row['seconds']} s)", flush=True)
    random_rows = {r['seed']: r for r in rows if r['strategy'] == 'random'}
    for strategy in args.strategies:
        pairs = [(r['mAP'] - random_rows[r['seed']]['mAP'],
                  r['rare_tags'] - random_rows[r['seed']]['rare_tags'])
                 for r in rows if r['strategy'] == strategy and r['seed'] in random_rows]
        if pairs:
            gain = 100 * np.array(pairs)
            spread = gain.std(axis=0, ddof=1) if len(gain) > 1 else np.zeros(2)
            print(f'{strategy:<8} gain over random (points, paired by seed): mAP '
                  f'{gain[:, 0].mean():+.2f} ± {spread[0]:.2f}, rare tags '
                  f'{gain[:, 1].mean():+.2f} ± {spread[1]:.2f}')
    if args.out:
        args.out.write_text(json.dumps({'base': base, 'runs': rows, 'iterations': args.iterations,
                                        'budget': args.budget}, indent=1, default=float))
    return 0


if __name__ == '__main__':
    sys.exit(main())
