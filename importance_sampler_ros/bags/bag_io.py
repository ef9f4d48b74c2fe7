"""rosbag2 reading and writing, and the package's message types for it.

The package's messages are registered in a rosbags typestore from the same msg/*.msg text that
rosidl builds, so bags written here carry the exact type definitions and CDR bytes that rclpy
produces (test/test_messages.py checks this).

Writing (`BagWriter`, the one writer of the package: synth, replay, the recorder's splits): rosbags'
Writer, with its MCAP storage made to compute the chunk CRCs and the summary CRC (rosbags writes
0, "not computed"). Every message is checked before it is written (`validate_message`: the CDR
decodes as its type, an Image's data length fits its size), so a written bag always decodes.

Reading: MCAP bags are read by `mcap_scan` (chunk CRCs verified, damaged ranges reported and
skipped, the summary not trusted); SQLite3 bags by rosbags' AnyReader. Readers take a `damage`
list: what could not be read is appended to it as `Damage` (file, byte range, reason); without
one, damage raises BagError, so no caller loses data silently.
"""
from __future__ import annotations

import functools
import os
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any, ClassVar

import numpy as np
import yaml
from rosbags.highlevel import AnyReader
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.rosbag2.storage_mcap import McapWriter
from rosbags.typesys import Stores, get_types_from_msg, get_typestore
from rosbags.typesys.store import Typestore

from importance_sampler_ros.bags import formats
from importance_sampler_ros.bags.mcap_scan import Damage, McapScan
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
NS_PER_S = 1_000_000_000
# Bytes per pixel of the sensor_msgs/image_encodings an Image's step is checked against; other
# encodings are checked for data length = step x height only.
BYTES_PER_PIXEL = {
    'mono8': 1, 'mono16': 2, 'rgb8': 3, 'bgr8': 3, 'rgba8': 4, 'bgra8': 4, 'rgb16': 6,
    'bgr16': 6, 'rgba16': 8, 'bgra16': 8, 'yuv422': 2, 'uyvy': 2, 'yuyv': 2,
    '8UC1': 1, '8UC3': 3, '8UC4': 4, '16UC1': 2, '16UC3': 6, '32FC1': 4, '32FC3': 12,
    'bayer_rggb8': 1, 'bayer_bggr8': 1, 'bayer_gbrg8': 1, 'bayer_grbg8': 1,
}


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


def deserialize(data: bytes | memoryview, message_type: str, upgrade: bool = True) -> Any:
    """A rosbags message object from CDR bytes. With `upgrade`, a DetectionArray recorded before
    its last field, frame_descriptor, existed (its CDR ends where that field would start)
    decodes with an empty descriptor: for reading old bags, never for checking what is written
    (validate_message), since those bytes would not decode in other readers."""
    try:
        return typestore().deserialize_cdr(data, message_type)
    except Exception as error:
        if not upgrade or message_type != msgtype('DetectionArray'):
            raise
        first_error = error
    try:
        message = typestore().deserialize_cdr(_with_empty_descriptor(data), message_type)
    except Exception:
        raise first_error from None
    # the appended zeros must be the new field, not the missing end of a cut-off last string
    if any('\x00' in text for text in message.situations):
        raise first_error
    return message


def _with_empty_descriptor(data: bytes | memoryview) -> bytes:
    """The CDR with an empty float32[] appended: alignment to 4 in the payload (after the 4-byte
    encapsulation header), then a zero sequence length."""
    data = bytes(data)
    padding = -(len(data) - 4) % 4
    return data + bytes(padding) + (0).to_bytes(4, 'little' if data[1] == 1 else 'big')


def check_bag_version(version: int) -> None:
    if version not in BAG_VERSIONS:
        raise ValueError(f'rosbag2 metadata version must be one of {BAG_VERSIONS}, got {version!r}')


class BadMessageError(ValueError):
    """Bytes that are not a valid message of their type; the message says why in one line."""


def header_from_cdr(data: bytes | memoryview) -> tuple[int, str]:
    """(stamp in ns, frame_id) of a serialized message that starts with a std_msgs/Header
    (sensor_msgs/Image, DetectionArray, ...), read without deserialising the rest. The one CDR
    header parser of the package (the recorder joins and the player restamps with it)."""
    if len(data) < 16:
        raise BadMessageError(f'{len(data)} bytes are too few for a CDR message with a header')
    kind = data[1]
    if data[0] != 0 or kind not in (0, 1):  # plain CDR, big / little endian
        raise BadMessageError(f'unsupported CDR encapsulation 0x{data[0]:02x}{kind:02x}')
    order = '<' if kind == 1 else '>'
    sec, nanosec, length = struct.unpack_from(f'{order}iII', data, 4)
    if nanosec >= NS_PER_S or length < 1 or 16 + length > len(data):
        raise BadMessageError('malformed header at the start of the CDR message')
    frame_id = bytes(data[16:16 + length - 1]).decode('utf-8', errors='replace')
    return sec * NS_PER_S + nanosec, frame_id


def with_header_stamp(cdr: bytes, stamp_ns: int) -> bytes:
    """A copy of header-first CDR bytes with the header stamp replaced."""
    header_from_cdr(cdr)
    order = '<' if cdr[1] == 1 else '>'
    sec, nanosec = divmod(int(stamp_ns), NS_PER_S)
    out = bytearray(cdr)
    struct.pack_into(f'{order}iI', out, 4, sec, nanosec)
    return bytes(out)


def check_image(image: Any) -> None:
    """Raise BadMessageError unless an Image's data length is step x height and its step holds
    width pixels of its encoding (when the encoding is one of BYTES_PER_PIXEL)."""
    height, width, step = int(image.height), int(image.width), int(image.step)
    size = len(image.data)
    if size != step * height:
        raise BadMessageError(f'Image data holds {size} bytes, step {step} x height {height} = '
                              f'{step * height}')
    per_pixel = BYTES_PER_PIXEL.get(str(image.encoding))
    if per_pixel is not None and step < width * per_pixel:
        raise BadMessageError(f'Image step {step} < width {width} x {per_pixel} bytes per '
                              f'{image.encoding} pixel')


def validate_message(data: bytes | memoryview, message_type: str) -> Any:
    """The decoded message, or BadMessageError: the CDR must decode as `message_type` with no
    bytes left over, and an Image must be consistent (check_image)."""
    try:
        message = deserialize(data, message_type, upgrade=False)
    except Exception as error:  # rosbags raises SerdeError (and others) for malformed CDR
        name = message_type.rsplit('/', 1)[-1]
        raise BadMessageError(f'malformed {name} CDR ({len(data)} bytes): {error}') from None
    if message_type == IMAGE_TYPE:
        check_image(message)
    return message


class _CrcMcapStorage(McapWriter):
    """rosbags' MCAP storage, with the CRC of every chunk and of the summary filled in (rosbags
    writes 0). Relies on rosbags 0.11's layout: the chunk record starts where the file stood when
    close_chunk was called, its CRC field 24 bytes into the record body."""

    def close_chunk(self) -> None:
        crc = zlib.crc32(self.chunk.bio.getbuffer())
        start = self.bio.tell()
        super().close_chunk()
        end = self.bio.tell()
        self.bio.seek(start + 9 + 24)
        self.bio.write(crc.to_bytes(4, 'little'))
        self.bio.seek(end)

    def close(self, version: int, metadata: str) -> None:
        super().close(version, metadata)
        with self.path.open('r+b') as file:
            size = file.seek(0, os.SEEK_END)
            footer = size - 8 - 29
            file.seek(footer)
            record = file.read(29)
            summary_start = int.from_bytes(record[9:17], 'little')
            file.seek(summary_start)
            crc = zlib.crc32(file.read(size - 8 - 4 - summary_start))
            file.seek(size - 8 - 4)
            file.write(crc.to_bytes(4, 'little'))


class _Writer(Writer):
    STORAGE_PLUGINS: ClassVar = {**Writer.STORAGE_PLUGINS, StoragePlugin.MCAP: _CrcMcapStorage}


class BagWriter:
    """A rosbag2 bag opened for writing on a new directory; connections are added as topics first
    appear. Use as a context manager or call close(). `write` takes a message object or its CDR
    bytes and logs it at `stamp_ns` (the frame's header stamp throughout this package).

    Crash safety: rosbags' MCAP writer keeps the current chunk (up to 1 MiB) in memory and its
    SQLite writer commits only on close. `flush` closes the pending MCAP chunk and flushes the
    file (or commits the SQLite transaction), optionally with fsync, so that after a SIGKILL
    everything up to the last flush is on disk. This reaches into rosbags' storage objects
    (`storage.close_chunk`, `storage.bio`, `storage.conn`), checked against rosbags 0.11.9.
    """

    def __init__(self, path: str | Path, storage: str = 'mcap',
                 version: int = DEFAULT_BAG_VERSION) -> None:
        if storage not in STORAGE_PLUGINS:
            raise ValueError(f'storage must be one of {sorted(STORAGE_PLUGINS)}, got {storage!r}')
        check_bag_version(version)
        self.path = Path(path)
        self.storage = storage
        self.version = version
        self._writer = _Writer(self.path, version=version,
                               storage_plugin=STORAGE_PLUGINS[storage])
        self._writer.open()
        self._connections: dict[str, Any] = {}
        self.bytes_written = 0  # message payload bytes (CDR), not file bytes

    def __enter__(self) -> BagWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def write(self, topic: str, message_type: str, stamp_ns: int, message: Any,
              validate: bool = True) -> None:
        """Write one message, validated first (CDR bytes: validate_message; a message object:
        its image size, check_image) unless the caller did that already or writes bad input on
        purpose, as test fixtures do (`validate=False`). A bad message raises BadMessageError and
        is not written."""
        if isinstance(message, (bytes, bytearray, memoryview)):
            data = message
            if validate:
                validate_message(data, message_type)
        else:
            data = serialize(message)
            if validate and message_type == IMAGE_TYPE:
                check_image(message)
        connection = self._connections.get(topic)
        if connection is None:
            connection = self._writer.add_connection(topic, message_type, typestore=typestore())
            self._connections[topic] = connection
        self._writer.write(connection, int(stamp_ns), data)
        self.bytes_written += len(data)

    def flush(self, sync: bool = False) -> None:
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

    def close(self, sync: bool = False) -> None:
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


@dataclass(frozen=True)
class BagMessage:
    topic: str
    msgtype: str
    stamp_ns: int
    rawdata: bytes

    def decode(self) -> Any:
        return deserialize(self.rawdata, self.msgtype)


class BagError(RuntimeError):
    """A bag that cannot be read: missing, not a bag, or damaged (the message is one line)."""


@dataclass(frozen=True)
class _BagFiles:
    storage: str  # 'mcap' or 'sqlite3'
    files: list[Path]  # the .mcap files; for sqlite3 the bag directory


def _bag_files(path: Path, damage: list[Damage] | None) -> _BagFiles:
    """Where a bag's data is: from metadata.yaml when it parses, else the directory's .mcap
    files (a garbage metadata.yaml is damage; a missing one is not: the MCAP file says what it
    holds, and a cut-off one reports its own damage)."""
    if not path.exists():
        raise BagError(f'{path}: no such bag')
    if path.is_file():
        if path.suffix == '.mcap':
            return _BagFiles('mcap', [path])
        if path.suffix == '.db3':
            return _BagFiles('sqlite3', [path.parent])
        raise BagError(f'{path}: not a bag file (.mcap, or a directory with metadata.yaml)')
    metadata = path / 'metadata.yaml'
    mcaps = sorted(path.glob('*.mcap'))
    if metadata.is_file():
        try:
            info = yaml.safe_load(metadata.read_text())['rosbag2_bagfile_information']
            storage = str(info['storage_identifier'])
            files = [path / str(name) for name in info['relative_file_paths']]
            if storage not in STORAGE_PLUGINS or not files:
                raise ValueError(f'storage {storage!r}, {len(files)} files')
        except Exception as error:  # yaml and key errors alike: the file is not rosbag2 metadata
            problem = Damage(metadata, 0, metadata.stat().st_size,
                             f'not rosbag2 metadata ({type(error).__name__}: '
                             f'{str(error).splitlines()[0] if str(error) else ""}); '
                             + ('read the .mcap files directly' if mcaps else 'no .mcap file'))
            if not mcaps or damage is None:
                raise BagError(str(problem)) from None
            damage.append(problem)
            return _BagFiles('mcap', mcaps)
        missing = [f.name for f in files if not f.exists()]
        if missing:
            raise BagError(f'{path}: metadata.yaml lists {", ".join(missing)}, not there')
        return _BagFiles(storage, files if storage == 'mcap' else [path])
    if mcaps:
        return _BagFiles('mcap', mcaps)
    if list(path.glob('*.db3')):
        raise BagError(f'{path}: a .db3 without metadata.yaml (an unclosed split? '
                       'importance-sampler bag-repair recovers it)')
    raise BagError(f'{path} is a directory but not a rosbag2 bag (no metadata.yaml and no .mcap '
                   'or .db3 file)')


def open_reader(path: str | Path) -> AnyReader:
    """An opened AnyReader over a rosbag2 directory (mcap or sqlite3); for SQLite3 bags and for
    tests that want an independent reader."""
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
    """Topic name -> number of messages, from the bag's metadata / summary (reads no data;
    rosbags' reader, so BagError for a bag without them)."""
    reader = open_reader(path)
    try:
        counts: dict[str, int] = {}
        for connection in reader.connections:
            counts[connection.topic] = counts.get(connection.topic, 0) + connection.msgcount
        return counts
    finally:
        reader.close()


def topics(path: str | Path, damage: list[Damage] | None = None) -> dict[str, str]:
    """Topic name -> message type of a bag. For an MCAP file without a readable summary this
    reads the whole file (its damage is reported by read_messages, not here)."""
    bag = _bag_files(Path(path), damage)
    if bag.storage == 'sqlite3':
        reader = open_reader(bag.files[0])
        try:
            return {c.topic: c.msgtype for c in reader.connections}
        finally:
            reader.close()
    result: dict[str, str] = {}
    for file in bag.files:
        scan = McapScan(file)
        channels = scan.summary_channels()
        if channels is None:
            for _ in scan.messages():
                pass
            channels = scan.channels
            if not channels and scan.damage:
                raise BagError(f'{file}: not a readable rosbag2 ({scan.damage[0].reason})')
        result.update({c.topic: c.schema.name for c in channels.values() if c.schema})
    return result


def read_messages(path: str | Path, topic_names: list[str] | None = None,
                  damage: list[Damage] | None = None) -> Iterator[BagMessage]:
    """The bag's messages, optionally only those of `topic_names`: MCAP in file order (CRCs
    verified, damaged ranges appended to `damage` and skipped), SQLite3 in log-time order.
    Without `damage`, the first damage raises BagError (after the messages before it)."""
    path = Path(path)
    bag = _bag_files(path, damage)
    wanted = None if topic_names is None else set(topic_names)
    if bag.storage == 'sqlite3':
        reader = open_reader(bag.files[0])
        try:
            connections = [c for c in reader.connections if wanted is None or c.topic in wanted]
            for connection, stamp_ns, rawdata in reader.messages(connections=connections):
                yield BagMessage(connection.topic, connection.msgtype, stamp_ns, bytes(rawdata))
        finally:
            reader.close()
        return
    for file in bag.files:
        scan = McapScan(file)
        reported = 0
        for message in scan.messages():
            if reported < len(scan.damage):
                reported = _report(scan.damage, reported, damage)
            channel = message.channel
            if (wanted is None or channel.topic in wanted) and channel.schema is not None:
                yield BagMessage(channel.topic, channel.schema.name, message.log_time,
                                 message.data)
        _report(scan.damage, reported, damage)


def _report(found: list[Damage], reported: int, damage: list[Damage] | None) -> int:
    if damage is None and len(found) > reported:
        raise BagError(f'damaged bag: {found[reported]}')
    if damage is not None:
        damage.extend(found[reported:])
    return len(found)
