"""The synthetic world: determinism, boxes that match pixels, stable track ids, look-alike
classes that a small classifier separates near but not far, and the `synth` bag writer."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from importance_sampler_ros.synth.render import area_resample, pixel_span
from importance_sampler_ros.synth.situations import (
    ALL_TAGS,
    RARE_KINDS,
    RARE_TAGS,
    parse_situations,
    plan_episodes,
)
from importance_sampler_ros.synth.world import (
    CLASS_NAMES,
    GROUND_TRUTH_MODEL,
    Drive,
    SynthConfig,
    SynthFrame,
    generate_drive,
    random_frame,
)


def _short(seed: int, seconds: float = 0.3, **kw: object) -> SynthConfig:
    return SynthConfig(seconds=seconds, seed=seed, **kw)


def test_same_seed_gives_the_same_frames_and_another_seed_does_not() -> None:
    a = list(generate_drive(_short(3)))
    b = list(generate_drive(_short(3)))
    c = list(generate_drive(_short(4)))
    assert len(a) == len(b) == 3
    for fa, fb in zip(a, b, strict=True):
        assert fa.stamp_ns == fb.stamp_ns
        assert np.array_equal(fa.image, fb.image)
        assert np.array_equal(fa.truth.boxes, fb.truth.boxes)
        assert np.array_equal(fa.truth.track_ids, fb.truth.track_ids)
        assert fa.truth.situations == fb.truth.situations
    assert not np.array_equal(a[0].image, c[0].image)


def test_same_seed_gives_the_same_episodes_and_tagged_frames() -> None:
    config = SynthConfig(seconds=120.0, seed=21)
    a, b = Drive(config), Drive(config)
    assert a.episodes == b.episodes
    assert [e.tags for e in a.episodes] != [e.tags for e in Drive(SynthConfig(
        seconds=120.0, seed=22)).episodes]
    for index in (0, 377, 1199):
        fa, fb = a.render(index), b.render(index)
        assert np.array_equal(fa.image, fb.image)
        assert fa.truth.situations == fb.truth.situations == a.episode_of(index).sorted_tags()


def test_frames_can_be_rendered_in_any_order() -> None:
    drive = Drive(_short(7, seconds=0.5))
    in_order = list(drive)
    alone = Drive(_short(7, seconds=0.5)).render(3)
    assert np.array_equal(alone.image, in_order[3].image)
    assert np.array_equal(alone.truth.boxes, in_order[3].truth.boxes)


def test_frame_layout_and_truth_fields() -> None:
    frame = Drive(_short(1, width=320, height=96)).render(0)
    assert frame.image.shape == (96, 320, 3) and frame.image.dtype == np.uint8
    truth = frame.truth
    assert len(truth) > 0
    assert truth.model_name == GROUND_TRUTH_MODEL and truth.frame_id == 'camera'
    assert truth.stamp_ns == frame.stamp_ns
    assert np.all(truth.scores == 1.0) and np.all(truth.importances == 0.0)
    assert np.all(truth.track_ids > 0)
    assert len(set(truth.track_ids.tolist())) == len(truth)
    assert np.all((truth.class_ids >= 1) & (truth.class_ids < len(CLASS_NAMES)))
    assert truth.class_names == [CLASS_NAMES[c] for c in truth.class_ids]
    assert np.all(np.isfinite(truth.distances)) and np.all(truth.distances > 0)


@pytest.mark.parametrize('seed', [0, 5, 12])
def test_boxes_lie_inside_the_image_and_match_the_rendered_pixels(seed: int) -> None:
    # windscreen drops (rain) move what lies behind them: a lens effect the truth ignores
    drive = Drive(SynthConfig(seconds=6.0, seed=seed, situations=parse_situations(['no-rain'])))
    checked = 0
    for index in (0, 25, 50):
        frame = drive.render(index)
        empty = drive.render(index, draw_objects=False)  # same noise, same props
        changed = np.abs(frame.image.astype(int) - empty.image.astype(int)).max(axis=2) > 0
        boxes = frame.truth.boxes
        h, w = changed.shape
        assert np.all(boxes[:, 0] >= 0) and np.all(boxes[:, 1] >= 0)
        assert np.all(boxes[:, 2] <= w) and np.all(boxes[:, 3] <= h)
        assert np.all(boxes[:, 2] > boxes[:, 0]) and np.all(boxes[:, 3] - boxes[:, 1] >= 3)
        inside = np.zeros_like(changed)
        for x1, y1, x2, y2 in boxes.astype(int):
            region = changed[y1:y2, x1:x2]
            # tight: the object's pixels reach every edge of its box
            assert region[0].any() and region[-1].any()
            assert region[:, 0].any() and region[:, -1].any()
            inside[max(y1 - 2, 0):y2 + 3, max(x1 - 2, 0):x2 + 2] = True
            checked += 1
        # complete: what objects changed lies in their boxes (a margin for blur and shadows;
        # the rest are objects left out of the truth: tiny, hidden or lost in haze)
        strong = np.abs(frame.image.astype(int) - empty.image.astype(int)).max(axis=2) > 12
        assert (strong & ~inside).sum() <= 0.1 * max(strong.sum(), 1)
    assert checked > 10


def test_track_ids_follow_one_object_along_its_track() -> None:
    frames = list(Drive(SynthConfig(seconds=4.0, seed=2)))
    last: dict[int, tuple[int, np.ndarray, float, int]] = {}
    lengths: dict[int, int] = {}
    for frame in frames:
        t = frame.truth
        for box, cls, tid, dist in zip(t.boxes, t.class_ids, t.track_ids, t.distances,
                                       strict=True):
            tid = int(tid)
            if tid in last:
                prev_cls, prev_box, prev_dist, prev_index = last[tid]
                assert cls == prev_cls
                gap = frame.index - prev_index
                if gap == 1:  # consecutive frames: a plausible step (<= 35 m/s closing)
                    assert abs(dist - prev_dist) <= 3.5
                    size = max(box[3] - box[1], prev_box[3] - prev_box[1])
                    centre_step = np.abs(box[:2] + box[2:] - prev_box[:2] - prev_box[2:]) / 2
                    assert centre_step.max() <= 0.6 * size + 25
            last[tid] = (int(cls), box, float(dist), frame.index)
            lengths[tid] = lengths.get(tid, 0) + 1
    assert max(lengths.values()) >= len(frames) // 2  # some objects are followed for long


def _crop_features(image: np.ndarray, box: np.ndarray, size: int = 16) -> np.ndarray:
    x1, y1, x2, y2 = box.astype(int)
    crop = image[y1:y2, x1:x2].astype(np.float32)
    out = area_resample(crop, 0.0, size, *pixel_span(0.0, size, 0, size), axis=0)
    out = area_resample(out, 0.0, size, *pixel_span(0.0, size, 0, size), axis=1).ravel()
    return (out - out.mean()) / (out.std() + 1e-3)


@pytest.mark.slow
def test_look_alike_vehicles_are_separable_near_but_confused_far() -> None:
    """A ridge classifier on 16x16 crops, trained and tested per size bin on different drives:
    car / van / truck are told apart much better when near (box >= 40 px) than far (6-20 px)."""
    samples: dict[str, list[tuple[np.ndarray, int, bool]]] = {'near': [], 'far': []}
    for seed in range(8):
        drive = Drive(SynthConfig(seconds=24.0, seed=seed))
        for index in range(0, len(drive), 20):
            frame = drive.render(index)
            for box, cls in zip(frame.truth.boxes, frame.truth.class_ids, strict=True):
                if cls not in (1, 2, 3):
                    continue
                height = box[3] - box[1]
                size_bin = 'near' if height >= 40 else 'far' if 6 <= height < 20 else None
                if size_bin:
                    samples[size_bin].append((_crop_features(frame.image, box), int(cls),
                                              seed < 5))
    accuracy = {}
    for size_bin, rows in samples.items():
        x = np.array([r[0] for r in rows])
        y = np.array([r[1] for r in rows])
        train = np.array([r[2] for r in rows])
        assert train.sum() >= 30 and (~train).sum() >= 15, (size_bin, len(rows))
        a = np.c_[x, np.ones(len(x))]
        onehot = np.eye(4)[y]
        weights = np.linalg.solve(a[train].T @ a[train] + 30.0 * np.eye(a.shape[1]),
                                  a[train].T @ onehot[train])
        predicted = (a[~train] @ weights)[:, 1:].argmax(axis=1) + 1
        accuracy[size_bin] = float((predicted == y[~train]).mean())
    assert accuracy['near'] >= accuracy['far'] + 0.1, accuracy


def test_config_rejects_bad_values() -> None:
    with pytest.raises(ValueError, match='too small'):
        SynthConfig(width=10)
    with pytest.raises(ValueError, match='fps'):
        SynthConfig(fps=0)
    with pytest.raises(IndexError):
        Drive(_short(0)).render(99)


def test_synth_cli_writes_the_same_readable_bag_for_the_same_seed(tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture
                                                                    ) -> None:
    from importance_sampler_ros.bags.bag_io import read_messages
    from importance_sampler_ros.bags.images import image_to_rgb
    from importance_sampler_ros.bags.messages import detections_from_msg
    from importance_sampler_ros.cli import main

    args = ['--seconds', '0.3', '--fps', '10', '--seed', '6', '--width', '320', '--height', '96']
    first, second = tmp_path / 'a' / 'drive', tmp_path / 'b' / 'drive'
    first.parent.mkdir()
    second.parent.mkdir()
    assert main(['synth', '--out', str(first), *args]) == 0
    assert main(['synth', '--out', str(second), *args]) == 0
    # same seed, same bytes: the bag file and metadata (both name the file after the directory)
    for name in ('drive.mcap', 'metadata.yaml'):
        assert (first / name).read_bytes() == (second / name).read_bytes()

    messages = list(read_messages(first))
    images = [m for m in messages if m.topic == '/camera/image_raw']
    truths = [m for m in messages if m.topic == '/ground_truth/detections']
    assert len(images) == len(truths) == 3
    assert images[0].msgtype == 'sensor_msgs/msg/Image'
    assert truths[0].msgtype == 'importance_sampler_ros/msg/DetectionArray'
    expected = list(generate_drive(SynthConfig(width=320, height=96, seconds=0.3, seed=6)))
    for image_msg, truth_msg, frame in zip(images, truths, expected, strict=True):
        image = image_msg.decode()
        assert image.encoding == 'rgb8' and image.header.frame_id == 'camera'
        assert image_msg.stamp_ns == frame.stamp_ns
        assert np.array_equal(image_to_rgb(image), frame.image)
        truth = detections_from_msg(truth_msg.decode())
        assert np.array_equal(truth.track_ids, frame.truth.track_ids)
        assert np.allclose(truth.boxes, frame.truth.boxes)
        assert truth.model_name == 'ground_truth'
        assert truth.situations == frame.truth.situations and len(truth.situations) >= 2

    # an existing output is refused with a clear message
    assert main(['synth', '--out', str(first), *args]) == 1
    assert 'already exists' in capsys.readouterr().err

    # forced and excluded tags reach the bag; an unknown tag is refused
    night = tmp_path / 'night'
    assert main(['synth', '--out', str(night), *args, '--situations', 'night', 'fog',
                 'no-unlit_vehicles']) == 0
    for message in read_messages(night):
        if message.topic == '/ground_truth/detections':
            tags = detections_from_msg(message.decode()).situations
            assert {'night', 'fog'} <= set(tags) and 'unlit_vehicles' not in tags
    assert main(['synth', '--out', str(tmp_path / 'bad'), *args, '--situations', 'snow']) == 2
    assert 'unknown situation tag' in capsys.readouterr().err


# --- situations and the long tail -------------------------------------------------------------

def test_every_frame_has_one_lighting_one_weather_and_known_tags() -> None:
    drive = Drive(SynthConfig(seconds=90.0, seed=3))
    for index in range(0, len(drive), 45):
        tags = drive.render(index).truth.situations
        assert set(tags) <= set(ALL_TAGS)
        assert sum(t in ('day', 'dusk', 'night') for t in tags) == 1
        assert sum(t in ('clear', 'rain', 'fog') for t in tags) == 1


def test_tag_frequencies_over_a_long_drive_match_the_mix() -> None:
    """Over 50 h of planned episodes each rare kind covers its share of the time (+-30 %), the
    rarest tags 1-3 %; the 'common' mix has a tenth of that; a real drive's frames carry the tags
    of the episode they fall in."""
    hours = 50 * 3600.0
    for mix, scale in (('default', 1.0), ('common', 0.1)):
        episodes = plan_episodes(np.random.default_rng(5), 0.0, hours, rare_scale=scale)
        time_of: dict[str, float] = {}
        tag_time: dict[str, float] = {}
        for e in episodes:
            time_of[e.kind] = time_of.get(e.kind, 0.0) + e.t1 - e.t0
            for t in e.tags:
                tag_time[t] = tag_time.get(t, 0.0) + e.t1 - e.t0
        total = episodes[-1].t1
        for kind in RARE_KINDS:
            share = time_of.get(kind.name, 0.0) / total
            assert share == pytest.approx(kind.share * scale, rel=0.3), (mix, kind.name, share)
        if mix == 'default':
            shares = {t: tag_time.get(t, 0.0) / total for t in RARE_TAGS}
            assert min(shares.values()) >= 0.01 and sorted(shares.values())[3] <= 0.03, shares
            assert 0.6 <= tag_time['day'] / total <= 0.8
    drive = Drive(SynthConfig(seconds=600.0, seed=8))
    seen = set()
    for index in range(0, len(drive), 97):
        frame = drive.render(index)
        episode = drive.episode_of(index)
        assert episode.t0 <= index / 10.0 < episode.t1
        assert frame.truth.situations == episode.sorted_tags()
        seen |= set(frame.truth.situations)
    assert len(seen & set(RARE_TAGS)) >= 2


def test_situations_can_be_forced_and_excluded() -> None:
    spec = parse_situations(['night', 'cyclist_trailer', 'no-rain,-fog'])
    assert spec.force == {'night', 'cyclist_trailer'} and spec.exclude == {'rain', 'fog'}
    drive = Drive(SynthConfig(seconds=120.0, seed=4, situations=spec))
    assert all({'night', 'cyclist_trailer'} <= e.tags and not e.tags & {'rain', 'fog'}
               for e in drive.episodes)
    common = Drive(SynthConfig(seconds=300.0, seed=4, situations=parse_situations(['common'])))
    assert all(e.tags <= {'day', 'dusk', 'clear'} for e in common.episodes)
    assert parse_situations(['common']).exclude == set(RARE_TAGS)
    for bad, message in ((['snow'], 'unknown'), (['night', 'day'], 'at most one'),
                         (['night', 'glare'], 'together'), (['rain', 'no-rain'], 'both')):
        with pytest.raises(ValueError, match=message):
            parse_situations(bad)


def _luma(image: np.ndarray) -> np.ndarray:
    return image.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)


def _object_contrast(frame: SynthFrame) -> float:
    """Median over truth boxes >= 12 px tall of |mean luma inside - mean luma of a 3 px ring|."""
    luma = _luma(frame.image)
    values = []
    for x1, y1, x2, y2 in frame.truth.boxes.astype(int):
        if y2 - y1 < 12:
            continue
        ring = luma[max(y1 - 3, 0):y2 + 3, max(x1 - 3, 0):x2 + 3]
        inner = luma[y1:y2, x1:x2]
        outer = (ring.sum() - inner.sum()) / max(ring.size - inner.size, 1)
        values.append(abs(float(inner.mean()) - outer))
    return float(np.median(values)) if values else 0.0


def _box_aspect(frame: SynthFrame, cls: str) -> list[float]:
    t = frame.truth
    return [float((b[2] - b[0]) / (b[3] - b[1])) for b, n in zip(t.boxes, t.class_names,
                                                                  strict=True)
            if n == cls and b[3] - b[1] >= 15]


def _frames(words: list[str], seeds: tuple[int, ...] = (31, 32, 33)) -> list:
    out = []
    for seed in seeds:
        drive = Drive(SynthConfig(seconds=8.0, seed=seed, situations=parse_situations(words)))
        out += [drive.render(k) for k in range(5, 80, 15)]
    return out


@pytest.mark.slow
def test_each_rare_tag_measurably_changes_the_rendering() -> None:
    """Against the same seeds rendered without it, each rare tag makes the frames harder in its
    own way: lower object contrast (night, fog, rain, glare), darker lamps (unlit vehicles),
    clutter and occlusion (roadworks, dense traffic), other silhouettes (the variants)."""
    day = _frames(['common', 'day'])
    night = _frames(['night', 'no-unlit_vehicles', 'clear', 'no-dense_traffic',
                     'no-roadworks', 'no-cyclist_trailer', 'no-pedestrian_pushchair',
                     'no-car_transporter'])
    contrast = {'day': np.median([_object_contrast(f) for f in day])}
    for tag in ('fog', 'rain', 'glare'):
        frames = _frames(['day', tag] + [f'no-{t}' for t in RARE_TAGS if t != tag])
        assert all(tag in f.truth.situations for f in frames)
        contrast[tag] = np.median([_object_contrast(f) for f in frames])
    contrast['night'] = np.median([_object_contrast(f) for f in night])
    for tag in ('fog', 'rain', 'night'):
        assert contrast[tag] < 0.75 * contrast['day'], contrast
    assert contrast['glare'] < 0.85 * contrast['day'], contrast  # the veil is local to the sun
    # rain also streaks the sky: vertical lines, i.e. more horizontal gradient than in the day
    def sky_streaks(frames: list) -> float:
        return float(np.mean([np.abs(np.diff(_luma(f.image)[:50], axis=1)).mean()
                              for f in frames]))
    rain = _frames(['day', 'rain', 'no-pedestrian_umbrella'])
    assert sky_streaks(rain) > 1.3 * sky_streaks(day)

    # unlit vehicles: the brightest pixels of near vehicles (their lamps) are darker
    def lamp_level(frames: list) -> float:
        levels = []
        for f in frames:
            luma = _luma(f.image)
            for b, n in zip(f.truth.boxes.astype(int), f.truth.class_names, strict=True):
                if n in ('car', 'van', 'truck') and b[3] - b[1] >= 15:
                    levels.append(float(np.percentile(luma[b[1]:b[3], b[0]:b[2]], 99)))
        return float(np.median(levels))
    unlit = _frames(['unlit_vehicles', 'no-dense_traffic', 'no-roadworks'])
    assert lamp_level(unlit) < 0.8 * lamp_level(night)

    # roadworks: orange clutter (cones, machines, hi-vis) on the road; dense traffic: more
    # objects, more of them partly hidden
    def orange(frames: list) -> float:
        img = np.concatenate([f.image.reshape(-1, 3) for f in frames]).astype(int)
        return float(np.mean((img[:, 0] > img[:, 2] + 60) & (img[:, 0] > 120)))
    roadworks = _frames(['day', 'roadworks'])
    assert orange(roadworks) > 3 * orange(day) + 1e-4
    dense = _frames(['day', 'dense_traffic'])
    assert np.mean([len(f.truth) for f in dense]) > 1.3 * np.mean([len(f.truth) for f in day])

    # variants: wider pedestrians (umbrella, pushchair) and cyclists (trailer), taller trucks;
    # the variant objects are a part of their class in these frames: compare the upper tail
    def wide_aspect(frames: list, cls: str) -> float:
        return float(np.percentile([a for f in frames for a in _box_aspect(f, cls)], 85))

    def median_aspect(frames: list, cls: str) -> float:
        return float(np.median([a for f in frames for a in _box_aspect(f, cls)]))
    assert wide_aspect(_frames(['day', 'rain', 'pedestrian_umbrella']), 'pedestrian') > \
        1.2 * wide_aspect(day, 'pedestrian')
    assert wide_aspect(_frames(['day', 'pedestrian_pushchair']), 'pedestrian') > \
        1.2 * wide_aspect(day, 'pedestrian')
    assert wide_aspect(_frames(['day', 'cyclist_trailer']), 'cyclist') > \
        1.2 * wide_aspect(day, 'cyclist')
    assert median_aspect(_frames(['day', 'car_transporter']), 'truck') < \
        0.9 * median_aspect(day, 'truck')


def test_random_frame_draws_from_the_common_mix() -> None:
    frames = [random_frame(500 + i, 160, 96, mix='common') for i in range(40)]
    rare = sum(bool(set(f.truth.situations) & set(RARE_TAGS)) for f in frames)
    assert rare <= 6  # ~2.6 % expected
    assert all(f.image.shape == (96, 160, 3) for f in frames)
