"""sensor_msgs/Image <-> numpy, without cv_bridge.

Works on rclpy and rosbags Image messages alike (same field names). Rows are read honouring
`step`, so padded rows are fine.
"""
from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import numpy as np

from importance_sampler_ros.bags.messages import header_msg

# encoding -> (channels, index of R, G, B within a pixel; None for mono)
ENCODINGS: dict[str, tuple[int, tuple[int, int, int] | None]] = {
    'rgb8': (3, (0, 1, 2)),
    'bgr8': (3, (2, 1, 0)),
    'rgba8': (4, (0, 1, 2)),
    'bgra8': (4, (2, 1, 0)),
    'mono8': (1, None),
}


class ImageError(ValueError):
    """An Image message that cannot be converted; the message says why."""


def image_to_rgb(msg: Any) -> np.ndarray:
    """An (H, W, 3) uint8 RGB array from an Image message; a view of its data where possible."""
    encoding = str(msg.encoding).lower()
    if encoding not in ENCODINGS:
        raise ImageError(
            f'unsupported encoding {msg.encoding!r} (supported: {", ".join(ENCODINGS)})'
        )
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    if height == 0 or width == 0:
        raise ImageError(f'empty image ({width}x{height})')
    channels, rgb_index = ENCODINGS[encoding]
    if step < width * channels:
        raise ImageError(f'step {step} < width {width} x {channels} bytes per pixel')
    data = np.frombuffer(memoryview(msg.data).cast('B'), np.uint8)
    if data.size < step * height:
        raise ImageError(f'{data.size} data bytes, expected step {step} x height {height}')
    rows = data[: step * height].reshape(height, step)[:, : width * channels]
    pixels = rows.reshape(height, width, channels)
    if rgb_index is None:
        return np.repeat(pixels, 3, axis=2)
    if rgb_index == (0, 1, 2) and channels == 3:
        return pixels
    return pixels[:, :, list(rgb_index)]


def rgb_to_image_msg(
    rgb: np.ndarray, stamp_ns: int, frame_id: str, types: SimpleNamespace
) -> Any:
    """An rgb8 Image message of an (H, W, 3) uint8 array."""
    rgb = np.ascontiguousarray(rgb, np.uint8)
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ImageError(f'expected an (H, W, 3) array, got shape {rgb.shape}')
    height, width, _ = rgb.shape
    return types.Image(
        header=header_msg(stamp_ns, frame_id, types),
        height=height,
        width=width,
        encoding='rgb8',
        is_bigendian=0,
        step=width * 3,
        data=types.primitive_array(rgb.reshape(-1), 'uint8'),
    )
