"""The graph's Fast DDS transport (transport.py): which environment the processes get, and the
warning for a topic that has publishers but delivers nothing."""
from pathlib import Path

import pytest
from conftest import spin_until
from live_graph_fixtures import REPO, domain_id

from importance_sampler_ros import transport

PROFILE = str(REPO / 'config' / 'fastdds_large_frames.xml')


def test_the_package_profile_unless_the_environment_chooses_a_transport():
    assert transport.graph_environment({'A': '1'}) == {'A': '1',
                                                       transport.PROFILES_VARIABLE: PROFILE}
    assert Path(PROFILE).is_file()
    for chosen in ({transport.BUILTIN_VARIABLE: 'LARGE_DATA'},
                   {transport.PROFILES_VARIABLE: '/etc/car.xml'}):
        assert transport.graph_environment(chosen) == chosen
        assert transport.describe(chosen) == ', '.join(f'{k}={v}' for k, v in chosen.items())
    assert transport.describe({}) == "Fast DDS's default transports"


def test_a_silent_published_topic_is_warned_about_once_per_silence():
    watch = transport.SilentPublisherWatch('/cam', silent_s=10.0)
    assert watch.check(0, 0, 0.0) is None  # nobody publishes: nothing to say
    assert watch.check(1, 0, 1.0) is None  # silence starts
    assert watch.check(1, 0, 10.9) is None
    warning = watch.check(1, 0, 11.0)
    assert warning.startswith('1 publisher(s) on /cam, but nothing arrived here for 10 s')
    assert f'{transport.PROFILES_VARIABLE}={PROFILE}' in warning
    assert watch.check(1, 0, 30.0) is None  # once
    assert watch.check(1, 5, 31.0) is None  # messages arrived: re-armed
    assert watch.check(1, 5, 32.0) is None
    assert watch.check(2, 5, 42.0).startswith('2 publisher(s)')
    assert watch.check(1, 9, 43.0) is None


@pytest.mark.ros
@pytest.mark.parametrize('ros', [domain_id(9)], indirect=True)
def test_recorder_node_warns_about_an_image_publisher_that_delivers_nothing(ros, tmp_path):
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.parameter import Parameter
    from sensor_msgs.msg import Image

    from importance_sampler_ros.nodes.recorder_node import RecorderNode

    recorder = RecorderNode(parameter_overrides=[
        Parameter('output_dir', value=str(tmp_path)), Parameter('bag_name', value='watch'),
        Parameter('stats_period_s', value=0.0)])
    recorder.image_watch.silent_s = 1.0
    logged = []
    recorder._log = lambda level, text: logged.append((level, text))
    camera = rclpy.create_node('silent_camera')
    camera.create_publisher(Image, '/camera/image_raw', 1)  # matched, never publishes
    executor = SingleThreadedExecutor()
    executor.add_node(recorder)
    try:
        spin_until(executor, lambda: logged, 'the silent-publisher warning', timeout_s=20)
    finally:
        recorder.recorder.close()
        camera.destroy_node()
        recorder.destroy_node()
    ((level, text),) = logged
    assert level == 'warning' and text.startswith('1 publisher(s) on /camera/image_raw')
