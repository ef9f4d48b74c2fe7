"""The Fast DDS transport of every process in the graph: the nodes, `up`, the launch file, `play`.

They run with the package's profile config/fastdds_large_frames.xml (shared memory with 16 MB
segments, so that a 1242x375 rgb8 frame of 1.4 MB fits, plus UDPv4; no TCP), set through
FASTDDS_DEFAULT_PROFILES_FILE, unless the environment chooses a transport itself: either
FASTDDS_DEFAULT_PROFILES_FILE or FASTDDS_BUILTIN_TRANSPORTS set leaves the environment as it is.
(An XML profile wins over FASTDDS_BUILTIN_TRANSPORTS in the same process: checked with Fast DDS
3.2.3, a participant given both opened no TCP socket.)

Why not LARGE_DATA, the setting before (docs/ARCHITECTURE.md "Transport" has the numbers): it
adds TCP for all unicast traffic; about one graph start in six once left a pair of processes
unmatched for good, and a LARGE_DATA process never matches a process on Fast DDS's defaults
(rviz2, `ros2 topic echo` started without configuration) nor one with this profile. With the
profile, processes on the defaults match, and frames published with the profile reach them.
Frames published with the defaults' 512 KB segments do not arrive whole, so the camera driver
needs the profile (or LARGE_DATA on every peer).
"""
from __future__ import annotations

import os
from collections.abc import Mapping, MutableMapping
from pathlib import Path

from importance_sampler_ros.share import share_path

PROFILES_VARIABLE = 'FASTDDS_DEFAULT_PROFILES_FILE'
BUILTIN_VARIABLE = 'FASTDDS_BUILTIN_TRANSPORTS'
PROFILE_FILE = 'fastdds_large_frames.xml'  # in config/


def profile_path() -> Path:
    """config/fastdds_large_frames.xml of the source tree, or of share/ on a ROS install."""
    return share_path('config', PROFILE_FILE)


def chosen_by_user(env: Mapping[str, str]) -> bool:
    return PROFILES_VARIABLE in env or BUILTIN_VARIABLE in env


def set_graph_transport(env: MutableMapping[str, str]) -> MutableMapping[str, str]:
    """`env` with the package's profile, unless it chooses a transport itself; returns `env`."""
    if not chosen_by_user(env):
        env[PROFILES_VARIABLE] = str(profile_path())
    return env


def graph_environment(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """A copy of `base` (default: this process's environment) with the graph's transport."""
    return dict(set_graph_transport(dict(os.environ if base is None else base)))


def use_graph_transport() -> None:
    """This process on the graph's transport; call before rclpy.init (Fast DDS reads the
    variables when the first participant is created)."""
    set_graph_transport(os.environ)


def describe(env: Mapping[str, str]) -> str:
    """The transport variables `env` sets, for a log line."""
    shown = [f'{name}={env[name]}' for name in (PROFILES_VARIABLE, BUILTIN_VARIABLE)
             if name in env]
    return ', '.join(shown) or "Fast DDS's default transports"
