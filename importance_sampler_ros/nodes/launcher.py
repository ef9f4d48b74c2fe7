"""`importance-sampler up`: the nodes as separate processes, a stand-in for `ros2 launch`.

Starts detector_node, tracker_node and recorder_node (and viz_node with --visualize) as
`python -m importance_sampler_ros.nodes.<node> --ros-args --params-file <yaml>`, with the command
line options written to a second parameter file that overrides the first (a file rather than
`-p name:=value`, so that values keep their types: an output directory named `yes` stays a
string). It is the same YAML the launch file (launch/importance_sampler.launch.py) passes.

Before any node starts, the parameter file and the options are checked exactly as the nodes
check them (registry.load): a value that does not fit is one line naming the node and the
parameter, and nothing is started.

Signals: SIGINT and SIGTERM are forwarded to every node (the nodes run in their own sessions, so
a Ctrl-C in the terminal reaches them once, through here); nodes still running after
--shutdown-timeout are killed. A node ignores SIGINT until it has set up its own handling
(parameters.run_node), so one stopped while still importing ends quietly (SIGTERM, half-way
through the timeout) instead of with a KeyboardInterrupt traceback.

Exit status: 0 after a requested shutdown that every node survived cleanly; 1 when a node died on
its own (the others are then stopped) or failed to stop cleanly; 2 for bad options or parameters
(nothing started).

Large images: Fast DDS's default transports lose most 1242x375 frames at 30 Hz, so the nodes run
with the package's Fast DDS profile (config/fastdds_large_frames.xml, importance_sampler_ros/
transport.py) unless the environment chooses a transport itself. The camera driver needs the same
profile for its frames to arrive whole; viewers on Fast DDS's defaults (rviz2) match the nodes.
"""
from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from importance_sampler_ros import registry, transport
from importance_sampler_ros.params import ParameterError
from importance_sampler_ros.registry import NODE_NAMES, VIZ_NODE, default_params_file

PACKAGE = 'importance_sampler_ros'
EXIT_NODE_FAILED = 1
EXIT_BAD_OPTIONS = 2

# launcher option -> the (node, parameter) pairs it sets: the launch file's table too.
OPTION_PARAMETERS = registry.OVERRIDES
__all__ = ['NODE_NAMES', 'OPTION_PARAMETERS', 'VIZ_NODE', 'default_params_file']


def node_environment(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for the nodes: `base` (default: this process's) on the graph's transport
    (transport.py) unless it chooses one itself."""
    env = transport.graph_environment(base)
    env.setdefault('PYTHONUNBUFFERED', '1')
    return env


def parameter_overrides(options: Mapping[str, Any], nodes: Sequence[str]) -> dict[str, dict]:
    """node -> {parameter: value} for the options that are set (not None), for `nodes` only."""
    return registry.overrides_from_args(argparse.Namespace(**options), OPTION_PARAMETERS, nodes)


def write_overrides_file(overrides: Mapping[str, Mapping[str, Any]], directory: Path) -> Path:
    """A ROS 2 parameter file with the overrides: {node: {ros__parameters: {...}}}."""
    path = directory / 'overrides.yaml'
    document = {node: {'ros__parameters': dict(values)} for node, values in overrides.items()}
    path.write_text(yaml.safe_dump(document, default_flow_style=False))
    return path


def node_command(
    node: str,
    params_file: Path,
    overrides_file: Path | None = None,
    log_level: str | None = None,
    python: str = sys.executable,
) -> list[str]:
    """The command line that starts one node with the parameter file(s)."""
    command = [python, '-m', f'{PACKAGE}.nodes.{node}', '--ros-args',
               '--params-file', str(params_file)]
    if overrides_file is not None:
        command += ['--params-file', str(overrides_file)]
    if log_level is not None:
        command += ['--log-level', log_level]
    return command


@dataclass
class RunningNode:
    name: str
    process: subprocess.Popen


class Graph:
    """The node processes, started together, watched, and stopped together."""

    def __init__(self, commands: Mapping[str, list[str]], env: Mapping[str, str],
                 shutdown_timeout_s: float = 10.0) -> None:
        self.commands = dict(commands)
        self.env = dict(env)
        self.shutdown_timeout_s = shutdown_timeout_s
        self.nodes: list[RunningNode] = []
        self.stop_requested: int | None = None  # the signal that asked for the stop

    def start(self) -> None:
        for name, command in self.commands.items():
            if self.stop_requested is not None:
                break
            # Own session: a terminal's Ctrl-C reaches the node once, forwarded from here.
            process = subprocess.Popen(command, env=self.env, start_new_session=True,
                                       preexec_fn=_ignore_interrupt_until_ready)
            self.nodes.append(RunningNode(name, process))
            _log(f'started {name} (pid {process.pid}): {" ".join(command)}')

    def request_stop(self, signum: int) -> None:
        if self.stop_requested is None:
            self.stop_requested = signum
        self._signal_all(signum)

    def _signal_all(self, signum: int) -> None:
        for node in self.nodes:
            node.process.send_signal(signum)  # a no-op for a process that has exited

    def wait(self, poll_s: float = 0.2) -> int:
        """Block until a stop is requested or a node exits; stop the rest; the exit status."""
        died: RunningNode | None = None
        while self.stop_requested is None and died is None:
            for node in self.nodes:
                if node.process.poll() is not None:
                    died = node
                    break
            else:
                time.sleep(poll_s)
        if died is not None and self.stop_requested is None:
            _log(f'{died.name} exited with status {died.process.returncode}; stopping the others')
            self._signal_all(signal.SIGINT)
        status = self._reap()
        if died is not None and self.stop_requested is None:
            return EXIT_NODE_FAILED
        return status

    def _reap(self) -> int:
        """Wait for the nodes; half-way through the timeout the ones still running also get
        SIGTERM (a node can miss a SIGINT that arrives while rclpy is still starting up), and
        at the end the rest are killed."""
        halfway = time.monotonic() + self.shutdown_timeout_s / 2
        for node in self.nodes:
            try:
                node.process.wait(timeout=max(0.0, halfway - time.monotonic()))
            except subprocess.TimeoutExpired:
                _log(f'{node.name} still running {self.shutdown_timeout_s / 2:g} s after the '
                     'stop signal; sending SIGTERM')
                node.process.terminate()
        deadline = time.monotonic() + self.shutdown_timeout_s / 2
        status = 0
        for node in self.nodes:
            try:
                node.process.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _log(f'{node.name} did not stop within {self.shutdown_timeout_s:g} s; killing it')
                node.process.kill()
                node.process.wait()
                status = EXIT_NODE_FAILED
                continue
            code = node.process.returncode
            # A node that exits on the forwarded signal without handling it is still a clean stop.
            if code not in (0, -signal.SIGINT, -signal.SIGTERM):
                _log(f'{node.name} exited with status {code}')
                status = EXIT_NODE_FAILED
        return status


def _ignore_interrupt_until_ready() -> None:
    """In the child before exec: SIGINT ignored. Python then installs no KeyboardInterrupt
    handler, so a SIGINT while the node is still importing (the launcher stopping the graph
    because a sibling failed) is no traceback; run_node sets the node's own SIGINT handling before
    rclpy starts, which also covers a launcher that was itself started with SIGINT ignored (CI,
    nohup). A node stopped before that point gets SIGTERM from `Graph._reap`."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _log(message: str) -> None:
    print(f'[importance-sampler up] {message}', file=sys.stderr, flush=True)


def configure_up_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('--params', type=Path, default=None,
                        help='ROS 2 parameter YAML for all nodes '
                             '(default: config/importance_sampler.yaml)')
    registry.add_override_arguments(parser, OPTION_PARAMETERS)
    parser.add_argument('--visualize', action='store_true',
                        help='also start viz_node (debug image, markers, plottable topics)')
    parser.add_argument('--skip', action='append', default=[], choices=NODE_NAMES,
                        metavar='NODE', help='do not start NODE (e.g. detector_node when '
                                             'detections are played from a bag); repeatable')
    parser.add_argument('--log-level', choices=('debug', 'info', 'warn', 'error', 'fatal'),
                        help="the nodes' ROS log level")
    parser.add_argument('--shutdown-timeout', type=float, default=10.0,
                        help='seconds the nodes get to stop after a signal before being killed')


def run_up(args: argparse.Namespace) -> int:
    params_file = (args.params or default_params_file()).resolve()
    if not params_file.is_file():
        _log(f'parameter file {params_file} does not exist')
        return EXIT_BAD_OPTIONS
    nodes = [name for name in NODE_NAMES if name not in args.skip]
    if args.visualize:
        nodes.append(VIZ_NODE)
    if not nodes:
        _log('no node left to start')
        return EXIT_BAD_OPTIONS
    overrides = registry.overrides_from_args(args, OPTION_PARAMETERS, nodes)
    try:
        _, unknown = registry.load(params_file, overrides, nodes)
    except ParameterError as error:
        _log(f'invalid parameter: {error}')
        return EXIT_BAD_OPTIONS
    if unknown:
        _log(f'{params_file.name} sets parameters no node declares (ignored): '
             f'{", ".join(unknown)}')
    env = node_environment()
    _log(f'{transport.describe(env)}; parameters from {params_file}'
         + (f'; overrides {overrides}' if overrides else ''))
    with tempfile.TemporaryDirectory(prefix='isr-up-') as tmp:
        overrides_file = write_overrides_file(overrides, Path(tmp)) if overrides else None
        commands = {name: node_command(name, params_file, overrides_file, args.log_level)
                    for name in nodes}
        graph = Graph(commands, env, args.shutdown_timeout)
        previous = {signum: signal.signal(signum, lambda s, _frame: graph.request_stop(s))
                    for signum in (signal.SIGINT, signal.SIGTERM)}
        try:
            try:
                graph.start()
            except OSError as error:
                _log(f'cannot start a node: {error}')
                graph.request_stop(signal.SIGINT)
            status = graph.wait()
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
    _log(f'stopped (status {status})')
    return status
