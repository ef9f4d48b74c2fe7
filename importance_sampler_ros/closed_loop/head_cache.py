"""The detector's box-head inputs, computed once per frame, so that retraining its last layers and
evaluating the retrained detector need no further backbone passes.

A torchvision Faster R-CNN with a two-layer box head (`TwoMLPHead`: fc6, fc7; the project's
isr_small and the mobilenet models) turns each region of interest (RoI) into
relu(fc7(relu(fc6(roi_align(features, box))))) and then into class logits (cls_score) and box
deltas (bbox_pred). The closed loop retrains the *last layers*: fc7, cls_score and bbox_pred; the
backbone, the RPN and fc6 stay as trained. For every frame this module keeps the RPN proposals
and relu(fc6(.)) of each of them (the inputs of the retrained layers), plus the same for the
frame's label boxes (ground truth, the detector's own detections), which torchvision's training
adds to the proposals. Features are stored in float16 (about 1/4 MB per frame).

With the base model's own last layers, `detect_cached` reproduces the detector's output on the
same frames (up to the float16 rounding of the features): a test holds it.
"""
from __future__ import annotations

import copy
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torchvision.models.detection.faster_rcnn import TwoMLPHead
from torchvision.models.detection.transform import resize_boxes

from importance_sampler_ros.detection.detections import FrameDetections
from importance_sampler_ros.detection.detector import (
    Detector,
    detections_from_head_outputs,
    detections_from_proposals,
    proposals_and_features,
)

FEATURE_DTYPE = torch.float16
EVAL_SCORE_FLOOR = 0.05  # mAP is computed over every box scoring above this (VOC/COCO habit)


@dataclass
class SourceFrame:
    """A frame to cache: RGB image, its stamp, its ground truth, and where it came from."""

    image: np.ndarray
    stamp_ns: int
    truth: FrameDetections
    drive_seed: int
    index: int


@dataclass
class CachedFrame:
    """One frame's box-head inputs and the base detector's output on it.

    rois (R, 4) in resized-image pixels: the n_proposals RPN proposals, then the n_truth
    ground-truth boxes, then the n_detections published detection boxes (label boxes for the
    self-labelled variant). fc6 (R, D): relu(fc6(roi_align(.))) of each, float16.
    """

    stamp_ns: int
    drive_seed: int
    index: int
    truth: FrameDetections
    detections: FrameDetections
    rois: torch.Tensor
    fc6: torch.Tensor
    n_proposals: int
    n_truth: int
    image_size: tuple[int, int]
    original_size: tuple[int, int]

    @property
    def n_detections(self) -> int:
        return len(self.rois) - self.n_proposals - self.n_truth

    def to_resized(self, boxes: np.ndarray) -> torch.Tensor:
        """Boxes in original pixels -> the resized image's pixels (the RoIs' frame)."""
        tensor = torch.as_tensor(np.asarray(boxes, np.float32).reshape(-1, 4))
        return resize_boxes(tensor, self.original_size, self.image_size)


def two_mlp_head(detector: Detector) -> TwoMLPHead:
    head = detector.model.roi_heads.box_head
    if not isinstance(head, TwoMLPHead):
        raise ValueError(f'the closed loop retrains a two-layer box head (TwoMLPHead); '
                         f'{detector.architecture} has {type(head).__name__}')
    return head


def cache_frames(detector: Detector, frames: Iterable[SourceFrame], *, label_rois: bool,
                 batch_size: int = 4) -> Iterator[CachedFrame]:
    """Run the detector once over `frames`; yield each frame's CachedFrame in order.

    label_rois: also pool the truth and detection boxes (pool frames, to train on); test frames
    need only their proposals.
    """
    head = two_mlp_head(detector)
    heads = detector.model.roi_heads
    chunk: list[SourceFrame] = []

    def flush() -> Iterator[CachedFrame]:
        tensors = [detector.to_tensor(f.image) for f in chunk]
        with torch.no_grad():
            computed = proposals_and_features(detector.model, tensors)
            captured = detections_from_proposals(detector.model, computed,
                                                 detector.config.candidate_floor or None)
            for k, (frame, cap) in enumerate(zip(chunk, captured, strict=True)):
                detections = detector.frame_from_captured(cap, frame.stamp_ns)
                proposals = computed.proposals[k]
                size, original = computed.image_sizes[k], computed.original_sizes[k]
                extra = [frame.truth.boxes, detections.boxes] if label_rois else []
                boxes = [proposals] + [resize_boxes(torch.as_tensor(b, dtype=proposals.dtype)
                                                    .reshape(-1, 4), original, size)
                                       for b in extra]
                rois = torch.cat(boxes)
                pooled = heads.box_roi_pool(
                    {name: level[k:k + 1] for name, level in computed.feature_maps.items()},
                    [rois], [size])
                fc6 = torch.relu(head.fc6(pooled.flatten(start_dim=1)))
                yield CachedFrame(
                    stamp_ns=frame.stamp_ns, drive_seed=frame.drive_seed, index=frame.index,
                    truth=frame.truth, detections=detections, rois=rois.cpu().float(),
                    fc6=fc6.to(FEATURE_DTYPE).cpu(), n_proposals=len(proposals),
                    n_truth=len(frame.truth) if label_rois else 0, image_size=tuple(size),
                    original_size=tuple(original))

    for frame in frames:
        chunk.append(frame)
        if len(chunk) == batch_size:
            yield from flush()
            chunk = []
    if chunk:
        yield from flush()


class LastLayers(nn.Module):
    """fc7, cls_score and bbox_pred of a detector's box head and predictor: what is retrained."""

    def __init__(self, detector: Detector) -> None:
        super().__init__()
        head = two_mlp_head(detector)
        predictor = detector.model.roi_heads.box_predictor
        self.fc7 = copy.deepcopy(head.fc7).float().cpu()
        self.cls_score = copy.deepcopy(predictor.cls_score).float().cpu()
        self.bbox_pred = copy.deepcopy(predictor.bbox_pred).float().cpu()

    def forward(self, fc6: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(features h the predictor sees, class logits, box deltas) for fc6 rows."""
        h = torch.relu(self.fc7(fc6.float()))
        return h, self.cls_score(h), self.bbox_pred(h)


def detect_cached(layers: LastLayers, detector: Detector, frames: Sequence[CachedFrame],
                  score_floor: float = EVAL_SCORE_FLOOR, chunk: int = 32
                  ) -> list[FrameDetections]:
    """Every box scoring above `score_floor` per frame, with `layers` as the last layers."""
    heads = detector.model.roi_heads
    names = detector.class_names
    out: list[FrameDetections] = []
    layers.eval()
    with torch.no_grad():
        for start in range(0, len(frames), chunk):
            part = frames[start:start + chunk]
            proposals = [f.rois[:f.n_proposals] for f in part]
            fc6 = torch.cat([f.fc6[:f.n_proposals] for f in part])
            h, logits, deltas = layers(fc6)
            captured = detections_from_head_outputs(
                heads, h, logits, deltas, proposals, [f.image_size for f in part],
                [f.original_size for f in part], candidate_floor=score_floor)
            for frame, cap in zip(part, captured, strict=True):
                both = [cap, cap.candidates]
                boxes = torch.cat([c.boxes for c in both]).numpy()
                scores = torch.cat([c.scores for c in both]).numpy()
                labels = torch.cat([c.labels for c in both]).numpy()
                out.append(FrameDetections(
                    stamp_ns=frame.stamp_ns, boxes=boxes, class_ids=labels,
                    class_names=[names[int(c)] for c in labels], scores=scores))
    return out
