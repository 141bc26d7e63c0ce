"""dibr_ros: single-image 3D object meshes with DIB-R for ROS 2.

Layers (imports point one way): ``ros`` -> ``perception`` -> ``model`` -> ``render`` -> ``csrc``.
Only :mod:`dibr_ros.ros` imports rclpy; ``render`` and ``model`` need torch and numpy only.
"""

__version__ = "0.1.0"
