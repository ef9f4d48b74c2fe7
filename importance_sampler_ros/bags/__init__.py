"""rosbag2 reading and writing, message conversion, images and frame sources (no rclpy)."""
