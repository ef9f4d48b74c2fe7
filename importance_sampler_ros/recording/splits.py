"""The recorder's bag side: one split = one complete rosbag2 directory (a bag_io.BagWriter).

Layout: a recording is a directory `<output_dir>/<bag_name>/` holding its splits
`<bag_name>_0000/`, `<bag_name>_0001/`, ... Each split is a standard rosbag2 bag (one .mcap or
.db3 file plus metadata.yaml) that `ros2 bag info/play`, rosbags and the mcap tools open on its
own; a split is never a file of a multi-file bag, so a crash can only ever damage the one split
that was open (see repair.py for what bag-repair makes of it).

Crash safety: `BagWriter.flush` (bags/bag_io.py) puts what was written into the file, so after a
SIGKILL everything up to the last flush is on disk.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol


class BagSink(Protocol):
    """What the recorder needs of one open split (a bag_io.BagWriter, or a test double)."""

    path: Path
    bytes_written: int

    def write(self, topic: str, msgtype: str, stamp_ns: int, message: Any,
              validate: bool = True) -> None: ...

    def flush(self, sync: bool) -> None: ...

    def close(self, sync: bool) -> None: ...

    def abort(self) -> None: ...


def split_path(recording_dir: Path, index: int) -> Path:
    return recording_dir / f'{recording_dir.name}_{index:04d}'


def split_paths(recording_dir: str | Path) -> list[Path]:
    """The split directories of a recording, in order."""
    recording_dir = Path(recording_dir)
    prefix = f'{recording_dir.name}_'
    return sorted(
        p for p in recording_dir.iterdir()
        if p.is_dir() and p.name.startswith(prefix) and p.name[len(prefix):].isdigit()
    )
