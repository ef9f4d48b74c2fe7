"""Choosing which recorded frames to label: a greedy k-center cover of their descriptors.

The car keeps more frames than will be labelled (the recorder's keep_ratio); at labelling time
`importance-sampler select` picks `count` of them: from a random first frame, repeatedly the frame
farthest from every frame picked so far (Gonzalez 1985: the largest distance of any frame to its
nearest pick is within 2x of the best possible). Descriptors (DetectionArray.frame_descriptor)
are whitened by the detector's training frames (coverage-reference) when given, else standardised
per dimension over the frames themselves.

Why, measured in the closed loop with the box head retrained (fc6 judge, 5 % of the pool, 10
seeds, docs/measurements/closed_loop_cpu.md): the cover of the whole pool beats as many random
frames by about +1.0 mAP points, while every online rule the recorder can run frame by frame (q
proportional to importance or to the distance from the kept frames, a threshold on it) gets at
most what a fixed frame rate gets (+0.5). Covering the frames the car kept at 3x the labelling
budget keeps most of the gain.

The cover is a choice, not a sample: the picked frames carry no 1/q weights.
"""
from __future__ import annotations

import numpy as np

from importance_sampler_ros.sampling.coverage import whitening


def standardised(descriptors: np.ndarray, reference: np.ndarray | None = None) -> np.ndarray:
    """`descriptors` (frames x values) whitened by `reference`'s covariance, or, without one,
    each dimension scaled to unit standard deviation over the frames themselves."""
    x = np.asarray(descriptors, np.float64)
    if x.ndim != 2 or not len(x) or not np.isfinite(x).all():
        raise ValueError(f'descriptors must be finite frames x values, got shape {x.shape}')
    if reference is not None:
        mean, whiten = whitening(reference)
        if mean.shape[0] != x.shape[1]:
            raise ValueError(f'reference descriptors have {mean.shape[0]} values, the frames '
                             f'{x.shape[1]}')
        return (x - mean) @ whiten
    return (x - x.mean(axis=0)) / (x.std(axis=0) + 1e-6)


def greedy_cover(descriptors: np.ndarray, count: int, seed: int = 0,
                 reference: np.ndarray | None = None) -> np.ndarray:
    """Indices (sorted) of `count` frames covering `descriptors` (greedy k-center)."""
    x = standardised(descriptors, reference)
    n = max(1, min(len(x), int(count)))
    first = int(np.random.default_rng([seed, 5]).integers(len(x)))
    chosen = [first]
    nearest = ((x - x[first]) ** 2).sum(axis=1)
    while len(chosen) < n:
        i = int(np.argmax(nearest))
        chosen.append(i)
        nearest = np.minimum(nearest, ((x - x[i]) ** 2).sum(axis=1))
    return np.sort(np.array(chosen, np.int64))
