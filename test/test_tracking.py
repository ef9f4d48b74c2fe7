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
    iou_matrix,
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
    assert np.isnan(states_to_boxes(np.array([[1.0, 1.0, -4.0, 1.0]]))).all()


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
    boxes = np.vstack([moving_boxes(0), [[5, 5, 5, 9]]])  # zero width
    step = tracker.update(boxes)
    assert step.ignored.tolist() == [False, False, True]
    assert step.track_ids.tolist() == [1, 2, 0]
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
