"""The one frame policy (bad images, time jumps) and the one stamp join, without rclpy."""
import numpy as np
import pytest

from importance_sampler_ros.bags import bag_io
from importance_sampler_ros.bags.images import rgb_to_image_msg
from importance_sampler_ros.detection.detections import FrameDetections
from importance_sampler_ros.frame_policy import FramePolicy
from importance_sampler_ros.stamp_join import StampJoin
from importance_sampler_ros.tracking.relabel import RelabelingTracker

S = 1_000_000_000
T0 = 1_700_000_000 * S


class FakeDetector:
    def __init__(self, fail_with: Exception | None = None) -> None:
        self.fail_with = fail_with
        self.calls = 0

    def detect(self, rgb, stamp_ns, frame_id):
        self.calls += 1
        if self.fail_with is not None:
            raise self.fail_with
        return FrameDetections(stamp_ns=stamp_ns, frame_id=frame_id,
                               boxes=np.array([[1.0, 1.0, 5.0, 5.0]]), class_ids=np.array([1]),
                               class_names=['car'], scores=np.array([0.9]))


def image(stamp_ns=T0, **changes):
    msg = rgb_to_image_msg(np.zeros((4, 6, 3), np.uint8), stamp_ns, 'camera', bag_io.msg_types())
    for key, value in changes.items():
        setattr(msg, key, value)
    return msg


def policy(**kwargs) -> tuple[FramePolicy, list[str], list[float]]:
    warnings, now = [], [0.0]
    return FramePolicy(warn=warnings.append, clock=lambda: now[0], **kwargs), warnings, now


@pytest.mark.parametrize('bad', [{'encoding': '16UC1'}, {'step': 5}, {'height': 40}],
                         ids=['unknown-encoding', 'bad-step', 'short-data'])
def test_bad_image_is_skipped_counted_and_warned(bad):
    frame_policy, warnings, _ = policy()
    detector = FakeDetector()
    assert frame_policy.detect(detector, image(**bad)) is None
    assert detector.calls == 0 and frame_policy.counts.images_skipped == 1
    assert len(warnings) == 1 and 'skipping image' in warnings[0]
    detections, rgb = frame_policy.detect(detector, image())
    assert detections.stamp_ns == T0 and rgb.shape == (4, 6, 3)


def test_failed_inference_is_skipped_and_warnings_are_rate_limited():
    frame_policy, warnings, now = policy(warning_period_s=5.0)
    detector = FakeDetector(RuntimeError('CUDA out of memory'))
    for t in (0.0, 1.0, 4.9, 5.0, 6.0):
        now[0] = t
        assert frame_policy.detect(detector, image()) is None
    assert frame_policy.counts.images_skipped == 5
    assert len(warnings) == 2 and 'inference failed: CUDA out of memory' in warnings[0]
    assert '[4 skipped so far]' in warnings[1]


def frame(stamp_ns):
    return FrameDetections(stamp_ns=stamp_ns, frame_id='camera',
                           boxes=np.array([[10.0, 10.0, 30.0, 40.0]]), class_ids=np.array([1]),
                           class_names=['car'], scores=np.array([0.9]))


def test_stale_frames_are_skipped_and_a_jump_back_resets_the_tracker():
    frame_policy, warnings, _ = policy(reset_on_jump_back_s=5.0)
    tracker = RelabelingTracker()
    for i in range(4):
        assert frame_policy.track(tracker, frame(T0 + i * S // 10)) is not None
    assert frame_policy.track(tracker, frame(T0 + S // 10)) is None  # out of order
    assert frame_policy.track(tracker, frame(T0 + 3 * S // 10)) is None  # duplicate
    assert frame_policy.counts.frames_stale == 2 and frame_policy.counts.tracker_resets == 0
    assert len(tracker.tracker) == 1
    tracked = frame_policy.track(tracker, frame(T0 - 10 * S))  # a restarted bag
    assert tracked is not None and tracker.last_stamp_ns == T0 - 10 * S
    assert frame_policy.counts.tracker_resets == 1
    assert tracked.detections.track_ids.tolist() == [0]  # a new, tentative track
    assert any('tracker reset' in w for w in warnings)


def test_no_reset_when_disabled():
    frame_policy, _, _ = policy(reset_on_jump_back_s=0.0)
    tracker = RelabelingTracker()
    frame_policy.track(tracker, frame(T0))
    assert frame_policy.track(tracker, frame(T0 - 100 * S)) is None
    assert frame_policy.counts.frames_stale == 1 and tracker.last_stamp_ns == T0


def test_from_settings_takes_the_node_values():
    from importance_sampler_ros.registry import DetectorNodeSettings, TrackerNodeSettings

    frame_policy = FramePolicy.from_settings(
        TrackerNodeSettings(reset_on_jump_back_s=2.5, warning_period_s=0.0))
    assert (frame_policy.reset_on_jump_back_s, frame_policy.warning_period_s) == (2.5, 0.0)
    frame_policy = FramePolicy.from_settings(DetectorNodeSettings(warning_period_s=1.0))
    assert frame_policy.warning_period_s == 1.0


# -- the stamp join


def test_join_pairs_by_stamp_in_either_order_and_times_out():
    join = StampJoin(('image', 'detections'), timeout_s=2.0)
    assert join.add('image', 1, 'i1', now_s=0.0) == []
    [done] = join.add('detections', 1, 'd1', now_s=0.5)
    assert (done.stamp_ns, done.parts) == (1, {'image': 'i1', 'detections': 'd1'})
    assert join.add('detections', 2, 'd2', now_s=1.0) == []
    [done] = join.add('image', 2, 'i2', now_s=1.1)
    assert done.get('image') == 'i2'
    join.add('image', 3, 'i3', now_s=2.0)
    join.add('detections', 4, 'd4', now_s=3.0)
    assert join.expire(3.9) == [] and len(join) == 2
    assert join.expire(4.0) == []  # image 3 waited 2 s: given up
    assert join.unmatched == {'image': 1, 'detections': 0} and len(join) == 1
    assert join.add('image', 4, 'i4', now_s=4.5)[0].parts['detections'] == 'd4'
    assert join.matched == 3


def test_join_duplicates_overflow_and_drain_are_counted():
    join = StampJoin(('image', 'detections'), timeout_s=None, max_pending=2)
    join.add('image', 1, 'a', now_s=0.0)
    join.add('image', 1, 'b', now_s=0.1)  # replaces a
    join.add('image', 2, 'c', now_s=0.2)
    join.add('image', 3, 'd', now_s=0.3)  # over max_pending: the frame of 1 is given up
    assert join.unmatched['image'] == 2 and sorted(join.pending) == [2, 3]
    assert join.drain() == [] and join.unmatched['image'] == 4


def test_awaited_parts_wait_then_frames_go_without_them():
    join = StampJoin(('image',), ('truth',), timeout_s=2.0, awaited_s=1.0)
    assert join.add('image', 1, 'i1', now_s=0.0) == []
    assert join.add('truth', 1, 't1', now_s=0.2)[0].parts == {'image': 'i1', 'truth': 't1'}
    join.add('image', 2, 'i2', now_s=1.0)
    assert join.expire(1.9) == []
    [late] = join.expire(2.0)
    assert late.parts == {'image': 'i2'} and join.unmatched == {'image': 0, 'truth': 0}


def test_ordered_join_keeps_arrival_order():
    join = StampJoin(('image',), ('truth',), timeout_s=2.0, awaited_s=1.0, ordered=True)
    join.add('image', 1, 'i1', now_s=0.0)
    assert join.add('image', 2, 'i2', now_s=0.1) == []
    assert join.add('truth', 2, 't2', now_s=0.2) == []  # complete, but frame 1 is older
    out = join.add('truth', 1, 't1', now_s=0.3)
    assert [f.stamp_ns for f in out] == [1, 2]
    join.add('image', 3, 'i3', now_s=0.4)
    join.add('image', 4, 'i4', now_s=0.5)
    join.add('truth', 4, 't4', now_s=0.6)
    out = join.add('truth', 9, 't9', now_s=1.5)  # the arrival clock passes frame 3's wait
    assert [(f.stamp_ns, 'truth' in f.parts) for f in out] == [(3, False), (4, True)]


def test_a_join_needs_required_parts():
    with pytest.raises(ValueError):
        StampJoin((), ('truth',), timeout_s=1.0)
    with pytest.raises(ValueError, match='unknown part'):
        StampJoin(('image',), timeout_s=1.0).add('depth', 1, None, now_s=0.0)



def test_matched_frames_never_overtake_each_other():
    join = StampJoin(('image', 'detections'), ('relabels',), timeout_s=2.0, awaited_s=0.5)
    join.add('image', 1, 'i1', now_s=0.0)
    join.add('detections', 1, 'd1', now_s=0.1)  # matched, awaiting its relabels
    join.add('image', 2, 'i2', now_s=0.1)  # no detections yet: does not hold frame 3 back
    join.add('image', 3, 'i3', now_s=0.2)
    join.add('detections', 3, 'd3', now_s=0.2)
    out = join.add('relabels', 3, 'r3', now_s=0.3)
    assert [(f.stamp_ns, 'relabels' in f.parts) for f in out] == [(1, False), (3, True)]
    assert list(join.pending) == [2]


def test_release_older_lets_matched_frames_go_before_a_later_stamp():
    join = StampJoin(('image', 'detections'), ('relabels',), timeout_s=2.0, awaited_s=0.5)
    for stamp in (1, 2, 3):
        join.add('image', stamp, f'i{stamp}', now_s=0.0)
        if stamp != 2:
            join.add('detections', stamp, f'd{stamp}', now_s=0.0)
    assert [f.stamp_ns for f in join.release_older(3)] == [1]  # 2 lacks detections, 3 is not older
    assert sorted(join.pending) == [2, 3]
