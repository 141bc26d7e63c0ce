"""dibr_ros.ros"""
