"""Replay of recorded drives, its report and fleet replay (no rclpy)."""
