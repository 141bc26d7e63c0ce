"""dibr_ros.data"""
