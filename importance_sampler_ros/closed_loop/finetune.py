"""Retraining the detector's last layers (fc7, cls_score, bbox_pred) on labelled cached frames.

The loss is torchvision's Fast R-CNN loss, per frame: each step samples up to `rois_per_frame`
RoIs of a frame (its proposals plus its label boxes, as torchvision's training adds them), at most
a quarter of them foreground (IoU >= 0.5 with a label box, which gives the class and the
regression target; the rest background, IoU < 0.5), and takes the cross-entropy over them plus
the smooth-L1 (beta 1/9) box loss of the foreground RoIs for their class, divided by the number
of sampled RoIs. A frame's loss is multiplied by its weight: 1 for frames chosen by ranking or at
random, 1/q for frames the importance sampler kept with probability q (normalised to mean 1 over
the selected set), so that the weighted loss estimates the loss over the whole pool; the rows
`sampler-sqrt-weights` and `sampler-unweighted` trade that unbiasedness for a lower variance
((1/q)^0.5, and 1 for every kept frame).

Every strategy gets the identical schedule (iterations, batch, learning rate, replay share).
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch.nn import functional

from importance_sampler_ros.closed_loop.head_cache import CachedFrame, LastLayers
from importance_sampler_ros.evaluation.detection_map import box_iou

FG_IOU = 0.5
FG_FRACTION = 0.25


@dataclass(frozen=True)
class FinetuneSettings:
    # lr 2e-4 and replay share 0.5 since session 15: with 5e-4 and 0.25 (sessions 8-14) the
    # retraining on ~72 frames mostly made the model worse than before it (closed_loop_cpu.md)
    iterations: int = 300
    batch_size: int = 8
    lr: float = 2e-4
    weight_decay: float = 1e-4
    warmup: int = 20
    rois_per_frame: int = 128
    # share of each batch drawn from the replay set (frames of the original training
    # distribution, ground-truth labelled); 0 = selected frames only
    replay_share: float = 0.5

    def __post_init__(self) -> None:
        if self.iterations < 1 or self.batch_size < 1 or self.rois_per_frame < 4:
            raise ValueError('iterations, batch_size >= 1 and rois_per_frame >= 4 required')
        if not 0.0 <= self.replay_share < 1.0:
            raise ValueError(f'replay_share must be in [0, 1), got {self.replay_share}')


@dataclass
class LabelledFrame:
    """One frame's RoI features with their training targets under one labelling.

    labels (R,): class per RoI, 0 = background; targets (R, 4): encoded box deltas towards the
    matched label box (meaningful for foreground rows only); weight: the frame's loss weight.
    """

    features: torch.Tensor
    labels: torch.Tensor
    targets: torch.Tensor
    weight: float = 1.0


def label_frame(frame: CachedFrame, boxes: np.ndarray, classes: np.ndarray, box_coder,
                label_rows: str, weight: float = 1.0) -> LabelledFrame:
    """Targets for `frame`'s RoIs from label boxes (original pixels) and their classes.

    label_rows: which cached label-box rows join the proposals as RoIs: 'truth' (the ground-truth
    boxes, when the labels are the ground truth) or 'detections' (the detector's own boxes, for
    self-labels). The other kind is left out, so that self-labelled training never sees where the
    true boxes are.
    """
    p, t = frame.n_proposals, frame.n_truth
    if label_rows == 'truth':
        rows = np.r_[0:p, p:p + t]
    elif label_rows == 'detections':
        rows = np.r_[0:p, p + t:len(frame.rois)]
    else:
        raise ValueError(f"label_rows must be 'truth' or 'detections', got {label_rows!r}")
    rois = frame.rois[rows]
    label_boxes = frame.to_resized(boxes)
    labels = torch.zeros(len(rois), dtype=torch.int64)
    targets = torch.zeros(len(rois), 4)
    if len(label_boxes):
        iou = torch.as_tensor(box_iou(rois.numpy(), label_boxes.numpy()))
        best, match = iou.max(dim=1)
        fg = best >= FG_IOU
        labels[fg] = torch.as_tensor(np.asarray(classes, np.int64))[match[fg]]
        if fg.any():
            targets[fg] = box_coder.encode_single(label_boxes[match[fg]], rois[fg])
    return LabelledFrame(frame.features[rows], labels, targets, float(weight))


def _sample_rois(frame: LabelledFrame, count: int, generator: torch.Generator) -> torch.Tensor:
    fg = torch.nonzero(frame.labels > 0).flatten()
    bg = torch.nonzero(frame.labels == 0).flatten()
    n_fg = min(len(fg), int(count * FG_FRACTION))
    n_bg = min(len(bg), count - n_fg)
    fg = fg[torch.randperm(len(fg), generator=generator)[:n_fg]]
    bg = bg[torch.randperm(len(bg), generator=generator)[:n_bg]]
    return torch.cat([fg, bg])


def frame_loss(layers: LastLayers, frame: LabelledFrame, rows: torch.Tensor) -> torch.Tensor:
    """Fast R-CNN classification + box loss of one frame's sampled RoIs."""
    _, logits, deltas = layers(frame.features[rows])
    labels = frame.labels[rows]
    loss = functional.cross_entropy(logits, labels)
    fg = torch.nonzero(labels > 0).flatten()
    if len(fg):
        deltas = deltas.reshape(len(rows), -1, 4)[fg, labels[fg]]
        box = functional.smooth_l1_loss(deltas, frame.targets[rows][fg], beta=1 / 9,
                                        reduction='sum')
        loss = loss + box / len(rows)
    return loss


def finetune(layers: LastLayers, selected: Sequence[LabelledFrame],
             replay: Sequence[LabelledFrame], settings: FinetuneSettings, seed: int
             ) -> dict[str, float]:
    """Retrain `layers` in place; returns {'first_loss', 'final_loss'} (moving averages)."""
    if not selected:
        raise ValueError('no frames selected to train on')
    generator = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)
    weights = np.array([f.weight for f in selected], np.float64)
    weights = weights / weights.mean()
    n_replay = round(settings.batch_size * settings.replay_share) if replay else 0
    n_selected = settings.batch_size - n_replay
    optimiser = torch.optim.AdamW(layers.parameters(), lr=settings.lr,
                                  weight_decay=settings.weight_decay)
    layers.train()
    history: list[float] = []
    for step in range(settings.iterations):
        for group in optimiser.param_groups:
            group['lr'] = settings.lr * _schedule(step, settings)
        picks = [(selected[i], weights[i]) for i in rng.integers(len(selected), size=n_selected)]
        picks += [(replay[i], 1.0) for i in rng.integers(len(replay), size=n_replay)]
        total = torch.zeros(())
        for frame, weight in picks:
            rows = _sample_rois(frame, settings.rois_per_frame, generator)
            if len(rows):
                total = total + float(weight) * frame_loss(layers, frame, rows)
        loss = total / len(picks)
        optimiser.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(layers.parameters(), 10.0)
        optimiser.step()
        history.append(float(loss.detach()))
    layers.eval()
    window = max(1, min(20, len(history) // 4))
    return {'first_loss': float(np.mean(history[:window])),
            'final_loss': float(np.mean(history[-window:]))}


def _schedule(step: int, settings: FinetuneSettings) -> float:
    """Linear warm-up, then cosine decay to 5 % of the peak learning rate."""
    if step < settings.warmup:
        return (step + 1) / settings.warmup
    span = max(1, settings.iterations - settings.warmup)
    return 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * (step - settings.warmup) / span))
