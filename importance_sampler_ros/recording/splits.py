"""The recorder's bag side: one split = one complete rosbag2 directory, written with `rosbags`.

Layout: a recording is a directory `<output_dir>/<bag_name>/` holding its splits
`<bag_name>_0000/`, `<bag_name>_0001/`, ... Each split is a standard rosbag2 bag (one .mcap or
.db3 file plus metadata.yaml) that `ros2 bag info/play`, rosbags and the mcap tools open on its
own; a split is never a file of a multi-file bag, so a crash can only ever damage the one split
that was open (see recorder_repair.py for what bag-repair makes of it).

Crash safety: rosbags' MCAP writer keeps the current chunk (up to 1 MiB) in memory and its
SQLite writer commits only on close. `SplitWriter.flush` closes the pending MCAP chunk and
flushes the file (or commits the SQLite transaction), optionally with fsync, so that after a
SIGKILL everything up to the last flush is on disk. This reaches into rosbags' storage objects
(`storage.close_chunk`, `storage.bio`, `storage.conn`), checked against rosbags 0.11.9.
"""
from __future__ import annotations

import os
import struct
from pathlib import Path
from typing import Any, Protocol

from rosbags.rosbag2 import Writer

from importance_sampler_ros.bags import bag_io

NS_PER_S = 1_000_000_000


class BagSink(Protocol):
    """What the recorder needs of one open split (a SplitWriter, or a test double)."""

    path: Path
    bytes_written: int

    def write(self, topic: str, msgtype: str, stamp_ns: int, data: bytes) -> None: ...

    def flush(self, sync: bool) -> None: ...

    def close(self, sync: bool) -> None: ...

    def abort(self) -> None: ...


class SplitWriter:
    """One split: a rosbags Writer opened on a new directory, connections added on first use."""

    def __init__(self, path: Path, storage: str = 'mcap',
                 version: int = bag_io.DEFAULT_BAG_VERSION) -> None:
        if storage not in bag_io.STORAGE_PLUGINS:
            raise ValueError(
                f'storage must be one of {sorted(bag_io.STORAGE_PLUGINS)}, got {storage!r}'
            )
        bag_io.check_bag_version(version)
        self.path = Path(path)
        self.storage = storage
        self.version = version
        self._writer = Writer(self.path, version=version,
                              storage_plugin=bag_io.STORAGE_PLUGINS[storage])
        self._writer.open()
        self._connections: dict[str, Any] = {}
        self.bytes_written = 0

    def write(self, topic: str, msgtype: str, stamp_ns: int, data: bytes) -> None:
        connection = self._connections.get(topic)
        if connection is None:
            connection = self._writer.add_connection(topic, msgtype, typestore=bag_io.typestore())
            self._connections[topic] = connection
        self._writer.write(connection, int(stamp_ns), data)
        self.bytes_written += len(data)

    def flush(self, sync: bool) -> None:
        """Put everything written so far into the file (and on the disk when `sync`)."""
        storage = self._writer.storage
        if storage is None:
            return
        if hasattr(storage, 'close_chunk'):  # MCAP
            if storage.chunk.bio.tell():
                storage.close_chunk()
            storage.bio.flush()
            if sync:
                os.fsync(storage.bio.fileno())
        elif hasattr(storage, 'conn'):  # SQLite3: a commit is durable under synchronous=FULL
            storage.conn.commit()

    def close(self, sync: bool) -> None:
        """Write the index/summary and metadata.yaml; with `sync`, fsync files and directory."""
        self._writer.close()
        if sync:
            for path in [*self.path.iterdir(), self.path]:
                fd = os.open(path, os.O_RDONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)

    def abort(self) -> None:
        """Close the file without index or metadata.yaml (what bag-repair can recover)."""
        self._writer.abort()


def split_path(recording_dir: Path, index: int) -> Path:
    return recording_dir / f'{recording_dir.name}_{index:04d}'


def split_paths(recording_dir: str | Path) -> list[Path]:
    """The split directories of a recording, in order."""
    recording_dir = Path(recording_dir)
    prefix = f'{recording_dir.name}_'
    return sorted(
        p for p in recording_dir.iterdir()
        if p.is_dir() and p.name.startswith(prefix) and p.name[len(prefix):].isdigit()
    )


def header_from_cdr(data: bytes | memoryview) -> tuple[int, str]:
    """(stamp in ns, frame_id) of a serialized message that starts with a std_msgs/Header
    (sensor_msgs/Image, DetectionArray, ...), read without deserialising the rest."""
    if len(data) < 16:
        raise ValueError(f'{len(data)} bytes are too few for a CDR message with a header')
    kind = data[1]
    if kind not in (0, 1):  # CDR big endian / little endian
        raise ValueError(f'unsupported CDR encapsulation 0x{data[0]:02x}{kind:02x}')
    order = '<' if kind == 1 else '>'
    sec, nanosec, length = struct.unpack_from(f'{order}iII', data, 4)
    if nanosec >= NS_PER_S or length < 1 or 16 + length > len(data):
        raise ValueError('malformed header at the start of the CDR message')
    frame_id = bytes(data[16:16 + length - 1]).decode('utf-8', errors='replace')
    return sec * NS_PER_S + nanosec, frame_id
