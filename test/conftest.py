"""Shared fixtures, and the DDS transport of the test session."""
import os

import pytest
import rclpy
from rclpy.context import Context

# Test processes exchange frames of at most 640x192, which Fast DDS's default transports carry.
# With LARGE_DATA about one graph start in six left a pair of processes that never matched here
# (docs in launch/ and launcher.py), so every process a test starts uses the defaults unless the
# test sets the variable itself; the LARGE_DATA default of `up` is tested on its own.
os.environ['FASTDDS_BUILTIN_TRANSPORTS'] = 'DEFAULT'


@pytest.fixture
def context(monkeypatch, request):
    """An rclpy context on the test module's own DDS domain (its module constant DOMAIN_ID), so
    modules that start nodes never see each other's traffic."""
    monkeypatch.setenv('ROS_DOMAIN_ID', request.module.DOMAIN_ID)
    ctx = Context()
    rclpy.init(context=ctx)
    yield ctx
    rclpy.shutdown(context=ctx)
