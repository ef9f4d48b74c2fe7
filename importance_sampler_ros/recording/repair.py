"""`importance-sampler bag-repair PATH`: recover what can be read of a split that was never closed,
and verify (and if need be rewrite) the ones that were.

A split left open by SIGKILL or power loss lacks metadata.yaml (rosbag2 readers refuse it), and:

- MCAP: the file ends without summary and footer, possibly inside a record. The repair reads it
  with bags/mcap_scan.py (record by record, chunk CRCs checked, damaged ranges skipped), checks
  that every message decodes as its schema's type (an Image also that its data fits its size),
  and writes the messages that pass into a new MCAP file with CRCs and a full summary, which
  replaces the damaged file atomically (with --keep-damaged the original stays next to it as
  *.damaged). The result is then read back with rosbags and every message decoded; a split
  that does not pass is reported failed, never repaired.
- SQLite3: transactions committed before the crash are in the .db3 (SQLite rolls back a half
  written one when the file is opened); the repair only reads the topics and counts.

Both then get a metadata.yaml rebuilt from what was read (topics, types, type hashes, counts,
time range), the same fields rosbags writes. A closed MCAP split (with metadata.yaml) is verified
the same way and rewritten only when damage is found.

Exit status: 0 when every split is intact or was recovered up to where it was cut off (what a
crash leaves), 3 when damage inside a file was skipped (a corrupt chunk, a garbled record:
messages lost in the middle), 1 when a split could not be repaired.
"""
from __future__ import annotations

import argparse
import os
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from mcap.writer import CompressionType
from mcap.writer import Writer as McapWriter
from rosbags.typesys import Stores, get_types_from_msg, get_typestore
from rosbags.typesys.store import Typestore

from importance_sampler_ros.bags import bag_io
from importance_sampler_ros.bags.mcap_scan import ChannelInfo, Damage, McapScan

_LIBRARY = 'importance_sampler_ros bag-repair'
EXIT_FAILED = 1
EXIT_PARTIAL = 3


@dataclass
class _Topic:
    name: str
    msgtype: str
    msgdef: str
    qos: str
    type_hash: str = ''
    count: int = 0


@dataclass
class RepairResult:
    path: Path
    status: str  # 'repaired', 'closed' (intact, nothing to do) or 'failed'
    messages: int = 0
    detail: str = ''
    topics: dict[str, int] = field(default_factory=dict)
    damage: list[Damage] = field(default_factory=list)  # what was skipped
    undecodable: int = 0  # messages dropped because they do not decode

    @property
    def lost_inside(self) -> bool:
        """Whether data inside the file was skipped (not only a cut-off end)."""
        return self.undecodable > 0 or any(not d.cut_off for d in self.damage)


def repair(path: str | Path, keep_damaged: bool = False) -> list[RepairResult]:
    """Repair one split directory, every split of a recording directory, or the split holding
    a given .mcap/.db3 file."""
    path = Path(path)
    if path.is_file():
        path = path.parent
    if not path.is_dir():
        return [RepairResult(path, 'failed', detail='no such directory')]
    if _storage_file(path) is not None:
        return [repair_split(path, keep_damaged)]
    splits = sorted(p for p in path.iterdir() if p.is_dir() and _storage_file(p) is not None)
    if not splits:
        return [RepairResult(path, 'failed', detail='no .mcap or .db3 bag file found')]
    return [repair_split(p, keep_damaged) for p in splits]


def repair_split(split: Path, keep_damaged: bool = False) -> RepairResult:
    bag_file = _storage_file(split)
    closed = (split / 'metadata.yaml').exists()
    if closed and (bag_file is None or bag_file.suffix != '.mcap'):
        return RepairResult(split, 'closed', detail='has metadata.yaml; left as it is')
    if bag_file is None:
        return RepairResult(split, 'failed', detail='no .mcap or .db3 bag file found')
    result = RepairResult(split, 'repaired')
    try:
        if bag_file.suffix == '.mcap':
            scan = McapScan(bag_file)
            if closed:
                checked = sum(1 for _ in scan.messages())
                if not scan.damage:
                    return RepairResult(split, 'closed', checked,
                                        f'has metadata.yaml; verified {checked} messages '
                                        f'({scan.verified_chunks} chunks with CRC, '
                                        f'{scan.unverified_chunks} without)')
            topics, start, end = _repair_mcap(bag_file, keep_damaged, result)
            storage = 'mcap'
        else:
            topics, start, end = _read_sqlite(bag_file)
            result.detail = 'committed transactions read'
            storage = 'sqlite3'
        _write_metadata(split, bag_file.name, storage, topics, start, end)
        if storage == 'mcap':
            _check_decodes(split)
    except Exception as error:  # report and go on with the next split
        return RepairResult(split, 'failed', detail=f'{type(error).__name__}: {error}')
    result.topics = {t.name: t.count for t in topics}
    result.messages = sum(result.topics.values())
    return result


def _storage_file(split: Path) -> Path | None:
    for suffix in ('.mcap', '.db3'):
        files = sorted(split.glob(f'*{suffix}'))
        if files:
            return files[0]
    return None


def _repair_mcap(
    path: Path, keep_damaged: bool, result: RepairResult
) -> tuple[list[_Topic], int, int]:
    """Copy the intact, decodable messages of `path` into a new MCAP file with CRCs and a
    summary; replace it. What was skipped goes into `result`."""
    tmp = path.with_name(path.name + '.repairing')
    scan = McapScan(path)
    out_channels: dict[int, tuple[int, _Topic]] = {}  # scanned channel id -> (new id, topic)
    out_schemas: dict[tuple[str, bytes], int] = {}
    checker = _Decoder()
    start, end = 2**63 - 1, 0
    try:
        with tmp.open('wb') as sink:
            writer = McapWriter(sink, compression=CompressionType.NONE)
            writer.start(profile='ros2', library=_LIBRARY)
            for message in scan.messages():
                channel = message.channel
                if channel.schema is None:
                    continue
                if not checker.decodes(channel, message.data):
                    result.undecodable += 1
                    continue
                if channel.id not in out_channels:
                    out_channels[channel.id] = _register(writer, channel, out_schemas)
                new_id, topic = out_channels[channel.id]
                writer.add_message(new_id, message.log_time, message.data, message.publish_time,
                                   message.sequence)
                topic.count += 1
                start, end = min(start, message.log_time), max(end, message.log_time)
            writer.finish()
            sink.flush()
            os.fsync(sink.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)  # e.g. the disk is full: leave the damaged file as it was
        raise
    if keep_damaged:
        path.replace(path.with_name(path.name + '.damaged'))
    tmp.replace(path)
    result.damage = list(scan.damage)
    parts = [str(d) for d in scan.damage] or ['read to the end']
    if result.undecodable:
        parts.append(f'{result.undecodable} messages dropped: they do not decode '
                     f'({checker.first_error})')
    result.detail = '; '.join(parts)
    topics = [t for _, t in out_channels.values()]
    for topic in topics:
        topic.type_hash = _type_hash(topic.msgtype, topic.msgdef)
    return topics, start, end


def _register(writer: McapWriter, channel: ChannelInfo,
              schemas: dict[tuple[str, bytes], int]) -> tuple[int, _Topic]:
    schema = channel.schema
    assert schema is not None
    key = (schema.name, schema.data)
    if key not in schemas:
        schemas[key] = writer.register_schema(schema.name, schema.encoding, schema.data)
    new_id = writer.register_channel(channel.topic, channel.message_encoding, schemas[key],
                                     dict(channel.metadata))
    topic = _Topic(channel.topic, schema.name, schema.data.decode('utf-8', 'replace'),
                   channel.metadata.get('offered_qos_profiles', ''))
    return new_id, topic


class _Decoder:
    """Decodes messages with the types their schemas define (the package's and ROS's types are
    known already); a type whose definition does not parse cannot be checked and passes."""

    def __init__(self) -> None:
        self._stores: dict[tuple[str, bytes], Typestore | None] = {}
        self.first_error = ''

    def decodes(self, channel: ChannelInfo, data: bytes) -> bool:
        schema = channel.schema
        assert schema is not None
        key = (schema.name, schema.data)
        if key not in self._stores:
            self._stores[key] = _schema_store(schema.name, schema.data.decode('utf-8', 'replace'))
        store = self._stores[key]
        if store is None:
            return True
        try:
            message = store.deserialize_cdr(data, schema.name)
            if schema.name == bag_io.IMAGE_TYPE:
                bag_io.check_image(message)
        except Exception as error:  # rosbags raises SerdeError and others; ours BadMessageError
            if not self.first_error:
                self.first_error = f'{channel.topic}: {error}'
            return False
        return True


def _schema_store(msgtype: str, msgdef: str) -> Typestore | None:
    try:
        store = get_typestore(Stores.EMPTY)
        store.register(get_types_from_msg(msgdef, msgtype))
        return store
    except Exception:  # rosbags raises several types for definitions it cannot parse
        return None


def _check_decodes(split: Path) -> None:
    """Read the repaired split back with rosbags (an independent reader) and decode every
    message; raise if anything does not."""
    reader = bag_io.open_reader(split)
    try:
        for connection, _, rawdata in reader.messages():
            reader.deserialize(rawdata, connection.msgtype)
    finally:
        reader.close()


def _read_sqlite(path: Path) -> tuple[list[_Topic], int, int]:
    # Opening read-write lets SQLite roll back a transaction the crash left half written.
    connection = sqlite3.connect(f'file:{path}', uri=True)
    try:
        columns = {row[1] for row in connection.execute('PRAGMA table_info(topics)')}
        hash_column = 'type_description_hash' if 'type_description_hash' in columns else "''"
        rows = connection.execute(
            f'SELECT id, name, type, offered_qos_profiles, {hash_column} FROM topics'
        ).fetchall()
        counts = {
            topic_id: (count, low, high)
            for topic_id, count, low, high in connection.execute(
                'SELECT topic_id, count(*), min(timestamp), max(timestamp) FROM messages '
                'GROUP BY topic_id')
        }
    finally:
        connection.close()
    topics = []
    start, end = 2**63 - 1, 0
    for topic_id, name, msgtype, qos, type_hash in rows:
        count, low, high = counts.get(topic_id, (0, None, None))
        if count:
            start, end = min(start, low), max(end, high)
        topics.append(_Topic(name, msgtype, '', qos or '', type_hash or '', count))
    return topics, start, end


def _type_hash(msgtype: str, msgdef: str) -> str:
    """RIHS01 hash of a type from its (concatenated) message definition; '' if it does not
    parse (readers then take the definition from the file itself)."""
    try:
        store = get_typestore(Stores.EMPTY)
        store.register(get_types_from_msg(msgdef, msgtype))
        return store.hash_rihs01(msgtype)
    except Exception:  # rosbags raises several types for definitions it cannot parse
        return ''


def _write_metadata(
    split: Path, file_name: str, storage: str, topics: list[_Topic], start: int, end: int
) -> None:
    count = sum(t.count for t in topics)
    if not count:
        start = end = 0
    duration = max(0, end - start)
    info: dict[str, Any] = {
        'version': 9,
        'storage_identifier': storage,
        'relative_file_paths': [file_name],
        'duration': {'nanoseconds': duration},
        'starting_time': {'nanoseconds_since_epoch': start},
        'message_count': count,
        'topics_with_message_count': [
            {
                'topic_metadata': {
                    'name': t.name,
                    'type': t.msgtype,
                    'serialization_format': 'cdr',
                    'offered_qos_profiles': (yaml.safe_load(t.qos) or []) if t.qos else [],
                    'type_description_hash': t.type_hash,
                },
                'message_count': t.count,
            }
            for t in topics
        ],
        'compression_format': '',
        'compression_mode': '',
        'files': [{
            'path': file_name,
            'starting_time': {'nanoseconds_since_epoch': start},
            'duration': {'nanoseconds': duration},
            'message_count': count,
        }],
        'custom_data': {'repaired_by': _LIBRARY},
        'ros_distro': 'rosbags',
    }
    tmp = split / 'metadata.yaml.tmp'
    tmp.write_text(yaml.safe_dump({'rosbag2_bagfile_information': info}, sort_keys=False))
    tmp.replace(split / 'metadata.yaml')


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('paths', nargs='+', type=Path, metavar='PATH',
                        help='a split directory, a recording directory (all its unclosed '
                             "splits), or a split's .mcap/.db3 file")
    parser.add_argument('--keep-damaged', action='store_true',
                        help='keep the damaged MCAP file next to the repaired one as *.damaged '
                             '(needs as much free space again)')


def run(args: argparse.Namespace) -> int:
    failed = lost = False
    for path in args.paths:
        for result in repair(path, keep_damaged=args.keep_damaged):
            if result.status == 'repaired':
                topics = ', '.join(f'{k}: {v}' for k, v in result.topics.items())
                print(f'{result.path}: repaired, {result.messages} messages ({topics}); '
                      f'{result.detail}')
                lost = lost or result.lost_inside
            elif result.status == 'closed':
                print(f'{result.path}: {result.detail}')
            else:
                failed = True
                print(f'{result.path}: repair failed: {result.detail}')
    return EXIT_FAILED if failed else EXIT_PARTIAL if lost else 0
