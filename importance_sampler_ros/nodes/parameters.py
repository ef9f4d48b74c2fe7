"""Declare a node's parameters (registry.NodeParameters) as ROS parameters, read once, checked.

Usage in a node's __init__:

    config = declare_parameters(self, registry.NODES['detector_node'])   # a registry.NodeConfig
    config.of(DetectorConfig).score_threshold

Each parameter is first declared dynamically typed, so that a value of another type reaches the
one validation (params.check, through the settings classes) instead of rclpy's type check: a
lossless one (`-p keep_ratio:=1`) is converted, any other is refused with one line naming the
parameter. Then it is declared again, read-only, with the converted value and its type and range
in the descriptor (`ros2 param describe`). A refused value raises params.ParameterError;
`run_node` turns that into one log line and exit status 2.

Layered parameter files (`--params-file a.yaml --params-file b.yaml`, as `up` and `ros2 launch`
pass them) are also checked here, merged in order: rcl merges them itself, but when a later file
gives a parameter a value of another type (`keep_ratio: abc` over the YAML's 0.1) it keeps the
earlier value without a word, so the node would never see the bad one.
"""
from __future__ import annotations

import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import rclpy
from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor
from rclpy._rclpy_pybind11 import RCLError
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter

from importance_sampler_ros import transport
from importance_sampler_ros.params import Param, ParameterError, load_node_parameters
from importance_sampler_ros.registry import NODES, NodeConfig, NodeParameters

EXIT_BAD_PARAMETER = 2


def _descriptor(spec: Param) -> ParameterDescriptor:
    limits = spec.describe_range()
    descriptor = ParameterDescriptor(
        description=f'{spec.description} ({limits})' if limits else spec.description,
        read_only=True)
    descriptor.type = Parameter.Type.from_parameter_value(spec.ros_default()).value
    if spec.choices or spec.pattern:
        descriptor.additional_constraints = limits
    if spec.type is bool or spec.type is str or spec.type is tuple:
        return descriptor
    low, high = spec.min_value, spec.max_value
    if spec.type is int and (low is not None or high is not None):
        descriptor.integer_range = [IntegerRange(
            from_value=int(low if low is not None else -(2**63)),
            to_value=int(high if high is not None else 2**63 - 1), step=0)]
    elif spec.type is float and (low is not None or high is not None):
        descriptor.floating_point_range = [FloatingPointRange(
            from_value=float(low if low is not None else -sys.float_info.max),
            to_value=float(high if high is not None else sys.float_info.max), step=0.0)]
    return descriptor


def declare_parameters(node: Node, parameters: NodeParameters) -> NodeConfig:
    """Declare every parameter of the node, read the values given, check them once."""
    given = {}
    for spec in parameters.specs():
        node.declare_parameter(spec.name, spec.ros_default(),
                               ParameterDescriptor(dynamic_typing=True))
        given[spec.name] = node.get_parameter(spec.name).value
    config = parameters.build(given)  # ParameterError: one line naming the parameter
    for spec in parameters.specs():
        value = config[spec.name]
        node.undeclare_parameter(spec.name)
        node.declare_parameter(spec.name, list(value) if isinstance(value, tuple) else value,
                               _descriptor(spec), ignore_override=True)
    return config


def params_files(args: Sequence[str]) -> list[str]:
    """The `--params-file` arguments among the ROS arguments of a command line, in order."""
    files: list[str] = []
    inside = False
    tokens = iter(args)
    for token in tokens:
        if token == '--ros-args':
            inside = True
        elif token == '--':
            inside = False
        elif inside and token == '--params-file':
            files.append(next(tokens, ''))
    return files


def check_layered_params_files(args: Sequence[str], node_name: str) -> None:
    """ParameterError (one line) when the parameter files of `args`, merged in order for
    `node_name`, give a value the node would refuse (module docstring). A single file reaches
    the node as written and is checked there; a missing file is left to rcl to report."""
    files = [path for path in params_files(args) if Path(path).is_file()]
    if len(files) < 2:
        return
    values: dict[str, Any] = {}
    for path in files:
        values.update(load_node_parameters(path, node_name))
    entry = NODES[node_name]
    names = entry.names()
    entry.build({key: value for key, value in values.items() if key in names})


def run_node(make_node: Callable[[], Node], node_name: str,
             args: list[str] | None = None) -> int:
    """rclpy init, build the node, spin until shutdown; bad parameters end it with status 2.

    rclpy's SIGINT handler shuts the context down and then calls the Python-level handler, whose
    default raises KeyboardInterrupt wherever the node happens to be (inside a bag write, say).
    Set before rclpy.init, a no-op handler leaves the shutdown to rclpy: spin returns and the
    node's close() runs from a consistent state.

    The node runs on the graph's Fast DDS transport (transport.py) unless its environment chooses
    one, however it was started (`up`, `ros2 launch`, `ros2 run`).
    """
    signal.signal(signal.SIGINT, lambda signum, frame: None)
    transport.use_graph_transport()
    rclpy.init(args=args)
    node = None
    try:
        check_layered_params_files(sys.argv if args is None else args, node_name)
        # An executor of its own, built before the node announces itself: rclpy.spin takes
        # the global one, which a SIGINT arriving before spin starts has already cleared (spin
        # then fails on None), and an executor built after the shutdown dies noisily.
        executor = SingleThreadedExecutor()
        node = make_node()
        executor.add_node(node)
        executor.spin()
    except ParameterError as error:
        print(f'[ERROR] invalid parameter: {error}', file=sys.stderr)
        return EXIT_BAD_PARAMETER
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except RCLError:
        # A signal can shut the context down while spin is setting up its next wait; that is
        # a shutdown too. An RCLError with the context still valid is a real failure.
        if rclpy.ok():
            raise
    finally:
        if node is not None:
            close = getattr(node, 'close', None)
            if close is not None:
                close()
            node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()
    return 0
