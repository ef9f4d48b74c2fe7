"""Writing a synthetic drive to a rosbag2: rgb8 images and the ground truth, per frame."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from importance_sampler_ros.bags.bag_io import IMAGE_TYPE, BagWriter, msg_types, msgtype
from importance_sampler_ros.bags.images import rgb_to_image_msg
from importance_sampler_ros.bags.messages import detections_to_msg
from importance_sampler_ros.progress import add_progress_arguments, progress_mode
from importance_sampler_ros.progress import progress as iterate
from importance_sampler_ros.synth.situations import ALL_TAGS, MIXES, parse_situations
from importance_sampler_ros.synth.world import (
    CAMERA_FRAME_ID,
    GROUND_TRUTH_TOPIC,
    IMAGE_TOPIC,
    Drive,
    SynthConfig,
)


def write_drive_bag(config: SynthConfig, out: str | Path, storage: str = 'mcap',
                    progress: str = 'off') -> int:
    """Render the drive of `config` into a new bag at `out`; returns the number of frames.

    Each frame gives one sensor_msgs/Image (rgb8, frame_id 'camera') on /camera/image_raw and one
    DetectionArray (the ground truth, with the frame's situation tags in `situations`) on
    /ground_truth/detections, both logged at the frame's stamp. The bag's bytes depend only on
    the config (and the versions of rosbags and numpy).
    `progress` is a mode of `importance_sampler_ros.progress.Progress`.
    """
    out = Path(out)
    if out.exists():
        raise FileExistsError(f'{out} already exists; choose a new --out path')
    types = msg_types()
    detections_type = msgtype('DetectionArray')
    count = 0
    with BagWriter(out, storage=storage) as writer:
        drive = Drive(config)
        for frame in iterate(drive, total=len(drive), desc='synth', unit='frame', mode=progress):
            writer.write(IMAGE_TOPIC, IMAGE_TYPE, frame.stamp_ns,
                         rgb_to_image_msg(frame.image, frame.stamp_ns, CAMERA_FRAME_ID, types))
            writer.write(GROUND_TRUTH_TOPIC, detections_type, frame.stamp_ns,
                         detections_to_msg(frame.truth, types))
            count += 1
    return count


# --- the `synth` subcommand ------------------------------------------------------------------

def configure_synth_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('--out', required=True, help='output bag directory (must not exist)')
    parser.add_argument('--seconds', type=float, default=60.0, help='drive length (s)')
    parser.add_argument('--fps', type=float, default=10.0, help='frames per second')
    parser.add_argument('--seed', type=int, default=0, help='world seed (same seed, same bag)')
    parser.add_argument('--width', type=int, default=640, help='image width (px)')
    parser.add_argument('--height', type=int, default=192, help='image height (px)')
    parser.add_argument('--storage', choices=('mcap', 'sqlite3'), default='mcap',
                        help='rosbag2 storage plugin')
    add_progress_arguments(parser)
    parser.add_argument('--situations', nargs='+', default=None, metavar='TAG',
                        help='force situation tags on every frame (TAG) or exclude them (no-TAG); '
                             "'common' excludes every rare tag. Tags: " + ', '.join(ALL_TAGS))
    parser.add_argument('--mix', choices=sorted(MIXES), default='default',
                        help="frequencies of rare situations: 'default' (the long tail) or "
                             "'common' (a tenth of that)")


def run_synth(args: argparse.Namespace) -> int:
    try:
        config = SynthConfig(width=args.width, height=args.height, fps=args.fps,
                             seconds=args.seconds, seed=args.seed,
                             situations=parse_situations(args.situations), mix=args.mix)
    except ValueError as exc:
        print(f'importance-sampler synth: {exc}', file=sys.stderr)
        return 2
    try:
        n = write_drive_bag(config, args.out, storage=args.storage,
                            progress=progress_mode(args))
    except FileExistsError as exc:
        print(f'importance-sampler synth: {exc}', file=sys.stderr)
        return 1
    print(f'wrote {n} frames ({config.width}x{config.height}, seed {config.seed}) to {args.out}')
    return 0
