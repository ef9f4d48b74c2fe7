"""Declare a node's parameters (params.Param specs) as ROS parameters, read once, validated.

Usage in a node's __init__:

    self.params = declare_parameters(self, DETECTOR_PARAMS)   # a SimpleNamespace
    self.params.score_threshold

A value that breaks its spec raises params.ParameterError naming the parameter; `run_node`
turns that into one clear log line and exit status 2.
"""
from __future__ import annotations

import signal
import sys
from collections.abc import Callable, Iterable
from types import SimpleNamespace

import rclpy
from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor
from rclpy._rclpy_pybind11 import RCLError
from rclpy.exceptions import InvalidParameterValueException
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from rclpy.parameter import Parameter

from importance_sampler_ros.params import Param, ParameterError, validate


def _descriptor(spec: Param) -> ParameterDescriptor:
    description = f'{spec.description} ({spec.describe_range()})' if (
        spec.choices or spec.min_value is not None or spec.max_value is not None
    ) else spec.description
    descriptor = ParameterDescriptor(description=description, read_only=True)
    descriptor.type = Parameter.Type.from_parameter_value(spec.default).value
    if spec.choices:
        descriptor.additional_constraints = f'one of: {", ".join(spec.choices)}'
    if isinstance(spec.default, bool):
        return descriptor
    low = spec.min_value
    high = spec.max_value
    if isinstance(spec.default, int) and (low is not None or high is not None):
        descriptor.integer_range = [IntegerRange(
            from_value=int(low if low is not None else -(2**63)),
            to_value=int(high if high is not None else 2**63 - 1), step=0)]
    elif isinstance(spec.default, float) and (low is not None or high is not None):
        descriptor.floating_point_range = [FloatingPointRange(
            from_value=float(low if low is not None else -sys.float_info.max),
            to_value=float(high if high is not None else sys.float_info.max), step=0.0)]
    return descriptor


def declare_parameters(node: Node, specs: Iterable[Param]) -> SimpleNamespace:
    """Declare every spec on `node`, then read and validate the values once."""
    values = {}
    for spec in specs:
        try:
            node.declare_parameter(spec.name, spec.default, _descriptor(spec))
        except InvalidParameterValueException as error:
            raise ParameterError(f'parameter {spec.name!r}: {error}') from None
        values[spec.name] = validate(spec, node.get_parameter(spec.name).value)
    return SimpleNamespace(**values)


def run_node(make_node: Callable[[], Node], args: list[str] | None = None) -> int:
    """rclpy init, build the node, spin until shutdown; bad parameters end it with status 2.

    rclpy's SIGINT handler shuts the context down and then calls the Python-level handler, whose
    default raises KeyboardInterrupt wherever the node happens to be (inside a bag write, say).
    Set before rclpy.init, a no-op handler leaves the shutdown to rclpy: spin returns and the
    node's close() runs from a consistent state.
    """
    signal.signal(signal.SIGINT, lambda signum, frame: None)
    rclpy.init(args=args)
    node = None
    try:
        node = make_node()
        rclpy.spin(node)
    except ParameterError as error:
        print(f'[ERROR] invalid parameter: {error}', file=sys.stderr)
        return 2
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
