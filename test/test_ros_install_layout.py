"""The package as colcon builds it on a ROS 2 install, built by colcon itself in a scratch
workspace, and what `ros2 run` / `ros2 launch` would find there.

colcon (colcon-common-extensions, pinned in requirements-build.txt) goes into a scratch venv of
its own under build/, made once per pin set; the ROS 2 prefix is the project venv (its Kilted
wheels stand in for /opt/ros/<distro>, so AMENT_PREFIX_PATH and CMAKE_PREFIX_PATH point there and
its python is the one CMake builds for). The workspace holds a copy of the package in src/ (as on
a real install, the ROS prefix must not lie inside the source tree). `ros2 run` looks for
`<prefix>/lib/<package>/<executable>` of the package's prefix in the ament index, `ros2 launch`
for `<share>/launch/<file>`: both lookups are done here with ament_index_python after sourcing the
install's setup.bash, and one executable is run from there.
"""
import ast
import hashlib
import os
import shlex
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.build]

ROOT = Path(__file__).resolve().parent.parent
ROS_PREFIX = Path(sys.prefix)
PACKAGE = 'importance_sampler_ros'
REQUIREMENTS = ROOT / 'requirements-build.txt'
EXECUTABLES = ('detector_node', 'tracker_node', 'recorder_node', 'viz_node', 'importance-sampler')


def colcon_executable() -> Path:
    """colcon from a scratch venv keyed by the pins (build/colcon-venv-<hash>/)."""
    key = hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest()[:12]
    prefix = ROOT / 'build' / f'colcon-venv-{key}'
    colcon = prefix / 'bin' / 'colcon'
    if not colcon.is_file():
        shutil.rmtree(prefix, ignore_errors=True)
        venv.create(prefix, with_pip=True)
        done = subprocess.run([str(prefix / 'bin' / 'python'), '-m', 'pip', 'install', '-q',
                               '-r', str(REQUIREMENTS)], capture_output=True, text=True,
                              timeout=600)
        assert done.returncode == 0, f'installing colcon failed:\n{done.stderr[-3000:]}'
    return colcon


def ros_env(**extra: str) -> dict[str, str]:
    return {**os.environ, 'AMENT_PREFIX_PATH': str(ROS_PREFIX),
            'CMAKE_PREFIX_PATH': str(ROS_PREFIX),
            'PATH': os.pathsep.join([str(ROS_PREFIX / 'bin'), os.environ.get('PATH', '')]),
            **extra}


@pytest.fixture(scope='module')
def workspace(tmp_path_factory):
    colcon = colcon_executable()
    ws = tmp_path_factory.mktemp('colcon_ws')
    source = ws / 'src' / PACKAGE
    tracked = subprocess.run(['git', 'ls-files', '--cached', '--others', '--exclude-standard'],
                             cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    for name in tracked:
        if (ROOT / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, source / name)
    done = subprocess.run(
        [str(colcon), 'build', '--packages-select', PACKAGE, '--parallel-workers', '1',
         '--event-handlers', 'console_direct-', '--cmake-args',
         f'-DPython3_EXECUTABLE={sys.executable}', '-DBUILD_TESTING=OFF'],
        cwd=ws, env=ros_env(), capture_output=True, text=True, timeout=900)
    log = done.stdout[-3000:] + done.stderr[-3000:]
    assert done.returncode == 0, log
    assert f'Finished <<< {PACKAGE}' in done.stdout, log
    return ws


def sourced(ws: Path, command: str) -> subprocess.CompletedProcess:
    """`command` in bash after `source install/setup.bash`, the ROS prefix after the install."""
    script = (f'source {ws / "install" / "setup.bash"} && '
              f'export AMENT_PREFIX_PATH="$AMENT_PREFIX_PATH:{ROS_PREFIX}" && '
              f'export LD_LIBRARY_PATH="{ROS_PREFIX / "lib"}:${{LD_LIBRARY_PATH:-}}" && '
              f'{command}')
    env = {k: v for k, v in ros_env().items() if k not in ('AMENT_PREFIX_PATH', 'PYTHONPATH')}
    return subprocess.run(['bash', '-c', script], cwd=ws, env=env, capture_output=True,
                          text=True, timeout=300)


def test_colcon_installs_the_package_where_the_ament_index_points(workspace):
    prefix = workspace / 'install' / PACKAGE
    assert (prefix / 'share' / 'ament_index' / 'resource_index' / 'packages' / PACKAGE).is_file()
    for name in EXECUTABLES:
        executable = prefix / 'lib' / PACKAGE / name
        assert executable.is_file() and os.access(executable, os.X_OK), name
    share = prefix / 'share' / PACKAGE
    for name in ('launch/importance_sampler.launch.py', 'config/importance_sampler.yaml',
                 'config/importance_sampler.rviz', 'config/foxglove_live.json',
                 'config/foxglove_recording.json', 'config/fastdds_large_frames.xml',
                 'models/isr_small_synth.pt',
                 'msg/DetectionArray.msg', 'package.xml'):
        assert (share / name).is_file(), name


def test_ros2_run_and_ros2_launch_lookups_find_them(workspace):
    code = ('from ament_index_python.packages import get_package_prefix, '
            'get_package_share_directory as share; import os; '
            f'p = get_package_prefix("{PACKAGE}"); '
            f'print(p); print(share("{PACKAGE}")); '
            f'print(sorted(os.listdir(os.path.join(p, "lib", "{PACKAGE}"))))')
    done = sourced(workspace, f'{sys.executable} -c {shlex.quote(code)}')
    assert done.returncode == 0, done.stderr[-3000:]
    prefix, share, executables = done.stdout.strip().splitlines()
    assert Path(prefix) == workspace / 'install' / PACKAGE
    assert (Path(share) / 'launch' / 'importance_sampler.launch.py').is_file()
    assert set(EXECUTABLES) <= set(ast.literal_eval(executables))


def test_installed_executable_runs_with_the_installed_package_and_messages(workspace):
    executable = workspace / 'install' / PACKAGE / 'lib' / PACKAGE / 'importance-sampler'
    done = sourced(workspace, f'{executable} replay --help')
    assert done.returncode == 0, done.stderr[-3000:]
    assert 'usage: importance-sampler replay' in done.stdout
    code = ('import importance_sampler_ros as p, importance_sampler_ros.msg as m, '
            'importance_sampler_ros.bags.bag_io as b, importance_sampler_ros.transport as t; '
            'print(p.__file__); print(b.msg_dir()); print(m.DetectionArray().aggregation == ""); '
            'print(t.profile_path())')
    done = sourced(workspace, f'cd {workspace} && {sys.executable} -c {shlex.quote(code)}')
    assert done.returncode == 0, done.stderr[-3000:]
    module, msg_dir, ok, profile = done.stdout.strip().splitlines()
    assert module.startswith(str(workspace / 'install')), module
    assert msg_dir.startswith(str(workspace / 'install')), msg_dir
    assert ok == 'True'
    # the Fast DDS profile the nodes give themselves, from the install's share/
    assert Path(profile) == workspace / 'install' / PACKAGE / 'share' / PACKAGE / 'config' / \
        'fastdds_large_frames.xml'
