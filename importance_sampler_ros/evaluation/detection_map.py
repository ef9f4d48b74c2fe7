"""Detections against ground truth: AP, mAP by box-height / distance bin and by situation tag.

mAP@0.5 is the VOC all-point interpolated AP per class, averaged over the classes present, with
class-aware greedy matching by score (see mean_average_precision). Per-frame error counts, the
class-agnostic matching the selection measurements use, live in evaluation/errors.py.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from importance_sampler_ros.detection.detections import FrameDetections
from importance_sampler_ros.synth.world import CLASS_NAMES

IOU_MATCH = 0.5
# Box-height bins (px) and distance bins (m): name -> [low, high)
HEIGHT_BINS: dict[str, tuple[float, float]] = {
    'far (<20 px)': (0.0, 20.0), 'mid (20-40 px)': (20.0, 40.0), 'near (>=40 px)': (40.0, math.inf),
}
DISTANCE_BINS: dict[str, tuple[float, float]] = {
    '<20 m': (0.0, 20.0), '20-40 m': (20.0, 40.0), '40-80 m': (40.0, 80.0),
    '>=80 m': (80.0, math.inf),
}


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box in a (N, 4) with every box in b (M, 4), xyxy."""
    a = np.asarray(a, np.float64).reshape(-1, 4)
    b = np.asarray(b, np.float64).reshape(-1, 4)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=2)
    area_a = np.prod(a[:, 2:] - a[:, :2], axis=1)
    area_b = np.prod(b[:, 2:] - b[:, :2], axis=1)
    return inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-12)


def average_precision(scores: np.ndarray, is_tp: np.ndarray, n_truth: int) -> float:
    """VOC all-point interpolated AP of ranked detections; 0 when nothing was detected."""
    if n_truth == 0:
        return math.nan
    if len(scores) == 0:
        return 0.0
    order = np.argsort(-np.asarray(scores), kind='stable')
    tp = np.asarray(is_tp, np.float64)[order]
    tp_cum, fp_cum = np.cumsum(tp), np.cumsum(1.0 - tp)
    recall = tp_cum / n_truth
    precision = tp_cum / np.maximum(tp_cum + fp_cum, 1e-12)
    r = np.concatenate([[0.0], recall, [1.0]])
    p = np.concatenate([[0.0], precision, [0.0]])
    p = np.maximum.accumulate(p[::-1])[::-1]
    steps = np.flatnonzero(r[1:] != r[:-1])
    return float(np.sum((r[steps + 1] - r[steps]) * p[steps + 1]))


@dataclass
class _ClassRecords:
    """Per class: every detection (score, matched truth index or -1, own bin value) and every
    truth object's bin value, accumulated over frames."""

    scores: list[float] = field(default_factory=list)
    matched: list[int] = field(default_factory=list)
    det_values: list[float] = field(default_factory=list)
    truth_values: list[float] = field(default_factory=list)


def mean_average_precision(
    truths: Sequence[FrameDetections], detections: Sequence[FrameDetections],
    bins: dict[str, tuple[float, float]] | None = None, by: str = 'height',
    class_ids: Sequence[int] | None = None,
) -> dict[str, dict[str, float]]:
    """mAP@0.5 per bin of truth box height (by='height', px) or distance (by='distance', m).

    Within a bin (COCO-style area ranges): truth outside it is ignored, a detection matched to
    ignored truth is ignored, an unmatched detection counts as a false positive only when its own
    box falls in the bin (its height; for distance, the ground distance under its bottom edge).
    Matching is greedy by score, to the unmatched truth of the same class with the highest IoU
    >= 0.5. Returns {bin: {'mAP': .., class name: AP, 'n_truth': ..}}; mAP is NaN for a bin with
    no truth at all.
    """
    bins = bins or {'all': (0.0, math.inf)}
    if len(truths) != len(detections):
        raise ValueError(f'{len(truths)} truth frames but {len(detections)} detection frames')
    class_ids = list(class_ids) if class_ids is not None else list(range(1, len(CLASS_NAMES)))
    records = {c: _ClassRecords() for c in class_ids}
    for truth, det in zip(truths, detections, strict=True):
        for c in class_ids:
            rec = records[c]
            t_idx = np.flatnonzero(truth.class_ids == c)
            d_idx = np.flatnonzero(det.class_ids == c)
            offset = len(rec.truth_values)
            rec.truth_values.extend(_bin_values(truth, t_idx, by, is_truth=True))
            d_idx = d_idx[np.argsort(-det.scores[d_idx], kind='stable')]
            iou = box_iou(det.boxes[d_idx], truth.boxes[t_idx])
            taken = np.zeros(len(t_idx), bool)
            for row, values in enumerate(_bin_values(det, d_idx, by, is_truth=False)):
                match = -1
                if len(t_idx):
                    candidates = np.where(taken, -1.0, iou[row])
                    best = int(np.argmax(candidates))
                    if candidates[best] >= IOU_MATCH:
                        taken[best] = True
                        match = offset + best
                rec.scores.append(float(det.scores[d_idx[row]]))
                rec.matched.append(match)
                rec.det_values.append(values)
    results: dict[str, dict[str, float]] = {}
    for name, (lo, hi) in bins.items():
        aps, row = [], {}
        n_truth_all = 0
        for c in class_ids:
            rec = records[c]
            truth_in = np.array([lo <= v < hi for v in rec.truth_values], bool)
            n_truth = int(truth_in.sum())
            n_truth_all += n_truth
            scores, tps = [], []
            for score, match, value in zip(rec.scores, rec.matched, rec.det_values, strict=True):
                if match >= 0:
                    if truth_in[match]:
                        scores.append(score)
                        tps.append(True)
                elif lo <= value < hi:
                    scores.append(score)
                    tps.append(False)
            ap = average_precision(np.array(scores), np.array(tps, bool), n_truth)
            row[CLASS_NAMES[c]] = ap
            if not math.isnan(ap):
                aps.append(ap)
        row['mAP'] = float(np.mean(aps)) if aps else math.nan
        row['n_truth'] = n_truth_all
        results[name] = row
    return results


def _bin_values(frames: FrameDetections, idx: np.ndarray, by: str, is_truth: bool) -> list[float]:
    boxes = frames.boxes[idx]
    if by == 'height':
        return list((boxes[:, 3] - boxes[:, 1]).astype(float))
    if by != 'distance':
        raise ValueError(f"by must be 'height' or 'distance', got {by!r}")
    if is_truth:
        return list(frames.distances[idx].astype(float))
    return [ground_distance(float(y2)) for y2 in boxes[:, 3]]


def ground_distance(bottom_y: float, width: int = 640, height: int = 192) -> float:
    """Distance (m) of the road point seen at image row bottom_y by the synthetic camera."""
    from importance_sampler_ros.synth.render import Camera

    cam = Camera.for_image(width, height)
    below = bottom_y - cam.cy
    return cam.focal_px * cam.height_m / below if below > 0.5 else math.inf


def class_confusion(truths: Sequence[FrameDetections], detections: Sequence[FrameDetections],
                    score_threshold: float = 0.3,
                    bins: dict[str, tuple[float, float]] | None = None
                    ) -> dict[str, dict[str, Any]]:
    """Per height bin: a confusion matrix of true class vs the class of the best-overlapping
    detection (IoU >= 0.5, score >= threshold, any class; column 0 = missed), the share of found
    objects given a wrong class, and the share missed."""
    bins = bins or HEIGHT_BINS
    n = len(CLASS_NAMES)
    matrices = {name: np.zeros((n, n), np.int64) for name in bins}
    for truth, det in zip(truths, detections, strict=True):
        keep = det.scores >= score_threshold
        iou = box_iou(truth.boxes, det.boxes[keep])
        labels = det.class_ids[keep]
        heights = truth.boxes[:, 3] - truth.boxes[:, 1]
        for i, c in enumerate(truth.class_ids):
            predicted = 0
            if iou.shape[1] and iou[i].max() >= IOU_MATCH:
                predicted = int(labels[int(np.argmax(iou[i]))])
            for name, (lo, hi) in bins.items():
                if lo <= heights[i] < hi:
                    matrices[name][c, predicted] += 1
    out = {}
    for name, m in matrices.items():
        found = m[1:, 1:].sum()
        wrong = found - np.trace(m[1:, 1:])
        total = m[1:].sum()
        out[name] = {
            'matrix': m[1:].tolist(),  # rows: true class 1..; columns: 0 = missed, then classes
            'wrong_class_rate': float(wrong / found) if found else math.nan,
            'miss_rate': float(m[1:, 0].sum() / total) if total else math.nan,
            'n_truth': int(total),
        }
    return out


def map_by_tag(truths: Sequence[FrameDetections], detections: Sequence[FrameDetections],
               tags: Sequence[str] | None = None,
               bins: dict[str, tuple[float, float]] | None = None) -> dict[str, dict[str, Any]]:
    """mAP@0.5 over the frames carrying each situation tag (`truth.situations`).

    tags: the tags to report (default: every tag seen); bins: height bins within each tag
    (default: all objects). Returns {tag: {'mAP': .., class: AP, 'n_truth': .., 'n_frames': ..,
    bin name: mAP (when bins are given)}}.
    """
    seen = sorted({t for truth in truths for t in truth.situations})
    out: dict[str, dict[str, Any]] = {}
    for tag in (seen if tags is None else tags):
        idx = [i for i, truth in enumerate(truths) if tag in truth.situations]
        sub_t = [truths[i] for i in idx]
        sub_d = [detections[i] for i in idx]
        row: dict[str, Any] = dict(mean_average_precision(sub_t, sub_d)['all'])
        row['n_frames'] = len(idx)
        if bins:
            for name, result in mean_average_precision(sub_t, sub_d, bins, 'height').items():
                row[name] = result['mAP']
        out[tag] = row
    return out


def evaluate_detections(truths: Sequence[FrameDetections], detections: Sequence[FrameDetections],
                        ) -> dict[str, Any]:
    """Every mAP@0.5 view of one detector's output: overall, by height, by distance, by tag."""
    return {
        'overall': mean_average_precision(truths, detections)['all'],
        'by_height': mean_average_precision(truths, detections, HEIGHT_BINS, 'height'),
        'by_distance': mean_average_precision(truths, detections, DISTANCE_BINS, 'distance'),
        'by_tag': map_by_tag(truths, detections, bins=HEIGHT_BINS),
    }
