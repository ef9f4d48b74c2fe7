"""Training and evaluation of the default detector: the mAP arithmetic on handcrafted cases, the
schedule, and a few real training steps on tiny synthetic frames (CPU)."""
from __future__ import annotations

import itertools
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from importance_sampler_ros.detection.detections import FrameDetections
from importance_sampler_ros.evaluation.detection_map import (
    average_precision,
    box_iou,
    class_confusion,
    mean_average_precision,
)
from importance_sampler_ros.synth.world import CLASS_NAMES, Drive, SynthConfig
from importance_sampler_ros.training.train import TrainSettings, learning_rate_factor, train

BINS = {'far': (0.0, 20.0), 'near': (40.0, math.inf)}


def _frame(boxes: list[list[float]], classes: list[int], scores: list[float] | None = None,
           distances: list[float] | None = None) -> FrameDetections:
    n = len(boxes)
    return FrameDetections(
        stamp_ns=0, boxes=np.array(boxes, np.float32).reshape(n, 4),
        class_ids=np.array(classes, np.int32), class_names=[CLASS_NAMES[c] for c in classes],
        scores=np.array(scores if scores is not None else [1.0] * n, np.float32),
        distances=np.array(distances if distances is not None else [math.nan] * n, np.float32))


# one near car, one far pedestrian, one near van
TRUTH = [
    _frame([[100, 50, 160, 110], [300, 80, 305, 92]], [1, 4], distances=[8.0, 90.0]),
    _frame([[400, 40, 470, 120]], [2], distances=[7.0]),
]


def test_average_precision_of_perfect_missing_and_ranked_detections() -> None:
    assert average_precision(np.array([0.9, 0.8]), np.array([True, True]), 2) == 1.0
    assert average_precision(np.array([]), np.array([], bool), 3) == 0.0
    assert math.isnan(average_precision(np.array([0.5]), np.array([False]), 0))
    # a false positive ranked above the only true positive: precision 1/2 at recall 1
    assert average_precision(np.array([0.9, 0.8]), np.array([False, True]), 1) == 0.5
    # half the truth found with precision 1
    assert average_precision(np.array([0.9]), np.array([True]), 2) == 0.5


def test_box_iou() -> None:
    iou = box_iou(np.array([[0, 0, 10, 10]]), np.array([[0, 0, 10, 10], [5, 0, 15, 10],
                                                         [20, 20, 30, 30]]))
    assert np.allclose(iou, [[1.0, 1 / 3, 0.0]])


def test_map_is_one_for_perfect_detections_and_zero_for_none() -> None:
    perfect = [_frame(t.boxes.tolist(), t.class_ids.tolist(), [0.9] * len(t)) for t in TRUTH]
    result = mean_average_precision(TRUTH, perfect, BINS)
    assert result['near']['mAP'] == 1.0 and result['far']['mAP'] == 1.0
    assert result['near']['n_truth'] == 2 and result['far']['n_truth'] == 1
    none = [_frame([], []) for _ in TRUTH]
    result = mean_average_precision(TRUTH, none, BINS)
    assert result['near']['mAP'] == 0.0 and result['far']['mAP'] == 0.0


def test_map_bins_ignore_other_sizes_and_count_wrong_classes_and_misplaced_boxes() -> None:
    detections = [
        # the car found, the far pedestrian called a cyclist (wrong class, far bin)
        _frame([[101, 51, 160, 110], [300, 80, 305, 92]], [1, 5], [0.9, 0.8]),
        # the van found, plus a near false positive with a higher score
        _frame([[400, 40, 470, 120], [10, 10, 60, 90]], [2, 2], [0.7, 0.95]),
    ]
    result = mean_average_precision(TRUTH, detections, BINS)
    assert result['near']['car'] == 1.0
    assert result['near']['van'] == 0.5  # FP ranked first, then the TP
    assert result['near']['mAP'] == 0.75
    assert result['far']['pedestrian'] == 0.0  # present in the bin, never detected as such
    assert math.isnan(result['far']['car'])  # no far car: not averaged
    assert result['far']['mAP'] == 0.0
    by_distance = mean_average_precision(TRUTH, detections, {'<20 m': (0, 20)}, by='distance')
    assert by_distance['<20 m']['n_truth'] == 2


def test_class_confusion_counts_wrong_classes_and_misses_per_bin() -> None:
    detections = [
        _frame([[100, 50, 160, 110]], [2], [0.9]),  # the car called a van; pedestrian missed
        _frame([[400, 40, 470, 120]], [2], [0.2]),  # the van below the score threshold
    ]
    result = class_confusion(TRUTH, detections, score_threshold=0.3, bins=BINS)
    assert result['near']['wrong_class_rate'] == 1.0
    assert result['near']['miss_rate'] == 0.5
    assert result['far']['miss_rate'] == 1.0 and math.isnan(result['far']['wrong_class_rate'])
    assert result['near']['matrix'][0][2] == 1  # true car (row 0) -> van (column 2)


def test_learning_rate_warms_up_then_decays() -> None:
    factors = [learning_rate_factor(step / 100, step, 10) for step in range(100)]
    assert factors[0] < factors[5] < factors[9]
    assert all(a >= b for a, b in itertools.pairwise(factors[10:]))
    assert learning_rate_factor(1.0, 1000, 10) == pytest.approx(0.02)


def test_settings_need_a_budget() -> None:
    with pytest.raises(ValueError, match='iterations or --minutes'):
        TrainSettings(out=Path('x.pt'))


def _tiny_batch() -> tuple[list[torch.Tensor], list[dict[str, torch.Tensor]]]:
    drive = Drive(SynthConfig(width=160, height=96, seconds=1.0, seed=11))
    images, targets = [], []
    for index in (0, 5):
        frame = drive.render(index)
        images.append(torch.from_numpy(frame.image).permute(2, 0, 1).float() / 255)
        targets.append({'boxes': torch.from_numpy(frame.truth.boxes),
                        'labels': torch.from_numpy(frame.truth.class_ids.astype(np.int64))})
    assert sum(len(t['boxes']) for t in targets) > 0
    return images, targets


@pytest.mark.slow
def test_loss_is_finite_and_falls_on_a_repeated_batch() -> None:
    from importance_sampler_ros.detection.detector import build_model

    torch.manual_seed(0)
    model = build_model('isr_small', len(CLASS_NAMES), 96, 160)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    images, targets = _tiny_batch()
    losses = []
    for _ in range(6):
        loss = sum(model(images, targets).values())
        assert torch.isfinite(loss)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    assert np.mean(losses[-2:]) < 0.8 * np.mean(losses[:2]), losses


@pytest.mark.slow
def test_train_writes_a_checkpoint_that_loads(tmp_path: Path) -> None:
    from importance_sampler_ros.detection.detector import load_checkpoint

    out = tmp_path / 'tiny.pt'
    lines: list[str] = []
    summary = train(TrainSettings(out=out, iterations=2, batch_size=1, width=160, height=96,
                                  log_every=1, save_every=0), log=lines.append)
    assert summary['iterations'] == 2 and math.isfinite(summary['final_loss'])
    assert any(line.startswith('it 2 ') for line in lines)
    loaded = load_checkpoint(out)
    assert loaded.architecture == 'isr_small'
    assert list(loaded.class_names) == list(CLASS_NAMES)
    assert loaded.meta['training']['iterations'] == 2


def test_train_warm_starts_from_a_checkpoint_and_records_mix_and_source(tmp_path: Path) -> None:
    from importance_sampler_ros.detection.detector import load_checkpoint, read_checkpoint

    first = tmp_path / 'first.pt'
    train(TrainSettings(out=first, iterations=1, batch_size=1, width=160, height=96,
                        log_every=1, save_every=0, mix='default', warmup=1),
          log=lambda line: None)
    second = tmp_path / 'second.pt'
    lines: list[str] = []
    train(TrainSettings(out=second, iterations=1, batch_size=1, width=160, height=96,
                        log_every=1, save_every=0, lr=1e-12, warmup=1, init_from=first),
          log=lines.append)
    assert any('warm start' in line for line in lines)
    a, _ = read_checkpoint(first)
    b, _ = read_checkpoint(second)
    # a learning rate of 1e-12 leaves the warm-started weights where they were (the first run
    # moved them by ~1e-3 from the seed's initial weights, which a cold start would give)
    weights = [k for k in a if 'running_' not in k and 'num_batches' not in k]  # not BN stats
    assert all(torch.allclose(a[k].float(), b[k].float(), atol=1e-7) for k in weights)
    meta = load_checkpoint(second).meta['training']
    assert meta['mix'] == 'common' and meta['init_from'] == str(first)
    assert load_checkpoint(first).meta['training']['mix'] == 'default'


def test_settings_reject_an_unknown_mix() -> None:
    with pytest.raises(ValueError, match='--mix'):
        TrainSettings(out=Path('x.pt'), iterations=1, mix='rare')
