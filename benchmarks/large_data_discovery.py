"""Graph starts with large frames: does every pair of processes match, every start?

    nice -n 19 .venv/bin/python benchmarks/large_data_discovery.py [--starts 20] [--seconds 2]
        [--transport profile|LARGE_DATA|DEFAULT]

Each start is a fresh graph: `importance-sampler up --skip detector_node` (tracker + recorder
processes) and `play` of a drive of 1242x375 rgb8 frames at 30 Hz with its recorded detections
published as the detector's output (`--detections-as`), then SIGINT. A start counts as
*unmatched* when a link of the graph carried nothing: the recorder received no image
(player -> recorder), or no tracked detection array (player -> tracker -> recorder), or play
gave up waiting for a subscriber; *short* when a link carried some but not all frames (matched
late, or frames dropped). Frames lost = images played - frames the recorder matched.

--transport: `profile` (default) = the package's Fast DDS profile config/fastdds_large_frames.xml
(shared memory with 16 MB segments + UDPv4, no TCP; what the nodes, `up`, the launch file and
`play` use: importance_sampler_ros/transport.py), `LARGE_DATA` = FASTDDS_BUILTIN_TRANSPORTS=
LARGE_DATA (their setting before), `DEFAULT` = Fast DDS's default transports.

Prints one line per start and a summary line `unmatched=U/N short=S/N lost_frames=L/P`.

Measured 2026-12-02 (session 7) on the 2-core development machine, 20 starts x 60 frames each,
--settle 1 (the full table, with LARGE_DATA, is in docs/ARCHITECTURE.md "Transport"):
- profile as shipped (30 initial announcements), quiet: unmatched 0/20, short 0/20, lost 0/1200;
  two runs at once in domains 17 and 18: unmatched 0/40, short 0/40, lost 0/2400.
- the profile with Fast DDS's default of 5 initial announcements: unmatched 0/20, short 6/20,
  lost 310/1200 (quiet); two runs at once 0/40, 11/40, 382/2400. Every short start was the
  tracker -> recorder link matching 1.6-1.9 s after play began.
- DEFAULT, quiet: unmatched 0/20, the tracker -> recorder link late in 7/20, 996/1200 frames
  lost (the images, fragmented over UDP).
- LARGE_DATA beside 4 busy loops: 0/30, 0/30, 0/1800; two runs at once: 0/40, 5/40, 121/2400.
Session 4 had 0/20 unmatched with LARGE_DATA (88/1200 lost, load average 11-16). The "one start
in six unmatched for good" seen with LARGE_DATA before that never recurred.
"""
from __future__ import annotations

import argparse
import importlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from importance_sampler_ros import transport

sys.path.insert(0, str(Path(__file__).resolve().parent))
live_graph = importlib.import_module('live_graph')  # the drive writer and the CLI launcher
RECORDED, REPO, cli, write_drive = (live_graph.RECORDED, live_graph.REPO, live_graph.cli,
                                    live_graph.write_drive)


DETECTIONS = '/importance_sampler/detections'


def start_graph(index: int, drive: Path, work: Path, env: dict, timeout_s: float) -> dict:
    run = work / f'start_{index:02d}'
    run.mkdir()
    output = run / 'rec'
    with (run / 'up.log').open('w') as log:
        up = cli('up', '--skip', 'detector_node', '--output-dir', str(output), env=env,
                 stdout=log, stderr=subprocess.STDOUT)
    started = time.monotonic()
    try:
        deadline = started + timeout_s
        while time.monotonic() < deadline and not any(output.glob('*')):
            time.sleep(0.1)  # the recorder is up once its recording directory exists
        summary = run / 'play.json'
        play = cli('play', str(drive), '--restamp', '--wait-subscribers', '1',
                   '--wait-timeout', '20', '--settle', '1', '--linger', '1',
                   '--topics', RECORDED, '--detections-as', DETECTIONS,
                   '--detections-source', RECORDED, '--summary-json', str(summary), env=env,
                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        _, play_log = play.communicate(timeout=timeout_s)
        played = json.loads(summary.read_text())
        time.sleep(0.5)
    finally:
        live_graph.interrupt(up, 30)
    (stats_file,) = output.glob('*/stats.json')
    stats = json.loads(stats_file.read_text())
    short = [line for line in play_log.splitlines() if 'too few subscribers' in line]
    links = []
    if stats['images_received'] == 0:
        links.append('player->recorder')
    if stats['detections_received'] == 0:
        links.append('player->tracker->recorder')
    if short and not links:
        links.append('player waited: ' + short[0].split('on ', 1)[1].split(' after')[0])
    late = [] if links else [
        f'{name} ({stats[key]}/{played["images"]})'
        for name, key in (('player->recorder', 'images_received'),
                          ('player->tracker->recorder', 'detections_received'))
        if stats[key] < played['images']]
    return {'played': played['images'], 'images_received': stats['images_received'],
            'detections_received': stats['detections_received'],
            'matched': stats['frames_matched'], 'unmatched_links': links, 'short_links': late,
            'seconds': time.monotonic() - started}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--starts', type=int, default=20)
    parser.add_argument('--seconds', type=float, default=2.0, help='drive length per start')
    parser.add_argument('--rate-hz', type=float, default=30.0)
    parser.add_argument('--transport', choices=('profile', 'LARGE_DATA', 'DEFAULT'),
                        default='profile')
    parser.add_argument('--domain', type=int, default=17)
    parser.add_argument('--dir', type=Path, default=None)
    args = parser.parse_args()

    base = {k: v for k, v in os.environ.items()
            if k not in (transport.PROFILES_VARIABLE, transport.BUILTIN_VARIABLE)}
    base['ROS_DOMAIN_ID'] = str(args.domain)
    if args.transport == 'profile':
        env = transport.graph_environment(base)
    else:
        env = {**base, transport.BUILTIN_VARIABLE: args.transport}
    work = Path(tempfile.mkdtemp(prefix='isr-discovery-', dir=args.dir))
    try:
        frames = round(args.seconds * args.rate_hz)
        write_drive(work / 'drive', frames, 1242, 375, args.rate_hz)
        print(f'{args.starts} starts, {frames} frames 1242x375 at {args.rate_hz:g} Hz each; '
              f'transport {args.transport} ({transport.describe(env)})', flush=True)
        unmatched = short = lost = played = 0
        for index in range(args.starts):
            row = start_graph(index, work / 'drive', work, env, timeout_s=90)
            unmatched += bool(row['unmatched_links'])
            short += bool(row['short_links'])
            lost += row['played'] - row['matched']
            played += row['played']
            print(f'start {index:2d}: played {row["played"]}, recorder got {row["images_received"]}'
                  f' images + {row["detections_received"]} tracked arrays, matched '
                  f'{row["matched"]}; unmatched links: {row["unmatched_links"] or "none"}; '
                  f'links short of frames: {row["short_links"] or "none"} '
                  f'({row["seconds"]:.1f} s)', flush=True)
        print(f'transport={args.transport} unmatched={unmatched}/{args.starts} '
              f'short={short}/{args.starts} lost_frames={lost}/{played}')
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == '__main__':
    os.chdir(REPO)
    sys.exit(main())
