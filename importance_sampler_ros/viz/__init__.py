"""Debug image and marker views of the pipeline (no rclpy)."""
