"""Simulated cameras and scenes (pybullet, no rclpy): the ground truth the benchmarks and the demo score."""
