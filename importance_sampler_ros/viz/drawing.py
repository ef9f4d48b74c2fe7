"""Views of the pipeline for RViz / Foxglove: an annotated debug image and per-object markers.

No rclpy here: `draw_debug_image` works on numpy RGB arrays, and `marker_array` builds a
visualization_msgs/MarkerArray from a namespace of message classes (`rosbags_marker_types()` for
bags and tests, the viz node passes the rclpy classes), like messages.py does for the package's
own messages.

Colours encode importance: blue (low) -> yellow -> red (high), relative to an `ImportanceScale`
(a fixed value, or a decaying maximum of the importances seen). A detection whose track was
relabelled at this frame gets a magenta double outline and a 'relabel old->new' tag.
"""
from __future__ import annotations

import functools
import math
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from importance_sampler_ros.bags.messages import header_msg
from importance_sampler_ros.detection.detections import FrameDetections

LOW_COLOR = np.array([0.15, 0.45, 1.0])
MID_COLOR = np.array([1.0, 0.85, 0.0])
HIGH_COLOR = np.array([1.0, 0.1, 0.1])
RELABEL_COLOR = (1.0, 0.0, 1.0)


def importance_color(value: float, scale: float) -> tuple[float, float, float]:
    """RGB in [0, 1] for an importance relative to `scale`: blue -> yellow -> red."""
    t = 0.0 if scale <= 0.0 or not math.isfinite(value) else min(max(value / scale, 0.0), 1.0)
    if t < 0.5:
        rgb = LOW_COLOR + (MID_COLOR - LOW_COLOR) * (t / 0.5)
    else:
        rgb = MID_COLOR + (HIGH_COLOR - MID_COLOR) * ((t - 0.5) / 0.5)
    return (float(rgb[0]), float(rgb[1]), float(rgb[2]))


class ImportanceScale:
    """The importance drawn as full red: fixed, or a decaying maximum of what was seen."""

    def __init__(self, fixed: float = 0.0, decay: float = 0.99) -> None:
        self.fixed = float(fixed)
        self.decay = float(decay)
        self._max = 0.0

    def update(self, importances: Iterable[float]) -> float:
        """Fold one frame's detection importances in; returns the scale to draw that frame with."""
        values = [v for v in importances if math.isfinite(v)]
        self._max = max([self._max * self.decay, *values])
        return self.value

    @property
    def value(self) -> float:
        return self.fixed if self.fixed > 0.0 else self._max


class RunningKeepRatio:
    """Share of decided frames that were kept, since start or over the last `window` decisions."""

    def __init__(self, window: int = 0) -> None:
        self._window: deque[bool] | None = deque(maxlen=window) if window > 0 else None
        self.kept = 0
        self.decided = 0

    def add(self, kept: bool) -> float:
        if self._window is not None:
            self._window.append(bool(kept))
            self.kept, self.decided = sum(self._window), len(self._window)
        else:
            self.kept += int(bool(kept))
            self.decided += 1
        return self.value

    @property
    def value(self) -> float:
        return self.kept / self.decided if self.decided else 0.0


@dataclass(frozen=True)
class RelabelMark:
    """A relabel issued at a frame, as drawn on that frame: which track, from what to what."""

    track_id: int
    old_class_name: str
    new_class_name: str


def relabel_marks(relabel_array: Any) -> dict[int, RelabelMark]:
    """track id -> RelabelMark from a RelabelArray message (rclpy or rosbags)."""
    return {
        int(r.track_id): RelabelMark(int(r.track_id), str(r.old_class_name),
                                     str(r.new_class_name))
        for r in relabel_array.relabels
    }


def detection_label(det: FrameDetections, i: int, relabel: RelabelMark | None = None) -> str:
    """'car 0.87 #12 g=0.031', with ' relabel van->car' when the track was relabelled."""
    parts = [str(det.class_names[i]), f'{float(det.scores[i]):.2f}']
    if int(det.track_ids[i]) != 0:
        parts.append(f'#{int(det.track_ids[i])}')
    parts.append(f'g={float(det.importances[i]):.3g}')
    if relabel is not None:
        parts.append(f'relabel {relabel.old_class_name}->{relabel.new_class_name}')
    return ' '.join(parts)


@functools.cache
def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError):  # Pillow without FreeType: the fixed bitmap font
        return ImageFont.load_default()


def _rgb255(color: Sequence[float]) -> tuple[int, int, int]:
    return tuple(round(255 * c) for c in color[:3])  # type: ignore[return-value]


def draw_debug_image(
    rgb: np.ndarray,
    det: FrameDetections,
    *,
    importance_scale: float,
    relabels: Mapping[int, RelabelMark] | None = None,
    status_lines: Sequence[str] = (),
    line_width: int = 2,
    font_size: int = 12,
) -> np.ndarray:
    """A copy of `rgb` (H, W, 3 uint8) with the frame's detections drawn on it.

    Each box is outlined in its importance colour and labelled with class, score, track id and
    importance; tracks relabelled at this frame get a magenta outer outline and a relabel tag.
    `status_lines` are written in the top-left corner (frame importance, keep ratio, ...).
    """
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f'expected an (H, W, 3) uint8 image, got {rgb.shape} {rgb.dtype}')
    relabels = relabels or {}
    canvas = Image.fromarray(np.ascontiguousarray(rgb))
    draw = ImageDraw.Draw(canvas)
    font = _font(font_size)
    height, width = rgb.shape[:2]
    for i in range(len(det)):
        x1, y1, x2, y2 = (float(v) for v in det.boxes[i])
        if not all(math.isfinite(v) for v in (x1, y1, x2, y2)):
            continue
        x1, x2 = sorted((min(max(x1, 0.0), width - 1.0), min(max(x2, 0.0), width - 1.0)))
        y1, y2 = sorted((min(max(y1, 0.0), height - 1.0), min(max(y2, 0.0), height - 1.0)))
        color = _rgb255(importance_color(float(det.importances[i]), importance_scale))
        relabel = relabels.get(int(det.track_ids[i])) if int(det.track_ids[i]) else None
        draw.rectangle((x1, y1, x2, y2), outline=color, width=line_width)
        if relabel is not None:
            pad = line_width + 1
            draw.rectangle((x1 - pad, y1 - pad, x2 + pad, y2 + pad),
                           outline=_rgb255(RELABEL_COLOR), width=line_width)
        text = detection_label(det, i, relabel)
        left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
        text_w, text_h = right - left, bottom - top
        tx = min(max(x1, 0.0), max(width - text_w - 2.0, 0.0))
        ty = y1 - text_h - 3 if y1 - text_h - 3 >= 0 else min(y2 + 1, height - text_h - 3)
        background = _rgb255(RELABEL_COLOR) if relabel is not None else color
        draw.rectangle((tx, ty, tx + text_w + 2, ty + text_h + 2), fill=background)
        draw.text((tx + 1 - left, ty + 1 - top), text, fill=(0, 0, 0), font=font)
    y = 2
    for line in status_lines:
        left, top, right, bottom = draw.textbbox((0, 0), line, font=font)
        draw.rectangle((2, y, 2 + right - left + 4, y + bottom - top + 4), fill=(0, 0, 0))
        draw.text((4 - left, y + 2 - top), line, fill=(255, 255, 255), font=font)
        y += bottom - top + 6
    return np.asarray(canvas)


# ---------------------------------------------------------------------------------------------
# Markers


@functools.cache
def rosbags_marker_types() -> SimpleNamespace:
    """rosbags classes for marker_array (bags, tests); the viz node uses the rclpy ones."""
    from importance_sampler_ros.bags.bag_io import typestore

    store = typestore().types
    names = {
        'Marker': 'visualization_msgs/msg/Marker',
        'MarkerArray': 'visualization_msgs/msg/MarkerArray',
        'MeshFile': 'visualization_msgs/msg/MeshFile',
        'CompressedImage': 'sensor_msgs/msg/CompressedImage',
        'Point': 'geometry_msgs/msg/Point',
        'Pose': 'geometry_msgs/msg/Pose',
        'Quaternion': 'geometry_msgs/msg/Quaternion',
        'Vector3': 'geometry_msgs/msg/Vector3',
        'ColorRGBA': 'std_msgs/msg/ColorRGBA',
        'Duration': 'builtin_interfaces/msg/Duration',
        'Header': 'std_msgs/msg/Header',
        'Time': 'builtin_interfaces/msg/Time',
    }
    classes = {key: store[name] for key, name in names.items()}
    return SimpleNamespace(**classes, primitive_array=lambda v, dtype: np.asarray(v, dtype))


@dataclass(frozen=True)
class CameraModel:
    """A pinhole camera with its principal point at the image centre, for placing markers."""

    width: int
    height: int
    focal_length_px: float

    def point(self, u: float, v: float, depth: float) -> tuple[float, float, float]:
        """Pixel (u, v) at `depth` metres in the optical frame (x right, y down, z forward)."""
        scale = depth / self.focal_length_px
        return ((u - self.width / 2.0) * scale, (v - self.height / 2.0) * scale, depth)


def _marker(types: SimpleNamespace, header: Any, **fields: Any) -> Any:
    """A Marker with every field set (rosbags classes have no defaults)."""
    values = {
        'header': header,
        'ns': '',
        'id': 0,
        'type': 0,
        'action': 0,
        'pose': types.Pose(position=types.Point(x=0.0, y=0.0, z=0.0),
                           orientation=types.Quaternion(x=0.0, y=0.0, z=0.0, w=1.0)),
        'scale': types.Vector3(x=1.0, y=1.0, z=1.0),
        'color': types.ColorRGBA(r=1.0, g=1.0, b=1.0, a=1.0),
        'lifetime': types.Duration(sec=0, nanosec=0),
        'frame_locked': False,
        'points': [],
        'colors': [],
        'texture_resource': '',
        'texture': types.CompressedImage(header=header, format='',
                                         data=types.primitive_array([], 'uint8')),
        'uv_coordinates': [],
        'text': '',
        'mesh_resource': '',
        'mesh_file': types.MeshFile(filename='', data=types.primitive_array([], 'uint8')),
        'mesh_use_embedded_materials': False,
    }
    values.update(fields)
    return types.Marker(**values)


def marker_array(
    det: FrameDetections,
    types: SimpleNamespace,
    *,
    camera: CameraModel,
    importance_scale: float,
    relabels: Mapping[int, RelabelMark] | None = None,
    lifetime_s: float = 0.5,
    default_depth_m: float = 10.0,
) -> Any:
    """A MarkerArray for one frame: a DELETEALL, then per detection a box outline and a text.

    Markers live in the image's frame_id (a camera optical frame): each box is drawn at the
    detection's distance when known, else at `default_depth_m`, through a pinhole `camera`.
    Namespaces 'boxes' and 'labels'; marker ids are the detection indices.
    """
    relabels = relabels or {}
    header = header_msg(det.stamp_ns, det.frame_id, types)
    sec, nanosec = divmod(round(lifetime_s * 1e9), 1_000_000_000)
    lifetime = types.Duration(sec=int(sec), nanosec=int(nanosec))
    markers = [_marker(types, header, ns='', action=types.Marker.DELETEALL)]
    for i in range(len(det)):
        x1, y1, x2, y2 = (float(v) for v in det.boxes[i])
        distance = float(det.distances[i])
        depth = distance if math.isfinite(distance) and distance > 0.0 else default_depth_m
        if not all(math.isfinite(v) for v in (x1, y1, x2, y2)):
            continue
        track_id = int(det.track_ids[i])
        relabel = relabels.get(track_id) if track_id else None
        rgb = RELABEL_COLOR if relabel is not None else importance_color(
            float(det.importances[i]), importance_scale)
        color = types.ColorRGBA(r=rgb[0], g=rgb[1], b=rgb[2], a=1.0)
        corners = [(x1, y1), (x2, y1), (x2, y2), (x1, y2), (x1, y1)]
        points = [types.Point(x=p[0], y=p[1], z=p[2])
                  for p in (camera.point(u, v, depth) for u, v in corners)]
        line_width = 0.003 * depth
        markers.append(_marker(
            types, header, ns='boxes', id=i, type=types.Marker.LINE_STRIP,
            action=types.Marker.ADD, scale=types.Vector3(x=line_width, y=0.0, z=0.0),
            color=color, lifetime=lifetime, points=points,
        ))
        text_height = 0.03 * depth
        tx, ty, tz = camera.point((x1 + x2) / 2.0, y1, depth)
        markers.append(_marker(
            types, header, ns='labels', id=i, type=types.Marker.TEXT_VIEW_FACING,
            action=types.Marker.ADD,
            pose=types.Pose(position=types.Point(x=tx, y=ty - text_height, z=tz),
                            orientation=types.Quaternion(x=0.0, y=0.0, z=0.0, w=1.0)),
            scale=types.Vector3(x=0.0, y=0.0, z=text_height), color=color, lifetime=lifetime,
            text=detection_label(det, i, relabel),
        ))
    return types.MarkerArray(markers=markers)
