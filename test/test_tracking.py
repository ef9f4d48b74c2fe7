"""SORT tracker: Kalman arithmetic equal to filterpy's, ids, confirmation, ageing, bad boxes."""
import copy

import numpy as np
import pytest

from importance_sampler_ros.detection.detections import FrameDetections
from importance_sampler_ros.tracking.sort import (
    SortTracker,
    TrackerConfig,
    associate,
    boxes_to_measurements,
    compact_covariance,
    full_covariance,
    iou_matrix,
    is_decoupled,
    sort_box_filter,
    states_to_boxes,
)


def moving_boxes(t: int) -> np.ndarray:
    """Two well separated objects moving in opposite directions and growing."""
    return np.array([
        [100 + 4 * t, 50, 140 + 5 * t, 90 + t],
        [400 - 3 * t, 200, 430 - 3 * t, 260],
    ], np.float64)


def test_measurement_conversion_round_trip():
    boxes = np.array([[10, 20, 50, 100], [0.5, 0.5, 3.0, 2.0]])
    z = boxes_to_measurements(boxes)
    np.testing.assert_allclose(z[0], [30, 60, 40 * 80, 0.5])
    np.testing.assert_allclose(states_to_boxes(z), boxes)
    degenerate = np.array([[1.0, 1.0, -4.0, 1.0]])
    assert np.isnan(states_to_boxes(degenerate)).all()
    assert degenerate.tolist() == [[1.0, 1.0, -4.0, 1.0]]  # the states are not written to


def test_iou_matrix_known_values():
    a = np.array([[0, 0, 10, 10], [20, 20, 30, 30]], float)
    b = np.array([[5, 0, 15, 10], [0, 0, 10, 10], [100, 100, 110, 110]], float)
    np.testing.assert_allclose(iou_matrix(a, b), [[50 / 150, 1, 0], [0, 0, 0]])


def test_associate_resolves_ambiguity_by_total_iou():
    tracks = np.array([[0, 0, 10, 10], [6, 0, 16, 10]], float)
    # detection 0 fits track 0 best (IoU 0.67 vs 0.43), but detection 1 fits only track 0 (0.9):
    # the best total pairs detection 0 with track 1
    dets = np.array([[2, 0, 12, 10], [0, 0, 9, 10]], float)
    det_rows, track_rows = associate(dets, tracks, 0.3)
    assert sorted(zip(det_rows.tolist(), track_rows.tolist(), strict=True)) == [(0, 1), (1, 0)]
    # the gate: nothing above 0.9
    det_rows, _ = associate(dets, tracks, 0.95)
    assert len(det_rows) == 0


def test_the_box_model_decouples_into_the_pairs_the_tracker_keeps():
    kf = sort_box_filter()
    assert is_decoupled(kf)
    coupled = sort_box_filter()
    coupled.Q[0, 1] = coupled.Q[1, 0] = 0.5
    assert not is_decoupled(coupled)
    aspect_moves = sort_box_filter()
    aspect_moves.F[3, 4] = 1.0
    assert not is_decoupled(aspect_moves)
    # filterpy's own steps stay inside the kept entries, and they round-trip
    for step in range(6):
        kf.predict()
        if step != 3:
            kf.update(np.array([100.0 + step, 50.0, 400.0 + 20 * step, 0.5]))
        np.testing.assert_allclose(full_covariance(compact_covariance(kf.P)), kf.P, rtol=1e-12,
                                   atol=1e-12)


def test_batched_kalman_steps_equal_filterpy():
    tracker = SortTracker(TrackerConfig(max_age=5))
    tracker.update(moving_boxes(0))
    reference = {i: copy.deepcopy(tracker.filter_of(i)) for i in (1, 2)}
    for t in range(1, 8):
        boxes = moving_boxes(t) + np.random.default_rng(t).normal(0, 1.0, (2, 4))
        seen = [0, 1] if t != 4 else [0]  # object 2 missed once: predict without update
        tracker.update(boxes[seen])
        for row, track_id in enumerate((1, 2)):
            kf = reference[track_id]
            kf.predict()
            if row in seen:
                kf.update(boxes_to_measurements(boxes[row:row + 1])[0])
            live = tracker.filter_of(track_id)
            np.testing.assert_allclose(live.x, kf.x, rtol=1e-10, atol=1e-9)
            np.testing.assert_allclose(live.P, kf.P, rtol=1e-10, atol=1e-9)


def test_ids_confirmation_and_per_detection_ids():
    tracker = SortTracker(TrackerConfig(min_hits=3))
    first = tracker.update(moving_boxes(0))
    assert first.track_ids.tolist() == [0, 0]  # tentative
    assert first.assigned_ids.tolist() == [1, 2]
    assert len(first.tracks) == 0
    tracker.update(moving_boxes(1))
    third = tracker.update(moving_boxes(2)[::-1])  # detection order does not matter
    assert third.track_ids.tolist() == [2, 1]
    assert third.tracks.track_ids.tolist() == [1, 2]
    assert third.tracks.hits.tolist() == [3, 3]
    assert third.tracks.ages.tolist() == [2, 2]
    np.testing.assert_allclose(third.tracks.boxes, moving_boxes(2)[::-1][::-1])
    # a second tracker counts its own ids
    assert SortTracker().update(moving_boxes(0)).assigned_ids.tolist() == [1, 2]


def test_confirmed_track_survives_dropout_and_reports_prediction():
    tracker = SortTracker(TrackerConfig(min_hits=3, max_age=2))
    for t in range(4):
        tracker.update(moving_boxes(t))
    coasting = tracker.update(moving_boxes(4)[:1])  # object 2 missing
    assert coasting.tracks.track_ids.tolist() == [1, 2]
    assert coasting.tracks.time_since_update.tolist() == [0, 1]
    predicted = coasting.tracks.boxes[1]
    assert np.abs(predicted - moving_boxes(4)[1]).max() < 3.0  # the motion was learnt
    back = tracker.update(moving_boxes(5))
    assert back.track_ids.tolist() == [1, 2]  # no re-confirmation delay after the dropout
    assert back.tracks.hits.tolist() == [6, 5]


def test_tracks_end_after_max_age_and_new_ids_follow():
    tracker = SortTracker(TrackerConfig(min_hits=1, max_age=2))
    tracker.update(moving_boxes(0))
    assert len(tracker.update(np.zeros((0, 4))).ended_track_ids) == 0
    assert len(tracker.update(np.zeros((0, 4))).ended_track_ids) == 0
    step = tracker.update(np.zeros((0, 4)))  # third miss > max_age
    assert sorted(step.ended_track_ids.tolist()) == [1, 2]
    assert len(tracker) == 0
    again = tracker.update(moving_boxes(3))
    assert again.track_ids.tolist() == [3, 4]


def test_empty_frames_and_invalid_boxes():
    tracker = SortTracker(TrackerConfig(min_hits=1))
    only_bad = tracker.update(np.array([[np.nan, 0, 10, 10], [10, 10, 5, 20]]))
    assert only_bad.ignored.tolist() == [True, True]
    assert only_bad.track_ids.tolist() == [0, 0]
    assert len(tracker) == 0
    boxes = np.vstack([moving_boxes(0), [[5, 5, 5, 9]], [[0, 0, 1e30, 1e30]]])  # zero width, huge
    step = tracker.update(boxes)
    assert step.ignored.tolist() == [False, False, True, True]
    assert step.track_ids.tolist() == [1, 2, 0, 0]
    assert tracker.update(np.empty((0, 4))).track_ids.shape == (0,)


def test_frame_detections_input_keeps_class_and_score():
    tracker = SortTracker(TrackerConfig(min_hits=1))
    frame = FrameDetections(stamp_ns=1, boxes=moving_boxes(0), class_ids=[1, 4],
                            class_names=['car', 'pedestrian'], scores=[0.9, 0.4])
    tracks = tracker.update(frame).tracks
    assert tracks.class_ids.tolist() == [1, 4]
    assert tracks.class_names == ['car', 'pedestrian']
    np.testing.assert_allclose(tracks.scores, [0.9, 0.4])


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match='min_hits'):
        TrackerConfig(min_hits=0)
    with pytest.raises(ValueError, match='iou_threshold'):
        TrackerConfig(iou_threshold=1.5)
    with pytest.raises(ValueError, match='class ids'):
        SortTracker().update(moving_boxes(0), class_ids=[1])
    with pytest.raises(ValueError, match='shape'):
        SortTracker().update(np.zeros((3, 2)))


def test_confirmed_tracks_are_matched_before_tentative_ones():
    tracker = SortTracker(TrackerConfig(min_hits=2))
    steady = np.array([[0, 0, 10, 10]], float)
    tracker.update(steady)
    tracker.update(steady)  # track 1 confirmed, not moving
    tracker.update(np.array([[0, 0, 10, 10], [30, 0, 40, 10]], float))  # track 2 tentative
    tracker.update(np.array([[0, 0, 10, 10], [2, 0, 12, 10]], float))
    # the tentative track 3 sits at [2, 0, 12, 10]; the next detection overlaps it more (0.90)
    # than the confirmed track 1 (0.74), but the confirmed track is served first
    step = tracker.update(np.array([[1.5, 0, 11.5, 10]]))
    assert step.assigned_ids.tolist() == [1]
    assert step.track_ids.tolist() == [1]


def test_padding_keeps_a_tiny_far_object_on_one_track():
    def tiny(t):
        return np.array([[100 + 2 * t, 50 + t % 2, 103 + 2 * t, 54 + t % 2]], float)

    padded, plain = SortTracker(), SortTracker(TrackerConfig(association_padding_px=0.0))
    padded_ids = [padded.update(tiny(t)).assigned_ids[0] for t in range(6)]
    plain_ids = [plain.update(tiny(t)).assigned_ids[0] for t in range(6)]
    assert padded_ids == [1] * 6
    assert len(set(plain_ids)) > 1  # plain IoU of 3 x 4 px boxes 2 px apart: 0.14 < 0.3


def test_the_buffered_round_keeps_a_fast_passer_on_one_track():
    def passing(t):  # 16 px wide, 50 px tall, 18 px further each frame: consecutive IoU 0
        return np.array([[100 + 18 * t, 80, 116 + 18 * t, 130]], float)

    def far(t):  # the same motion on a 12 px tall box: below buffer_min_height_px
        return np.array([[100 + 8 * t, 80, 104 + 8 * t, 92]], float)

    buffered, plain = SortTracker(), SortTracker(TrackerConfig(buffer_ratio=0.0))
    assert [buffered.update(passing(t)).assigned_ids[0] for t in range(6)] == [1] * 6
    assert [plain.update(passing(t)).assigned_ids[0] for t in range(6)] == [1, 2, 3, 4, 5, 6]
    tracker = SortTracker()
    assert len({tracker.update(far(t)).assigned_ids[0] for t in range(6)}) == 6
    # the plain padded IoU is what the match reports (the relabeler's purity rules read it)
    tracker = SortTracker()
    tracker.update(passing(0))
    step = tracker.update(passing(1))
    assert step.assigned_ids[0] == 1 and step.match_ious[0] == pytest.approx(0.0)


def _frame(t: int, boxes, classes=None, scores=None, candidates=None) -> FrameDetections:
    boxes = np.asarray(boxes, float).reshape(-1, 4)
    n = len(boxes)
    classes = [1] * n if classes is None else classes
    return FrameDetections(
        stamp_ns=(t + 1) * 100_000_000, boxes=boxes, class_ids=classes,
        class_names=[str(c) for c in classes], scores=[0.9] * n if scores is None else scores,
        candidates=None if candidates is None else FrameDetections(
            stamp_ns=(t + 1) * 100_000_000, boxes=np.asarray(candidates, float).reshape(-1, 4),
            class_ids=[1] * len(candidates), class_names=['1'] * len(candidates),
            scores=[0.2] * len(candidates)))


def big(t: int) -> list[float]:
    return [100 + t, 50, 160 + t, 130]  # 80 px tall: near, coasts only max_age frames


def small(t: int) -> list[float]:
    return [300 + t, 80, 306 + t, 92]  # 12 px tall: far


def test_a_candidate_keeps_a_track_alive_without_being_published():
    config = TrackerConfig(max_age=1, far_max_age=0)
    with_round_two, without = SortTracker(config), SortTracker(
        TrackerConfig(max_age=1, far_max_age=0, match_candidates=False))
    for t in range(3):
        for tracker in (with_round_two, without):
            tracker.update(_frame(t, [big(t)]))
    for t in range(3, 6):  # the detector's score for the object fell below its threshold
        step = with_round_two.update(_frame(t, [], candidates=[big(t)]))
        without.update(_frame(t, [], candidates=[big(t)]))
        assert len(step.track_ids) == 0 and step.candidate_matches == 1
        assert step.tracks.track_ids.tolist() == [1]
        np.testing.assert_allclose(step.tracks.boxes[0], big(t))  # the candidate's box
        assert step.tracks.hits.tolist() == [3]  # a candidate is no hit
    assert with_round_two.update(_frame(6, [big(6)])).track_ids.tolist() == [1]
    assert without.update(_frame(6, [big(6)])).assigned_ids.tolist() == [2]  # track 1 ended


def test_small_confirmed_boxes_coast_longer():
    tracker = SortTracker(TrackerConfig(max_age=2, far_max_age=6, far_height_px=40.0))
    for t in range(3):
        tracker.update(_frame(t, [big(t), small(t)]))
    for t in range(3, 8):  # both objects missed for 5 frames
        step = tracker.update(_frame(t, []))
    assert step.tracks.track_ids.tolist() == [2]  # the far one still coasts, the near one ended
    assert tracker.update(_frame(8, [small(8)])).track_ids.tolist() == [2]


def test_a_lost_track_is_found_where_its_padded_prediction_reaches():
    def run(config: TrackerConfig) -> list[int]:
        tracker = SortTracker(config)
        for t in range(3):
            tracker.update(_frame(t, [small(0)]))  # standing still, 6 x 12 px
        for t in range(3, 6):
            tracker.update(_frame(t, []))
        # it comes back 5 px to the side (and a little larger): plain padding misses it
        return tracker.update(_frame(6, [[305, 79, 312, 93]])).assigned_ids.tolist()

    assert run(TrackerConfig()) == [1]
    assert run(TrackerConfig(lost_padding_per_frame=0.0)) == [2]


def test_another_class_on_the_same_box_joins_the_track_unpublished():
    tracker = SortTracker(TrackerConfig(min_hits=1))
    box = big(0)
    shifted = [box[0] + 3, box[1] + 2, box[2] + 3, box[3] + 2]
    step = tracker.update(_frame(0, [shifted, box], classes=[2, 1], scores=[0.4, 0.8]))
    assert step.assigned_ids.tolist() == [1, 1]
    assert step.duplicates.tolist() == [True, False]
    assert step.track_ids.tolist() == [0, 1]
    assert len(tracker) == 1
    # the same two boxes of one class are two objects (NMS left both)
    same_class = SortTracker(TrackerConfig(min_hits=1)).update(
        _frame(0, [shifted, box], classes=[1, 1], scores=[0.4, 0.8]))
    assert sorted(same_class.assigned_ids.tolist()) == [1, 2]
    off = SortTracker(TrackerConfig(min_hits=1, duplicate_iou=0.0)).update(
        _frame(0, [shifted, box], classes=[2, 1], scores=[0.4, 0.8]))
    assert sorted(off.assigned_ids.tolist()) == [1, 2]


def test_detections_beyond_the_cap_are_dropped_lowest_score_first():
    tracker = SortTracker(TrackerConfig(max_detections=3, max_tracks=5))
    boxes = [[20 * i, 0, 20 * i + 10, 10] for i in range(5)]
    step = tracker.update(_frame(0, boxes, scores=[0.5, 0.9, 0.4, 0.8, 0.7]))
    assert step.dropped == 2
    assert (step.assigned_ids > 0).tolist() == [False, True, False, True, True]
    step = tracker.update(_frame(1, [[20 * i, 50, 20 * i + 10, 60] for i in range(3)]))
    assert step.dropped == 1 and len(tracker) == 5  # max_tracks: one new track left room


def test_assignment_per_component_equals_the_dense_hungarian():
    from importance_sampler_ros.tracking import sort

    rng = np.random.default_rng(3)
    centres = rng.uniform(0, 2000, (300, 2))
    dets = np.hstack([centres, centres + 12])
    tracks = dets[rng.permutation(300)] + rng.normal(0, 4, (300, 4))
    iou = iou_matrix(dets, tracks)
    assert iou.size > sort.SPARSE_ASSIGNMENT_PAIRS
    allowed = (iou >= 0.2) & (iou > 0)
    dense = sort._hungarian(iou, allowed)
    sparse = sort.match_iou(iou, 0.2)
    assert len(sparse[0]) == len(dense[0]) > 200
    assert iou[sparse].sum() == pytest.approx(iou[dense].sum())


def test_thousands_of_detections_are_tracked_up_to_the_cap():
    rng = np.random.default_rng(5)
    tracker = SortTracker()
    for _ in range(3):
        corners = rng.uniform(0, 4000, (5000, 2))
        step = tracker.update(np.hstack([corners, corners + 8]), scores=rng.random(5000))
        assert step.dropped == 5000 - 500 and (step.assigned_ids > 0).sum() == 500
