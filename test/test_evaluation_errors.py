"""Per-frame errors, tag-wise mAP and the selection metrics on handmade cases."""
from __future__ import annotations

import math

import numpy as np

from importance_sampler_ros.detection.detections import FrameDetections
from importance_sampler_ros.evaluation.detection_map import evaluate_detections, map_by_tag
from importance_sampler_ros.evaluation.errors import (
    auroc,
    enrichment,
    errors_by_tag,
    frame_errors,
    greedy_match,
    sampler_enrichment,
    spearman,
    top_fraction_mask,
)
from importance_sampler_ros.synth.world import CLASS_NAMES


def _frame(boxes, classes, scores=None, situations=()) -> FrameDetections:
    n = len(boxes)
    return FrameDetections(
        stamp_ns=0, boxes=np.array(boxes, np.float32).reshape(n, 4),
        class_ids=np.array(classes, np.int32), class_names=[CLASS_NAMES[c] for c in classes],
        scores=np.array(scores if scores is not None else [1.0] * n, np.float32),
        situations=situations)


TRUTH = _frame([[0, 0, 10, 10], [20, 0, 30, 10], [40, 0, 45, 5]], [1, 4, 5])


def test_frame_errors_counts_fp_missed_and_wrong_class():
    det = _frame([[0, 0, 10, 10],       # car on car: correct
                  [20, 0, 30, 10],      # van on pedestrian: wrong class
                  [21, 0, 31, 10],      # duplicate of the pedestrian: FP, localisation
                  [100, 100, 110, 110],  # background FP
                  [0, 0, 10, 10]],      # below threshold: ignored
                 [1, 2, 4, 3, 1], scores=[0.9, 0.8, 0.7, 0.6, 0.1])
    e = frame_errors(det, TRUTH, score_threshold=0.3)
    assert (e.false_positives, e.missed, e.wrong_class) == (2, 1, 1)
    assert e.fp_localisation == 1 and e.fp_background == 1
    assert e.missed_small == 1  # the 5 px cyclist
    assert e.total == 4 and e.visible == 3
    assert e.detection_is_error.tolist() == [False, True, True, True, False]
    assert e.detection_truth.tolist() == [0, 1, -1, -1, -1]


def test_labelled_objects_rule_makes_small_truths_dont_care():
    # truths: a 10 px car, a 40 px van, a 5 px cyclist (under the 20 px labelling height)
    truth = _frame([[0, 0, 10, 10], [20, 0, 60, 40], [100, 0, 105, 5]], [1, 2, 5])
    det = _frame([[0, 0, 10, 10],        # on the 10 px car: ignored, not a TP
                  [20, 0, 60, 40],       # on the van: correct
                  [100, 0, 105, 5],      # on the 5 px cyclist with the wrong class: ignored
                  [200, 0, 210, 10],     # 10 px background box: too small to be an FP
                  [300, 0, 340, 40],     # 40 px background box: FP
                  [1, 0, 11, 10]],       # duplicate of the small car (IoU 0.82): ignored
                 [1, 2, 1, 3, 3, 1])
    rule = frame_errors(det, truth, min_labelled_height=20.0)
    assert (rule.false_positives, rule.missed, rule.wrong_class) == (1, 0, 0)
    assert rule.n_truth == 1 and rule.n_detections == 2
    assert rule.detection_is_error.tolist() == [False, False, False, False, True, False]
    every = frame_errors(det, truth)
    assert (every.false_positives, every.missed, every.wrong_class) == (3, 0, 1)
    # a missed labelled truth still counts; a missed small one does not
    lone = frame_errors(_frame([], []), truth, min_labelled_height=20.0)
    assert (lone.missed, lone.total) == (1, 1)
    assert frame_errors(_frame([], []), truth).missed == 3


def test_greedy_match_takes_the_highest_iou_first():
    iou = np.array([[0.6, 0.9], [0.0, 0.95]])
    # row 1 takes column 1 (0.95) first, so row 0 gets column 0
    assert greedy_match(iou).tolist() == [0, 1]
    assert greedy_match(np.array([[0.4]])).tolist() == [-1]


def test_enrichment_oracle_random_and_sampler():
    errors = np.array([0, 0, 0, 0, 0, 0, 0, 0, 0, 10.0])
    assert enrichment(errors, errors, fraction=0.1) == 10.0
    assert enrichment(-errors, errors, fraction=0.1) == 0.0
    # ranked per drive: two drives, the top frame of each
    groups = np.array([0] * 5 + [1] * 5)
    assert top_fraction_mask(np.arange(10.0), 0.2, groups).tolist() == [
        False, False, False, False, True, False, False, False, False, True]
    q = np.full(10, 0.1)
    assert math.isclose(sampler_enrichment(q, errors), 1.0)
    q[-1] = 1.0
    assert sampler_enrichment(q, errors) > 5


def test_rank_statistics():
    assert math.isclose(spearman(np.arange(5), np.arange(5) ** 2), 1.0)
    assert math.isnan(spearman(np.ones(4), np.arange(4)))
    assert auroc(np.array([0.1, 0.2, 0.8, 0.9]), np.array([0, 0, 1, 1], bool)) == 1.0
    assert auroc(np.array([0.9, 0.1]), np.array([0, 1], bool)) == 0.0


def test_map_and_errors_are_reported_per_situation_tag():
    night = _frame([[0, 0, 10, 10]], [1], situations=('night', 'rain'))
    day = _frame([[0, 0, 10, 10]], [1], situations=('day',))
    truths = [night, day]
    dets = [_frame([[50, 50, 60, 60]], [1], [0.5]),  # night: the car is missed
            _frame([[0, 0, 10, 10]], [1], [0.9])]     # day: found
    by_tag = map_by_tag(truths, dets)
    assert by_tag['day']['mAP'] == 1.0 and by_tag['night']['mAP'] == 0.0
    assert by_tag['rain']['n_frames'] == 1
    errs = [frame_errors(d, t) for d, t in zip(dets, truths, strict=True)]
    table = errors_by_tag(errs, truths)
    assert table['night']['errors_per_frame'] == 2.0 and table['day']['errors_per_frame'] == 0.0
    assert table['day']['frame_share'] == 0.5
    full = evaluate_detections(truths, dets)
    assert full['overall']['mAP'] == 0.5
    assert set(full['by_tag']) == {'day', 'night', 'rain'}
