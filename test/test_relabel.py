"""Near-to-far relabels: the paper's Algorithm 1, re-issues, bounded memory, RelabelingTracker."""
import numpy as np
import pytest

from importance_sampler_ros.detection.detections import FrameDetections
from importance_sampler_ros.registry import NODES
from importance_sampler_ros.tracking.relabel import (
    NearToFarRelabeler,
    RelabelConfig,
    RelabelingTracker,
    StaleFrameError,
)
from importance_sampler_ros.tracking.sort import TrackerConfig

NAMES = {1: 'car', 2: 'van', 3: 'truck'}
MS = 1_000_000


def cfg(**changes) -> RelabelConfig:
    """The relabel rule with round test thresholds: near = box >= 40 px and score >= 0.5, no
    identity-switch segmentation and no match-quality check; the shipped defaults are stricter
    (tuned on detector output, benchmarks/tune_relabel.py) and tested separately below."""
    return RelabelConfig(**{'near_min_height_px': 40.0, 'near_min_score': 0.5,
                            'segment_min_iou': 0.0, 'relabel_min_match_iou': 0.0,
                            'segment_max_gap_s': 0.0, 'relabel_max_score': 1.0, **changes})


def frame(t: int, classes: list[int], heights: list[float], scores=None, boxes=None):
    """Objects side by side, object i at x = 200 i, its box `heights[i]` tall."""
    n = len(classes)
    if boxes is None:
        boxes = [[200 * i + t, 50, 200 * i + t + h / 2, 50 + h] for i, h in enumerate(heights)]
    return FrameDetections(
        stamp_ns=(t + 1) * 100 * MS, frame_id='camera', boxes=np.array(boxes, float),
        class_ids=classes, class_names=[NAMES[c] for c in classes],
        scores=[0.9] * n if scores is None else scores,
    )


def approaching(t: int) -> float:
    """Box height of an approaching object: far (< 40 px) for t < 6, near from t = 6."""
    return 10.0 + 5.0 * t


def run(tracker, frames):
    return [tracker.update(f) for f in frames]


def test_far_observations_are_relabelled_to_the_near_class():
    tracker = RelabelingTracker(relabel=cfg())
    frames = [frame(t, [1 if t < 6 else 2], [approaching(t)]) for t in range(12)]
    out = run(tracker, frames)
    events = [e for o in out for e in o.relabels]
    assert len(events) == 1
    event = events[0]
    assert out[8].relabels == [event]  # third near vote (near_min_votes=3) at t = 8
    assert (event.track_id, event.old_class_id, event.old_class_name) == (1, 1, 'car')
    assert (event.new_class_id, event.new_class_name, event.reissued) == (2, 'van', False)
    assert event.stamp_ns == frames[8].stamp_ns and event.frame_id == 'camera'
    assert [o.stamp_ns for o in event.observations] == [f.stamp_ns for f in frames[:6]]
    assert [o.detection_index for o in event.observations] == [0] * 6
    assert event.observations[0].box == tuple(frames[0].boxes[0].tolist())
    assert event.confidence == pytest.approx(0.9)  # all 3 votes agree, score 0.9
    # tracks report the near class and the class counts of their history
    last = out[-1].tracks[0]
    assert (last.class_id, last.class_name) == (2, 'van')
    assert last.class_history == ((1, 6), (2, 6))


def test_detection_indices_follow_the_frame_order():
    tracker = RelabelingTracker(relabel=cfg())
    frames = []
    for t in range(10):
        # object 0 stays far and is a car; object 1 approaches, truck far then van near
        classes = [1, 3 if t < 6 else 2]
        f = frame(t, classes, [20.0, approaching(t)])
        frames.append(f.select(np.array([1, 0]) if t % 2 else np.array([0, 1])))
    events = [e for o in run(tracker, frames) for e in o.relabels]
    assert len(events) == 1
    assert [o.detection_index for o in events[0].observations] == [1, 0, 1, 0, 1, 0]


def test_relabel_once_then_later_disagreeing_observations_one_by_one():
    tracker = RelabelingTracker(relabel=cfg())
    classes = [1] * 6 + [2] * 6 + [1, 2, 1]  # then three unsure (not near) observations
    heights = [approaching(t) for t in range(12)] + [65.0] * 3
    scores = [0.9] * 12 + [0.3] * 3
    out = run(tracker, [frame(t, [c], [h], [s]) for t, (c, h, s) in enumerate(zip(
        classes, heights, scores, strict=True))])
    per_frame = [[(e.old_class_id, len(e.observations)) for e in o.relabels] for o in out]
    assert per_frame[8] == [(1, 6)]
    assert per_frame[12] == [(1, 1)] and per_frame[13] == [] and per_frame[14] == [(1, 1)]
    assert sum(map(len, per_frame)) == 3


def test_changed_near_class_reissues_every_correction():
    tracker = RelabelingTracker(relabel=cfg(relabel_near_field=True))
    classes = [1] * 3 + [3] * 3 + [2] * 3 + [3] * 6
    heights = [approaching(t) for t in range(15)]
    out = run(tracker, [frame(t, [c], [h]) for t, (c, h) in enumerate(zip(classes, heights,
                                                                            strict=True))])
    first = out[8].relabels
    assert {(e.old_class_id, e.new_class_id, e.reissued) for e in first} == {
        (1, 2, False), (3, 2, False)}
    # the last five near votes at t = 11 are van van truck truck truck: truck wins (3/5 = 0.6)
    changed = out[11].relabels
    assert all(e.new_class_id == 3 for e in changed)
    by_old = {(e.old_class_id, e.reissued): len(e.observations) for e in changed}
    # cars (relabelled to van before) re-issued; trucks (t 3-5, and 9-10 relabelled to van one
    # by one) withdrawn from van (old = new = truck);
    # vans never relabelled before: first relabel
    assert by_old == {(1, True): 3, (3, True): 5, (2, False): 3}
    assert not any(o.relabels for o in out[12:])
    # nothing is left behind: every observation's label is now truck
    assert all(o.label() == 3 for o in tracker.relabeler.history(1))


def test_track_that_never_gets_near_produces_nothing_and_is_freed():
    tracker = RelabelingTracker(TrackerConfig(max_age=1, far_max_age=0), cfg())
    far = [frame(t, [1 if t % 2 else 2], [20.0]) for t in range(20)]
    empty = [FrameDetections(stamp_ns=(t + 1) * 100 * MS) for t in range(20, 23)]
    out = run(tracker, far + empty)
    assert all(not o.relabels for o in out)
    assert len(tracker.relabeler) == 0 and len(tracker.tracker) == 0


def test_history_is_capped():
    tracker = RelabelingTracker(relabel=cfg(relabel_history_size=4))
    classes = [1] * 10 + [2] * 3
    heights = [30.0] * 10 + [40.0] * 3
    out = run(tracker, [frame(t, [c], [h]) for t, (c, h) in enumerate(zip(classes, heights,
                                                                            strict=True))])
    events = [e for o in out for e in o.relabels]
    assert len(events) == 1
    assert len(events[0].observations) == 1  # only the last far observation was still kept
    assert len(tracker.relabeler.history(1)) == 4
    assert out[-1].tracks[0].class_history == ((2, 3), (1, 1))


def test_class_history_counts_the_kept_observations_most_frequent_first():
    tracker = RelabelingTracker(relabel=cfg(relabel_history_size=5))
    classes = np.random.default_rng(3).choice([1, 2, 3], p=[0.6, 0.3, 0.1], size=60).tolist()
    for t, c in enumerate(classes):
        summary = tracker.update(frame(t, [c], [20.0])).tracks
        if not summary:
            continue
        kept = classes[max(0, t - 4):t + 1]
        expected = sorted({k: kept.count(k) for k in kept}.items(),
                          key=lambda item: (-item[1], item[0]))
        assert summary[0].class_history == tuple(expected), t


def test_near_rule_and_thresholds():
    relabeler = NearToFarRelabeler(cfg(near_min_height_px=40, near_min_score=0.5))
    assert relabeler.is_near(40, 0.5) and not relabeler.is_near(39, 0.9)
    assert not relabeler.is_near(100, 0.4)
    either = NearToFarRelabeler(cfg(near_rule='or'))
    assert either.is_near(100, 0.1) and either.is_near(10, 0.6) and not either.is_near(10, 0.1)


def test_low_confidence_or_split_votes_do_not_relabel():
    classes = [1] * 6 + [2, 3, 2, 3, 2, 3, 3, 2]
    heights = [approaching(t) for t in range(14)]
    split = RelabelingTracker(relabel=cfg(near_min_agreement=0.7))
    out = run(split, [frame(t, [c], [h]) for t, (c, h) in enumerate(zip(classes, heights,
                                                                          strict=True))])
    assert not any(o.relabels for o in out)
    unsure = RelabelingTracker(relabel=cfg(near_rule='or',
                                                     relabel_min_confidence=0.5))
    frames = [frame(t, [1 if t < 6 else 2], [approaching(t)], scores=[0.45]) for t in range(12)]
    assert not any(o.relabels for o in run(unsure, frames))  # confidence 1.0 x 0.45 < 0.5


def test_only_confirmed_tracks_relabel():
    relabeler = NearToFarRelabeler(cfg(relabel_min_observations=1, near_min_votes=1,
                                                 near_window=1))
    far = frame(0, [1], [20.0])
    near = frame(1, [2], [80.0], boxes=[[0, 0, 40, 80]])
    assert relabeler.observe(far, np.array([5]), np.array([False])) == []
    assert relabeler.observe(near, np.array([5]), np.array([False])) == []
    events = relabeler.observe(frame(2, [2], [80.0], boxes=[[1, 0, 41, 80]]), np.array([5]))
    assert [(e.track_id, e.old_class_id, e.new_class_id) for e in events] == [(5, 1, 2)]


def test_stale_frames_are_rejected_without_changing_state():
    tracker = RelabelingTracker(relabel=cfg())
    tracker.update(frame(1, [1], [20.0]))
    with pytest.raises(StaleFrameError, match='duplicate'):
        tracker.update(frame(1, [1], [20.0]))
    with pytest.raises(StaleFrameError, match='out-of-order'):
        tracker.update(frame(0, [1], [20.0]))
    assert tracker.tracker.frame_count == 1
    assert len(tracker.update(frame(2, [1], [20.0])).detections) == 1


def test_invalid_boxes_are_reported_and_get_no_track():
    tracker = RelabelingTracker(TrackerConfig(min_hits=1), cfg())
    bad = frame(0, [1, 1], [20.0, 20.0])
    bad.boxes[1] = [np.nan, 0, 1, 1]
    out = tracker.update(bad)
    assert out.ignored.tolist() == [1]
    assert out.detections.track_ids.tolist() == [1, 0]


def test_config_validation():
    with pytest.raises(ValueError, match='near_rule'):
        cfg(near_rule='xor')
    with pytest.raises(ValueError, match='near_min_votes'):
        cfg(near_window=2, near_min_votes=3)
    values = {'iou_threshold': 0.5, 'max_age': 1, 'min_hits': 2, 'association_padding_px': 0.0,
              'near_min_height_px': 30.0,
              'near_min_score': 0.4, 'near_rule': 'or', 'near_window': 4, 'near_min_votes': 2,
              'near_min_agreement': 0.5, 'relabel_min_confidence': 0.3,
              'relabel_min_observations': 3, 'relabel_history_size': 50,
              'relabel_near_field': True, 'segment_min_iou': 0.0, 'relabel_min_match_iou': 0.2,
              'far_max_age': 4, 'far_height_px': 30.0, 'lost_padding_per_frame': 0.0,
              'match_candidates': False, 'candidate_iou_threshold': 0.4, 'max_detections': 50,
              'max_tracks': 60, 'duplicate_iou': 0.0, 'duplicate_containment': 0.0,
              'relabel_max_span_s': 2.0, 'other': 'ignored'}
    config = NODES['tracker_node'].build(values)
    tracker = RelabelingTracker(config.of(TrackerConfig), config.of(RelabelConfig))
    assert tracker.tracker.config.min_hits == 2
    assert tracker.relabeler.config.near_rule == 'or'
    assert tracker.relabeler.config.relabel_near_field
    assert tracker.tracker.config.far_max_age == 4 and not tracker.tracker.config.match_candidates
    assert tracker.relabeler.config.relabel_min_match_iou == 0.2


def test_near_field_observations_are_evidence_not_corrected_by_default():
    classes = [1] * 6 + [3] * 4 + [2] + [3] * 3  # one near-field van among the truck votes
    heights = [approaching(t) for t in range(len(classes))]
    frames = [frame(t, [c], [h]) for t, (c, h) in enumerate(zip(classes, heights, strict=True))]
    default = run(RelabelingTracker(relabel=cfg()), frames)
    corrected = [(o.stamp_ns, e.old_class_id) for f in default for e in f.relabels
                 for o in e.observations]
    assert {old for _, old in corrected} == {1}  # only the far cars, never the near van
    everything = run(RelabelingTracker(relabel=cfg(relabel_near_field=True)), frames)
    assert {e.old_class_id for f in everything for e in f.relabels} == {1, 2}


def test_reset_forgets_tracks_and_keeps_counting_ids():
    tracker = RelabelingTracker(TrackerConfig(min_hits=1), cfg())
    assert tracker.update(frame(5, [1], [20.0])).detections.track_ids.tolist() == [1]
    tracker.reset()
    assert len(tracker.tracker) == 0 and len(tracker.relabeler) == 0
    again = tracker.update(frame(0, [1], [20.0]))  # an earlier stamp is fine after a reset
    assert again.detections.track_ids.tolist() == [2]


def test_a_jump_to_another_object_starts_a_new_history():
    """A track that jumps to a neighbouring object (an identity switch) must not carry the first
    object's far observations into the second object's near-field vote."""
    def shifted(t: int, cls: int, x: float) -> FrameDetections:
        det = frame(t, [cls], [approaching(t)])
        det.boxes[0, [0, 2]] += x - det.boxes[0, 0]
        return det

    # a far car at x=0 for 6 frames, then the track continues on a van beside it (x=12: the
    # boxes still overlap enough for the tracker, IoU < 0.5 between the two boxes)
    frames = [shifted(t, 1, 0.0) for t in range(6)] + [shifted(t, 2, 12.0) for t in range(6, 12)]
    joined = run(RelabelingTracker(relabel=cfg()), frames)
    assert any(f.relabels for f in joined)  # without segmentation the cars become vans
    guarded = run(RelabelingTracker(relabel=cfg(segment_min_iou=0.5)), frames)
    assert not any(f.relabels for f in guarded)


def test_shipped_defaults_are_the_tuned_ones():
    defaults = RelabelConfig()
    assert (defaults.near_min_height_px, defaults.near_min_score, defaults.segment_min_iou) == (
        30.0, 0.9, 0.5)
    assert (defaults.relabel_max_score, defaults.segment_max_gap_s) == (0.8, 0.5)
    assert not defaults.relabel_near_field


def test_poorly_matched_observations_are_not_relabelled_and_lower_the_confidence():
    relabeler = NearToFarRelabeler(cfg(relabel_min_match_iou=0.5))
    frames = [frame(t, [1 if t < 6 else 2], [approaching(t)]) for t in range(9)]
    matches = [float('nan'), 0.9, 0.3, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9]  # t=2: a weak match
    events = [e for t, f in enumerate(frames)
              for e in relabeler.observe(f, np.array([1]), match_ious=np.array([matches[t]]))]
    assert len(events) == 1
    relabelled = [o.stamp_ns for o in events[0].observations]
    assert relabelled == [f.stamp_ns for t, f in enumerate(frames[:6]) if t != 2]
    plain = NearToFarRelabeler(cfg(relabel_min_match_iou=0.0))
    [plain_event] = [e for t, f in enumerate(frames)
                     for e in plain.observe(f, np.array([1]), match_ious=np.array([matches[t]]))]
    # purity 8 of 9 observations well matched: the confidence drops by that share
    assert events[0].confidence == pytest.approx(plain_event.confidence * 8 / 9)


def test_observations_older_than_the_span_are_not_relabelled():
    tracker = RelabelingTracker(relabel=cfg(relabel_max_span_s=0.5))
    frames = [frame(t, [1 if t < 6 else 2], [approaching(t)]) for t in range(12)]
    events = [e for o in run(tracker, frames) for e in o.relabels]
    # the vote at t = 8 (0.9 s): observations from 0.4 s on, the far ones t = 3..5
    assert [o.stamp_ns for o in events[0].observations] == [f.stamp_ns for f in frames[3:6]]


def test_observations_the_detector_is_sure_of_keep_their_class():
    scores = [0.6, 0.95, 0.7, 0.85, 0.6, 0.9] + [0.9] * 6  # far: two of them at least 0.85
    frames = [frame(t, [1 if t < 6 else 2], [approaching(t)], scores=[scores[t]])
              for t in range(12)]
    [event] = [e for o in run(RelabelingTracker(relabel=cfg(relabel_max_score=0.85)), frames)
               for e in o.relabels]
    assert [o.stamp_ns for o in event.observations] == [
        frames[t].stamp_ns for t in (0, 2, 4)]
    [every] = [e for o in run(RelabelingTracker(relabel=cfg()), frames) for e in o.relabels]
    assert len(every.observations) == 6  # 1 = off


def test_a_track_found_again_after_a_long_gap_starts_a_new_history():
    # far car frames 0-4, the track coasts through frames 5-7 (no detection), then a van
    frames = [frame(t, [1 if t < 5 else 2], [approaching(t)]) for t in range(16)]
    seen = frames[:5] + frames[8:]
    bridged = [e for o in run(RelabelingTracker(TrackerConfig(max_age=5),
                                                cfg(segment_max_gap_s=0.5)), seen)
               for e in o.relabels]
    assert [o.stamp_ns for o in bridged[0].observations] == [f.stamp_ns for f in frames[:5]]
    # 0.4 s of coasting (frame 4 -> 8) is more than 0.3 s: the van's votes never reach the cars
    split = [e for o in run(RelabelingTracker(TrackerConfig(max_age=5),
                                              cfg(segment_max_gap_s=0.3)), seen)
             for e in o.relabels]
    assert split == []


def test_the_tracker_hands_its_match_quality_to_the_relabeler():
    tracker = RelabelingTracker(relabel=cfg())
    run(tracker, [frame(t, [1], [approaching(t)]) for t in range(4)])
    history = tracker.relabeler.history(1)
    assert np.isnan(history[0].match_iou)  # the first observation started the track
    assert all(0.3 <= o.match_iou <= 1.0 for o in history[1:])
