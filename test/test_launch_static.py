"""The launch file, the launcher and the one parameter YAML agree with what the nodes declare.

`launch` / `launch_ros` are not installable here, so the launch file runs against small stand-ins
of the launch / launch_ros classes that only record their arguments: every executable it names is
a console script (setup.py) and an installed program (CMakeLists.txt), its override table is the
registry's, and every parameter it sets is declared by its node. The YAML holds exactly the
parameters each node declares, with values that pass their specs. What a node declares is read
by constructing it with `declare_parameters` intercepted (no model is loaded, nothing spins).
"""
import ast
import importlib

import pytest
import rclpy
import yaml
from live_graph_fixtures import REPO, domain_id
from rclpy.node import Node

from importance_sampler_ros import registry
from importance_sampler_ros.nodes import launcher
from importance_sampler_ros.params import ParameterError

LAUNCH_FILE = REPO / 'launch' / 'importance_sampler.launch.py'
CONFIG_FILE = REPO / 'config' / 'importance_sampler.yaml'
ALL_NODES = (*launcher.NODE_NAMES, launcher.VIZ_NODE)


def launch_tree() -> ast.Module:
    return ast.parse(LAUNCH_FILE.read_text(), filename=str(LAUNCH_FILE))


def calls(tree: ast.AST, function: str) -> list[ast.Call]:
    return [node for node in ast.walk(tree) if isinstance(node, ast.Call) and (
        getattr(node.func, 'id', None) == function or getattr(node.func, 'attr', None) == function)]


def console_scripts() -> dict[str, str]:
    tree = ast.parse((REPO / 'setup.py').read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Dict):
            for key, value in zip(node.keys, node.values, strict=True):
                if isinstance(key, ast.Constant) and key.value == 'console_scripts':
                    entries = ast.literal_eval(value)
                    return dict(
                        (part.strip() for part in entry.split('=', 1)) for entry in entries)
    raise AssertionError('setup.py has no console_scripts')


class _DeclaredError(Exception):
    pass


@pytest.fixture(scope='module')
def declared():
    """node name -> {parameter name: Param} as the node declares them."""
    rclpy.init(args=['--ros-args', '-r', '__ns:=/launch_static_test'], domain_id=domain_id(4))
    result = {}
    try:
        for name in ALL_NODES:
            module = importlib.import_module(f'importance_sampler_ros.nodes.{name}')
            classes = [obj for obj in vars(module).values()
                       if isinstance(obj, type) and issubclass(obj, Node)
                       and obj.__module__ == module.__name__]
            assert len(classes) == 1, f'{name}: expected one Node subclass, got {classes}'
            specs = {}

            def capture(node, node_parameters, specs=specs):
                specs.update({spec.name: spec for spec in node_parameters.specs()})
                node.destroy_node()
                raise _DeclaredError

            original = module.declare_parameters
            module.declare_parameters = capture
            try:
                classes[0]()
            except _DeclaredError:
                pass
            finally:
                module.declare_parameters = original
            assert specs, f'{name} declared no parameters through declare_parameters'
            result[name] = specs
    finally:
        rclpy.shutdown()
    return result


def test_launch_file_parses_and_names_nodes_that_exist(monkeypatch, tmp_path):
    tree = launch_tree()
    namespace = launch_namespace(monkeypatch, tmp_path)
    names = (*namespace['NODES'], namespace['VIZ_NODE'])
    assert names == ALL_NODES
    scripts = console_scripts()
    cmake = (REPO / 'CMakeLists.txt').read_text()
    for name in names:
        assert name in scripts, f'{name} is not a console script in setup.py'
        module_name, _, function = scripts[name].partition(':')
        assert module_name == f'importance_sampler_ros.nodes.{name}'
        assert callable(getattr(importlib.import_module(module_name), function))
        assert (REPO / 'scripts' / name).is_file(), f'scripts/{name} is missing'
        assert f'scripts/{name}\n' in cmake, f'scripts/{name} is not installed by CMakeLists.txt'
    node_calls = [c for c in calls(tree, 'Node')
                  if not any(k.arg == 'package' and getattr(k.value, 'value', None) == 'rviz2'
                             for k in c.keywords)]
    assert len(node_calls) == 1
    keywords = {k.arg for k in node_calls[0].keywords}
    assert {'package', 'executable', 'name', 'parameters'} <= keywords


def test_launch_arguments_are_declared_and_overrides_match_the_launcher(monkeypatch, tmp_path):
    tree = launch_tree()
    overrides = launch_namespace(monkeypatch, tmp_path)['OVERRIDES']
    assert overrides == launcher.OPTION_PARAMETERS == registry.OVERRIDES
    literal_arguments = {c.args[0].value for c in calls(tree, 'DeclareLaunchArgument')
                         if c.args and isinstance(c.args[0], ast.Constant)}
    declared_arguments = literal_arguments | set(overrides)
    used = {c.args[0].value for c in calls(tree, 'LaunchConfiguration')
            if c.args and isinstance(c.args[0], ast.Constant)}
    assert used <= declared_arguments, f'undeclared launch arguments: {used - declared_arguments}'
    assert {'params_file', 'visualize', 'image_topic', 'output_dir', 'checkpoint', 'device',
            'keep_ratio'} <= declared_arguments
    declared, _ = launched_nodes(monkeypatch, tmp_path)
    descriptions = {e.args[0]: e.kwargs['description'] for e in declared_arguments_of(
        monkeypatch, tmp_path)}
    for argument in overrides:
        assert declared[argument] == ''
        assert registry.override_spec(argument).description in descriptions[argument]


def test_launch_file_gives_nodes_and_rviz_the_package_profile_unless_chosen(monkeypatch, tmp_path):
    variable = 'FASTDDS_DEFAULT_PROFILES_FILE'
    monkeypatch.delenv(variable, raising=False)
    monkeypatch.delenv('FASTDDS_BUILTIN_TRANSPORTS', raising=False)
    declared, nodes = launched_nodes(monkeypatch, tmp_path, rviz='true')
    assert declared['fastdds_profiles_file'] == ''
    profile = str(tmp_path / 'config' / 'fastdds_large_frames.xml')
    assert [n.kwargs['additional_env'] for n in nodes] == [{variable: profile}] * len(nodes)
    assert (REPO / 'config' / 'fastdds_large_frames.xml').is_file()  # installed with config/
    _, nodes = launched_nodes(monkeypatch, tmp_path, fastdds_profiles_file='/etc/car.xml')
    assert all(n.kwargs['additional_env'] == {variable: '/etc/car.xml'} for n in nodes)
    monkeypatch.setenv('FASTDDS_BUILTIN_TRANSPORTS', 'LARGE_DATA')  # the user's choice stays
    _, nodes = launched_nodes(monkeypatch, tmp_path)
    assert all(n.kwargs['additional_env'] == {} for n in nodes)


@pytest.mark.ros
def test_every_overridden_parameter_is_declared_by_its_node(declared):
    for option, targets in launcher.OPTION_PARAMETERS.items():
        for node, parameter in targets:
            assert parameter in declared[node], f'{option}: {node} does not declare {parameter}'


@pytest.mark.ros
def test_yaml_holds_exactly_the_declared_parameters_with_valid_values(declared):
    document = yaml.safe_load(CONFIG_FILE.read_text())
    assert set(document) == set(ALL_NODES)
    for node, section in document.items():
        values = section['ros__parameters']
        specs = declared[node]
        unknown = sorted(set(values) - set(specs))
        missing = sorted(set(specs) - set(values))
        assert not unknown, f'{node}: {CONFIG_FILE.name} sets undeclared parameters {unknown}'
        assert not missing, f'{node}: {CONFIG_FILE.name} lacks declared parameters {missing}'
        registry.NODES[node].build(values)  # raises ParameterError naming a bad value


@pytest.mark.ros
def test_every_declared_parameter_has_a_description(declared):
    for node, specs in declared.items():
        for spec in specs.values():
            assert len(spec.description) > 10, f'{node}.{spec.name} has no real description'


def test_launcher_commands_use_the_yaml_and_the_override_file(tmp_path):
    overrides = launcher.parameter_overrides(
        {'image_topic': '/cam/front', 'keep_ratio': 0.05, 'device': None},
        ['detector_node', 'tracker_node', 'recorder_node'])
    assert overrides == {'detector_node': {'image_topic': '/cam/front'},
                         'recorder_node': {'image_topic': '/cam/front', 'keep_ratio': 0.05}}
    path = launcher.write_overrides_file(overrides, tmp_path)
    assert yaml.safe_load(path.read_text())['recorder_node']['ros__parameters'] == {
        'image_topic': '/cam/front', 'keep_ratio': 0.05}
    command = launcher.node_command('tracker_node', CONFIG_FILE, path, 'warn')
    assert command[1:] == ['-m', 'importance_sampler_ros.nodes.tracker_node', '--ros-args',
                           '--params-file', str(CONFIG_FILE), '--params-file', str(path),
                           '--log-level', 'warn']
    assert launcher.default_params_file() == CONFIG_FILE


def test_readme_and_launch_file_document_the_transport():
    assert 'fastdds_large_frames.xml' in LAUNCH_FILE.read_text()
    assert 'FASTDDS_DEFAULT_PROFILES_FILE' in (REPO / 'README.md').read_text()


class _Recorded:
    """Stand-in for a launch / launch_ros class: keeps its arguments."""

    def __init__(self, *args, **kwargs):
        self.args, self.kwargs = args, kwargs


class _LaunchConfiguration(_Recorded):
    def perform(self, context):
        return context[self.args[0]]


def _stub_modules(monkeypatch, share_dir):
    import sys
    import types

    stubs = {
        'launch': {'LaunchDescription': _Recorded},
        'launch.actions': {name: type(name, (_Recorded,), {}) for name in (
            'DeclareLaunchArgument', 'OpaqueFunction')},
        'launch.substitutions': {'LaunchConfiguration': _LaunchConfiguration},
        'launch_ros': {},
        'launch_ros.actions': {'Node': type('Node', (_Recorded,), {})},
        'ament_index_python.packages': {
            'get_package_share_directory': lambda package: str(share_dir)},
    }
    for name, attributes in stubs.items():
        module = types.ModuleType(name)
        module.__dict__.update(attributes)
        monkeypatch.setitem(sys.modules, name, module)


def launch_namespace(monkeypatch, tmp_path) -> dict:
    """The launch file's module namespace, run against stand-ins of launch / launch_ros."""
    import runpy

    _stub_modules(monkeypatch, tmp_path)
    return runpy.run_path(str(LAUNCH_FILE))


def declared_arguments_of(monkeypatch, tmp_path) -> list:
    description = launch_namespace(monkeypatch, tmp_path)['generate_launch_description']()
    (entities,) = description.args
    return [e for e in entities if type(e).__name__ == 'DeclareLaunchArgument']


def launched_nodes(monkeypatch, tmp_path, **arguments):
    """Run the launch file against stand-ins of launch / launch_ros: the Node actions it makes."""
    namespace = launch_namespace(monkeypatch, tmp_path)
    description = namespace['generate_launch_description']()
    (entities,) = description.args
    declared = {e.args[0]: e.kwargs.get('default_value') for e in entities
                if type(e).__name__ == 'DeclareLaunchArgument'}
    context = {name: value for name, value in declared.items() if isinstance(value, str)}
    context.update(arguments)
    (opaque,) = [e for e in entities if type(e).__name__ == 'OpaqueFunction']
    return declared, opaque.kwargs['function'](context)


def test_launch_file_runs_against_stand_ins_with_defaults(monkeypatch, tmp_path):
    declared, nodes = launched_nodes(monkeypatch, tmp_path)
    assert declared['params_file'] == str(tmp_path / 'config' / 'importance_sampler.yaml')
    assert [n.kwargs['executable'] for n in nodes] == list(launcher.NODE_NAMES)
    for node in nodes:
        params_file, overrides = node.kwargs['parameters']
        assert params_file == declared['params_file'] and overrides == {}
        assert node.kwargs['name'] == node.kwargs['executable']
        assert node.kwargs['package'] == 'importance_sampler_ros'


def test_launch_file_overrides_and_visualize(monkeypatch, tmp_path):
    _, nodes = launched_nodes(monkeypatch, tmp_path, image_topic='/cam/front',
                              keep_ratio='0.05', device='cuda', visualize='true',
                              log_level='warn')
    by_name = {n.kwargs['executable']: n.kwargs['parameters'][1] for n in nodes}
    assert by_name == {
        'detector_node': {'image_topic': '/cam/front', 'device': 'cuda'},
        'tracker_node': {},
        'recorder_node': {'image_topic': '/cam/front', 'keep_ratio': 0.05},
        'viz_node': {'image_topic': '/cam/front'},
    }
    assert all(n.kwargs['arguments'][-1] == 'warn' for n in nodes)


def test_launch_file_rviz_starts_rviz2_with_the_shipped_config_and_viz_node(monkeypatch, tmp_path):
    _, nodes = launched_nodes(monkeypatch, tmp_path, rviz='true')
    assert [n.kwargs['executable'] for n in nodes] == [*launcher.NODE_NAMES, 'viz_node', 'rviz2']
    rviz = nodes[-1].kwargs
    assert rviz['package'] == 'rviz2'
    assert rviz['arguments'] == ['-d', str(tmp_path / 'config' / 'importance_sampler.rviz')]
    assert (REPO / 'config' / 'importance_sampler.rviz').is_file()  # installed with config/


def test_launch_arguments_are_typed_and_checked_by_the_registry(monkeypatch, tmp_path):
    _, nodes = launched_nodes(monkeypatch, tmp_path, keep_ratio='1', device='cuda:1')
    by_name = {n.kwargs['executable']: n.kwargs['parameters'][1] for n in nodes}
    assert by_name['recorder_node'] == {'keep_ratio': 1.0}
    assert type(by_name['recorder_node']['keep_ratio']) is float
    assert by_name['detector_node'] == {'device': 'cuda:1'}
    for arguments, message in (({'keep_ratio': '5'}, "'keep_ratio' = 5.0: must be in"),
                               ({'keep_ratio': 'abc'}, 'keep_ratio.*expected float'),
                               ({'device': 'tpu'}, "'device' = 'tpu'")):
        with pytest.raises(ParameterError, match=message) as error:
            launched_nodes(monkeypatch, tmp_path, **arguments)
        assert '\n' not in str(error.value)
