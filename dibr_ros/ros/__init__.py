"""ROS 2 layer (the only package importing rclpy): message conversions, stamp matching, the perception node
(``perception_node``) and the simulated camera (``sim_camera``). Submodules are imported explicitly."""
