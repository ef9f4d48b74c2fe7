"""The synthetic world: drives with ground truth (no rclpy)."""
