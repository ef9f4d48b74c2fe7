"""The recorder core: ring buffer, decisions, bag splits and their repair (no rclpy)."""
