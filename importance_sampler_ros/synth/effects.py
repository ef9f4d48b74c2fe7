"""Whole-image effects of rare situations (numpy only), applied to the float RGB frame before
sensor noise: rain (falling streaks, drops on the windscreen that blur what lies behind them)
and glare (a low sun near the horizon: bloom, a veil that lowers contrast, lens-flare ghosts).

Each effect is planned once per episode from its own generator and rendered per frame from a
generator of (drive seed, frame index), so that frame k can be rendered on its own.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def _box_blur_axis(a: np.ndarray, n: int, axis: int) -> np.ndarray:
    """Same-size moving mean over n samples along axis (edges padded by replication)."""
    if n < 2:
        return a
    pad = [(0, 0)] * a.ndim
    pad[axis] = (n // 2 + 1, n - n // 2 - 1)
    c = np.cumsum(np.pad(a, pad, mode='edge'), axis=axis, dtype=np.float32)
    size = a.shape[axis]
    hi = np.take(c, np.arange(n, n + size), axis=axis)
    lo = np.take(c, np.arange(0, size), axis=axis)
    return (hi - lo) / np.float32(n)


@dataclass
class Rain:
    """Streak density (streaks per frame), streak length (px) and windscreen drops
    (x, y, radius in px, downward speed in px/s)."""

    streaks: int
    length: int
    brightness: float
    drops: np.ndarray  # (K, 4)

    @classmethod
    def plan(cls, rng: np.random.Generator, width: int, height: int) -> Rain:
        k = int(rng.integers(5, 11))
        drops = np.c_[rng.uniform(0, width, k), rng.uniform(0, height, k),
                      rng.uniform(0.05, 0.12, k) * height, rng.uniform(2, 12, k)]
        return cls(int(rng.integers(250, 600)), int(rng.integers(7, 15)),
                   float(rng.uniform(0.25, 0.45)), drops)

    def apply(self, image: np.ndarray, t: float, rng: np.random.Generator) -> None:
        h, w = image.shape[:2]
        streak = np.zeros((h, w), np.float32)
        rows = rng.integers(0, h, self.streaks)
        cols = rng.integers(0, w, self.streaks)
        streak[rows, cols] = rng.uniform(0.4, 1.0, self.streaks).astype(np.float32)
        streak = _box_blur_axis(streak, self.length, 0) * np.float32(self.brightness * 3.0)
        image += streak[..., None] * np.array((0.75, 0.78, 0.85), np.float32)
        for x, y, r, vy in self.drops:
            yc = (y + vy * t) % (h + 2 * r) - r
            r0, r1 = int(max(yc - r, 0)), int(min(yc + r + 1, h))
            c0, c1 = int(max(x - r, 0)), int(min(x + r + 1, w))
            if r1 - r0 < 2 or c1 - c0 < 2:
                continue
            patch = image[r0:r1, c0:c1]
            n = max(3, int(r * 0.7))
            blurred = _box_blur_axis(_box_blur_axis(patch, n, 0), n, 1)
            yy, xx = np.mgrid[r0:r1, c0:c1]
            inside = ((yy - yc) ** 2 + (xx - x) ** 2) <= r * r
            # a drop is a small lens: blurred, brighter, flipped about its centre row
            blurred = blurred[::-1] * np.float32(0.85) + np.float32(0.1)
            patch[inside] = blurred[inside]


@dataclass
class Glare:
    """A low sun at (x, y) px: additive bloom and flare ghosts, and a veil (0..1) that mixes
    every pixel towards the bloom's colour (contrast loss)."""

    add: np.ndarray  # (H, W, 3) float32
    keep: np.ndarray  # (H, W, 1) float32, 1 - veil

    @classmethod
    def plan(cls, rng: np.random.Generator, width: int, height: int, horizon: float) -> Glare:
        sx = float(rng.uniform(0.15, 0.85) * width)
        sy = float(horizon - rng.uniform(2, 0.2 * height))
        yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
        r2 = (xx - sx) ** 2 + (yy - sy) ** 2
        sigma = float(rng.uniform(0.1, 0.18) * height)
        strength = float(rng.uniform(0.9, 1.6))
        warm = np.array((1.0, 0.93, 0.75), np.float32)
        bloom = strength * np.exp(-r2 / (2 * sigma ** 2))
        veil = float(rng.uniform(0.3, 0.5)) * np.exp(-np.sqrt(r2) / (0.9 * width))
        add = (bloom + 0.8 * veil)[..., None] * warm
        cx, cy = width / 2, height / 2
        for _ in range(int(rng.integers(3, 6))):  # ghosts on the line through the image centre
            f = float(rng.uniform(0.6, 2.2))
            gx, gy = sx + f * (cx - sx), sy + f * (cy - sy)
            radius = float(rng.uniform(0.03, 0.12) * height)
            tint = np.array(rng.uniform(0.4, 1.0, 3), np.float32)
            disc = np.clip(1.2 - np.sqrt((xx - gx) ** 2 + (yy - gy) ** 2) / radius, 0, 1)
            add += (float(rng.uniform(0.12, 0.35)) * disc)[..., None] * tint
        keep = (1.0 - veil - 0.5 * np.clip(bloom, 0, 1))[..., None]
        return cls(add.astype(np.float32), np.clip(keep, 0.2, 1.0).astype(np.float32))

    def apply(self, image: np.ndarray) -> None:
        image *= self.keep
        image += self.add
