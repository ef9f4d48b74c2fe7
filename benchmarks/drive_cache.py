"""The shipped detector's output on synthetic drives, with the sub-threshold candidates and the
ground truth, cached per seed (shared by tune_relabel.py and evaluate_tracking.py).

The detector runs once with its score threshold lowered to `floor` (and room for 300 boxes);
detections with score >= `threshold` (the detector node's default unless asked) are the
published ones, the rest become `FrameDetections.candidates`: what the detector node hands on
with `candidate_floor` set. NMS and the per-detection importance do not depend on the
threshold, so the published part is the detector's output at `threshold` itself.
"""
from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

from importance_sampler_ros.detection.config import DetectorConfig
from importance_sampler_ros.detection.detections import (
    FrameDetections,
    FrameScoring,
    frame_importance,
    with_candidate_floor,
)
from importance_sampler_ros.params import flat_values

CACHE = Path('build/tune_relabel_cache')
PUBLISH_THRESHOLD = DetectorConfig().score_threshold  # what the detector node publishes
CANDIDATE_FLOOR = 0.1
DEFAULT_SCORING = FrameScoring.of(flat_values(DetectorConfig()))  # the detector node's


def split_candidates(frame: FrameDetections, threshold: float = PUBLISH_THRESHOLD
                     ) -> FrameDetections:
    """The detections >= threshold, with those below it as `candidates`."""
    published = frame.select(frame.scores >= threshold)
    published.candidates = frame.select(frame.scores < threshold)
    published.frame_importance = frame_importance(published, DEFAULT_SCORING)
    return published


def detections_of_drive(seed: int, seconds: float = 60.0, floor: float = CANDIDATE_FLOOR,
                        cache: Path = CACHE, threshold: float = PUBLISH_THRESHOLD,
                        candidate_floor: float | None = CANDIDATE_FLOOR
                        ) -> list[tuple[FrameDetections, FrameDetections]]:
    """(published detections with candidates, ground truth) per frame of drive `seed` at 10 fps;
    the detections at or above `threshold` are the published ones, those in
    [candidate_floor, threshold) the candidates (DetectorConfig.published_candidate_floor;
    None: no candidates; never below `floor`, the cache's)."""
    path = cache / f'drive_{seed}_{seconds:g}_floor{floor:g}_all.pkl'
    if path.exists():
        frames = pickle.loads(path.read_bytes())
    else:
        from importance_sampler_ros.detection.detector import Detector
        from importance_sampler_ros.synth.world import SynthConfig, generate_drive

        detector = Detector(DetectorConfig(score_threshold=floor, detections_per_image=300))
        frames = [(detector.detect(f.image, f.stamp_ns, 'camera'), f.truth)
                  for f in generate_drive(SynthConfig(seconds=seconds, fps=10.0, seed=seed))]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(pickle.dumps(frames))
    kept_from = None if candidate_floor is None else max(candidate_floor, floor)
    return [(with_candidate_floor(split_candidates(det, threshold), kept_from), truth)
            for det, truth in frames]


if __name__ == '__main__':
    import sys

    for seed in map(int, sys.argv[1:]):
        drive = detections_of_drive(seed)
        print(seed, len(drive), 'frames',
              np.mean([len(d) for d, _ in drive]), 'published/frame',
              np.mean([len(d.candidates) for d, _ in drive]), 'candidates/frame', flush=True)
