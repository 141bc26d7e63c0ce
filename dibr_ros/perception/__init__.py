"""dibr_ros.perception"""
