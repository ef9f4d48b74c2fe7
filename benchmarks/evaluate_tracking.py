"""Tracking and relabel quality on drives with ground truth, against the reference SORT.

Ground-truth boxes are turned into detections with a noise model (box jitter proportional to
the box size, dropouts, false positives, class confusions that grow with distance, scores that
fall with distance), then tracked by
- ours: `relabel.RelabelingTracker` (defaults: max_age 3, min_hits 3, IoU gate 0.3), scored on
  the detections it publishes with a track id (the tracked_detections topic);
- the reference SORT (abewley/sort as packaged on PyPI, `sort-track` 0.0.8) with max_age=3,
  min_hits=3, scored on its output rows.
Printed: MOTA, IDF1, ID switches (and how many of them went to a brand-new track id, i.e. the
object's track broke up, rather than to a track that was following another object), false
positives and misses (motmetrics, IoU >= 0.5), and the
relabel quality: class accuracy of detections that belong to a ground-truth object, before and
after applying the relabels, per distance bin and over the far field, with the paper's ratio
errors corrected / all errors (and the errors relabels introduced).

Sources of ground truth:
- `--source simple` (default, fast): objects on a road seen by a 640x192 camera, approaching or
  receding, no occlusion (this file).
- `--source synth`: the synthetic drives of importance_sampler_ros.synth.world (occlusion, props;
  rendering is slow, so the truth is cached under --cache-dir).
- `--source bag --bags B...`: ground truth recorded on /ground_truth/detections (the bags that
  `importance-sampler synth` writes).
- `--detector CHECKPOINT`: instead of noisy ground truth, the detector's own output on the
  synthetic drives (frames rendered again, detections cached); detections are matched to the
  truth by IoU >= 0.5 for the class accuracies.

The reference SORT is fetched with `pip download --no-deps sort-track==0.0.8` into --cache-dir
(its pinned dependencies conflict with ours; its module is imported with our filterpy and scipy)
and is not part of the repository. Run from the repository root:

    nice .venv/bin/python benchmarks/evaluate_tracking.py [--source synth] [--frames 600]
"""
from __future__ import annotations

import argparse
import importlib.util
import itertools
import subprocess
import sys
import tarfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from importance_sampler_ros.detection.detections import FrameDetections
from importance_sampler_ros.params import parse_assignments
from importance_sampler_ros.registry import NODES, NodeConfig
from importance_sampler_ros.synth.classes import CLASS_NAMES
from importance_sampler_ros.tracking.relabel import RelabelConfig, RelabelingTracker
from importance_sampler_ros.tracking.sort import TrackerConfig, iou_matrix

REPO = Path(__file__).resolve().parent.parent
DEFAULT_CACHE = REPO / 'build' / 'tracking_eval_cache'
REFERENCE_SDIST = 'sort-track==0.0.8'
# class -> (height m, width m) and the class a far detector confuses it with
OBJECT_SIZES = {1: (1.5, 1.8), 2: (2.1, 2.0), 3: (3.4, 2.5), 4: (1.75, 0.6), 5: (1.7, 0.7)}
LOOK_ALIKES = {1: (2,), 2: (1, 3), 3: (2,), 4: (5,), 5: (4,)}
DISTANCE_BINS_M = (0.0, 10.0, 20.0, 40.0, 80.0, np.inf)
MS = 1_000_000


# ---------------------------------------------------------------- the reference SORT

def load_reference_sort(cache_dir: Path = DEFAULT_CACHE) -> type:
    """The reference SortTracker class (downloaded once into cache_dir, never vendored)."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    module_path = cache_dir / 'sort_reference' / 'tracker.py'
    if not module_path.exists():
        sdists = sorted(cache_dir.glob('sort-track-0.0.8.tar.gz')) or _download(cache_dir)
        with tarfile.open(sdists[0]) as tar:
            member = tar.getmember('sort-track-0.0.8/sort/tracker.py')
            module_path.parent.mkdir(exist_ok=True)
            module_path.write_bytes(tar.extractfile(member).read())
    spec = importlib.util.spec_from_file_location('sort_reference_tracker', module_path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.SortTracker


def _download(cache_dir: Path) -> list[Path]:
    subprocess.run([sys.executable, '-m', 'pip', 'download', '--no-deps', '--no-binary', ':all:',
                    '-q', '-d', str(cache_dir), REFERENCE_SDIST], check=True)
    return sorted(cache_dir.glob('sort-track-0.0.8.tar.gz'))


# ---------------------------------------------------------------- ground truth

@dataclass
class _Object:
    object_id: int
    class_id: int
    x_m: float
    z_m: float
    vx: float
    vz: float


def simple_drive(seed: int, n_frames: int, objects: int = 12, fps: float = 10.0,
                 width: int = 640, height: int = 192) -> list[FrameDetections]:
    """Ground truth of a plain road scene: `objects` objects in view on average, each moving
    at its own speed towards or away from the camera; boxes of the KITTI-like camera that
    importance_sampler_ros.synth.world uses (focal 0.58 width, horizon at 0.45 height)."""
    rng = np.random.default_rng([seed, 7])
    focal, cx, cy, cam_h = 0.58 * width, width / 2, 0.45 * height, 1.65
    alive: list[_Object] = []
    next_id = 1
    frames = []
    for k in range(n_frames):
        while len(alive) < objects:
            class_id = int(rng.choice([1, 1, 1, 2, 3, 4, 4, 5]))
            z = float(rng.uniform(25.0, 110.0)) if k else float(rng.uniform(4.0, 110.0))
            alive.append(_Object(next_id, class_id, float(rng.uniform(-0.45, 0.45)) * z,
                                 z, float(rng.normal(0, 0.4)),
                                 float(rng.choice([-1, -1, -1, 1]) * rng.uniform(2.0, 15.0))))
            next_id += 1
        boxes, classes, ids, dists = [], [], [], []
        for obj in alive:
            obj.x_m += obj.vx / fps
            obj.z_m += obj.vz / fps
            h_m, w_m = OBJECT_SIZES[obj.class_id]
            s = focal / obj.z_m
            box = [cx + (obj.x_m - w_m / 2) * s, cy + (cam_h - h_m) * s,
                   cx + (obj.x_m + w_m / 2) * s, cy + cam_h * s]
            clipped = np.clip(box, 0, [width, height, width, height])
            if clipped[3] - clipped[1] >= 3 and clipped[2] - clipped[0] >= 1:
                boxes.append(clipped)
                classes.append(obj.class_id)
                ids.append(obj.object_id)
                dists.append(obj.z_m)
        alive = [o for o in alive if 3.0 < o.z_m < 130.0 and abs(o.x_m) < 0.8 * o.z_m]
        n = len(boxes)
        frames.append(FrameDetections(
            stamp_ns=1_700_000_000_000_000_000 + k * round(1e9 / fps), frame_id='camera',
            boxes=np.array(boxes, np.float32).reshape(n, 4), class_ids=classes,
            class_names=[CLASS_NAMES[c] for c in classes], scores=np.ones(n),
            track_ids=np.array(ids, np.uint32), distances=np.array(dists, np.float32),
            model_name='ground_truth'))
    return frames


def synth_drive(seed: int, n_frames: int, cache_dir: Path = DEFAULT_CACHE
                ) -> list[FrameDetections]:
    """Ground truth of importance_sampler_ros.synth.world drive `seed` (10 fps), cached as .npz."""
    from importance_sampler_ros.synth.world import Drive, SynthConfig

    path = cache_dir / f'synth_truth_seed{seed}_{n_frames}.npz'
    if not path.exists():
        cache_dir.mkdir(parents=True, exist_ok=True)
        drive = Drive(SynthConfig(seed=seed, seconds=n_frames / 10.0, fps=10.0))
        truths = [drive.render(k).truth for k in range(n_frames)]
        np.savez_compressed(
            path, stamps=np.array([t.stamp_ns for t in truths], np.int64),
            counts=np.array([len(t) for t in truths]),
            boxes=np.concatenate([t.boxes for t in truths]),
            class_ids=np.concatenate([t.class_ids for t in truths]),
            track_ids=np.concatenate([t.track_ids for t in truths]),
            distances=np.concatenate([t.distances for t in truths]))
    data = np.load(path)
    splits = np.cumsum(data['counts'])[:-1]
    frames = []
    for stamp, boxes, classes, ids, dists in zip(
            data['stamps'].tolist(), *(np.split(data[key], splits) for key in (
                'boxes', 'class_ids', 'track_ids', 'distances')), strict=True):
        frames.append(FrameDetections(
            stamp_ns=stamp, frame_id='camera', boxes=boxes, class_ids=classes,
            class_names=[CLASS_NAMES[c] for c in classes.tolist()], scores=np.ones(len(boxes)),
            track_ids=ids, distances=dists, model_name='ground_truth'))
    return frames


def bag_truth(path: Path, topic: str = '/ground_truth/detections') -> list[FrameDetections]:
    """Ground truth recorded in a bag (e.g. written by `importance-sampler synth`)."""
    from importance_sampler_ros.bags import bag_io
    from importance_sampler_ros.bags.messages import detections_from_msg

    frames = [detections_from_msg(m.decode()) for m in bag_io.read_messages(path, [topic])]
    if not frames:
        raise SystemExit(f'{path}: no messages on {topic}')
    return frames


# ---------------------------------------------------------------- detections from ground truth

@dataclass(frozen=True)
class NoiseModel:
    """How ground truth becomes detections.

    jitter: std of each box edge as a fraction of the box size (plus 0.5 px); dropout: chance a
    true object is missed in a frame; false_positives: mean spurious boxes per frame; confusion:
    chance of the look-alike class is 0.03 + confusion * exp(-height / 15 px), and each object
    has one look-alike it is confused with. candidate_share: chance that a missed object is
    still handed on as a sub-threshold candidate (score 0.1-0.3, the box jittered like a
    detection), and candidate_false_positives: mean spurious candidates per frame; candidates
    go to `FrameDetections.candidates` (the tracker's second round; the reference SORT never
    sees them).
    """

    jitter: float = 0.05
    dropout: float = 0.1
    false_positives: float = 0.5
    confusion: float = 0.4
    candidate_share: float = 0.5
    candidate_false_positives: float = 2.0


@dataclass
class DetectionStream:
    frames: list[FrameDetections]
    truth_index: list[np.ndarray]  # per detection: row in the truth frame, -1 = false positive


def noisy_detections(truth: list[FrameDetections], noise: NoiseModel, seed: int,
                     width: int = 640, height: int = 192) -> DetectionStream:
    rng = np.random.default_rng([seed, 11])
    candidate_rng = np.random.default_rng([seed, 13])  # detections stay those of no candidates
    look_alike: dict[int, int] = {}
    frames, rows = [], []
    for gt in truth:
        kept = rng.random(len(gt)) >= noise.dropout
        keep = np.flatnonzero(kept)
        boxes = gt.boxes[keep].astype(np.float64)
        w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
        size = np.stack([w, h, w, h], axis=1)
        boxes += rng.normal(0, 1, boxes.shape) * (noise.jitter * size + 0.5)
        heights = np.maximum(boxes[:, 3] - boxes[:, 1], 1.0)
        classes = gt.class_ids[keep].copy()
        wrong = rng.random(len(keep)) < 0.03 + noise.confusion * np.exp(-heights / 15.0)
        for i in np.flatnonzero(wrong).tolist():
            object_id = int(gt.track_ids[keep[i]])
            if object_id not in look_alike:
                look_alike[object_id] = int(rng.choice(LOOK_ALIKES[int(classes[i])]))
            classes[i] = look_alike[object_id]
        scores = np.clip(0.35 + 0.6 * (1 - np.exp(-heights / 25.0)) + rng.normal(0, 0.05,
                         len(keep)), 0.05, 1.0)
        n_fp = rng.poisson(noise.false_positives)
        fp_size = rng.uniform(6, 50, (n_fp, 1)) * [0.8, 1.0]
        fp_corner = rng.uniform(0, 1, (n_fp, 2)) * ([width, height] - fp_size)
        boxes = np.vstack([boxes, np.hstack([fp_corner, fp_corner + fp_size])])
        classes = np.concatenate([classes, rng.integers(1, 6, n_fp)])
        scores = np.concatenate([scores, rng.uniform(0.3, 0.6, n_fp)])
        order = np.argsort(-scores, kind='stable')  # detectors publish by descending score
        frames.append(FrameDetections(
            stamp_ns=gt.stamp_ns, frame_id=gt.frame_id, boxes=boxes[order],
            class_ids=classes[order], class_names=[CLASS_NAMES[c] for c in classes[order]],
            scores=scores[order],
            candidates=_candidates(gt, ~kept, noise, candidate_rng, width, height)))
        rows.append(np.concatenate([keep, np.full(n_fp, -1)])[order])
    return DetectionStream(frames, rows)


def _candidates(gt: FrameDetections, missed: np.ndarray, noise: NoiseModel,
                rng: np.random.Generator, width: int, height: int) -> FrameDetections:
    """Sub-threshold candidates: some of the missed objects, plus spurious boxes."""
    rows = np.flatnonzero(missed & (rng.random(len(gt)) < noise.candidate_share))
    boxes = gt.boxes[rows].astype(np.float64)
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    boxes += rng.normal(0, 1, boxes.shape) * (noise.jitter * np.stack([w, h, w, h], 1) + 0.5)
    n_fp = rng.poisson(noise.candidate_false_positives)
    fp_size = rng.uniform(6, 50, (n_fp, 1)) * [0.8, 1.0]
    fp_corner = rng.uniform(0, 1, (n_fp, 2)) * ([width, height] - fp_size)
    boxes = np.vstack([boxes, np.hstack([fp_corner, fp_corner + fp_size])])
    classes = np.concatenate([gt.class_ids[rows], rng.integers(1, 6, n_fp)])
    return FrameDetections(
        stamp_ns=gt.stamp_ns, frame_id=gt.frame_id, boxes=boxes, class_ids=classes,
        class_names=[CLASS_NAMES[c] for c in classes.tolist()],
        scores=rng.uniform(0.1, 0.3, len(boxes)))


def detector_stream(seed: int, n_frames: int, checkpoint: Path, cache_dir: Path = DEFAULT_CACHE
                    ) -> tuple[list[FrameDetections], DetectionStream]:
    """Truth and the detector's output on synthetic drive `seed` (rendered again; detections
    cached per checkpoint). Detections are matched to the truth (Hungarian on IoU >= 0.5)."""
    from importance_sampler_ros.detection.detector import Detector, DetectorConfig
    from importance_sampler_ros.synth.world import Drive, SynthConfig

    truth = synth_drive(seed, n_frames, cache_dir)
    path = cache_dir / f'detections_{checkpoint.stem}_{checkpoint.stat().st_mtime_ns}' \
        f'_seed{seed}_{n_frames}.npz'
    if not path.exists():
        detector = Detector(DetectorConfig(checkpoint=checkpoint))
        drive = Drive(SynthConfig(seed=seed, seconds=n_frames / 10.0, fps=10.0))
        dets = [detector.detect(drive.render(k).image, truth[k].stamp_ns, 'camera')
                for k in range(n_frames)]
        np.savez_compressed(
            path, counts=np.array([len(d) for d in dets]),
            boxes=np.concatenate([d.boxes for d in dets]),
            class_ids=np.concatenate([d.class_ids for d in dets]),
            scores=np.concatenate([d.scores for d in dets]),
            importances=np.concatenate([d.importances for d in dets]))
    data = np.load(path)
    splits = np.cumsum(data['counts'])[:-1]
    frames, rows = [], []
    for gt, boxes, classes, scores, importances in zip(truth, *(np.split(data[key], splits)
            for key in ('boxes', 'class_ids', 'scores', 'importances')), strict=True):
        frame = FrameDetections(
            stamp_ns=gt.stamp_ns, frame_id='camera', boxes=boxes, class_ids=classes,
            class_names=[CLASS_NAMES[c] for c in classes.tolist()], scores=scores,
            importances=importances)
        frames.append(frame)
        rows.append(match_to_truth(frame.boxes, gt.boxes))
    return truth, DetectionStream(frames, rows)


def match_to_truth(boxes: np.ndarray, truth_boxes: np.ndarray, min_iou: float = 0.5
                   ) -> np.ndarray:
    """Per detection: the truth row it matches (Hungarian on IoU >= min_iou), -1 for none."""
    from scipy.optimize import linear_sum_assignment

    rows = np.full(len(boxes), -1, np.int64)
    if len(boxes) and len(truth_boxes):
        iou = iou_matrix(boxes.astype(np.float64), truth_boxes.astype(np.float64))
        det, gt = linear_sum_assignment(np.where(iou >= min_iou, iou, 0.0), maximize=True)
        good = iou[det, gt] >= min_iou
        rows[det[good]] = gt[good]
    return rows


# ---------------------------------------------------------------- running the trackers

@dataclass
class Hypotheses:
    """Per frame: track ids and boxes a tracker reports, and (ours) relabelled classes."""

    ids: list[np.ndarray] = field(default_factory=list)
    boxes: list[np.ndarray] = field(default_factory=list)
    relabelled: dict[tuple[int, int], int] = field(default_factory=dict)  # (stamp, index) -> cls
    seconds: float = 0.0


def run_ours(stream: DetectionStream, tracker: RelabelingTracker) -> Hypotheses:
    out = Hypotheses()
    start = time.perf_counter()
    for frame in stream.frames:
        tracked = tracker.update(frame)
        tracked_rows = np.flatnonzero(tracked.detections.track_ids)
        out.ids.append(tracked.detections.track_ids[tracked_rows])
        out.boxes.append(frame.boxes[tracked_rows])
        for event in tracked.relabels:
            for obs in event.observations:
                out.relabelled[(obs.stamp_ns, obs.detection_index)] = event.new_class_id
    out.seconds = time.perf_counter() - start
    return out


def reference_rows(frame: FrameDetections) -> np.ndarray:
    """Detections as the reference SORT takes them: x1, y1, x2, y2, score, class."""
    return np.hstack([frame.boxes, frame.scores[:, None], frame.class_ids[:, None]]).astype(
        np.float64)


def run_reference(stream: DetectionStream, sort_class: type, max_age: int = 3,
                  min_hits: int = 3, iou_threshold: float = 0.3) -> Hypotheses:
    tracker = sort_class(max_age=max_age, min_hits=min_hits, iou_threshold=iou_threshold)
    inputs = [reference_rows(f) for f in stream.frames]
    out = Hypotheses()
    start = time.perf_counter()
    for rows in inputs:
        result = tracker.update(rows if len(rows) else np.empty((0, 6)), None)
        out.ids.append(result[:, 4].astype(np.int64))
        out.boxes.append(result[:, :4])
    out.seconds = time.perf_counter() - start
    return out


# ---------------------------------------------------------------- metrics

def mot_metrics(truth: list[FrameDetections], hyp: Hypotheses) -> dict[str, float]:
    import motmetrics as mm

    acc = mm.MOTAccumulator(auto_id=True)
    for gt, ids, boxes in zip(truth, hyp.ids, hyp.boxes, strict=True):
        iou = iou_matrix(gt.boxes.astype(np.float64), np.asarray(boxes, np.float64))
        acc.update(gt.track_ids.tolist(), np.asarray(ids).tolist(),
                   np.where(iou >= 0.5, 1.0 - iou, np.nan))
    names = ['mota', 'idf1', 'num_switches', 'num_false_positives', 'num_misses',
             'num_objects', 'mostly_tracked', 'num_unique_objects']
    summary = mm.metrics.create().compute(acc, metrics=names, name='run')
    result = {name: float(summary[name].iloc[0]) for name in names}
    # switches to a track id never reported before (the object's track broke up) vs to an id
    # that was following something else (a track took over another object)
    events = acc.mot_events
    first_frame: dict = {}
    for (frame, _), hyp_id in events.loc[events.Type.isin(['MATCH', 'SWITCH', 'FP']),
                                         'HId'].items():
        first_frame.setdefault(hyp_id, frame)
    switches = events.loc[events.Type == 'SWITCH', 'HId']
    result['switches_to_new_ids'] = float(sum(
        first_frame[hyp_id] == frame for (frame, _), hyp_id in switches.items()))
    return result


def relabel_quality(truth: list[FrameDetections], stream: DetectionStream, hyp: Hypotheses,
                    relabel: RelabelConfig) -> dict[str, object]:
    """Class accuracy of true-object detections before / after relabels, per distance bin."""
    true_cls, before, after, dist, far = [], [], [], [], []
    for gt, frame, rows in zip(truth, stream.frames, stream.truth_index, strict=True):
        real = np.flatnonzero(rows >= 0)
        true_cls.append(gt.class_ids[rows[real]])
        before.append(frame.class_ids[real])
        after.append(np.array([hyp.relabelled.get((frame.stamp_ns, i), frame.class_ids[i])
                               for i in real.tolist()], np.int64))
        dist.append(gt.distances[rows[real]])
        heights = frame.boxes[real, 3] - frame.boxes[real, 1]
        tall = heights >= relabel.near_min_height_px
        confident = frame.scores[real] >= relabel.near_min_score
        near = tall & confident if relabel.near_rule == 'and' else tall | confident
        far.append(~near)
    true_cls, before, after = (np.concatenate(a) for a in (true_cls, before, after))
    dist, far = np.concatenate(dist), np.concatenate(far)
    bins = []
    for lo, hi in itertools.pairwise(DISTANCE_BINS_M):
        sel = (dist >= lo) & (dist < hi)
        bins.append((f'{lo:g}-{hi:g} m', int(sel.sum()), _accuracy(before, true_cls, sel),
                     _accuracy(after, true_cls, sel)))
    wrong_before = before != true_cls
    wrong_after = after != true_cls
    return {
        'bins': bins,
        'far': (int(far.sum()), _accuracy(before, true_cls, far), _accuracy(after, true_cls, far)),
        'all': (len(true_cls), _accuracy(before, true_cls, None),
                _accuracy(after, true_cls, None)),
        'errors': int(wrong_before.sum()),
        'corrected': int((wrong_before & ~wrong_after).sum()),
        'introduced': int((~wrong_before & wrong_after).sum()),
        'relabelled': int((before != after).sum()),
    }


def _accuracy(pred: np.ndarray, truth: np.ndarray, sel: np.ndarray | None) -> float:
    if sel is not None:
        pred, truth = pred[sel], truth[sel]
    return float(np.mean(pred == truth)) if len(pred) else float('nan')


# ---------------------------------------------------------------- main

NOISE_LEVELS = {
    'low': NoiseModel(jitter=0.03, dropout=0.05, false_positives=0.2),
    'medium': NoiseModel(jitter=0.06, dropout=0.15, false_positives=0.5),
    'high': NoiseModel(jitter=0.10, dropout=0.30, false_positives=1.0),
}


def noisy_streams(truths: Iterable[tuple[str, list[FrameDetections]]], levels: list[str]
                  ) -> Iterable[tuple[str, str, list[FrameDetections], DetectionStream]]:
    """(stream name, noise level, truth, detections) for every truth and noise level."""
    truths = list(truths)
    for level in levels:
        for stream_seed, (name, truth) in enumerate(truths):
            yield name, level, truth, noisy_detections(truth, NOISE_LEVELS[level], stream_seed)


def evaluate(streams: Iterable[tuple[str, str, list[FrameDetections], DetectionStream]],
             sort_class: type | None, tracker_config: TrackerConfig,
             relabel_config: RelabelConfig, report: Callable[[str], None] = print) -> None:
    report(f'{"stream":<18}{"noise":<10}{"tracker":<12}{"MOTA":>7}{"IDF1":>7}{"IDsw":>6}'
           f'{"(new)":>7}{"FP":>7}{"miss":>7}{"GT":>7}')
    totals: dict[str, list] = {}
    for name, level, truth, stream in streams:
        runs = {'ours': run_ours(stream, RelabelingTracker(tracker_config, relabel_config))}
        if sort_class is not None:
            runs[f'SORT a={tracker_config.max_age}'] = run_reference(
                stream, sort_class, max_age=tracker_config.max_age,
                min_hits=tracker_config.min_hits,
                iou_threshold=tracker_config.iou_threshold)
        for tracker_name, hyp in runs.items():
            m = mot_metrics(truth, hyp)
            report(f'{name:<18}{level:<10}{tracker_name:<12}{m["mota"]:>7.3f}'
                   f'{m["idf1"]:>7.3f}{m["num_switches"]:>6.0f}'
                   f'{m["switches_to_new_ids"]:>7.0f}'
                   f'{m["num_false_positives"]:>7.0f}{m["num_misses"]:>7.0f}'
                   f'{m["num_objects"]:>7.0f}')
        quality = relabel_quality(truth, stream, runs['ours'], relabel_config)
        totals.setdefault(level, []).append(quality)
    for level, qualities in totals.items():
        report(f'\nrelabel quality, {level} (all streams; accuracy before -> after)')
        for b, (label, *_) in enumerate(qualities[0]['bins']):
            n_all = sum(q['bins'][b][1] for q in qualities)
            acc_before = _weighted([(q['bins'][b][1], q['bins'][b][2]) for q in qualities])
            acc_after = _weighted([(q['bins'][b][1], q['bins'][b][3]) for q in qualities])
            report(f'  {label:<12} n={n_all:<7} {acc_before:.3f} -> {acc_after:.3f}')
        for key in ('far', 'all'):
            n_all = sum(q[key][0] for q in qualities)
            acc_before = _weighted([(q[key][0], q[key][1]) for q in qualities])
            acc_after = _weighted([(q[key][0], q[key][2]) for q in qualities])
            report(f'  {key + " field" if key == "far" else "all":<12} n={n_all:<7} '
                   f'{acc_before:.3f} -> {acc_after:.3f}')
        errors = sum(q['errors'] for q in qualities)
        corrected = sum(q['corrected'] for q in qualities)
        introduced = sum(q['introduced'] for q in qualities)
        relabelled = sum(q['relabelled'] for q in qualities)
        report(f'  errors corrected / all errors = {corrected}/{errors} = '
               f'{corrected / max(errors, 1):.3f}; errors introduced by relabels: {introduced}; '
               f'labels changed: {relabelled}')


def _weighted(pairs: list[tuple[int, float]]) -> float:
    total = sum(n for n, _ in pairs)
    return sum(n * acc for n, acc in pairs if n) / total if total else float('nan')


def tracker_node_config(assignments: list[str]) -> NodeConfig:
    """The tracker node's settings with the benchmarks' --set 'name=value' overrides."""
    node = NODES['tracker_node']
    return node.build(parse_assignments(assignments, node.specs()))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--source', choices=('simple', 'synth', 'bag'), default='simple')
    parser.add_argument('--bags', type=Path, nargs='+', default=[],
                        help='bags with ground truth on /ground_truth/detections (--source bag)')
    parser.add_argument('--detector', type=Path, default=None,
                        help='a detector checkpoint: track its output on the synthetic drives '
                             '(rendered again) instead of noisy ground truth')
    parser.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2])
    parser.add_argument('--frames', type=int, default=600, help='frames per drive (10 fps)')
    parser.add_argument('--objects', type=int, default=12,
                        help='objects in view on average (simple source)')
    parser.add_argument('--noise', nargs='+', choices=tuple(NOISE_LEVELS),
                        default=list(NOISE_LEVELS))
    parser.add_argument('--cache-dir', type=Path, default=DEFAULT_CACHE)
    parser.add_argument('--no-reference', action='store_true',
                        help='skip the reference SORT (no download)')
    parser.add_argument('--set', nargs='*', default=[], metavar='NAME=VALUE',
                        help='tracker_node parameters other than the defaults')
    args = parser.parse_args(argv)
    node = tracker_node_config(args.set)
    sort_class = None if args.no_reference else load_reference_sort(args.cache_dir)
    if args.detector is not None:
        streams = []
        for seed in args.seeds:
            truth, stream = detector_stream(seed, args.frames, args.detector, args.cache_dir)
            streams.append((f'synth seed {seed}', 'detector', truth, stream))
        truths = [(name, truth) for name, _, truth, _ in streams]
    else:
        if args.source == 'simple':
            truths = [(f'simple seed {s}', simple_drive(s, args.frames, args.objects))
                      for s in args.seeds]
        elif args.source == 'synth':
            truths = [(f'synth seed {s}', synth_drive(s, args.frames, args.cache_dir))
                      for s in args.seeds]
        else:
            truths = [(path.name[-17:], bag_truth(path)) for path in args.bags]
        streams = noisy_streams(truths, args.noise)
    n_boxes = sum(len(f) for _, t in truths for f in t)
    print(f'{len(truths)} drives, {sum(len(t) for _, t in truths)} frames, '
          f'{n_boxes} true boxes\n')
    evaluate(streams, sort_class, node.of(TrackerConfig), node.of(RelabelConfig))
    return 0


if __name__ == '__main__':
    sys.exit(main())
