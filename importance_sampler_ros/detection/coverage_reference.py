"""`importance-sampler coverage-reference`: the frame descriptors of a detector on frames of its
training distribution, saved as .npy for `recorder_node.coverage_reference`.

With them the coverage frame score (sampling/coverage.py) and `importance-sampler select`
whiten descriptors by the training frames' covariance, so that distances count every direction
the training data varies in alike. For the shipped
detector the frames are synthetic frames of its training mix ('common', seeds no training, pool
or test drive uses); a detector trained on other data should be given frames of its own
training set (`--bag`).
"""
from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from importance_sampler_ros.progress import add_progress_arguments, progress, progress_mode

REFERENCE_SEED_BASE = 1_950_000_000  # training mix frames no other part of the project draws


def _synthetic_images(count: int) -> Iterator[np.ndarray]:
    from importance_sampler_ros.synth.world import random_frame

    for i in range(count):
        yield random_frame(REFERENCE_SEED_BASE + i, mix='common').image


def _bag_images(bag: Path, image_topic: str | None, count: int) -> Iterator[np.ndarray]:
    """The first `count` images of the bag's image topic, read as replay reads them."""
    from importance_sampler_ros.bags.frames import FrameSource
    from importance_sampler_ros.bags.images import image_to_rgb

    for n, frame in enumerate(FrameSource(bag, image_topic)):
        if n == count:
            return
        yield image_to_rgb(frame.image)


def reference_descriptors(detector, images: Iterator[np.ndarray], total: int,
                          mode: str = 'auto') -> np.ndarray:
    """(frames, 2 D) float32: each image's DetectionArray.frame_descriptor."""
    rows = [detector.detect(image, stamp_ns=k).descriptor
            for k, image in enumerate(progress(images, total, desc='coverage reference',
                                               unit='frames', mode=mode))]
    if len(rows) < 2:
        raise ValueError(f'need at least 2 frames for a coverage reference, got {len(rows)}')
    return np.stack(rows).astype(np.float32)


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('--out', type=Path, required=True, help='the .npy to write')
    parser.add_argument('--frames', type=int, default=400, help='how many frames')
    parser.add_argument('--bag', type=Path, default=None,
                        help="frames from this bag's images (the detector's own training data) "
                             "instead of synthetic frames of the shipped model's training mix")
    parser.add_argument('--image-topic', default=None,
                        help='with --bag: the image topic, when the bag has several')
    parser.add_argument('--checkpoint', default=None, help='detector (default: the shipped one)')
    parser.add_argument('--device', default='cpu', help="'cpu' or 'cuda'")
    add_progress_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from importance_sampler_ros.detection.config import DetectorConfig
    from importance_sampler_ros.detection.detector import Detector
    from importance_sampler_ros.offline.pipeline import load_parameters

    overrides = {'device': args.device, **({'checkpoint': args.checkpoint}
                                           if args.checkpoint else {})}
    params, _ = load_parameters(None, {'detector_node': overrides})
    detector = Detector(params['detector_node'].of(DetectorConfig))
    try:
        images = (_bag_images(args.bag, args.image_topic, args.frames) if args.bag
                  else _synthetic_images(args.frames))
        descriptors = reference_descriptors(detector, images, args.frames, progress_mode(args))
    except ValueError as error:
        print(f'coverage-reference: {error}', file=sys.stderr)
        return 2
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.save(args.out, descriptors)
    print(f'{len(descriptors)} descriptors of {descriptors.shape[1]} values from '
          f'{detector.model_name} -> {args.out}')
    return 0
