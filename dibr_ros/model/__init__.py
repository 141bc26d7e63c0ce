"""dibr_ros.model"""
