"""`evaluate` by situation tag: every tag of the held-out frames gets its mAP@0.5 (overall and
per height bin) and its errors per frame; the report prints them."""
from __future__ import annotations

import math

import numpy as np
import pytest

from importance_sampler_ros.detection.detections import FrameDetections
from importance_sampler_ros.evaluation.detection_map import evaluate_detections
from importance_sampler_ros.synth.situations import ALL_TAGS, RARE_TAGS, parse_situations
from importance_sampler_ros.synth.world import Drive, SynthConfig
from importance_sampler_ros.training.train import error_summary, evaluate, format_report


def _tagged_truths() -> list[FrameDetections]:
    """One frame per rare tag (forced), plus a common one: every tag of ALL_TAGS appears."""
    truths = []
    for words in [['common', 'day'], ['common', 'dusk']] + [[t] for t in RARE_TAGS]:
        drive = Drive(SynthConfig(seconds=1.0, seed=40, width=320, height=96,
                                  situations=parse_situations(words)))
        truths.append(drive.render(5).truth)
    return truths


def _detections_from(truth: FrameDetections, drop_every: int, shift: float) -> FrameDetections:
    """The truth with every drop_every-th object missing and every box shifted (a detector)."""
    keep = np.arange(len(truth)) % drop_every != 0
    n = int(keep.sum())
    return FrameDetections(stamp_ns=truth.stamp_ns, boxes=truth.boxes[keep] + shift,
                           class_ids=truth.class_ids[keep],
                           class_names=[c for c, k in zip(truth.class_names, keep, strict=True)
                                        if k],
                           scores=np.linspace(0.95, 0.35, n).astype(np.float32))


def test_errors_and_map_are_reported_for_every_tag() -> None:
    truths = _tagged_truths()
    assert {t for truth in truths for t in truth.situations} == set(ALL_TAGS)
    dets = [_detections_from(t, 3, 0.0) if i % 2 else _detections_from(t, 2, 40.0)
            for i, t in enumerate(truths)]
    views = evaluate_detections(truths, dets)
    summary = error_summary(truths, dets, [0] * len(truths), 0.3)
    assert set(views['by_tag']) == set(summary['by_tag']) == set(ALL_TAGS)
    for tag in ALL_TAGS:
        assert 0.0 <= views['by_tag'][tag]['mAP'] <= 1.0
        assert summary['by_tag'][tag]['errors_per_frame'] > 0  # a third or half are missed
    # the frames whose boxes were shifted by 40 px publish only false positives
    published = [len(d) for d in dets]
    shifted_fp = sum(published[0::2]) / sum(published)
    assert summary['false_positive_share'] == pytest.approx(shifted_fp, abs=0.05)
    assert summary['oracle_enrichment'] > 1.0
    # on labelled objects only, the truths under the labelling height are not missed
    labelled = error_summary(truths, dets, [0] * len(truths), 0.3, min_labelled_height=1e6)
    assert labelled['missed_per_frame'] == 0.0
    assert labelled['errors_per_frame'] < summary['errors_per_frame']


@pytest.mark.slow
def test_evaluate_runs_the_detector_and_reports_every_tag_of_its_drives() -> None:
    from importance_sampler_ros.detection.detector import default_checkpoint_path

    lines: list[str] = []
    result = evaluate(default_checkpoint_path(), seeds=[201, 202], seconds=1.0, stride=5,
                      log=lines.append, situations=['night', 'fog', 'no-unlit_vehicles'])
    assert result['frames'] == 4
    tags = {'night', 'fog'}
    assert tags <= set(result['map_by_tag']) and tags <= set(result['errors']['by_tag'])
    assert set(result['map_by_tag']) == set(result['errors']['by_tag'])
    assert 'unlit_vehicles' not in result['map_by_tag']
    assert set(result['threshold_sweep']) == {'0.3', '0.4', '0.5', '0.6', '0.7', '0.8', '0.9'}
    report = format_report(result)
    for tag in result['map_by_tag']:
        assert any(line.startswith(tag) for line in report.splitlines()), tag
    assert 'errors per frame, every object' in report
    assert 'errors per frame, labelled objects' in report
    assert result['errors_labelled']['min_labelled_height'] > 0
    assert not math.isnan(result['errors']['errors_per_frame'])
