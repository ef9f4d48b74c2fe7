"""Which pool frames each strategy sends to the labellers, at one budget.

- the product's sampler exactly as the car runs it: the offline pipeline (tracker, near-to-far
  relabels, recorder with its ring buffer, q = min(1, rho g / g_mean), relabel keeps) over each
  pool drive in order, fed by the detector's cached output; its kept frames carry weight 1/q.
  The budget is its keep_ratio; every other strategy then selects as many frames as it kept
  (per sampling seed), so that all compare at an equal number of labelled frames;
- random: uniformly, without replacement;
- uniform in time: every (pool / count)-th frame of the drives in order, from a random offset
  (what a fleet gets by recording at a fixed low frame rate);
- k-center cover (offline reference): greedy farthest-point selection in the space of the frame
  descriptors, whitened by the training frames' covariance (sampling/cover.py), of the whole
  pool: what a choice over all of a drive's frames gets;
- two-stage: the recorder keeps frames at TWO_STAGE_FACTOR (6) x the budget (coverage, threshold
  draws), then `importance-sampler select`'s cover picks the labelled frames among them;
- top-N by a frame score (each scorer with the detector's aggregation), over the whole pool;
- oracle: top-N by the true error count (needs the ground truth it is judged on).

Self-labels (the paper's idea, no ground truth): a frame's labels are the detector's own
published detections, with the class of every observation a near-to-far relabel named replaced
by the relabel's class.
"""
from __future__ import annotations

import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from importance_sampler_ros.bags import bag_io
from importance_sampler_ros.bags.frames import InputFrame
from importance_sampler_ros.bags.images import rgb_to_image_msg
from importance_sampler_ros.closed_loop.head_cache import CachedFrame
from importance_sampler_ros.detection.config import DetectorConfig
from importance_sampler_ros.detection.detections import (
    FrameScoring,
    rescored,
    with_candidate_floor,
)
from importance_sampler_ros.evaluation.errors import LABELLED_MIN_HEIGHT_PX, frame_errors
from importance_sampler_ros.registry import NODES, NodeConfig
from importance_sampler_ros.sampling.cover import greedy_cover


@dataclass
class Selection:
    """Indices into the pool, each with its loss weight, and which labels it trains on."""

    strategy: str
    seed: int
    indices: np.ndarray
    weights: np.ndarray
    labels: str = 'truth'  # 'truth' or 'self'
    info: dict[str, Any] = field(default_factory=dict)


UNIFORM = 'uniform in time'
COVER = 'k-center cover (offline)'
CEILING = 'every pool frame (ceiling)'


def select_random(n_pool: int, count: int, seed: int) -> Selection:
    """`count` frames uniformly, without replacement."""
    rng = np.random.default_rng([seed, 11])
    n = max(1, min(n_pool, count))
    return Selection('random', seed, np.sort(rng.choice(n_pool, n, replace=False)), np.ones(n))


def select_uniform(n_pool: int, count: int, seed: int) -> Selection:
    """Every (n_pool / count)-th frame of the pool in drive order, from a random offset."""
    n = max(1, min(n_pool, count))
    step = n_pool / n
    offset = np.random.default_rng([seed, 3]).random() * step
    indices = np.unique(np.minimum(n_pool - 1, np.floor(offset + step * np.arange(n)))
                        .astype(np.int64))
    return Selection(UNIFORM, seed, indices, np.ones(len(indices)))


def select_cover(descriptors: np.ndarray, reference: np.ndarray, count: int, seed: int,
                 among: np.ndarray | None = None, name: str = COVER) -> Selection:
    """The greedy k-center cover (sampling/cover.py) of the pool, or of the pool frames `among`,
    in descriptors whitened by `reference` (the training frames' descriptors)."""
    among = np.arange(len(descriptors)) if among is None else np.asarray(among, np.int64)
    chosen = among[greedy_cover(descriptors[among], count, seed, reference)]
    return Selection(name, seed, chosen, np.ones(len(chosen)))


def select_all(n_pool: int, seed: int) -> Selection:
    """Every pool frame: what labelling the whole pool gives under the same retraining, the
    most any selection of fewer frames can be expected to reach (the judge's headroom)."""
    return Selection(CEILING, seed, np.arange(n_pool), np.ones(n_pool))


def select_top(name: str, scores: np.ndarray, count: int, seed: int) -> Selection:
    """The `count` highest-scoring frames (ties: earlier first)."""
    n = max(1, min(len(scores), count))
    order = np.argsort(-np.asarray(scores, np.float64), kind='stable')[:n]
    return Selection(name, seed, np.sort(order), np.ones(n))


def frame_scores(pool: Sequence[CachedFrame], scorer: str, scoring: FrameScoring) -> np.ndarray:
    return np.array([rescored(f.detections, scorer, scoring).frame_importance for f in pool])


def true_errors(pool: Sequence[CachedFrame], score_threshold: float,
                min_labelled_height: float = LABELLED_MIN_HEIGHT_PX) -> np.ndarray:
    """Detector errors per pool frame, on labelled objects (evaluation.errors)."""
    return np.array([frame_errors(f.detections, f.truth, score_threshold,
                                  min_labelled_height=min_labelled_height).total for f in pool],
                    np.float64)


@dataclass
class SamplerRun:
    """What the product's pipeline decided over the pool: per frame (pool order) whether it was
    kept, q, the weight 1/q (1 for relabel keeps), the reason; and every relabel event."""

    kept: np.ndarray
    probability: np.ndarray
    weight: np.ndarray
    reasons: list[str]
    relabels: list[Any]


def run_product_sampler(pool: Sequence[CachedFrame], params: Mapping[str, NodeConfig]
                        ) -> SamplerRun:
    """The offline pipeline (the nodes' core objects and policies) over each pool drive.

    params: validated node parameters (offline.pipeline.load_parameters); the recorder's
    keep_ratio is the budget and its seed the sampling seed. The detections are the detector's
    cached output, rescored with the detector parameters' scorer and frame scoring, with the
    candidates its candidate_floor publishes (the cache holds them from lower down). The images
    written to the scratch bag are blank frames of the true size (decisions never look at pixels;
    the ring buffer's byte bound sees the true sizes).
    """
    from importance_sampler_ros.offline.pipeline import Pipeline

    det_params = params['detector_node']
    scorer = det_params['scorer']
    scoring = FrameScoring.of(det_params.values)
    candidate_floor = det_params.of(DetectorConfig).published_candidate_floor
    types = bag_io.msg_types()
    by_stamp: dict[tuple[int, int], int] = {}
    drives: dict[int, list[int]] = {}
    for i, frame in enumerate(pool):
        drives.setdefault(frame.drive_seed, []).append(i)
        by_stamp[(frame.drive_seed, frame.stamp_ns)] = i
    n = len(pool)
    run = SamplerRun(np.zeros(n, bool), np.zeros(n), np.zeros(n), [''] * n, [])
    scratch = Path(tempfile.mkdtemp(prefix='closed_loop_sampler_'))
    recorder = params['recorder_node'].values
    if recorder['frame_score'] == 'coverage' and not recorder['coverage_bank']:
        # one car: the recorder restarts every drive, its coverage bank carries on
        params = {**params, 'recorder_node': NODES['recorder_node'].build(
            {**recorder, 'coverage_bank': str(scratch / 'coverage_bank.npy')})}
    try:
        for seed, members in drives.items():
            pipeline = Pipeline(params, scratch / f'drive_{seed}', need_detector=False)
            pipeline.relabel_log = []
            blank = None
            for i in members:
                frame = pool[i]
                if blank is None:
                    h, w = frame.original_size
                    blank = np.zeros((h, w, 3), np.uint8)
                image = rgb_to_image_msg(blank, frame.stamp_ns, 'camera', types)
                detections = rescored(with_candidate_floor(frame.detections, candidate_floor),
                                      scorer, scoring)
                pipeline.process(InputFrame(frame.stamp_ns, 'camera', bag_io.serialize(image),
                                            image, detections, None))
            pipeline.close()
            for record in pipeline.finished:
                i = by_stamp[(seed, record.stamp_ns)]
                run.kept[i] = record.kept
                run.probability[i] = record.probability
                run.weight[i] = record.weight
                run.reasons[i] = record.reason
            run.relabels += [(seed, event) for event in pipeline.relabel_log]
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return run


def sampler_selection(run: SamplerRun, seed: int, weight_power: float, labels: str = 'truth',
                      name: str | None = None) -> Selection:
    """The sampler's kept frames, each with loss weight (1/q)^weight_power: 1 the unbiased 1/q
    weights, 0 none (every kept frame weighs the same), in between a tempered compromise."""
    indices = np.flatnonzero(run.kept)
    weights = run.weight[indices] ** weight_power
    reasons = [run.reasons[i] for i in indices]
    info = {'kept': len(indices), 'relabel_keeps': reasons.count('relabel'),
            'mean_q_kept': float(run.probability[indices].mean()) if len(indices) else 0.0}
    default = {1.0: 'sampler, 1/q weights', 0.0: 'sampler, unweighted'}.get(
        weight_power, f'sampler, (1/q)^{weight_power:g} weights')
    return Selection(name or default, seed, indices, weights, labels, info)


def self_labels(pool: Sequence[CachedFrame], relabels: Sequence[tuple[int, Any]],
                score_threshold: float) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per pool frame: (boxes, classes) of its published detections, relabel-corrected."""
    index = {(f.drive_seed, f.stamp_ns): i for i, f in enumerate(pool)}
    labels = []
    for frame in pool:
        keep = frame.detections.scores >= score_threshold
        labels.append((frame.detections.boxes[keep].copy(),
                       frame.detections.class_ids[keep].copy()))
    for seed, event in relabels:
        for obs in event.observations:
            i = index.get((seed, obs.stamp_ns))
            if i is None:
                continue
            keep = np.flatnonzero(pool[i].detections.scores >= score_threshold)
            position = np.flatnonzero(keep == obs.detection_index)
            if len(position):
                labels[i][1][position[0]] = event.new_class_id
    return labels


def label_accuracy(pool: Sequence[CachedFrame], labels: Sequence[tuple[np.ndarray, np.ndarray]],
                   indices: np.ndarray) -> dict[str, float]:
    """How good a label set is against the truth, over the frames `indices`: the share of label
    boxes that are a true object of the right class (precision), of true objects that got a
    correct label (recall), and of matched boxes with the right class (class accuracy)."""
    from importance_sampler_ros.detection.detections import FrameDetections

    correct = boxes = matched = truths = 0
    for i in indices:
        box, cls = labels[i]
        det = FrameDetections(stamp_ns=0, boxes=box, class_ids=cls,
                              class_names=[''] * len(box), scores=np.ones(len(box)))
        errors = frame_errors(det, pool[i].truth)
        boxes += errors.n_detections
        truths += errors.n_truth
        matched += errors.n_detections - errors.false_positives
        correct += errors.n_detections - errors.false_positives - errors.wrong_class
    return {'precision': correct / max(1, boxes), 'recall': correct / max(1, truths),
            'class_accuracy': correct / max(1, matched), 'boxes': boxes, 'truth_objects': truths}
