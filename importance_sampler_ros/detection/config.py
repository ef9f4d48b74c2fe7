"""The detector's parameters (detector_node declares them; replay reads the same YAML section).

No torch here, so the parameter registry (registry.py) and the launch file can read them.
"""
from __future__ import annotations

from dataclasses import dataclass

from importance_sampler_ros.params import ParameterError, Settings, param
from importance_sampler_ros.synth.classes import CLASS_NAMES

DEFAULT_ARCHITECTURE = 'isr_small'
DEFAULT_CHECKPOINT_NAME = 'isr_small_synth.pt'
DEFAULT_CLASS_NAMES = CLASS_NAMES
AGGREGATIONS = ('sum', 'max', 'mean')
# The per-detection scores (detection/importance.py); `scorer` picks the importance among them.
SCORERS = ('gradient_norm', 'prob_residual', 'entropy', 'margin', 'least_confidence')
# architecture -> (min_size, max_size) used when neither the caller nor the checkpoint sets them.
ARCHITECTURE_SIZES: dict[str, tuple[int, int]] = {
    'isr_small': (192, 640),
    'fasterrcnn_mobilenet_v3_large_320_fpn': (320, 640),
    'fasterrcnn_mobilenet_v3_large_fpn': (800, 1333),
    'fasterrcnn_resnet50_fpn': (800, 1333),
    'fasterrcnn_resnet50_fpn_v2': (800, 1333),
}
ARCHITECTURES = tuple(ARCHITECTURE_SIZES)
DEVICE_PATTERN = r'cpu|cuda(:[0-9]+)?'


def _class_list(names: tuple[str, ...]) -> str | None:
    if len(names) < 2 or names[0] != '__background__':
        return "must start with '__background__' and name at least one class"
    return None


@dataclass(frozen=True)
class DetectorConfig(Settings):
    """The model and its inference (everything that sets up a Detector).

    Empty architecture / checkpoint and min_size / max_size 0 take the checkpoint's (a bare
    state_dict then gets isr_small and the architecture's input size); an architecture or class
    list that disagrees with the checkpoint is an error.
    """

    architecture: str = param('', "Faster R-CNN architecture; empty = the checkpoint's "
                              f'(a bare state_dict: {DEFAULT_ARCHITECTURE})',
                              choices=('', *ARCHITECTURES))
    checkpoint: str = param('', 'Model weights file (.pt); empty = the shipped '
                            f'{DEFAULT_CHECKPOINT_NAME}')
    class_names: tuple[str, ...] = param(
        CLASS_NAMES, "The model's classes, index = class id, starting with '__background__' "
        "(the synthetic world's by default)", check=_class_list)
    score_threshold: float = param(
        0.6, 'Minimum class probability of a published detection (0.6: the lowest with at most '
        '25 % false positives for the shipped model, models/MODEL_CARD.md)',
        min_value=0.0, max_value=1.0)
    nms_threshold: float = param(0.5, 'IoU above which per-class NMS suppresses a box',
                                 min_value=0.0, max_value=1.0)
    detections_per_image: int = param(100, 'Most detections kept per image',
                                      min_value=1, max_value=1000)
    device: str = param('cpu', 'Where inference runs: cpu, cuda or cuda:N (fails at start if '
                        'that GPU is not present)', pattern=DEVICE_PATTERN)
    half: bool = param(False, 'Half precision inference (cuda only)')
    min_size: int = param(0, "Shorter image side after resizing; 0 = the checkpoint's",
                          min_value=0, max_value=4096)
    max_size: int = param(0, "Cap on the longer side after resizing; 0 = the checkpoint's",
                          min_value=0, max_value=8192)
    aggregation: str = param(
        'sum', 'Frame importance from the detection importances of boxes >= '
        'frame_min_box_height (sum: on two never-used pools it retrains as well as the mean, and '
        'the frames the recorder keeps hold more errors, 2.1-2.2x against 1.9-2.0x on held-out '
        'drives; docs/measurements/closed_loop_cpu.md, session 13)', choices=AGGREGATIONS)
    frame_min_box_height: float = param(
        20.0, 'Detections (and candidates) with a box shorter than this many pixels do not count '
        'toward the frame importance (they are still published): objects under the labelling '
        'height are not labelled, so their detections say nothing about what a kept frame '
        'teaches (docs/measurements/frame_scores.md); 0 = every detection counts',
        min_value=0.0, max_value=10_000.0)
    scorer: str = param('gradient_norm', 'Which per-detection score is the importance (all are '
                        'published in uncertainty)', choices=SCORERS)
    candidate_floor: float = param(
        0.1, 'Publish boxes scoring in [floor, score_threshold) as candidates, for the '
        "tracker's second round (with them its relabels fixed 23 and broke 2 far labels on ten "
        'held-out drives, without them 16 and 31; docs/measurements/tracking_relabel.md, session '
        '14); 0 (or a floor at or above score_threshold) = none', min_value=0.0, max_value=1.0)
    candidates_in_frame: bool = param(False, 'Include the candidates in the frame importance '
                                      '(needs candidate_floor > 0)')

    def _check_together(self) -> None:
        if self.half and self.device == 'cpu':
            raise ParameterError("parameter half = True: needs device 'cuda' or 'cuda:N'")
        if self.candidates_in_frame and self.published_candidate_floor is None:
            raise ParameterError('parameter candidates_in_frame = True: needs 0 < candidate_floor '
                                 f'< score_threshold ({self.score_threshold!r})')

    @property
    def published_candidate_floor(self) -> float | None:
        """The score from which candidates are published, or None when none are (a floor of 0,
        or one at or above score_threshold)."""
        return self.candidate_floor if 0.0 < self.candidate_floor < self.score_threshold else None
