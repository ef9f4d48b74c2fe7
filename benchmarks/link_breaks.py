"""Where tracks lose the far part of an object: why far detections are not linked to a near one.

    PYTHONPATH=$PWD .venv/bin/python benchmarks/link_breaks.py [--seeds 431 432 ...]
        [--set name=value ...]

For every object the drive shows near (>= 60 px and score >= 0.9, tune_relabel's fixed near
field), the last change of track before its first near detection: the far detections (< 20 px)
before it in other tracks are the ones it cuts off. Each change is put in a class by the box
height where the near track takes the object, where that track came from (started on the
object, or held another object or a false positive before) and what became of the track the
object leaves (ended, or went on with another object or a false positive). Prints the classes
weighted by the far detections cut off, and the frames unseen across the changes where a track
ended and a new one started.
"""
from __future__ import annotations

import argparse
import sys
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from drive_cache import CANDIDATE_FLOOR, detections_of_drive
from tune_relabel import CORE_PARAMS, FAR_HEIGHT_PX, FIXED_NEAR, greedy_match

from importance_sampler_ros.detection.config import DetectorConfig
from importance_sampler_ros.params import parse_assignments
from importance_sampler_ros.registry import NODES
from importance_sampler_ros.tracking.config import RelabelConfig, TrackerConfig
from importance_sampler_ros.tracking.relabel import RelabelingTracker
from importance_sampler_ros.tracking.sort import iou_matrix

LOOSE_IOU = 0.1  # a detection under the match IoU this close to an object is a loose box of it
GAP_CAP = 21  # gaps of this many frames and more are printed together


def _height_class(height: float) -> str:
    if height < FAR_HEIGHT_PX:
        return f'< {FAR_HEIGHT_PX:g} px'
    return '20-40 px' if height < 40.0 else '>= 40 px'


def _loose_objects(boxes: np.ndarray, truth) -> list[int]:
    """Per box: -the id of the object it overlaps best if at IoU >= LOOSE_IOU, else 0."""
    if not len(truth.boxes):
        return [0] * len(boxes)
    iou = iou_matrix(boxes.astype(np.float64), truth.boxes.astype(np.float64))
    best = iou.argmax(axis=1)
    ids = -truth.track_ids[best].astype(np.int64)  # uint32: negate only after the cast
    return np.where(iou[np.arange(len(boxes)), best] >= LOOSE_IOU, ids, 0).tolist()


def observations(drive: list, values: dict) -> list[tuple[int, int, int, float, bool]]:
    """(frame, track id, object id or 0 for a false positive, height, near) per tracked
    detection of one drive."""
    config = NODES['tracker_node'].build(values)
    tracker = RelabelingTracker(config.of(TrackerConfig), config.of(RelabelConfig))
    out = []
    for frame, (detections, truth) in enumerate(drive):
        step = tracker.update(detections)
        match = greedy_match(detections.boxes, truth.boxes)
        heights = detections.boxes[:, 3] - detections.boxes[:, 1]
        loose = None  # a loose box (IoU >= LOOSE_IOU) on an object is -its id
        for i, track in enumerate(step.assigned_ids.tolist()):
            if not track:
                continue
            if match[i] >= 0:
                object_id = int(truth.track_ids[match[i]])
            else:
                if loose is None:
                    loose = _loose_objects(detections.boxes, truth)
                object_id = loose[i]
            near = heights[i] >= FIXED_NEAR[0] and detections.scores[i] >= FIXED_NEAR[1]
            out.append((frame, int(track), object_id, float(heights[i]), bool(near)))
    return out


def breaks(obs: list[tuple[int, int, int, float, bool]], cut: Counter, gaps: Counter) -> None:
    """Adds one drive's last changes of track before each object's first near detection to
    `cut` (class -> far detections cut off) and `gaps` (frames unseen -> far cut off, for the
    changes where the track ended and a new one started on the object)."""
    by_track: dict[int, list[tuple[int, int]]] = defaultdict(list)
    by_object: dict[int, list[tuple[int, int, float, bool]]] = defaultdict(list)
    for frame, track, object_id, height, near in obs:
        by_track[track].append((frame, object_id))
        if object_id > 0:
            by_object[object_id].append((frame, track, height, near))
    for object_id, seq in by_object.items():
        first_near = next((k for k, s in enumerate(seq) if s[3]), None)
        if first_near is None:
            continue
        near_track = seq[first_near][1]
        before = [k for k in range(first_near) if seq[k][1] != near_track]
        if not before:
            continue
        j = before[-1]
        far_cut = sum(1 for k in before if seq[k][2] < FAR_HEIGHT_PX)
        if not far_cut:
            continue
        left_frame, left_track = seq[j][0], seq[j][1]
        taken = next(k for k in range(j + 1, first_near + 1) if seq[k][1] == near_track)
        taken_frame, taken_height = seq[taken][0], seq[taken][2]
        near_history = by_track[near_track]
        earlier = [o for f, o in near_history if f < taken_frame]
        origin = 'held ' + _what(earlier[-1], object_id) if earlier else 'started on it'
        later = [o for f, o in by_track[left_track] if f > left_frame]
        fate = 'went on with ' + _what(later[0], object_id) if later else 'ended'
        cut[(_height_class(taken_height), origin, fate)] += far_cut
        if origin == 'started on it' and fate == 'ended':
            gaps[min(taken_frame - left_frame, GAP_CAP)] += far_cut


def _what(held: int, object_id: int) -> str:
    if held == object_id:
        return 'it (alternating)'
    if held == -object_id:
        return 'a loose box of it'
    if held == 0:
        return 'a false positive'
    return "another's loose box" if held < 0 else 'another object'


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--seeds', type=int, nargs='+', default=[431, 432, 433, 434, 441, 442])
    parser.add_argument('--seconds', type=float, default=60.0)
    parser.add_argument('--set', nargs='*', default=[], help='parameter overrides name=value')
    args = parser.parse_args(argv)
    floor = DetectorConfig(candidate_floor=CANDIDATE_FLOOR).published_candidate_floor
    overrides = parse_assignments(args.set, CORE_PARAMS.values())
    cut: Counter = Counter()
    gaps: Counter = Counter()
    far = 0
    for seed in args.seeds:
        obs = observations(detections_of_drive(seed, args.seconds, candidate_floor=floor),
                           overrides)
        far += sum(1 for o in obs if o[2] > 0 and o[3] < FAR_HEIGHT_PX)
        breaks(obs, cut, gaps)
    total = sum(cut.values())
    print(f'seeds {args.seeds}; {far} far detections tracked; cut off by the last change before '
          f'the first near detection: {total}')
    print(f'{"where the near track takes it":<14} {"the near track":<30} {"the track left":<30} '
          'far cut off')
    for (height, origin, fate), n in cut.most_common():
        print(f'{height:<14} {origin:<30} {fate:<30} {n:>6}')
    for position, label in ((0, 'where the near track takes it'), (1, 'the near track'),
                            (2, 'the track left')):
        margin: Counter = Counter()
        for key, n in cut.items():
            margin[key[position]] += n
        print(f'by {label}: ' + ', '.join(f'{k} {n} ({n / max(total, 1):.0%})'
                                          for k, n in margin.most_common()))
    print('frames unseen where a track ended and a new one started (far cut off):')
    print('  ' + ', '.join(f'{g if g < GAP_CAP else f">{GAP_CAP - 1}"}: {n}'
                           for g, n in sorted(gaps.items())))
    return 0


if __name__ == '__main__':
    sys.exit(main())
