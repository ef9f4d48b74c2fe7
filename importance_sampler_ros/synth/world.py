"""The synthetic world: drives with ground truth, and the `synth` subcommand that writes them.

An ego camera drives along a straight road (three lanes, parking strip, sidewalks, roadside
poles and trees). Cars, vans and trucks come towards it, are overtaken, change lanes or stand
parked; pedestrians walk along or cross; cyclists ride along the road edges or cross. Objects
appear far away (a few pixels), grow to 100 px and more and leave the view. Haze grows with
distance; frames get sensor noise and motion blur. Each drive is planned from its seed up front,
so frame k of a drive can be rendered on its own (`Drive.render(k)`).

A drive is a sequence of episodes (synth.situations): mostly common ones (day or dusk, clear,
a traffic density that varies per episode) and short rare ones (night, unlit vehicles, rain with
streaks and windscreen drops, fog, glare, roadworks, dense traffic, cyclists with trailers,
pedestrians with umbrellas or pushchairs, car transporters). `SynthConfig.situations` forces or
excludes tags, `SynthConfig.mix` scales the rare shares ('common': a tenth). Objects brought in
by a rare episode (roadworks props and workers, queues, the variants) live only within it.

Ground truth per frame (`SynthFrame.truth`, model_name 'ground_truth'): the box of the *visible*
part of each object (pixels where the object's coverage is >= 0.4 and no nearer object or prop
covers it; x2/y2 exclusive), the true class, score 1, importance 0, track id = the object's id
(> 0, the same along its track), its distance along the optical axis in metres, and the frame's
situation tags (`truth.situations`, the tags of its episode in situations.ALL_TAGS order). A
variant is part of its object's box (the trailer, pushchair, umbrella, the transporter's cargo);
cargo cars, machines, cones and barriers are not objects. Windscreen drops are a lens effect and
do not change the truth. An object is
left out of a frame's truth when its visible box is under 3 px tall or 1 px wide, when less than
25 % of its own footprint is visible (occluded), or when the haze leaves under 15 % of its
contrast. Only the modules numpy and this package's core are imported at module level.
"""
from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field, replace

import numpy as np

from importance_sampler_ros import topics
from importance_sampler_ros.detection.detections import FrameDetections
from importance_sampler_ros.synth.classes import CLASS_IDS, CLASS_NAMES
from importance_sampler_ros.synth.effects import Glare, Rain
from importance_sampler_ros.synth.render import (
    Background,
    Camera,
    Lighting,
    composite,
    darken,
    episode_lighting,
    place_sprite,
)
from importance_sampler_ros.synth.situations import (
    MIXES,
    Episode,
    SituationSpec,
    episode_at,
    plan_episodes,
)
from importance_sampler_ros.synth.sprites import (
    HIVIS,
    LIGHT_EMISSION,
    PersonLook,
    Sprite,
    VehicleLook,
    draw_person,
    draw_prop,
    draw_roadworks_prop,
    draw_vehicle,
    person_extent,
    sample_person_look,
    sample_vehicle_look,
)

VEHICLES = ('car', 'van', 'truck')
ROADWORKS_PROPS = ('cone', 'barrier', 'machine')
GROUND_TRUTH_MODEL = 'ground_truth'
DEFAULT_START_NS = 1_700_000_000_000_000_000

MIN_BOX_HEIGHT_PX = 3
MIN_VISIBLE_FRACTION = 0.25
MIN_TRANSMISSION = 0.15
NEAR_CLIP_M = 2.5  # objects closer than this are not drawn
FAR_CLIP_M = 220.0
PRE_ROLL_S = 30.0  # objects are planned from this long before the first frame
MAX_BLUR_PX = 12.0  # motion blur is capped at this and at 10 % of the object's size


@dataclass(frozen=True)
class SynthConfig:
    width: int = 640
    height: int = 192
    fps: float = 10.0
    seconds: float = 60.0
    seed: int = 0
    start_ns: int = DEFAULT_START_NS
    situations: SituationSpec = field(default_factory=SituationSpec)  # forced / excluded tags
    mix: str = 'default'  # rare-situation frequencies: 'default' (the long tail) or 'common'

    def __post_init__(self) -> None:
        if self.mix not in MIXES:
            raise ValueError(f'unknown mix {self.mix!r}; known: {sorted(MIXES)}')
        if self.width < 64 or self.height < 32:
            raise ValueError(f'image too small: {self.width}x{self.height} (min 64x32)')
        if not self.fps > 0 or not self.seconds > 0:
            raise ValueError(f'fps and seconds must be > 0 (got {self.fps}, {self.seconds})')
        if self.seed < 0:
            raise ValueError(f'seed must be >= 0, got {self.seed}')

    @property
    def n_frames(self) -> int:
        return max(1, round(self.seconds * self.fps))


@dataclass
class SynthFrame:
    index: int
    stamp_ns: int
    image: np.ndarray  # (H, W, 3) uint8 RGB
    truth: FrameDetections  # truth.situations: the frame's situation tags
    lighting: str = ''
    episode: int = 0


@dataclass
class Agent:
    """One object or prop and its motion: lateral x(t), longitudinal world position z(t)."""

    agent_id: int  # > 0 for objects (the track id), < 0 for props
    kind: str  # a class name, or 'pole' / 'tree' / 'bollard'
    view: str  # 'rear', 'front' or 'side'
    look: VehicleLook | PersonLook | None
    t0: float
    t1: float
    z0: float  # world position along the road at t0
    v_long: float
    x0: float
    v_lat: float = 0.0
    lane_change: tuple[float, float, float] | None = None  # (start time, duration, dx)
    width_m: float = 0.0
    height_m: float = 0.0
    cadence: float = 0.0  # gait / pedalling phase speed (rad/s)
    phase0: float = 0.0
    prop_seed: int = 0
    variant: str = ''  # a rare object variant tag ('cyclist_trailer', ...) or ''
    unlit: bool = False  # a vehicle whose lamps are off in 'unlit_vehicles' episodes

    def position(self, t: float) -> tuple[float, float]:
        x = self.x0 + self.v_lat * (t - self.t0)
        if self.lane_change is not None:
            start, duration, dx = self.lane_change
            u = min(max((t - start) / duration, 0.0), 1.0)
            x += dx * u * u * (3 - 2 * u)
        return x, self.z0 + self.v_long * (t - self.t0)

    @property
    def is_object(self) -> bool:
        return self.agent_id > 0


@dataclass
class _Footprint:
    """Where an object was drawn: image slices and its own coverage mask (alpha >= 0.4)."""

    agent: Agent
    z: float
    rows: slice
    cols: slice
    own: np.ndarray
    transmission: float


@dataclass
class _Ego:
    speed: float
    sway_amp: float
    sway_omega: float
    pitch_phases: tuple[float, float]

    def position(self, t: float) -> float:
        return self.speed * t + self.sway_amp * math.sin(self.sway_omega * t)

    def pitch_px(self, t: float) -> int:
        a, b = self.pitch_phases
        return round(1.4 * math.sin(5.7 * t + a) + 0.7 * math.sin(14.0 * t + b))


@dataclass
class _EpisodeLook:
    lighting: Lighting
    background: Background
    rain: Rain | None
    glare: Glare | None


@dataclass
class _Plan:
    agents: list[Agent] = field(default_factory=list)
    next_object_id: int = 1
    next_prop_id: int = -1


class Drive:
    """A planned drive: `render(k)` gives frame k; the same config gives the same frames."""

    def __init__(self, config: SynthConfig) -> None:
        self.config = config
        self.camera = Camera.for_image(config.width, config.height)
        rng = np.random.default_rng([config.seed, 0])
        self.episodes: list[Episode] = plan_episodes(
            np.random.default_rng([config.seed, 2]), 0.0, config.seconds + 1.0,
            config.situations, MIXES[config.mix])
        self.ego = _Ego(float(rng.uniform(5.0, 13.0)), float(rng.uniform(0.0, 3.0)),
                        2 * math.pi / float(rng.uniform(15.0, 30.0)),
                        (float(rng.uniform(0, 6.3)), float(rng.uniform(0, 6.3))))
        self.agents = _plan_agents(rng, self.ego, config.seconds, self.episodes)
        self._sprites: dict[tuple, Sprite] = {}
        self._episode_cache: dict[int, _EpisodeLook] = {}

    @property
    def lighting(self) -> Lighting:
        """The light of the first episode (drives used to have one light level)."""
        return self._look(self.episodes[0]).lighting

    def episode_of(self, index: int) -> Episode:
        return episode_at(self.episodes, self.time_of(index))

    def _look(self, episode: Episode) -> _EpisodeLook:
        look = self._episode_cache.get(episode.index)
        if look is None:
            seed = self.config.seed
            lighting = episode_lighting(episode.lighting, episode.weather,
                                        np.random.default_rng([seed, 3, episode.index]))
            # the same road and skyline in every episode, under the episode's light
            background = Background(self.camera, lighting, np.random.default_rng([seed, 4]))
            fx = np.random.default_rng([seed, 5, episode.index])
            w, h = self.config.width, self.config.height
            rain = Rain.plan(fx, w, h) if episode.weather == 'rain' else None
            glare = (Glare.plan(fx, w, h, self.camera.cy) if 'glare' in episode.tags
                     else None)
            look = _EpisodeLook(lighting, background, rain, glare)
            self._episode_cache = {episode.index: look, **{
                k: v for k, v in self._episode_cache.items() if abs(k - episode.index) <= 1}}
        return look

    def __len__(self) -> int:
        return self.config.n_frames

    def time_of(self, index: int) -> float:
        return index / self.config.fps

    def stamp_ns(self, index: int) -> int:
        return self.config.start_ns + round(index * 1e9 / self.config.fps)

    def render(self, index: int, draw_objects: bool = True) -> SynthFrame:
        """Frame `index`; with draw_objects=False only the background and props (for tests)."""
        if not 0 <= index < len(self):
            raise IndexError(f'frame {index} outside 0..{len(self) - 1}')
        t = self.time_of(index)
        episode = episode_at(self.episodes, t)
        look = self._look(episode)
        cam, light = self.camera, look.lighting
        glow = LIGHT_EMISSION[light.name]
        unlit_episode = 'unlit_vehicles' in episode.tags
        ego_s = self.ego.position(t)
        pitch = self.ego.pitch_px(t)
        image = look.background.frame(ego_s, pitch)
        ids = np.zeros(image.shape[:2], np.int32)
        haze = np.array(light.haze, np.float32)
        dt_exposure = light.exposure / self.config.fps
        visible = []
        for agent in self.agents:
            if not agent.t0 <= t <= agent.t1:
                continue
            x, zw = agent.position(t)
            z = zw - ego_s
            if not NEAR_CLIP_M <= z <= FAR_CLIP_M:
                continue
            if not draw_objects and agent.is_object:
                continue
            visible.append((z, x, agent))
        visible.sort(key=lambda item: -item[0])
        footprints: list[_Footprint] = []
        used = set()
        for z, x, agent in visible:
            rect = cam.project_box(x, z, agent.width_m, agent.height_m, pitch)
            if rect[2] < 0 or rect[0] > cam.width or rect[1] > cam.height or rect[3] < 0:
                continue
            # image motion during the exposure: blur along it
            xp, zp = agent.position(t - dt_exposure)
            prev = cam.project_box(xp, zp - self.ego.position(t - dt_exposure), agent.width_m,
                                   agent.height_m, pitch)
            size = max(rect[2] - rect[0], rect[3] - rect[1])
            cap = min(MAX_BLUR_PX, 0.1 * size)
            blur = (min(abs(rect[0] + rect[2] - prev[0] - prev[2]) / 2, cap),
                    min(abs(rect[1] + rect[3] - prev[1] - prev[3]) / 2, cap))
            sprite_key = self._sprite_key(agent, t, glow, unlit_episode and agent.unlit)
            used.add(sprite_key)
            placed = place_sprite(self._sprite(agent, sprite_key), rect, image.shape[:2], blur)
            trans = float(light.transmission(z))
            if agent.is_object:
                shadow_h = max(1.0, 0.05 * (rect[3] - rect[1]))
                darken(image, (rect[0], rect[3] - shadow_h, rect[2], rect[3] + shadow_h / 2),
                       1.0 - light.sun_shadow * trans)
            rows, cols, own = composite(image, ids, placed, agent.agent_id,
                                        light.light_at(x, z), trans, haze)
            if agent.is_object and own.any():
                footprints.append(_Footprint(agent, z, rows, cols, own, trans))
        self._sprites = {k: v for k, v in self._sprites.items() if k in used}
        truth = self._truth(index, ids, footprints, episode.sorted_tags())
        if look.glare is not None:
            look.glare.apply(image)
        if look.rain is not None:
            look.rain.apply(image, t, np.random.default_rng([self.config.seed, 6, index]))
        frame_rng = np.random.default_rng([self.config.seed, 1, index])
        gain = np.float32(frame_rng.uniform(0.95, 1.05))
        noise = frame_rng.standard_normal(image.shape, dtype=np.float32)
        image = image * gain + noise * np.float32(light.noise_sigma)
        pixels = np.clip(image * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return SynthFrame(index, self.stamp_ns(index), pixels, truth, light.name, episode.index)

    def __iter__(self) -> Iterator[SynthFrame]:
        for k in range(len(self)):
            yield self.render(k)

    def _sprite_key(self, agent: Agent, t: float, glow: float, unlit: bool
                    ) -> tuple[int, int, float, bool]:
        """(agent id, gait phase bin of 8, lamp glow, lamps off)."""
        if agent.cadence == 0.0:
            return agent.agent_id, 0, glow, unlit
        phase = agent.phase0 + agent.cadence * t
        return agent.agent_id, int(phase / (2 * math.pi) * 8) % 8, glow, unlit

    def _sprite(self, agent: Agent, key: tuple[int, int, float, bool]) -> Sprite:
        sprite = self._sprites.get(key)
        if sprite is None:
            glow = key[2]
            if agent.kind in VEHICLES:
                sprite = draw_vehicle(agent.kind, agent.view, agent.look, glow, agent.variant,
                                      unlit=key[3])
            elif agent.kind in ('pedestrian', 'cyclist'):
                phase = key[1] * 2 * math.pi / 8
                sprite = draw_person(agent.kind, agent.view, agent.look, phase, glow,
                                     agent.variant)
            elif agent.kind in ROADWORKS_PROPS:
                sprite = draw_roadworks_prop(agent.kind,
                                             np.random.default_rng(agent.prop_seed))
            else:
                sprite = draw_prop(agent.kind, np.random.default_rng(agent.prop_seed))
            self._sprites[key] = sprite
        return sprite

    def _truth(self, index: int, ids: np.ndarray, footprints: list[_Footprint],
               situations: tuple[str, ...]) -> FrameDetections:
        boxes, classes, track_ids, distances = [], [], [], []
        for fp in footprints:
            if fp.transmission < MIN_TRANSMISSION:
                continue
            vis = ids[fp.rows, fp.cols] == fp.agent.agent_id
            n_vis = int(vis.sum())
            if n_vis == 0 or n_vis < MIN_VISIBLE_FRACTION * int(fp.own.sum()):
                continue
            rows_any = np.flatnonzero(vis.any(axis=1))
            cols_any = np.flatnonzero(vis.any(axis=0))
            r0, c0 = fp.rows.start, fp.cols.start
            box = (c0 + cols_any[0], r0 + rows_any[0], c0 + cols_any[-1] + 1,
                   r0 + rows_any[-1] + 1)
            if box[3] - box[1] < MIN_BOX_HEIGHT_PX or box[2] - box[0] < 1:
                continue
            boxes.append(box)
            classes.append(CLASS_IDS[fp.agent.kind])
            track_ids.append(fp.agent.agent_id)
            distances.append(fp.z)
        n = len(boxes)
        return FrameDetections(
            stamp_ns=self.stamp_ns(index), frame_id='camera',
            boxes=np.array(boxes, np.float32).reshape(n, 4),
            class_ids=np.array(classes, np.int32), class_names=[CLASS_NAMES[c] for c in classes],
            scores=np.ones(n, np.float32), importances=np.zeros(n, np.float32),
            track_ids=np.array(track_ids, np.uint32), distances=np.array(distances, np.float32),
            model_name=GROUND_TRUTH_MODEL, situations=situations)


def generate_drive(config: SynthConfig) -> Iterator[SynthFrame]:
    """The frames of one drive, in order."""
    yield from Drive(config)


def random_frame(seed: int, width: int = 640, height: int = 192, mix: str = 'default'
                 ) -> SynthFrame:
    """One frame at a random time of a random 30 s drive (for training on the fly); mix
    'common' gives rare situations a tenth of their default share (situations.MIXES)."""
    rng = np.random.default_rng([seed, 7])
    drive = Drive(SynthConfig(width=width, height=height, fps=10.0, seconds=30.0, seed=seed,
                              mix=mix))
    return drive.render(int(rng.integers(len(drive))))


# --- planning --------------------------------------------------------------------------------

def _plan_agents(rng: np.random.Generator, ego: _Ego, seconds: float,
                 episodes: list[Episode]) -> list[Agent]:
    plan = _Plan()
    t_lo, t_hi = -PRE_ROLL_S, seconds + 1.0
    top = max(e.density for e in episodes)

    def density_at(t: float) -> float:
        return episode_at(episodes, t).density

    def spawn_times(rate: float) -> np.ndarray:
        # Poisson at the highest density, thinned to the density of the episode at spawn time
        n = rng.poisson(rate * top * (t_hi - t_lo))
        times = np.sort(rng.uniform(t_lo, t_hi, n))
        keep = rng.random(n) * top < np.array([density_at(t) for t in times])
        return times[keep]

    def along(spacing: float) -> np.ndarray:
        zs = _positions_along(rng, ego, t_lo, t_hi, spacing / top)
        # thinned by the density of the episode in which the ego is ~40 m short of the spot
        keep = rng.random(len(zs)) * top < np.array(
            [density_at((z - 40.0) / ego.speed) for z in zs])
        return zs[keep]

    def vehicle_class() -> str:
        return str(rng.choice(VEHICLES, p=(0.5, 0.28, 0.22)))

    # oncoming traffic in the left lane
    for t0 in spawn_times(0.22):
        z_cam = rng.uniform(110, 200)
        _add_vehicle(plan, rng, vehicle_class(), 'front', t0, ego.position(t0) + z_cam,
                     -rng.uniform(8, 15), -3.5 + rng.uniform(-0.3, 0.3), ego)
    # same-direction traffic in the right lane, mostly slower (overtaken), some faster
    for t0 in spawn_times(0.16):
        if rng.random() < 0.15:
            z_cam, v = rng.uniform(3, 6), ego.speed + rng.uniform(2, 5)
        else:
            z_cam, v = rng.uniform(110, 200), max(0.0, ego.speed - rng.uniform(1.5, 6))
        _add_vehicle(plan, rng, vehicle_class(), 'rear', t0, ego.position(t0) + z_cam, v,
                     3.5 + rng.uniform(-0.3, 0.3), ego)
    # lead vehicles in the ego lane that move to the right lane as the ego closes in
    for t0 in spawn_times(0.07):
        z_cam, closing = rng.uniform(90, 170), rng.uniform(2, 6)
        agent = _add_vehicle(plan, rng, vehicle_class(), 'rear', t0,
                             ego.position(t0) + z_cam, ego.speed - closing,
                             rng.uniform(-0.3, 0.3), ego)
        t_change = t0 + (z_cam - rng.uniform(18, 40)) / closing
        agent.lane_change = (t_change, float(rng.uniform(2.5, 4.0)), 3.5)
    # parked vehicles: placed along the road
    for zw in along(32.0):
        view = 'rear' if rng.random() < 0.7 else 'front'
        _add_vehicle(plan, rng, vehicle_class(), view, t_lo, zw, 0.0,
                     6.3 + rng.uniform(-0.2, 0.2), ego)
    # cyclists along both road edges
    for t0 in spawn_times(0.14):
        _add_person(plan, rng, 'cyclist', 'rear', t0, ego.position(t0) + rng.uniform(110, 180),
                    rng.uniform(3, 7), 4.7 + rng.uniform(-0.3, 0.3), 0.0, ego)
    for t0 in spawn_times(0.14):
        _add_person(plan, rng, 'cyclist', 'front', t0, ego.position(t0) + rng.uniform(110, 180),
                    -rng.uniform(3, 7), -4.7 + rng.uniform(-0.3, 0.3), 0.0, ego)
    # pedestrians on the sidewalks, walking along, and some waiting at the kerb
    for side in (-1, 1):
        for zw in along(28.0):
            v = rng.uniform(0.8, 1.6) * (1 if rng.random() < 0.5 else -1)
            _add_person(plan, rng, 'pedestrian', 'rear' if v > 0 else 'front', t_lo, zw, v,
                        side * rng.uniform(7.6, 9.6), 0.0, ego)
        for zw in along(150.0):
            _add_person(plan, rng, 'pedestrian', 'front', t_lo, zw, 0.0,
                        side * rng.uniform(5.4, 6.0), 0.0, ego)
    # crossing pedestrians and cyclists (side views)
    for t0 in spawn_times(0.05):
        cls = 'cyclist' if rng.random() < 0.2 else 'pedestrian'
        speed = rng.uniform(3, 5) if cls == 'cyclist' else rng.uniform(1.0, 1.8)
        side = 1 if rng.random() < 0.5 else -1
        agent = _add_person(plan, rng, cls, 'side', t0, ego.position(t0) + rng.uniform(25, 90),
                            0.0, side * 8.5, -side * speed, ego)
        agent.t1 = t0 + 17.0 / speed
    # roadside props
    for side in (-1, 1):
        for zw in _positions_along(rng, ego, t_lo, t_hi, 14.0):
            kind = 'pole' if rng.random() < 0.55 else 'tree'
            x = side * (rng.uniform(7.0, 7.3) if kind == 'pole' else rng.uniform(10.3, 12.0))
            _add_prop(plan, rng, kind, zw, x)
        for zw in _positions_along(rng, ego, t_lo, t_hi, 60.0):
            _add_prop(plan, rng, 'bollard', zw, side * 5.6)
    for episode in episodes:
        if episode.t0 < seconds:
            _plan_episode_extras(plan, np.random.default_rng([int(rng.integers(2**31)),
                                                              episode.index]), ego, episode)
    return plan.agents


def _clip_to(agent: Agent, episode: Episode) -> Agent:
    """An episode's own object lives only within the episode (episodes are clips)."""
    agent.t0, agent.t1 = max(agent.t0, episode.t0), min(agent.t1, episode.t1 - 1e-6)
    return agent


def _plan_episode_extras(plan: _Plan, rng: np.random.Generator, ego: _Ego, episode: Episode
                         ) -> None:
    """The objects and props that make a rare episode what its tags say."""
    t0, t1, tags = episode.t0, episode.t1, episode.tags
    duration = t1 - t0
    z_lo, z_hi = ego.position(t0), ego.position(t1)

    def staggered(every: float) -> np.ndarray:
        n = max(1, math.ceil(duration / every))
        return t0 + (np.arange(n) + rng.uniform(0, 1, n)) * duration / n - 0.6 * every

    if 'roadworks' in tags:  # the right lane closed: cones, barriers, machines, workers
        for zw in np.arange(z_lo + rng.uniform(8, 20), z_hi + 90.0, rng.uniform(4.0, 6.0)):
            _clip_to(_add_prop(plan, rng, 'cone', zw, 1.95 + rng.uniform(-0.1, 0.1)), episode)
        for zw in np.arange(z_lo + rng.uniform(15, 30), z_hi + 90.0, rng.uniform(20, 30)):
            _clip_to(_add_prop(plan, rng, 'barrier', zw, 3.4 + rng.uniform(-0.3, 0.3)),
                     episode)
        for zw in np.arange(z_lo + rng.uniform(25, 45), z_hi + 90.0, rng.uniform(28, 45)):
            _clip_to(_add_prop(plan, rng, 'machine', zw, rng.uniform(3.8, 5.6)), episode)
        for zw in np.arange(z_lo + rng.uniform(15, 30), z_hi + 90.0, rng.uniform(14, 24)):
            worker = _add_person(plan, rng, 'pedestrian', 'front', t0, zw,
                                 0.0, rng.uniform(2.8, 5.2), 0.0, ego)
            worker.look = replace(worker.look, shirt=HIVIS, hat=True, backpack=None)
            _clip_to(worker, episode)
    if 'dense_traffic' in tags:  # a slow queue on the right, close oncoming, crowds
        for z_cam in np.cumsum(rng.uniform(7, 14, int(rng.integers(8, 13)))):
            _clip_to(_add_vehicle(plan, rng, _pick_vehicle(rng), 'rear', t0, z_lo + z_cam,
                                  ego.speed - rng.uniform(0.3, 2.0),
                                  3.5 + rng.uniform(-0.3, 0.3), ego), episode)
        for z_cam in np.cumsum(rng.uniform(12, 25, 3)):
            _clip_to(_add_vehicle(plan, rng, _pick_vehicle(rng), 'rear', t0, z_lo + z_cam,
                                  ego.speed + rng.uniform(-0.4, 0.4), rng.uniform(-0.3, 0.3),
                                  ego), episode)
        for ts in staggered(0.9):
            _clip_to(_add_vehicle(plan, rng, _pick_vehicle(rng), 'front', ts,
                                  ego.position(ts) + rng.uniform(40, 120), -rng.uniform(4, 9),
                                  -3.5 + rng.uniform(-0.3, 0.3), ego), episode)
        for side in (-1, 1):
            for zw in np.arange(z_lo + rng.uniform(5, 10), z_hi + 80.0, rng.uniform(4, 7)):
                v = rng.uniform(0.8, 1.5) * (1 if rng.random() < 0.5 else -1)
                _clip_to(_add_person(plan, rng, 'pedestrian', 'rear' if v > 0 else 'front', t0,
                                     zw, v, side * rng.uniform(7.4, 9.8), 0.0, ego), episode)
    if 'cyclist_trailer' in tags:
        for ts in staggered(2.0):
            rear = rng.random() < 0.65
            agent = _add_person(plan, rng, 'cyclist', 'rear' if rear else 'front', ts,
                                ego.position(ts) + rng.uniform(25, 55) * (1 if rear else 1.6),
                                rng.uniform(3, 5) * (1 if rear else -1),
                                (4.7 if rear else -4.7) + rng.uniform(-0.3, 0.3), 0.0, ego,
                                variant='cyclist_trailer')
            _clip_to(agent, episode)
    if 'pedestrian_pushchair' in tags or 'pedestrian_umbrella' in tags:
        variant = 'pedestrian_umbrella' if 'pedestrian_umbrella' in tags else \
            'pedestrian_pushchair'
        for ts in staggered(1.2 if variant == 'pedestrian_umbrella' else 1.8):
            side = 1 if rng.random() < 0.5 else -1
            v = rng.uniform(0.7, 1.3) * (1 if rng.random() < 0.5 else -1)
            agent = _add_person(plan, rng, 'pedestrian', 'rear' if v > 0 else 'front', ts,
                                ego.position(ts) + rng.uniform(20, 55), v,
                                side * rng.uniform(7.4, 9.4), 0.0, ego, variant=variant)
            _clip_to(agent, episode)
    if 'car_transporter' in tags:
        for ts in staggered(3.0):
            rear = rng.random() < 0.6
            agent = _add_vehicle(plan, rng, 'truck', 'rear' if rear else 'front', ts,
                                 ego.position(ts) + rng.uniform(25, 60) * (1 if rear else 2),
                                 ego.speed - rng.uniform(0.5, 3.0) if rear
                                 else -rng.uniform(6, 11),
                                 (3.5 if rear else -3.5) + rng.uniform(-0.3, 0.3), ego,
                                 variant='car_transporter')
            _clip_to(agent, episode)
    if 'unlit_vehicles' in tags:  # parked and slow vehicles close by, lamps off
        for zw in np.arange(z_lo + rng.uniform(10, 25), z_hi + 80.0, rng.uniform(15, 25)):
            agent = _add_vehicle(plan, rng, _pick_vehicle(rng), 'rear', t0, zw, 0.0,
                                 rng.choice((6.3, 3.5)) + rng.uniform(-0.2, 0.2), ego)
            agent.unlit = True
            _clip_to(agent, episode)


def _pick_vehicle(rng: np.random.Generator) -> str:
    return str(rng.choice(VEHICLES, p=(0.5, 0.28, 0.22)))


def _positions_along(rng: np.random.Generator, ego: _Ego, t_lo: float, t_hi: float,
                     spacing: float) -> np.ndarray:
    """World positions of static things along the stretch the drive can see."""
    lo, hi = ego.position(t_lo), ego.position(t_hi) + FAR_CLIP_M
    n = rng.poisson((hi - lo) / spacing)
    return np.sort(rng.uniform(lo, hi, n))


def _life_end(t0: float, z0: float, v_long: float, ego: _Ego) -> float:
    """When an object has passed the camera or fallen far behind (an upper bound)."""
    rel = v_long - ego.speed
    if rel < -0.3:
        return t0 + (z0 - ego.position(t0)) / -rel + 3.0
    if rel > 0.3:
        return t0 + (FAR_CLIP_M - (z0 - ego.position(t0))) / rel + 3.0
    return math.inf


def _add_vehicle(plan: _Plan, rng: np.random.Generator, cls: str, view: str, t0: float,
                 z0: float, v_long: float, x0: float, ego: _Ego, variant: str = '') -> Agent:
    look = sample_vehicle_look(cls, rng)
    if variant == 'car_transporter':
        look = replace(look, width_m=float(rng.uniform(2.4, 2.55)),
                       height_m=float(rng.uniform(3.9, 4.2)))
    extra = 0.22 if view == 'front' and cls in ('van', 'truck') and not variant else 0.0
    agent = Agent(plan.next_object_id, cls, view, look, float(t0), _life_end(t0, z0, v_long, ego),
                  float(z0), float(v_long), float(x0), width_m=look.width_m + extra,
                  height_m=look.height_m, variant=variant, unlit=bool(rng.random() < 0.7))
    plan.next_object_id += 1
    plan.agents.append(agent)
    return agent


def _add_person(plan: _Plan, rng: np.random.Generator, cls: str, view: str, t0: float,
                z0: float, v_long: float, x0: float, v_lat: float, ego: _Ego,
                variant: str = '') -> Agent:
    look = sample_person_look(rng)
    width, height = person_extent(cls, view, look.height_m, variant)
    speed = max(abs(v_long), abs(v_lat))
    cadence = (2 * math.pi * 0.9 * min(speed, 2.0) if cls == 'pedestrian'
               else 2 * math.pi * speed / 2.2)
    agent = Agent(plan.next_object_id, cls, view, look, float(t0),
                  _life_end(t0, z0, v_long, ego), float(z0), float(v_long), float(x0),
                  v_lat=float(v_lat), width_m=width, height_m=height, cadence=cadence,
                  phase0=float(rng.uniform(0, 2 * math.pi)), variant=variant)
    plan.next_object_id += 1
    plan.agents.append(agent)
    return agent


def _add_prop(plan: _Plan, rng: np.random.Generator, kind: str, z0: float, x0: float
              ) -> Agent:
    prop_seed = int(rng.integers(2**31))
    draw = draw_roadworks_prop if kind in ROADWORKS_PROPS else draw_prop
    sprite = draw(kind, np.random.default_rng(prop_seed))
    agent = Agent(plan.next_prop_id, kind, 'front', None, -PRE_ROLL_S, math.inf, float(z0), 0.0,
                  float(x0), width_m=sprite.width_m, height_m=sprite.height_m,
                  prop_seed=prop_seed)
    plan.agents.append(agent)
    plan.next_prop_id -= 1
    return agent


# --- topics of a synthetic drive's bag -----------------------------------------------------------

IMAGE_TOPIC = topics.IMAGE
GROUND_TRUTH_TOPIC = topics.GROUND_TRUTH
CAMERA_FRAME_ID = 'camera'
