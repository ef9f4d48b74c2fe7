"""importance_sampler_ros: keep only the camera frames worth retraining on.

The rosidl-generated message modules (importance_sampler_ros.msg) are installed next to this
package by colcon; in the project's venv they live in site-packages/importance_sampler_ros while
these sources stay in the repository, so the package path spans both directories.
"""
from pkgutil import extend_path

__path__ = extend_path(__path__, __name__)
__version__ = '0.1.0'
