"""Image <-> numpy conversion: every supported encoding, padded rows, and clear errors."""
from types import SimpleNamespace

import numpy as np
import pytest

from importance_sampler_ros.bags import bag_io
from importance_sampler_ros.bags.images import ImageError, image_to_rgb, rgb_to_image_msg

RNG = np.random.default_rng(3)
RGB = RNG.integers(0, 256, (5, 7, 3), dtype=np.uint8)


def image(encoding: str, pixels: np.ndarray, pad: int = 0) -> SimpleNamespace:
    height, width = pixels.shape[:2]
    rows = pixels.reshape(height, -1)
    rows = np.concatenate([rows, np.full((height, pad), 255, np.uint8)], axis=1)
    return SimpleNamespace(encoding=encoding, height=height, width=width,
                           step=rows.shape[1], data=rows.tobytes())


@pytest.mark.parametrize('pad', [0, 5])
@pytest.mark.parametrize('encoding,pixels', [
    ('rgb8', RGB),
    ('bgr8', RGB[:, :, ::-1]),
    ('rgba8', np.concatenate([RGB, np.full((5, 7, 1), 9, np.uint8)], axis=2)),
    ('bgra8', np.concatenate([RGB[:, :, ::-1], np.full((5, 7, 1), 9, np.uint8)], axis=2)),
])
def test_colour_encodings_give_rgb(encoding, pixels, pad):
    assert np.array_equal(image_to_rgb(image(encoding, pixels, pad)), RGB)


def test_mono8_is_grey_rgb():
    grey = RGB[:, :, 0]
    rgb = image_to_rgb(image('mono8', grey[:, :, None], pad=3))
    assert rgb.shape == (5, 7, 3)
    assert all(np.array_equal(rgb[:, :, c], grey) for c in range(3))


@pytest.mark.parametrize('change,message', [
    (dict(encoding='yuv422'), 'unsupported encoding'),
    (dict(height=0), 'empty image'),
    (dict(step=10), 'step 10 < width 7'),
    (dict(data=b'\x00' * 20), 'data bytes'),
])
def test_bad_images_raise_clear_errors(change, message):
    msg = image('rgb8', RGB)
    for key, value in change.items():
        setattr(msg, key, value)
    with pytest.raises(ImageError, match=message):
        image_to_rgb(msg)


def test_rosbags_image_round_trip():
    msg = rgb_to_image_msg(RGB, 3_000_000_007, 'camera', bag_io.msg_types())
    back = bag_io.deserialize(bag_io.serialize(msg), bag_io.IMAGE_TYPE)
    assert back.header.frame_id == 'camera'
    assert (back.header.stamp.sec, back.header.stamp.nanosec) == (3, 7)
    assert np.array_equal(image_to_rgb(back), RGB)
