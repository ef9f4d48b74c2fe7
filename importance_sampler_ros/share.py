"""Where the package's data files are: the source tree, or share/ of a ROS 2 install.

msg/, config/, models/, launch/ sit beside the Python package in the repository; colcon installs
them under <prefix>/share/importance_sampler_ros/. Every lookup of such a file goes through here,
so the nodes, the launcher and the offline tools find the same file.
"""
from __future__ import annotations

import os
from pathlib import Path

PACKAGE = 'importance_sampler_ros'
SOURCE_ROOT = Path(__file__).resolve().parents[1]


def share_path(*parts: str) -> Path:
    """The first existing `<root>/<parts>` among the source tree and each install's share/.

    Falls back to the source-tree path (which may not exist) so that an error names a real
    candidate.
    """
    source = SOURCE_ROOT.joinpath(*parts)
    if source.exists():
        return source
    for prefix in os.environ.get('AMENT_PREFIX_PATH', '').split(os.pathsep):
        if prefix:
            share = Path(prefix, 'share', PACKAGE).joinpath(*parts)
            if share.exists():
                return share
    return source
