"""Shared fixtures and helpers, the DDS transport of the test session, and the tier guard."""
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import rclpy
from rclpy.context import Context

from importance_sampler_ros import transport

# Every participant of the test session, in this process and in the processes tests start, runs
# on the car's transport: the package's Fast DDS profile (transport.py), whatever the calling
# shell set. Fast DDS reads it once per process, when the first participant is created.
for _variable in (transport.PROFILES_VARIABLE, transport.BUILTIN_VARIABLE):
    os.environ.pop(_variable, None)
transport.use_graph_transport()


@pytest.fixture
def context(monkeypatch, request):
    """An rclpy context on the test module's own DDS domain (its module constant DOMAIN_ID), so
    modules that start nodes never see each other's traffic."""
    monkeypatch.setenv('ROS_DOMAIN_ID', request.module.DOMAIN_ID)
    ctx = Context()
    rclpy.init(context=ctx)
    yield ctx
    rclpy.shutdown(context=ctx)


@pytest.fixture
def ros(monkeypatch, request):
    """rclpy initialised on the DDS domain given as the indirect parameter; yields the domain
    id."""
    domain = request.param
    monkeypatch.setenv('ROS_DOMAIN_ID', str(domain))
    rclpy.init()
    yield domain
    rclpy.shutdown()


def wait_until(condition: Callable[[], bool], what: str, timeout_s: float = 30.0, *,
               step: Callable[[], object] | None = None, process=None) -> None:
    """Until `condition()` holds; AssertionError naming `what` after `timeout_s` seconds, or as
    soon as `process` (a Popen) exits. `step` runs between checks (e.g. an executor's spin_once);
    without it the loop sleeps 0.05 s."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if process is not None and process.poll() is not None:
            raise AssertionError(f'{what}: the process exited with status {process.returncode}')
        if time.monotonic() > deadline:
            raise AssertionError(f'timed out waiting for {what} ({timeout_s} s)')
        if step is None:
            time.sleep(0.05)
        else:
            step()


def spin_until(executor, condition: Callable[[], bool], what: str,
               timeout_s: float = 30.0) -> None:
    """wait_until, spinning `executor` (or anything with spin_once) between checks."""
    wait_until(condition, what, timeout_s, step=lambda: executor.spin_once(timeout_sec=0.05))


# -- test tiers: `make test-fast` runs the tests without these markers (pytest.ini)

TIER_MARKERS = ('ros', 'slow', 'build')
_BUILD_TOOLS = {'colcon', 'cmake', 'make', 'ninja', 'pip'}


def _forbidden_command(args) -> str | None:
    """Why a command may not run in the fast tier: a Python interpreter (our nodes, the CLI, Ray
    workers) or a build tool. Other tools (ruff) may run."""
    argv = [str(args)] if isinstance(args, str | os.PathLike) else [str(a) for a in args]
    program = Path(argv[0].split()[0]).name if argv else ''
    if program.startswith('python') or argv[0] == sys.executable:
        return 'a Python process'
    if program in _BUILD_TOOLS:
        return 'a build'
    return None


_current: dict[str, pytest.Item | None] = {'item': None}


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_protocol(item, nextitem):
    _current['item'] = item  # before its fixtures (module-scoped ones too) are set up


def _refuse_unmarked(what: str) -> None:
    item = _current['item']
    if item is None or any(item.get_closest_marker(m) for m in TIER_MARKERS):
        return
    raise pytest.fail.Exception(
        f'{item.nodeid} starts {what} but carries none of the markers '
        f'{", ".join(TIER_MARKERS)} (pytest.ini): mark it, or `make test-fast` would run it')


@pytest.fixture(autouse=True, scope='session')
def _fast_tier_guard():
    """A test without a tier marker may start neither rclpy (DDS) nor a Python process nor a
    build, in the test or in any fixture it uses: if it does, it fails, naming the markers."""
    real_popen_init, real_context_init = subprocess.Popen.__init__, Context.init

    def popen_init(self, args, *rest, **kwargs):
        why = _forbidden_command(args)
        if why:
            command = args if isinstance(args, str) else ' '.join(map(str, args))
            _refuse_unmarked(f'{why} ({command})')
        real_popen_init(self, args, *rest, **kwargs)

    def context_init(self, *args, **kwargs):
        _refuse_unmarked('rclpy')
        return real_context_init(self, *args, **kwargs)

    subprocess.Popen.__init__ = popen_init
    Context.init = context_init
    yield
    subprocess.Popen.__init__, Context.init = real_popen_init, real_context_init
