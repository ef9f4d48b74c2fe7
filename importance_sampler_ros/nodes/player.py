"""`importance-sampler play BAG`: publish a bag's camera images (and ground truth) with rclpy.

Messages are published as the CDR bytes stored in the bag (rclpy's `Publisher.publish` takes
serialised bytes), so nothing is deserialised on the way. Timing follows the bag's log times:
at the recorded rate, `--rate R` times faster, or with `--as-fast-as-possible` one frame after the
other as fast as the graph keeps up (each image waits until the graph has answered the previous
one on --pace-topic, by default the tracker's output, or --pace-timeout seconds). The pace is the
detector's; without a detector in the graph (--detections-as) nothing slows the images down and
the recorder's best-effort image subscription drops frames (measured: 6 of 80 640x192 frames
arrived flat out, 67 of 80 at 80 Hz, 80 of 80 at 40 Hz), so play such graphs with --rate.

`--detections-as TOPIC` also publishes the bag's recorded DetectionArrays (the ground truth by
default) on TOPIC, e.g. /importance_sampler/detections, so the graph can run without the detector.
`--restamp` sets every header stamp to the wall-clock time its frame is published (all messages of
one frame get the same stamp), like a live camera; `--loop` replays the bag until interrupted,
shifting stamps on each pass so that time keeps increasing.

Transport: the graph's (transport.py: the package's Fast DDS profile unless the environment
chooses one), so that 1242x375 frames arrive whole.

QoS: images are published reliable (matches reliable and best-effort subscribers; see
--image-reliability), depth 5; the other topics reliable, depth 10.

Damaged input: the bag is read with bag_io (MCAP chunk CRCs verified); a damaged range is logged
with its byte range and skipped, and a message that does not decode as its type is logged and not
published. Exit status: 0 all played, 2 the bag or an option cannot be used (one line says why:
no such bag, an empty directory, no image topic...), 3 played with damage skipped (partial input).
"""
from __future__ import annotations

import argparse
import importlib
import json
import math
import sys
import time
from collections import OrderedDict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from importance_sampler_ros import topics, transport
from importance_sampler_ros.bags import bag_io
from importance_sampler_ros.bags.bag_io import header_from_cdr, with_header_stamp
from importance_sampler_ros.bags.frames import (
    GROUND_TRUTH_TOPIC,
    FrameSourceError,
    choose_image_topic,
)
from importance_sampler_ros.bags.mcap_scan import Damage

DETECTION_ARRAY_TYPE = bag_io.msgtype('DetectionArray')
DEFAULT_PACE_TOPIC = topics.TRACKED_DETECTIONS
# Message types whose CDR starts with a std_msgs/Header (stamp first): these can be restamped.
HEADER_FIRST_TYPES = frozenset({
    bag_io.IMAGE_TYPE, 'sensor_msgs/msg/CompressedImage', 'sensor_msgs/msg/CameraInfo',
    *(bag_io.msgtype(n) for n in ('DetectionArray', 'TrackArray', 'RelabelArray',
                                  'SampleDecision')),
})
_NS = 1_000_000_000
EXIT_BAD_INPUT = 2
EXIT_PARTIAL = 3


class PlayError(ValueError):
    """A bag or option that cannot be played; the message says why."""


def message_class(msgtype: str) -> type:
    """The rclpy (rosidl) class of 'pkg/msg/Name'."""
    package, _, name = msgtype.split('/')
    try:
        return getattr(importlib.import_module(f'{package}.msg'), name)
    except (ImportError, AttributeError) as error:
        raise PlayError(f'no Python message class for {msgtype}: {error}') from error


@dataclass(frozen=True)
class PlanEntry:
    """One bag topic to publish, and where."""

    bag_topic: str
    msgtype: str
    out_topics: tuple[str, ...]


def plan_topics(
    bag_topics: dict[str, str],
    *,
    image_topic: str | None = None,
    topics: list[str] | None = None,
    detections_as: str | None = None,
    detections_source: str | None = None,
) -> tuple[str, list[PlanEntry]]:
    """(image topic, what to publish): the image topic and ground truth unless `topics` says."""
    try:
        image = choose_image_topic(bag_topics, image_topic)
    except FrameSourceError as error:
        raise PlayError(str(error)) from None
    if topics is None:
        chosen = [image] + ([GROUND_TRUTH_TOPIC] if GROUND_TRUTH_TOPIC in bag_topics else [])
    else:
        missing = [t for t in topics if t not in bag_topics]
        if missing:
            raise PlayError(f'not in the bag: {", ".join(missing)} '
                            f'(topics: {", ".join(sorted(bag_topics))})')
        chosen = list(dict.fromkeys([image, *topics]))
    outputs: dict[str, list[str]] = {t: [t] for t in chosen}
    if detections_as is not None:
        source = detections_source
        if source is None:
            arrays = sorted(t for t, kind in bag_topics.items() if kind == DETECTION_ARRAY_TYPE)
            if GROUND_TRUTH_TOPIC in arrays:
                source = GROUND_TRUTH_TOPIC
            elif len(arrays) == 1:
                source = arrays[0]
            else:
                raise PlayError('choose the DetectionArray topic to publish with '
                                f'--detections-source (the bag has: {", ".join(arrays) or "none"})')
        if bag_topics.get(source) != DETECTION_ARRAY_TYPE:
            raise PlayError(f'--detections-source {source} is not a DetectionArray topic of the '
                            'bag')
        outputs.setdefault(source, [])
        if detections_as not in outputs[source]:
            outputs[source].append(detections_as)
    plan = [PlanEntry(t, bag_topics[t], tuple(outs)) for t, outs in outputs.items()]
    if any(len(p.out_topics) > 1 or p.out_topics[0] != p.bag_topic for p in plan):
        claimed = [out for p in plan for out in p.out_topics]
        if len(claimed) != len(set(claimed)):
            raise PlayError(f'two bag topics would be published on the same topic: {claimed}')
    return image, plan


@dataclass
class PlayStats:
    images: int = 0
    messages: int = 0
    passes: int = 0
    wall_s: float = 0.0
    publish_errors: int = 0
    pace_timeouts: int = 0
    invalid_messages: int = 0  # read but not published: they do not decode
    damaged_ranges: int = 0  # byte ranges of the bag skipped (first pass)
    subscribers_at_start: int = 0
    per_topic: dict[str, int] = field(default_factory=dict)

    @property
    def image_rate_hz(self) -> float:
        return self.images / self.wall_s if self.wall_s > 0 else 0.0


class _Stamps:
    """Maps a message's original header stamp to the stamp it is published with."""

    def __init__(self, restamp: bool) -> None:
        self.restamp = restamp
        self.offset_ns = 0  # added on each --loop pass when not restamping
        self._recent: OrderedDict[int, int] = OrderedDict()

    def map(self, stamp_ns: int) -> int:
        if not self.restamp:
            return stamp_ns + self.offset_ns
        new = self._recent.get(stamp_ns)
        if new is None:
            new = self._recent[stamp_ns] = time.time_ns()
            while len(self._recent) > 256:
                self._recent.popitem(last=False)
        return new

    def next_pass(self) -> None:
        self._recent.clear()


class Player:
    """Publishes a bag's messages with an rclpy node (rclpy must be initialised)."""

    def __init__(self, node: Any, bag: Path, plan: list[PlanEntry], image_topic: str, *,
                 rate: float = 1.0, as_fast_as_possible: bool = False, loop: bool = False,
                 restamp: bool = False, image_reliable: bool = True,
                 pace_topic: str = DEFAULT_PACE_TOPIC, pace_timeout_s: float = 5.0) -> None:
        from importance_sampler_ros.nodes.qos import VIEW_QOS, image_qos

        self.node = node
        self.bag = bag
        self.plan = plan
        self.image_topic = image_topic
        self.rate = rate
        self.as_fast_as_possible = as_fast_as_possible
        self.loop = loop
        self.stamps = _Stamps(restamp)
        self.pace_timeout_s = pace_timeout_s
        self.stats = PlayStats()
        self.damage: list[Damage] = []
        self.stopped = False
        images = image_qos('reliable' if image_reliable else 'best_effort', depth=5)
        other_qos = VIEW_QOS
        self.publishers: dict[str, list[Any]] = {}
        for entry in plan:
            cls = message_class(entry.msgtype)
            qos = images if entry.bag_topic == image_topic else other_qos
            self.publishers[entry.bag_topic] = [
                node.create_publisher(cls, out, qos) for out in entry.out_topics]
        self.image_publisher = self.publishers[image_topic][0]
        self._answered: set[int] = set()
        self._awaited: int | None = None
        if as_fast_as_possible:
            node.create_subscription(message_class(DETECTION_ARRAY_TYPE), pace_topic,
                                     self._on_pace, other_qos, raw=True)

    def _on_pace(self, data: bytes) -> None:
        try:
            self._answered.add(header_from_cdr(data)[0])
        except ValueError:
            return

    def wait_for_subscribers(self, count: int, timeout_s: float,
                             also: tuple[str, ...] = ()) -> list[str]:
        """Wait until the image topic has `count` subscribers and each topic in `also` one (or
        the timeout); the topics still short of subscribers."""
        import rclpy

        wanted = {self.image_topic: count, **dict.fromkeys(also, 1)}
        by_topic = {p.topic_name: p for pubs in self.publishers.values() for p in pubs}

        def short() -> list[str]:
            return [t for t, n in wanted.items() if by_topic[t].get_subscription_count() < n]

        deadline = time.monotonic() + timeout_s
        while short() and time.monotonic() < deadline and not self.stopped:
            rclpy.spin_once(self.node, timeout_sec=0.05)
        self.stats.subscribers_at_start = self.image_publisher.get_subscription_count()
        return short()

    def play(self) -> PlayStats:
        started = time.monotonic()
        types = {entry.bag_topic: entry.msgtype for entry in self.plan}
        try:
            while not self.stopped:
                last_stamp, period = self._play_once(types)
                self.stats.passes += 1
                if not self.loop or last_stamp is None:
                    break
                if not self.stamps.restamp:
                    first = self._first_stamp
                    self.stamps.offset_ns += (last_stamp - first) + max(period, 1)
                self.stamps.next_pass()
        finally:
            self.stats.wall_s = time.monotonic() - started
        return self.stats

    def _play_once(self, types: dict[str, str]) -> tuple[int | None, int]:
        """One pass over the bag; (last original image stamp, last image period) in ns."""
        import rclpy

        wall_start: float | None = None
        log_start = 0
        last_image_stamp: int | None = None
        period = 0
        self._first_stamp = 0
        damage: list[Damage] = []
        for message in bag_io.read_messages(self.bag, list(types), damage):
            self._note_damage(damage)
            if self.stopped or not rclpy.ok():
                self.stopped = True
                break
            # checked before the clock starts: the first check of a type compiles its rosbags
            # deserialiser (~0.1 s), which would otherwise delay the first frames into a burst
            try:
                if message.msgtype in bag_io.typestore().types:  # others cannot be checked
                    bag_io.validate_message(message.rawdata, message.msgtype)
            except bag_io.BadMessageError as error:
                self.stats.invalid_messages += 1
                self.node.get_logger().warning(
                    f'{message.topic} message at {message.stamp_ns} ns not published: {error} '
                    f'[{self.stats.invalid_messages} so far]', throttle_duration_sec=2.0)
                continue
            if wall_start is None:
                wall_start, log_start = time.monotonic(), message.stamp_ns
            is_image = message.topic == self.image_topic
            if is_image and self.as_fast_as_possible:
                self._wait_for_answer()
            elif not self.as_fast_as_possible:
                due = wall_start + (message.stamp_ns - log_start) / _NS / self.rate
                delay = due - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            data = message.rawdata
            if message.msgtype in HEADER_FIRST_TYPES:
                original = header_from_cdr(data)[0]
                stamp = self.stamps.map(original)
                if stamp != original:
                    data = with_header_stamp(data, stamp)
                if is_image:
                    if last_image_stamp is None:
                        self._first_stamp = original
                    else:
                        period = original - last_image_stamp
                    last_image_stamp = original
                    self._awaited = stamp
            self._publish(message.topic, data, is_image)
        self._note_damage(damage)
        return last_image_stamp, period

    def _note_damage(self, damage: list[Damage]) -> None:
        """Log each damaged range once (on the first pass; --loop meets them again)."""
        if self.stats.passes:
            return
        for entry in damage[len(self.damage):]:
            _log(f'damaged input skipped: {entry}')
        self.damage = list(damage)
        self.stats.damaged_ranges = len(damage)

    def _wait_for_answer(self) -> None:
        """Block until the graph answered the previous image (or the pace timeout)."""
        import rclpy

        if self._awaited is None:
            return
        deadline = time.monotonic() + self.pace_timeout_s
        while self._awaited not in self._answered and not self.stopped:
            if time.monotonic() > deadline:
                self.stats.pace_timeouts += 1
                break
            rclpy.spin_once(self.node, timeout_sec=0.01)
        self._answered.clear()
        self._awaited = None

    def _publish(self, bag_topic: str, data: bytes, is_image: bool) -> None:
        from rclpy._rclpy_pybind11 import RCLError

        for publisher in self.publishers[bag_topic]:
            try:
                publisher.publish(data)
            except RCLError as error:
                self.stats.publish_errors += 1
                self.node.get_logger().warning(f'publish on {publisher.topic_name} failed: '
                                               f'{error}', throttle_duration_sec=2.0)
                continue
            self.stats.messages += 1
            self.stats.per_topic[publisher.topic_name] = (
                self.stats.per_topic.get(publisher.topic_name, 0) + 1)
        if is_image:
            self.stats.images += 1


def configure_play_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('bag', type=Path, help='rosbag2 directory (mcap or sqlite3)')
    timing = parser.add_mutually_exclusive_group()
    timing.add_argument('--rate', type=float, default=1.0,
                        help='speed factor over the recorded rate (default 1)')
    timing.add_argument('--as-fast-as-possible', action='store_true',
                        help='publish each image once the graph answered the previous one '
                             '(on --pace-topic)')
    parser.add_argument('--loop', action='store_true', help='replay until interrupted')
    parser.add_argument('--topics', nargs='+', metavar='TOPIC',
                        help='bag topics to publish (default: the image topic and '
                             f'{GROUND_TRUTH_TOPIC} when present)')
    parser.add_argument('--image-topic', help="the bag's image topic when it has several")
    parser.add_argument('--detections-as', metavar='TOPIC',
                        help="also publish the bag's recorded DetectionArrays on TOPIC "
                             '(e.g. /importance_sampler/detections, to run without the detector)')
    parser.add_argument('--detections-source', metavar='BAG_TOPIC',
                        help=f'the DetectionArray topic for --detections-as '
                             f'(default {GROUND_TRUTH_TOPIC})')
    parser.add_argument('--restamp', action='store_true',
                        help='header stamps = wall-clock publish time of each frame')
    parser.add_argument('--image-reliability', choices=('reliable', 'best_effort'),
                        default='reliable', help='QoS reliability of the image publisher')
    parser.add_argument('--pace-topic', default=DEFAULT_PACE_TOPIC,
                        help='DetectionArray topic that answers each image, for '
                             '--as-fast-as-possible')
    parser.add_argument('--pace-timeout', type=float, default=5.0,
                        help='seconds to wait for an answer before publishing the next image')
    parser.add_argument('--wait-subscribers', type=int, default=1, metavar='N',
                        help='wait until the image topic has N subscribers (and the '
                             '--detections-as topic one) before playing')
    parser.add_argument('--wait-timeout', type=float, default=30.0,
                        help='seconds to wait for those subscribers (then play anyway)')
    parser.add_argument('--settle', type=float, default=1.0,
                        help='seconds to wait after the subscribers are seen, so that they also '
                             'see the player (DDS discovery is not symmetric)')
    parser.add_argument('--linger', type=float, default=0.5,
                        help='seconds to keep the publishers alive after the last message, so '
                             'reliable subscribers receive everything')
    parser.add_argument('--summary-json', type=Path,
                        help='write the play statistics to this JSON file')


def _log(message: str) -> None:
    print(f'[importance-sampler play] {message}', file=sys.stderr, flush=True)


def run_play(args: argparse.Namespace) -> int:
    if not args.as_fast_as_possible and not (args.rate > 0 and math.isfinite(args.rate)):
        _log(f'--rate must be > 0, got {args.rate}')
        return 2
    damage: list[Damage] = []
    try:
        bag_topics = bag_io.topics(args.bag, damage)
        image_topic, plan = plan_topics(
            bag_topics, image_topic=args.image_topic, topics=args.topics,
            detections_as=args.detections_as, detections_source=args.detections_source)
    except (bag_io.BagError, PlayError) as error:
        _log(str(error))
        return EXIT_BAD_INPUT
    except OSError as error:  # e.g. a bag file without read permission
        _log(f'{args.bag}: {error.strerror or error}')
        return EXIT_BAD_INPUT

    transport.use_graph_transport()  # before rclpy.init
    import rclpy
    from rclpy.executors import ExternalShutdownException

    rclpy.init()
    node = rclpy.create_node('bag_player')
    status = 0
    player = None
    try:
        player = Player(node, args.bag, plan, image_topic, rate=args.rate,
                        as_fast_as_possible=args.as_fast_as_possible, loop=args.loop,
                        restamp=args.restamp,
                        image_reliable=args.image_reliability == 'reliable',
                        pace_topic=args.pace_topic, pace_timeout_s=args.pace_timeout)
        for entry in plan:
            _log(f'{entry.bag_topic} ({entry.msgtype}) -> {", ".join(entry.out_topics)}')
        also = (args.detections_as,) if args.detections_as else ()
        short = player.wait_for_subscribers(args.wait_subscribers, args.wait_timeout, also)
        if short:
            _log(f'too few subscribers on {", ".join(short)} after {args.wait_timeout:g} s '
                 f'(wanted {args.wait_subscribers} on {image_topic}, 1 on the others); '
                 'playing anyway')
        settle_until = time.monotonic() + args.settle
        while time.monotonic() < settle_until and rclpy.ok():
            rclpy.spin_once(node, timeout_sec=0.05)
        player.play()
        linger_until = time.monotonic() + args.linger
        while time.monotonic() < linger_until and rclpy.ok():
            rclpy.spin_once(node, timeout_sec=0.05)
    except PlayError as error:
        _log(str(error))
        status = EXIT_BAD_INPUT
    except (bag_io.BagError, OSError) as error:  # the bag became unreadable while playing
        _log(f'playing stopped: {error}')
        status = EXIT_BAD_INPUT
    except (KeyboardInterrupt, ExternalShutdownException):
        if player is not None:
            player.stopped = True
    finally:
        node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()
    if player is not None:
        stats = player.stats
        _log(f'published {stats.images} images and {stats.messages - stats.images} other '
             f'messages in {stats.wall_s:.2f} s ({stats.image_rate_hz:.1f} images/s), '
             f'{stats.publish_errors} publish errors, {stats.pace_timeouts} pace timeouts')
        if args.summary_json is not None:
            summary = {**asdict(stats), 'image_rate_hz': stats.image_rate_hz,
                       'damage': [str(d) for d in player.damage]}
            args.summary_json.write_text(json.dumps(summary, indent=2))
        if status == 0 and (damage or player.damage or stats.invalid_messages):
            for entry in damage:  # found before playing (a garbage metadata.yaml)
                _log(f'damaged input: {entry}')
            _log(f'partial input: {len(damage) + len(player.damage)} damaged ranges skipped, '
                 f'{stats.invalid_messages} messages that do not decode not published')
            status = EXIT_PARTIAL
    return status
