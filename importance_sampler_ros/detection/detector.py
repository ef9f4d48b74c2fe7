"""The detector: a torchvision Faster R-CNN that returns boxes plus last-layer importance.

Three layers, each usable on its own:

- `build_model` builds an architecture with random weights (never any download) and
  `save_checkpoint` / `load_checkpoint` move weights in and out with checked shapes.
- `forward_with_features` runs a model on a batch and, for every final detection, also returns the
  box-head feature h and the class logits of the very proposal that became the detection, from the
  same forward pass. It follows torchvision's own post-processing step by step (so the detections
  are the ones `model(images)` returns) but keeps each candidate's proposal row through score
  filtering, small-box removal and per-class NMS.
- `Detector` holds a loaded model on its device and turns an RGB image into `FrameDetections` with
  per-detection importances (importance.py) and the frame importance.
"""
from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torchvision.models import detection as tv_detection
from torchvision.models.detection import FasterRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.transform import resize_boxes
from torchvision.ops import FeaturePyramidNetwork, MultiScaleRoIAlign
from torchvision.ops import boxes as box_ops
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool

from importance_sampler_ros.detection.config import (
    ARCHITECTURE_SIZES,
    ARCHITECTURES,
    DEFAULT_ARCHITECTURE,
    DEFAULT_CHECKPOINT_NAME,
    DEFAULT_CLASS_NAMES,
    SCORERS,
    DetectorConfig,
)
from importance_sampler_ros.detection.detections import (
    FrameDetections,
    FrameScoring,
    frame_importance,
)
from importance_sampler_ros.detection.importance import uncertainty_scores
from importance_sampler_ros.params import flat_values
from importance_sampler_ros.share import share_path


class CheckpointError(RuntimeError):
    """A checkpoint file that cannot be read or does not fit the requested model."""


class DetectorError(RuntimeError):
    """A detector that cannot be set up as configured (device, precision)."""


# --------------------------------------------------------------------------------------------
# Architectures


class _BasicBlock(nn.Module):
    """Two 3x3 convolutions with a residual connection (ResNet's basic block)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + self.shortcut(x))


class SmallResNetFPN(nn.Module):
    """A small ResNet-like backbone trained from scratch, with a 64-channel FPN.

    Stem of stride 4, then stages of widths 32/64/128/256 with 1/2/2/1 basic blocks at strides
    4/8/16/32; the FPN adds a max-pooled stride-64 level. BatchNorm is ordinary (trainable), not
    torchvision's frozen variant meant for pretrained backbones.
    """

    widths = (32, 64, 128, 256)
    blocks = (1, 2, 2, 1)

    def __init__(self, fpn_channels: int = 64) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(3, 32, 3, 2, 1, bias=False),
            nn.BatchNorm2d(32),
            nn.ReLU(inplace=True),
            nn.Conv2d(32, 32, 3, 2, 1, bias=False),
            nn.BatchNorm2d(32),
            nn.ReLU(inplace=True),
        )
        stages = []
        in_channels = 32
        for index, (width, count) in enumerate(zip(self.widths, self.blocks, strict=True)):
            stride = 1 if index == 0 else 2
            layers = [_BasicBlock(in_channels, width, stride)]
            layers += [_BasicBlock(width, width, 1) for _ in range(count - 1)]
            stages.append(nn.Sequential(*layers))
            in_channels = width
        self.stages = nn.ModuleList(stages)
        self.fpn = FeaturePyramidNetwork(
            list(self.widths), fpn_channels, extra_blocks=LastLevelMaxPool()
        )
        self.out_channels = fpn_channels

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        x = self.stem(x)
        levels: OrderedDict[str, torch.Tensor] = OrderedDict()
        for index, stage in enumerate(self.stages):
            x = stage(x)
            levels[str(index)] = x
        return self.fpn(levels)


def _build_isr_small(num_classes: int, **kwargs: Any) -> FasterRCNN:
    backbone = SmallResNetFPN(fpn_channels=64)
    # One anchor-size pair per FPN level (strides 4, 8, 16, 32, 64): objects of 6 to 150 px.
    anchor_sizes = ((6, 11), (16, 23), (32, 45), (64, 90), (110, 150))
    anchors = AnchorGenerator(anchor_sizes, ((0.5, 1.0, 2.0),) * len(anchor_sizes))
    roi_pool = MultiScaleRoIAlign(['0', '1', '2', '3'], output_size=7, sampling_ratio=2)
    representation = 256
    defaults: dict[str, Any] = {
        'rpn_pre_nms_top_n_train': 1000,
        'rpn_post_nms_top_n_train': 500,
        'rpn_pre_nms_top_n_test': 500,
        'rpn_post_nms_top_n_test': 300,
        'box_batch_size_per_image': 128,
    }
    return FasterRCNN(
        backbone,
        num_classes=None,  # the predictor is given, sized for the 256-d head
        rpn_anchor_generator=anchors,
        box_roi_pool=roi_pool,
        box_head=TwoMLPHead(backbone.out_channels * 7 * 7, representation),
        box_predictor=FastRCNNPredictor(representation, num_classes),
        **{**defaults, **kwargs},
    )


def build_model(
    architecture: str,
    num_classes: int,
    min_size: int,
    max_size: int,
    *,
    score_threshold: float = 0.05,
    nms_threshold: float = 0.5,
    detections_per_image: int = 100,
    **kwargs: Any,
) -> FasterRCNN:
    """A Faster R-CNN with random weights; no pretrained weights are ever downloaded.

    architecture: one of ARCHITECTURES ('isr_small' is the project's default). num_classes counts
    the background class. Extra keyword arguments go to torchvision's FasterRCNN (e.g. proposal
    counts). The model is returned in training mode, on the CPU.
    """
    if num_classes < 2:
        raise ValueError(f'num_classes must be >= 2 (background included), got {num_classes}')
    options = {
        'min_size': int(min_size),
        'max_size': int(max_size),
        'box_score_thresh': float(score_threshold),
        'box_nms_thresh': float(nms_threshold),
        'box_detections_per_img': int(detections_per_image),
        **kwargs,
    }
    if architecture == 'isr_small':
        return _build_isr_small(num_classes, **options)
    if architecture in ARCHITECTURES:
        builder = getattr(tv_detection, architecture)
        return builder(weights=None, weights_backbone=None, num_classes=num_classes, **options)
    raise ValueError(f'unknown architecture {architecture!r}; choose one of {ARCHITECTURES}')


# --------------------------------------------------------------------------------------------
# Checkpoints


def default_checkpoint_path() -> Path:
    """The shipped default model: share/<pkg>/models/ on a ROS install, else <repo>/models/."""
    return share_path('models', DEFAULT_CHECKPOINT_NAME)


def save_checkpoint(
    path: str | Path,
    model: nn.Module,
    *,
    architecture: str,
    class_names: Sequence[str],
    min_size: int,
    max_size: int,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write {'state_dict', 'meta'}; meta holds what is needed to rebuild the model.

    `extra` goes into meta as is (training settings, metrics); keep it to plain Python values and
    tensors so that the file loads with torch.load(weights_only=True). Written atomically.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {
        **(extra or {}),
        'architecture': architecture,
        'class_names': list(class_names),
        'num_classes': len(class_names),
        'min_size': int(min_size),
        'max_size': int(max_size),
    }
    state_dict = {key: value.detach().cpu() for key, value in model.state_dict().items()}
    partial = path.with_name(path.name + '.partial')
    torch.save({'state_dict': state_dict, 'meta': meta}, partial)
    partial.replace(path)
    return path


def read_checkpoint(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """(state_dict, meta) of a checkpoint file; meta is {} for a bare state_dict."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f'checkpoint {path} does not exist')
    try:
        content = torch.load(path, map_location='cpu', weights_only=True)
    except Exception as error:
        raise CheckpointError(f'checkpoint {path} cannot be read: {error}') from error
    if isinstance(content, dict) and 'state_dict' in content:
        state_dict, meta = content['state_dict'], dict(content.get('meta') or {})
    else:
        state_dict, meta = content, {}
    if not isinstance(state_dict, dict) or not all(
        isinstance(value, torch.Tensor) for value in state_dict.values()
    ):
        raise CheckpointError(f'checkpoint {path} holds no state_dict of tensors')
    return state_dict, meta


def apply_state_dict(
    model: nn.Module, state_dict: dict[str, torch.Tensor], *, source: str, architecture: str
) -> None:
    """Load weights into `model`, or raise CheckpointError listing what does not fit."""
    expected = model.state_dict()
    missing = [key for key in expected if key not in state_dict]
    unexpected = [key for key in state_dict if key not in expected]
    mismatched = [
        f'{key}: checkpoint {tuple(state_dict[key].shape)} vs model {tuple(value.shape)}'
        for key, value in expected.items()
        if key in state_dict and state_dict[key].shape != value.shape
    ]
    problems = []
    for what, items in (('missing keys', missing), ('unexpected keys', unexpected),
                        ('shape mismatches', mismatched)):
        if items:
            more = f', ... ({len(items)} in all)' if len(items) > 5 else ''
            shown = ', '.join(items[:5]) + more
            problems.append(f'{what}: {shown}')
    if problems:
        raise CheckpointError(
            f'checkpoint {source} does not fit {architecture}: '
            + '; '.join(problems)
        )
    model.load_state_dict(state_dict)


@dataclass
class LoadedCheckpoint:
    """A model with its checkpoint's weights, and what it was built with."""

    model: FasterRCNN
    architecture: str
    class_names: tuple[str, ...]
    min_size: int
    max_size: int
    path: Path
    meta: dict[str, Any] = field(default_factory=dict)


def load_checkpoint(
    path: str | Path,
    *,
    architecture: str | None = None,
    class_names: Sequence[str] | None = None,
    min_size: int | None = None,
    max_size: int | None = None,
    score_threshold: float = 0.05,
    nms_threshold: float = 0.5,
    detections_per_image: int = 100,
) -> LoadedCheckpoint:
    """Build the checkpoint's model and load its weights (on the CPU, in eval mode).

    Architecture and class names come from the checkpoint's meta; a caller value that disagrees
    with it is an error. For a bare state_dict they come from the caller, else the defaults
    (isr_small, the synthetic world's classes). min_size/max_size: caller, else meta, else the
    architecture's default.
    """
    path = Path(path)
    state_dict, meta = read_checkpoint(path)
    meta_architecture = meta.get('architecture')
    if architecture and meta_architecture and architecture != meta_architecture:
        raise CheckpointError(
            f'checkpoint {path} holds a {meta_architecture!r} model, not {architecture!r}'
        )
    architecture = meta_architecture or architecture or DEFAULT_ARCHITECTURE
    meta_names = meta.get('class_names')
    if class_names and meta_names and list(class_names) != list(meta_names):
        raise CheckpointError(
            f'checkpoint {path} was trained on classes {list(meta_names)}, not {list(class_names)}'
        )
    names = tuple(meta_names or class_names or DEFAULT_CLASS_NAMES)
    if architecture not in ARCHITECTURES:
        raise CheckpointError(f'checkpoint {path}: unknown architecture {architecture!r}')
    default_min, default_max = ARCHITECTURE_SIZES[architecture]
    min_size = int(min_size or meta.get('min_size') or default_min)
    max_size = int(max_size or meta.get('max_size') or default_max)
    model = build_model(
        architecture, len(names), min_size, max_size,
        score_threshold=score_threshold, nms_threshold=nms_threshold,
        detections_per_image=detections_per_image,
    )
    described = f'{architecture} with {len(names)} classes {list(names)}'
    apply_state_dict(model, state_dict, source=str(path), architecture=described)
    model.eval()
    return LoadedCheckpoint(model, architecture, names, min_size, max_size, path, meta)


# --------------------------------------------------------------------------------------------
# Forward pass that keeps the features of the final detections


@dataclass
class CapturedDetections:
    """One image's final detections with what the last layer saw for each of them.

    boxes (N, 4) xyxy in original image pixels, scores (N,), labels (N,) class ids >= 1,
    features (N, D) box-head features h, logits (N, C) class logits of the same proposal.
    `candidates`: the same for the sub-threshold candidates (score in [floor, threshold)) when a
    candidate floor was given, else None. `descriptor` (2 D,): the mean and standard deviation of
    the box-head features over all of the image's proposals.
    """

    boxes: torch.Tensor
    scores: torch.Tensor
    labels: torch.Tensor
    features: torch.Tensor
    logits: torch.Tensor
    candidates: CapturedDetections | None = None
    descriptor: torch.Tensor | None = None


def forward_with_features(
    model: FasterRCNN, images: list[torch.Tensor], candidate_floor: float | None = None
) -> list[CapturedDetections]:
    """Run an eval-mode Faster R-CNN on CHW float images, keeping h and logits per detection.

    The detections equal those of `model(images)`. With a candidate_floor below the model's
    score threshold, boxes scoring in [floor, threshold) after the same NMS are returned as each
    result's `candidates` (a lower-scoring box never suppresses a higher one in NMS, so the
    detections themselves do not change). Runs under the caller's grad mode: inside
    torch.no_grad() for speed, outside it when features/logits must take part in autograd.
    """
    return detections_from_proposals(model, proposals_and_features(model, images),
                                     candidate_floor)


@dataclass
class ProposalFeatures:
    """What a Faster R-CNN computes before its box head, for a batch of images: the resized
    batch's image sizes, the original sizes, the FPN feature maps and the RPN proposals (boxes in
    resized-image pixels)."""

    image_sizes: list[tuple[int, int]]
    original_sizes: list[tuple[int, int]]
    feature_maps: OrderedDict[str, torch.Tensor]
    proposals: list[torch.Tensor]


def proposals_and_features(model: FasterRCNN, images: list[torch.Tensor]) -> ProposalFeatures:
    """Transform, backbone and RPN of an eval-mode model on CHW float images."""
    if model.training:
        raise ValueError('forward_with_features needs the model in eval mode (model.eval())')
    original_sizes = [(int(image.shape[-2]), int(image.shape[-1])) for image in images]
    image_list, _ = model.transform(images)
    feature_maps = model.backbone(image_list.tensors)
    proposals, _ = model.rpn(image_list, feature_maps)
    return ProposalFeatures(list(image_list.image_sizes), original_sizes, feature_maps, proposals)


def detections_from_proposals(model: FasterRCNN, computed: ProposalFeatures,
                              candidate_floor: float | None = None) -> list[CapturedDetections]:
    """The box head, predictor and post-processing on proposals_and_features' output."""
    heads = model.roi_heads
    pooled = heads.box_roi_pool(computed.feature_maps, computed.proposals, computed.image_sizes)
    features = heads.box_head(pooled)
    logits, box_regression = heads.box_predictor(features)
    return detections_from_head_outputs(
        heads, features.flatten(start_dim=1), logits, box_regression, computed.proposals,
        computed.image_sizes, computed.original_sizes, candidate_floor)


def detections_from_head_outputs(
    heads: nn.Module, features: torch.Tensor, logits: torch.Tensor, box_regression: torch.Tensor,
    proposals: list[torch.Tensor], image_sizes: list[tuple[int, int]],
    original_sizes: list[tuple[int, int]], candidate_floor: float | None = None,
) -> list[CapturedDetections]:
    """Post-processing of the box predictor's outputs for the batch's proposals (rows in
    proposal order): per-class boxes, score filter, NMS, cap, boxes in original pixels.

    features: what the predictor's linear layers saw, (sum of proposals, D).
    """
    threshold = float(heads.score_thresh)
    floor = threshold if candidate_floor is None else min(float(candidate_floor), threshold)
    selections = _select_final_detections(
        heads, logits, box_regression, proposals, image_sizes, floor
    )
    captured = []
    cap = heads.detections_per_img
    per_image = features.split([len(p) for p in proposals], 0)
    for selection, resized, original, own in zip(selections, image_sizes, original_sizes,
                                                 per_image, strict=True):
        scores = selection[1]
        published = _capture(selection, torch.where(scores > threshold)[0][:cap], features,
                             logits, resized, original)
        published.descriptor = frame_descriptor(own)
        if candidate_floor is not None:
            published.candidates = _capture(selection, torch.where(scores <= threshold)[0][:cap],
                                            features, logits, resized, original)
        captured.append(published)
    return captured


def frame_descriptor(features: torch.Tensor) -> torch.Tensor:
    """(2 D,): mean and standard deviation over rows of one image's box-head features (its
    proposals); zeros for fewer than two proposals."""
    if len(features) < 2:
        return torch.zeros(2 * features.shape[1], dtype=features.dtype, device=features.device)
    return torch.cat([features.mean(0), features.std(0)])


def _capture(selection: tuple[torch.Tensor, ...], keep: torch.Tensor, features: torch.Tensor,
             logits: torch.Tensor, resized: tuple[int, int], original: tuple[int, int]
             ) -> CapturedDetections:
    boxes, scores, labels, rows = (t[keep] for t in selection)
    return CapturedDetections(boxes=resize_boxes(boxes, resized, original), scores=scores,
                              labels=labels, features=features[rows], logits=logits[rows])


def _select_final_detections(
    heads: nn.Module,
    logits: torch.Tensor,
    box_regression: torch.Tensor,
    proposals: list[torch.Tensor],
    image_sizes: list[tuple[int, int]],
    score_floor: float,
) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]]:
    """torchvision's RoIHeads.postprocess_detections (score filter at `score_floor`, NMS, sorted
    by score, not yet capped), also returning each detection's proposal row."""
    num_classes = logits.shape[-1]
    counts = [len(p) for p in proposals]
    decoded = heads.box_coder.decode(box_regression, proposals).split(counts, 0)
    probabilities = torch.softmax(logits, -1).split(counts, 0)
    results = []
    offset = 0
    for boxes, scores, image_size, count in zip(
        decoded, probabilities, image_sizes, counts, strict=True
    ):
        boxes = box_ops.clip_boxes_to_image(boxes, image_size)
        device = scores.device
        labels = torch.arange(num_classes, device=device).view(1, -1).expand_as(scores)
        rows = torch.arange(offset, offset + count, device=device).view(-1, 1).expand_as(scores)
        offset += count
        # one candidate per (proposal, non-background class)
        boxes = boxes[:, 1:].reshape(-1, 4)
        scores, labels, rows = (t[:, 1:].reshape(-1) for t in (scores, labels, rows))
        keep = torch.where(scores > score_floor)[0]
        boxes, scores, labels, rows = boxes[keep], scores[keep], labels[keep], rows[keep]
        keep = box_ops.remove_small_boxes(boxes, min_size=1e-2)
        boxes, scores, labels, rows = boxes[keep], scores[keep], labels[keep], rows[keep]
        keep = box_ops.batched_nms(boxes, scores, labels, heads.nms_thresh)
        results.append((boxes[keep], scores[keep], labels[keep], rows[keep]))
    return results


# --------------------------------------------------------------------------------------------
# The detector


def resolve_device(name: str) -> torch.device:
    """torch.device for 'cpu' / 'cuda' / 'cuda:N'; a clear error when CUDA is asked but absent."""
    device = torch.device(name)
    if device.type == 'cuda':
        if not torch.cuda.is_available():
            raise DetectorError(f'device {name!r} requested but CUDA is not available here')
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise DetectorError(
                f'device {name!r} requested but only {torch.cuda.device_count()} GPU(s) exist'
            )
    elif device.type != 'cpu':
        raise DetectorError(f"device must be 'cpu', 'cuda' or 'cuda:N', got {name!r}")
    return device


class Detector:
    """A loaded Faster R-CNN that returns FrameDetections with last-layer importances."""

    def __init__(self, config: DetectorConfig | None = None) -> None:
        self.config = config or DetectorConfig()
        self.device = resolve_device(self.config.device)
        checkpoint = Path(self.config.checkpoint or default_checkpoint_path())
        loaded = load_checkpoint(
            checkpoint,
            architecture=self.config.architecture or None,
            class_names=self.config.class_names,
            min_size=self.config.min_size or None,
            max_size=self.config.max_size or None,
            score_threshold=self.config.score_threshold,
            nms_threshold=self.config.nms_threshold,
            detections_per_image=self.config.detections_per_image,
        )
        self.dtype = torch.float16 if self.config.half else torch.float32
        self.model = loaded.model.to(self.device, self.dtype).eval()
        self.architecture = loaded.architecture
        self.class_names = loaded.class_names
        self.checkpoint = loaded.path
        self.checkpoint_meta = loaded.meta
        self.model_name = f'{loaded.architecture}:{loaded.path.name}'
        self.scoring = FrameScoring.of(flat_values(self.config))

    def warm_up(self, height: int = 192, width: int = 640) -> float:
        """One inference on a blank image, so the first camera frame does not pay for the
        allocator and kernel selection (seconds on a CPU, more with CUDA); returns its ms."""
        return self.detect(np.zeros((height, width, 3), np.uint8), 0).inference_ms

    def detect(self, image_rgb: np.ndarray, stamp_ns: int, frame_id: str = '') -> FrameDetections:
        """Detections with importances for one (H, W, 3) uint8 RGB image."""
        return self.detect_batch([image_rgb], [stamp_ns], [frame_id])[0]

    def detect_batch(
        self,
        images_rgb: Sequence[np.ndarray],
        stamps_ns: Sequence[int],
        frame_ids: Sequence[str] | None = None,
    ) -> list[FrameDetections]:
        """detect() for several images in one forward pass.

        Each frame's inference_ms is the batch's wall time divided by the number of images.
        """
        frame_ids = list(frame_ids) if frame_ids is not None else [''] * len(images_rgb)
        if not len(images_rgb) == len(stamps_ns) == len(frame_ids):
            raise ValueError('images, stamps and frame ids must have the same length')
        if not images_rgb:
            return []
        start = time.perf_counter()
        tensors = [self.to_tensor(image) for image in images_rgb]
        with torch.no_grad():
            captured = forward_with_features(self.model, tensors,
                                             self.config.published_candidate_floor)
            frames = [self.frame_from_captured(c, int(stamp), frame_id)
                      for c, stamp, frame_id in zip(captured, stamps_ns, frame_ids, strict=True)]
        elapsed_ms = (time.perf_counter() - start) * 1000.0 / len(images_rgb)
        for frame in frames:
            frame.inference_ms = elapsed_ms
        return frames

    def frame_from_captured(self, captured: CapturedDetections, stamp_ns: int,
                            frame_id: str = '') -> FrameDetections:
        """FrameDetections (every scorer, the configured importance, candidates, frame
        importance) of one image's captured detections; inference_ms is left 0."""
        scores = uncertainty_scores(captured.features, captured.logits, captured.labels)
        scores = scores.float().cpu().numpy()
        labels = captured.labels.cpu().numpy()
        column = SCORERS.index(self.config.scorer)
        frame = FrameDetections(
            stamp_ns=stamp_ns,
            frame_id=frame_id,
            boxes=captured.boxes.float().cpu().numpy(),
            class_ids=labels,
            class_names=[self.class_names[int(label)] for label in labels],
            scores=captured.scores.float().cpu().numpy(),
            importances=scores[:, column],
            aggregation=self.config.aggregation,
            model_name=self.model_name,
            scorer=self.config.scorer,
            uncertainty_names=SCORERS,
            uncertainty=scores,
        )
        if captured.descriptor is not None:
            frame.descriptor = captured.descriptor.float().cpu().numpy()
        if captured.candidates is not None:
            frame.candidates = self.frame_from_captured(captured.candidates, stamp_ns, frame_id)
        frame.frame_importance = frame_importance(frame, self.scoring)
        return frame

    def to_tensor(self, image_rgb: np.ndarray) -> torch.Tensor:
        """(H, W, 3) uint8 RGB -> the CHW float tensor the model takes, on its device."""
        if not isinstance(image_rgb, np.ndarray) or image_rgb.dtype != np.uint8:
            raise ValueError('image must be a numpy uint8 array')
        if image_rgb.ndim != 3 or image_rgb.shape[2] != 3 or min(image_rgb.shape[:2]) < 1:
            raise ValueError(f'image must be (H, W, 3) RGB with H, W >= 1, got {image_rgb.shape}')
        pixels = np.ascontiguousarray(image_rgb)
        if not pixels.flags.writeable:  # a view of a message's bytes: torch wants its own copy
            pixels = pixels.copy()
        tensor = torch.from_numpy(pixels).to(self.device)
        return tensor.permute(2, 0, 1).to(self.dtype).div_(255.0)


def state_dict_megabytes(model: nn.Module) -> float:
    """Size of a model's state_dict in MB (10^6 bytes), as stored in a checkpoint."""
    return sum(t.numel() * t.element_size() for t in model.state_dict().values()) / 1e6


__all__ = [
    'ARCHITECTURES',
    'DEFAULT_CLASS_NAMES',
    'CapturedDetections',
    'CheckpointError',
    'Detector',
    'DetectorConfig',
    'DetectorError',
    'LoadedCheckpoint',
    'apply_state_dict',
    'build_model',
    'default_checkpoint_path',
    'forward_with_features',
    'load_checkpoint',
    'read_checkpoint',
    'resolve_device',
    'save_checkpoint',
    'state_dict_megabytes',
]
