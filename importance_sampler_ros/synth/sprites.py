"""High-resolution sprites of the synthetic world's objects (numpy only).

Each object is drawn once at about 120 px tall in metres-based coordinates (x from the object's
centre line to the right, y up from the ground) and later downsampled to its projected size, so
that details smaller than a pixel really vanish. Look-alike classes share palettes and silhouettes:

- car / van / truck (rear or front view) all have a body colour from one palette, a dark upper
  part (glass, or a dark panel on trucks) and dark wheels below. They differ in thin parts: the
  van's window pillar and door seam, the truck's lock bars, under-run bar and double wheels, the
  shape of the lights (a few percent of the object's width).
- pedestrian / cyclist (rear or front view) have the same clothes palettes and proportions; the
  cyclist shows a 4 cm tyre between the legs, a handlebar and a helmet. Side views (crossing
  traffic) are rarer; a side-view cyclist's wheels stay recognisable longer.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

Colour = tuple[float, float, float]

BODY_PALETTE: tuple[Colour, ...] = (
    (0.85, 0.85, 0.84), (0.62, 0.63, 0.65), (0.36, 0.37, 0.39), (0.06, 0.06, 0.07),
    (0.55, 0.07, 0.06), (0.10, 0.20, 0.50), (0.08, 0.26, 0.13), (0.70, 0.62, 0.46),
    (0.80, 0.66, 0.12), (0.30, 0.12, 0.08),
)
CLOTHES_PALETTE: tuple[Colour, ...] = (
    (0.08, 0.08, 0.10), (0.15, 0.18, 0.35), (0.55, 0.10, 0.10), (0.80, 0.80, 0.78),
    (0.35, 0.36, 0.30), (0.60, 0.50, 0.30), (0.10, 0.35, 0.20), (0.85, 0.55, 0.10),
    (0.30, 0.30, 0.55), (0.45, 0.45, 0.47),
)
SKIN_PALETTE: tuple[Colour, ...] = (
    (0.85, 0.66, 0.52), (0.65, 0.45, 0.32), (0.40, 0.26, 0.18), (0.92, 0.76, 0.64),
)
HAIR_PALETTE: tuple[Colour, ...] = (
    (0.05, 0.04, 0.03), (0.25, 0.15, 0.08), (0.55, 0.40, 0.20), (0.50, 0.50, 0.50),
    (0.80, 0.20, 0.15), (0.15, 0.30, 0.70), (0.90, 0.90, 0.88),
)
TYRE: Colour = (0.03, 0.03, 0.03)
UNDERBODY: Colour = (0.02, 0.02, 0.025)
TAIL_LIGHT: Colour = (0.55, 0.03, 0.02)
HEAD_LIGHT: Colour = (0.85, 0.85, 0.78)
PLATE: Colour = (0.85, 0.85, 0.82)

# How bright lights glow (emissive, added after lighting) by light level name.
LIGHT_EMISSION = {'day': 0.0, 'dusk': 0.6, 'night': 1.0}


@dataclass
class Sprite:
    """Premultiplied RGBA plus emissive RGB, in a (rows, cols, 7) float32 stack.

    Channels 0-2: albedo x alpha, 3: alpha, 4-6: emission (lights, added after lighting).
    `width_m`/`height_m` give the metric extent the stack covers.
    """

    stack: np.ndarray
    width_m: float
    height_m: float
    _levels: list[np.ndarray] = field(default_factory=list, repr=False)

    def for_size(self, rows: float, cols: float) -> np.ndarray:
        """The stack halved (2x2 means) as often as keeps it >= 2x the target size: resampling
        that is as sharp and much cheaper for small targets."""
        if not self._levels:
            self._levels.append(self.stack)
        level = self._levels[0]
        k = 0
        while level.shape[0] >= 4 * max(rows, 1.0) and level.shape[1] >= 4 * max(cols, 1.0):
            k += 1
            if k == len(self._levels):
                r, c = level.shape[0] // 2 * 2, level.shape[1] // 2 * 2
                half = level[:r, :c].reshape(r // 2, 2, c // 2, 2, -1).mean(axis=(1, 3))
                self._levels.append(np.ascontiguousarray(half, np.float32))
            level = self._levels[k]
        return level


class Canvas:
    """A drawing surface in metres: x right of the centre line, y up from the ground."""

    def __init__(self, width_m: float, height_m: float, px_per_m: float) -> None:
        self.width_m, self.height_m, self.ppm = width_m, height_m, px_per_m
        self.cols = max(2, round(width_m * px_per_m))
        self.rows = max(2, round(height_m * px_per_m))
        self.rgb = np.zeros((self.rows, self.cols, 3), np.float32)
        self.alpha = np.zeros((self.rows, self.cols), np.float32)
        self.emit = np.zeros((self.rows, self.cols, 3), np.float32)
        # pixel-centre coordinates in metres
        self._xs = ((np.arange(self.cols) + 0.5) / px_per_m - width_m / 2).astype(np.float32)
        self._ys = (height_m - (np.arange(self.rows) + 0.5) / px_per_m).astype(np.float32)

    def _cols(self, x0: float, x1: float) -> slice:
        c0 = round((min(x0, x1) + self.width_m / 2) * self.ppm)
        c1 = round((max(x0, x1) + self.width_m / 2) * self.ppm)
        return slice(max(0, c0), min(self.cols, max(c1, c0 + 1)))

    def _rows(self, y0: float, y1: float) -> slice:
        r0 = round((self.height_m - max(y0, y1)) * self.ppm)
        r1 = round((self.height_m - min(y0, y1)) * self.ppm)
        return slice(max(0, r0), min(self.rows, max(r1, r0 + 1)))

    def _paint(self, index: object, colour: Colour, glow: float) -> None:
        self.rgb[index] = colour
        self.alpha[index] = 1.0
        self.emit[index] = tuple(glow * c for c in colour)

    def rect(self, x0: float, y0: float, x1: float, y1: float, colour: Colour,
             glow: float = 0.0) -> None:
        self._paint((self._rows(y0, y1), self._cols(x0, x1)), colour, glow)

    def mirrored_rect(self, x0: float, y0: float, x1: float, y1: float, colour: Colour,
                      glow: float = 0.0) -> None:
        """The rectangle and its mirror image about the centre line (x0, x1 >= 0)."""
        self.rect(x0, y0, x1, y1, colour, glow)
        self.rect(-x1, y0, -x0, y1, colour, glow)

    def _mask_paint(self, mask: np.ndarray, rows: slice, cols: slice, colour: Colour,
                    glow: float) -> None:
        self.rgb[rows, cols][mask] = colour
        self.alpha[rows, cols][mask] = 1.0
        self.emit[rows, cols][mask] = tuple(glow * c for c in colour)

    def ellipse(self, xc: float, yc: float, rx: float, ry: float, colour: Colour,
                glow: float = 0.0, upper_only: bool = False) -> None:
        rows, cols = self._rows(yc - ry, yc + ry), self._cols(xc - rx, xc + rx)
        dx = (self._xs[cols] - xc) / rx
        dy = (self._ys[rows] - yc) / ry
        mask = dx[None, :] ** 2 + dy[:, None] ** 2 <= 1.0
        if upper_only:
            mask &= (dy >= 0)[:, None]
        self._mask_paint(mask, rows, cols, colour, glow)

    def trapezoid(self, y0: float, y1: float, half_bottom: float, half_top: float,
                  colour: Colour, xc: float = 0.0, glow: float = 0.0) -> None:
        """Symmetric trapezoid from y0 (half width half_bottom) to y1 (half width half_top)."""
        half = max(half_bottom, half_top)
        rows, cols = self._rows(y0, y1), self._cols(xc - half, xc + half)
        frac = np.clip((self._ys[rows] - y0) / max(y1 - y0, 1e-6), 0.0, 1.0)
        half_w = half_bottom + (half_top - half_bottom) * frac
        mask = np.abs(self._xs[cols] - xc)[None, :] <= half_w[:, None]
        self._mask_paint(mask, rows, cols, colour, glow)

    def segment(self, x0: float, y0: float, x1: float, y1: float, thickness: float,
                colour: Colour, glow: float = 0.0) -> None:
        r = thickness / 2
        rows = self._rows(min(y0, y1) - r, max(y0, y1) + r)
        cols = self._cols(min(x0, x1) - r, max(x0, x1) + r)
        px, py = self._xs[cols][None, :], self._ys[rows][:, None]
        dx, dy = x1 - x0, y1 - y0
        t = np.clip(((px - x0) * dx + (py - y0) * dy) / max(dx * dx + dy * dy, 1e-9), 0, 1)
        mask = (px - x0 - t * dx) ** 2 + (py - y0 - t * dy) ** 2 <= r * r
        self._mask_paint(mask, rows, cols, colour, glow)

    def ring(self, xc: float, yc: float, radius: float, thickness: float, colour: Colour) -> None:
        r = radius + thickness / 2
        rows, cols = self._rows(yc - r, yc + r), self._cols(xc - r, xc + r)
        d = np.sqrt((self._xs[cols][None, :] - xc) ** 2 + (self._ys[rows][:, None] - yc) ** 2)
        self._mask_paint(np.abs(d - radius) <= thickness / 2, rows, cols, colour, 0.0)

    def sprite(self) -> Sprite:
        stack = np.concatenate(
            [self.rgb * self.alpha[..., None], self.alpha[..., None], self.emit], axis=2)
        return Sprite(np.ascontiguousarray(stack, np.float32), self.width_m, self.height_m)


def _shade(colour: Colour, factor: float) -> Colour:
    return tuple(float(min(1.0, c * factor)) for c in colour)  # type: ignore[return-value]


def _pick(rng: np.random.Generator, palette: tuple[Colour, ...]) -> Colour:
    return _shade(palette[rng.integers(len(palette))], float(rng.uniform(0.8, 1.15)))


@dataclass
class VehicleLook:
    width_m: float
    height_m: float
    body: Colour
    glass: Colour
    panel: Colour
    jitter: tuple[float, ...]


@dataclass
class PersonLook:
    height_m: float
    shirt: Colour
    trousers: Colour
    skin: Colour
    hair: Colour
    shoes: Colour
    backpack: Colour | None
    hat: bool
    coat: bool


VEHICLE_SIZES = {  # class name -> (width range, height range) in metres; heights overlap
    'car': ((1.65, 1.9), (1.38, 1.85)),
    'van': ((1.8, 2.05), (1.75, 2.35)),
    'truck': ((2.1, 2.5), (2.3, 3.3)),
}


def sample_vehicle_look(cls: str, rng: np.random.Generator) -> VehicleLook:
    (w0, w1), (h0, h1) = VEHICLE_SIZES[cls]
    glass = _shade((0.07, 0.09, 0.12), float(rng.uniform(0.6, 2.2)))
    panel = glass if rng.random() < 0.7 else _pick(rng, BODY_PALETTE)
    return VehicleLook(float(rng.uniform(w0, w1)), float(rng.uniform(h0, h1)),
                       _pick(rng, BODY_PALETTE), glass, panel,
                       tuple(float(v) for v in rng.uniform(-1, 1, 4)))


def sample_person_look(rng: np.random.Generator) -> PersonLook:
    return PersonLook(
        height_m=float(rng.uniform(1.55, 1.95)), shirt=_pick(rng, CLOTHES_PALETTE),
        trousers=_pick(rng, CLOTHES_PALETTE), skin=_pick(rng, SKIN_PALETTE),
        hair=_pick(rng, HAIR_PALETTE), shoes=_shade(TYRE, float(rng.uniform(1, 5))),
        backpack=_pick(rng, CLOTHES_PALETTE) if rng.random() < 0.3 else None,
        hat=bool(rng.random() < 0.35), coat=bool(rng.random() < 0.25))


def _vehicle_canvas(look: VehicleLook, extra_width: float = 0.0) -> Canvas:
    ppm = min(120.0 / look.height_m, 160.0 / (look.width_m + extra_width))
    return Canvas(look.width_m + extra_width, look.height_m, ppm)


def draw_vehicle(cls: str, view: str, look: VehicleLook, glow: float, variant: str = '',
                 unlit: bool = False) -> Sprite:
    """A car, van or truck seen from behind ('rear') or ahead ('front'); variant
    'car_transporter' (a truck) carries cars on two open decks; unlit: lamps do not glow."""
    if unlit:
        glow = 0.0
    if variant == 'car_transporter':
        return _draw_car_transporter(view, look, glow)
    w, h, j = look.width_m, look.height_m, look.jitter
    mirrors = view == 'front' and cls in ('van', 'truck')
    c = _vehicle_canvas(look, 0.22 if mirrors else 0.0)
    lamp = TAIL_LIGHT if view == 'rear' else HEAD_LIGHT
    lamp_glow = glow * (1.0 if view == 'front' else 0.8)
    clearance = 0.21 * h if cls == 'truck' else 0.1 * h
    # wheels and the dark underside (visible road is under the chassis; drawn dark: shadow)
    c.rect(-0.42 * w, 0, 0.42 * w, clearance, UNDERBODY)
    if cls == 'truck':
        c.mirrored_rect(0.2 * w, 0, 0.49 * w, 0.17 * h, TYRE)
        c.mirrored_rect(0.335 * w, 0.02 * h, 0.35 * w, 0.15 * h, _shade(look.body, 0.5))
        c.rect(-0.4 * w, 0.07 * h, 0.4 * w, 0.1 * h, (0.3, 0.3, 0.3))  # under-run bar
    else:
        c.mirrored_rect(0.28 * w, 0, 0.46 * w, 0.14 * h, TYRE)
    if cls == 'car':
        c.rect(-w / 2, clearance, w / 2, 0.56 * h, look.body)
        top_half = (0.37 + 0.02 * j[0]) * w
        c.trapezoid(0.56 * h, h, 0.47 * w, top_half, look.body)
        c.trapezoid(0.6 * h, 0.93 * h, 0.41 * w, top_half - 0.06 * w, look.glass)
        if view == 'rear':
            c.mirrored_rect(0.3 * w, 0.42 * h, 0.47 * w, 0.5 * h, lamp, lamp_glow)
        else:
            c.mirrored_rect(0.28 * w, 0.38 * h, 0.46 * w, 0.45 * h, lamp, lamp_glow)
            c.rect(-0.2 * w, 0.25 * h, 0.2 * w, 0.34 * h, UNDERBODY)  # grille
    elif cls == 'van':
        c.rect(-0.49 * w, clearance, 0.49 * w, 0.86 * h, look.body)
        c.trapezoid(0.86 * h, h, 0.49 * w, 0.45 * w, look.body)
        if view == 'rear':
            c.rect(-0.41 * w, 0.6 * h, -0.05 * w, (0.88 + 0.02 * j[1]) * h, look.glass)
            c.rect(0.05 * w, 0.6 * h, 0.41 * w, (0.88 + 0.02 * j[1]) * h, look.glass)
            c.rect(-0.012 * w, 0.18 * h, 0.012 * w, 0.95 * h, UNDERBODY)  # door seam
            c.mirrored_rect(0.42 * w, 0.3 * h, 0.48 * w, 0.55 * h, lamp, lamp_glow)
        else:
            c.rect(-0.44 * w, 0.56 * h, 0.44 * w, 0.92 * h, look.glass)
            c.mirrored_rect(0.49 * w, 0.62 * h, 0.49 * w + 0.11, 0.74 * h, UNDERBODY)
            c.mirrored_rect(0.3 * w, 0.38 * h, 0.46 * w, 0.47 * h, lamp, lamp_glow)
            c.rect(-0.2 * w, 0.3 * h, 0.2 * w, 0.4 * h, UNDERBODY)
    else:  # truck: a box body (rear) or a cab (front)
        c.rect(-w / 2, clearance, w / 2, h, look.body)
        if view == 'rear':
            c.rect(-0.42 * w, 0.6 * h, 0.42 * w, (0.92 + 0.02 * j[1]) * h, look.panel)
            c.rect(-0.007 * w, 0.23 * h, 0.007 * w, 0.98 * h, UNDERBODY)  # door seam
            for x in (0.12, 0.36):  # lock bars
                c.mirrored_rect(x * w, 0.24 * h, (x + 0.016) * w, 0.95 * h, (0.28, 0.28, 0.28))
            c.mirrored_rect(0.36 * w, 0.23 * h, 0.46 * w, 0.28 * h, lamp, lamp_glow)
        else:
            c.rect(-0.44 * w, 0.55 * h, 0.44 * w, 0.86 * h, look.glass)
            c.rect(-0.012 * w, 0.55 * h, 0.012 * w, 0.86 * h, look.body)  # split screen
            c.mirrored_rect(0.5 * w, 0.6 * h, 0.5 * w + 0.11, 0.75 * h, UNDERBODY)
            c.rect(-0.3 * w, 0.26 * h, 0.3 * w, 0.5 * h, UNDERBODY)
            for k in range(5):  # grille bars
                y = (0.29 + 0.045 * k) * h
                c.rect(-0.28 * w, y, 0.28 * w, y + 0.012 * h, _shade(look.body, 0.8))
            c.mirrored_rect(0.34 * w, 0.25 * h, 0.46 * w, 0.32 * h, lamp, lamp_glow)
    if cls != 'truck':
        plate_y = 0.27 * h if view == 'rear' else 0.16 * h
        c.rect(-0.1 * w, plate_y, 0.1 * w, plate_y + 0.07 * h, PLATE)
        c.rect(-0.48 * w, 0.1 * h, 0.48 * w, 0.15 * h, (0.08, 0.08, 0.08))  # bumper
    return c.sprite()


def draw_person(cls: str, view: str, look: PersonLook, phase: float, glow: float,
                variant: str = '') -> Sprite:
    """A pedestrian or a cyclist seen from behind/ahead ('rear'/'front') or crossing ('side').

    Variants: 'pedestrian_umbrella' (a canopy above the head, wider and taller than the person),
    'pedestrian_pushchair' (a pushchair beside the person), 'cyclist_trailer' (a child trailer
    and its flag: in front of the legs seen from behind, its wheels beside them from ahead, behind
    the bike from the side). The sprite's extent is person_extent()."""
    if variant == 'pedestrian_pushchair':
        return _hstack(draw_person(cls, view, look, phase, glow), _pushchair(look))
    if variant == 'cyclist_trailer' and view == 'side':
        return _hstack(_trailer_side(look, glow), draw_person(cls, view, look, phase, glow))
    if variant == 'pedestrian_umbrella':
        return _with_umbrella(draw_person(cls, view, look, phase, glow), look)
    if variant == 'cyclist_trailer':
        return _with_trailer(draw_person(cls, view, look, phase, glow), view, look, glow)
    if view == 'side':
        return _draw_person_side(cls, look, phase, glow)
    hp = look.height_m
    s = hp / 1.75  # body scale
    hip = 0.5 * hp
    r_head = 0.065 * hp
    c = Canvas(0.72 * s, 0.93 * hp if cls == 'cyclist' else hp, 110.0 / hp)
    if cls == 'pedestrian':
        shoulder = 0.82 * hp
        swing = 0.07 * s * np.sin(phase)
        for side, lift in ((-1, max(0.0, swing)), (1, max(0.0, -swing))):
            c.rect(side * 0.025 * s, lift, side * 0.15 * s, hip, look.trousers)
            c.rect(side * 0.025 * s, lift, side * 0.155 * s, lift + 0.05 * s, look.shoes)
        c.mirrored_rect(0.2 * s, 0.45 * hp, 0.26 * s, shoulder - 0.02, look.shirt)  # arms
        c.mirrored_rect(0.2 * s, 0.42 * hp, 0.26 * s, 0.45 * hp, look.skin)  # hands
    else:
        shoulder = hip + 0.28 * hp
        c.rect(-0.03 * s, 0.0, 0.03 * s, 0.68 * s, TYRE)  # the wheel, edge-on
        c.rect(-0.05 * s, 0.6 * s, 0.05 * s, 0.7 * s, (0.12, 0.12, 0.13))  # mudguard and rack
        pedal = 0.12 * s * np.sin(phase)
        for side, foot in ((-1, 0.22 * s + pedal), (1, 0.22 * s - pedal)):
            c.rect(side * 0.035 * s, foot, side * 0.14 * s, hip, look.trousers)
            c.rect(side * 0.035 * s, foot, side * 0.15 * s, foot + 0.05 * s, look.shoes)
        bar = hip + 0.11 * hp
        c.rect(-0.28 * s, bar - 0.02 * s, 0.28 * s, bar + 0.02 * s, (0.1, 0.1, 0.1))
        for side in (-1, 1):
            c.segment(side * 0.2 * s, shoulder - 0.04 * s, side * 0.26 * s, bar, 0.07 * s,
                      look.shirt)
        reflector = TAIL_LIGHT if view == 'rear' else HEAD_LIGHT
        c.rect(-0.03 * s, 0.72 * s, 0.03 * s, 0.77 * s, reflector, glow)
    # torso, neck, head
    c.trapezoid(hip, shoulder, 0.17 * s, 0.2 * s, look.shirt)
    if look.coat and cls == 'pedestrian':
        c.trapezoid(0.3 * hp, hip + 0.02, 0.2 * s, 0.17 * s, look.shirt)
    if look.backpack is not None:
        c.rect(-0.14 * s, hip + 0.05 * hp, 0.14 * s, shoulder - 0.04 * hp, look.backpack)
    head_y = shoulder + 0.02 * hp + r_head
    c.rect(-0.04 * s, shoulder - 0.01, 0.04 * s, head_y, look.skin)
    if cls == 'cyclist':  # helmet: a little wider and flatter, with a visor line
        c.ellipse(0, head_y, r_head * 0.8, r_head, look.skin)
        c.ellipse(0, head_y + 0.2 * r_head, r_head * 1.15, r_head * 0.85, look.hair,
                  upper_only=True)
        c.rect(-r_head * 1.1, head_y + 0.12 * r_head, r_head * 1.1, head_y + 0.3 * r_head,
               _shade(look.hair, 0.4))
    else:
        c.ellipse(0, head_y, r_head * 0.8, r_head, look.hair if view == 'rear' else look.skin)
        c.ellipse(0, head_y + 0.3 * r_head, r_head * 0.85, r_head * 0.75,
                  look.hair if not look.hat else _shade(look.hair, 0.6), upper_only=True)
    return c.sprite()


def _draw_person_side(cls: str, look: PersonLook, phase: float, glow: float) -> Sprite:
    hp = look.height_m
    s = hp / 1.75
    r_head = 0.065 * hp
    if cls == 'pedestrian':
        c = Canvas(0.9 * s, hp, 110.0 / hp)
        hip, shoulder = 0.5 * hp, 0.82 * hp
        stride = 0.28 * s * np.sin(phase)
        for sign in (-1, 1):
            c.segment(0, hip, sign * stride, 0.04, 0.12 * s, look.trousers)
            c.rect(sign * stride - 0.05, 0, sign * stride + 0.12, 0.05, look.shoes)
            c.segment(0, shoulder - 0.04, -sign * stride * 0.6, 0.47 * hp, 0.07 * s, look.shirt)
        c.rect(-0.12 * s, hip, 0.12 * s, shoulder, look.shirt)
        if look.backpack is not None:
            c.rect(-0.22 * s, hip + 0.08 * hp, -0.12 * s, shoulder - 0.03 * hp, look.backpack)
        head_y = shoulder + 0.02 * hp + r_head
        c.ellipse(0.01, head_y, r_head * 0.9, r_head, look.skin)
        c.ellipse(-0.01, head_y + 0.2 * r_head, r_head * 0.95, r_head * 0.8, look.hair,
                  upper_only=True)
        return c.sprite()
    c = Canvas(1.8 * s, 0.93 * hp, 110.0 / hp)
    wheel_r, frame = 0.34 * s, (0.12, 0.12, 0.13)
    for x in (-0.52 * s, 0.52 * s):
        c.ring(x, wheel_r + 0.01, wheel_r, 0.05 * s, TYRE)
    bb = (0.0, 0.3 * s)
    saddle, head_tube = (-0.12 * s, 0.85 * s), (0.4 * s, 0.8 * s)
    for a, b in ((bb, saddle), (bb, head_tube), (saddle, head_tube),
                 (bb, (-0.52 * s, wheel_r)), (head_tube, (0.52 * s, wheel_r))):
        c.segment(a[0], a[1], b[0], b[1], 0.035 * s, frame)
    hip = (saddle[0], saddle[1] + 0.05 * s)
    shoulder = (0.2 * s, 0.5 * hp + 0.28 * hp)
    for angle in (phase, phase + np.pi):
        foot = (bb[0] + 0.17 * s * np.cos(angle), bb[1] + 0.17 * s * np.sin(angle))
        knee = ((hip[0] + foot[0]) / 2 + 0.15 * s, (hip[1] + foot[1]) / 2 + 0.1 * s)
        c.segment(hip[0], hip[1], knee[0], knee[1], 0.12 * s, look.trousers)
        c.segment(knee[0], knee[1], foot[0], foot[1], 0.1 * s, look.trousers)
    c.segment(hip[0], hip[1], shoulder[0], shoulder[1], 0.22 * s, look.shirt)
    c.segment(shoulder[0], shoulder[1], head_tube[0], head_tube[1] + 0.1 * s, 0.07 * s,
              look.shirt)
    head = (shoulder[0] + 0.08 * s, shoulder[1] + 0.02 * hp + r_head)
    c.ellipse(head[0], head[1], r_head * 0.9, r_head, look.skin)
    c.ellipse(head[0], head[1] + 0.2 * r_head, r_head * 1.2, r_head * 0.85, look.hair,
              upper_only=True)
    c.rect(-0.55 * s, 0.7 * s, -0.5 * s, 0.75 * s, TAIL_LIGHT, glow)
    return c.sprite()


def draw_prop(kind: str, rng: np.random.Generator) -> Sprite:
    """Roadside clutter that is not an object class: poles with signs, trees, bollards."""
    if kind == 'pole':
        height = float(rng.uniform(2.5, 6.0))
        c = Canvas(0.7, height, 110.0 / height)
        c.rect(-0.05, 0, 0.05, height - 0.1, _shade((0.45, 0.45, 0.47), rng.uniform(0.6, 1.3)))
        if rng.random() < 0.6:
            sign = ((0.8, 0.1, 0.1), (0.1, 0.3, 0.7), (0.9, 0.9, 0.9))[rng.integers(3)]
            c.ellipse(0, height - 0.35, 0.3, 0.3, sign) if rng.random() < 0.5 else c.rect(
                -0.3, height - 0.7, 0.3, height - 0.05, sign)
        return c.sprite()
    if kind == 'bollard':
        c = Canvas(0.25, 1.0, 60.0)
        c.rect(-0.1, 0, 0.1, 0.95, (0.8, 0.8, 0.8))
        c.rect(-0.1, 0.75, 0.1, 0.85, (0.6, 0.05, 0.05), 0.5)
        return c.sprite()
    height = float(rng.uniform(4.0, 8.0))
    crown_r = float(rng.uniform(1.2, 2.4))
    c = Canvas(2 * crown_r + 0.2, height, 110.0 / height)
    c.rect(-0.12, 0, 0.12, height - crown_r, (0.25, 0.17, 0.1))
    green = _shade((0.12, 0.28, 0.1), float(rng.uniform(0.6, 1.4)))
    c.ellipse(0, height - crown_r, crown_r, crown_r, green)
    c.ellipse(0.3 * crown_r, height - 1.2 * crown_r, 0.6 * crown_r, 0.6 * crown_r,
              _shade(green, 0.75))
    return c.sprite()


# --- rare variants -------------------------------------------------------------------------------

UMBRELLA_PALETTE: tuple[Colour, ...] = (
    (0.05, 0.05, 0.06), (0.1, 0.15, 0.45), (0.6, 0.08, 0.1), (0.12, 0.35, 0.15), (0.8, 0.7, 0.1),
)
TRAILER_PALETTE: tuple[Colour, ...] = ((0.85, 0.6, 0.05), (0.2, 0.35, 0.7), (0.75, 0.1, 0.1))
UMBRELLA_RADIUS_M, UMBRELLA_RISE_M = 0.55, 0.38
PUSHCHAIR_WIDTH_M = 0.62
TRAILER_WIDTH_M, TRAILER_LENGTH_M = 0.85, 1.3
HIVIS: Colour = (0.95, 0.62, 0.05)


def person_extent(cls: str, view: str, height_m: float, variant: str = '') -> tuple[float, float]:
    """(width, height) in metres that draw_person's sprite covers."""
    s = height_m / 1.75
    width = (0.9 * s if cls == 'pedestrian' else 1.8 * s) if view == 'side' else 0.72 * s
    height = height_m if cls == 'pedestrian' else 0.93 * height_m
    if variant == 'pedestrian_umbrella':
        return max(width, 2 * UMBRELLA_RADIUS_M), height + UMBRELLA_RISE_M
    if variant == 'pedestrian_pushchair':
        return width + PUSHCHAIR_WIDTH_M, height
    if variant == 'cyclist_trailer':
        return (width + TRAILER_LENGTH_M if view == 'side' else max(width, TRAILER_WIDTH_M + 0.1),
                height)
    return width, height


def _hstack(left: Sprite, right: Sprite) -> Sprite:
    """Two sprites of the same height side by side (resampled to the taller pixel grid)."""
    rows = max(left.stack.shape[0], right.stack.shape[0])
    parts = []
    for sp in (left, right):
        if sp.stack.shape[0] != rows:
            idx = np.minimum((np.arange(rows) * sp.stack.shape[0]) // rows,
                             sp.stack.shape[0] - 1)
            parts.append(sp.stack[idx])
        else:
            parts.append(sp.stack)
    return Sprite(np.ascontiguousarray(np.concatenate(parts, axis=1)),
                  left.width_m + right.width_m, left.height_m)


def _widen(sprite: Sprite, width_m: float, height_m: float) -> Canvas:
    """A canvas of the given extent with the sprite pasted bottom-centre (same resolution)."""
    ppm = sprite.stack.shape[0] / sprite.height_m
    c = Canvas(width_m, height_m, ppm)
    r, w = sprite.stack.shape[:2]
    col0 = max(0, (c.cols - w) // 2)
    w = min(w, c.cols - col0)
    row0 = c.rows - r
    st = sprite.stack[max(0, -row0):, :w]
    a = st[..., 3]
    rows = slice(max(0, row0), c.rows)
    cols = slice(col0, col0 + w)
    safe = np.maximum(a, 1e-6)[..., None]
    c.rgb[rows, cols] = st[..., 0:3] / safe
    c.alpha[rows, cols] = a
    c.emit[rows, cols] = st[..., 4:7]
    return c


def _with_umbrella(sprite: Sprite, look: PersonLook) -> Sprite:
    width = max(sprite.width_m, 2 * UMBRELLA_RADIUS_M)
    c = _widen(sprite, width, sprite.height_m + UMBRELLA_RISE_M)
    colour = UMBRELLA_PALETTE[int(look.shirt[0] * 97 + look.trousers[1] * 53) % 5]
    top = sprite.height_m + UMBRELLA_RISE_M
    c.ellipse(0.0, top - UMBRELLA_RISE_M * 0.95, UMBRELLA_RADIUS_M, UMBRELLA_RISE_M * 0.95,
              colour, upper_only=True)
    c.segment(0.0, top - UMBRELLA_RISE_M, 0.0, sprite.height_m * 0.62, 0.025, (0.1, 0.1, 0.1))
    c.mirrored_rect(0.04, sprite.height_m * 0.6, 0.12, sprite.height_m * 0.66, look.skin)
    return c.sprite()


def _pushchair(look: PersonLook) -> Sprite:
    hp = look.height_m
    c = Canvas(PUSHCHAIR_WIDTH_M, hp, 110.0 / hp)
    body = TRAILER_PALETTE[int(look.shirt[2] * 89) % 3]
    c.mirrored_rect(0.18, 0.0, 0.27, 0.2, TYRE)
    c.rect(-0.26, 0.2, 0.26, 0.32, (0.15, 0.15, 0.16))
    c.rect(-0.24, 0.32, 0.24, 0.82, body)
    c.ellipse(0.0, 0.82, 0.27, 0.2, _shade(body, 0.7), upper_only=True)  # hood
    c.rect(-0.3, 0.95, 0.3, 0.99, (0.1, 0.1, 0.1))  # push bar
    return c.sprite()


def _with_trailer(sprite: Sprite, view: str, look: PersonLook, glow: float) -> Sprite:
    width = max(sprite.width_m, TRAILER_WIDTH_M + 0.1)
    c = _widen(sprite, width, sprite.height_m)
    fabric = TRAILER_PALETTE[int(look.shirt[1] * 71) % 3]
    half = TRAILER_WIDTH_M / 2
    c.segment(-half + 0.05, 0.3, -half + 0.05, 1.55, 0.02, (0.2, 0.2, 0.2))  # flag pole
    c.rect(-half + 0.05, 1.4, -half + 0.3, 1.55, (0.95, 0.4, 0.05), 0.3 * glow)
    c.mirrored_rect(half - 0.05, 0.0, half + 0.05, 0.45, TYRE)
    if view == 'rear':  # the trailer is nearer than the rider: it hides the legs and wheel
        c.rect(-half + 0.06, 0.12, half - 0.06, 0.8, fabric)
        c.trapezoid(0.8, 0.95, half - 0.06, half - 0.2, _shade(fabric, 0.75))
        c.mirrored_rect(half - 0.2, 0.3, half - 0.1, 0.36, TAIL_LIGHT, 0.8 * glow)
    return c.sprite()


def _trailer_side(look: PersonLook, glow: float) -> Sprite:
    hp = look.height_m
    c = Canvas(TRAILER_LENGTH_M, 0.93 * hp, 110.0 / hp)
    fabric = TRAILER_PALETTE[int(look.shirt[1] * 71) % 3]
    c.ring(-0.1, 0.23, 0.22, 0.05, TYRE)
    c.trapezoid(0.15, 0.85, 0.45, 0.3, fabric, xc=-0.1)
    c.segment(0.35, 0.35, 0.65, 0.38, 0.03, (0.15, 0.15, 0.15))  # tow bar
    c.segment(-0.5, 0.4, -0.5, 1.5, 0.02, (0.2, 0.2, 0.2))
    c.rect(-0.5, 1.35, -0.3, 1.5, (0.95, 0.4, 0.05), 0.3 * glow)
    return c.sprite()


def _small_car(c: Canvas, y0: float, width: float, height: float, body: Colour, glass: Colour,
               view: str) -> None:
    """A car's back (or front) drawn on a transporter deck starting at height y0."""
    c.rect(-width / 2, y0 + 0.1 * height, width / 2, y0 + 0.56 * height, body)
    c.trapezoid(y0 + 0.56 * height, y0 + height, 0.47 * width, 0.36 * width, body)
    c.trapezoid(y0 + 0.6 * height, y0 + 0.93 * height, 0.41 * width, 0.3 * width, glass)
    c.mirrored_rect(0.28 * width, y0, 0.46 * width, y0 + 0.14 * height, TYRE)
    lamp = TAIL_LIGHT if view == 'rear' else HEAD_LIGHT
    c.mirrored_rect(0.3 * width, y0 + 0.42 * height, 0.47 * width, y0 + 0.5 * height, lamp)


def _draw_car_transporter(view: str, look: VehicleLook, glow: float) -> Sprite:
    w, h = look.width_m, look.height_m
    c = _vehicle_canvas(look)
    steel = _shade(look.body, 0.9)
    j = look.jitter
    cars = [(_shade(BODY_PALETTE[int(abs(v) * 9.99)], 1.0)) for v in j]
    c.rect(-0.42 * w, 0, 0.42 * w, 0.2 * h, UNDERBODY)
    c.mirrored_rect(0.2 * w, 0, 0.49 * w, 0.13 * h, TYRE)
    c.rect(-0.4 * w, 0.05 * h, 0.4 * w, 0.075 * h, (0.3, 0.3, 0.3))  # under-run bar
    lower, upper = 0.22 * h, 0.58 * h
    if view == 'front':  # the cab, with the upper deck's car overhanging it
        c.rect(-w / 2, 0.12 * h, w / 2, 0.6 * h, look.body)
        c.rect(-0.44 * w, 0.38 * h, 0.44 * w, 0.56 * h, look.glass)
        c.rect(-0.3 * w, 0.18 * h, 0.3 * w, 0.33 * h, UNDERBODY)
        c.mirrored_rect(0.34 * w, 0.17 * h, 0.46 * w, 0.22 * h, HEAD_LIGHT, glow)
        c.rect(-w / 2, 0.6 * h, w / 2, 0.63 * h, steel)
        _small_car(c, 0.63 * h, 0.72 * w, 0.35 * h, cars[0], look.glass, 'front')
        return c.sprite()
    c.rect(-w / 2, lower - 0.03 * h, w / 2, lower, steel)  # deck beams
    c.rect(-w / 2, upper - 0.03 * h, w / 2, upper, steel)
    c.mirrored_rect(0.46 * w, lower, 0.5 * w, h, steel)  # side posts
    _small_car(c, lower, 0.74 * w, 0.33 * h, cars[1], look.glass, 'rear')
    _small_car(c, upper, 0.74 * w, 0.36 * h, cars[2], look.glass, 'rear')
    c.mirrored_rect(0.36 * w, 0.14 * h, 0.46 * w, 0.18 * h, TAIL_LIGHT, 0.8 * glow)
    return c.sprite()


def draw_roadworks_prop(kind: str, rng: np.random.Generator) -> Sprite:
    """Roadworks: a traffic cone, a striped barrier, or an odd machine (excavator or roller)."""
    if kind == 'cone':
        c = Canvas(0.36, 0.75, 120.0)
        orange = (0.95, 0.35, 0.05)
        c.rect(-0.18, 0.0, 0.18, 0.04, (0.1, 0.1, 0.1))
        c.trapezoid(0.04, 0.75, 0.15, 0.03, orange)
        c.trapezoid(0.35, 0.45, 0.1, 0.085, (0.92, 0.92, 0.9), glow=0.0)
        c.trapezoid(0.55, 0.62, 0.07, 0.06, (0.92, 0.92, 0.9))
        return c.sprite()
    if kind == 'barrier':
        c = Canvas(1.8, 1.15, 80.0)
        c.mirrored_rect(0.75, 0.0, 0.8, 1.0, (0.3, 0.3, 0.3))
        for k in range(6):
            colour = (0.85, 0.08, 0.06) if k % 2 == 0 else (0.93, 0.93, 0.9)
            c.rect(-0.9 + 0.3 * k, 0.65, -0.6 + 0.3 * k, 0.95, colour)
        c.ellipse(-0.75, 1.05, 0.08, 0.08, (0.95, 0.7, 0.05), glow=0.8)  # warning lamp
        return c.sprite()
    yellow = _shade((0.9, 0.68, 0.08), float(rng.uniform(0.8, 1.1)))
    if rng.random() < 0.5:  # excavator: tracks, body, cab, arm and bucket
        c = Canvas(3.6, 3.4, 40.0)
        c.rect(-1.3, 0.0, 1.3, 0.7, (0.12, 0.12, 0.12))
        c.rect(-1.2, 0.7, 1.2, 1.7, yellow)
        c.rect(-1.1, 1.7, 0.1, 2.9, yellow)
        c.rect(-0.95, 1.95, -0.05, 2.75, (0.1, 0.12, 0.14))
        c.segment(0.5, 1.6, 1.4, 3.2, 0.28, yellow)
        c.segment(1.4, 3.2, 1.7, 1.2, 0.22, yellow)
        c.trapezoid(0.5, 1.2, 0.15, 0.3, (0.2, 0.2, 0.2), xc=1.65)
        return c.sprite()
    c = Canvas(2.4, 2.9, 45.0)  # road roller: a wide drum, body and a canopy on posts
    c.rect(-1.15, 0.0, 1.15, 1.1, (0.25, 0.25, 0.27))
    c.rect(-1.0, 1.1, 1.0, 1.8, yellow)
    c.mirrored_rect(0.8, 1.8, 0.88, 2.7, (0.15, 0.15, 0.15))
    c.rect(-1.0, 2.7, 1.0, 2.85, yellow)
    c.ellipse(0.0, 2.9, 0.1, 0.08, (0.95, 0.6, 0.05), glow=0.8)
    return c.sprite()
