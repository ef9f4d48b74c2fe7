"""Coverage: how far a frame lies, in the detector's own feature space, from every frame kept so
far. A frame score for the sampler (`recorder_node.frame_score: coverage`).

Each frame's descriptor (DetectionArray.frame_descriptor) is the mean and standard deviation over
the frame's region proposals of the box head's output features: what the detector's last layers
see of the whole scene, computed in the same forward pass. With a reference (`coverage_reference`:
descriptors of the detector's training frames, `importance-sampler coverage-reference`) they are
whitened by its covariance; without one, each dimension is standardised by a running mean and
variance over every frame seen (Welford). The score is the Euclidean distance to the nearest of
the last `memory` kept frames. The kept frames can outlive the run (`coverage_bank`: read at
start, written at close), so that a car whose recorder restarts every drive, or a fleet sharing
one bank, keeps what is not covered yet rather than starting afresh.

With `draw: threshold` the sampler keeps a frame when its distance passes a threshold that
follows the keep ratio: an online cover. With the proportional draws q follows the distance
(q = rho d / mean d), which leans only gently towards far frames.

Measured in the closed loop (box head retrained, `--retrain-from fc6`; docs/measurements/
closed_loop_cpu.md, session 5), gain over as many random frames in mAP points: on the tuning
pool (5 %, 10 seeds) the online cover +0.47 +- 0.24 (standard error), the same as keeping every
n-th frame (+0.52 +- 0.20) and less than the greedy k-center cover of the whole pool (+0.98 +-
0.20, sampling/cover.py), which picks the most extreme frames first where the online rule takes
the first frame of each new region; on the unseen drives (2 %, 5 seeds) the online cover -0.43
+- 0.25 (sd), the whole-pool cover -0.09 +- 0.22. Not the default.

The distance depends on which frames were kept before, so q_i is fixed before frame i's coin but
not independent of earlier coins: the 1/q weights keep the Horvitz-Thompson argument of
sampler.py (E[1{kept_i}/q_i | past] = 1 with independent draws; approximately with systematic
draws, as for the byte budget).
"""
from __future__ import annotations

import numpy as np


class CoverageScore:
    """Distance of each frame's descriptor to the nearest kept frame's (standardised).

    reference: descriptors of frames the detector was trained on (coverage-reference), or None.
    With one, descriptors are whitened by the reference's mean and covariance (shrunk towards its
    average variance by `shrinkage`); without, each dimension is standardised by a running mean
    and variance. `bank`: raw descriptors of frames kept before (an earlier run's `bank()`),
    counted as kept from the start.
    """

    def __init__(self, memory: int = 2000, reference: np.ndarray | None = None,
                 shrinkage: float = 0.1, bank: np.ndarray | None = None) -> None:
        if memory < 1:
            raise ValueError(f'memory must be >= 1, got {memory}')
        self._memory = memory
        # the latest `memory` kept descriptors, a ring: raw, and whitened with a reference
        self._raw = np.zeros((0, 0))
        self._white: np.ndarray | None = None
        self._filled = 0
        self._next = 0
        self._count = 0
        self._mean: np.ndarray | None = None
        self._m2: np.ndarray | None = None
        self._whiten: np.ndarray | None = None
        if reference is not None:
            self._mean, self._whiten = whitening(reference, shrinkage)
        if bank is not None:
            bank = np.asarray(bank, np.float64)
            if bank.ndim != 2 or not np.isfinite(bank).all():
                raise ValueError(f'coverage bank must be finite frames x values, got shape '
                                 f'{bank.shape}')
            for descriptor in bank[-memory:]:
                self.note_kept(descriptor)

    @property
    def kept(self) -> int:
        """Kept frames the distance is measured to (at most `memory`)."""
        return self._filled

    def bank(self) -> np.ndarray:
        """The remembered kept descriptors, raw, oldest first (what `bank=` takes back)."""
        if self._filled < self._memory:
            return self._raw[:self._filled].copy()
        return np.roll(self._raw, -self._next, axis=0)

    def _standardised(self, x: np.ndarray) -> np.ndarray:
        if self._whiten is not None:
            return (x - self._mean) @ self._whiten
        scale = np.sqrt(self._m2 / max(1, self._count - 1)) + 1e-6
        return (x - self._mean) / scale

    def _check(self, descriptor: np.ndarray) -> np.ndarray:
        x = np.asarray(descriptor, np.float64).reshape(-1)
        if x.size == 0 or not np.isfinite(x).all():
            raise ValueError('frame descriptor must be a non-empty finite vector')
        size = self._mean.size if self._mean is not None else self._raw.shape[1] or x.size
        if x.size != size:
            raise ValueError(f'frame descriptor has {x.size} values, earlier frames {size}')
        return x

    def observe(self, descriptor: np.ndarray) -> float:
        """Add the frame to the running statistics and return its distance to the nearest kept
        frame, 0 while there is none. Raises ValueError for an empty, non-finite or
        wrong-sized descriptor."""
        x = self._check(descriptor)
        if self._mean is None:
            self._mean, self._m2 = np.zeros_like(x), np.zeros_like(x)
        self._count += 1
        if self._whiten is None:
            delta = x - self._mean
            self._mean += delta / self._count
            self._m2 += delta * (x - self._mean)
        if not self._filled:
            return 0.0
        z = self._standardised(x)
        if self._whiten is not None:
            kept = self._white[:self._filled]
        else:  # the running scale moves: standardise the raw bank anew
            kept = self._standardised(self._raw[:self._filled])
        return float(np.sqrt(((kept - z) ** 2).sum(axis=1).min()))

    def note_kept(self, descriptor: np.ndarray) -> None:
        x = self._check(descriptor)
        if not self._raw.size:
            self._raw = np.zeros((self._memory, x.size))
            self._white = np.zeros((self._memory, x.size)) if self._whiten is not None else None
        self._raw[self._next] = x
        if self._whiten is not None:
            self._white[self._next] = (x - self._mean) @ self._whiten
        self._next = (self._next + 1) % self._memory
        self._filled = min(self._filled + 1, self._memory)


def whitening(reference: np.ndarray, shrinkage: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
    """Mean and whitening matrix W of `reference` (frames x values): (x - mean) @ W has unit
    covariance over the reference, its covariance shrunk towards its average variance by
    `shrinkage` so that few frames in many dimensions still give a well-conditioned W."""
    reference = np.asarray(reference, np.float64)
    if reference.ndim != 2 or len(reference) < 2 or not np.isfinite(reference).all():
        raise ValueError('coverage reference must be finite descriptors of >= 2 frames')
    mean = reference.mean(axis=0)
    covariance = np.cov(reference - mean, rowvar=False)
    average = np.trace(covariance) / len(covariance)
    covariance = (1 - shrinkage) * covariance + shrinkage * average * np.eye(len(covariance))
    values, vectors = np.linalg.eigh(covariance)
    return mean, vectors / np.sqrt(np.maximum(values, 1e-12))


def load_reference(path: str) -> np.ndarray:
    """Descriptors saved as .npy (frames x values): by `importance-sampler coverage-reference`,
    or a coverage bank."""
    reference = np.load(path, allow_pickle=False)
    if reference.ndim != 2:
        raise ValueError(f'{path}: expected a frames x values array, got shape {reference.shape}')
    return reference.astype(np.float64)
