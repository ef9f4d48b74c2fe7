"""The package as colcon builds it on a ROS 2 install: ament_cmake with the Python package and the
node executables installed (the venv build skips that part), checked in a scratch prefix.

colcon's ament_cmake build is configure + build + install of CMakeLists.txt; this runs the same
steps against the ROS 2 wheels of the venv, on a copy of the package in a workspace's src/ (as
on a real install, the ROS prefix, here the venv, must not lie inside the source tree).
"""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
VENV = Path(sys.prefix)
NODES = ('detector_node', 'tracker_node', 'recorder_node', 'viz_node', 'importance-sampler')


@pytest.fixture(scope='module')
def install_prefix(tmp_path_factory):
    base = tmp_path_factory.mktemp('colcon')
    build, install = base / 'build', base / 'install'
    source = base / 'src' / 'importance_sampler_ros'
    tracked = subprocess.run(['git', 'ls-files', '--cached', '--others', '--exclude-standard'],
                             cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    for name in tracked:
        if (ROOT / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, source / name)
    env = {**os.environ, 'AMENT_PREFIX_PATH': str(VENV)}
    configure = [
        'cmake', '-S', str(source), '-B', str(build), '-DCMAKE_BUILD_TYPE=Release',
        f'-DCMAKE_PREFIX_PATH={VENV}', f'-DCMAKE_INSTALL_PREFIX={install}',
        f'-DPython3_EXECUTABLE={sys.executable}', '-DBUILD_TESTING=OFF',
    ]
    for command in (configure, ['cmake', '--build', str(build), '-j2'],
                    ['cmake', '--install', str(build)]):
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return install


def test_ros2_run_finds_the_executables(install_prefix):
    for name in NODES:
        executable = install_prefix / 'lib' / 'importance_sampler_ros' / name
        assert executable.is_file() and os.access(executable, os.X_OK), name


def test_share_holds_launch_config_models_and_msgs(install_prefix):
    share = install_prefix / 'share' / 'importance_sampler_ros'
    assert (share / 'launch' / 'importance_sampler.launch.py').is_file()
    assert (share / 'config' / 'importance_sampler.yaml').is_file()
    assert (share / 'msg' / 'DetectionArray.msg').is_file()
    assert (share / 'package.xml').is_file()
    assert (install_prefix / 'share' / 'ament_index' / 'resource_index' / 'packages' /
            'importance_sampler_ros').is_file()


def test_installed_package_imports_with_its_messages(install_prefix, tmp_path):
    site = next(install_prefix.glob('lib/python3*/site-packages'))
    env = {
        **os.environ,
        'PYTHONPATH': str(site),
        'LD_LIBRARY_PATH': os.pathsep.join([str(install_prefix / 'lib'),
                                            os.environ.get('LD_LIBRARY_PATH', '')]),
        'AMENT_PREFIX_PATH': os.pathsep.join([str(install_prefix), str(VENV)]),
    }
    code = '\n'.join([
        'import importance_sampler_ros as p, importance_sampler_ros.msg as m',
        'import importance_sampler_ros.bags.bag_io as b',
        f'assert p.__file__.startswith({str(site)!r}), p.__file__',
        'assert b.msg_dir().is_dir()',
        'print(m.DetectionArray().aggregation == "")',
    ])
    done = subprocess.run([sys.executable, '-c', code], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip() == 'True'
