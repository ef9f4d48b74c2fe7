"""Camera frames out of a recorded bag: each image with the detections recorded for it.

Used by replay (and the fleet replay). Images, detection arrays and ground truth are joined by
exact header stamp with the recorder node's join (stamp_join.StampJoin, window join_timeout_s of
the bag's log time); frames come out in the order their first message was logged. A detection array
whose image never comes (or the reverse) is counted, not silently dropped. A damaged bag yields
every frame that can be read: MCAP chunks that fail their CRC or do not parse are skipped (bag_io
/ mcap_scan), a file cut off part-way is read up to the cut, a garbage metadata.yaml is passed
over for the .mcap files; each such damage is recorded with its byte range in
`FrameSource.damage`, and in one line in `FrameSource.truncated` (replay's partial-input
status).
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from importance_sampler_ros import topics
from importance_sampler_ros.bags import bag_io
from importance_sampler_ros.bags.mcap_scan import Damage
from importance_sampler_ros.bags.messages import detections_from_msg, stamp_to_ns
from importance_sampler_ros.detection.detections import FrameDetections
from importance_sampler_ros.stamp_join import JoinedFrame, StampJoin

DETECTION_ARRAY_TYPE = bag_io.msgtype('DetectionArray')
GROUND_TRUTH_TOPIC = topics.GROUND_TRUTH


class FrameSourceError(ValueError):
    """A bag that cannot be replayed; the message says why in one line."""


@dataclass
class InputFrame:
    stamp_ns: int
    frame_id: str
    image_cdr: bytes
    image: Any  # the deserialised sensor_msgs/Image (rosbags)
    detections: FrameDetections | None = None  # recorded detections, when asked for
    truth: FrameDetections | None = None  # ground truth, when the bag has it


def choose_image_topic(topics: dict[str, str], requested: str | None) -> str:
    """The requested image topic, or the bag's only sensor_msgs/Image topic."""
    images = sorted(t for t, kind in topics.items() if kind == bag_io.IMAGE_TYPE)
    if requested is not None:
        if requested not in topics:
            raise FrameSourceError(f'topic {requested} is not in the bag (image topics: '
                                   f'{", ".join(images) or "none"})')
        if topics[requested] != bag_io.IMAGE_TYPE:
            raise FrameSourceError(f'topic {requested} has type {topics[requested]}, '
                                   f'not {bag_io.IMAGE_TYPE}')
        return requested
    if not images:
        listing = ', '.join(f'{t} ({k})' for t, k in sorted(topics.items())) or 'none'
        raise FrameSourceError(f'the bag has no sensor_msgs/msg/Image topic (topics: {listing})')
    if len(images) > 1:
        raise FrameSourceError(f'the bag has several image topics ({", ".join(images)}); '
                               'choose one with --image-topic')
    return images[0]


def choose_detections_topic(topics: dict[str, str], requested: str | None) -> str:
    """The requested DetectionArray topic, or the bag's only one that is not ground truth."""
    arrays = sorted(t for t, kind in topics.items() if kind == DETECTION_ARRAY_TYPE)
    if requested is not None:
        if topics.get(requested) != DETECTION_ARRAY_TYPE:
            raise FrameSourceError(f'{requested} is not a DetectionArray topic of the bag '
                                   f'(DetectionArray topics: {", ".join(arrays) or "none"})')
        return requested
    recorded = [t for t in arrays if t != GROUND_TRUTH_TOPIC] or arrays
    if len(recorded) != 1:
        raise FrameSourceError('--use-recorded-detections needs exactly one DetectionArray '
                               f'topic, found: {", ".join(arrays) or "none"}; name it with '
                               '--detections-topic')
    return recorded[0]


class FrameSource:
    """Iterate a bag's frames; see the module docstring."""

    def __init__(self, path: str | Path, image_topic: str | None = None,
                 detections_topic: str | None = None, use_recorded_detections: bool = False,
                 ground_truth_topic: str | None = GROUND_TRUTH_TOPIC,
                 join_timeout_s: float = 2.0) -> None:
        self.path = Path(path)
        self.join_timeout_s = join_timeout_s
        self.damage: list[Damage] = []
        self.read_error = ''
        try:
            self.topics = bag_io.topics(self.path, self.damage)
        except bag_io.BagError as error:
            raise FrameSourceError(str(error)) from None
        self.image_topic = choose_image_topic(self.topics, image_topic)
        # The number of images, for progress totals; None when the bag's index does not say.
        try:
            self.image_count: int | None = bag_io.message_counts(self.path).get(
                self.image_topic) or None
        except bag_io.BagError:
            self.image_count = None
        self.detections_topic = (choose_detections_topic(self.topics, detections_topic)
                                 if use_recorded_detections else None)
        has_truth = self.topics.get(ground_truth_topic or '') == DETECTION_ARRAY_TYPE
        self.ground_truth_topic = ground_truth_topic if has_truth else None
        self.unmatched_images = 0
        self.unmatched_detections = 0
        self.images_read = 0

    def __iter__(self) -> Iterator[InputFrame]:
        parts: dict[str, list[str]] = {}  # topic -> its parts (recorded detections may be truth)
        for topic, part in ((self.image_topic, 'image'), (self.detections_topic, 'detections'),
                            (self.ground_truth_topic, 'truth')):
            if topic is not None:
                parts.setdefault(topic, []).append(part)
        join = StampJoin(['image', 'detections'] if self.detections_topic else ['image'],
                         ['truth'] if self.ground_truth_topic else [],
                         timeout_s=self.join_timeout_s, awaited_s=self.join_timeout_s,
                         ordered=True)
        try:
            for message in bag_io.read_messages(self.path, list(parts), self.damage):
                if message.topic == self.image_topic:
                    frame = self._image_frame(message)
                    stamp_ns, value = frame.stamp_ns, frame
                else:
                    value = detections_from_msg(message.decode())
                    stamp_ns = value.stamp_ns
                # the bag's log time is the arrival clock: the node's window, as recorded
                for part in parts[message.topic]:
                    joined = join.add(part, stamp_ns, value, message.stamp_ns / 1e9)
                    yield from map(_input_frame, joined)
                self._count(join)
        except Exception as error:  # rosbags (SQLite3) raises assorted errors on damaged data
            self.read_error = f'read stopped after {self.images_read} images: {error}'
        yield from map(_input_frame, join.drain())
        self._count(join)

    def _count(self, join: StampJoin) -> None:
        self.unmatched_images = join.unmatched['image']
        # a topic in both roles (ground truth replayed as detections) counts once
        self.unmatched_detections = (join.unmatched.get('detections', 0)
                                     + (join.unmatched.get('truth', 0)
                                        if self.ground_truth_topic != self.detections_topic
                                        else 0))

    @property
    def truncated(self) -> str:
        """What could not be read, in one line ('' when the bag was read whole)."""
        parts = [str(d) for d in self.damage] + ([self.read_error] if self.read_error else [])
        if len(parts) > 3:
            parts = [*parts[:3], f'and {len(parts) - 3} more damaged ranges']
        return f'damaged: {"; ".join(parts)}' if parts else ''

    def _image_frame(self, message: bag_io.BagMessage) -> InputFrame:
        image = message.decode()
        self.images_read += 1
        return InputFrame(stamp_ns=stamp_to_ns(image.header), frame_id=image.header.frame_id,
                          image_cdr=message.rawdata, image=image)


def _input_frame(joined: JoinedFrame) -> InputFrame:
    frame: InputFrame = joined.parts['image']
    frame.detections = joined.get('detections')
    frame.truth = joined.get('truth')
    return frame
