"""Python packaging for the venv (make setup) and for console scripts.

colcon builds this package with ament_cmake (package.xml), which installs the same Python package
and the executables in scripts/ under lib/importance_sampler_ros so that `ros2 run` finds them.
"""
from setuptools import find_packages, setup

package_name = 'importance_sampler_ros'

setup(
    name=package_name,
    version='0.1.0',
    packages=find_packages(include=[package_name, f'{package_name}.*']),
    python_requires='>=3.10',
    zip_safe=False,
    description='Importance sampling of camera frames for retraining, as ROS 2 nodes.',
    license='Apache-2.0',
    entry_points={
        'console_scripts': [
            'importance-sampler = importance_sampler_ros.cli:main',
            'detector_node = importance_sampler_ros.nodes.detector_node:main',
            'tracker_node = importance_sampler_ros.nodes.tracker_node:main',
            'recorder_node = importance_sampler_ros.nodes.recorder_node:main',
            'viz_node = importance_sampler_ros.nodes.viz_node:main',
        ],
    },
)
