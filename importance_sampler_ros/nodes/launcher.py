"""`importance-sampler up`: the nodes as separate processes, a stand-in for `ros2 launch`.

Starts detector_node, tracker_node and recorder_node (and viz_node with --visualize) as
`python -m importance_sampler_ros.nodes.<node> --ros-args --params-file <yaml>`, with the command
line options written to a second parameter file that overrides the first (a file rather than
`-p name:=value`, so that values keep their types: an output directory named `yes` stays a
string). It is the same YAML the launch file (launch/importance_sampler.launch.py) passes.

Signals: SIGINT and SIGTERM are forwarded to every node (the nodes run in their own sessions, so
a Ctrl-C in the terminal reaches them once, through here); nodes still running after
--shutdown-timeout are killed. Exit status: 0 after a requested shutdown that every node
survived cleanly, 1 when a node died on its own (the others are then stopped) or failed to stop
cleanly, 2 for bad options.

Large images: Fast DDS's default transports lose most 1242x375 frames at 30 Hz, so the nodes get
FASTDDS_BUILTIN_TRANSPORTS=LARGE_DATA unless the environment already sets it. Every process that
talks to the nodes (camera driver, `play`, rviz2) needs the same setting: a process with the
default transports never matched LARGE_DATA nodes here.
"""
from __future__ import annotations

import argparse
import os
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

from importance_sampler_ros.share import share_path

PACKAGE = 'importance_sampler_ros'
NODE_NAMES = ('detector_node', 'tracker_node', 'recorder_node')
VIZ_NODE = 'viz_node'
TRANSPORT_VARIABLE = 'FASTDDS_BUILTIN_TRANSPORTS'
TRANSPORT_DEFAULT = 'LARGE_DATA'

# launcher option -> the (node, parameter) pairs it sets; test_launch_static.py checks that every
# pair is a parameter the node declares, and the launch file sets the same ones.
OPTION_PARAMETERS: dict[str, tuple[tuple[str, str], ...]] = {
    'image_topic': (('detector_node', 'image_topic'), ('recorder_node', 'image_topic'),
                    ('viz_node', 'image_topic')),
    'output_dir': (('recorder_node', 'output_dir'),),
    'checkpoint': (('detector_node', 'checkpoint'),),
    'device': (('detector_node', 'device'),),
    'keep_ratio': (('recorder_node', 'keep_ratio'),),
}


def default_params_file() -> Path:
    """config/importance_sampler.yaml of the source tree, or of share/ on a ROS install."""
    return share_path('config', 'importance_sampler.yaml')


def node_environment(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for the nodes: `base` plus the large-data transport unless it is set."""
    env = dict(os.environ if base is None else base)
    env.setdefault(TRANSPORT_VARIABLE, TRANSPORT_DEFAULT)
    env.setdefault('PYTHONUNBUFFERED', '1')
    return env


def parameter_overrides(options: Mapping[str, Any], nodes: Sequence[str]) -> dict[str, dict]:
    """node -> {parameter: value} for the options that are set (not None), for `nodes` only."""
    overrides: dict[str, dict] = {}
    for option, targets in OPTION_PARAMETERS.items():
        value = options.get(option)
        if value is None:
            continue
        for node, parameter in targets:
            if node in nodes:
                overrides.setdefault(node, {})[parameter] = value
    return overrides


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
                                       preexec_fn=_default_interrupt)
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
            return 1
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
                status = 1
                continue
            code = node.process.returncode
            # A node that exits on the forwarded signal without handling it is still a clean stop.
            if code not in (0, -signal.SIGINT, -signal.SIGTERM):
                _log(f'{node.name} exited with status {code}')
                status = 1
        return status


def _default_interrupt() -> None:
    """In the child before exec: SIGINT back to its default. A launcher started in the
    background by a non-interactive shell (CI, nohup, systemd units) inherits SIGINT ignored, and
    a node would inherit that and never stop on the forwarded signal."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _log(message: str) -> None:
    print(f'[importance-sampler up] {message}', file=sys.stderr, flush=True)


def configure_up_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('--params', type=Path, default=None,
                        help='ROS 2 parameter YAML for all nodes '
                             '(default: config/importance_sampler.yaml)')
    parser.add_argument('--image-topic', help='camera image topic (sensor_msgs/Image)')
    parser.add_argument('--output-dir', help="recorder's output directory")
    parser.add_argument('--checkpoint', help='detector checkpoint (.pt)')
    parser.add_argument('--device', help='detector device: cpu, cuda or cuda:N')
    parser.add_argument('--keep-ratio', type=float, help='target keep ratio rho in (0, 1]')
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
        return 2
    try:
        yaml.safe_load(params_file.read_text())
    except yaml.YAMLError as error:
        _log(f'parameter file {params_file} is not valid YAML: {error}')
        return 2
    nodes = [name for name in NODE_NAMES if name not in args.skip]
    if args.visualize:
        nodes.append(VIZ_NODE)
    if not nodes:
        _log('no node left to start')
        return 2
    options = {'image_topic': args.image_topic, 'output_dir': args.output_dir,
               'checkpoint': args.checkpoint, 'device': args.device,
               'keep_ratio': args.keep_ratio}
    overrides = parameter_overrides(options, nodes)
    env = node_environment()
    _log(f'{TRANSPORT_VARIABLE}={env[TRANSPORT_VARIABLE]}; parameters from {params_file}'
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
