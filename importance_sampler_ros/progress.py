"""Progress of long commands: a tqdm bar on a terminal, a plain line every ~10 s otherwise.

On a terminal the bar shows count / total, percentage, rate and ETA (tqdm). When stderr is not a
terminal (make in CI, `| tee`, a log file) a bar would be one unreadable line of carriage
returns, and no bar at all leaves the command silent for minutes; instead one line such as

    replay: 120/600 frames (20%), 11.8 frames/s, ETA 41 s

is written every `interval_s` seconds of wall time, and one closing line when the work ends.

Use it as an iterable wrapper::

    for frame in progress(frames, total=n, desc='replay', unit='frame'):
        ...

or as a context manager where the loop is not a plain iteration::

    with Progress(total=n, desc='train', unit='step') as bar:
        bar.update(1, loss=0.31)
"""
from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator
from typing import Any, TextIO, TypeVar

from tqdm import tqdm

T = TypeVar('T')
PLAIN_INTERVAL_S = 10.0
MODES = ('auto', 'bar', 'plain', 'off')


def format_seconds(seconds: float) -> str:
    """`42 s`, `3 min 05 s`, `1 h 02 min`: a duration for humans (seconds, >= 0)."""
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f'{seconds:.0f} s'
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f'{minutes} min {secs:02d} s'
    hours, minutes = divmod(minutes, 60)
    return f'{hours} h {minutes:02d} min'


class Progress:
    """Progress of `total` units of work (None: unknown) reported to `stream` (stderr).

    `mode`: 'auto' (a bar on a terminal, plain lines otherwise), 'bar', 'plain' or 'off'.
    `clock` is for tests (seconds, monotonic).
    """

    def __init__(self, total: int | None = None, *, desc: str = '', unit: str = 'it',
                 mode: str = 'auto', stream: TextIO | None = None,
                 interval_s: float = PLAIN_INTERVAL_S, clock: Any = time.monotonic) -> None:
        if mode not in MODES:
            raise ValueError(f'progress mode must be auto, bar, plain or off, not {mode!r}')
        self.stream = stream if stream is not None else sys.stderr
        if mode == 'auto':
            isatty = getattr(self.stream, 'isatty', None)
            mode = 'bar' if isatty is not None and isatty() else 'plain'
        self.mode = mode
        self.total = total
        self.desc = desc
        self.unit = unit
        self.count = 0
        self.postfix: dict[str, Any] = {}
        self._interval_s = interval_s
        self._clock = clock
        self._started = clock()
        self._last_line = self._started
        self._closed = False
        self._bar = None
        if mode == 'bar':
            self._bar = tqdm(total=total, desc=desc, unit=unit, file=self.stream,
                             dynamic_ncols=True, smoothing=0.1)

    def update(self, n: int = 1, **postfix: Any) -> None:
        """Count `n` more units done; `postfix` values (e.g. kept=12) join the report."""
        self.count += n
        if postfix:
            self.postfix.update(postfix)
        if self._bar is not None:
            if postfix:
                self._bar.set_postfix(self.postfix, refresh=False)
            self._bar.update(n)
        elif self.mode == 'plain':
            now = self._clock()
            if now - self._last_line >= self._interval_s:
                self._last_line = now
                self._write(self.line(now))

    def write(self, text: str, file: TextIO | None = None) -> None:
        """Print a line of output (to `file`, stdout by default) without breaking the bar."""
        file = file if file is not None else sys.stdout
        if self._bar is not None:
            tqdm.write(text, file=file)
        else:
            print(text, file=file, flush=True)

    def line(self, now: float | None = None) -> str:
        """The plain progress line at time `now` (default: the clock's now)."""
        elapsed = (self._clock() if now is None else now) - self._started
        rate = self.count / elapsed if elapsed > 0 else 0.0
        head = f'{self.desc}: ' if self.desc else ''
        units = f'{self.unit}s' if self.unit and not self.unit.endswith('s') else self.unit
        if self.total:
            text = (f'{head}{self.count}/{self.total} {units} '
                    f'({100.0 * self.count / self.total:.0f}%), {rate:.1f} {units}/s')
            if rate > 0 and self.count < self.total:
                text += f', ETA {format_seconds((self.total - self.count) / rate)}'
        else:
            text = f'{head}{self.count} {units}, {rate:.1f} {units}/s'
        text += f', elapsed {format_seconds(elapsed)}'
        if self.postfix:
            text += ', ' + ', '.join(f'{k} {v}' for k, v in self.postfix.items())
        return text

    def close(self) -> None:
        """End the report: the bar's last state, or one closing plain line. Idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._bar is not None:
            self._bar.close()
        elif self.mode == 'plain':
            self._write(self.line() + ' (done)')

    def _write(self, text: str) -> None:
        print(text, file=self.stream, flush=True)

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def progress(iterable: Iterable[T], total: int | None = None, *, desc: str = '',
             unit: str = 'it', mode: str = 'auto', stream: TextIO | None = None,
             interval_s: float = PLAIN_INTERVAL_S) -> Iterator[T]:
    """Yield the items of `iterable` while reporting progress (see the module docstring).

    `total` defaults to `len(iterable)` when it has one. The closing line is written when the
    iteration ends, also when the loop breaks or raises.
    """
    if total is None and hasattr(iterable, '__len__'):
        total = len(iterable)  # type: ignore[arg-type]
    bar = Progress(total, desc=desc, unit=unit, mode=mode, stream=stream, interval_s=interval_s)
    try:
        for item in iterable:
            yield item
            bar.update(1)
    finally:
        bar.close()


def add_progress_arguments(parser: Any) -> None:
    """The `--progress MODE` and `--no-progress` options every long command shares."""
    parser.add_argument(
        '--progress', choices=MODES, default='auto',
        help='progress on stderr: auto is a bar with total, rate and ETA on a terminal and a '
             'plain line every ~10 s otherwise')
    parser.add_argument('--no-progress', action='store_true', help='same as --progress off')


def progress_mode(args: Any) -> str:
    """The mode the options of `add_progress_arguments` ask for."""
    return 'off' if getattr(args, 'no_progress', False) else getattr(args, 'progress', 'auto')
