"""The detector's box-head inputs, computed once per frame, so that retraining its last layers and
evaluating the retrained detector need no further backbone passes.

A torchvision Faster R-CNN with a two-layer box head (`TwoMLPHead`: fc6, fc7; the project's
isr_small and the mobilenet models) turns each region of interest (RoI) into
relu(fc7(relu(fc6(roi_align(features, box))))) and then into class logits (cls_score) and box
deltas (bbox_pred). The closed loop retrains the box head's top: with `from_layer='fc7'` fc7,
cls_score and bbox_pred (the inputs cached are relu(fc6(.)), 256 values per RoI, about 1/5 MB per
frame); with `from_layer='fc6'` fc6 as well (the inputs cached are the RoI-aligned feature maps,
64 x 7 x 7 per RoI for isr_small, about 2 MB per frame). The backbone and the RPN stay as
trained. For every frame this module keeps the RPN proposals and those inputs for each of them,
plus the same for the frame's label boxes (ground truth, the detector's own detections), which
torchvision's training adds to the proposals. Features are stored in float16.

With the base model's own last layers, `detect_cached` reproduces the detector's output on the
same frames (up to the float16 rounding of the features): a test holds it.
"""
from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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
    frame_descriptor,
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
    self-labelled variant). features (R, D), float16: the inputs of the first retrained layer for
    each, relu(fc6(roi_align(.))) or the flattened roi_align(.) itself (see the module docstring).
    """

    stamp_ns: int
    drive_seed: int
    index: int
    truth: FrameDetections
    detections: FrameDetections
    rois: torch.Tensor
    features: torch.Tensor
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


RETRAINABLE = ('fc7', 'fc6')  # the first retrained layer: fc7 and up, or fc6 and up


def _check_layer(from_layer: str) -> None:
    if from_layer not in RETRAINABLE:
        raise ValueError(f'from_layer must be one of {RETRAINABLE}, got {from_layer!r}')


def ensure_descriptors(detector: Detector, frames: Iterable[CachedFrame], from_layer: str
                       ) -> None:
    """Give every cached frame's detections the frame descriptor the detector publishes
    (detector.frame_descriptor of the box head's output over the proposals), computed from the
    cached proposal features where a cache written before descriptors existed lacks it (from the
    float16 features: equal to the live value to about 1e-3 relative)."""
    _check_layer(from_layer)
    head = two_mlp_head(detector)
    for frame in frames:
        if len(frame.detections.descriptor):
            continue
        x = frame.features[:frame.n_proposals].float()
        with torch.no_grad():
            if from_layer == 'fc6':
                x = torch.relu(head.fc6(x))
            frame.detections.descriptor = (
                frame_descriptor(torch.relu(head.fc7(x))).numpy().astype(np.float32))


def cache_frames(detector: Detector, frames: Iterable[SourceFrame], *, label_rois: bool,
                 batch_size: int = 4, from_layer: str = 'fc7') -> Iterator[CachedFrame]:
    """Run the detector once over `frames`; yield each frame's CachedFrame in order.

    label_rois: also pool the truth and detection boxes (pool frames, to train on); test frames
    need only their proposals. from_layer: the first layer to be retrained (RETRAINABLE); the
    cached features are its inputs.
    """
    _check_layer(from_layer)
    head = two_mlp_head(detector)
    heads = detector.model.roi_heads
    chunk: list[SourceFrame] = []

    def flush() -> Iterator[CachedFrame]:
        tensors = [detector.to_tensor(f.image) for f in chunk]
        with torch.no_grad():
            computed = proposals_and_features(detector.model, tensors)
            captured = detections_from_proposals(detector.model, computed,
                                                 detector.config.published_candidate_floor)
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
                inputs = pooled.flatten(start_dim=1)
                if from_layer == 'fc7':
                    inputs = torch.relu(head.fc6(inputs))
                yield CachedFrame(
                    stamp_ns=frame.stamp_ns, drive_seed=frame.drive_seed, index=frame.index,
                    truth=frame.truth, detections=detections, rois=rois.cpu().float(),
                    features=inputs.to(FEATURE_DTYPE).cpu(), n_proposals=len(proposals),
                    n_truth=len(frame.truth) if label_rois else 0, image_size=tuple(size),
                    original_size=tuple(original))

    for frame in frames:
        chunk.append(frame)
        if len(chunk) == batch_size:
            yield from flush()
            chunk = []
    if chunk:
        yield from flush()


CACHE_FORMAT = 1


def cached_on_disk(directory: Path | None, key: dict[str, Any],
                   compute: Callable[[], list[CachedFrame]]) -> list[CachedFrame]:
    """`compute()`, or its result from an earlier run with the same `key` under `directory`.

    The key names everything the cached frames depend on (drive seeds, lengths, the checkpoint's
    bytes); it is hashed into the file name. The files are pickles: load only caches you wrote.
    None = no disk cache.
    """
    if directory is None:
        return compute()
    text = json.dumps({'format': CACHE_FORMAT, **key}, sort_keys=True, default=str)
    digest = hashlib.sha256(text.encode()).hexdigest()[:16]
    path = Path(directory) / f'{key.get("what", "frames")}-{digest}.pt'
    if path.is_file():
        return torch.load(path, weights_only=False)
    frames = compute()
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix('.partial')
    torch.save(frames, partial)
    partial.replace(path)
    return frames


def file_digest(path: str | Path) -> str:
    """sha256 of a file's bytes (a checkpoint's identity in cache keys)."""
    digest = hashlib.sha256()
    with open(path, 'rb') as stream:
        for block in iter(lambda: stream.read(1 << 20), b''):
            digest.update(block)
    return digest.hexdigest()


class LastLayers(nn.Module):
    """The retrained layers, copied from a detector: (fc6 with from_layer='fc6'), fc7,
    cls_score and bbox_pred."""

    def __init__(self, detector: Detector, from_layer: str = 'fc7') -> None:
        super().__init__()
        _check_layer(from_layer)
        head = two_mlp_head(detector)
        predictor = detector.model.roi_heads.box_predictor
        self.fc6 = copy.deepcopy(head.fc6).float().cpu() if from_layer == 'fc6' else None
        self.fc7 = copy.deepcopy(head.fc7).float().cpu()
        self.cls_score = copy.deepcopy(predictor.cls_score).float().cpu()
        self.bbox_pred = copy.deepcopy(predictor.bbox_pred).float().cpu()

    def forward(self, features: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(features h the predictor sees, class logits, box deltas) for cached feature rows."""
        x = features.float()
        if self.fc6 is not None:
            x = torch.relu(self.fc6(x))
        h = torch.relu(self.fc7(x))
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
            features = torch.cat([f.features[:f.n_proposals] for f in part])
            h, logits, deltas = layers(features)
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
