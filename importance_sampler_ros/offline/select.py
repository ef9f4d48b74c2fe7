"""`importance-sampler select`: which recorded frames to send to the labellers.

The recorder keeps more frames than will be labelled; this picks `--count` (or `--share`) of
them over one or more recordings at once: the greedy k-center cover of their frame descriptors
(sampling/cover.py), whitened by the detector's training frames (`--reference`, from
`importance-sampler coverage-reference`; the shipped model's is used by default when it exists).
It writes selection.json (bag, stamp and rank of every pick) and, unless --no-bag, a rosbag2 bag
`selected/` holding every recorded message of the picked frames (image, detections, relabels,
decision), readable by the standard tools.

Exit status: 0 done; 1 nothing to select from (no readable recording, no frame with a
descriptor), --out a file or not empty, or the output not writable; 2 a bad option; 3 done, but
some input was damaged (skipped, named in selection.json).
"""
from __future__ import annotations

import argparse
import json
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from importance_sampler_ros import topics
from importance_sampler_ros.bags import bag_io
from importance_sampler_ros.bags.mcap_scan import Damage
from importance_sampler_ros.bags.messages import stamp_to_ns
from importance_sampler_ros.sampling.cover import greedy_cover
from importance_sampler_ros.sampling.coverage import load_reference

EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_DAMAGED = 3


@dataclass(frozen=True)
class Candidate:
    bag: Path
    stamp_ns: int
    descriptor: np.ndarray


def bags_of(path: Path) -> list[Path]:
    """A rosbag2 bag itself, or the splits of a recording directory."""
    from importance_sampler_ros.recording.splits import split_paths

    if (path / 'metadata.yaml').is_file() or path.suffix in bag_io.BAG_FILE_SUFFIXES:
        return [path]
    return split_paths(path) if path.is_dir() else []


def read_candidates(bags: list[Path], detections_topic: str,
                    damage: list[str]) -> tuple[list[Candidate], int, int]:
    """Every recorded frame with a descriptor; also how many recorded frames had none, and how
    many DetectionArray messages did not decode (e.g. recorded with the message definition
    from before frame_descriptor)."""
    found: list[Candidate] = []
    without = undecodable = 0
    for bag in bags:
        seen: set[int] = set()
        damaged: list[Damage] = []
        try:
            for message in bag_io.read_messages(bag, [detections_topic], damaged):
                try:
                    array = message.decode()
                except Exception:  # rosbags raises SerdeError (and others) for malformed CDR
                    undecodable += 1
                    continue
                stamp = stamp_to_ns(array.header)
                descriptor = np.asarray(array.frame_descriptor, np.float64)
                if stamp in seen:
                    continue
                seen.add(stamp)
                if descriptor.size == 0 or not np.isfinite(descriptor).all():
                    without += 1
                    continue
                found.append(Candidate(bag, stamp, descriptor))
        except (bag_io.BagError, OSError) as error:
            damage.append(f'{bag}: {error}')
        damage.extend(f'{bag}: {d}' for d in damaged)
    return found, without, undecodable


def write_selected_bag(out: Path, picks: list[Candidate], damage: list[str]) -> int:
    """Every message of the picked frames (matched by header stamp, per bag) into `out`."""
    wanted: dict[Path, set[int]] = {}
    for pick in picks:
        wanted.setdefault(pick.bag, set()).add(pick.stamp_ns)
    written = 0
    with bag_io.BagWriter(out) as writer:
        for bag, stamps in wanted.items():
            damaged: list[Damage] = []
            for message in bag_io.read_messages(bag, None, damaged):
                try:
                    stamp, _frame = bag_io.header_from_cdr(message.rawdata)
                except ValueError:
                    continue  # no header: not a frame's message
                if stamp in stamps:
                    writer.write(message.topic, message.msgtype, stamp, message.rawdata,
                                 validate=False)
                    written += 1
            damage.extend(f'{bag}: {d}' for d in damaged)
    return written


def _default_reference() -> Path | None:
    from importance_sampler_ros.detection.detector import default_checkpoint_path

    path = Path(default_checkpoint_path()).with_suffix('.coverage.npy')
    return path if path.is_file() else None


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('inputs', nargs='+', type=Path,
                        help='recording directories (their splits) or rosbag2 bags')
    parser.add_argument('--out', type=Path, required=True,
                        help='output directory (new or empty)')
    size = parser.add_mutually_exclusive_group(required=True)
    size.add_argument('--count', type=int, help='how many frames to pick')
    size.add_argument('--share', type=float, help='share of the recorded frames to pick')
    parser.add_argument('--reference', type=Path, default=None,
                        help="descriptors of the detector's training frames (.npy, "
                             "coverage-reference); default: the shipped model's when it "
                             'exists')
    parser.add_argument('--no-reference', action='store_true',
                        help='standardise the descriptors over the recorded frames instead')
    parser.add_argument('--detections-topic', default=topics.DETECTIONS,
                        help='DetectionArray topic of the recordings')
    parser.add_argument('--seed', type=int, default=0, help='seed of the first pick')
    parser.add_argument('--no-bag', action='store_true',
                        help='write selection.json only, no bag of the picked frames')


def run(args: argparse.Namespace) -> int:
    def fail(code: int, line: str) -> int:
        print(f'importance-sampler select: {line}', file=sys.stderr)
        return code

    if args.count is not None and args.count < 1:
        return fail(EXIT_USAGE, f'--count must be >= 1, got {args.count}')
    if args.share is not None and not 0.0 < args.share <= 1.0:
        return fail(EXIT_USAGE, f'--share must be in (0, 1], got {args.share}')
    if args.out.exists() and (not args.out.is_dir() or any(args.out.iterdir())):
        return fail(EXIT_ERROR, f'--out {args.out} is a file or not empty')
    reference_path = None if args.no_reference else (args.reference or _default_reference())
    try:
        reference = load_reference(str(reference_path)) if reference_path else None
    except (OSError, ValueError) as error:
        return fail(EXIT_USAGE, f'--reference {reference_path}: {error}')
    bags = [bag for path in args.inputs for bag in bags_of(path)]
    if not bags:
        return fail(EXIT_ERROR, 'no rosbag2 bag or recording directory among the inputs')
    damage: list[str] = []
    candidates, without, undecodable = read_candidates(bags, args.detections_topic, damage)
    if not candidates:
        return fail(EXIT_ERROR, f'no recorded frame with a frame descriptor on '
                                f'{args.detections_topic} in {len(bags)} bag(s): {without} '
                                f'without one (recorded before descriptors existed?), '
                                f'{undecodable} that do not decode'
                                + (f', damage: {damage[0]}' if damage else ''))
    count = args.count if args.count is not None else max(1, round(args.share * len(candidates)))
    try:
        chosen = greedy_cover(np.stack([c.descriptor for c in candidates]), count, args.seed,
                              reference)
    except ValueError as error:
        return fail(EXIT_USAGE, str(error))
    picks = [candidates[i] for i in chosen]
    try:
        args.out.mkdir(parents=True, exist_ok=True)
        messages = 0 if args.no_bag else write_selected_bag(args.out / 'selected', picks, damage)
        summary = {
            'command': 'importance-sampler select ' + shlex.join(sys.argv[2:]),
            'bags': [str(b) for b in bags], 'recorded_frames': len(candidates) + without,
            'frames_without_descriptor': without, 'undecodable_detections': undecodable,
            'candidates': len(candidates),
            'picked': len(picks), 'reference': str(reference_path) if reference_path else None,
            'messages_written': messages, 'damage': damage,
            'frames': [{'bag': str(p.bag), 'stamp_ns': p.stamp_ns} for p in picks],
        }
        (args.out / 'selection.json').write_text(json.dumps(summary, indent=1) + '\n')
    except OSError as error:
        return fail(EXIT_ERROR, f'cannot write {args.out}: {error}')
    print(f'picked {len(picks)} of {len(candidates)} recorded frames from {len(bags)} bag(s)'
          + ('' if args.no_bag else f'; {messages} messages in {args.out / "selected"}'))
    if damage:
        print(f'importance-sampler select: damaged input skipped: {damage[0]}'
              + (f' (+{len(damage) - 1} more)' if len(damage) > 1 else ''), file=sys.stderr)
        return EXIT_DAMAGED
    return 0
