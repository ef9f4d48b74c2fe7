"""Training and evaluating the default detector (no rclpy)."""
