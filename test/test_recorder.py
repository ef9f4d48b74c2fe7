"""Recorder core: what lands in the bag, read back with independent readers; relabel keeps; splits;
write faults; SIGKILL mid-run and bag-repair.

Run as a script (`python test_recorder.py child OUT STORAGE`) it is the writing process that the
SIGKILL test kills.
"""
from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pytest
from rosbags.highlevel import AnyReader

from importance_sampler_ros.bags import bag_io
from importance_sampler_ros.bags.bag_io import BagWriter, header_from_cdr
from importance_sampler_ros.bags.messages import detections_from_msg, header_msg, time_msg
from importance_sampler_ros.cli import main as cli_main
from importance_sampler_ros.recording.recorder import (
    DECISIONS_TOPIC,
    DETECTIONS_TOPIC,
    IMAGE_TOPIC,
    RELABELS_TOPIC,
    DecidedStamps,
    Recorder,
    RecorderConfig,
    RecorderError,
    RecordingStoppedError,
)
from importance_sampler_ros.recording.repair import repair
from importance_sampler_ros.recording.splits import split_paths
from importance_sampler_ros.sampling.sampler import SamplerConfig

T0 = 1_700_000_000 * 1_000_000_000
FRAME_NS = 100_000_000  # 10 Hz
TOPICS = (IMAGE_TOPIC, DETECTIONS_TOPIC, RELABELS_TOPIC, DECISIONS_TOPIC)


def stamp(i: int) -> int:
    return T0 + i * FRAME_NS


def make_frame(
    i: int, width: int = 64, height: int = 32, track_id: int = 3
) -> tuple[bytes, object]:
    """(image CDR, rosbags DetectionArray) of frame i: one car of track `track_id`."""
    types = bag_io.msg_types()
    header = header_msg(stamp(i), 'camera', types)
    pixels = np.random.default_rng(i).integers(0, 255, width * height * 3, dtype=np.uint8)
    image = types.Image(header=header, height=height, width=width, encoding='rgb8',
                        is_bigendian=0, step=width * 3, data=pixels)
    g = float(np.random.default_rng(10_000 + i).exponential(1.0))
    detection = types.Detection(
        box=types.BoundingBox(x1=10.0, y1=10.0, x2=20.0, y2=18.0), class_id=1, class_name='car',
        score=0.9, importance=g, track_id=track_id, distance=float('nan'),
        uncertainty=np.zeros(0, np.float32))
    detections = types.DetectionArray(header=header, detections=[detection], frame_importance=g,
                                      aggregation='sum', model_name='test', inference_ms=1.0,
        scorer='', uncertainty_names=[], candidates=[], situations=[],
        frame_descriptor=np.zeros(0, np.float32))
    return bag_io.serialize(image), detections


def make_relabels(trigger: int, frames: list[int], track_id: int = 3) -> object:
    """A RelabelArray emitted at frame `trigger`: track `track_id` car -> van in `frames`."""
    types = bag_io.msg_types()
    header = header_msg(stamp(trigger), 'camera', types)
    observations = [
        types.RelabelledObservation(stamp=time_msg(stamp(i), types),
                                    box=types.BoundingBox(x1=10.0, y1=10.0, x2=20.0, y2=18.0),
                                    detection_index=0)
        for i in frames
    ]
    relabel = types.Relabel(header=header, track_id=track_id, old_class_id=1,
                            old_class_name='car', new_class_id=2, new_class_name='van',
                            confidence=0.8, reissued=False, observations=observations)
    return types.RelabelArray(header=header, relabels=[relabel])


def read_bag(paths: list[Path]) -> dict[str, dict[int, object]]:
    """topic -> stamp -> (log time == stamp checked) decoded message, via AnyReader."""
    out: dict[str, dict[int, object]] = defaultdict(dict)
    with AnyReader(paths, default_typestore=bag_io.typestore()) as reader:
        for connection, log_ns, raw in reader.messages():
            message = reader.deserialize(raw, connection.msgtype)
            header_ns = message.header.stamp.sec * 1_000_000_000 + message.header.stamp.nanosec
            assert log_ns == header_ns, connection.topic
            assert header_ns not in out[connection.topic], 'a frame written twice'
            out[connection.topic][header_ns] = message
    return out


def read_raw_images(paths: list[Path]) -> dict[int, bytes]:
    with AnyReader(paths, default_typestore=bag_io.typestore()) as reader:
        connections = [c for c in reader.connections if c.topic == IMAGE_TOPIC]
        return {ns: bytes(raw) for _, ns, raw in reader.messages(connections=connections)}


def read_with_mcap(paths: list[Path]) -> Counter:
    """Topic counts via the mcap package's reader, decoding every message with mcap-ros2."""
    from mcap.reader import make_reader
    from mcap_ros2.decoder import DecoderFactory

    counts: Counter = Counter()
    for split in paths:
        (mcap_file,) = split.glob('*.mcap')
        with mcap_file.open('rb') as stream:
            reader = make_reader(stream, decoder_factories=[DecoderFactory()], validate_crcs=True)
            for _schema, channel, message, decoded in reader.iter_decoded_messages():
                assert message.log_time == decoded.header.stamp.sec * 10**9 + \
                    decoded.header.stamp.nanosec
                if channel.topic == DECISIONS_TOPIC:
                    assert decoded.kept
                counts[channel.topic] += 1
    return counts


def config(tmp_path: Path, **overrides: object) -> RecorderConfig:
    # relabel force-keeps on (the default leaves them off): most tests here exercise them. No
    # sampler state: tests that compare runs in one directory must not resume each other's scale
    sampler = overrides.pop('sampler', SamplerConfig(keep_ratio=0.2, seed=1,
                                                     relabel_keep_share=1.0))
    values = dict(output_dir=tmp_path, bag_name='run', buffer_seconds=1.0, fsync=False,
                  sampler_state='')
    values.update(overrides)
    return RecorderConfig(**values, sampler=sampler)


def test_bag_holds_exactly_the_kept_frames_with_their_decisions(tmp_path: Path) -> None:
    # every buffered frame a relabel names is kept (no thinning)
    recorder = Recorder(config(tmp_path, split_bytes=100_000, relabel_keep_gap_s=0.0))
    images, results = {}, []
    relabelled = list(range(81, 100))  # frames 81..99 named by a relabel emitted at frame 100
    for i in range(300):
        image, detections = make_frame(i)
        images[stamp(i)] = image
        results += recorder.add_frame(image, detections)
        if i == 100:
            # the buffer holds 1 s = frames 90..100; 81..89 have left it already
            assert recorder.add_relabels(bag_io.serialize(make_relabels(100, relabelled))) == 10
    results += recorder.close()

    assert [r.decision.stamp_ns for r in results] == [stamp(i) for i in range(300)]
    kept = {r.decision.stamp_ns: r.decision for r in results if r.decision.kept}
    assert len(recorder.closed_splits) > 2  # the size limit split the recording
    bag = read_bag(recorder.closed_splits)
    for topic in TOPICS:
        assert set(bag[topic]) == set(kept), topic
    # nothing kept is missing, and the images are byte for byte what came in
    assert read_raw_images(recorder.closed_splits) == {ns: images[ns] for ns in kept}
    for ns, decision in kept.items():
        written = bag[DECISIONS_TOPIC][ns]
        assert written.kept and written.reason == decision.reason
        assert written.probability == pytest.approx(decision.probability, rel=1e-6)
        if decision.reason == 'sampled':
            assert written.weight == pytest.approx(1.0 / written.probability, rel=1e-6)
        else:
            assert decision.reason == 'relabel' and written.weight == 1.0
        assert bag[DETECTIONS_TOPIC][ns].detections[0].track_id == 3
    # frames 90..99 were still buffered: all kept, carrying the new class
    for i in range(90, 100):
        relabels = bag[RELABELS_TOPIC][stamp(i)].relabels
        assert [(r.old_class_id, r.new_class_id, r.new_class_name) for r in relabels] == \
            [(1, 2, 'van')]
        assert [o.stamp.sec * 10**9 + o.stamp.nanosec for o in relabels[0].observations] == \
            [stamp(i)]
    assert any(kept[stamp(i)].reason == 'relabel' for i in range(90, 100))
    # every other kept frame has an empty RelabelArray
    assert all(not bag[RELABELS_TOPIC][ns].relabels for ns in kept
               if not stamp(90) <= ns <= stamp(99))
    # relabels for frames gone from the buffer are counted, by what became of the frame
    stats = recorder.stats()
    late = [stamp(i) for i in range(81, 90)]
    assert stats['relabel_observations_late_kept'] == sum(ns in kept for ns in late)
    assert stats['relabel_observations_late_dropped'] == sum(ns not in kept for ns in late)
    assert stats['relabel_observations_late'] == 9
    assert stats['kept'] == len(kept) == stats['sampled'] + stats['relabel']
    # the mcap package's reader agrees
    assert read_with_mcap(recorder.closed_splits) == {t: len(kept) for t in TOPICS}


def test_sqlite3_storage_and_duration_splits(tmp_path: Path) -> None:
    recorder = Recorder(config(tmp_path, storage='sqlite3', split_seconds=5.0,
                               sampler=SamplerConfig(keep_all=True)))
    for i in range(120):
        recorder.add_frame(*make_frame(i))
    recorder.close()
    splits = split_paths(tmp_path / 'run')
    assert splits == recorder.closed_splits and len(splits) == 3  # 12 s of frames, 5 s splits
    for split in splits:
        assert (split / 'metadata.yaml').exists() and list(split.glob('*.db3'))
    bag = read_bag(splits)
    assert {t: len(bag[t]) for t in TOPICS} == dict.fromkeys(TOPICS, 120)
    assert {m.reason for m in bag[DECISIONS_TOPIC].values()} == {'forced'}


def test_buffer_is_bounded_by_bytes(tmp_path: Path) -> None:
    image, detections = make_frame(0)
    frame_bytes = len(image) + len(bag_io.serialize(detections))  # the same for every frame
    recorder = Recorder(config(tmp_path, buffer_seconds=100.0, buffer_bytes=5 * frame_bytes))
    for i in range(20):
        recorder.add_frame(*make_frame(i))
        assert recorder.stats()['buffered_frames'] <= 5
    # frame 14 has just left (the buffer holds 15..19): a relabel for it comes too late
    assert recorder.add_relabels(make_relabels(19, [14, 15])) == 1
    stats = recorder.stats()
    assert stats['relabel_observations_late'] == 1
    recorder.close()


def test_relabel_for_unknown_frame_is_counted(tmp_path: Path) -> None:
    with Recorder(config(tmp_path)) as recorder:
        recorder.add_frame(*make_frame(5))
        assert recorder.add_relabels(make_relabels(5, [2])) == 0
        assert recorder.stats()['relabel_observations_unknown'] == 1


def test_bad_input_is_a_clear_error(tmp_path: Path) -> None:
    with Recorder(config(tmp_path)) as recorder:
        image, _ = make_frame(1)
        _, detections = make_frame(2)
        with pytest.raises(ValueError, match='differs from detections stamp'):
            recorder.add_frame(image, detections)
        with pytest.raises(TypeError, match='DetectionArray'):
            recorder.add_frame(image, {'frame_importance': 1.0})
        with pytest.raises(ValueError, match='too few'):
            header_from_cdr(b'\x00\x01\x00\x00')
        with pytest.raises(ValueError, match='malformed DetectionArray CDR'):
            recorder.add_frame(image, bag_io.serialize(make_frame(1)[1])[:-3])
        with pytest.raises(ValueError, match='malformed RelabelArray CDR'):
            recorder.add_relabels(b'\x00\x01\x00\x00' + b'\xff' * 40)
        recorder.add_frame(*make_frame(1))
        _, same = make_frame(1)
        with pytest.raises(ValueError, match='already in the ring buffer'):
            recorder.add_frame(image, detections_from_msg(same))  # FrameDetections work too
        with pytest.raises(ValueError, match='already in the ring buffer'):
            recorder.add_frame(*make_frame(1))
        recorder.flush()
        with pytest.raises(ValueError, match='already decided'):
            recorder.add_frame(*make_frame(1))


def test_decided_stamps_remember_the_last_capacity_frames_in_fixed_memory() -> None:
    decided = DecidedStamps(4)
    allocated = decided._stamps.nbytes + decided._kept.nbytes
    assert decided.get(0) is None  # the zero-filled slots are not frames
    for stamp in range(1, 7):
        decided.add(stamp * 10, kept=stamp % 2 == 0)
    assert [decided.get(s * 10) for s in range(1, 7)] == [None, None, False, True, False, True]
    assert 20 not in decided and 60 in decided
    assert decided._stamps.nbytes + decided._kept.nbytes == allocated


def _bad_images(i: int) -> dict[str, bytes]:
    """Image CDR of frame i whose header parses but whose body is not a valid image."""
    good, _ = make_frame(i)
    image = bag_io.deserialize(good, bag_io.IMAGE_TYPE)
    types = bag_io.msg_types()

    def variant(**fields: object) -> bytes:
        values = {k: getattr(image, k) for k in ('header', 'height', 'width', 'encoding',
                                                 'is_bigendian', 'step', 'data')}
        return bag_io.serialize(types.Image(**{**values, **fields}))

    bogus_length = bytearray(good)
    # the uint8[] length field sits right before the pixel bytes
    length_at = len(good) - len(image.data) - 4
    bogus_length[length_at:length_at + 4] = (368640).to_bytes(4, 'little')
    return {
        'truncated body': good[:-100],
        'bogus data length': bytes(bogus_length),
        'trailing bytes': good + b'\0' * 64,
        'data shorter than step x height': variant(data=image.data[:-96]),
        'step too small for the width': variant(step=image.width * 2,
                                                data=image.data[:image.width * 2 * image.height]),
    }


def test_a_malformed_image_is_rejected_counted_and_never_written(tmp_path: Path) -> None:
    recorder = Recorder(config(tmp_path, sampler=SamplerConfig(keep_all=True)))
    bad = _bad_images(3)
    for n, (what, image) in enumerate(bad.items()):
        _, detections = make_frame(3)
        with pytest.raises(ValueError, match='Image'):
            recorder.add_frame(image, detections)
        assert recorder.stats()['frames_rejected'] == n + 1, what
    for i in range(6):
        recorder.add_frame(*make_frame(i))
    recorder.close()
    assert recorder.stats()['frames'] == 6
    bag = read_bag(recorder.closed_splits)  # rosbags decodes every message
    assert sorted(bag[IMAGE_TOPIC]) == [stamp(i) for i in range(6)]
    assert read_with_mcap(recorder.closed_splits)[IMAGE_TOPIC] == 6


def test_a_quiet_stretch_still_gets_kept_frames_flushed(tmp_path: Path) -> None:
    now = [0.0]
    recorder = Recorder(config(tmp_path, buffer_seconds=0.0, flush_interval_s=1.0,
                               sampler=SamplerConfig(keep_all=True)), clock=lambda: now[0])

    def recoverable_images() -> int:
        """What bag-repair would get from the open split if the process died now."""
        copy = tmp_path / f'copy_{now[0]}'
        shutil.copytree(recorder.split_paths[0], copy)
        repair(copy)
        return len(read_bag([copy]).get(IMAGE_TOPIC, {}))

    recorder.add_frame(*make_frame(0))
    recorder.add_frame(*make_frame(1))  # frame 0 leaves the buffer: written at t = 0
    assert recoverable_images() == 0  # in the writer's memory until the flush interval passes
    now[0] = 1.5
    recorder.flush_if_due()  # what the node's timer does while no frames come
    assert recoverable_images() == 1
    recorder.close()


def test_redundancy_control_and_budget_see_the_recorders_frames(tmp_path: Path) -> None:
    # one track seen in every 10 Hz frame, rho = 1: at most one kept frame per second
    redundant = Recorder(config(tmp_path, bag_name='gap', sampler=SamplerConfig(
        keep_ratio=1.0, warmup_frames=0, min_gap_s=1.0, redundancy_importance_ratio=1e9)))
    results = [r for i in range(100) for r in redundant.add_frame(*make_frame(i))]
    results += redundant.close()
    kept = [r.decision.stamp_ns for r in results if r.decision.kept]
    assert 1 <= len(kept) <= 10 and np.all(np.diff(kept) >= 1_000_000_000)
    # without it, q = min(1, g / g_mean) would keep over half of the 100 frames
    assert redundant.stats()['redundancy_suppressed'] > 50

    # relabel keeps are charged to the byte budget: rho ends lower than without them
    def final_rho(name: str, relabel: bool) -> float:
        image, detections = make_frame(0)
        frame_bytes = len(image) + len(bag_io.serialize(detections))
        budget = SamplerConfig(keep_ratio=0.5, bytes_per_hour=3600 * frame_bytes, seed=2,
                               relabel_keep_share=1.0)
        recorder = Recorder(config(tmp_path, bag_name=name, sampler=budget))
        for i in range(200):
            recorder.add_frame(*make_frame(i))
            if relabel and i % 5 == 0:
                recorder.add_relabels(make_relabels(i, list(range(max(0, i - 5), i))))
        recorder.close()
        return recorder.stats()['keep_ratio']

    assert final_rho('relabels', True) < final_rho('plain', False)


def test_unwritable_output_directory_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / 'a_file'
    blocker.write_text('not a directory')
    with pytest.raises(RecorderError, match='cannot create the recording directory'):
        Recorder(config(blocker))
    (tmp_path / 'run').mkdir()  # an existing recording is never overwritten
    with pytest.raises(RecorderError, match='exists'):
        Recorder(config(tmp_path))


class _DiskFills:
    """Writer factory whose splits raise ENOSPC once `capacity` bytes were written overall."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.written = 0

    def __call__(self, path: Path, storage: str) -> BagWriter:
        factory = self

        class Split(BagWriter):
            def write(self, topic: str, msgtype: str, stamp_ns: int, data: bytes,
                      validate: bool = True) -> None:
                if factory.written + len(data) > factory.capacity:
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
                factory.written += len(data)
                super().write(topic, msgtype, stamp_ns, data, validate)

        return Split(path, storage)


def test_disk_full_stops_recording_and_keeps_finished_splits(tmp_path: Path) -> None:
    image, _ = make_frame(0)
    recorder = Recorder(config(tmp_path, split_bytes=3 * len(image), flush_interval_s=0.0,
                               sampler=SamplerConfig(keep_all=True)),
                        writer_factory=_DiskFills(capacity=int(7.5 * len(image))))
    with pytest.raises(RecordingStoppedError, match='No space left on device') as stopped:
        for i in range(50):
            recorder.add_frame(*make_frame(i))
    assert 'bag-repair' in str(stopped.value)
    assert recorder.stats()['error'] == str(stopped.value)
    # the frame that met the error was decided all the same
    assert [r.decision.kept for r in stopped.value.results] == [True]
    # stopped: later frames are still decided (raised once only), but nothing is written
    results = [r for j in range(i + 1, i + 11) for r in recorder.add_frame(*make_frame(j))]
    assert len(results) == 10 and all(r.decision.kept for r in results)
    assert recorder.stats()['kept_not_written'] == 10 + 1
    recorder.close()
    assert sorted(p.name for p in (tmp_path / 'run').iterdir()) == [
        'run_0000', 'run_0001', 'run_0002', 'stats.json']
    closed = recorder.closed_splits
    assert len(closed) == 2
    assert len(read_bag(closed)[IMAGE_TOPIC]) == 6
    # the split open at the failure had one complete, flushed frame: bag-repair gets it back
    (result,) = repair(tmp_path / 'run')[2:]
    assert result.status == 'repaired', result.detail
    assert len(read_bag([result.path])[IMAGE_TOPIC]) == 1


def test_a_split_that_cannot_be_created_stops_recording(tmp_path: Path) -> None:
    def factory(path: Path, storage: str) -> BagWriter:
        if path.name.endswith('_0001'):
            raise OSError(errno.EACCES, os.strerror(errno.EACCES), str(path))
        return BagWriter(path, storage)

    image, _ = make_frame(0)
    recorder = Recorder(config(tmp_path, split_bytes=2 * len(image),
                               sampler=SamplerConfig(keep_all=True)), writer_factory=factory)
    with pytest.raises(RecordingStoppedError, match='Permission denied'):
        for i in range(30):
            recorder.add_frame(*make_frame(i))
    recorder.close()
    assert recorder.closed_splits == [tmp_path / 'run' / 'run_0000']
    assert len(read_bag(recorder.closed_splits)[IMAGE_TOPIC]) == 2
    assert json.loads((tmp_path / 'run' / 'stats.json').read_text())['error'].startswith(
        'recording stopped')


# --- SIGKILL ------------------------------------------------------------------------------

CHILD_FRAME = (128, 96)  # image size the child writes; a split holds 4 frames


def _child(out: str, storage: str, stop_after: int) -> None:
    """Write frames; print each kept stamp once it is flushed to the file. With stop_after > 0,
    stop feeding frames after that many kept ones (the split stays open) and wait to be killed."""
    image, _ = make_frame(0, *CHILD_FRAME)
    recorder = Recorder(RecorderConfig(
        output_dir=Path(out), bag_name='run', storage=storage, buffer_seconds=0.0,
        split_bytes=4 * len(image), flush_interval_s=0.0, fsync=False,
        sampler=SamplerConfig(keep_ratio=0.5, seed=3)))
    kept = 0
    for i in range(1_000_000):
        for result in recorder.add_frame(*make_frame(i, *CHILD_FRAME)):
            if result.decision.kept:
                kept += 1
                print(f'kept {result.decision.stamp_ns}', flush=True)
        if stop_after and kept >= stop_after:
            print('idle', flush=True)
            time.sleep(600)
        time.sleep(0.002)


@pytest.mark.slow
@pytest.mark.parametrize('storage', ['mcap', 'sqlite3'])
@pytest.mark.parametrize('moment', ['idle', 'writing'])
def test_sigkill_leaves_closed_splits_readable_and_repair_recovers_the_open_one(
        tmp_path: Path, storage: str, moment: str) -> None:
    """Killed while idle with a split open (exact contents known), or at any moment while
    writing flat out (then a frame written but not yet reported may come back too)."""
    stop_after = 14 if moment == 'idle' else 0  # 3 closed splits of 4 + 2 frames in the 4th
    child = subprocess.Popen(
        [sys.executable, __file__, 'child', str(tmp_path), storage, str(stop_after)],
        stdout=subprocess.PIPE, text=True)
    kept: list[int] = []
    deadline = time.monotonic() + 60
    try:
        while len(kept) < 14 and time.monotonic() < deadline:
            line = child.stdout.readline()
            assert line, 'child exited early'
            kept.append(int(line.split()[1]))
        if moment == 'idle':
            assert child.stdout.readline() == 'idle\n'
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    kept += [int(line.split()[1]) for line in child.stdout.read().splitlines()
             if line.startswith('kept')]
    assert len(kept) >= 14

    splits = split_paths(tmp_path / 'run')
    closed = [s for s in splits if (s / 'metadata.yaml').exists()]
    assert len(closed) >= 3 and splits[:len(closed)] == closed
    assert set(read_bag(closed)[IMAGE_TOPIC]) == set(kept[:4 * len(closed)])

    unclosed = splits[len(closed):]
    if moment == 'idle':
        assert len(unclosed) == 1
    assert len(unclosed) <= 1  # 0 when killed between closing a split and opening the next
    for split in unclosed:
        with pytest.raises(Exception):  # noqa: B017 (rosbags raises its own error types)
            read_bag([split])
    assert cli_main(['bag-repair', str(tmp_path / 'run')]) == 0
    for split in unclosed:
        bag = read_bag([split])
        reported = set(kept[4 * len(closed):])
        recovered = set(bag[IMAGE_TOPIC])
        assert reported <= recovered and len(recovered - reported) <= 1
        if moment == 'idle':
            assert len(recovered) == 2
        for topic in TOPICS:
            assert set(bag[topic]) == recovered, topic
        if storage == 'mcap':
            assert read_with_mcap([split])[IMAGE_TOPIC] == len(recovered)
        assert [r.status for r in repair(split)] == ['closed']  # nothing left to do


def test_repair_of_a_truncated_mcap_stops_at_the_damage(tmp_path: Path) -> None:
    recorder = Recorder(config(tmp_path, flush_interval_s=0.0,
                               sampler=SamplerConfig(keep_all=True)))
    for i in range(10):
        recorder.add_frame(*make_frame(i))
    recorder.flush()  # all 10 frames written and flushed; the split stays open
    (split,) = recorder.split_paths
    (mcap_file,) = split.glob('*.mcap')
    size = mcap_file.stat().st_size
    with mcap_file.open('r+b') as stream:
        # one frame = one chunk (~6.3 kB, flushed after each frame) + 4 message indexes: cut
        # into the last chunk
        stream.truncate(size - 1000)
    (result,) = repair(split, keep_damaged=True)
    assert result.status == 'repaired' and 'file cut off' in result.detail, result.detail
    assert not result.lost_inside
    assert (split / (mcap_file.name + '.damaged')).stat().st_size == size - 1000
    bag = read_bag([split])
    assert set(bag[IMAGE_TOPIC]) == {stamp(i) for i in range(9)}
    assert result.messages == 4 * 9


if __name__ == '__main__' and sys.argv[1:2] == ['child']:
    _child(sys.argv[2], sys.argv[3], int(sys.argv[4]))


def test_relabel_keeps_thinned_capped_and_counted_in_the_keep_ratio(tmp_path: Path) -> None:
    """relabel_keep_gap_s keeps one named frame per gap; relabel_keep_share caps relabel keeps at
    a share of keep_ratio; relabel_keeps_in_budget lowers the draws' ratio by the share of
    relabel keeps, so that the total stays near keep_ratio."""
    def run(name: str, gap_s: float, in_budget: bool, share: float) -> tuple[dict, list]:
        sampler = SamplerConfig(keep_ratio=0.2, seed=4, relabel_keeps_in_budget=in_budget,
                                mean_window=50, relabel_keep_share=share)
        recorder = Recorder(config(tmp_path, bag_name=name, relabel_keep_gap_s=gap_s,
                                   sampler=sampler))
        results = []
        for i in range(600):
            results += recorder.add_frame(*make_frame(i))
            if i % 10 == 9:  # every second, a relabel naming the last 10 frames
                recorder.add_relabels(make_relabels(i, list(range(i - 9, i + 1))))
        results += recorder.close()
        return recorder.stats(), results

    every, _ = run('every', 0.0, False, 1.0)
    thinned, results = run('thinned', 0.5, False, 1.0)
    budgeted, _ = run('budgeted', 0.5, True, 1.0)
    capped, _ = run('capped', 0.0, True, 0.5)
    default, _ = run('default', 0.0, True, SamplerConfig().relabel_keep_share)
    # every frame is named, but relabel keeps may take at most keep_ratio of the frames
    assert abs(every['relabel'] - 0.2 * 600) < 0.05 * 600
    assert every['relabel_keeps_over_cap'] > 0.6 * 600
    # 0.5 s at 10 Hz: frames 0 and 5 of each relabel's ten (stamps of frame i: i / 10 s)
    relabel_kept = sorted(r.decision.stamp_ns for r in results if r.decision.reason == 'relabel')
    assert all((ns // FRAME_NS) % 5 == 0 for ns in relabel_kept)
    assert thinned['relabel'] + thinned['sampled'] == thinned['kept']
    # sampled 0.2, plus relabel keeps of 0.2 of the frames when their coin said drop: 0.36
    assert 0.3 * 600 < thinned['kept'] < 0.42 * 600
    # in the budget: the draws aim at 0.2 less the relabel share (just under 0.2 at the cap)
    assert budgeted['sampled'] < 0.2 * thinned['sampled']
    assert abs(budgeted['kept'] - 0.2 * 600) < 0.05 * 600
    # a cap of 0.5: relabels take at most half the budget, the coins the rest
    assert capped['relabel'] < 0.12 * 600 and capped['sampled'] > 0.07 * 600
    assert abs(capped['kept'] - 0.2 * 600) < 0.05 * 600
    # the default: no force-keeps, every named frame is over the cap; the coins keep rho
    assert default['relabel'] == 0 and default['relabel_keeps_over_cap'] > 0.6 * 600
    assert abs(default['kept'] - 0.2 * 600) < 0.05 * 600


def test_coverage_bank_is_written_at_close_and_an_unwritable_one_loses_nothing_else(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    def frames(n: int):
        for i in range(n):
            image, detections = make_frame(i)
            detections.frame_descriptor = np.random.default_rng(i).normal(size=4).astype(
                np.float32)
            yield image, detections

    bank = tmp_path / 'bank.npy'
    sampler = SamplerConfig(keep_ratio=0.2, seed=1, frame_score='coverage', draw='threshold',
                            coverage_bank=str(bank))
    recorder = Recorder(config(tmp_path, sampler=sampler))
    for image, detections in frames(40):
        recorder.add_frame(image, detections)
    recorder.close()
    written = read_bag(split_paths(tmp_path / 'run'))
    kept = [detections_from_msg(m).descriptor for m in written[DETECTIONS_TOPIC].values()]
    assert len(kept) >= 4 and np.allclose(np.load(bank), np.array(kept))

    blocked = tmp_path / 'no_such_dir' / 'bank.npy'
    sampler = SamplerConfig(**{**sampler.__dict__, 'coverage_bank': str(blocked)})
    recorder = Recorder(config(tmp_path, bag_name='second', sampler=sampler))
    for image, detections in frames(40):
        recorder.add_frame(image, detections)
    with caplog.at_level('ERROR'):
        recorder.close()
    assert 'cannot write the coverage bank' in caplog.text
    assert len(read_bag(split_paths(tmp_path / 'second'))[IMAGE_TOPIC]) >= 4
    assert json.loads((tmp_path / 'second' / 'stats.json').read_text())['kept'] >= 4


def test_decision_fields_beyond_float32_saturate_instead_of_losing_the_frame():
    from importance_sampler_ros.recording.recorder import decision_message
    from importance_sampler_ros.sampling.sampler import REASON_SAMPLED, Decision

    # a sharpened mean of g^2 with g near float32's max, and the weight of a tiny q
    decision = Decision(1, True, 1e-40, 1e40, REASON_SAMPLED, 3e38, 9e76, 0.1)
    back = bag_io.deserialize(bag_io.serialize(decision_message(decision, 'cam')),
                              'importance_sampler_ros/msg/SampleDecision')
    biggest = float(np.finfo(np.float32).max)
    assert back.importance_mean == pytest.approx(biggest) and back.weight == pytest.approx(biggest)
    assert back.frame_importance == pytest.approx(3e38, rel=1e-6)


def test_the_next_run_starts_from_the_scale_this_run_learnt(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    sampler = SamplerConfig(keep_ratio=0.2, seed=1)

    def record(name: str, first: int, model: str = 'test') -> dict[int, object]:
        recorder = Recorder(config(tmp_path, bag_name=name, sampler=sampler,
                                   sampler_state='sampler_state.npz'))
        for i in range(first, first + 30):
            image, detections = make_frame(i)
            detections.model_name = model
            recorder.add_frame(image, detections)
        recorder.close()
        return read_bag(split_paths(tmp_path / name))[DECISIONS_TOPIC]

    def first_mean(decided: dict[int, object]) -> float:
        return decided[min(decided)].importance_mean

    g = [float(np.random.default_rng(10_000 + i).exponential(1.0)) for i in range(60)]
    cube = np.array(g) ** sampler.sharpness
    state_file = tmp_path / 'sampler_state.npz'
    one = record('one', 0)
    assert state_file.exists()
    two = record('two', 30)
    # the second run's window already holds the first run's 30 frames
    kept_first = min(two)
    i = (kept_first - stamp(0)) // FRAME_NS
    assert two[kept_first].importance_mean == pytest.approx(cube[:i + 1].mean(), rel=1e-5)
    stats = json.loads((tmp_path / 'two' / 'stats.json').read_text())
    assert stats['sampler_resumed_from'] == str(state_file)
    assert first_mean(one) == pytest.approx(cube[:(min(one) - stamp(0)) // FRAME_NS + 1].mean(),
                                            rel=1e-5)
    # another detector's g has another scale: learnt afresh, with a log line saying why
    with caplog.at_level('WARNING'):
        other = record('other', 60, model='other')
    assert 'sampler state' in caplog.text and 'other' in caplog.text
    j = (min(other) - stamp(60)) // FRAME_NS
    g_other = np.array([float(np.random.default_rng(10_000 + k).exponential(1.0))
                        for k in range(60, 60 + j + 1)]) ** sampler.sharpness
    assert first_mean(other) == pytest.approx(g_other.mean(), rel=1e-5)
    # a damaged state file: a log line, and the run learns afresh
    state_file.write_bytes(b'\0' * 10)
    caplog.clear()
    with caplog.at_level('WARNING'):
        record('damaged', 0)
    assert 'not used' in caplog.text
    # '' = no state file at all
    state_file.unlink()
    recorder = Recorder(config(tmp_path, bag_name='off', sampler=sampler, sampler_state=''))
    recorder.add_frame(*make_frame(0))
    recorder.close()
    assert not state_file.exists()
