"""Launch the dibr_perception node (and optionally RViz with config/dibr.rviz).

    ros2 launch dibr_ros perception.launch.py image:=/camera/color/image_raw \
        camera_info:=/camera/color/camera_info depth:=/camera/aligned_depth_to_color/image_raw \
        device:=cuda rviz:=true frame:=camera_color_optical_frame
    ros2 launch dibr_ros perception.launch.py image:=/camera/color/image_raw image_transport:=compressed ...

Topic arguments remap the node's relative inputs; their defaults keep the relative names (resolved in
``namespace``). ``params_file`` defaults to the installed config/perception.yaml; ``device``,
``image_transport`` and ``depth_transport`` override it.
"""

from launch import LaunchDescription  # noqa: I001 (ruff takes launch/ for first-party)
from launch.actions import DeclareLaunchArgument
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

PACKAGE = "dibr_ros"

ARGUMENTS = (
    ("image", "image", "Colour image topic (rgb8, bgr8, rgba8, bgra8, mono8, 16-bit colour, yuv422, Bayer)."),
    ("camera_info", "camera_info", "CameraInfo topic of the colour camera."),
    ("depth", "depth", "Depth image aligned to the colour image (16UC1 mm or 32FC1 m); used if use_depth."),
    ("instance_mask", "instance_mask", "Instance label map (mono8/16UC1); used if use_external_masks."),
    ("namespace", "", "Namespace of the node (and of RViz)."),
    ("params_file", PathJoinSubstitution([FindPackageShare(PACKAGE), "config", "perception.yaml"]),
     "Parameter file (keyed /**)."),
    ("device", "auto", "Inference device: auto, cpu, cuda or cuda:N (overrides params_file)."),
    ("image_transport", "raw", "raw, or compressed: subscribe <image>/compressed (overrides params_file)."),
    ("depth_transport", "raw", "raw, or compressedDepth: subscribe <depth>/compressedDepth (overrides "
     "params_file)."),
    ("rviz", "false", "Start RViz with config/dibr.rviz."),
    ("frame", "camera_color_optical_frame", "RViz fixed frame: the camera's optical frame."),
)


def generate_launch_description() -> LaunchDescription:
    args = [DeclareLaunchArgument(name, default_value=default, description=desc)
            for name, default, desc in ARGUMENTS]
    namespace = LaunchConfiguration("namespace")
    node = Node(
        package=PACKAGE,
        executable="perception_node",
        name="dibr_perception",
        namespace=namespace,
        output="screen",
        emulate_tty=True,
        parameters=[LaunchConfiguration("params_file"), {name: LaunchConfiguration(name) for name in (
            "device", "image_transport", "depth_transport")}],
        remappings=[(topic, LaunchConfiguration(topic))
                    for topic in ("image", "camera_info", "depth", "instance_mask")],
    )
    rviz = Node(
        package="rviz2",
        executable="rviz2",
        name="dibr_rviz",
        namespace=namespace,
        arguments=["-d", PathJoinSubstitution([FindPackageShare(PACKAGE), "config", "dibr.rviz"]),
                   "-f", LaunchConfiguration("frame")],
        condition=IfCondition(LaunchConfiguration("rviz")),
        output="screen",
    )
    return LaunchDescription([*args, node, rviz])
