"""rosbag2 reading and writing with `rosbags`, and the package's message types for it.

The package's messages are registered in a rosbags typestore from the same msg/*.msg text that
rosidl builds, so bags written here carry the exact type definitions and CDR bytes that rclpy
produces (test/test_messages.py checks this).
"""
from __future__ import annotations

import functools
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
from rosbags.highlevel import AnyReader
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.typesys import Stores, get_types_from_msg, get_typestore
from rosbags.typesys.store import Typestore

from importance_sampler_ros.bags import formats
from importance_sampler_ros.share import share_path

PACKAGE = 'importance_sampler_ros'
STORE = Stores.ROS2_KILTED
STORAGE_PLUGINS = {'mcap': StoragePlugin.MCAP, 'sqlite3': StoragePlugin.SQLITE3}
# rosbag2 metadata versions rosbags writes (which ros2 bag reads which: formats.py).
BAG_VERSIONS = formats.BAG_VERSIONS
DEFAULT_BAG_VERSION = formats.DEFAULT_BAG_VERSION

# The types of msg/, in dependency order; msgtype names as rosbag2 records them.
MESSAGE_NAMES = (
    'BoundingBox',
    'Detection',
    'DetectionArray',
    'Track',
    'TrackArray',
    'RelabelledObservation',
    'Relabel',
    'RelabelArray',
    'SampleDecision',
)
IMAGE_TYPE = 'sensor_msgs/msg/Image'
BAG_FILE_SUFFIXES = ('.mcap', '.db3')


def msgtype(name: str) -> str:
    """Full rosbag2 type name of one of the package's messages, e.g. 'DetectionArray'."""
    return f'{PACKAGE}/msg/{name}'


def msg_dir() -> Path:
    """The directory holding the package's .msg files (source tree, or share/ of a ROS install)."""
    path = share_path('msg')
    if not path.is_dir():
        raise FileNotFoundError(f'cannot find the {PACKAGE} msg/ directory (source tree or share/)')
    return path


@functools.cache
def typestore() -> Typestore:
    """A ROS 2 Kilted typestore with the package's message types registered."""
    store = get_typestore(STORE)
    types = {}
    for name in MESSAGE_NAMES:
        text = (msg_dir() / f'{name}.msg').read_text()
        types.update(get_types_from_msg(text, msgtype(name)))
    store.register(types)
    return store


@functools.cache
def msg_types() -> SimpleNamespace:
    """The rosbags message classes, under the names the rclpy classes have.

    Conversion code in messages.py takes such a namespace, so the same code builds rclpy
    messages in the nodes and rosbags messages for bags.
    """
    store = typestore()
    classes = {name: store.types[msgtype(name)] for name in MESSAGE_NAMES}
    classes.update(
        Header=store.types['std_msgs/msg/Header'],
        Time=store.types['builtin_interfaces/msg/Time'],
        Image=store.types[IMAGE_TYPE],
    )
    return SimpleNamespace(**classes, primitive_array=_numpy_array)


def _numpy_array(values: Any, dtype: str) -> np.ndarray:
    """rosbags holds primitive arrays (int32[], float32[], ...) as numpy arrays."""
    return np.asarray(values, dtype=dtype)


def serialize(message: Any) -> bytes:
    """CDR bytes of a rosbags message object (identical to rclpy's serialize_message)."""
    return bytes(typestore().serialize_cdr(message, message.__msgtype__))


def deserialize(data: bytes | memoryview, message_type: str) -> Any:
    """A rosbags message object from CDR bytes."""
    return typestore().deserialize_cdr(data, message_type)


def check_bag_version(version: int) -> None:
    if version not in BAG_VERSIONS:
        raise ValueError(f'rosbag2 metadata version must be one of {BAG_VERSIONS}, got {version!r}')


class BagWriter:
    """A rosbag2 writer that adds connections as topics first appear.

    Use as a context manager; `write` takes a message object or its CDR bytes and logs it at
    `stamp_ns` (the frame's header stamp throughout this package).
    """

    def __init__(self, path: str | Path, storage: str = 'mcap',
                 version: int = DEFAULT_BAG_VERSION) -> None:
        if storage not in STORAGE_PLUGINS:
            raise ValueError(f'storage must be one of {sorted(STORAGE_PLUGINS)}, got {storage!r}')
        check_bag_version(version)
        self.path = Path(path)
        self._writer = Writer(self.path, version=version, storage_plugin=STORAGE_PLUGINS[storage])
        self._connections: dict[str, Any] = {}
        self.bytes_written = 0

    def open(self) -> BagWriter:
        self._writer.open()
        return self

    def close(self) -> None:
        self._writer.close()

    def __enter__(self) -> BagWriter:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def write(self, topic: str, message_type: str, stamp_ns: int, message: Any) -> None:
        connection = self._connections.get(topic)
        if connection is None:
            connection = self._writer.add_connection(topic, message_type, typestore=typestore())
            self._connections[topic] = connection
        is_cdr = isinstance(message, (bytes, bytearray, memoryview))
        data = message if is_cdr else serialize(message)
        self._writer.write(connection, int(stamp_ns), data)
        self.bytes_written += len(data)


@dataclass(frozen=True)
class BagMessage:
    topic: str
    msgtype: str
    stamp_ns: int
    rawdata: bytes

    def decode(self) -> Any:
        return deserialize(self.rawdata, self.msgtype)


class BagError(RuntimeError):
    """A bag that cannot be read: missing, not a bag, or damaged."""


def open_reader(path: str | Path) -> AnyReader:
    """An opened AnyReader over a rosbag2 directory (mcap or sqlite3) or a single file."""
    path = Path(path)
    if not path.exists():
        raise BagError(f'{path}: no such bag')
    if path.is_dir() and not (path / 'metadata.yaml').is_file():
        found = sorted(p.name for p in path.iterdir() if p.suffix in BAG_FILE_SUFFIXES)
        hint = (f'it holds {", ".join(found)}: give that file, or run `importance-sampler '
                f'bag-repair {path}`' if found else 'no metadata.yaml and no .mcap or .db3 file')
        raise BagError(f'{path} is a directory but not a rosbag2 bag ({hint})')
    try:
        reader = AnyReader([path], default_typestore=typestore())
        reader.open()
    except Exception as error:  # rosbags raises several unrelated types for unreadable bags
        raise BagError(f'{path}: not a readable rosbag2 ({error})') from error
    return reader


def message_counts(path: str | Path) -> dict[str, int]:
    """Topic name -> number of messages, from the bag's metadata / summary (reads no data)."""
    reader = open_reader(path)
    try:
        counts: dict[str, int] = {}
        for connection in reader.connections:
            counts[connection.topic] = counts.get(connection.topic, 0) + connection.msgcount
        return counts
    finally:
        reader.close()


def topics(path: str | Path) -> dict[str, str]:
    """Topic name -> message type of a bag."""
    reader = open_reader(path)
    try:
        return {c.topic: c.msgtype for c in reader.connections}
    finally:
        reader.close()


def read_messages(path: str | Path, topic_names: list[str] | None = None) -> Iterator[BagMessage]:
    """The bag's messages in log-time order, optionally only those of `topic_names`."""
    reader = open_reader(path)
    try:
        connections = [
            c for c in reader.connections if topic_names is None or c.topic in topic_names
        ]
        for connection, stamp_ns, rawdata in reader.messages(connections=connections):
            yield BagMessage(connection.topic, connection.msgtype, stamp_ns, bytes(rawdata))
    finally:
        reader.close()
