"""Tracks and relabels <-> TrackArray / RelabelArray, for rclpy and rosbags message classes alike.

Same conventions as messages.py: `types` is a namespace of message classes
(`nodes.message_types.rclpy_types()` or `bag_io.msg_types()`), every field is passed as a keyword
argument, primitive arrays go through `types.primitive_array`.
"""
from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from importance_sampler_ros.bags.messages import (
    box_msg,
    header_msg,
    stamp_to_ns,
    time_msg,
)
from importance_sampler_ros.tracking.relabel import (
    RelabelEvent,
    RelabelledObservation,
    TrackSummary,
)


def track_msg(track: TrackSummary, types: SimpleNamespace) -> Any:
    return types.Track(
        track_id=int(track.track_id),
        box=box_msg(track.box, types),
        class_id=int(track.class_id),
        class_name=str(track.class_name),
        class_history_ids=types.primitive_array([c for c, _ in track.class_history], 'int32'),
        class_history_counts=types.primitive_array(
            [n for _, n in track.class_history], 'uint32'),
        age=int(track.age),
        hits=int(track.hits),
        time_since_update=int(track.time_since_update),
        score=float(track.score),
    )


def tracks_to_msg(stamp_ns: int, frame_id: str, tracks: list[TrackSummary],
                  types: SimpleNamespace) -> Any:
    """A TrackArray of the confirmed tracks of the frame with this stamp and frame_id."""
    return types.TrackArray(
        header=header_msg(stamp_ns, frame_id, types),
        tracks=[track_msg(track, types) for track in tracks],
    )


def relabel_msg(event: RelabelEvent, types: SimpleNamespace) -> Any:
    return types.Relabel(
        header=header_msg(event.stamp_ns, event.frame_id, types),
        track_id=int(event.track_id),
        old_class_id=int(event.old_class_id),
        old_class_name=str(event.old_class_name),
        new_class_id=int(event.new_class_id),
        new_class_name=str(event.new_class_name),
        confidence=float(event.confidence),
        reissued=bool(event.reissued),
        observations=[
            types.RelabelledObservation(
                stamp=time_msg(obs.stamp_ns, types),
                box=box_msg(obs.box, types),
                detection_index=int(obs.detection_index),
            )
            for obs in event.observations
        ],
    )


def relabels_to_msg(stamp_ns: int, frame_id: str, events: list[RelabelEvent],
                    types: SimpleNamespace) -> Any:
    """A RelabelArray (header: the processed frame's stamp and frame_id), possibly empty."""
    return types.RelabelArray(
        header=header_msg(stamp_ns, frame_id, types),
        relabels=[relabel_msg(event, types) for event in events],
    )


def relabels_from_msg(msg: Any) -> list[RelabelEvent]:
    """The RelabelEvents of a RelabelArray (rclpy or rosbags)."""
    return [
        RelabelEvent(
            stamp_ns=stamp_to_ns(relabel.header),
            frame_id=str(relabel.header.frame_id),
            track_id=int(relabel.track_id),
            old_class_id=int(relabel.old_class_id),
            old_class_name=str(relabel.old_class_name),
            new_class_id=int(relabel.new_class_id),
            new_class_name=str(relabel.new_class_name),
            confidence=float(relabel.confidence),
            reissued=bool(relabel.reissued),
            observations=tuple(
                RelabelledObservation(
                    stamp_ns=stamp_to_ns(obs.stamp),
                    box=(float(obs.box.x1), float(obs.box.y1), float(obs.box.x2),
                         float(obs.box.y2)),
                    detection_index=int(obs.detection_index),
                )
                for obs in relabel.observations
            ),
        )
        for relabel in msg.relabels
    ]
