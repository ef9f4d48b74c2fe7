"""Damaged bags: every kind of corruption is found, reported with its byte range and skipped by
the readers (bag_io, replay, bag-repair); nothing that does not decode is passed on. Chunk
offsets come from the mcap package's reader (independent of bags/mcap_scan.py)."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from mcap.reader import make_reader
from replay_bags import write_drive
from rosbags.highlevel import AnyReader

from importance_sampler_ros.bags import bag_io
from importance_sampler_ros.bags.frames import FrameSource
from importance_sampler_ros.bags.mcap_scan import McapScan
from importance_sampler_ros.cli import main as cli_main
from importance_sampler_ros.offline.replay import EXIT_TRUNCATED, ReplayError, replay_bag
from importance_sampler_ros.recording.repair import EXIT_PARTIAL, repair

FRAMES = 100
IMAGE_TOPIC = '/camera/image_raw'
OVERRIDES = {'recorder_node': {'keep_ratio': 0.5, 'seed': 1, 'warmup_frames': 0,
                               'buffer_seconds': 0.5, 'fsync': False}}


@pytest.fixture(scope='module')
def drive(tmp_path_factory) -> Path:
    """100 frames of 160x96 (+ detections), ~4.6 MB: 5 chunks of ~1 MiB."""
    path = tmp_path_factory.mktemp('drive') / 'drive'
    write_drive(path, FRAMES)
    return path


def mcap_file(bag: Path) -> Path:
    (file,) = bag.glob('*.mcap')
    return file


def chunks(file: Path) -> list[tuple[int, int, int]]:
    """(start, end, message count) of each chunk: offsets from the summary's chunk indexes,
    counts from the chunk records themselves (the mcap package's stream reader)."""
    from mcap.reader import breakup_chunk
    from mcap.records import Chunk, Message
    from mcap.stream_reader import StreamReader

    with file.open('rb') as stream:
        indexes = make_reader(stream).get_summary().chunk_indexes
    with file.open('rb') as stream:
        counts = [sum(isinstance(r, Message) for r in breakup_chunk(record))
                  for record in StreamReader(stream, emit_chunks=True).records
                  if isinstance(record, Chunk)]
    assert len(counts) == len(indexes)
    return [(i.chunk_start_offset, i.chunk_start_offset + i.chunk_length, n)
            for i, n in zip(indexes, counts, strict=True)]


def damaged_copy(drive: Path, tmp_path: Path, edit) -> tuple[Path, list[tuple[int, int, int]]]:
    bag = tmp_path / 'bag'
    shutil.copytree(drive, bag)
    file = mcap_file(bag)
    layout = chunks(file)
    data = bytearray(file.read_bytes())
    edit(data, layout)
    file.write_bytes(bytes(data))
    return bag, layout


def flip_random_256(data: bytearray, layout) -> None:
    start, end, _ = layout[2]
    at = (start + end) // 2
    data[at:at + 256] = np.random.default_rng(0).integers(0, 256, 256, np.uint8).tobytes()


def flip_length(data: bytearray, layout) -> None:
    start, _, _ = layout[2]
    data[start + 1 + 3] ^= 0x10  # the record length field, byte 3: +256 MiB


def flip_opcode(data: bytearray, layout) -> None:
    start, _, _ = layout[2]
    data[start] = 0x42


def flip_payload_bit(data: bytearray, layout) -> None:
    _, end, _ = layout[2]
    data[end - 5000] ^= 0x01


CORRUPTIONS = {'random 256 bytes': flip_random_256, 'length field': flip_length,
               'opcode': flip_opcode, 'one payload bit': flip_payload_bit}


def test_written_chunks_carry_crcs_that_the_mcap_reader_checks(drive: Path) -> None:
    file = mcap_file(drive)
    with file.open('rb') as stream:
        reader = make_reader(stream, validate_crcs=True)
        assert sum(1 for _ in reader.iter_messages()) == 2 * FRAMES
        summary = reader.get_summary()
    assert len(summary.chunk_indexes) >= 4
    scan = McapScan(file)
    assert sum(1 for _ in scan.messages()) == 2 * FRAMES
    assert (scan.verified_chunks, scan.unverified_chunks, scan.damage) == (
        len(summary.chunk_indexes), 0, [])
    with file.open('rb') as stream:  # the footer's summary CRC is filled in too
        stream.seek(-12, 2)
        assert int.from_bytes(stream.read(4), 'little') != 0


@pytest.mark.parametrize('corruption', CORRUPTIONS)
def test_a_corrupt_chunk_is_reported_with_its_range_and_skipped(drive: Path, tmp_path: Path,
                                                                corruption: str) -> None:
    bag, layout = damaged_copy(drive, tmp_path, CORRUPTIONS[corruption])
    start, end, lost = layout[2]
    damage: list = []
    messages = list(bag_io.read_messages(bag, damage=damage))
    assert len(damage) == 1, [str(d) for d in damage]
    assert damage[0].start == start and damage[0].end >= end and not damage[0].cut_off
    assert len(messages) == 2 * FRAMES - lost
    for message in messages:  # what is passed on decodes
        bag_io.validate_message(message.rawdata, message.msgtype)
    with pytest.raises(bag_io.BagError, match=f'bytes {start}-'):  # never silent
        list(bag_io.read_messages(bag))


def test_a_damaged_chunk_index_loses_nothing_and_is_reported(drive: Path,
                                                             tmp_path: Path) -> None:
    def damage_summary(data: bytearray, layout) -> None:
        data[layout[-1][1] + 2000] ^= 0xFF  # past the last chunk: indexes / summary

    bag, _ = damaged_copy(drive, tmp_path, damage_summary)
    damage: list = []
    assert len(list(bag_io.read_messages(bag, damage=damage))) == 2 * FRAMES
    assert len(damage) == 1 and 'summary' in damage[0].reason


def test_replay_skips_the_corrupt_chunk_and_exits_partial(drive: Path, tmp_path: Path) -> None:
    bag, layout = damaged_copy(drive, tmp_path, flip_payload_bit)
    result = replay_bag(bag, tmp_path / 'out', use_recorded_detections=True,
                        overrides=OVERRIDES)
    assert result.exit_code == EXIT_TRUNCATED
    assert f'bytes {layout[2][0]}-{layout[2][1]}' in result.report.truncated
    assert 'CRC mismatch' in result.report.truncated
    assert FRAMES - layout[2][2] <= result.report.frames_in < FRAMES
    assert 'PARTIAL INPUT' in '\n'.join(result.report.summary_lines())


def test_bag_repair_rewrites_a_bit_flipped_closed_split_into_one_that_decodes(
        drive: Path, tmp_path: Path) -> None:
    bag, layout = damaged_copy(drive, tmp_path, flip_payload_bit)
    assert cli_main(['bag-repair', str(bag)]) == EXIT_PARTIAL
    with AnyReader([bag], default_typestore=bag_io.typestore()) as reader:
        count = 0
        for connection, _, raw in reader.messages():
            reader.deserialize(raw, connection.msgtype)
            count += 1
    assert count == 2 * FRAMES - layout[2][2]
    with mcap_file(bag).open('rb') as stream:
        assert sum(1 for _ in make_reader(stream, validate_crcs=True).iter_messages()) == count
    (again,) = repair(bag)
    assert again.status == 'closed' and 'verified' in again.detail
    assert cli_main(['bag-repair', str(bag)]) == 0


def test_bag_repair_drops_messages_that_do_not_decode(tmp_path: Path) -> None:
    """A chunk without CRC (as rosbags writes them) whose image is cut short: the CRC cannot
    tell, decoding can."""
    from rosbags.rosbag2 import StoragePlugin, Writer

    good = write_drive(tmp_path / 'ref', 3, with_detections=False)
    images = [m.rawdata for m in bag_io.read_messages(tmp_path / 'ref')]
    split = tmp_path / 'split'
    writer = Writer(split, version=9, storage_plugin=StoragePlugin.MCAP)  # CRC 0
    writer.open()
    connection = writer.add_connection(IMAGE_TOPIC, bag_io.IMAGE_TYPE,
                                       typestore=bag_io.typestore())
    for det, data in zip(good, images, strict=True):
        writer.write(connection, det.stamp_ns, data[:-50] if det is good[1] else data)
    writer.storage.close_chunk()  # flushed, then never closed: an unclosed split
    writer.storage.bio.flush()
    writer.abort()
    (result,) = repair(split)
    assert result.status == 'repaired' and result.undecodable == 1 and result.lost_inside
    assert result.messages == 2
    with AnyReader([split], default_typestore=bag_io.typestore()) as reader:
        stamps = [t for _, t, _ in reader.messages()]
    assert stamps == [good[0].stamp_ns, good[2].stamp_ns]


def test_garbage_metadata_is_reported_as_such(drive: Path, tmp_path: Path) -> None:
    bag = tmp_path / 'bag'
    shutil.copytree(drive, bag)
    (bag / 'metadata.yaml').write_text(': : not yaml [\n')
    source = FrameSource(bag)
    assert len(list(source)) == FRAMES
    assert 'metadata.yaml' in source.truncated and 'not rosbag2 metadata' in source.truncated
    assert 'cut off' not in source.truncated and 'read to the end' not in source.truncated


def test_an_mcap_without_metadata_reads_whole_and_a_cut_one_up_to_the_cut(
        drive: Path, tmp_path: Path) -> None:
    bag = tmp_path / 'bag'
    shutil.copytree(drive, bag)
    (bag / 'metadata.yaml').unlink()
    damage: list = []
    assert len(list(bag_io.read_messages(bag, damage=damage))) == 2 * FRAMES and not damage
    file = mcap_file(bag)
    layout = chunks(file)
    with file.open('r+b') as stream:
        stream.truncate(layout[3][0] + 1000)
    assert len(list(bag_io.read_messages(bag, damage=damage))) == sum(c[2] for c in layout[:3])
    assert len(damage) == 1 and damage[0].cut_off and damage[0].start == layout[3][0]


@pytest.mark.slow
def test_empty_directory_and_existing_file_as_out_are_one_line_errors(
        drive: Path, tmp_path: Path) -> None:
    (tmp_path / 'empty').mkdir()
    with pytest.raises(bag_io.BagError, match='not a rosbag2 bag'):
        bag_io.topics(tmp_path / 'empty')
    taken = tmp_path / 'taken'
    taken.write_text('x')
    with pytest.raises(ReplayError, match='is a file, not a directory'):
        replay_bag(drive, taken, use_recorded_detections=True, overrides=OVERRIDES)
    cli = [sys.executable, '-m', 'importance_sampler_ros.cli', 'replay']
    run = subprocess.run([*cli, str(drive), '--out', str(taken), '--use-recorded-detections'],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 1 and 'Traceback' not in run.stderr
    assert run.stderr.strip().splitlines() == [
        f'importance-sampler replay: error: --out {taken} is a file, not a directory; '
        'choose another --out']


def test_a_full_disk_while_the_report_is_written_is_one_line_and_no_partial_file(
        drive: Path, tmp_path: Path, monkeypatch) -> None:
    import errno

    from importance_sampler_ros import files
    from importance_sampler_ros.offline import report as report_module

    calls = []

    def fsync_fails_on_the_second_file(fd: int) -> None:
        calls.append(fd)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, 'No space left on device')

    monkeypatch.setattr(files.os, 'fsync', fsync_fails_on_the_second_file)
    real = report_module.write_atomically
    monkeypatch.setattr(report_module, 'write_atomically',
                        lambda path, data, sync=True: real(path, data, sync=True))
    with pytest.raises(ReplayError, match=r'report could not be written .*No space left'):
        replay_bag(drive, tmp_path / 'out', use_recorded_detections=True, overrides=OVERRIDES)
    out = tmp_path / 'out'
    pngs = sorted(p.name for p in out.glob('*.png'))
    assert pngs == ['importance_timeline.png']  # the first; the second never appeared
    assert not list(out.glob('.*.tmp')) and not (out / 'report.json').exists()
    assert all(p.stat().st_size > 0 for p in out.iterdir() if p.is_file())
