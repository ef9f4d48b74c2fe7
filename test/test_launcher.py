"""`importance-sampler up`: starting, watching and stopping the node processes."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from live_graph_fixtures import REPO, cli, domain_id, ros_env

from importance_sampler_ros.nodes import launcher

DOMAIN = domain_id(1)
PROFILE_ENTRY = f'FASTDDS_DEFAULT_PROFILES_FILE={REPO}/config/fastdds_large_frames.xml'.encode()
SLEEPER = [sys.executable, '-c', 'import time; time.sleep(60)']
# exits 0 on SIGINT / SIGTERM like an rclpy node
POLITE = [sys.executable, '-c',
          'import signal, sys, time\n'
          'signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))\n'
          'try:\n    time.sleep(60)\nexcept KeyboardInterrupt:\n    sys.exit(0)\n']
STUBBORN = [sys.executable, '-c',
            'import signal, time\n'
            'signal.signal(signal.SIGINT, signal.SIG_IGN)\n'
            'signal.signal(signal.SIGTERM, signal.SIG_IGN)\n'
            'print("ready", flush=True)\n'
            'time.sleep(60)\n']
DEAF_TO_SIGINT = [sys.executable, '-c',
                  'import signal, time\n'
                  'signal.signal(signal.SIGINT, signal.SIG_IGN)\n'
                  'print("ready", flush=True)\n'
                  'time.sleep(60)\n']


def test_environment_gets_the_package_profile_unless_it_chooses_a_transport():
    profile = launcher.node_environment({})['FASTDDS_DEFAULT_PROFILES_FILE']
    assert profile == str(REPO / 'config' / 'fastdds_large_frames.xml')
    assert 'FASTDDS_BUILTIN_TRANSPORTS' not in launcher.node_environment({})
    assert launcher.node_environment({'FASTDDS_BUILTIN_TRANSPORTS': 'LARGE_DATA'}) == {
        'FASTDDS_BUILTIN_TRANSPORTS': 'LARGE_DATA', 'PYTHONUNBUFFERED': '1'}
    env = launcher.node_environment({'FASTDDS_DEFAULT_PROFILES_FILE': '/etc/mine.xml'})
    assert env['FASTDDS_DEFAULT_PROFILES_FILE'] == '/etc/mine.xml'


def test_overrides_only_for_started_nodes_and_given_options():
    overrides = launcher.parameter_overrides(
        {'image_topic': '/cam', 'output_dir': None, 'checkpoint': 'm.pt'}, ['recorder_node'])
    assert overrides == {'recorder_node': {'image_topic': '/cam'}}


@pytest.mark.ros
def test_graph_stops_every_node_on_request():
    graph = launcher.Graph({'a': POLITE, 'b': POLITE}, os.environ, shutdown_timeout_s=10)
    graph.start()
    time.sleep(0.5)
    graph.request_stop(signal.SIGINT)
    assert graph.wait(poll_s=0.05) == 0
    assert all(node.process.returncode == 0 for node in graph.nodes)


@pytest.mark.ros
def test_graph_fails_and_stops_the_rest_when_a_node_dies():
    graph = launcher.Graph({'dies': [sys.executable, '-c', 'raise SystemExit(3)'],
                            'lives': POLITE}, os.environ, shutdown_timeout_s=10)
    graph.start()
    assert graph.wait(poll_s=0.05) == 1
    # asked to stop, stopped on SIGINT (handled, or before its interpreter was up), not killed
    assert graph.nodes[1].process.returncode in (0, -signal.SIGINT)


def started_ready(graph: launcher.Graph, name: str, command: list[str]) -> subprocess.Popen:
    process = subprocess.Popen(command, stdout=subprocess.PIPE, start_new_session=True)
    assert process.stdout.readline() == b'ready\n'
    graph.nodes.append(launcher.RunningNode(name, process))
    return process


@pytest.mark.ros
def test_graph_sends_sigterm_to_a_node_that_missed_sigint():
    graph = launcher.Graph({}, os.environ, shutdown_timeout_s=1.0)
    process = started_ready(graph, 'deaf', DEAF_TO_SIGINT)
    graph.request_stop(signal.SIGINT)
    assert graph.wait(poll_s=0.05) == 0
    assert process.returncode == -signal.SIGTERM


@pytest.mark.ros
def test_graph_kills_a_node_that_ignores_the_signals():
    graph = launcher.Graph({}, os.environ, shutdown_timeout_s=0.5)
    process = started_ready(graph, 'stubborn', STUBBORN)
    graph.request_stop(signal.SIGINT)
    assert graph.wait(poll_s=0.05) == 1
    assert process.returncode == -signal.SIGKILL


def children_of(pid: int) -> list[int]:
    found = []
    for entry in Path('/proc').iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / 'stat').read_text().rsplit(')', 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(entry.name))
    return found


def wait_for_children(pid: int, count: int, timeout_s: float = 10.0) -> list[int]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = children_of(pid)
        if len(found) >= count:
            return found
        time.sleep(0.1)
    return children_of(pid)


def wait_for_environ(pid: int, entry: bytes, timeout_s: float = 10.0) -> bool:
    """Whether process `pid`'s environment holds `entry` within `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if entry in Path(f'/proc/{pid}/environ').read_bytes().split(b'\0'):
                return True
        except OSError:
            return False
        time.sleep(0.05)
    return False


@pytest.fixture
def env():
    environment = ros_env(DOMAIN)
    environment.pop('FASTDDS_DEFAULT_PROFILES_FILE', None)
    return environment


@pytest.mark.ros
def test_up_starts_nodes_with_the_yaml_and_overrides_and_stops_on_sigint(tmp_path, env):
    up = cli('up', '--skip', 'detector_node', '--output-dir', str(tmp_path / 'rec'),
             '--keep-ratio', '0.5', env=env, stderr=subprocess.PIPE, text=True)
    try:
        children = wait_for_children(up.pid, 2)
        assert len(children) == 2
        for child in children:
            # a child seen between fork and exec still shows up's own environment: poll
            assert wait_for_environ(child, PROFILE_ENTRY)
        # the recorder is up once its recording directory exists
        deadline = time.monotonic() + 20
        while not any((tmp_path / 'rec').glob('*')) and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(0.5)
        up.send_signal(signal.SIGINT)
        _, err = up.communicate(timeout=30)
    finally:
        if up.poll() is None:
            up.kill()
    assert up.returncode == 0, err
    assert 'started tracker_node' in err and 'started recorder_node' in err
    assert 'detector_node' not in err.split('overrides')[0]
    (stats,) = (tmp_path / 'rec').glob('*/stats.json')  # the recorder closed cleanly
    assert json.loads(stats.read_text())['keep_ratio'] == 0.5


@pytest.mark.ros
def test_up_forwards_sigterm(tmp_path, env):
    up = cli('up', '--skip', 'detector_node', '--skip', 'recorder_node', env=env,
             stderr=subprocess.PIPE, text=True)
    try:
        assert len(wait_for_children(up.pid, 1)) == 1
        time.sleep(1.0)
        up.send_signal(signal.SIGTERM)
        _, err = up.communicate(timeout=30)
    finally:
        if up.poll() is None:
            up.kill()
    assert up.returncode == 0, err


@pytest.mark.ros
def test_up_exits_nonzero_naming_a_bad_parameter(tmp_path, env):
    up = cli('up', '--skip', 'detector_node', '--output-dir', str(tmp_path / 'rec'),
             '--keep-ratio', '5', env=env, stderr=subprocess.PIPE, text=True)
    try:
        _, err = up.communicate(timeout=60)
    finally:
        if up.poll() is None:
            up.kill()
    assert up.returncode == 2  # refused before any node started (registry.load)
    assert "recorder_node: parameter 'keep_ratio' = 5.0: must be in" in err
    assert 'started' not in err and 'Traceback' not in err


@pytest.mark.ros
def test_up_rejects_a_missing_params_file(tmp_path, env):
    up = cli('up', '--params', str(tmp_path / 'none.yaml'), env=env, stderr=subprocess.PIPE,
             text=True)
    _, err = up.communicate(timeout=30)
    assert up.returncode == 2 and 'does not exist' in err
