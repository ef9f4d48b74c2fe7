"""Per-frame detector errors against ground truth, and how well a frame score finds them.

Matching (../shared/notes/selection-metrics.md): the detections at or above the score threshold
are matched to the frame's ground-truth boxes greedily by IoU (highest first), any class, at
IoU >= 0.5. Then per frame:
- false positive (FP): a detection with no truth at IoU >= 0.5 (split into `fp_localisation`,
  best IoU with any truth in [0.1, 0.5), and `fp_background`, below 0.1);
- missed (FN): a truth with no detection at IoU >= 0.5 (`missed_small`: box height < 20 px);
- wrong class (WC): a matched pair whose classes differ.
Visible errors = FP + WC (what a detection's own score can reflect); total = FP + FN + WC.

Labelled objects (`min_labelled_height`, LABELLED_MIN_HEIGHT_PX): labellers do not box objects
too small to be labelled reliably (KITTI marks them DontCare and evaluates none under 25 px). A
truth shorter than the labelling height is "don't care": missing it is no error, a detection
matched to it is neither right nor wrong, and an unmatched detection is no false positive when
its own box is under that height or it overlaps a don't-care truth at IoU >= 0.5. With 0 every
truth counts (the definition of the shared note).

Enrichment of a frame score: errors per frame among the top `fraction` of frames ranked by the
score (ranked within each drive) divided by errors per frame overall; random = 1, the oracle
(ranking by the error count itself) is the ceiling the world allows. For a sampler that keeps
frame i with probability q_i, the expected errors per kept frame are sum(q e) / sum(q).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from importance_sampler_ros.detection.detections import FrameDetections
from importance_sampler_ros.evaluation.detection_map import box_iou

MATCH_IOU = 0.5
LOCALISATION_IOU = 0.1
SMALL_BOX_PX = 20.0
# Labelled objects are at least this tall: the edge of the 'far' bin (KITTI's is 25 px).
LABELLED_MIN_HEIGHT_PX = 20.0


@dataclass(frozen=True)
class FrameErrors:
    """Error counts of one frame, and which detections / truths they are."""

    false_positives: int
    missed: int
    wrong_class: int
    fp_localisation: int
    missed_small: int
    n_detections: int
    n_truth: int
    # per detection: True if it is a false positive or has the wrong class
    detection_is_error: np.ndarray = field(repr=False, compare=False,
                                           default_factory=lambda: np.zeros(0, bool))
    # per detection: index of the matched truth, -1 if unmatched
    detection_truth: np.ndarray = field(repr=False, compare=False,
                                        default_factory=lambda: np.zeros(0, np.int64))

    @property
    def total(self) -> int:
        return self.false_positives + self.missed + self.wrong_class

    @property
    def visible(self) -> int:
        return self.false_positives + self.wrong_class

    @property
    def fp_background(self) -> int:
        return self.false_positives - self.fp_localisation


def greedy_match(iou: np.ndarray, threshold: float = MATCH_IOU) -> np.ndarray:
    """Row -> column assignment (-1 = none), greedily by IoU, highest first, IoU >= threshold."""
    n_rows, n_cols = iou.shape
    match = np.full(n_rows, -1, np.int64)
    if n_rows == 0 or n_cols == 0:
        return match
    rows, cols = np.nonzero(iou >= threshold)
    order = np.argsort(-iou[rows, cols], kind='stable')
    col_taken = np.zeros(n_cols, bool)
    for k in order:
        r, c = rows[k], cols[k]
        if match[r] < 0 and not col_taken[c]:
            match[r] = c
            col_taken[c] = True
    return match


def frame_errors(detections: FrameDetections, truth: FrameDetections,
                 score_threshold: float = 0.0, iou_threshold: float = MATCH_IOU,
                 min_labelled_height: float = 0.0) -> FrameErrors:
    """The errors of one frame's detections (those with score >= score_threshold), counting only
    truths of at least `min_labelled_height` px (module docstring; 0 = every truth)."""
    keep = detections.scores >= score_threshold
    boxes, labels = detections.boxes[keep], detections.class_ids[keep]
    iou = box_iou(boxes, truth.boxes)
    match = greedy_match(iou, iou_threshold)
    matched = match >= 0
    heights = truth.boxes[:, 3] - truth.boxes[:, 1]
    labelled = heights >= min_labelled_height
    ignored = np.zeros(len(boxes), bool)
    ignored[matched] = ~labelled[match[matched]]
    fp = ~matched
    if min_labelled_height > 0.0:
        small = (boxes[:, 3] - boxes[:, 1]) < min_labelled_height
        near_dont_care = (iou[:, ~labelled].max(axis=1) >= iou_threshold if (~labelled).any()
                          else np.zeros(len(boxes), bool))
        ignored |= fp & (small | near_dont_care)
        fp &= ~ignored
    wrong = np.zeros(len(boxes), bool)
    wrong[matched] = labels[matched] != truth.class_ids[match[matched]]
    wrong &= ~ignored
    best = iou.max(axis=1) if iou.shape[1] else np.zeros(len(boxes))
    truth_found = np.zeros(len(truth), bool)
    truth_found[match[matched]] = True
    missed = ~truth_found & labelled
    is_error = np.zeros(len(detections), bool)
    is_error[np.flatnonzero(keep)] = fp | wrong
    det_truth = np.full(len(detections), -1, np.int64)
    det_truth[np.flatnonzero(keep)] = match
    return FrameErrors(
        false_positives=int(fp.sum()), missed=int(missed.sum()),
        wrong_class=int(wrong.sum()),
        fp_localisation=int((fp & (best >= LOCALISATION_IOU)).sum()),
        missed_small=int((missed & (heights < SMALL_BOX_PX)).sum()),
        n_detections=int(keep.sum() - ignored.sum()), n_truth=int(labelled.sum()),
        detection_is_error=is_error, detection_truth=det_truth)


def top_fraction_mask(scores: np.ndarray, fraction: float = 0.1,
                      groups: np.ndarray | None = None) -> np.ndarray:
    """Boolean mask of the top `fraction` of frames by score, ranked within each group (drive).

    Ties are broken by position (stable), so a constant score picks the first frames of a drive.
    """
    scores = np.asarray(scores, np.float64)
    groups = np.zeros(len(scores), np.int64) if groups is None else np.asarray(groups)
    mask = np.zeros(len(scores), bool)
    for g in np.unique(groups):
        idx = np.flatnonzero(groups == g)
        n = max(1, round(fraction * len(idx)))
        mask[idx[np.argsort(-scores[idx], kind='stable')[:n]]] = True
    return mask


def enrichment(scores: np.ndarray, errors: np.ndarray, fraction: float = 0.1,
               groups: np.ndarray | None = None) -> float:
    """Errors per frame in the top `fraction` by score / errors per frame overall (NaN if none)."""
    errors = np.asarray(errors, np.float64)
    if errors.sum() == 0:
        return float('nan')
    top = top_fraction_mask(scores, fraction, groups)
    return float(errors[top].mean() / errors.mean())


def sampler_enrichment(keep_probability: np.ndarray, errors: np.ndarray) -> float:
    """Expected errors per kept frame of a sampler keeping frame i with probability q_i, divided
    by errors per frame overall."""
    q = np.asarray(keep_probability, np.float64)
    errors = np.asarray(errors, np.float64)
    if q.sum() == 0 or errors.sum() == 0:
        return float('nan')
    return float((q * errors).sum() / q.sum() / errors.mean())


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation (average ranks for ties); NaN when either side is constant."""
    from scipy.stats import spearmanr

    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if len(a) < 2 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return float('nan')
    return float(spearmanr(a, b).statistic)


def auroc(scores: np.ndarray, positive: np.ndarray) -> float:
    """Area under the ROC curve of `scores` for the boolean label `positive` (Mann-Whitney U)."""
    from scipy.stats import rankdata

    scores = np.asarray(scores, np.float64)
    positive = np.asarray(positive, bool)
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if n_pos == 0 or n_neg == 0:
        return float('nan')
    ranks = rankdata(scores)
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def errors_by_tag(errors: Sequence[FrameErrors], truths: Sequence[FrameDetections]
                  ) -> dict[str, dict[str, float]]:
    """Per situation tag: frames, share of frames, and errors per frame (total, FP, FN, WC)."""
    tags = sorted({t for truth in truths for t in truth.situations})
    out = {}
    for tag in tags:
        sel = [e for e, truth in zip(errors, truths, strict=True) if tag in truth.situations]
        out[tag] = {
            'frames': len(sel),
            'frame_share': len(sel) / max(1, len(truths)),
            'errors_per_frame': float(np.mean([e.total for e in sel])),
            'false_positives_per_frame': float(np.mean([e.false_positives for e in sel])),
            'missed_per_frame': float(np.mean([e.missed for e in sel])),
            'wrong_class_per_frame': float(np.mean([e.wrong_class for e in sel])),
        }
    return out
