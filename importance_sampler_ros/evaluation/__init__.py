"""Detections against ground truth: per-frame errors, mAP by bin and situation, selection metrics
(no rclpy)."""
