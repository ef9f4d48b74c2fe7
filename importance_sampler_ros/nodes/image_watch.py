"""The nodes' check of their image topic: publishers but nothing arriving
(transport.SilentPublisherWatch), on a 1 s timer."""
from __future__ import annotations

import time
from collections.abc import Callable

from rclpy.node import Node

from importance_sampler_ros.transport import SilentPublisherWatch

CHECK_PERIOD_S = 1.0


def watch_topic(node: Node, topic: str, received: Callable[[], int],
                warn: Callable[[str], None]) -> SilentPublisherWatch:
    """Checks `topic` every second: `received()` is the node's count of its messages so far,
    `warn` logs the warning. Returns the watch (its `silent_s` can be changed)."""
    watch = SilentPublisherWatch(topic)

    def check() -> None:
        warning = watch.check(node.count_publishers(topic), received(), time.monotonic())
        if warning:
            warn(warning)

    node.create_timer(CHECK_PERIOD_S, check)
    return watch
