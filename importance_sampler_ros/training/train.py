"""Training the default detector on synthetic frames, and evaluating a checkpoint by distance.

`importance-sampler train` trains the 'isr_small' Faster R-CNN (detector.build_model) from
scratch, or from a checkpoint's weights (--init-from), on frames rendered on the fly
(synth.random_frame of the situation mix --mix, by default 'common': rare situations at a tenth of
their share, as under-represented as in a fleet's first model; one random frame of a fresh drive per
sample; training drive seeds are TRAIN_SEED_BASE + seed * 10^7 + sample index, so they never
meet the small held-out seeds that `evaluate` uses). AdamW, linear warm-up, then cosine decay over
the iteration count (--iterations) or over the wall-clock budget (--minutes). Fully offline.

`importance-sampler evaluate` runs a checkpoint over held-out drives and reports mAP@0.5 (VOC
all-point interpolated AP per class, averaged over the classes present) per box-height bin, per
distance bin and per situation tag, the per-frame errors (false positives, missed, wrong class)
at the published score threshold overall and per tag, the oracle's top-10 % error enrichment, and
how often matched objects get the wrong class (near vs far). The matching and AP arithmetic live
in importance_sampler_ros.evaluation (one home).

Only numpy, torch, torchvision and this package are imported (no rosbags). Both commands report
progress through `importance_sampler_ros.progress` (steps of train, frames of evaluate).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from importance_sampler_ros.detection.detections import FrameDetections
from importance_sampler_ros.evaluation.detection_map import class_confusion, evaluate_detections
from importance_sampler_ros.evaluation.errors import (
    LABELLED_MIN_HEIGHT_PX,
    enrichment,
    errors_by_tag,
    frame_errors,
)
from importance_sampler_ros.progress import Progress, add_progress_arguments, progress_mode
from importance_sampler_ros.synth.situations import MIXES, parse_situations
from importance_sampler_ros.synth.world import CLASS_NAMES, Drive, SynthConfig, random_frame

ARCHITECTURE = 'isr_small'
MIN_SIZE, MAX_SIZE = 192, 640
TRAIN_SEED_BASE = 1_000_000_000
DEFAULT_EVAL_SEEDS = (101, 102, 103, 104, 105, 106, 107, 108)


# --- training ---------------------------------------------------------------------------------

@dataclass
class TrainSettings:
    out: Path
    iterations: int | None = None
    minutes: float | None = None
    seed: int = 0
    device: str = 'cpu'
    batch_size: int = 4
    lr: float = 1e-3
    weight_decay: float = 1e-4
    warmup: int = 50
    workers: int | None = None  # None: 0 on CPU, up to 8 on CUDA
    width: int = 640
    height: int = 192
    log_every: int = 20
    save_every: int = 200
    command: str = ''
    mix: str = 'common'  # situation mix of the training drives (synth.situations.MIXES)
    init_from: Path | None = None  # warm start: weights of this checkpoint (same architecture)

    def __post_init__(self) -> None:
        if self.iterations is None and self.minutes is None:
            raise ValueError('give --iterations or --minutes (or both)')
        if self.iterations is not None and self.iterations < 1:
            raise ValueError(f'--iterations must be >= 1, got {self.iterations}')
        if self.minutes is not None and not self.minutes > 0:
            raise ValueError(f'--minutes must be > 0, got {self.minutes}')
        if self.batch_size < 1:
            raise ValueError(f'--batch-size must be >= 1, got {self.batch_size}')
        if self.mix not in MIXES:
            raise ValueError(f'--mix must be one of {sorted(MIXES)}, got {self.mix!r}')


def training_seed(seed: int, index: int) -> int:
    return TRAIN_SEED_BASE + seed * 10_000_000 + index


class SyntheticFrames(torch.utils.data.Dataset):
    """Sample i: a random frame of training drive training_seed(seed, i), as (image, target)."""

    def __init__(self, seed: int, length: int, width: int, height: int,
                 mix: str = 'common') -> None:
        self.seed, self.length, self.width, self.height = seed, length, width, height
        self.mix = mix

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        frame = random_frame(training_seed(self.seed, index), self.width, self.height,
                             mix=self.mix)
        return training_example(frame.image, frame.truth)


def training_example(image: np.ndarray, truth: FrameDetections
                     ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """(H, W, 3) uint8 RGB and its ground truth -> the image tensor and target dict a
    torchvision detector trains on."""
    tensor = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float().div_(255.0)
    target = {
        'boxes': torch.from_numpy(truth.boxes.astype(np.float32)).reshape(-1, 4),
        'labels': torch.from_numpy(truth.class_ids.astype(np.int64)),
    }
    return tensor, target


def _collate(batch: list) -> tuple[list, list]:
    images, targets = zip(*batch, strict=True)
    return list(images), list(targets)


def learning_rate_factor(progress: float, step: int, warmup: int) -> float:
    """Linear warm-up over `warmup` steps, then cosine from 1 to 0.02 as progress goes 0 -> 1."""
    warm = min(1.0, (step + 1) / max(warmup, 1))
    cosine = 0.02 + 0.98 * 0.5 * (1.0 + math.cos(math.pi * min(max(progress, 0.0), 1.0)))
    return warm * cosine


def train(settings: TrainSettings, log: Any = print, progress: str = 'off') -> dict[str, Any]:
    """Train and save a checkpoint at settings.out; returns the training summary.

    `progress`: a mode of `importance_sampler_ros.progress.Progress` counting steps (total
    --iterations when given)."""
    from importance_sampler_ros.detection.detector import (
        apply_state_dict,
        build_model,
        read_checkpoint,
        resolve_device,
        save_checkpoint,
    )

    device = resolve_device(settings.device)
    torch.manual_seed(settings.seed)
    model = build_model(ARCHITECTURE, len(CLASS_NAMES), MIN_SIZE, MAX_SIZE)
    if settings.init_from is not None:
        state_dict, meta = read_checkpoint(settings.init_from)
        if meta.get('architecture', ARCHITECTURE) != ARCHITECTURE or list(
                meta.get('class_names', CLASS_NAMES)) != list(CLASS_NAMES):
            raise ValueError(f'--init-from {settings.init_from}: not an {ARCHITECTURE} model '
                             f'of classes {list(CLASS_NAMES)}')
        apply_state_dict(model, state_dict, source=str(settings.init_from),
                         architecture=ARCHITECTURE)
        log(f'warm start from {settings.init_from}')
    model = model.to(device)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=settings.lr,
                                  weight_decay=settings.weight_decay)
    workers = settings.workers
    if workers is None:
        workers = 0 if device.type == 'cpu' else min(8, max(1, (os.cpu_count() or 2) - 2))
    budget_s = settings.minutes * 60.0 if settings.minutes is not None else math.inf
    max_iterations = settings.iterations if settings.iterations is not None else 10**9
    dataset = SyntheticFrames(settings.seed, max_iterations * settings.batch_size
                              if settings.iterations is not None else 10**9,
                              settings.width, settings.height, settings.mix)
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=settings.batch_size, shuffle=False, num_workers=workers,
        collate_fn=_collate, persistent_workers=workers > 0,
        prefetch_factor=4 if workers > 0 else None)
    log(f'training {ARCHITECTURE} on {device} (workers {workers}, batch {settings.batch_size}, '
        f'iterations {settings.iterations}, minutes {settings.minutes}, mix {settings.mix})')
    start = time.perf_counter()
    step, recent, summary_loss = 0, [], math.nan
    batches: Iterator = iter(loader)
    bar = Progress(settings.iterations, desc='train', unit='step', mode=progress)
    if progress != 'off':
        log = bar.write
    while step < max_iterations:
        elapsed = time.perf_counter() - start
        if elapsed >= budget_s:
            break
        if settings.iterations is not None:
            fraction = step / settings.iterations
        else:
            fraction = elapsed / budget_s
        for group in optimizer.param_groups:
            group['lr'] = settings.lr * learning_rate_factor(fraction, step, settings.warmup)
        images, targets = next(batches)
        images = [image.to(device, non_blocking=True) for image in images]
        targets = [{k: v.to(device) for k, v in t.items()} for t in targets]
        losses = model(images, targets)
        loss = sum(losses.values())
        if not torch.isfinite(loss):
            raise FloatingPointError(f'loss became {loss.item()} at iteration {step}')
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0)
        optimizer.step()
        step += 1
        recent.append(float(loss.detach()))
        bar.update(1, loss=f'{recent[-1]:.3f}')
        if step % settings.log_every == 0 or step == max_iterations:
            summary_loss = float(np.mean(recent))
            rate = step / (time.perf_counter() - start)
            parts = ' '.join(f'{k.replace("loss_", "")} {float(v.detach()):.3f}'
                             for k, v in losses.items())
            lr = optimizer.param_groups[0]['lr']
            log(f'it {step} loss {summary_loss:.3f} ({parts}) lr {lr:.2e} {rate:.2f} it/s')
            recent = []
        if settings.save_every and step % settings.save_every == 0:
            _save(settings, model, step, time.perf_counter() - start, summary_loss, device,
                  save_checkpoint)
    bar.close()
    wall_s = time.perf_counter() - start
    if recent:
        summary_loss = float(np.mean(recent))
    summary = _save(settings, model, step, wall_s, summary_loss, device, save_checkpoint)
    log(f'saved {settings.out} after {step} iterations in {wall_s:.0f} s')
    return summary


def _save(settings: TrainSettings, model: torch.nn.Module, step: int, wall_s: float,
          loss: float, device: torch.device, save_checkpoint: Any) -> dict[str, Any]:
    summary = {
        'training_command': settings.command, 'iterations': step, 'seed': settings.seed,
        'wall_s': round(wall_s, 1), 'device': str(device),
        'device_name': (torch.cuda.get_device_name(device) if device.type == 'cuda'
                        else 'cpu'),
        'batch_size': settings.batch_size, 'lr': settings.lr, 'final_loss': loss,
        'torch': str(torch.__version__), 'train_seed_base': TRAIN_SEED_BASE,
        'mix': settings.mix,
        'init_from': str(settings.init_from) if settings.init_from is not None else None,
        'threads': torch.get_num_threads(),
    }
    save_checkpoint(settings.out, model, architecture=ARCHITECTURE, class_names=CLASS_NAMES,
                    min_size=MIN_SIZE, max_size=MAX_SIZE, extra={'training': summary})
    return summary


def configure_train_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('--out', default='models/isr_small_synth.pt', help='checkpoint to write')
    parser.add_argument('--iterations', type=int, default=None,
                        help='training steps (the cosine schedule spans them)')
    parser.add_argument('--minutes', type=float, default=None,
                        help='wall-clock budget; with no --iterations the schedule spans it')
    parser.add_argument('--seed', type=int, default=0, help='seed of weights and training drives')
    parser.add_argument('--device', default='cpu', help="'cpu' or 'cuda'")
    parser.add_argument('--batch-size', type=int, default=4, help='frames per step')
    parser.add_argument('--lr', type=float, default=1e-3, help='peak AdamW learning rate')
    parser.add_argument('--warmup', type=int, default=50, help='warm-up iterations')
    parser.add_argument('--workers', type=int, default=None,
                        help='frame-rendering processes (default: 0 on cpu, up to 8 on cuda)')
    parser.add_argument('--threads', type=int, default=None, help='torch CPU threads')
    parser.add_argument('--log-every', type=int, default=20,
                        help='print the loss every n iterations')
    add_progress_arguments(parser)
    parser.add_argument('--mix', choices=sorted(MIXES), default='common',
                        help="situation mix of the training drives: 'common' (rare situations "
                             "at a tenth of their share, a fleet's first model) or 'default'")
    parser.add_argument('--init-from', default=None,
                        help='warm start from the weights of this checkpoint')


def run_train(args: argparse.Namespace) -> int:
    if args.iterations is None and args.minutes is None:
        args.minutes = 15.0
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        settings = TrainSettings(
            out=Path(args.out), iterations=args.iterations, minutes=args.minutes,
            seed=args.seed, device=args.device, batch_size=args.batch_size, lr=args.lr,
            warmup=args.warmup, workers=args.workers, log_every=args.log_every,
            mix=args.mix, init_from=Path(args.init_from) if args.init_from else None,
            command='importance-sampler train ' + shlex.join(sys.argv[2:]))
        train(settings, log=lambda line: print(line, flush=True), progress=progress_mode(args))
    except (ValueError, RuntimeError) as error:
        print(f'importance-sampler train: {error}', file=sys.stderr)
        return 1
    return 0


# --- evaluation ------------------------------------------------------------------------------

DEFAULT_SCORE_THRESHOLD = 0.3  # the detector node's default; errors are counted at this score
THRESHOLD_SWEEP = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


def _frames_of(seed: int, seconds: float, stride: int, situations: Sequence[str] | None,
               mix: str) -> tuple[Drive, list]:
    drive = Drive(SynthConfig(seconds=seconds, seed=seed, mix=mix,
                              situations=parse_situations(situations)))
    return drive, [drive.render(k) for k in range(0, len(drive), stride)]


def error_summary(truths: Sequence[FrameDetections], detections: Sequence[FrameDetections],
                  drives: Sequence[int], score_threshold: float,
                  min_labelled_height: float = 0.0) -> dict[str, Any]:
    """Per-frame errors at `score_threshold` (evaluation.errors; on objects of at least
    `min_labelled_height` px, 0 = all): errors per frame, the share of published detections
    that are false positives, the oracle's top-10 % enrichment (ranked within each drive), and
    errors per frame by situation tag."""
    errors = [frame_errors(d, t, score_threshold, min_labelled_height=min_labelled_height)
              for t, d in zip(truths, detections, strict=True)]
    totals = np.array([e.total for e in errors], np.float64)
    published = sum(e.n_detections for e in errors)
    fp = sum(e.false_positives for e in errors)
    return {
        'score_threshold': score_threshold,
        'min_labelled_height': min_labelled_height,
        'errors_per_frame': float(totals.mean()) if len(totals) else math.nan,
        'false_positives_per_frame': fp / max(1, len(errors)),
        'missed_per_frame': sum(e.missed for e in errors) / max(1, len(errors)),
        'wrong_class_per_frame': sum(e.wrong_class for e in errors) / max(1, len(errors)),
        'published_per_frame': published / max(1, len(errors)),
        'false_positive_share': fp / published if published else math.nan,
        'oracle_enrichment': enrichment(totals, totals, 0.1, np.asarray(drives)),
        'by_tag': errors_by_tag(errors, truths),
    }


def evaluate(checkpoint: str | Path, seeds: Sequence[int], seconds: float, stride: int,
             device: str = 'cpu', batch: int = 4, log: Any = print,
             progress: str = 'off', situations: Sequence[str] | None = None, mix: str = 'default',
             score_threshold: float = DEFAULT_SCORE_THRESHOLD) -> dict[str, Any]:
    """Run a checkpoint on held-out drives (of the given situations / mix): mAP@0.5 by height
    bin, distance bin and situation tag (evaluation.detection_map), confusions, and the per-frame
    errors at score_threshold (overall, per tag, and swept over THRESHOLD_SWEEP).

    `progress`: a mode of `importance_sampler_ros.progress.Progress` counting frames."""
    from importance_sampler_ros.detection.detector import Detector, DetectorConfig

    detector = Detector(DetectorConfig(checkpoint=checkpoint, score_threshold=0.05,
                                       device=device))
    truths: list[FrameDetections] = []
    dets: list[FrameDetections] = []
    drives: list[int] = []
    start = time.perf_counter()
    total = sum(len(range(0, SynthConfig(seconds=seconds, seed=s).n_frames, stride))
                for s in seeds)
    bar = Progress(total, desc='evaluate', unit='frame', mode=progress)
    if progress != 'off':
        log = bar.write
    for seed in seeds:
        drive, frames = _frames_of(seed, seconds, stride, situations, mix)
        for i in range(0, len(frames), batch):
            chunk = frames[i:i + batch]
            dets += detector.detect_batch([f.image for f in chunk], [f.stamp_ns for f in chunk])
            truths += [f.truth for f in chunk]
            bar.update(len(chunk))
        drives += [seed] * len(frames)
        kinds = sorted({e.kind for e in drive.episodes if e.t0 < seconds})
        log(f'drive seed {seed}: {len(frames)} frames, episodes {kinds}')
    bar.close()
    views = evaluate_detections(truths, dets)
    result = {
        'checkpoint': str(checkpoint), 'seeds': list(seeds), 'seconds': seconds,
        'stride': stride, 'frames': len(truths), 'situations': list(situations or []),
        'mix': mix,
        'map_by_height': views['by_height'],
        'map_by_distance': views['by_distance'],
        'map_all': views['overall'],
        'map_by_tag': views['by_tag'],
        'confusion': class_confusion(truths, dets, score_threshold),
        'errors': error_summary(truths, dets, drives, score_threshold),
        'errors_labelled': error_summary(truths, dets, drives, score_threshold,
                                         LABELLED_MIN_HEIGHT_PX),
        'threshold_sweep': {
            str(t): {k: v for k, v in error_summary(truths, dets, drives, t).items()
                     if k != 'by_tag'} for t in THRESHOLD_SWEEP},
        'wall_s': round(time.perf_counter() - start, 1),
        'training': detector.checkpoint_meta.get('training'),
    }
    return result


def format_report(result: dict[str, Any]) -> str:
    classes = CLASS_NAMES[1:]
    lines = [f"{result['frames']} frames from drives {result['seeds']}"
             f" (mix {result.get('mix', 'default')}, situations {result.get('situations', [])})",
             'mAP@0.5       ' + ' '.join(f'{c[:6]:>7}' for c in classes) + '     mAP  n_truth']
    for key in ('map_by_height', 'map_by_distance'):
        for name, row in result[key].items():
            aps = ' '.join(f'{row[c]:7.3f}' for c in classes)
            lines.append(f'{name:<14}{aps} {row["mAP"]:7.3f} {row["n_truth"]:8d}')
    lines.append(f"{'all':<14}" + ' '.join(f'{result["map_all"][c]:7.3f}' for c in classes)
                 + f' {result["map_all"]["mAP"]:7.3f}')
    errors = result['errors']
    threshold = errors['score_threshold']
    bins = list(result['map_by_height'])
    labelled = result.get('errors_labelled', {})
    lines.append(f'by situation tag: mAP@0.5 (all, then by height bin); errors per frame at '
                 f'score >= {threshold} (FP / missed / wrong class); labelled: errors per frame '
                 f"on objects >= {labelled.get('min_labelled_height', math.nan):g} px")
    lines.append(f"{'tag':<22}{'frames':>7} {'mAP':>6} " + ' '.join(f'{b[:6]:>6}' for b in bins)
                 + f" {'errors':>7} {'FP':>6} {'FN':>6} {'WC':>5} {'labelled':>8}")
    for tag, row in result['map_by_tag'].items():
        err = errors['by_tag'].get(tag, {})
        err_labelled = labelled.get('by_tag', {}).get(tag, {})
        lines.append(f'{tag:<22}{row["n_frames"]:7d} {row["mAP"]:6.3f} '
                     + ' '.join(f'{row.get(b, math.nan):6.3f}' for b in bins)
                     + f" {err.get('errors_per_frame', math.nan):7.2f}"
                     f" {err.get('false_positives_per_frame', math.nan):6.2f}"
                     f" {err.get('missed_per_frame', math.nan):6.2f}"
                     f" {err.get('wrong_class_per_frame', math.nan):5.2f}"
                     f" {err_labelled.get('errors_per_frame', math.nan):8.2f}")
    for name, summary in (('every object', errors), ('labelled objects', labelled)):
        if not summary:
            continue
        lines.append(f"errors per frame, {name}: {summary['errors_per_frame']:.2f} (FP "
                     f"{summary['false_positives_per_frame']:.2f}, missed "
                     f"{summary['missed_per_frame']:.2f}, wrong class "
                     f"{summary['wrong_class_per_frame']:.2f}); oracle top-10 % enrichment "
                     f"{summary['oracle_enrichment']:.2f}")
    lines.append('score threshold: published per frame, false-positive share, errors per frame')
    for t, row in result['threshold_sweep'].items():
        lines.append(f'  >= {t:<5} {row["published_per_frame"]:6.2f} '
                     f'{row["false_positive_share"]:6.3f} {row["errors_per_frame"]:6.2f}')
    lines.append(f'class confusion (score >= {threshold}): wrong class among found / missed')
    for name, row in result['confusion'].items():
        lines.append(f'{name:<14} wrong {row["wrong_class_rate"]:.3f}  missed '
                     f'{row["miss_rate"]:.3f}  (n {row["n_truth"]})')
    return '\n'.join(lines)


def configure_evaluate_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('--checkpoint', default=None,
                        help='checkpoint (default: the shipped models/isr_small_synth.pt)')
    parser.add_argument('--seeds', type=int, nargs='+', default=list(DEFAULT_EVAL_SEEDS),
                        help='held-out drive seeds')
    parser.add_argument('--seconds', type=float, default=30.0, help='length of each drive')
    parser.add_argument('--stride', type=int, default=3, help='evaluate every n-th frame (10 fps)')
    parser.add_argument('--device', default='cpu', help="'cpu' or 'cuda'")
    parser.add_argument('--situations', nargs='+', default=None, metavar='TAG',
                        help="force (TAG) or exclude (no-TAG) situation tags of the drives; "
                             "'common' excludes every rare tag")
    parser.add_argument('--mix', choices=sorted(MIXES), default='default',
                        help='rare-situation frequencies of the drives')
    parser.add_argument('--score-threshold', type=float, default=DEFAULT_SCORE_THRESHOLD,
                        help='score at which detections are published (errors are counted there)')
    parser.add_argument('--json', default=None, help='also write the results to this file')
    add_progress_arguments(parser)


def run_evaluate(args: argparse.Namespace) -> int:
    from importance_sampler_ros.detection.detector import CheckpointError, default_checkpoint_path

    checkpoint = args.checkpoint or default_checkpoint_path()
    if args.stride < 1 or not args.seconds > 0:
        print('importance-sampler evaluate: --stride must be >= 1 and --seconds > 0',
              file=sys.stderr)
        return 2
    try:
        parse_situations(args.situations)
    except ValueError as error:
        print(f'importance-sampler evaluate: {error}', file=sys.stderr)
        return 2
    try:
        result = evaluate(checkpoint, args.seeds, args.seconds, args.stride, args.device,
                          log=lambda line: print(line, flush=True),
                          progress=progress_mode(args), situations=args.situations,
                          mix=args.mix, score_threshold=args.score_threshold)
    except (CheckpointError, ValueError, RuntimeError) as error:
        print(f'importance-sampler evaluate: {error}', file=sys.stderr)
        return 1
    print(format_report(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1, default=float))
    return 0
