"""The live graph at camera rate: `play` 1242x375 rgb8 frames at 30 Hz for 10 s into tracker and
recorder started by `importance-sampler up`, the detector replaced by recorded detections
(`play --detections-as`), so that the camera rate, not CPU inference, is what is tested.

    .venv/bin/python benchmarks/live_graph.py [--seconds 10] [--rate-hz 30] [--dir /tmp]

Prints, per recorder configuration (the shipped YAML with its 8 s ring buffer, and the same
without ring buffer):
- frames lost between player and recorder: images played minus frames the recorder matched
  (image + tracked detections by stamp), with images and detection arrays received (goal 0);
- CPU % of one core used by the recorder (and tracker) process while the drive played, from
  /proc/<pid>/stat (utime + stime) sampled before and after `play`;
- end-to-end latency image -> sample decision: wall-clock receipt of each SampleDecision here
  minus its frame's header stamp, which `play --restamp` sets to the wall-clock publish time.
  A decision is final (and published) once a frame more than `buffer_seconds` newer arrives:
  buffer_seconds plus up to one frame period after the image, by design (one period without
  ring buffer).

Measured 2026-11-25 on the 2-core development machine (other jobs running; the numbers move by
~2x with the load, compare rows of one run), over 5 runs of both configurations with LARGE_DATA:
0 of 300 frames lost in 9 of 10, 19 lost once (the first 0.6 s of tracked detections never
reached the recorder: DDS matching still under way after play's 2 s settle); recorder 6-15 % and
tracker 8-15 % of one core; latency without ring buffer p50 39-41 ms, p95 43-45 ms (of which up
to 33 ms is the frame period that closes the buffer); with the 8 s ring buffer p50 8.008 s,
p95 8.04-8.05 s. The same run with FASTDDS_BUILTIN_TRANSPORTS=DEFAULT in the environment lost
263-271 of 300 frames (best-effort images to the recorder).

Measured 2026-12-02 (session 7) on the package's Fast DDS profile (what the nodes use now), the
machine otherwise idle, one run of both configurations: 0 of 300 frames lost in each; recorder
15 % and tracker 15-18 % of one core; latency without ring buffer p50 41 ms, p95 45 ms; with the
8 s ring buffer p50 8.040 s, p95 8.044 s.

The drive is written first into a temporary directory (~420 MB for 300 frames): images of random
pixels (incompressible, like noisy camera frames), and per frame four boxes moving across the
image with random importances, on /recorded/detections.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import yaml

from importance_sampler_ros import topics, transport
from importance_sampler_ros.bags import bag_io
from importance_sampler_ros.bags.bag_io import header_from_cdr
from importance_sampler_ros.bags.images import rgb_to_image_msg
from importance_sampler_ros.bags.messages import detections_to_msg
from importance_sampler_ros.detection.detections import FrameDetections

REPO = Path(__file__).resolve().parent.parent
T0 = 1_700_000_000 * 1_000_000_000
RECORDED = '/recorded/detections'
DECISIONS = topics.DECISIONS
TRACKED = topics.TRACKED_DETECTIONS


def write_drive(path: Path, frames: int, width: int, height: int, rate_hz: float) -> None:
    types = bag_io.msg_types()
    rng = np.random.default_rng(0)
    pixels = [rng.integers(0, 256, (height, width, 3), dtype=np.uint8) for _ in range(8)]
    with bag_io.BagWriter(path) as writer:
        for i in range(frames):
            stamp = T0 + round(i * 1e9 / rate_hz)
            x = (40.0 + 4.0 * i + np.arange(4) * 250.0) % (width - 80)
            boxes = np.stack([x, np.full(4, 150.0), x + 60, np.full(4, 210.0)], axis=1)
            importances = rng.gamma(0.7, 1.0, 4).astype(np.float32)
            det = FrameDetections(
                stamp_ns=stamp, frame_id='camera', boxes=boxes, class_ids=np.ones(4),
                class_names=['car'] * 4, scores=np.full(4, 0.9), importances=importances,
                frame_importance=float(importances.sum()), model_name='recorded')
            writer.write(topics.IMAGE, bag_io.IMAGE_TYPE, stamp,
                         rgb_to_image_msg(pixels[i % len(pixels)], stamp, 'camera', types))
            writer.write(RECORDED, bag_io.msgtype('DetectionArray'), stamp,
                         detections_to_msg(det, types))


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, in seconds (/proc/<pid>/stat fields 14 and 15)."""
    fields = Path(f'/proc/{pid}/stat').read_text().rsplit(')', 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf('SC_CLK_TCK')


def node_pids(launcher_pid: int) -> dict[str, int]:
    """node name -> pid of the launcher's children."""
    found = {}
    for entry in Path('/proc').iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / 'stat').read_text().rsplit(')', 1)[1].split()[1])
            cmdline = (entry / 'cmdline').read_bytes().split(b'\0')
        except OSError:
            continue
        if ppid == launcher_pid:
            for part in cmdline:
                if part.startswith(b'importance_sampler_ros.nodes.'):
                    found[part.decode().rsplit('.', 1)[1]] = int(entry.name)
    return found


class DecisionListener:
    """Receipt time (wall clock) of every SampleDecision, by frame stamp, on a spinning thread."""

    def __init__(self) -> None:
        import rclpy
        from importance_sampler_ros.msg import DetectionArray, SampleDecision
        from rclpy.executors import SingleThreadedExecutor

        from importance_sampler_ros.nodes.qos import reliable_qos

        self.node = rclpy.create_node('live_graph_benchmark')
        self.received: dict[int, tuple[float, bool]] = {}
        self.tracked: set[int] = set()
        qos = reliable_qos(1000)
        self.node.create_subscription(SampleDecision, DECISIONS, self.on_decision, qos)
        # raw: only the stamp is read (header first: sec, nanosec after the 4-byte CDR header)
        self.node.create_subscription(DetectionArray, TRACKED, self.on_tracked, qos, raw=True)
        self.executor = SingleThreadedExecutor()
        self.executor.add_node(self.node)
        self.running = True
        self.thread = threading.Thread(target=self.spin, daemon=True)
        self.thread.start()

    def on_decision(self, msg) -> None:
        stamp = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
        self.received[stamp] = (time.time(), bool(msg.kept))

    def on_tracked(self, data: bytes) -> None:
        self.tracked.add(header_from_cdr(data)[0])

    def spin(self) -> None:
        while self.running:
            self.executor.spin_once(timeout_sec=0.05)

    def close(self) -> None:
        self.running = False
        self.thread.join(timeout=2)
        self.executor.remove_node(self.node)
        self.node.destroy_node()


def interrupt(process: subprocess.Popen, timeout_s: float) -> None:
    """SIGINT, as a user's Ctrl-C; killed if it has not exited within `timeout_s`."""
    process.send_signal(signal.SIGINT)
    try:
        process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()


def cli(*args: str, env: dict, **popen) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, '-m', 'importance_sampler_ros.cli', *args],
                            cwd=REPO, env=env, **popen)


def run_graph(label: str, recorder_overrides: dict, drive: Path, work: Path,
              env: dict, play_timeout_s: float) -> dict:
    document = yaml.safe_load((REPO / 'config' / 'importance_sampler.yaml').read_text())
    document['recorder_node']['ros__parameters'].update(
        {'bag_name': 'bench', 'seed': 1, **recorder_overrides})
    params = work / 'params.yaml'
    params.write_text(yaml.safe_dump(document))
    output = work / 'rec'
    log = (work / 'up.log').open('w')
    listener = DecisionListener()
    up = cli('up', '--params', str(params), '--skip', 'detector_node', '--output-dir',
             str(output), env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        pids: dict[str, int] = {}
        while time.monotonic() < deadline and len(pids) < 2:
            pids = node_pids(up.pid)
            time.sleep(0.2)
        # the recorder is ready once its recording directory exists
        while time.monotonic() < deadline and not (output / 'bench').exists():
            time.sleep(0.2)
        summary_path = work / 'play.json'
        before = {name: cpu_seconds(pid) for name, pid in pids.items()}
        player = cli('play', str(drive), '--restamp', '--wait-subscribers', '1', '--settle', '2',
                     '--wait-timeout', '60',
                     '--topics', RECORDED, '--detections-as', topics.DETECTIONS,
                     '--detections-source', RECORDED, '--linger', '1',
                     '--summary-json', str(summary_path), env=env)
        try:
            player.wait(timeout=play_timeout_s)
        except subprocess.TimeoutExpired:
            player.kill()
            raise
        after = {name: cpu_seconds(pid) for name, pid in pids.items()}
        summary = json.loads(summary_path.read_text())
        time.sleep(1.0)
    finally:
        interrupt(up, 60)
        listener.close()
        log.close()
    stats = json.loads((output / 'bench' / 'stats.json').read_text())
    latencies = np.array([received - stamp / 1e9
                          for stamp, (received, _) in listener.received.items()])
    # CPU time from before `play` started to after it exited (settle and linger included, when
    # the nodes idle) over the play time: an upper bound of the CPU share while frames flowed.
    window = summary['wall_s']
    return {
        'label': label,
        'played': summary['images'],
        'subscribers_at_start': summary['subscribers_at_start'],
        'play_rate_hz': summary['image_rate_hz'],
        'publish_errors': summary['publish_errors'],
        'tracked_seen_here': len(listener.tracked),
        'images_received': stats['images_received'],
        'detections_received': stats['detections_received'],
        'frames_matched': stats['frames_matched'],
        'lost': summary['images'] - stats['frames_matched'],
        'kept': stats['kept'],
        'bytes_written': stats['bytes_written'],
        'recorder_cpu_pct': 100 * (after['recorder_node'] - before['recorder_node']) / window,
        'tracker_cpu_pct': 100 * (after['tracker_node'] - before['tracker_node']) / window,
        'decisions': len(latencies),
        'latency_ms': (np.percentile(latencies, [50, 95, 100]) * 1e3).tolist()
        if len(latencies) else [float('nan')] * 3,
        'up_status': up.returncode,
        'buffer_ms': 1e3 * float(document['recorder_node']['ros__parameters']['buffer_seconds']),
        'period_ms': 1e3 / summary['image_rate_hz'],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--seconds', type=float, default=10.0)
    parser.add_argument('--rate-hz', type=float, default=30.0)
    parser.add_argument('--width', type=int, default=1242)
    parser.add_argument('--height', type=int, default=375)
    parser.add_argument('--keep-ratio', type=float, default=0.1)
    parser.add_argument('--dir', type=Path, default=None, help='where the temporary files go')
    parser.add_argument('--domain', type=int, default=19, help='ROS_DOMAIN_ID of the run')
    parser.add_argument('--keep', action='store_true', help='keep the temporary directory')
    args = parser.parse_args()

    os.environ['ROS_DOMAIN_ID'] = str(args.domain)
    transport.use_graph_transport()  # as the nodes: the package's profile unless chosen
    env = dict(os.environ)
    import rclpy

    work = Path(tempfile.mkdtemp(prefix='isr-live-graph-', dir=args.dir))
    rclpy.init()
    try:
        frames = round(args.seconds * args.rate_hz)
        started = time.monotonic()
        write_drive(work / 'drive', frames, args.width, args.height, args.rate_hz)
        print(f'drive: {frames} frames {args.width}x{args.height} rgb8 at {args.rate_hz:g} Hz '
              f'written in {time.monotonic() - started:.1f} s; '
              f'{transport.describe(env)}')
        rows = []
        for label, overrides in (
            ('shipped YAML (8 s ring buffer)', {'keep_ratio': args.keep_ratio}),
            ('no ring buffer', {'keep_ratio': args.keep_ratio, 'buffer_seconds': 0.0}),
        ):
            run_dir = work / label.split()[0]
            run_dir.mkdir()
            rows.append(run_graph(label, overrides, work / 'drive', run_dir, env,
                                  play_timeout_s=args.seconds + 120))
            if not args.keep:
                shutil.rmtree(run_dir / 'rec', ignore_errors=True)
    finally:
        rclpy.shutdown()
        if args.keep:
            print(f'kept {work}')
        else:
            shutil.rmtree(work, ignore_errors=True)
    for row in rows:
        p50, p95, worst = row['latency_ms']
        print(f"\n== {row['label']} ==")
        if row['subscribers_at_start'] < 1:
            print('warning: the player started without seeing the recorder (DDS discovery)')
        print(f"played {row['played']} images at {row['play_rate_hz']:.1f} Hz "
              f"({row['publish_errors']} publish errors)")
        print(f"tracker output seen by this process: {row['tracked_seen_here']} frames")
        print(f"recorder received {row['images_received']} images, "
              f"{row['detections_received']} tracked detection arrays; matched "
              f"{row['frames_matched']} frames -> frames lost: {row['lost']}")
        print(f"kept {row['kept']} frames, {row['bytes_written'] / 1e6:.1f} MB written")
        print('CPU (% of one core, upper bound) while playing: '
              f"recorder {row['recorder_cpu_pct']:.1f} %, "
              f"tracker {row['tracker_cpu_pct']:.1f} %")
        print(f"latency image -> decision over {row['decisions']} published decisions: "
              f"p50 {p50:.1f} ms, p95 {p95:.1f} ms, max {worst:.1f} ms")
        buffer = row['buffer_ms']
        print(f'  minus buffer_seconds ({buffer:.0f} ms, by design): p50 {p50 - buffer:.1f} ms, '
              f'p95 {p95 - buffer:.1f} ms, of which up to one frame period '
              f"({row['period_ms']:.1f} ms) is also by design: the frame that closes the "
              'buffer')
        if row['up_status'] != 0:
            print(f"warning: importance-sampler up exited with status {row['up_status']}")
    return 0


if __name__ == '__main__':
    sys.exit(main())
