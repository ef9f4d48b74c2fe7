"""The shared progress report: plain lines off a terminal, a tqdm bar on one."""
import argparse
import io

import pytest

from importance_sampler_ros.progress import (
    Progress,
    add_progress_arguments,
    format_seconds,
    progress,
    progress_mode,
)


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_plain_line_every_interval_with_total_rate_and_eta():
    stream, clock = io.StringIO(), FakeClock()
    bar = Progress(600, desc='replay', unit='frame', stream=stream, interval_s=10.0, clock=clock)
    assert bar.mode == 'plain'  # StringIO is not a terminal
    for _ in range(119):
        clock.now += 0.0625  # exact in binary
        bar.update(1)
    assert stream.getvalue() == ''  # 7.4 s: nothing yet
    clock.now += 2.5625
    bar.update(1, kept=12)
    assert stream.getvalue() == 'replay: 120/600 frames (20%), 12.0 frames/s, ETA 40 s, ' \
                                'elapsed 10 s, kept 12\n'
    bar.close()
    bar.close()
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2 and lines[1].endswith('(done)')


def test_plain_without_total_counts_and_rates():
    stream, clock = io.StringIO(), FakeClock()
    bar = Progress(None, desc='synth', unit='frame', stream=stream, clock=clock)
    clock.now += 20.0
    bar.update(50)
    assert stream.getvalue() == 'synth: 50 frames, 2.5 frames/s, elapsed 20 s\n'


def test_iterable_wrapper_takes_len_as_total_and_closes_on_break():
    stream = io.StringIO()
    seen = []
    for item in progress(list(range(10)), desc='x', unit='step', stream=stream, mode='plain'):
        seen.append(item)
        if item == 4:
            break
    assert seen == [0, 1, 2, 3, 4]
    # the generator is finalised when the loop drops it
    assert stream.getvalue().startswith('x: 4/10 steps (40%)')
    assert stream.getvalue().rstrip().endswith('(done)')


def test_terminal_gets_a_tqdm_bar_with_total_and_percentage():
    stream = Terminal()
    assert list(progress(range(5), desc='train', unit='step', stream=stream)) == list(range(5))
    text = stream.getvalue()
    assert 'train' in text and '5/5' in text and '100%' in text


def test_off_writes_nothing():
    stream = Terminal()
    with Progress(3, mode='off', stream=stream) as bar:
        bar.update(3)
    assert stream.getvalue() == ''


def test_bad_mode_refused():
    with pytest.raises(ValueError, match='auto, bar, plain or off'):
        Progress(mode='fancy')


@pytest.mark.parametrize('seconds,text', [(0.2, '0 s'), (59.4, '59 s'), (185, '3 min 05 s'),
                                          (3720, '1 h 02 min')])
def test_format_seconds(seconds, text):
    assert format_seconds(seconds) == text


def test_arguments():
    parser = argparse.ArgumentParser()
    add_progress_arguments(parser)
    assert progress_mode(parser.parse_args([])) == 'auto'
    assert progress_mode(parser.parse_args(['--progress', 'plain'])) == 'plain'
    assert progress_mode(parser.parse_args(['--no-progress'])) == 'off'
