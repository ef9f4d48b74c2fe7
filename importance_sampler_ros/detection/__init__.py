"""The detector, its checkpoints and the per-detection importance (no rclpy)."""
