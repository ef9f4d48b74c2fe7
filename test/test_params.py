"""Parameter specs: validation in the core, and the same rules when declared on a real node."""
import pytest
import rclpy
from rclpy.node import Node
from rclpy.parameter import Parameter

from importance_sampler_ros.params import Param, ParameterError, load_node_parameters, resolve

SPECS = (
    Param('keep_ratio', 0.01, 'target keep ratio', min_value=0.0, max_value=1.0),
    Param('aggregation', 'sum', 'frame importance', choices=('sum', 'max', 'mean')),
    Param('max_age', 3, 'frames a track survives unmatched', min_value=1),
    Param('write_images', True, 'write images'),
    Param('class_names', ['__background__', 'car'], 'class list'),
)


def test_defaults_and_overrides():
    values = resolve(SPECS, {'keep_ratio': 1, 'aggregation': 'max'})
    assert values['keep_ratio'] == 1.0 and isinstance(values['keep_ratio'], float)
    assert values['aggregation'] == 'max' and values['max_age'] == 3


@pytest.mark.parametrize('overrides,message', [
    ({'keep_ratio': 1.5}, "'keep_ratio' = 1.5: must be in \\[0, 1\\]"),
    ({'keep_ratio': float('nan')}, 'keep_ratio'),
    ({'aggregation': 'median'}, "'aggregation' = 'median': must be one of sum, max, mean"),
    ({'max_age': 2.5}, "'max_age': expected int"),
    ({'write_images': 1}, "'write_images': expected bool"),
    ({'typo': 1}, 'unknown parameter\\(s\\): typo'),
])
def test_bad_values_name_the_parameter(overrides, message):
    with pytest.raises(ParameterError, match=message):
        resolve(SPECS, overrides)


def test_yaml_section(tmp_path):
    path = tmp_path / 'p.yaml'
    path.write_text('detector_node:\n  ros__parameters:\n    keep_ratio: 0.5\nother: {}\n')
    assert load_node_parameters(path, 'detector_node') == {'keep_ratio': 0.5}
    assert load_node_parameters(path, 'tracker_node') == {}


@pytest.fixture
def ros(monkeypatch):
    monkeypatch.setenv('ROS_DOMAIN_ID', '72')
    rclpy.init()
    yield
    rclpy.shutdown()


def test_ros_declaration_reads_overrides_and_rejects_bad_ones(ros):
    from importance_sampler_ros.nodes.parameters import declare_parameters

    node = Node('p1', parameter_overrides=[Parameter('keep_ratio', value=0.25)])
    values = declare_parameters(node, SPECS)
    assert values.keep_ratio == 0.25 and values.class_names == ['__background__', 'car']
    descriptor = node.describe_parameter('keep_ratio')
    assert 'target keep ratio' in descriptor.description and descriptor.read_only
    node.destroy_node()
    bad = Node('p2', parameter_overrides=[Parameter('aggregation', value='median')])
    with pytest.raises(ParameterError, match='aggregation'):
        declare_parameters(bad, SPECS)
    bad.destroy_node()
