"""What the last-layer importance costs on top of inference, against a full backward pass.

For each model and image size, timed per frame (median over --repeats after --warmup):

- tv_forward_ms: torchvision's own `model(images)` (reference for what inference costs),
- inference_ms: `forward_with_features` (the detector's forward, which also keeps h and logits),
- inference_importance_ms: the same plus every scorer of every detection (the closed-form
  gradient norm, ||p - e_y||, entropy, margin, least confidence: detection.importance's
  uncertainty_scores, what the detector computes per frame),
- full_backprop_ms: forward with autograd plus a backward of the summed detection losses to
  every parameter (what the importance would cost without the closed form).

The importance is timed in the same iteration right after the forward it belongs to, so its
share is not buried in the forward's run-to-run noise: overhead_pct = median(importance) /
median(inference) * 100. Models have random weights unless --checkpoint is given (isr_small
uses the shipped default model when it exists); the score threshold is low so that frames carry
many detections (the importance's worst case). Last line: `overhead_pct=<worst case>`.

Usage: python benchmarks/importance_overhead.py [--device cuda] [--half] [--models ...]
Needs only torch, torchvision, numpy and this package's detector modules.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from importance_sampler_ros.detection.detector import (
    ARCHITECTURE_SIZES,
    ARCHITECTURES,
    DEFAULT_CLASS_NAMES,
    build_model,
    default_checkpoint_path,
    forward_with_features,
    load_checkpoint,
)
from importance_sampler_ros.detection.importance import uncertainty_scores


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--models', nargs='+', default=['isr_small',
                                                        'fasterrcnn_mobilenet_v3_large_320_fpn'],
                        choices=ARCHITECTURES)
    parser.add_argument('--sizes', nargs='+', default=['192x640', '375x1242'],
                        help='input images HxW (each model resizes them to its own min/max)')
    parser.add_argument('--device', default='cpu', choices=('cpu', 'cuda'))
    parser.add_argument('--half', action='store_true', help='also time float16 (cuda only)')
    parser.add_argument('--repeats', type=int, default=5)
    parser.add_argument('--warmup', type=int, default=2)
    parser.add_argument('--score-threshold', type=float, default=0.05)
    parser.add_argument('--checkpoint', type=Path, default=None,
                        help='weights for the first model (default: the shipped isr_small model)')
    parser.add_argument('--threads', type=int, default=0, help='torch CPU threads (0: default)')
    return parser.parse_args()


def make_model(architecture: str, checkpoint: Path | None, score_threshold: float):
    """(model, label) with the checkpoint's weights, else random ones."""
    if checkpoint is None and architecture == 'isr_small' and default_checkpoint_path().is_file():
        checkpoint = default_checkpoint_path()
    if checkpoint is not None:
        loaded = load_checkpoint(checkpoint, architecture=architecture,
                                 score_threshold=score_threshold)
        return loaded.model, f'{architecture} ({checkpoint.name})'
    torch.manual_seed(0)
    min_size, max_size = ARCHITECTURE_SIZES[architecture]
    model = build_model(architecture, len(DEFAULT_CLASS_NAMES), min_size, max_size,
                        score_threshold=score_threshold)
    return model.eval(), f'{architecture} (random weights)'


def synchronize(device: torch.device) -> None:
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def time_model(model, image: torch.Tensor, device: torch.device, repeats: int, warmup: int,
               with_backprop: bool) -> dict[str, float]:
    tv_forward, inference, importance, backprop, detections = [], [], [], [], []
    for iteration in range(warmup + repeats):
        keep = iteration >= warmup
        with torch.no_grad():
            synchronize(device)
            start = time.perf_counter()
            model([image])
            synchronize(device)
            tv_done = time.perf_counter()
            (captured,) = forward_with_features(model, [image])
            synchronize(device)
            forward_done = time.perf_counter()
            scores = uncertainty_scores(captured.features, captured.logits, captured.labels)
            scores.cpu()
            importance_done = time.perf_counter()
        if keep:
            tv_forward.append(tv_done - start)
            inference.append(forward_done - tv_done)
            importance.append(importance_done - forward_done)
            detections.append(len(captured.labels))
        if with_backprop:
            model.zero_grad(set_to_none=True)
            synchronize(device)
            start = time.perf_counter()
            (captured,) = forward_with_features(model, [image])
            if len(captured.labels):
                loss = torch.nn.functional.cross_entropy(
                    captured.logits.float(), captured.labels, reduction='sum')
                loss.backward()
            synchronize(device)
            if keep:
                backprop.append(time.perf_counter() - start)
    ms = 1000.0
    return {
        'detections': statistics.mean(detections),
        'tv_forward_ms': statistics.median(tv_forward) * ms,
        'inference_ms': statistics.median(inference) * ms,
        'importance_ms': statistics.median(importance) * ms,
        'full_backprop_ms': statistics.median(backprop) * ms if backprop else float('nan'),
    }


def main() -> int:
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.device == 'cuda' and not torch.cuda.is_available():
        print('cuda requested but not available', file=sys.stderr)
        return 2
    device = torch.device(args.device)
    where = torch.cuda.get_device_name(device) if device.type == 'cuda' else (
        f'cpu, {torch.get_num_threads()} threads')
    print(f'# torch {torch.__version__}, {where}; median of {args.repeats} after {args.warmup} '
          f'warm-up runs; score threshold {args.score_threshold}')
    header = (f'{"model":<58} {"dtype":<8} {"image":>9} {"dets":>5} {"tv_fwd":>9} '
              f'{"infer":>9} {"infer+imp":>10} {"imp":>7} {"overhead":>9} {"backprop":>9} '
              f'{"bp/inf":>6}')
    print(header)
    dtypes = [torch.float32] + ([torch.float16] if args.half and device.type == 'cuda' else [])
    worst = 0.0
    for index, architecture in enumerate(args.models):
        model, label = make_model(architecture, args.checkpoint if index == 0 else None,
                                  args.score_threshold)
        for dtype in dtypes:
            model = model.to(device, dtype).eval()
            for size in args.sizes:
                height, width = (int(v) for v in size.lower().split('x'))
                generator = torch.Generator().manual_seed(height * width)
                image = torch.rand(3, height, width, generator=generator).to(device, dtype)
                try:
                    row = time_model(model, image, device, args.repeats, args.warmup,
                                     with_backprop=dtype == torch.float32)
                except RuntimeError as error:  # e.g. out of memory: report it, go on
                    print(f'{label:<58} {str(dtype)[6:]:<8} {size:>9} failed: {error}')
                    continue
                overhead = 100.0 * row['importance_ms'] / row['inference_ms']
                worst = max(worst, overhead)
                ratio = row['full_backprop_ms'] / row['inference_ms']
                print(f'{label:<58} {str(dtype)[6:]:<8} {size:>9} {row["detections"]:>5.0f} '
                      f'{row["tv_forward_ms"]:>9.2f} {row["inference_ms"]:>9.2f} '
                      f'{row["inference_ms"] + row["importance_ms"]:>10.2f} '
                      f'{row["importance_ms"]:>7.3f} {overhead:>8.2f}% '
                      f'{row["full_backprop_ms"]:>9.1f} {ratio:>6.2f}', flush=True)
        del model
    print('# times in ms per frame; overhead = importance / inference; bp/inf = full backprop '
          '(forward + backward) / inference')
    print(f'overhead_pct={worst:.3f}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
