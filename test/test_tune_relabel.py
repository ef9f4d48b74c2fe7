"""benchmarks/tune_relabel.py's measurements on a drive built by hand: the tracker's association
against the true one (--oracle-tracks)."""
import sys
from pathlib import Path

import numpy as np

from importance_sampler_ros.detection.detections import FrameDetections

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / 'benchmarks'))
from tune_relabel import measure

NAMES = {1: 'car', 2: 'van'}
FAR_FRAMES = 10
NEAR_FRAMES = 6


def _frame(t: int, box: list[float], class_id: int, score: float, truth_class: int
           ) -> tuple[FrameDetections, FrameDetections]:
    stamp = (t + 1) * 100_000_000
    detections = FrameDetections(stamp_ns=stamp, frame_id='camera', boxes=np.array([box]),
                                 class_ids=[class_id], class_names=[NAMES[class_id]],
                                 scores=[score])
    truth = FrameDetections(stamp_ns=stamp, frame_id='camera', boxes=np.array([box]),
                            class_ids=[truth_class], class_names=[NAMES[truth_class]],
                            scores=[1.0], track_ids=[7], distances=[50.0])
    return detections, truth


def _drive() -> list[tuple[FrameDetections, FrameDetections]]:
    """One van, detected far (10 px) as a car, then near (80 px) as a van 300 px to the right:
    no tracker can join the two parts by motion, the true association does."""
    far = [_frame(t, [100 + t, 80, 105 + t, 90], 1, 0.5, 2) for t in range(FAR_FRAMES)]
    near = [_frame(t, [400, 60, 440, 140], 2, 0.95, 2)
            for t in range(FAR_FRAMES, FAR_FRAMES + NEAR_FRAMES)]
    return far + near


def test_true_association_links_and_relabels_what_the_tracker_cannot():
    drive = _drive()
    tracked = measure([drive], {})
    oracle = measure([drive], {}, oracle=True)

    assert tracked['far_px_n'] == oracle['far_px_n'] == FAR_FRAMES
    assert tracked['linked_all_fixed'] == 0.0
    assert tracked['far_px'] == (0.0, 0.0, 0, 0)  # before, after, fixed, broken
    assert oracle['linked_all_fixed'] == 1.0
    assert oracle['far_wc_in_near_track'] == oracle['far_wc_seen_near'] == FAR_FRAMES
    assert oracle['far_px'] == (0.0, 1.0, FAR_FRAMES, 0)
    assert oracle['vote_right'] == (1, 1)
