"""MCAP files read record by record, every chunk checked against its CRC.

The reader does not trust the summary (chunk indexes, statistics): it walks the data section
from the magic to DataEnd, so a damaged chunk index cannot hide messages. Each Chunk record's
framing must be consistent (its length fields add up) and, when the writer computed one, its
CRC must match the decompressed records; a chunk that fails is reported as `Damage` with its byte
range and skipped. A garbled record header (opcode or length) is skipped by searching forward for
the next record that frames correctly (a Chunk, a MessageIndex or DataEnd). A file cut off part
way (an unclosed split) ends with one Damage entry from the cut. Messages come in file order
(for rosbag2 writers, the order they were written).

The summary is still checked against what was read: schema/channel records it holds stand in for
ones lost in a damaged chunk, and when its statistics count differs from the messages found, or
its CRC does not match, that is reported as Damage too.

Chunks written with CRC 0 (rosbags before this package computed them) cannot be verified; their
number is in `McapScan.unverified_chunks`.
"""
from __future__ import annotations

import mmap
import re
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from rosbags.rosbag2.storage_mcap import DECOMPRESSORS  # '' (none), 'zstd', 'lz4'

MAGIC = b'\x89MCAP0\r\n'
OP_FOOTER, OP_SCHEMA, OP_CHANNEL, OP_MESSAGE, OP_CHUNK = 0x02, 0x03, 0x04, 0x05, 0x06
OP_MESSAGE_INDEX, OP_STATISTICS, OP_DATA_END = 0x07, 0x0B, 0x0F
_KNOWN_OPS = frozenset(range(0x01, 0x11))
_RECORD_HEAD = 9  # opcode u8 + length u64
_FOOTER_SIZE = _RECORD_HEAD + 20
_RESYNC = re.compile(rb'[\x06\x07\x0f]')
_U16, _U32, _U64 = struct.Struct('<H'), struct.Struct('<I'), struct.Struct('<Q')
_CHUNK_HEAD = struct.Struct('<QQQI')  # start time, end time, uncompressed size, crc
_MESSAGE_HEAD = struct.Struct('<HIQQ')  # channel id, sequence, log time, publish time


class McapFormatError(ValueError):
    """A record that does not parse."""


@dataclass(frozen=True)
class Damage:
    """A byte range of a bag file that could not be read, and why."""

    path: Path
    start: int
    end: int
    reason: str
    cut_off: bool = False  # the file ends inside a record (an unclosed file), nothing after it

    def __str__(self) -> str:
        return f'{self.path.name} bytes {self.start}-{self.end}: {self.reason}'


@dataclass(frozen=True)
class SchemaInfo:
    name: str
    encoding: str
    data: bytes


@dataclass(frozen=True)
class ChannelInfo:
    id: int
    topic: str
    message_encoding: str
    schema: SchemaInfo | None
    metadata: dict[str, str]


@dataclass(frozen=True)
class RawMessage:
    channel: ChannelInfo
    sequence: int
    log_time: int
    publish_time: int
    data: bytes


@dataclass
class McapScan:
    """One pass over an MCAP file; see the module docstring. Iterate `messages()` once."""

    path: Path
    damage: list[Damage] = field(default_factory=list)
    verified_chunks: int = 0
    unverified_chunks: int = 0
    messages_found: int = 0

    def __post_init__(self) -> None:
        self.path = Path(self.path)
        self._schemas: dict[int, SchemaInfo] = {}
        self.channels: dict[int, ChannelInfo] = {}
        self._pending_channels: dict[int, tuple[int, str, str, dict[str, str]]] = {}
        self._summary_count: int | None = None

    def summary_channels(self) -> dict[int, ChannelInfo] | None:
        """The channels listed in an intact summary (cheap: reads only the file's end), or None
        when the file has no readable summary."""
        if self.path.stat().st_size <= len(MAGIC) + _FOOTER_SIZE:
            return None
        with self.path.open('rb') as file, \
                mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) as buf:
            if not self._read_summary(buf, report=False):
                return None
        return dict(self.channels)

    def messages(self) -> Iterator[RawMessage]:
        size = self.path.stat().st_size
        if size < len(MAGIC):
            self._damaged(0, size, f'{size} bytes: too short for an MCAP file')
            return
        with self.path.open('rb') as file, \
                mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) as buf:
            if buf[:len(MAGIC)] != MAGIC:
                self._damaged(0, size, 'not an MCAP file (no magic)')
                return
            self._read_summary(buf, report=True)
            yield from self._data_section(buf, size)
            if not self.damage and self._summary_count not in (None, self.messages_found):
                self._damaged(0, size, f'the summary counts {self._summary_count} messages, the '
                              f'data section holds {self.messages_found} readable ones')

    # -- data section

    def _data_section(self, buf: mmap.mmap, size: int) -> Iterator[RawMessage]:
        pos = len(MAGIC)
        while pos < size:
            if pos + _RECORD_HEAD > size:
                self._damaged(pos, size, 'file cut off inside a record header', cut_off=True)
                return
            op = buf[pos]
            length = _U64.unpack_from(buf, pos + 1)[0]
            end = pos + _RECORD_HEAD + length
            if op not in _KNOWN_OPS or end > size:
                if op in (OP_CHUNK, OP_MESSAGE_INDEX) and self._next_record(buf, pos, size) is None:
                    self._damaged(pos, size, f'file cut off inside a record (opcode 0x{op:02x}, '
                                  f'{length} bytes announced, {size - pos - _RECORD_HEAD} there)',
                                  cut_off=True)
                    return
                pos = self._resync(buf, pos, size, f'garbled record header (opcode 0x{op:02x}, '
                                   f'length {length})')
                if pos is None:
                    return
                continue
            if op == OP_CHUNK:
                try:
                    records = self._chunk_records(buf, pos, end)
                except McapFormatError as error:
                    if self._chunk_framed(buf, pos, end):
                        self._damaged(pos, end, f'corrupt chunk: {error}')
                        pos = end
                    else:  # the length field itself is damaged: find the next record
                        pos = self._resync(buf, pos, size, f'corrupt chunk: {error}')
                        if pos is None:
                            return
                    continue
                yield from records
            elif op == OP_DATA_END:
                return
            else:
                try:
                    message = self._record(op, buf[pos + _RECORD_HEAD:end])
                except McapFormatError as error:
                    pos = self._resync(buf, pos, size, f'corrupt record 0x{op:02x}: {error}')
                    if pos is None:
                        return
                    continue
                if message is not None:
                    yield message
            pos = end
        self._damaged(size, size, 'file ends without DataEnd and summary (not closed)',
                      cut_off=True)

    def _chunk_records(self, buf: mmap.mmap, pos: int, end: int) -> list[RawMessage]:
        """The messages of one chunk, after its framing and CRC are checked; a chunk either
        yields all its messages or none."""
        body = pos + _RECORD_HEAD
        if end - body < _CHUNK_HEAD.size + 12:
            raise McapFormatError('too short for a chunk')
        _, _, raw_size, crc = _CHUNK_HEAD.unpack_from(buf, body)
        at = body + _CHUNK_HEAD.size
        name_length = _U32.unpack_from(buf, at)[0]
        if name_length > 16 or at + 4 + name_length + 8 > end:
            raise McapFormatError('bad compression field')
        compression = bytes(buf[at + 4:at + 4 + name_length]).decode('ascii', 'replace')
        at += 4 + name_length
        data_length = _U64.unpack_from(buf, at)[0]
        at += 8
        if at + data_length != end:
            raise McapFormatError(f'its fields add up to {at + data_length - pos} bytes, its '
                                  f'record to {end - pos}')
        decompress = DECOMPRESSORS.get(compression)
        if decompress is None:
            raise McapFormatError(f'unknown compression {compression!r}')
        try:
            raw = decompress(bytes(buf[at:end]), raw_size)
        except Exception as error:  # the decompressors raise their own types
            raise McapFormatError(f'does not decompress ({error})') from None
        if len(raw) != raw_size:
            raise McapFormatError(f'{len(raw)} bytes decompressed, {raw_size} announced')
        if crc:
            actual = zlib.crc32(raw)
            if actual != crc:
                raise McapFormatError(f'CRC mismatch (stored 0x{crc:08x}, computed '
                                      f'0x{actual:08x})')
        schemas, channels = dict(self._schemas), dict(self.channels)
        messages = []
        try:
            inner = 0
            view = memoryview(raw)
            while inner < len(raw):
                if inner + _RECORD_HEAD > len(raw):
                    raise McapFormatError('record header cut off inside the chunk')
                op = raw[inner]
                length = _U64.unpack_from(raw, inner + 1)[0]
                stop = inner + _RECORD_HEAD + length
                if op not in _KNOWN_OPS or stop > len(raw):
                    raise McapFormatError(f'garbled record at chunk offset {inner}')
                message = self._record(op, view[inner + _RECORD_HEAD:stop])
                if message is not None:
                    messages.append(message)
                inner = stop
        except McapFormatError:
            self._schemas, self.channels = schemas, channels  # nothing of a bad chunk counts
            raise
        if crc:
            self.verified_chunks += 1
        else:
            self.unverified_chunks += 1
        self.messages_found += len(messages)
        return messages

    def _chunk_framed(self, buf: mmap.mmap, pos: int, end: int) -> bool:
        """Whether a chunk's length fields are consistent (so its end can be trusted)."""
        body = pos + _RECORD_HEAD
        if end - body < _CHUNK_HEAD.size + 12:
            return False
        at = body + _CHUNK_HEAD.size
        name_length = _U32.unpack_from(buf, at)[0]
        if name_length > 16 or at + 4 + name_length + 8 > end:
            return False
        data_length = _U64.unpack_from(buf, at + 4 + name_length)[0]
        return at + 4 + name_length + 8 + data_length == end

    def _record(self, op: int, body: memoryview | bytes) -> RawMessage | None:
        try:
            if op == OP_SCHEMA:
                schema_id = _U16.unpack_from(body, 0)[0]
                name, at = _string(body, 2)
                encoding, at = _string(body, at)
                data, at = _bytes(body, at)
                if schema_id:
                    self._schemas[schema_id] = SchemaInfo(name, encoding, data)
                    self._resolve_channels()
            elif op == OP_CHANNEL:
                channel_id, schema_id = struct.unpack_from('<HH', body, 0)
                topic, at = _string(body, 4)
                encoding, at = _string(body, at)
                metadata = _string_map(body, at)
                self._pending_channels[channel_id] = (schema_id, topic, encoding, metadata)
                self._resolve_channels()
            elif op == OP_MESSAGE:
                channel_id, sequence, log_time, publish_time = _MESSAGE_HEAD.unpack_from(body, 0)
                channel = self.channels.get(channel_id)
                if channel is None:
                    raise McapFormatError(f'message on unknown channel {channel_id}')
                return RawMessage(channel, sequence, log_time, publish_time,
                                  bytes(body[_MESSAGE_HEAD.size:]))
        except (struct.error, UnicodeDecodeError) as error:
            raise McapFormatError(f'record 0x{op:02x} does not parse ({error})') from None
        return None

    def _resolve_channels(self) -> None:
        for channel_id, (schema_id, topic, encoding, metadata) in list(
                self._pending_channels.items()):
            schema = self._schemas.get(schema_id)
            if schema_id and schema is None:
                continue
            del self._pending_channels[channel_id]
            self.channels.setdefault(channel_id,
                                     ChannelInfo(channel_id, topic, encoding, schema, metadata))

    def _next_record(self, buf: mmap.mmap, bad: int, size: int) -> int | None:
        """The offset of the next record after `bad` that frames correctly, or None."""
        for match in _RESYNC.finditer(buf, bad + 1, size):
            pos = match.start()
            if pos + _RECORD_HEAD > size:
                return None
            op = buf[pos]
            length = _U64.unpack_from(buf, pos + 1)[0]
            end = pos + _RECORD_HEAD + length
            if end > size:
                continue
            if ((op == OP_CHUNK and self._chunk_framed(buf, pos, end))
                    or (op == OP_DATA_END and length == 4)
                    or (op == OP_MESSAGE_INDEX and length >= 6
                        and 6 + _U32.unpack_from(buf, pos + _RECORD_HEAD + 2)[0] == length)):
                return pos
        return None

    def _resync(self, buf: mmap.mmap, bad: int, size: int, reason: str) -> int | None:
        """Skip to the next record that frames correctly (None: there is none), reporting the
        bytes in between as damage."""
        pos = self._next_record(buf, bad, size)
        self._damaged(bad, size if pos is None else pos, reason)
        return pos

    def _damaged(self, start: int, end: int, reason: str, cut_off: bool = False) -> None:
        self.damage.append(Damage(self.path, start, end, reason, cut_off))

    # -- summary

    def _read_summary(self, buf: mmap.mmap, report: bool) -> bool:
        """Take schemas, channels and the message count from the summary; False when there is
        none (an unclosed file) or it does not parse."""
        size = len(buf)
        footer = size - len(MAGIC) - _FOOTER_SIZE
        if footer < len(MAGIC) or buf[size - len(MAGIC):] != MAGIC or buf[footer] != OP_FOOTER:
            return False
        summary_start, offsets_start, summary_crc = struct.unpack_from(
            '<QQI', buf, footer + _RECORD_HEAD)
        if not summary_start:
            return False
        if not len(MAGIC) <= summary_start <= footer:
            if report:
                self._damaged(footer, size, 'footer points outside the file')
            return False
        if summary_crc:
            actual = zlib.crc32(buf[summary_start:size - len(MAGIC) - 4])
            if actual != summary_crc:
                if report:
                    self._damaged(summary_start, size, 'summary CRC mismatch; the summary is '
                                  'ignored')
                return False
        end = offsets_start or footer
        pos = summary_start
        schemas, channels = dict(self._schemas), dict(self.channels)
        try:
            while pos < end:
                op = buf[pos]
                length = _U64.unpack_from(buf, pos + 1)[0]
                stop = pos + _RECORD_HEAD + length
                if op not in _KNOWN_OPS or stop > end:
                    raise McapFormatError(f'garbled summary record at byte {pos}')
                if op in (OP_SCHEMA, OP_CHANNEL):
                    self._record(op, buf[pos + _RECORD_HEAD:stop])
                elif op == OP_STATISTICS:
                    self._summary_count = _U64.unpack_from(buf, pos + _RECORD_HEAD)[0]
                pos = stop
        except (McapFormatError, struct.error) as error:
            self._schemas, self.channels, self._summary_count = schemas, channels, None
            if report:
                self._damaged(summary_start, size, f'summary ignored: {error}')
            return False
        return True


def _string(body: memoryview | bytes, at: int) -> tuple[str, int]:
    length = _U32.unpack_from(body, at)[0]
    if at + 4 + length > len(body):
        raise McapFormatError('string runs past its record')
    return bytes(body[at + 4:at + 4 + length]).decode('utf-8'), at + 4 + length


def _bytes(body: memoryview | bytes, at: int) -> tuple[bytes, int]:
    length = _U32.unpack_from(body, at)[0]
    if at + 4 + length > len(body):
        raise McapFormatError('byte array runs past its record')
    return bytes(body[at + 4:at + 4 + length]), at + 4 + length


def _string_map(body: memoryview | bytes, at: int) -> dict[str, str]:
    length = _U32.unpack_from(body, at)[0]
    stop = at + 4 + length
    if stop > len(body):
        raise McapFormatError('map runs past its record')
    at += 4
    result = {}
    while at < stop:
        key, at = _string(body, at)
        value, at = _string(body, at)
        result[key] = value
    return result
