"""Is the last layer's gradient norm a good stand-in for the full gradient norm? (paper, Table 1)

For each frame (>= 200 by default) the frame loss is the cross-entropy of every detection with its
own label, summed (the loss whose gradient the importance stands for; the box-regression loss is
zero with the detection's own box as target, see importance.py). Per frame and per layer group we
take the norm of its gradient with respect to that group's parameters, by autograd:

- cls_score (last layer), box_head fc7 / fc6, the FPN, the backbone body, and all parameters
  ("full"; the RPN gets no gradient, torchvision detaches proposals),
- closed_form_sum: what the detector publishes, the sum over detections of each detection's
  closed-form last-layer norm (the sampler's actual input).

Printed per group: r^2 of a linear fit of the full norm on the group's norm, Spearman's rank
correlation, and the sampling-efficiency ratio against the last layer. Sampling frame i with
probability proportional to s_i (and weight 1/q) gives a gradient estimator whose second moment
is proportional to V(s) = (sum_j s_j)(sum_i G_i^2 / s_i), G = full norm; V is smallest, (sum G)^2,
for s = G. efficiency(s) = (sum G)^2 / V(s) in (0, 1]; ratio(layer) = efficiency(layer) /
efficiency(last layer) = V(last) / V(layer): above 1 when the layer is the better proxy. Frames
without detections (no loss, every norm 0) are counted and left out.

Frames come from the project's synthetic drives (importance_sampler_ros.synth.world), or from --bag.
Weights: --checkpoint, else the shipped default model, else random weights (then say so loudly:
a random model's detections and gradients are degenerate and say little about a trained one).
Writes a PNG scatter plot (--plot) and optionally the per-frame values (--csv).
"""
from __future__ import annotations

import argparse
import csv
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from importance_sampler_ros.detection.detector import (
    DEFAULT_CLASS_NAMES,
    build_model,
    default_checkpoint_path,
    forward_with_features,
    load_checkpoint,
)
from importance_sampler_ros.detection.importance import last_layer_gradient_norms

# group name -> parameter-name prefixes (groups missing from an architecture are skipped)
GROUPS: dict[str, tuple[str, ...]] = {
    'cls_score (last)': ('roi_heads.box_predictor.cls_score.',),
    'box_head.fc7': ('roi_heads.box_head.fc7.',),
    'box_head.fc6': ('roi_heads.box_head.fc6.',),
    'backbone FPN': ('backbone.fpn.',),
    'backbone body': ('backbone.body.', 'backbone.stem.', 'backbone.stages.'),
    'full': ('',),
}
LAST = 'cls_score (last)'


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--frames', type=int, default=200)
    parser.add_argument('--drives', type=int, nargs='+', default=[0, 1, 2, 3],
                        help='seeds of the synthetic drives the frames are spread over')
    parser.add_argument('--bag', type=Path, default=None, help='read frames from this bag')
    parser.add_argument('--checkpoint', type=Path, default=None)
    parser.add_argument('--score-threshold', type=float, default=None,
                        help='default 0.3 with a trained model, 0.05 with random weights')
    parser.add_argument('--plot', type=Path, default=Path('last_layer_vs_full.png'))
    parser.add_argument('--csv', type=Path, default=None)
    parser.add_argument('--device', default='cpu', choices=('cpu', 'cuda'))
    return parser.parse_args()


def synthetic_frames(seeds: list[int], count: int) -> Iterator[np.ndarray]:
    from importance_sampler_ros.synth.world import Drive, SynthConfig

    per_drive = -(-count // len(seeds))
    for seed in seeds:
        drive = Drive(SynthConfig(seed=seed, seconds=60.0, fps=10.0))
        for index in np.linspace(0, len(drive) - 1, per_drive).round().astype(int):
            yield drive.render(int(index)).image


def bag_frames(path: Path, count: int) -> Iterator[np.ndarray]:
    from importance_sampler_ros.bags.frames import FrameSource
    from importance_sampler_ros.bags.images import image_to_rgb

    frames = list(FrameSource(path))
    step = max(1, len(frames) // count)
    for frame in frames[::step]:
        yield np.array(image_to_rgb(frame.image))


def load_model(args: argparse.Namespace):
    checkpoint = args.checkpoint or (
        default_checkpoint_path() if default_checkpoint_path().is_file() else None)
    if checkpoint is not None:
        threshold = 0.3 if args.score_threshold is None else args.score_threshold
        loaded = load_checkpoint(checkpoint, score_threshold=threshold)
        return loaded.model, f'{loaded.architecture} from {checkpoint}', threshold
    threshold = 0.05 if args.score_threshold is None else args.score_threshold
    torch.manual_seed(0)
    model = build_model('isr_small', len(DEFAULT_CLASS_NAMES), 192, 640,
                        score_threshold=threshold)
    return model.eval(), 'isr_small with RANDOM WEIGHTS (no trained model found)', threshold


def group_norms(model: torch.nn.Module, images: torch.Tensor) -> dict[str, float] | None:
    """Norm of the frame loss gradient per group, and the closed-form importance sum."""
    named = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
    (captured,) = forward_with_features(model, [images])
    if len(captured.labels) == 0:
        return None
    loss = torch.nn.functional.cross_entropy(captured.logits, captured.labels, reduction='sum')
    grads = torch.autograd.grad(loss, [p for _, p in named], allow_unused=True)
    squares = {group: 0.0 for group in GROUPS}
    present = dict.fromkeys(GROUPS, False)
    for (name, _), grad in zip(named, grads, strict=True):
        for group, prefixes in GROUPS.items():
            if name.startswith(prefixes):
                present[group] = True
                if grad is not None:
                    squares[group] += float(grad.double().pow(2).sum())
    norms = {group: squares[group] ** 0.5 for group in GROUPS if present[group]}
    with torch.no_grad():
        closed = last_layer_gradient_norms(captured.features, captured.logits, captured.labels)
    norms['closed_form_sum'] = float(closed.double().sum())
    norms['detections'] = float(len(captured.labels))
    return norms


def r_squared(x: np.ndarray, y: np.ndarray) -> float:
    if np.std(x) == 0 or np.std(y) == 0:
        return float('nan')
    return float(np.corrcoef(x, y)[0, 1] ** 2)


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    rank_x = np.argsort(np.argsort(x)).astype(float)
    rank_y = np.argsort(np.argsort(y)).astype(float)
    return float(np.corrcoef(rank_x, rank_y)[0, 1])


def efficiency(proxy: np.ndarray, truth: np.ndarray) -> float:
    """(sum G)^2 / ((sum s)(sum G^2/s)): 1 for a proxy proportional to the truth."""
    proxy = np.maximum(proxy, 1e-30)
    return float(truth.sum() ** 2 / (proxy.sum() * (truth**2 / proxy).sum()))


def plot(rows: dict[str, np.ndarray], names: list[str], fits: dict[str, float], path: Path,
         title: str) -> None:
    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    panels = [name for name in names if name != 'full']
    columns = 3
    lines = -(-len(panels) // columns)
    fig, axes = plt.subplots(lines, columns, figsize=(3.8 * columns, 3.4 * lines), squeeze=False)
    full = rows['full']
    for ax in axes.flat[len(panels):]:
        ax.set_visible(False)
    for ax, name in zip(axes.flat, panels, strict=False):
        x = rows[name]
        ax.scatter(x, full, s=6, alpha=0.6)
        slope, intercept = np.polyfit(x, full, 1)
        xs = np.linspace(x.min(), x.max(), 2)
        ax.plot(xs, slope * xs + intercept, color='tab:red', linewidth=1)
        ax.set_xlabel(f'{name} gradient norm')
        ax.set_title(f'r² = {fits[name]:.3f}', fontsize=9)
        ax.set_ylabel('full gradient norm')
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def main() -> int:
    args = parse_args()
    device = torch.device(args.device)
    model, model_label, threshold = load_model(args)
    model = model.to(device)
    source = (bag_frames(args.bag, args.frames) if args.bag
              else synthetic_frames(args.drives, args.frames))
    source_label = str(args.bag) if args.bag else f'synthetic drives {args.drives}'
    records, empty, start = [], 0, time.perf_counter()
    for count, image in enumerate(source, start=1):
        if count > args.frames:
            break
        tensor = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float() / 255
        norms = group_norms(model, tensor.to(device))
        if norms is None:
            empty += 1
        else:
            records.append(norms)
    seconds = time.perf_counter() - start
    print(f'# model: {model_label}; score threshold {threshold}')
    print(f'# frames: {len(records) + empty} from {source_label} ({empty} without detections, '
          f'left out); {seconds:.0f} s')
    if len(records) < 3:
        print('too few frames with detections to fit anything', file=sys.stderr)
        return 1
    names = [name for name in (*GROUPS, 'closed_form_sum') if name in records[0]]
    rows = {name: np.array([r[name] for r in records]) for name in (*names, 'detections')}
    full = rows['full']
    fits = {name: r_squared(rows[name], full) for name in names}
    last_efficiency = efficiency(rows[LAST], full)
    print(f'# detections per frame: mean {rows["detections"].mean():.1f}, '
          f'max {rows["detections"].max():.0f}')
    print(f'{"layer group":<18} {"mean norm":>11} {"r2 vs full":>10} {"spearman":>9} '
          f'{"efficiency":>10} {"ratio vs last":>13}')
    for name in names:
        eff = efficiency(rows[name], full)
        print(f'{name:<18} {rows[name].mean():>11.4g} {fits[name]:>10.3f} '
              f'{spearman(rows[name], full):>9.3f} {eff:>10.4f} {eff / last_efficiency:>13.3f}')
    uniform = efficiency(np.ones_like(full), full)
    print(f'{"uniform sampling":<18} {"":>11} {"":>10} {"":>9} {uniform:>10.4f} '
          f'{uniform / last_efficiency:>13.3f}')
    plot(rows, names, fits, args.plot, f'{model_label}; {len(records)} frames, {source_label}')
    print(f'# scatter plot: {args.plot}')
    if args.csv:
        with open(args.csv, 'w', newline='') as stream:
            writer = csv.writer(stream)
            writer.writerow([*names, 'detections'])
            writer.writerows(zip(*(rows[n] for n in (*names, 'detections')), strict=True))
        print(f'# per-frame values: {args.csv}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
