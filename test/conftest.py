"""Shared fixtures."""
import pytest
import rclpy
from rclpy.context import Context


@pytest.fixture
def context(monkeypatch, request):
    """An rclpy context on the test module's own DDS domain (its module constant DOMAIN_ID), so
    modules that start nodes never see each other's traffic."""
    monkeypatch.setenv('ROS_DOMAIN_ID', request.module.DOMAIN_ID)
    ctx = Context()
    rclpy.init(context=ctx)
    yield ctx
    rclpy.shutdown(context=ctx)
