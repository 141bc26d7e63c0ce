"""dibr_ros.eval"""
