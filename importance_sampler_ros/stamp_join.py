"""The one stamp join: the messages of one frame (image, detections, ...) paired by header stamp.

recorder_node (image + tracked detections), viz_node (image + tracked detections + relabels) and
replay's frame source (image + recorded detections + ground truth) all join with `StampJoin`.
Time is an arrival clock in seconds: monotonic time in the nodes, the bag's log time offline, so a
replayed bag meets the window the node had when it was recorded.

Rules:
- A frame *completes* once all its `required` parts and all its `awaited` parts are in; it leaves
  at once. Frames with their required parts never overtake each other (by first arrival): older
  ones leave first, without the awaited parts they still lack. With `ordered`, a frame also
  waits for every older frame to leave or be given up (strict arrival order).
- A frame with all required parts but an awaited part missing leaves `awaited_s` after its
  required parts were in, without that part.
- A frame still missing a required part `timeout_s` after its first part arrived is given up:
  every part it had is counted in `unmatched[part]`. `timeout_s=None`: no time limit.
- At most `max_pending` frames wait; beyond that the oldest leaves (or is given up) early.
- A second message for the same part and stamp replaces the first (the first counts unmatched).
"""
from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

MAX_PENDING = 1000


@dataclass
class JoinedFrame:
    stamp_ns: int
    parts: dict[str, Any] = field(default_factory=dict)
    first_s: float = 0.0  # arrival of its first part
    required_s: float | None = None  # arrival of its last required part

    def get(self, part: str) -> Any:
        return self.parts.get(part)


class StampJoin:
    """See the module docstring."""

    def __init__(self, required: Iterable[str], awaited: Iterable[str] = (), *,
                 timeout_s: float | None, awaited_s: float = 0.0,
                 max_pending: int = MAX_PENDING, ordered: bool = False) -> None:
        self.required = tuple(required)
        self.awaited = tuple(awaited)
        if not self.required or set(self.required) & set(self.awaited):
            raise ValueError('a join needs required parts, none of them also awaited')
        self.timeout_s = timeout_s
        self.awaited_s = awaited_s
        self.max_pending = max(1, int(max_pending))
        self.ordered = ordered
        self.pending: OrderedDict[int, JoinedFrame] = OrderedDict()
        self.unmatched: dict[str, int] = dict.fromkeys((*self.required, *self.awaited), 0)
        self.matched = 0

    def __len__(self) -> int:
        return len(self.pending)

    def add(self, part: str, stamp_ns: int, value: Any, now_s: float) -> list[JoinedFrame]:
        """One message; returns the frames that leave because of it (oldest first)."""
        if part not in self.unmatched:
            raise ValueError(f'unknown part {part!r} (parts: {", ".join(self.unmatched)})')
        frame = self.pending.get(stamp_ns)
        if frame is None:
            frame = self.pending[stamp_ns] = JoinedFrame(stamp_ns, first_s=now_s)
        elif part in frame.parts:
            self.unmatched[part] += 1
        frame.parts[part] = value
        if frame.required_s is None and self._has_required(frame):
            frame.required_s = now_s
        out = []
        while len(self.pending) > self.max_pending:
            out += self._leave(next(iter(self.pending)))
        if self.ordered:
            return out + self.expire(now_s)
        if stamp_ns in self.pending and self._complete(frame):
            out += self._leave_after_older(stamp_ns)
        return out

    def expire(self, now_s: float) -> list[JoinedFrame]:
        """The frames that may leave at `now_s` (complete, or waited long enough). Unordered
        joins time out only here (the nodes call it from a timer); ordered ones on every add."""
        out = []
        for stamp_ns, frame in list(self.pending.items()):
            if stamp_ns not in self.pending:  # left before an earlier one
                continue
            if self._complete(frame) or self._waited_out(frame, now_s):
                out += self._leave(stamp_ns) if self.ordered else self._leave_after_older(stamp_ns)
            elif self.ordered:
                break
        return out

    def release_older(self, stamp_ns: int) -> list[JoinedFrame]:
        """Every frame stamped before `stamp_ns` that has its required parts leaves now, without
        the awaited parts it lacks (in arrival order)."""
        out = []
        for older, frame in list(self.pending.items()):
            if older < stamp_ns and frame.required_s is not None:
                out += self._leave(older)
        return out

    def drain(self) -> list[JoinedFrame]:
        """End of input: every frame with its required parts leaves, the others are given up."""
        out = []
        while self.pending:
            out += self._leave(next(iter(self.pending)))
        return out

    def _has_required(self, frame: JoinedFrame) -> bool:
        return all(p in frame.parts for p in self.required)

    def _complete(self, frame: JoinedFrame) -> bool:
        return frame.required_s is not None and all(p in frame.parts for p in self.awaited)

    def _waited_out(self, frame: JoinedFrame, now_s: float) -> bool:
        if frame.required_s is not None:
            return now_s - frame.required_s >= self.awaited_s
        return self.timeout_s is not None and now_s - frame.first_s >= self.timeout_s

    def _leave_after_older(self, stamp_ns: int) -> list[JoinedFrame]:
        """The frame, after every older frame that has its required parts (those go without
        the awaited parts they lack): matched frames never overtake each other."""
        out = []
        for older in list(self.pending):
            if older == stamp_ns:
                break
            if self.pending[older].required_s is not None:
                out += self._leave(older)
        return out + self._leave(stamp_ns)

    def _leave(self, stamp_ns: int) -> list[JoinedFrame]:
        frame = self.pending.pop(stamp_ns)
        if frame.required_s is None:
            for part in frame.parts:
                self.unmatched[part] += 1
            return []
        self.matched += 1
        return [frame]
