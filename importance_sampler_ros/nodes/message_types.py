"""The rclpy message classes under the names messages.py expects (see bag_io.msg_types)."""
from __future__ import annotations

import array
import functools
from types import SimpleNamespace
from typing import Any

import numpy as np

# numpy dtype name -> array.array typecode, for primitive array fields
_TYPECODES = {'int8': 'b', 'uint8': 'B', 'int16': 'h', 'uint16': 'H', 'int32': 'i',
              'uint32': 'I', 'int64': 'q', 'uint64': 'Q', 'float32': 'f', 'float64': 'd'}


def _array(values: Any, dtype: str) -> array.array:
    """rclpy takes primitive arrays as array.array; built from raw bytes to stay fast."""
    return array.array(_TYPECODES[dtype], np.asarray(values, dtype=dtype).tobytes())


@functools.cache
def rclpy_types() -> SimpleNamespace:
    from builtin_interfaces.msg import Time
    from sensor_msgs.msg import Image
    from std_msgs.msg import Header

    from importance_sampler_ros import msg
    from importance_sampler_ros.bags.bag_io import MESSAGE_NAMES

    classes = {name: getattr(msg, name) for name in MESSAGE_NAMES}
    return SimpleNamespace(**classes, Header=Header, Time=Time, Image=Image,
                           primitive_array=_array)
