"""Camera, light and compositing for the synthetic world (numpy only).

The camera is a pinhole at `height_m` above a flat road looking along it; image rows below the
horizon see the ground at Z = f * height / (row - cy). Sprites are area-resampled onto the pixel
grid at their projected (sub-pixel) extent, lit, hazed (Koschmieder: transmission exp(-3 Z / V)
for visibility V) and composited far to near. An id buffer records which object covers each
pixel (alpha >= 0.4), from which the ground-truth boxes of the visible parts are taken.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from importance_sampler_ros.synth.sprites import Sprite

ALPHA_VISIBLE = 0.4  # a pixel belongs to an object when its coverage reaches this


@dataclass(frozen=True)
class Camera:
    width: int
    height: int
    focal_px: float
    cx: float
    cy: float
    height_m: float = 1.65

    @classmethod
    def for_image(cls, width: int, height: int) -> Camera:
        # KITTI-like: f ~ 0.58 of the width, horizon a little above the middle
        return cls(width, height, 0.58 * width, width / 2.0, 0.45 * height)

    def project_box(self, x_m: float, z_m: float, width_m: float, height_m: float,
                    pitch_px: float = 0.0) -> tuple[float, float, float, float]:
        """Image rectangle (x0, y0, x1, y1) of an upright rectangle standing on the ground."""
        s = self.focal_px / z_m
        cy = self.cy + pitch_px
        x0 = self.cx + (x_m - width_m / 2) * s
        return x0, cy + (self.height_m - height_m) * s, x0 + width_m * s, cy + self.height_m * s


@dataclass(frozen=True)
class Lighting:
    name: str  # 'day', 'dusk' or 'night'
    ambient: tuple[float, float, float]
    sky_top: tuple[float, float, float]
    sky_horizon: tuple[float, float, float]
    haze: tuple[float, float, float]
    visibility_m: float
    noise_sigma: float
    exposure: float  # shutter open time as a fraction of the frame interval (motion blur)
    headlights: float  # ego headlight gain on objects and road ahead
    sun_shadow: float  # how much an object darkens the ground below it

    def transmission(self, z_m: np.ndarray | float) -> np.ndarray | float:
        return np.exp(-3.0 * np.asarray(z_m) / self.visibility_m)

    def light_at(self, x_m: float, z_m: float) -> np.ndarray:
        """Light falling on an object at lateral x, distance z (ambient plus headlights)."""
        light = np.array(self.ambient, np.float32)
        if self.headlights > 0:
            cone = 1.0 if abs(x_m) < 0.3 * z_m + 2.0 else 0.35
            light = light + self.headlights * cone * np.exp(-z_m / 30.0) * np.float32(0.95)
        return light


def sample_lighting(rng: np.random.Generator) -> Lighting:
    """A drive-wide light level as the world drew it before episodes: day, dusk or night."""
    u = rng.random()
    name = 'day' if u < 0.55 else 'dusk' if u < 0.8 else 'night'
    return episode_lighting(name, 'clear', rng)


def episode_lighting(name: str, weather: str, rng: np.random.Generator) -> Lighting:
    """The light of an episode: `name` 'day' / 'dusk' / 'night', `weather` 'clear' / 'rain' /
    'fog'. Rain darkens, lowers visibility to 150-350 m and lengthens the exposure; fog brings
    visibility down to 45-90 m (Koschmieder), so contrast fades within tens of metres."""
    k = float(rng.uniform(0.85, 1.15))
    if name == 'day':
        light = Lighting('day', (k, k, k * 0.98), (0.35, 0.55, 0.85), (0.78, 0.82, 0.86),
                         (0.74, 0.77, 0.8), float(rng.uniform(300, 1500)), 0.012, 0.15, 0.0,
                         0.5)
    elif name == 'dusk':
        light = Lighting('dusk', (0.62 * k, 0.5 * k, 0.45 * k), (0.22, 0.22, 0.42),
                         (0.85, 0.52, 0.32), (0.62, 0.47, 0.42), float(rng.uniform(200, 900)),
                         0.02, 0.35, 0.3, 0.3)
    elif name == 'night':
        light = Lighting('night', (0.16 * k, 0.16 * k, 0.2 * k), (0.01, 0.01, 0.03),
                         (0.06, 0.06, 0.09), (0.06, 0.06, 0.08), float(rng.uniform(250, 900)),
                         0.028, 0.6, 0.9, 0.1)
    else:
        raise ValueError(f'unknown lighting {name!r}')
    if weather == 'rain':
        grey = float(rng.uniform(0.55, 0.75))
        amb = tuple(a * grey for a in light.ambient)
        haze = tuple(0.5 * h + 0.5 * a * 0.6 for h, a in zip(light.haze, amb, strict=True))
        light = replace(light, ambient=amb, sky_top=haze, sky_horizon=haze, haze=haze,
                        visibility_m=float(rng.uniform(150, 350)),
                        noise_sigma=light.noise_sigma * 1.6, exposure=min(0.8, light.exposure * 2),
                        sun_shadow=0.1)
    elif weather == 'fog':
        level = float(np.mean(light.ambient))
        haze = tuple(min(1.0, 0.78 * level + 0.04) for _ in range(3))
        light = replace(light, ambient=tuple(a * 0.85 for a in light.ambient), sky_top=haze,
                        sky_horizon=haze, haze=haze, visibility_m=float(rng.uniform(45, 90)),
                        sun_shadow=0.05)
    elif weather != 'clear':
        raise ValueError(f'unknown weather {weather!r}')
    return light


def pixel_span(start: float, length: float, lo: int, hi: int) -> tuple[int, int]:
    """First and one-past-last unit pixel touched by [start, start + length), within [lo, hi)."""
    first = max(int(np.floor(start)), lo)
    return first, max(min(int(np.ceil(start + length)), hi), first + 1)


def area_resample(values: np.ndarray, start: float, length: float, first: int, last: int,
                  axis: int) -> np.ndarray:
    """Area resampling along `axis`: the source's n equal cells span [start, start + length)
    in pixel units; output pixel j (first <= j < last) gets the sum of the cells weighted by
    how much of the pixel each covers (so a pixel half covered by a uniform source gets half
    its value). Uses prefix sums, no matrix products."""
    n = values.shape[axis]
    cell = length / n
    edges = (np.arange(first, last + 1, dtype=np.float64) - start) / cell
    edges = np.clip(edges, 0.0, n)
    index = np.minimum(np.floor(edges).astype(np.intp), n - 1)
    frac = (edges - index).astype(np.float32)
    prefix = np.cumsum(values, axis=axis, dtype=np.float32)
    prefix = np.concatenate([np.zeros_like(np.take(prefix, [0], axis=axis)), prefix], axis=axis)
    shape = [1] * values.ndim
    shape[axis] = len(edges)
    integral = (np.take(prefix, index, axis=axis)
                + frac.reshape(shape) * np.take(values, index, axis=axis))
    return np.diff(integral, axis=axis) * np.float32(cell)


def _box_blur(patch: np.ndarray, n: int, axis: int) -> np.ndarray:
    """Full convolution with a box of n samples along axis (the result is n - 1 longer)."""
    pad = [(0, 0)] * patch.ndim
    pad[axis] = (n, n - 1)
    c = np.cumsum(np.pad(patch, pad), axis=axis, dtype=np.float32)
    size = patch.shape[axis] + n - 1
    hi = np.take(c, np.arange(n, n + size), axis=axis)
    lo = np.take(c, np.arange(0, size), axis=axis)
    return (hi - lo) / np.float32(n)


@dataclass
class Placed:
    """A sprite resampled onto the pixel grid: rows/cols of its top-left pixel and the patch."""

    row: int
    col: int
    patch: np.ndarray  # (h, w, 7) like Sprite.stack


def place_sprite(sprite: Sprite, rect: tuple[float, float, float, float],
                 image_size: tuple[int, int], blur_px: tuple[float, float] = (0.0, 0.0)
                 ) -> Placed:
    """Resample a sprite onto the pixels of rect (x0, y0, x1, y1), optionally motion-blurred;
    only the part near the image (height, width) is computed."""
    x0, y0, x1, y1 = rect
    stack = sprite.for_size(y1 - y0, x1 - x0)
    bx, by = round(abs(blur_px[0])), round(abs(blur_px[1]))
    row0, row1 = pixel_span(y0, y1 - y0, -by, image_size[0] + by)
    col0, col1 = pixel_span(x0, x1 - x0, -bx, image_size[1] + bx)
    patch = area_resample(stack, y0, y1 - y0, row0, row1, axis=0)
    patch = area_resample(patch, x0, x1 - x0, col0, col1, axis=1)
    if bx >= 2:
        patch = _box_blur(patch, bx, 1)
        col0 -= (bx - 1) // 2
    if by >= 2:
        patch = _box_blur(patch, by, 0)
        row0 -= (by - 1) // 2
    return Placed(row0, col0, patch)


def clip_to_image(placed: Placed, height: int, width: int) -> tuple[slice, slice, np.ndarray]:
    """Image slices and the matching part of the patch (possibly empty)."""
    h, w = placed.patch.shape[:2]
    r0, c0 = max(placed.row, 0), max(placed.col, 0)
    r1, c1 = min(placed.row + h, height), min(placed.col + w, width)
    if r1 <= r0 or c1 <= c0:
        return slice(0, 0), slice(0, 0), placed.patch[:0, :0]
    sub = placed.patch[r0 - placed.row:r1 - placed.row, c0 - placed.col:c1 - placed.col]
    return slice(r0, r1), slice(c0, c1), sub


def composite(image: np.ndarray, ids: np.ndarray, placed: Placed, object_id: int,
              light: np.ndarray, transmission: float, haze: np.ndarray
              ) -> tuple[slice, slice, np.ndarray]:
    """Draw a placed sprite over `image` (float RGB) and mark its pixels in `ids`.

    Returns the image slices drawn into and the sprite's own coverage mask there."""
    rows, cols, sub = clip_to_image(placed, image.shape[0], image.shape[1])
    own = sub[..., 3] >= ALPHA_VISIBLE
    if sub.size == 0:
        return rows, cols, own
    alpha = sub[..., 3:4]
    lit = sub[..., 0:3] * (light * transmission) + alpha * (haze * (1.0 - transmission))
    lit += sub[..., 4:7] * transmission
    region = image[rows, cols]
    region *= 1.0 - alpha
    region += lit
    ids[rows, cols][own] = object_id
    return rows, cols, own


def darken(image: np.ndarray, rect: tuple[float, float, float, float], factor: float) -> None:
    """Multiply an integer-rounded rectangle of the image (a contact shadow)."""
    h, w = image.shape[:2]
    x0, y0, x1, y1 = (round(v) for v in rect)
    x0, x1, y0, y1 = max(x0, 0), min(x1, w), max(y0, 0), min(y1, h)
    if x1 > x0 and y1 > y0:
        image[y0:y1, x0:x1] *= factor


class Background:
    """Sky, distant skyline and road for one drive, precomputed with a margin of rows so that
    per-frame pitch jitter is a slice. Lane dashes move with the ego position."""

    LANE_HALF = 1.75
    ROAD_HALF = 5.25
    DASH_PERIOD, DASH_LENGTH = 9.0, 3.0

    def __init__(self, camera: Camera, lighting: Lighting, rng: np.random.Generator,
                 margin: int = 3) -> None:
        self.camera, self.lighting, self.margin = camera, lighting, margin
        w, h = camera.width, camera.height
        rows = np.arange(h + 2 * margin, dtype=np.float64) + 0.5
        cy = camera.cy + margin
        below = rows - cy
        ground = below > 0.5
        z_rows = np.where(ground, camera.focal_px * camera.height_m / np.maximum(below, 1e-3),
                          np.inf)
        xs = np.arange(w, dtype=np.float64) + 0.5 - camera.cx
        x_world = xs[None, :] * z_rows[:, None] / camera.focal_px  # lateral metres per pixel
        x_world[~ground] = 0.0
        px_m = np.where(ground, z_rows / camera.focal_px, 0.0)  # metres per pixel, laterally

        image = np.empty((len(rows), w, 3), np.float32)
        # sky: gradient from horizon colour to top colour
        elev = np.clip((cy - rows) / cy, 0.0, 1.0)[:, None]
        sky = np.array(lighting.sky_horizon) * (1 - elev) + np.array(lighting.sky_top) * elev
        image[:] = sky[:, None, :].astype(np.float32)
        # ground materials by lateral position
        ax = np.abs(x_world)
        tone = float(rng.uniform(0.75, 1.2))
        asphalt = np.array((0.3, 0.3, 0.31)) * tone
        materials = [
            (ax < self.ROAD_HALF, asphalt),
            ((ax >= self.ROAD_HALF) & (ax < self.ROAD_HALF + 0.2), np.array((0.62, 0.62, 0.6))),
            ((ax >= self.ROAD_HALF + 0.2) & (ax < 7.2), asphalt * 0.85),
            ((ax >= 7.2) & (ax < 10.0), np.array((0.5, 0.48, 0.45)) * float(rng.uniform(0.8, 1.2))),
            (ax >= 10.0, np.array((0.2, 0.3, 0.12)) * float(rng.uniform(0.7, 1.3))),
        ]
        ground_rgb = np.zeros((len(rows), w, 3), np.float32)
        for mask, colour in materials:
            ground_rgb[mask] = colour
        ground_rgb *= 1.0 + rng.uniform(-0.06, 0.06, size=(len(rows), w, 1)).astype(np.float32)
        # solid edge lines, anti-aliased by lateral coverage
        marks = np.zeros((len(rows), w), np.float32)
        for centre in (-5.0, 5.0):
            marks = np.maximum(marks, _coverage(x_world, px_m, centre, 0.15))
        dashes = np.zeros_like(marks)
        for centre in (-self.LANE_HALF, self.LANE_HALF):
            dashes = np.maximum(dashes, _coverage(x_world, px_m, centre, 0.13))
        white = np.array((0.85, 0.85, 0.82), np.float32)
        ground_rgb += marks[..., None] * (white - ground_rgb)

        # light and haze on the ground
        z_safe = np.where(ground, z_rows, 1e6)
        light = np.broadcast_to(np.array(lighting.ambient, np.float32), (len(rows), w, 3)).copy()
        if lighting.headlights > 0:
            cone = (ax < 0.3 * z_safe[:, None] + 2.0).astype(np.float32)
            pool = lighting.headlights * np.exp(-z_safe / 25.0)[:, None] * (0.3 + 0.7 * cone)
            light += pool[..., None].astype(np.float32)
        trans = np.asarray(lighting.transmission(z_safe), np.float32)[:, None, None]
        haze = np.array(lighting.haze, np.float32)
        lit_ground = ground_rgb * light * trans + haze * (1 - trans)
        image[ground] = lit_ground[ground]
        dash_lit = white * light * trans + haze * (1 - trans)
        self._dash_delta = ((dash_lit - lit_ground) * dashes[..., None]).astype(np.float32)
        self._dash_delta[~ground] = 0.0
        # sub-row distances for the dash duty cycle of far rows
        sub = rows[:, None] - 0.5 + np.array([0.125, 0.375, 0.625, 0.875])[None, :] - cy
        self._z_sub = np.where(sub > 0, camera.focal_px * camera.height_m / np.maximum(sub, 1e-3),
                               -1.0)
        self._skyline(image, rng, cy)
        # vignetting
        yy = (rows - rows.mean())[:, None] / len(rows)
        xx = (np.arange(w) - w / 2)[None, :] / w
        image *= (1.0 - 0.25 * (xx ** 2 + yy ** 2))[..., None].astype(np.float32)
        self._base = image

    def _skyline(self, image: np.ndarray, rng: np.random.Generator, cy: float) -> None:
        """Distant trees and buildings: a per-column height profile just above the horizon."""
        w = image.shape[1]
        x = np.arange(w)
        profile = 4 + 3 * np.sin(x / rng.uniform(15, 40) + rng.uniform(0, 6))
        profile += rng.uniform(0, 2, w)
        col = 0
        while col < w:  # blocks of buildings
            span = int(rng.integers(10, 60))
            if rng.random() < 0.5:
                profile[col:col + span] = np.maximum(profile[col:col + span],
                                                     rng.uniform(6, 0.15 * image.shape[0]))
            col += span
        trans = float(self.lighting.transmission(400.0))
        colour = (np.array((0.22, 0.26, 0.22)) * np.array(self.lighting.ambient) * trans
                  + np.array(self.lighting.haze) * (1 - trans))
        rows = np.arange(image.shape[0])[:, None] + 0.5
        mask = (rows < cy) & (rows > cy - profile[None, :])
        image[mask] = colour.astype(np.float32)

    def frame(self, ego_s: float, pitch_px: int) -> np.ndarray:
        """The background at ego position ego_s (metres) with the horizon moved by pitch_px."""
        m, h = self.margin, self.camera.height
        lo = m - pitch_px
        z = self._z_sub[lo:lo + h]
        duty = np.where(z > 0, ((z + ego_s) % self.DASH_PERIOD) < self.DASH_LENGTH, False)
        duty = duty.mean(axis=1).astype(np.float32)
        return self._base[lo:lo + h] + self._dash_delta[lo:lo + h] * duty[:, None, None]


def _coverage(x_world: np.ndarray, px_m: np.ndarray, centre: float, width: float) -> np.ndarray:
    """Fraction of each pixel's lateral extent covered by a line [centre +- width/2]."""
    lo = np.maximum(x_world - px_m[:, None] / 2, centre - width / 2)
    hi = np.minimum(x_world + px_m[:, None] / 2, centre + width / 2)
    return (np.clip(hi - lo, 0, None) / np.maximum(px_m[:, None], 1e-9)).astype(np.float32)
