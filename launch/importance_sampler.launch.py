"""Launch the importance sampler beside a vehicle stack (ROS 2 Humble / Jazzy / Kilted).

    ros2 launch importance_sampler_ros importance_sampler.launch.py \
        image_topic:=/front_camera/image_raw output_dir:=/data/recordings keep_ratio:=0.05

Starts detector_node, tracker_node and recorder_node with config/importance_sampler.yaml (or
params_file:=...), and viz_node with visualize:=true; rviz:=true adds rviz2 with
config/importance_sampler.rviz (and viz_node, whose topics it shows). The launch arguments
image_topic, output_dir, checkpoint, device and keep_ratio override the YAML only when given
(empty = the YAML's value). Images are subscribed with sensor-data QoS (best effort) by the nodes.

Large images: with Fast DDS's default transports most 1242x375 rgb8 frames are lost at 30 Hz.
The nodes (and rviz2) run with the package's Fast DDS profile config/fastdds_large_frames.xml
(shared memory with 16 MB segments + UDPv4), given as FASTDDS_DEFAULT_PROFILES_FILE, unless the
environment sets FASTDDS_DEFAULT_PROFILES_FILE or FASTDDS_BUILTIN_TRANSPORTS itself, or the
fastdds_profiles_file argument names another file. The camera driver needs the profile too
(its frames do not arrive whole from the defaults' 512 KB segments); viewers on Fast DDS's
defaults match the nodes (importance_sampler_ros/transport.py, docs/ARCHITECTURE.md "Transport").

`importance-sampler up` does the same without `ros2 launch` (for a venv without launch_ros).
Both take the nodes, the override table and each argument's type and help from the parameter
registry (importance_sampler_ros/registry.py); test/test_launch_static.py runs this file against
stand-ins of launch / launch_ros.
"""
import os

from ament_index_python.packages import get_package_share_directory
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from importance_sampler_ros import registry, transport
from launch import LaunchDescription

PACKAGE = 'importance_sampler_ros'
NODES = registry.NODE_NAMES
VIZ_NODE = registry.VIZ_NODE
RVIZ_CONFIG = ('config', 'importance_sampler.rviz')
# launch argument -> the (node, parameter) pairs it overrides when not empty
OVERRIDES = registry.OVERRIDES


def _nodes(context):
    params_file = LaunchConfiguration('params_file').perform(context)
    log_level = LaunchConfiguration('log_level').perform(context)
    rviz = LaunchConfiguration('rviz').perform(context).lower() in ('true', '1')
    visualize = rviz or LaunchConfiguration('visualize').perform(context).lower() in ('true', '1')
    names = NODES + ((VIZ_NODE,) if visualize else ())
    environment = _transport_environment(context)
    overrides = {name: {} for name in names}
    for argument, targets in OVERRIDES.items():
        text = LaunchConfiguration(argument).perform(context)
        if not text:
            continue
        value = registry.parse_override(argument, text)  # ParameterError: one line
        for node, parameter in targets:
            if node in overrides:
                overrides[node][parameter] = value
    nodes = [
        Node(
            package=PACKAGE,
            executable=name,
            name=name,
            output='screen',
            emulate_tty=True,
            parameters=[params_file, overrides[name]],
            arguments=['--ros-args', '--log-level', log_level],
            additional_env=environment,
        )
        for name in names
    ]
    if rviz:
        config = os.path.join(get_package_share_directory(PACKAGE), *RVIZ_CONFIG)
        nodes.append(Node(package='rviz2', executable='rviz2', name='rviz2', output='screen',
                          arguments=['-d', config], additional_env=environment))
    return nodes


def _transport_environment(context) -> dict:
    """The variables the nodes get on top of the launch's environment: the transport."""
    profile = LaunchConfiguration('fastdds_profiles_file').perform(context)
    if profile:
        return {transport.PROFILES_VARIABLE: profile}
    if transport.chosen_by_user(os.environ):
        return {}
    share = get_package_share_directory(PACKAGE)
    return {transport.PROFILES_VARIABLE: os.path.join(share, 'config', transport.PROFILE_FILE)}


def generate_launch_description():
    default_params = os.path.join(
        get_package_share_directory(PACKAGE), 'config', 'importance_sampler.yaml')
    arguments = [
        DeclareLaunchArgument('params_file', default_value=default_params,
                              description='ROS 2 parameter YAML for all nodes'),
        *(DeclareLaunchArgument(name, default_value='', description=registry.override_help(name))
          for name in OVERRIDES),
        DeclareLaunchArgument('visualize', default_value='false', choices=['true', 'false'],
                              description='start viz_node: debug image, markers, '
                                          'frame importance and keep ratio topics'),
        DeclareLaunchArgument('rviz', default_value='false', choices=['true', 'false'],
                              description='start rviz2 with config/importance_sampler.rviz '
                                          '(implies visualize)'),
        DeclareLaunchArgument('log_level', default_value='info',
                              choices=['debug', 'info', 'warn', 'error', 'fatal'],
                              description="the nodes' log level"),
        DeclareLaunchArgument(
            'fastdds_profiles_file', default_value='',
            description="Fast DDS XML profile of the nodes and rviz2 (empty: the package's "
                        'config/fastdds_large_frames.xml, unless FASTDDS_DEFAULT_PROFILES_FILE '
                        'or FASTDDS_BUILTIN_TRANSPORTS is set)'),
    ]
    return LaunchDescription([*arguments, OpaqueFunction(function=_nodes)])
