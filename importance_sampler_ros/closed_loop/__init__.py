"""Does retraining on the frames the product keeps beat retraining on random ones? (no rclpy)"""
