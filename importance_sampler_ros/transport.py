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
    env = dict(os.environ if base is None else base)
    set_graph_transport(env)
    return env


def use_graph_transport() -> None:
    """This process on the graph's transport; call before rclpy.init (Fast DDS reads the
    variables when the first participant is created)."""
    set_graph_transport(os.environ)


def describe(env: Mapping[str, str]) -> str:
    """The transport variables `env` sets, for a log line."""
    shown = [f'{name}={env[name]}' for name in (PROFILES_VARIABLE, BUILTIN_VARIABLE)
             if name in env]
    return ', '.join(shown) or "Fast DDS's default transports"


SILENT_PUBLISHER_S = 10.0  # how long a published topic may stay silent here before a warning


class SilentPublisherWatch:
    """Notices a topic that has publishers but from which nothing arrives: what a camera driver
    on Fast DDS's default transports looks like to the nodes (matched, but a 1.4 MB frame never
    arrives whole; docs/ARCHITECTURE.md "Transport"). A publisher that is merely paused looks the
    same, so the text says what to check rather than what is wrong. One warning per silence."""

    def __init__(self, topic: str, silent_s: float = SILENT_PUBLISHER_S) -> None:
        self.topic = topic
        self.silent_s = silent_s
        self._received = 0
        self._silent_since: float | None = None
        self._warned = False

    def check(self, publishers: int, received: int, now: float) -> str | None:
        """`publishers` on the topic now, messages `received` so far, monotonic `now`: the
        warning to log, once, when the topic has been silent for `silent_s`; else None."""
        if publishers == 0 or received != self._received:
            self._received = received
            self._silent_since = None
            self._warned = False
            return None
        if self._silent_since is None:
            self._silent_since = now
        if self._warned or now - self._silent_since < self.silent_s:
            return None
        self._warned = True
        return (f'{publishers} publisher(s) on {self.topic}, but nothing arrived here for '
                f'{now - self._silent_since:.0f} s. If it is publishing, its transport does not '
                'carry its messages to this node: large frames need the publisher on the same '
                f'Fast DDS profile ({PROFILES_VARIABLE}={profile_path()})')
