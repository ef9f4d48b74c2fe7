"""`importance-sampler bag-repair PATH`: recover what can be read of a split that was never closed.

A split left open by SIGKILL or power loss lacks metadata.yaml (rosbag2 readers refuse it), and:

- MCAP: the file ends without summary and footer, possibly inside a record. Everything before
  the damage is intact: the header, then complete chunks (each with the schema and channel
  records the writer put into it) and their message indexes. The repair reads the records in file
  order, stops at the first one that is cut off or does not parse, and rewrites the messages read
  so far into a new MCAP file with a full summary (chunk indexes, statistics), which replaces the
  damaged file atomically (with --keep-damaged the original stays next to it as *.damaged).
- SQLite3: transactions committed before the crash are in the .db3 (SQLite rolls back a half
  written one when the file is opened); the repair only reads the topics and counts.

Both then get a metadata.yaml rebuilt from what was read (topics, types, type hashes, counts,
time range), the same fields rosbags writes. A split that has metadata.yaml is left alone.
"""
from __future__ import annotations

import argparse
import os
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from mcap.records import Channel, Message, Schema
from mcap.stream_reader import StreamReader
from mcap.writer import CompressionType
from mcap.writer import Writer as McapWriter
from rosbags.typesys import Stores, get_types_from_msg, get_typestore

_LIBRARY = 'importance_sampler_ros bag-repair'


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
    status: str  # 'repaired', 'closed' (nothing to do) or 'failed'
    messages: int = 0
    detail: str = ''
    topics: dict[str, int] = field(default_factory=dict)


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
    if (split / 'metadata.yaml').exists():
        return RepairResult(split, 'closed', detail='has metadata.yaml; left as it is')
    bag_file = _storage_file(split)
    if bag_file is None:
        return RepairResult(split, 'failed', detail='no .mcap or .db3 bag file found')
    try:
        if bag_file.suffix == '.mcap':
            topics, start, end, detail = _repair_mcap(bag_file, keep_damaged)
            storage = 'mcap'
        else:
            topics, start, end, detail = _read_sqlite(bag_file)
            storage = 'sqlite3'
        _write_metadata(split, bag_file.name, storage, topics, start, end)
    except Exception as error:  # report and go on with the next split
        return RepairResult(split, 'failed', detail=f'{type(error).__name__}: {error}')
    counts = {t.name: t.count for t in topics}
    return RepairResult(split, 'repaired', sum(counts.values()), detail, counts)


def _storage_file(split: Path) -> Path | None:
    for suffix in ('.mcap', '.db3'):
        files = sorted(split.glob(f'*{suffix}'))
        if files:
            return files[0]
    return None


def _repair_mcap(
    path: Path, keep_damaged: bool
) -> tuple[list[_Topic], int, int, str]:
    """Copy the intact messages of `path` into a new MCAP file with a summary; replace it."""
    tmp = path.with_name(path.name + '.repairing')
    schemas: dict[int, Schema] = {}
    channels: dict[int, tuple[int, _Topic]] = {}  # old channel id -> (new id, topic)
    out_schema_ids: dict[int, int] = {}
    start, end = 2**63 - 1, 0
    stopped = 'read to the end'
    try:
        with path.open('rb') as source, tmp.open('wb') as sink:
            writer = McapWriter(sink, compression=CompressionType.NONE)
            writer.start(profile='ros2', library=_LIBRARY)
            records = StreamReader(source, record_size_limit=None).records
            while True:
                try:
                    record = next(records)
                except StopIteration:
                    break
                except Exception as error:  # a cut-off or garbled record: the damage starts here
                    stopped = f'stopped at byte {source.tell()}: {type(error).__name__} {error}'
                    break
                if isinstance(record, Schema):
                    schemas[record.id] = record
                elif isinstance(record, Channel) and record.id not in channels:
                    schema = schemas.get(record.schema_id)
                    if schema is None:
                        continue
                    if schema.id not in out_schema_ids:
                        out_schema_ids[schema.id] = writer.register_schema(
                            schema.name, schema.encoding, schema.data)
                    new_id = writer.register_channel(
                        record.topic, record.message_encoding, out_schema_ids[schema.id],
                        dict(record.metadata))
                    topic = _Topic(record.topic, schema.name, schema.data.decode(),
                                   record.metadata.get('offered_qos_profiles', ''))
                    channels[record.id] = (new_id, topic)
                elif isinstance(record, Message) and record.channel_id in channels:
                    new_id, topic = channels[record.channel_id]
                    writer.add_message(new_id, record.log_time, record.data, record.publish_time,
                                       record.sequence)
                    topic.count += 1
                    start, end = min(start, record.log_time), max(end, record.log_time)
            writer.finish()
            sink.flush()
            os.fsync(sink.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)  # e.g. the disk is full: leave the damaged file as it was
        raise
    if keep_damaged:
        path.replace(path.with_name(path.name + '.damaged'))
    tmp.replace(path)
    topics = [t for _, t in channels.values()]
    for topic in topics:
        topic.type_hash = _type_hash(topic.msgtype, topic.msgdef)
    return topics, start, end, stopped


def _read_sqlite(path: Path) -> tuple[list[_Topic], int, int, str]:
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
    return topics, start, end, 'committed transactions read'


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
    failed = False
    for path in args.paths:
        for result in repair(path, keep_damaged=args.keep_damaged):
            if result.status == 'repaired':
                topics = ', '.join(f'{k}: {v}' for k, v in result.topics.items())
                print(f'{result.path}: repaired, {result.messages} messages ({topics}); '
                      f'{result.detail}')
            elif result.status == 'closed':
                print(f'{result.path}: {result.detail}')
            else:
                failed = True
                print(f'{result.path}: repair failed: {result.detail}')
    return 1 if failed else 0
