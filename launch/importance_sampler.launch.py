"""Launch the importance sampler beside a vehicle stack (ROS 2 Humble / Jazzy / Kilted).

    ros2 launch importance_sampler_ros importance_sampler.launch.py \
        image_topic:=/front_camera/image_raw output_dir:=/data/recordings keep_ratio:=0.05

Starts detector_node, tracker_node and recorder_node with config/importance_sampler.yaml (or
params_file:=...), and viz_node with visualize:=true; rviz:=true adds rviz2 with
config/importance_sampler.rviz (and viz_node, whose topics it shows). The launch arguments
image_topic, output_dir, checkpoint, device and keep_ratio override the YAML only when given
(empty = the YAML's value). Images are subscribed with sensor-data QoS (best effort) by the nodes.

Large images: with Fast DDS's default transports most 1242x375 rgb8 frames are lost at 30 Hz;
FASTDDS_BUILTIN_TRANSPORTS=LARGE_DATA delivers them all. The nodes get LARGE_DATA unless the
environment already sets the variable, or the fastdds_builtin_transports argument says otherwise
(e.g. DEFAULT). The camera driver (and every other process talking to the nodes: rviz2, ros2
bag, foxglove_bridge) must run with the same setting: here a process with the default transports
never matched LARGE_DATA nodes (8 of 8 tries, 30 s each).

`importance-sampler up` does the same without `ros2 launch` (for a venv without launch_ros).
Both take the nodes, the override table and each argument's type and help from the parameter
registry (importance_sampler_ros/registry.py); test/test_launch_static.py runs this file against
stand-ins of launch / launch_ros.
"""
import os

from ament_index_python.packages import get_package_share_directory
from launch.actions import DeclareLaunchArgument, OpaqueFunction, SetEnvironmentVariable
from launch.substitutions import EnvironmentVariable, LaunchConfiguration
from launch_ros.actions import Node

from importance_sampler_ros import registry
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
        )
        for name in names
    ]
    if rviz:
        config = os.path.join(get_package_share_directory(PACKAGE), *RVIZ_CONFIG)
        nodes.append(Node(package='rviz2', executable='rviz2', name='rviz2', output='screen',
                          arguments=['-d', config]))
    return nodes


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
            'fastdds_builtin_transports',
            default_value=EnvironmentVariable('FASTDDS_BUILTIN_TRANSPORTS',
                                              default_value='LARGE_DATA'),
            description='Fast DDS builtin transports of the nodes (LARGE_DATA for large images)'),
    ]
    return LaunchDescription([
        *arguments,
        SetEnvironmentVariable('FASTDDS_BUILTIN_TRANSPORTS',
                               LaunchConfiguration('fastdds_builtin_transports')),
        OpaqueFunction(function=_nodes),
    ])
