"""Importance sampling of frames (no rclpy)."""
