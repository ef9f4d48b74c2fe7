"""Situation tags of the synthetic world and the episode plan of a drive (the long tail).

A drive is a sequence of episodes (clips, as in a fleet's log: lighting and weather may change
at an episode boundary). Every frame carries the tags of its episode, as a labeller would tag it:

- lighting, exactly one: 'day', 'dusk' (common) or 'night' (rare);
- weather, exactly one: 'clear' (common), 'rain' or 'fog' (rare);
- rare conditions: 'glare' (low sun in view), 'roadworks' (cones, barriers, machines, workers),
  'dense_traffic' (a queue of close vehicles and crowded sidewalks);
- rare object variants of the existing classes: 'unlit_vehicles' (at night, lamps off),
  'cyclist_trailer', 'pedestrian_umbrella' (in the rain), 'pedestrian_pushchair',
  'car_transporter' (a truck carrying cars). Variant episodes bring several such objects close.

Episodes follow a renewal process: each next episode is common (12-30 s) or one of the rare
kinds (3-8 s), drawn with weights share / mean duration, so that over a long drive each kind
covers its `share` of the frames (RARE_KINDS; a mix scales the rare shares: 'default' 1,
'common' 0.1, i.e. rare situations as under-represented as in a fleet's first model).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

LIGHTING_TAGS = ('day', 'dusk', 'night')
WEATHER_TAGS = ('clear', 'rain', 'fog')
CONDITION_TAGS = ('glare', 'roadworks', 'dense_traffic')
VARIANT_TAGS = ('unlit_vehicles', 'cyclist_trailer', 'pedestrian_umbrella',
                'pedestrian_pushchair', 'car_transporter')
ALL_TAGS: tuple[str, ...] = LIGHTING_TAGS + WEATHER_TAGS + CONDITION_TAGS + VARIANT_TAGS
COMMON_TAGS = ('day', 'dusk', 'clear')
RARE_TAGS: tuple[str, ...] = tuple(t for t in ALL_TAGS if t not in COMMON_TAGS)

COMMON_DURATION_S = (12.0, 30.0)
RARE_DURATION_S = (3.0, 8.0)
DAY_SHARE_OF_COMMON = 0.72  # the rest of the common time is dusk


@dataclass(frozen=True)
class RareKind:
    name: str
    tags: frozenset[str]  # the tags it adds; lighting/weather not named are day-or-dusk, clear
    share: float  # fraction of the frames of a long drive in the default mix


RARE_KINDS: tuple[RareKind, ...] = (
    RareKind('night', frozenset({'night'}), 0.04),
    RareKind('night_unlit', frozenset({'night', 'unlit_vehicles'}), 0.015),
    RareKind('rain', frozenset({'rain'}), 0.035),
    RareKind('rain_umbrella', frozenset({'rain', 'pedestrian_umbrella'}), 0.02),
    RareKind('fog', frozenset({'fog'}), 0.025),
    RareKind('glare', frozenset({'glare'}), 0.02),
    RareKind('roadworks', frozenset({'roadworks'}), 0.025),
    RareKind('dense_traffic', frozenset({'dense_traffic'}), 0.03),
    RareKind('cyclist_trailer', frozenset({'cyclist_trailer'}), 0.015),
    RareKind('pedestrian_pushchair', frozenset({'pedestrian_pushchair'}), 0.015),
    RareKind('car_transporter', frozenset({'car_transporter'}), 0.015),
)
MIXES: dict[str, float] = {'default': 1.0, 'common': 0.1}

_EXCLUSIVE = (LIGHTING_TAGS, WEATHER_TAGS)
_CONFLICTS = ({'glare', 'night'}, {'glare', 'fog'}, {'glare', 'rain'},
              {'unlit_vehicles', 'day'}, {'unlit_vehicles', 'dusk'},
              {'pedestrian_umbrella', 'clear'}, {'pedestrian_umbrella', 'fog'})


@dataclass(frozen=True)
class SituationSpec:
    """What `synth --situations` asks for: tags forced on every frame, tags never shown."""

    force: frozenset[str] = frozenset()
    exclude: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        unknown = sorted((self.force | self.exclude) - set(ALL_TAGS))
        if unknown:
            raise ValueError(f'unknown situation tag(s) {unknown}; known: {list(ALL_TAGS)}')
        both = sorted(self.force & self.exclude)
        if both:
            raise ValueError(f'tag(s) {both} both forced and excluded')
        for group in _EXCLUSIVE:
            if len(self.force & set(group)) > 1:
                raise ValueError(f'at most one of {list(group)} can be forced')
        for pair in _CONFLICTS:
            if pair <= self.force:
                raise ValueError(f'tags {sorted(pair)} cannot be forced together')
        for group in _EXCLUSIVE:
            if set(group) <= self.exclude:
                raise ValueError(f'cannot exclude all of {list(group)}')


def parse_situations(words: list[str] | tuple[str, ...] | None) -> SituationSpec:
    """`night fog no-rain` -> force night and fog, exclude rain ('-rain' and '!rain' also
    exclude); 'common' excludes every rare tag. Items may be comma-separated ('night,no-rain')."""
    force, exclude = set(), set()
    for word in words or ():
        for item in str(word).split(','):
            item = item.strip()
            if not item:
                continue
            if item == 'common':
                exclude |= set(RARE_TAGS)
            elif item.startswith('no-'):
                exclude.add(item[3:])
            elif item[0] in '-!':
                exclude.add(item[1:])
            else:
                force.add(item.lstrip('+'))
    return SituationSpec(frozenset(force), frozenset(exclude))


@dataclass(frozen=True)
class Episode:
    index: int
    t0: float  # s, inclusive
    t1: float  # s, exclusive
    kind: str  # 'common' or a RareKind name ('forced' when the spec forces tags)
    tags: frozenset[str]
    density: float  # traffic and pedestrian density factor for the background traffic

    @property
    def lighting(self) -> str:
        return next(t for t in LIGHTING_TAGS if t in self.tags)

    @property
    def weather(self) -> str:
        return next(t for t in WEATHER_TAGS if t in self.tags)

    def sorted_tags(self) -> tuple[str, ...]:
        return tuple(t for t in ALL_TAGS if t in self.tags)


def _complete(tags: set[str], rng: np.random.Generator, spec: SituationSpec) -> frozenset[str]:
    """Add the lighting and weather a kind leaves open (day/dusk, clear) and the forced tags."""
    tags = set(tags) | set(spec.force)
    day_first = rng.random() < DAY_SHARE_OF_COMMON
    if not tags & set(LIGHTING_TAGS):
        if 'unlit_vehicles' in tags:
            tags.add('night')
        else:
            options = [t for t in ('day', 'dusk') if t not in spec.exclude] or ['night']
            tags.add(options[0] if day_first or len(options) == 1 else options[1])
    if not tags & set(WEATHER_TAGS):
        options = ['rain'] if 'pedestrian_umbrella' in tags else ['clear', 'rain', 'fog']
        tags.add(next((t for t in options if t not in spec.exclude), options[0]))
    return frozenset(tags)


def _allowed(tags: frozenset[str], spec: SituationSpec) -> bool:
    if tags & spec.exclude:
        return False
    for group in _EXCLUSIVE:
        if len(tags & set(group)) > 1:
            return False
    return not any(pair <= tags for pair in _CONFLICTS)


def _density(rng: np.random.Generator, tags: frozenset[str]) -> float:
    # most hours are on quiet-to-normal roads (lognormal, median 0.75)
    base = float(np.clip(0.75 * math.exp(0.35 * rng.standard_normal()), 0.35, 1.6))
    return base * (1.6 if 'dense_traffic' in tags else 1.0)


def plan_episodes(rng: np.random.Generator, t_lo: float, t_hi: float,
                  spec: SituationSpec | None = None, rare_scale: float = 1.0
                  ) -> list[Episode]:
    """Episodes covering [t_lo, t_hi) (s); the first starts at t_lo. See the module doc."""
    spec = spec or SituationSpec()
    if not rare_scale >= 0:
        raise ValueError(f'rare_scale must be >= 0, got {rare_scale}')
    candidates: list[tuple[str, frozenset[str], float, tuple[float, float]]] = []
    common_share = 1.0
    for kind in RARE_KINDS:
        share = kind.share * rare_scale
        common_share -= share
        candidates.append((kind.name, kind.tags, share, RARE_DURATION_S))
    candidates.append(('common', frozenset(), max(common_share, 0.05), COMMON_DURATION_S))
    weights = np.array([share / (0.5 * (d[0] + d[1])) for _, _, share, d in candidates])
    episodes: list[Episode] = []
    t = t_lo
    while t < t_hi:
        for _ in range(50):
            k = int(rng.choice(len(candidates), p=weights / weights.sum()))
            name, tags, _, (d_lo, d_hi) = candidates[k]
            full = _complete(set(tags), rng, spec)
            if _allowed(full, spec):
                break
        else:
            name, (d_lo, d_hi) = 'common', COMMON_DURATION_S
            full = _complete(set(), rng, spec)
        if not _allowed(full, spec):
            raise ValueError(f'no episode fits the situations asked for: {sorted(full)}')
        if spec.force:
            name = 'forced' if name == 'common' else name
        duration = float(rng.uniform(d_lo, d_hi))
        episodes.append(Episode(len(episodes), t, t + duration, name, full,
                                _density(rng, full)))
        t += duration
    return episodes


def episode_at(episodes: list[Episode], t: float) -> Episode:
    """The episode holding time t (the first one before its start, the last one after)."""
    lo, hi = 0, len(episodes) - 1
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if episodes[mid].t0 <= t:
            lo = mid
        else:
            hi = mid - 1
    return episodes[lo]
