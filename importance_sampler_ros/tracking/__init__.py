"""SORT tracking and near-to-far relabels (no rclpy)."""
