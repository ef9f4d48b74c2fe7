"""The parameter registry: which settings classes make up each node's parameters.

Every parameter is declared once, as a field of a settings class (params.py): the core ones
beside the code they configure (detection/config.py, tracking/config.py, recording/config.py,
sampling/config.py, viz/config.py), the ROS-only ones (topics, QoS, log periods) below. From the
table `NODES` come the ROS declarations (nodes/parameters.py), the configs of the nodes and of
`replay` (`NodeParameters.build`), config/importance_sampler.yaml with its comments
(`render_yaml`; `python -m importance_sampler_ros.registry --check` compares), and the override
table of the launch file and `importance-sampler up` (`OVERRIDES`).

Adding a parameter: a field in its settings class, and the code that uses it; then regenerate
the YAML (`python -m importance_sampler_ros.registry > config/importance_sampler.yaml`).

No rclpy, numpy or torch here: the launch file imports this module.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import yaml

from importance_sampler_ros import topics
from importance_sampler_ros.detection.config import DetectorConfig
from importance_sampler_ros.params import (
    Param,
    ParameterError,
    Settings,
    build,
    check,
    flat_values,
    load_node_parameters,
    nested_classes,
    own_specs,
    param,
    specs,
)
from importance_sampler_ros.recording.config import RecorderConfig
from importance_sampler_ros.share import share_path
from importance_sampler_ros.tracking.config import RelabelConfig, TrackerConfig
from importance_sampler_ros.viz.config import RELIABILITIES, VizConfig

S = TypeVar('S')
_WARNING_PERIOD = ('At most one warning per this many seconds about skipped input',
                   {'min_value': 0.0, 'max_value': 3600.0})


@dataclass(frozen=True)
class DetectorNodeSettings(Settings):
    """detector_node's topics and logging."""

    image_topic: str = param(topics.IMAGE, 'sensor_msgs/Image topic to detect on')
    detections_topic: str = param(topics.DETECTIONS, 'Where the DetectionArray of every '
                                  'processed image is published')
    warning_period_s: float = param(5.0, _WARNING_PERIOD[0], **_WARNING_PERIOD[1])


@dataclass(frozen=True)
class TrackerNodeSettings(Settings):
    """tracker_node's topics, time-jump rule and logging."""

    detections_topic: str = param(topics.DETECTIONS, 'DetectionArray input')
    tracks_topic: str = param(topics.TRACKS, 'TrackArray output')
    tracked_detections_topic: str = param(topics.TRACKED_DETECTIONS, 'DetectionArray output '
                                          'with track ids filled in')
    relabels_topic: str = param(topics.RELABELS, 'RelabelArray output, every frame')
    reset_on_jump_back_s: float = param(
        5.0, 'A frame stamped this many seconds or more before the previous one resets the '
        'tracker (a restarted bag or simulation) instead of being skipped; 0 = never reset',
        min_value=0.0, max_value=1e9)
    warning_period_s: float = param(5.0, _WARNING_PERIOD[0], **_WARNING_PERIOD[1])


@dataclass(frozen=True)
class RecorderNodeSettings(Settings):
    """recorder_node's subscriptions, join and statistics (what it records: RecorderConfig)."""

    image_reliability: str = param('best_effort', 'Reliability of the image subscription '
                                   '(sensor data QoS otherwise: volatile)', choices=RELIABILITIES)
    image_queue_depth: int = param(10, 'Queue depth of the image subscription: images the node '
                                   'can fall behind by before the oldest is dropped',
                                   min_value=1, max_value=1000)
    detections_topic: str = param(topics.TRACKED_DETECTIONS, 'DetectionArray topic with track '
                                  'ids filled (from the tracker)')
    relabels_topic: str = param(topics.RELABELS, 'RelabelArray topic (from the tracker)')
    decisions_topic: str = param(topics.DECISIONS, 'Where a SampleDecision is published for '
                                 'every frame once its decision is final')
    stats_period_s: float = param(30.0, 'Seconds between log lines with the recording '
                                  'statistics; 0 = only at shutdown', min_value=0.0)
    join_timeout_s: float = param(2.0, 'Seconds an image waits for the detection array with the '
                                  'same header stamp (and the other way round) before it is '
                                  'counted unmatched and dropped', min_value=0.0, max_value=60.0)
    write_error_exit_status: int = param(0, 'Exit status of recorder_node after a write error '
                                         'stopped the recording (it keeps running and '
                                         'publishing decisions until shut down); 0 = a write '
                                         'error does not make the exit fail', min_value=0,
                                         max_value=255)


class NodeConfig:
    """A node's parameters, converted and checked: one instance per settings class."""

    def __init__(self, parts: Mapping[type, Any]) -> None:
        self.parts = dict(parts)
        self.values: dict[str, Any] = {}
        for instance in self.parts.values():
            self.values.update(flat_values(instance))

    def of(self, cls: type[S]) -> S:
        """The instance of settings class `cls`."""
        return self.parts[cls]

    def __getitem__(self, name: str) -> Any:
        """One parameter's value by name."""
        return self.values[name]


@dataclass(frozen=True)
class NodeParameters:
    """One node's parameters: the union of its settings classes' fields (names unique)."""

    node: str
    groups: tuple[type, ...]

    def specs(self) -> tuple[Param, ...]:
        return tuple(spec for cls in self.groups for spec in specs(cls))

    def names(self) -> set[str]:
        return {spec.name for spec in self.specs()}

    def build(self, values: Mapping[str, Any]) -> NodeConfig:
        """Every settings class from {name: value} (defaults for the rest); ParameterError (one
        line, naming the node and the parameter) for a value that does not fit."""
        try:
            return NodeConfig({cls: build(cls, values) for cls in self.groups})
        except ParameterError as error:
            raise ParameterError(f'{self.node}: {error}') from None


NODES: dict[str, NodeParameters] = {
    'detector_node': NodeParameters('detector_node', (DetectorConfig, DetectorNodeSettings)),
    'tracker_node': NodeParameters('tracker_node',
                                   (TrackerConfig, RelabelConfig, TrackerNodeSettings)),
    'recorder_node': NodeParameters('recorder_node', (RecorderConfig, RecorderNodeSettings)),
    'viz_node': NodeParameters('viz_node', (VizConfig,)),
}
NODE_NAMES = ('detector_node', 'tracker_node', 'recorder_node')
VIZ_NODE = 'viz_node'
# ROS parameters every node has; a YAML section may set them.
ROS_BUILTIN_PARAMETERS = frozenset({'use_sim_time', 'start_type_description_service'})

# Launch argument (and `importance-sampler up` option) -> the (node, parameter) pairs it sets;
# the argument's type and help come from the first pair's parameter.
OVERRIDES: dict[str, tuple[tuple[str, str], ...]] = {
    'image_topic': (('detector_node', 'image_topic'), ('recorder_node', 'image_topic'),
                    ('viz_node', 'image_topic')),
    'output_dir': (('recorder_node', 'output_dir'),),
    'checkpoint': (('detector_node', 'checkpoint'),),
    'device': (('detector_node', 'device'),),
    'keep_ratio': (('recorder_node', 'keep_ratio'),),
}


# Options of `replay` and `replay-fleet` that override one parameter each (their --image-topic
# names the input bag's topic instead).
OFFLINE_OVERRIDES: dict[str, tuple[tuple[str, str], ...]] = {
    'keep_ratio': (('recorder_node', 'keep_ratio'),),
    'checkpoint': (('detector_node', 'checkpoint'),),
    'device': (('detector_node', 'device'),),
    'seed': (('recorder_node', 'seed'),),
}


def add_override_arguments(parser: argparse.ArgumentParser,
                           table: Mapping[str, tuple[tuple[str, str], ...]],
                           helps: Mapping[str, str] | None = None) -> None:
    """One `--option` per entry of an override table, typed and described by its parameter."""
    for option, targets in table.items():
        target = spec(*targets[0])
        limits = target.describe_range()
        text = (helps or {}).get(option) or (
            f'{target.description}{f" ({limits})" if limits else ""}')
        names = ', '.join(f'{node}.{name}' for node, name in targets)
        parser.add_argument(f'--{option.replace("_", "-")}', dest=option, type=target.type,
                            default=None, help=f'{text} [sets {names}]')


def overrides_from_args(args: argparse.Namespace,
                        table: Mapping[str, tuple[tuple[str, str], ...]],
                        nodes: Sequence[str] | None = None) -> dict[str, dict[str, Any]]:
    """{node: {parameter: value}} for the options of `table` that were given (not None)."""
    overrides: dict[str, dict[str, Any]] = {}
    for option, targets in table.items():
        value = getattr(args, option, None)
        if value is None:
            continue
        for node, name in targets:
            if nodes is None or node in nodes:
                overrides.setdefault(node, {})[name] = value
    return overrides


def spec(node: str, name: str) -> Param:
    """The Param of one node parameter (KeyError when the node has none of that name)."""
    for candidate in NODES[node].specs():
        if candidate.name == name:
            return candidate
    raise KeyError(f'{node} has no parameter {name!r}')


def override_spec(option: str) -> Param:
    """The parameter whose type, range and description an override option takes."""
    node, name = OVERRIDES[option][0]
    return spec(node, name)


def override_help(option: str) -> str:
    """Help text of a launch argument / `up` option: its parameter's description and range."""
    target = override_spec(option)
    limits = target.describe_range()
    return f'{target.description}{f" ({limits})" if limits else ""}; empty = the YAML'


def parse_override(option: str, text: str) -> Any:
    """A launch argument's text as its parameter's value, checked; ParameterError otherwise."""
    target = dataclasses.replace(override_spec(option), name=option)
    kind = target.type
    try:
        value = {bool: lambda t: {'true': True, 'false': False}[t.lower()],
                 int: int, float: float, str: str}[kind](text)
    except (KeyError, ValueError):
        raise ParameterError(f'launch argument {option}:={text!r}: expected '
                             f'{target.type_name}') from None
    return check(target, value)


def default_params_file() -> Path:
    """config/importance_sampler.yaml of the source tree, or of share/ on a ROS install."""
    return share_path('config', 'importance_sampler.yaml')


def load(params_file: str | Path | None, overrides: Mapping[str, Mapping[str, Any]] | None = None,
         nodes: Sequence[str] = (*NODE_NAMES, VIZ_NODE)) -> tuple[dict[str, NodeConfig], list[str]]:
    """Each node's config from a parameter YAML file (default: default_params_file()) with
    `overrides` ({node: {name: value}}) on top, checked as the node itself checks them.

    Returns the configs and the names ('node.parameter') the file sets that the node does not
    declare (ROS ignores those; callers say so). ParameterError, one line, for a value that does
    not fit, an unknown override, or a file that cannot be read.
    """
    path = Path(params_file) if params_file else default_params_file()
    if params_file and not path.is_file():
        raise ParameterError(f'parameter file {path} does not exist')
    configs: dict[str, NodeConfig] = {}
    unknown: list[str] = []
    for node in nodes:
        entry = NODES[node]
        names = entry.names()
        given = load_node_parameters(path, node) if path.is_file() else {}
        unknown += [f'{node}.{key}' for key in given
                    if key not in names and key not in ROS_BUILTIN_PARAMETERS]
        values = {k: v for k, v in given.items() if k in names}
        extra = dict((overrides or {}).get(node, {}))
        bad = sorted(set(extra) - names)
        if bad:
            raise ParameterError(f'{node}: unknown parameter(s): {", ".join(bad)}')
        values.update(extra)
        configs[node] = entry.build(values)
    return configs, unknown


# --- config/importance_sampler.yaml ------------------------------------------------------------

_YAML_HEADER = """\
# The one parameter file of the importance sampler: every node's section, used by
# `ros2 launch importance_sampler_ros importance_sampler.launch.py`, by `importance-sampler up`
# and by offline `replay --params`. Values here are the defaults.
#
# Generated from the parameter registry (importance_sampler_ros/registry.py); the comment above
# each parameter is its description and range (also `ros2 param describe /<node> <name>`).
# Regenerate after adding a parameter:
#   python -m importance_sampler_ros.registry > config/importance_sampler.yaml
# An edited copy (--params / params_file:=) may leave out any parameter: it keeps its default.
"""


def _yaml_value(value: Any) -> str:
    value = list(value) if isinstance(value, tuple) else value
    text = yaml.safe_dump(value, default_flow_style=True, width=1000).strip()
    return text.removesuffix('\n...').removesuffix('...').strip()


def _groups_in_order(cls: type) -> list[type]:
    return [cls, *(g for inner in nested_classes(cls) for g in _groups_in_order(inner))]


def render_yaml() -> str:
    """config/importance_sampler.yaml as the registry says it is."""
    lines = [_YAML_HEADER.rstrip('\n')]
    for node, entry in NODES.items():
        lines += ['', f'{node}:', '  ros__parameters:']
        for group in (g for top in entry.groups for g in _groups_in_order(top)):
            title = ' '.join((group.__doc__ or '').split('.')[0].split())
            lines += textwrap.wrap(f'{group.__name__}: {title}.', 100, initial_indent='    # --- ',
                                   subsequent_indent='    #     ')
            for item in own_specs(group):
                limits = item.describe_range()
                text = f'{item.description}{f" ({limits})" if limits else ""}.'
                lines += textwrap.wrap(text, 100, initial_indent='    # ',
                                       subsequent_indent='    #   ', break_on_hyphens=False)
                lines.append(f'    {item.name}: {_yaml_value(item.default)}')
    return '\n'.join(lines) + '\n'


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog='python -m importance_sampler_ros.registry',
        description='print config/importance_sampler.yaml as the parameter registry says it is')
    parser.add_argument('--check', type=Path, metavar='YAML',
                        help='compare with this file instead: exit 1 when it differs')
    args = parser.parse_args(argv)
    text = render_yaml()
    if args.check is None:
        sys.stdout.write(text)
        return 0
    if args.check.read_text() != text:
        print(f'{args.check} differs from the registry; regenerate it with '
              'python -m importance_sampler_ros.registry', file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
