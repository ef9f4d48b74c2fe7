"""Parameter specs: conversion and validation in the core, and the same rules when declared on a
real node (nodes/parameters.py)."""
import signal
import subprocess
import sys
from dataclasses import dataclass

import pytest
import rclpy
from live_graph_fixtures import REPO, domain_id, ros_env
from rclpy.node import Node
from rclpy.parameter import Parameter

from importance_sampler_ros.params import (
    Param,
    ParameterError,
    Settings,
    check,
    load_node_parameters,
    param,
    parse_assignments,
    specs,
)
from importance_sampler_ros.registry import NodeParameters, load

SPECS = (
    Param('keep_ratio', 0.01, 'target keep ratio', min_value=0.0, max_value=1.0),
    Param('aggregation', 'sum', 'frame importance', choices=('sum', 'max', 'mean')),
    Param('max_age', 3, 'frames a track survives unmatched', min_value=1),
    Param('write_images', True, 'write images'),
    Param('class_names', ('__background__', 'car'), 'class list'),
    Param('device', 'cpu', 'device', pattern=r'cpu|cuda(:[0-9]+)?'),
)


@dataclass(frozen=True)
class Example(Settings):
    """Settings of a test node."""

    keep_ratio: float = param(0.01, 'target keep ratio', min_value=0.0, max_value=1.0)
    aggregation: str = param('sum', 'frame importance', choices=('sum', 'max', 'mean'))
    max_age: int = param(3, 'frames a track survives unmatched', min_value=1)
    class_names: tuple[str, ...] = param(('__background__', 'car'), 'class list')


EXAMPLE_NODE = NodeParameters('example_node', (Example,))


def resolve(overrides: dict) -> dict:
    """SPECS' defaults with `overrides`, each through params.check."""
    return {s.name: check(s, overrides.get(s.name, s.default)) for s in SPECS}


def test_defaults_and_overrides():
    values = resolve({'keep_ratio': 1, 'aggregation': 'max'})
    assert values['keep_ratio'] == 1.0 and isinstance(values['keep_ratio'], float)
    assert values['aggregation'] == 'max' and values['max_age'] == 3


@pytest.mark.parametrize('overrides,message', [
    ({'keep_ratio': 1.5}, "'keep_ratio' = 1.5: must be in \\[0, 1\\]"),
    ({'keep_ratio': float('nan')}, 'keep_ratio'),
    ({'keep_ratio': 'abc'}, "'keep_ratio': expected float, got 'abc' \\(str\\)"),
    ({'keep_ratio': True}, "'keep_ratio': expected float"),
    ({'aggregation': 'median'}, "'aggregation' = 'median': must be one of sum, max, mean"),
    ({'max_age': 2.5}, "'max_age': expected int"),
    ({'max_age': '3'}, "'max_age': expected int"),
    ({'write_images': 1}, "'write_images': expected bool"),
    ({'class_names': ['a', 1]}, "'class_names': expected string list"),
    ({'device': 'tpu'}, "'device' = 'tpu': must be matching"),
    ({'device': 'cuda:x'}, 'device'),
])
def test_bad_values_name_the_parameter_in_one_line(overrides, message):
    with pytest.raises(ParameterError, match=message) as error:
        resolve(overrides)
    assert '\n' not in str(error.value)


def test_lossless_values_of_another_type_are_converted():
    values = resolve({'keep_ratio': 1, 'max_age': 4.0, 'class_names': ['x', 'y'],
                             'device': 'cuda:1'})
    assert values['keep_ratio'] == 1.0 and type(values['keep_ratio']) is float
    assert values['max_age'] == 4 and type(values['max_age']) is int
    assert values['class_names'] == ('x', 'y') and values['device'] == 'cuda:1'


def test_settings_classes_convert_and_check_on_construction():
    assert [s.name for s in specs(Example)] == ['keep_ratio', 'aggregation', 'max_age',
                                                'class_names']
    example = Example(keep_ratio=1, max_age=7.0, class_names=['a', 'b'])
    assert type(example.keep_ratio) is float and type(example.max_age) is int
    assert example.class_names == ('a', 'b')
    with pytest.raises(ParameterError, match=r"parameter 'keep_ratio' = 2\.0"):
        Example(keep_ratio=2)
    with pytest.raises(ParameterError, match="example_node: parameter 'max_age'"):
        EXAMPLE_NODE.build({'max_age': 'many'})


def test_name_value_texts_take_their_parameters_types():
    values = parse_assignments(['keep_ratio=0.5', 'max_age=7', 'write_images=false',
                                'aggregation=mean'], SPECS)
    assert values == {'keep_ratio': 0.5, 'max_age': 7, 'write_images': False,
                      'aggregation': 'mean'}
    assert type(values['max_age']) is int
    assert parse_assignments(['write_images=1'], SPECS) == {'write_images': True}
    with pytest.raises(KeyError):
        parse_assignments(['no_such=1'], SPECS)
    with pytest.raises(ValueError):
        parse_assignments(['max_age=seven'], SPECS)


def test_an_unknown_override_is_refused():
    with pytest.raises(ParameterError, match='recorder_node: unknown parameter\\(s\\): typo'):
        load(None, {'recorder_node': {'typo': 1}})


def test_yaml_section(tmp_path):
    path = tmp_path / 'p.yaml'
    path.write_text('detector_node:\n  ros__parameters:\n    keep_ratio: 0.5\nother: {}\n')
    assert load_node_parameters(path, 'detector_node') == {'keep_ratio': 0.5}
    assert load_node_parameters(path, 'tracker_node') == {}


def test_yaml_wildcard_sections_are_merged_in_file_order(tmp_path):
    path = tmp_path / 'p.yaml'
    path.write_text('/**:\n  ros__parameters:\n    keep_ratio: 0.2\n    seed: 1\n'
                    '/recorder_node:\n  ros__parameters:\n    keep_ratio: 0.3\n'
                    '/tracker_node:\n  ros__parameters:\n    seed: 9\n')
    assert load_node_parameters(path, 'recorder_node') == {'keep_ratio': 0.3, 'seed': 1}


def test_yaml_that_does_not_parse_is_one_line(tmp_path):
    path = tmp_path / 'p.yaml'
    path.write_text('recorder_node: [unclosed\n')
    with pytest.raises(ParameterError, match='not valid YAML') as error:
        load_node_parameters(path, 'recorder_node')
    assert '\n' not in str(error.value)


@pytest.fixture
def ros(monkeypatch):
    monkeypatch.setenv('ROS_DOMAIN_ID', str(domain_id(9)))
    rclpy.init()
    yield
    rclpy.shutdown()


@pytest.mark.ros
def test_ros_declaration_reads_overrides_and_rejects_bad_ones(ros):
    from importance_sampler_ros.nodes.parameters import declare_parameters

    node = Node('p1', parameter_overrides=[Parameter('keep_ratio', value=0.25)])
    config = declare_parameters(node, EXAMPLE_NODE)
    assert config['keep_ratio'] == 0.25 and config.of(Example).class_names == (
        '__background__', 'car')
    descriptor = node.describe_parameter('keep_ratio')
    assert 'target keep ratio' in descriptor.description and descriptor.read_only
    node.destroy_node()
    bad = Node('p2', parameter_overrides=[Parameter('aggregation', value='median')])
    with pytest.raises(ParameterError, match='aggregation'):
        declare_parameters(bad, EXAMPLE_NODE)
    bad.destroy_node()


@pytest.mark.ros
def test_ros_declaration_converts_lossless_types_and_refuses_others(ros):
    """`-p keep_ratio:=1` (an integer for a double) is taken as 1.0; a string for a number is
    one ParameterError naming the parameter, not rclpy's InvalidParameterTypeException."""
    from importance_sampler_ros.nodes.parameters import declare_parameters

    node = Node('p3', parameter_overrides=[Parameter('keep_ratio', value=1),
                                           Parameter('max_age', value=5.0)])
    config = declare_parameters(node, EXAMPLE_NODE)
    assert config['keep_ratio'] == 1.0 and config['max_age'] == 5
    assert node.get_parameter('keep_ratio').type_ == Parameter.Type.DOUBLE
    assert node.get_parameter('keep_ratio').value == 1.0
    assert node.get_parameter('max_age').type_ == Parameter.Type.INTEGER
    assert node.describe_parameter('keep_ratio').floating_point_range[0].to_value == 1.0
    node.destroy_node()
    for name, value in (('keep_ratio', 'abc'), ('max_age', 2.5), ('class_names', 3)):
        bad = Node('p4', parameter_overrides=[Parameter(name, value=value)])
        with pytest.raises(ParameterError, match=f"example_node: parameter '{name}'") as error:
            declare_parameters(bad, EXAMPLE_NODE)
        assert '\n' not in str(error.value)
        bad.destroy_node()


def test_params_files_are_read_from_the_ros_arguments_only():
    from importance_sampler_ros.nodes.parameters import params_files

    args = ['node', '--params-file', 'not-ros.yaml', '--ros-args', '--params-file', 'a.yaml',
            '-p', 'x:=1', '--params-file', 'b.yaml', '--', '--params-file', 'c.yaml']
    assert params_files(args) == ['a.yaml', 'b.yaml']


@pytest.mark.ros
def test_a_bad_value_in_a_layered_params_file_ends_the_node_with_status_2(tmp_path):
    """rcl keeps the first file's keep_ratio when the second gives a string; the node does not."""
    layer = tmp_path / 'layer.yaml'
    layer.write_text('recorder_node:\n  ros__parameters:\n    keep_ratio: abc\n')
    command = [sys.executable, '-m', 'importance_sampler_ros.nodes.recorder_node', '--ros-args',
               '--params-file', str(REPO / 'config' / 'importance_sampler.yaml'),
               '--params-file', str(layer), '-p', f'output_dir:={tmp_path}']
    result = subprocess.run(command, env=ros_env(domain_id(9)), capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip() == ("[ERROR] invalid parameter: recorder_node: parameter "
                                     "'keep_ratio': expected float, got 'abc' (str)")
    assert not any(tmp_path.glob('recording_*'))  # nothing was started
    layer.write_text('recorder_node:\n  ros__parameters:\n    keep_ratio: 0.5\n')
    good = subprocess.Popen(command, env=ros_env(domain_id(9)), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        started = next((line for line in good.stdout if 'keep ratio' in line), '')
    finally:
        good.send_signal(signal.SIGINT)
        good.communicate(timeout=30)
    assert 'keep ratio 0.5' in started and good.returncode == 0
