"""The synthetic world: determinism, boxes that match pixels, stable track ids, look-alike
classes that a small classifier separates near but not far, and the `synth` bag writer."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from importance_sampler_ros.synth.render import area_resample, pixel_span
from importance_sampler_ros.synth.world import (
    CLASS_NAMES,
    GROUND_TRUTH_MODEL,
    Drive,
    SynthConfig,
    generate_drive,
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
    assert not np.array_equal(a[0].image, c[0].image)


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


@pytest.mark.parametrize('seed', [0, 5, 12])  # dusk, night, day drives
def test_boxes_lie_inside_the_image_and_match_the_rendered_pixels(seed: int) -> None:
    drive = Drive(SynthConfig(seconds=6.0, seed=seed))
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

    # an existing output is refused with a clear message
    assert main(['synth', '--out', str(first), *args]) == 1
    assert 'already exists' in capsys.readouterr().err
