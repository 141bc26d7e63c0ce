"""``sim_camera``: a simulated RGB-D tabletop camera (pybullet) publishing images and ground-truth meshes.

Publishes, all with one header per frame (``frame_id`` param, stamp = render time):

- ``image`` (sensor_msgs/Image rgb8), ``depth`` (32FC1 metres, NaN = no return), ``camera_info`` (K of the
  rendering projection, OpenCV convention),
- ``instance_mask`` (mono8 label map, 0 = background, i = i-th object; ``publish_instance_mask``),
- with ``compressed``: ``image/compressed`` (JPEG, ``jpeg_quality``) and ``depth/compressedDepth`` (PNG 16UC1 mm),
  image_transport's names and payloads,
- ``~/ground_truth`` (visualization_msgs/MarkerArray: the true meshes in the camera optical frame, metres).

The scene is reproducible from ``seed``; ``new_scene_every`` frames a new seeded scene is dropped
(seed + scene index). ``cache_frames`` > 0 renders that many frames once and replays them with fresh
stamps (soak tests at rates pybullet cannot render at).
"""

from __future__ import annotations

import sys

import rclpy
from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from visualization_msgs.msg import MarkerArray

from dibr_ros.ros.conversions import (
    depth_to_compressed_depth,
    make_camera_info,
    mesh_marker_array,
    numpy_to_image,
    rgb_to_compressed,
)
from dibr_ros.sim.families import apply_depth
from dibr_ros.sim.scene import CameraConfig, SceneConfig, SimFrame, TabletopScene


def parse_objects(spec: str) -> str | list[str]:
    """``objects`` parameter: a split name ("test", "ood", ...) or comma-separated URDF / mesh files."""
    spec = spec.strip()
    if not spec:
        raise ValueError("objects: empty (give a split name or comma-separated files)")
    if "," in spec or spec.lower().endswith((".urdf", ".obj", ".stl", ".ply", ".off")):
        return [s.strip() for s in spec.split(",") if s.strip()]
    return spec


def _float_range(lo: float, hi: float) -> list[FloatingPointRange]:
    return [FloatingPointRange(from_value=float(lo), to_value=float(hi), step=0.0)]


def _int_range(lo: int, hi: int) -> list[IntegerRange]:
    return [IntegerRange(from_value=int(lo), to_value=int(hi), step=1)]


class SimCameraNode(Node):
    """ROS wrapper around :class:`~dibr_ros.sim.scene.TabletopScene`."""

    def __init__(self, **kwargs):
        super().__init__("sim_camera", **kwargs)
        ro = {"read_only": True}
        params = [
            ("objects", "test", ParameterDescriptor(
                description="object set: split name (test | ood | val | train | hh_test | ..., several joined by "
                            "'+') or comma-separated URDF/mesh "
                            "files (absolute or relative to pybullet_data)", **ro)),
            ("min_objects", 1, ParameterDescriptor(description="fewest objects per scene",
                                                   integer_range=_int_range(1, 20), **ro)),
            ("max_objects", 3, ParameterDescriptor(description="most objects per scene",
                                                   integer_range=_int_range(1, 20), **ro)),
            ("seed", 0, ParameterDescriptor(description="scene seed (objects, poses)", **ro)),
            ("new_scene_every", 0, ParameterDescriptor(
                description="frames between new scenes (seed + scene index); 0 = one scene",
                integer_range=_int_range(0, 1_000_000), **ro)),
            ("mesh_scale", 1.0, ParameterDescriptor(description="metres per unit of bare mesh files",
                                                    floating_point_range=_float_range(1e-6, 1e3), **ro)),
            ("rate", 2.0, ParameterDescriptor(description="frames per second",
                                              floating_point_range=_float_range(0.01, 100.0), **ro)),
            ("width", 640, ParameterDescriptor(description="image width (px)",
                                               integer_range=_int_range(8, 4096), **ro)),
            ("height", 480, ParameterDescriptor(description="image height (px)",
                                                integer_range=_int_range(8, 4096), **ro)),
            ("fov_deg", 45.0, ParameterDescriptor(description="vertical field of view (deg)",
                                                  floating_point_range=_float_range(1.0, 170.0), **ro)),
            ("distance", 0.55, ParameterDescriptor(description="camera distance to the table centre (m)",
                                                   floating_point_range=_float_range(0.1, 5.0), **ro)),
            ("elevation_deg", 55.0, ParameterDescriptor(description="camera elevation above the table (deg)",
                                                        floating_point_range=_float_range(-89.9, 89.9), **ro)),
            ("azimuth_deg", 0.0, ParameterDescriptor(description="camera azimuth around the table (deg)", **ro)),
            ("orbit_deg_per_s", 0.0, ParameterDescriptor(
                description="slow orbit of the camera azimuth (deg per simulated second)", **ro)),
            ("renderer", "auto", ParameterDescriptor(
                description="auto (EGL if it loads, else TinyRenderer) | egl | tiny", **ro)),
            ("frame_id", "camera_color_optical_frame", ParameterDescriptor(
                description="frame_id of every published header (camera optical frame)", **ro)),
            ("reliability", "reliable", ParameterDescriptor(
                description="QoS reliability of image/depth/camera_info/instance_mask: reliable | best_effort",
                **ro)),
            ("qos_depth", 2, ParameterDescriptor(description="QoS history depth",
                                                 integer_range=_int_range(1, 100), **ro)),
            ("publish_instance_mask", True, ParameterDescriptor(
                description="also publish the true instance label map on instance_mask", **ro)),
            ("cache_frames", 0, ParameterDescriptor(
                description="render this many frames once, then replay them with fresh stamps (0 = live)",
                integer_range=_int_range(0, 10_000), **ro)),
            ("lift_min", 0.0, ParameterDescriptor(
                description="hold the first object this high (m) above the table, at least (0 with lift_max 0: "
                            "every object rests)", floating_point_range=_float_range(0.0, 2.0), **ro)),
            ("lift_max", 0.0, ParameterDescriptor(
                description="at most this high (m); the height is drawn per scene",
                floating_point_range=_float_range(0.0, 2.0), **ro)),
            ("depth_condition", "full", ParameterDescriptor(
                description="full | drop_one (one visible object per frame returns no depth, as glass or black "
                            "objects do)", **ro)),
            ("compressed", False, ParameterDescriptor(
                description="also publish image/compressed (JPEG, jpeg_quality) and depth/compressedDepth (PNG "
                            "16UC1 mm), as image_transport's compressed plugins do", **ro)),
            ("jpeg_quality", 90, ParameterDescriptor(description="JPEG quality of image/compressed",
                                                     integer_range=_int_range(1, 100), **ro)),
            ("max_frames", 0, ParameterDescriptor(
                description="stop publishing after this many frames (0 = run forever)",
                integer_range=_int_range(0, 100_000_000), **ro)),
        ]
        for name, default, desc in params:
            self.declare_parameter(name, default, desc)
        g = self.get_parameter
        reliability = g("reliability").value
        if reliability not in ("reliable", "best_effort"):
            raise ValueError(f"reliability must be 'reliable' or 'best_effort', got {reliability!r}")
        self.rate = float(g("rate").value)
        self.frame_id = str(g("frame_id").value)
        self.seed = int(g("seed").value)
        self.new_scene_every = int(g("new_scene_every").value)
        self.cache_frames = int(g("cache_frames").value)
        self.max_frames = int(g("max_frames").value)
        self.publish_mask = bool(g("publish_instance_mask").value)
        self.depth_condition = str(g("depth_condition").value)
        if self.depth_condition not in ("full", "drop_one"):
            raise ValueError(f"depth_condition must be 'full' or 'drop_one', got {self.depth_condition!r}")
        lift = (float(g("lift_min").value), float(g("lift_max").value))
        if lift[1] < lift[0]:
            raise ValueError(f"lift_max {lift[1]} must be >= lift_min {lift[0]}")
        self.camera = CameraConfig(
            width=int(g("width").value), height=int(g("height").value), fov_deg=float(g("fov_deg").value),
            distance=float(g("distance").value), elevation_deg=float(g("elevation_deg").value),
            azimuth_deg=float(g("azimuth_deg").value), orbit_deg_per_s=float(g("orbit_deg_per_s").value))
        scene_cfg = SceneConfig(
            objects=parse_objects(str(g("objects").value)), min_objects=int(g("min_objects").value),
            max_objects=int(g("max_objects").value), seed=self.seed, mesh_scale=float(g("mesh_scale").value),
            renderer=str(g("renderer").value), lift=lift if lift[1] > 0 else None)
        self.scene = TabletopScene(scene_cfg, self.camera)

        qos = QoSProfile(
            history=HistoryPolicy.KEEP_LAST, depth=int(g("qos_depth").value),
            reliability=ReliabilityPolicy.RELIABLE if reliability == "reliable" else ReliabilityPolicy.BEST_EFFORT)
        self.pub_image = self.create_publisher(Image, "image", qos)
        self.pub_depth = self.create_publisher(Image, "depth", qos)
        self.pub_info = self.create_publisher(CameraInfo, "camera_info", qos)
        self.pub_mask = self.create_publisher(Image, "instance_mask", qos) if self.publish_mask else None
        self.pub_gt = self.create_publisher(MarkerArray, "~/ground_truth", QoSProfile(depth=2))
        self.jpeg_quality = int(g("jpeg_quality").value)
        self.pub_compressed = None
        if bool(g("compressed").value):  # image_transport's names: <base topic>/<transport>
            self.pub_compressed = (
                self.create_publisher(CompressedImage, self.resolve_topic_name("image") + "/compressed", qos),
                self.create_publisher(CompressedImage, self.resolve_topic_name("depth") + "/compressedDepth", qos))
        self.frame_index = 0
        self._cache: list[SimFrame] = []
        self.timer = self.create_timer(1.0 / self.rate, self._tick)
        names = ", ".join(b.name for b in self.scene.bodies)
        self.get_logger().info(
            f"sim_camera: {len(self.scene.bodies)} objects [{names}], renderer {self.scene.renderer_name}, "
            f"{self.camera.width}x{self.camera.height} @ {self.rate:g} Hz, {reliability}, frame '{self.frame_id}'")

    def _next_frame(self) -> SimFrame:
        i = self.frame_index
        if self.cache_frames > 0:
            if len(self._cache) < self.cache_frames:
                self._cache.append(self._render(i))
            return self._cache[i % self.cache_frames]
        return self._render(i)

    def _render(self, i: int) -> SimFrame:
        if self.new_scene_every > 0 and i > 0 and i % self.new_scene_every == 0:
            self.scene.reset(self.seed + i // self.new_scene_every)
        return self.scene.render(t=i / self.rate)

    def _tick(self) -> None:
        if self.max_frames and self.frame_index >= self.max_frames:
            return
        frame = self._next_frame()
        self.frame_index += 1
        header = Image().header
        header.stamp = self.get_clock().now().to_msg()
        header.frame_id = self.frame_id
        c = self.camera
        self.pub_image.publish(numpy_to_image(frame.rgb, "rgb8", header))
        depth = frame.depth
        if self.depth_condition == "drop_one":
            depth, _ = apply_depth(frame, "drop_one", self.seed * 1000 + self.frame_index)
        self.pub_depth.publish(numpy_to_image(depth, "32FC1", header))
        if self.pub_compressed is not None:
            self.pub_compressed[0].publish(rgb_to_compressed(frame.rgb, header, self.jpeg_quality))
            self.pub_compressed[1].publish(depth_to_compressed_depth(depth, header))
        self.pub_info.publish(make_camera_info(frame.K, c.width, c.height, header))
        if self.pub_mask is not None:
            self.pub_mask.publish(numpy_to_image(frame.labels.clip(0, 255).astype("uint8"), "mono8", header))
        meshes = [(o.vertices, o.faces, o.colors) for o in frame.objects]
        markers = mesh_marker_array(header, meshes, ns="ground_truth")
        for marker, obj in zip(markers.markers[1:], frame.objects):
            marker.text = obj.name  # not drawn for TRIANGLE_LIST; tells listeners which object it is
        self.pub_gt.publish(markers)

    def destroy_node(self) -> None:
        self.scene.close()
        super().destroy_node()


def main(argv: list[str] | None = None) -> int:
    """Console script ``sim_camera`` (ROS arguments: ``--ros-args -p rate:=2.0 -p objects:=ood ...``)."""
    rclpy.init(args=argv if argv is not None else sys.argv)
    node = None
    try:
        node = SimCameraNode()
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except (ValueError, RuntimeError) as e:
        print(f"sim_camera: {e}", file=sys.stderr)
        return 1
    finally:
        if node is not None:
            node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
