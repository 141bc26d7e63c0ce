"""Demo on a real ROS 2 install: the simulated tabletop camera, the perception node and (optionally) RViz.

    ros2 launch dibr_ros demo.launch.py objects:=ood seed:=3 device:=cuda rviz:=true

``sim_camera`` publishes ``image``, ``depth``, ``camera_info`` (and ``/sim_camera/ground_truth``) RELIABLE,
and the node subscribes RELIABLE too (``input_reliability``): best-effort loses most full-size frames.
Same scene as ``python -m dibr_ros.demo`` (which also writes the report) for the same arguments.
"""

from launch import LaunchDescription  # noqa: I001 (ruff takes launch/ for first-party)
from launch.actions import DeclareLaunchArgument
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

PACKAGE = "dibr_ros"

ARGUMENTS = (
    ("objects", "test", "Object set: test | ood | comma-separated URDF/mesh files."),
    ("seed", "0", "Scene seed."),
    ("max_objects", "3", "Most objects per scene."),
    ("rate", "1.0", "Camera frames per second."),
    ("orbit", "8.0", "Camera orbit speed (deg per simulated second)."),
    ("renderer", "auto", "pybullet renderer: auto | egl | tiny."),
    ("device", "auto", "Inference device of the perception node: auto, cpu, cuda or cuda:N."),
    ("params_file", PathJoinSubstitution([FindPackageShare(PACKAGE), "config", "perception.yaml"]),
     "Perception node parameter file (keyed /**)."),
    ("rviz", "true", "Start RViz with config/dibr.rviz."),
    ("frame", "camera_color_optical_frame", "Camera optical frame (sim frame_id and RViz fixed frame)."),
)


def generate_launch_description() -> LaunchDescription:
    args = [DeclareLaunchArgument(name, default_value=default, description=desc)
            for name, default, desc in ARGUMENTS]
    cfg = LaunchConfiguration
    sim = Node(
        package=PACKAGE,
        executable="sim_camera",
        name="sim_camera",
        output="screen",
        emulate_tty=True,
        parameters=[{
            "objects": cfg("objects"), "seed": cfg("seed"), "max_objects": cfg("max_objects"),
            "rate": cfg("rate"), "orbit_deg_per_s": cfg("orbit"), "renderer": cfg("renderer"),
            "frame_id": cfg("frame"), "reliability": "reliable",
        }],
    )
    node = Node(
        package=PACKAGE,
        executable="perception_node",
        name="dibr_perception",
        output="screen",
        emulate_tty=True,
        parameters=[cfg("params_file"), {"device": cfg("device"), "input_reliability": "reliable",
                                         "use_depth": True}],
    )
    rviz = Node(
        package="rviz2",
        executable="rviz2",
        name="dibr_rviz",
        arguments=["-d", PathJoinSubstitution([FindPackageShare(PACKAGE), "config", "dibr.rviz"]),
                   "-f", cfg("frame")],
        condition=IfCondition(cfg("rviz")),
        output="screen",
    )
    return LaunchDescription([*args, sim, node, rviz])
