"""The parameter registry: one declaration per parameter, the YAML generated from it, and the same
one-line refusal of a bad value in `replay`, `up` and the nodes."""
import os
import subprocess
import sys
import textwrap

import pytest
import yaml
from live_graph_fixtures import REPO

from importance_sampler_ros import registry
from importance_sampler_ros.cli import main as cli_main
from importance_sampler_ros.detection.config import DetectorConfig
from importance_sampler_ros.params import ParameterError, flat_values, specs
from importance_sampler_ros.recording.config import RecorderConfig
from importance_sampler_ros.sampling.config import SamplerConfig

CONFIG_FILE = REPO / 'config' / 'importance_sampler.yaml'


def test_the_yaml_file_is_the_registry_rendered():
    assert CONFIG_FILE.read_text() == registry.render_yaml(), (
        'regenerate: python -m importance_sampler_ros.registry > config/importance_sampler.yaml')
    assert sorted(p.name for p in (REPO / 'config').glob('*.yaml')) == ['importance_sampler.yaml']


def test_each_node_section_holds_every_default_once():
    document = yaml.safe_load(CONFIG_FILE.read_text())
    for node, entry in registry.NODES.items():
        names = [spec.name for spec in entry.specs()]
        assert len(names) == len(set(names)), f'{node}: a parameter is declared twice'
        section = document[node]['ros__parameters']
        assert section == {spec.name: spec.ros_default() for spec in entry.specs()}
        config = entry.build(section)
        for cls in entry.groups:
            assert config.of(cls) == cls()
    recorder = registry.NODES['recorder_node'].build({})
    assert recorder.of(RecorderConfig).sampler == SamplerConfig(seed=-1)


def test_settings_round_trip_through_flat_values():
    config = RecorderConfig(bag_name='x', sampler=SamplerConfig(keep_ratio=0.5))
    values = flat_values(config)
    assert values['keep_ratio'] == 0.5 and values['bag_name'] == 'x'
    assert registry.NODES['recorder_node'].build(values).of(RecorderConfig) == config
    assert {s.name for s in specs(RecorderConfig)} == set(values)


def test_device_takes_cpu_cuda_and_cuda_n_and_architecture_may_be_empty():
    for device in ('cpu', 'cuda', 'cuda:0', 'cuda:3'):
        assert DetectorConfig(device=device).device == device
    for device in ('gpu', 'cuda:', 'cuda:a', 'CPU'):
        with pytest.raises(ParameterError, match="'device'"):
            DetectorConfig(device=device)
    assert DetectorConfig().architecture == ''  # empty = the checkpoint's
    with pytest.raises(ParameterError, match='half'):
        DetectorConfig(half=True)
    assert DetectorConfig(half=True, device='cuda:1').half


@pytest.mark.ros  # a Python process
def test_registry_check_command():
    run = [sys.executable, '-m', 'importance_sampler_ros.registry', '--check', str(CONFIG_FILE)]
    env = {**os.environ, 'PYTHONPATH': str(REPO)}
    assert subprocess.run(run, env=env, timeout=60).returncode == 0


@pytest.mark.parametrize('document,message', [
    ('recorder_node:\n  ros__parameters:\n    keep_ratio: abc\n',
     "recorder_node: parameter 'keep_ratio': expected float, got 'abc'"),
    ('/**:\n  ros__parameters:\n    keep_ratio: abc\n', "parameter 'keep_ratio'"),
    ('tracker_node:\n  ros__parameters:\n    max_age: 2.5\n', "parameter 'max_age'"),
    ('recorder_node:\n  ros__parameters:\n    buffer_seconds: -3\n',
     "parameter 'buffer_seconds' = -3.0: must be in"),
])
def test_replay_refuses_a_bad_yaml_value_in_one_line(tmp_path, capsys, document, message):
    params = tmp_path / 'p.yaml'
    params.write_text(document)
    code = cli_main(['replay', str(tmp_path / 'no_bag'), '--out', str(tmp_path / 'out'),
                     '--params', str(params), '--progress', 'off'])
    err = capsys.readouterr().err
    assert code == 2
    assert message in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / 'out').exists()


def test_replay_takes_lossless_values_and_refuses_a_bad_option(tmp_path, capsys):
    params = tmp_path / 'p.yaml'
    params.write_text('recorder_node:\n  ros__parameters:\n    keep_ratio: 1\n    seed: 3.0\n')
    from importance_sampler_ros.offline.pipeline import load_parameters

    configs, _ = load_parameters(params)
    assert configs['recorder_node']['keep_ratio'] == 1.0
    assert configs['recorder_node']['seed'] == 3
    code = cli_main(['replay', str(tmp_path / 'no_bag'), '--out', str(tmp_path / 'out'),
                     '--keep-ratio', '5', '--progress', 'off'])
    err = capsys.readouterr().err
    assert code == 2 and "parameter 'keep_ratio' = 5.0: must be in" in err
    assert len(err.strip().splitlines()) == 1


def _up(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, '-m', 'importance_sampler_ros.cli', 'up', *args],
        env={**os.environ, 'PYTHONPATH': str(REPO), 'ROS_DOMAIN_ID': '73'},
        capture_output=True, text=True, timeout=timeout)


@pytest.mark.ros
def test_up_refuses_a_bad_option_before_starting_any_node(tmp_path):
    result = _up('--keep-ratio', '5', '--output-dir', str(tmp_path))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "recorder_node: parameter 'keep_ratio' = 5.0: must be in" in lines[0]
    assert 'Traceback' not in result.stderr and 'started' not in result.stderr
    params = tmp_path / 'p.yaml'
    params.write_text('detector_node:\n  ros__parameters:\n    device: tpu\n')
    result = _up('--params', str(params))
    assert result.returncode == 2 and "detector_node: parameter 'device' = 'tpu'" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.ros
def test_up_stops_a_sibling_that_is_still_importing_without_a_traceback(tmp_path):
    """A node that dies at once stops the others; one still starting (here: sleeping where a node
    would import torch) ignores the SIGINT and ends on the SIGTERM that follows, quietly."""
    script = textwrap.dedent("""
        import sys
        from importance_sampler_ros.nodes.launcher import Graph
        graph = Graph({'slow': [sys.executable, '-c', 'import time; time.sleep(60)'],
                       'dies': [sys.executable, '-c', 'import time, sys; time.sleep(0.5); '
                                'sys.exit(2)']}, dict(__import__('os').environ), 2.0)
        graph.start()
        status = graph.wait()
        codes = [node.process.returncode for node in graph.nodes]
        print(status, *codes)
    """)
    result = subprocess.run([sys.executable, '-c', script], capture_output=True, text=True,
                            env={**os.environ, 'PYTHONPATH': str(REPO)}, timeout=60)
    assert result.stdout.split() == ['1', '-15', '2'], result.stderr
    assert 'Traceback' not in result.stderr and 'KeyboardInterrupt' not in result.stderr


@pytest.mark.ros
@pytest.mark.parametrize('argument,message', [
    ('buffer_seconds:=-3', "parameter 'buffer_seconds' = -3.0: must be in [0, 3600]"),
    ('keep_ratio:=abc', "parameter 'keep_ratio': expected float, got 'abc'"),
    ('image_queue_depth:=2.5', "parameter 'image_queue_depth': expected int"),
])
def test_recorder_node_refuses_a_bad_value_in_one_line(tmp_path, argument, message):
    result = subprocess.run(
        [sys.executable, '-m', 'importance_sampler_ros.nodes.recorder_node', '--ros-args',
         '-p', f'output_dir:={tmp_path}', '-p', argument],
        env={**os.environ, 'PYTHONPATH': str(REPO), 'ROS_DOMAIN_ID': '74'},
        capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr


@pytest.mark.ros  # a Python process
def test_the_registry_imports_no_numpy_torch_or_rclpy():
    """The launch file imports it on a ROS install; it must stay light."""
    code = ('import sys, importance_sampler_ros.registry; '
            "print(sorted(m for m in ('numpy', 'torch', 'rclpy', 'scipy') if m in sys.modules))")
    result = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                            env={**os.environ, 'PYTHONPATH': str(REPO)}, timeout=60)
    assert result.stdout.strip() == '[]', result.stderr
