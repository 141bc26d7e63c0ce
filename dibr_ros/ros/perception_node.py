"""ROS 2 node ``dibr_perception``: camera image (+ depth, + instance mask) -> object meshes and point clouds.

Subscribes (relative names, remap them): ``image``, ``camera_info``, ``depth`` (``use_depth``),
``instance_mask`` (``use_external_masks``). Publishes ``~/meshes`` (MarkerArray), ``~/points``
(PointCloud2), ``~/debug_image`` (rgb8) and ``/diagnostics``; every output carries the input image's header.

Threading: the executor thread only validates metadata, matches stamps and drops the matched set into a
one-item slot; a worker thread takes the *newest* set, runs the pipeline and publishes. Frames that arrive
while the worker is busy replace the waiting one and are counted as drops, so the node never works through
a backlog of stale frames. While someone watches ``~/debug_image``, the worker hands each published frame to
an overlay thread the same way (newest wins, skips counted as ``frames_debug_dropped``): the overlay never
delays the meshes and points.

Parameters are declared from the module-level table ``PARAMETERS`` (see ``config/perception.yaml``).
"""

from __future__ import annotations

import dataclasses
import math
import re
import sys
import threading
import time
from dataclasses import dataclass

import cv2
import numpy as np
import rclpy
import rclpy.exceptions
import rclpy.logging
from diagnostic_msgs.msg import DiagnosticArray
from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, SetParametersResult
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2
from visualization_msgs.msg import MarkerArray

from ..perception.geometry import check_plane, plane_from_pose
from ..perception.pipeline import PerceptionPipeline, PipelineConfig
from ..perception.rectify import RectifierCache, has_distortion
from . import conversions as conv
from .diagnostics import NodeStats
from .frame_loss import FrameLossMonitor
from .sync import LatestSlot, make_matcher, stamp_ns

try:  # Iron and newer
    from rclpy.event_handler import SubscriptionEventCallbacks
except ImportError:  # Humble
    from rclpy.qos_event import SubscriptionEventCallbacks

try:
    from rclpy.executors import ExternalShutdownException
except ImportError:  # very old rclpy: shutdown surfaces as KeyboardInterrupt only
    ExternalShutdownException = KeyboardInterrupt

__all__ = ["INPUT_TOPICS", "NODE_NAME", "OUTPUT_TOPICS", "PARAMETERS", "PIPELINE_PARAMETERS", "ParamSpec",
           "PerceptionNode", "main"]

NODE_NAME = "dibr_perception"
INPUT_TOPICS = ("image", "camera_info", "depth", "instance_mask")  # relative, remappable
OUTPUT_TOPICS = ("meshes", "points", "debug_image")  # private: ~/<name>
COLOR_ENCODINGS = conv.COLOR_ENCODINGS
DEPTH_ENCODINGS = ("16UC1", "mono16", "32FC1")
MASK_ENCODINGS = ("mono8", "8UC1", "16UC1", "mono16")


@dataclass(frozen=True)
class ParamSpec:
    """One node parameter: type = type(default); ``low``/``high`` a numeric range; ``choices`` for strings."""

    name: str
    default: object
    description: str
    read_only: bool = False
    low: float | None = None
    high: float | None = None
    choices: tuple[str, ...] | None = None

    def descriptor(self) -> ParameterDescriptor:
        d = ParameterDescriptor(name=self.name, description=self.description, read_only=self.read_only)
        if self.choices:
            d.additional_constraints = "one of: " + ", ".join(self.choices)
        if self.low is not None and isinstance(self.default, float):
            d.floating_point_range = [FloatingPointRange(from_value=float(self.low), to_value=float(self.high),
                                                         step=0.0)]
        elif self.low is not None and isinstance(self.default, int) and not isinstance(self.default, bool):
            d.integer_range = [IntegerRange(from_value=int(self.low), to_value=int(self.high), step=1)]
        return d


def _whole_numbers_as_doubles(params: list) -> list:
    """Pre-set callback: an INTEGER value for a double parameter becomes that DOUBLE (ROS 2 would refuse it
    with "Wrong parameter type"), an INTEGER_ARRAY for a double array a DOUBLE_ARRAY; everything else
    passes unchanged to the checks."""
    return [_as_double(p) for p in params]


def _as_double(p):
    if p.name in _DOUBLE_PARAMS and p.type_ == Parameter.Type.INTEGER:
        return Parameter(p.name, Parameter.Type.DOUBLE, float(p.value))
    if p.name in _DOUBLE_ARRAY_PARAMS and p.type_ == Parameter.Type.INTEGER_ARRAY:
        return Parameter(p.name, Parameter.Type.DOUBLE_ARRAY, [float(v) for v in p.value])
    return p


def known_plane(value) -> tuple[np.ndarray, float] | None:
    """The ``table_plane`` parameter -> the pipeline's plane ``(n, d)``, None for all zeros (not known).
    ValueError naming the parameter for anything else that is not a plane below the camera."""
    v = [float(x) for x in value]
    if len(v) == 4 and not any(v):
        return None
    try:
        return check_plane(v)
    except ValueError as exc:
        raise ValueError(f"parameter table_plane={v}: {exc} ([0, 0, 0, 0] = not known)") from None


P = ParamSpec
# Node parameters (restart-needing ones read-only). Values here = config/perception.yaml.
NODE_PARAMETERS = (
    P("device", "auto", "Inference device: auto (cuda if available), cpu, cuda or cuda:N.", True,
      choices=("auto", "cpu", "cuda", "cuda:N")),
    P("strict_device", False, "Fail at startup instead of falling back to CPU when the requested CUDA "
      "device is unavailable.", True),
    P("weights", "", "Checkpoint path; empty = the shipped dibr_ros/weights/default.pt.", True),
    P("cpu_threads", 0, "torch intra-op threads on CPU; 0 = torch default.", True, 0, 256),
    P("use_depth", True, "Subscribe to 'depth' (aligned to 'image'; 16UC1 mm or 32FC1 m) and use it for "
      "segmentation and metric placement. false = RGB-only (size/distance assumption).", True),
    P("use_external_masks", False, "Subscribe to 'instance_mask' (mono8/16UC1 label map, 0 = background) "
      "and use it instead of the built-in segmentation.", True),
    P("rectify", "auto", "Distorted cameras (CameraInfo with a non-zero D): auto = undistort image (linear), "
      "depth and masks (nearest) to the pinhole camera P (else K) with maps built once per calibration; off = "
      "use the images as they are (said once in the log). Prefer image_rect topics where a driver has them.",
      True, choices=("auto", "off")),
    P("image_transport", "raw", "How 'image' arrives: raw (sensor_msgs/Image) or compressed (image_transport's "
      "JPEG/PNG sensor_msgs/CompressedImage on <image>/compressed, e.g. a bag recorded with compressed images "
      "only); decoded in the worker, so frames dropped newest-wins are never decoded.", True,
      choices=("raw", "compressed")),
    P("depth_transport", "raw", "How 'depth' arrives: raw or compressedDepth (image_transport's PNG "
      "sensor_msgs/CompressedImage on <depth>/compressedDepth, 16UC1 or quantised 32FC1).", True,
      choices=("raw", "compressedDepth")),
    P("table_plane", [0.0, 0.0, 0.0, 0.0], "The table plane in the camera optical frame, if the robot knows it "
      "(camera mounting, TF): [a, b, c, d] with a x + b y + c z + d = height above the table (m, the normal "
      "pointing to the camera, any scale); [0, 0, 0, 0] = not known. Used where the depth gives none: with an "
      "RGB-only camera (use_depth false, or no depth on an object) each object stands on it, metric instead "
      "of the default_object_size assumption. A plane measured in the depth is preferred."),
    P("table_frame", "", "A TF frame whose z = 0 plane is the table (e.g. a table or base frame at table height, "
      "z up): looked up per frame in the image's frame (tf2_ros, when installed) and used as table_plane is; "
      "a failed lookup falls back to table_plane and is said (throttled). Empty = off.", True),
    P("depth_scale", 0.001, "Metres per unit of 16UC1/mono16 depth (REP 118: millimetres).", False, 1e-6, 1.0),
    P("sync_exact", False, "Pair image/depth/mask only on identical stamps (else approximate, sync_slop).",
      True),
    P("sync_slop", 0.05, "Approximate sync: max stamp difference (s) between image, depth and mask.", True,
      0.0, 2.0),
    P("sync_queue_size", 5, "Messages kept per input stream while waiting for partners.", True, 1, 100),
    P("input_qos_depth", 1, "Subscription queue depth of every input (1 = never queue stale frames).", True,
      1, 100),
    P("input_reliability", "auto", "Input QoS reliability: auto (per input, reliable while every publisher of "
      "it is reliable, else best_effort; re-checked every second, as ros2 topic echo adapts), best_effort "
      "(matches any publisher) or reliable (needs a reliable publisher).", True,
      choices=("auto", "best_effort", "reliable")),
    P("marker_lifetime", 0.0, "Lifetime (s) of the mesh markers; 0 = until the next DELETEALL.", False,
      0.0, 3600.0),
    P("publish_meshes", True, "Publish ~/meshes (MarkerArray)."),
    P("publish_points", True, "Publish ~/points (PointCloud2)."),
    P("publish_debug_image", True, "Publish ~/debug_image (rgb8 overlay), drawn only while it has a "
      "subscriber, after the meshes and points, on its own thread (newest frame wins)."),
    P("diagnostic_period", 1.0, "Period (s) of the /diagnostics status.", True, 0.1, 60.0),
    P("error_throttle", 5.0, "Repeat the same input error in the log at most once per this many seconds.",
      False, 0.0, 3600.0),
)
# Parameters handed to PipelineConfig under the same names (changeable at run time); defaults are its own.
_PC = {f.name: f.default for f in dataclasses.fields(PipelineConfig)}
PIPELINE_PARAMETERS = (
    P("segmentation", _PC["segmentation"], "Segmenter: auto (labels if external masks, else depth if >= 10 % "
      "valid, else colour), depth, color or labels.", choices=("auto", "depth", "color", "labels")),
    P("depth_stride", _PC["depth_stride"], "Depth segmentation: pixel subsampling for plane fit and "
      "clustering.", False, 1, 64),
    P("plane_distance", _PC["plane_distance"], "Depth segmentation: RANSAC table-plane inlier distance (m).",
      False, 1e-4, 1.0),
    P("min_height", _PC["min_height"], "Depth segmentation: points nearer the plane than this (m) are table "
      "(raised to 3 sigma of the table's measured depth noise).", False, 0.0, 1.0),
    P("cluster_distance", _PC["cluster_distance"], "Depth segmentation: depth jump (m) separating objects.",
      False, 1e-4, 1.0),
    P("max_depth", _PC["max_depth"], "Depth segmentation: depth beyond this (m) is ignored.", False,
      0.01, 1000.0),
    P("min_object_size", _PC["min_object_size"], "Depth segmentation: minimum observed 3D extent (m).", False,
      0.0, 10.0),
    P("max_object_size", _PC["max_object_size"], "Depth segmentation: maximum observed 3D extent (m).", False,
      1e-3, 100.0),
    P("min_object_pixels", _PC["min_object_pixels"], "Minimum object mask area (pixels).", False,
      0, 100_000_000),
    P("color_split", _PC["color_split"], "Depth segmentation: a segment whose pixels form two regions this "
      "far apart in chromaticity ((r, g) / (r + g + b)) is split in two (touching objects without a depth "
      "jump); 0 = off.", False, 0.0, 1.0),
    P("color_merge", _PC["color_merge"], "Depth segmentation: segments this near in median chromaticity whose "
      "points come within merge_gap are joined (pieces of one object cut apart by its own depth jumps); "
      "0 = off.", False, 0.0, 1.0),
    P("merge_gap", _PC["merge_gap"], "Depth segmentation: largest distance (m) between the nearest points of "
      "two pieces color_merge joins.", False, 1e-4, 1.0),
    P("max_objects", _PC["max_objects"], "Maximum objects per frame (largest first).", False, 1, 1000),
    P("color_threshold", _PC["color_threshold"], "Colour segmentation: Lab distance from the background "
      "model that counts as object.", False, 0.1, 400.0),
    P("color_stride", _PC["color_stride"], "Colour segmentation: pixel subsampling.", False, 1, 64),
    P("max_area_fraction", _PC["max_area_fraction"], "Colour segmentation: larger foreground regions (fraction "
      "of the image) are rejected.", False, 0.01, 1.0),
    P("crop_size", _PC["crop_size"], "Side (px) of the square network input; 0 = the model's input size.",
      False, 0, 2048),
    P("crop_padding", _PC["crop_padding"], "Crop margin per side, fraction of the longer box side.", False,
      0.0, 2.0),
    P("default_distance", _PC["default_distance"], "RGB-only assumption: camera-to-object-centre distance (m), "
      "used when default_object_size is 0.", False, 0.01, 1000.0),
    P("default_object_size", _PC["default_object_size"], "RGB-only assumption: object bounding-sphere "
      "diameter (m); 0 = use default_distance.", False, 0.0, 100.0),
    P("min_depth_points", _PC["min_depth_points"], "Objects with fewer valid depth pixels are placed "
      "RGB-only.", False, 0, 1_000_000),
    P("complete_with_depth", _PC["complete_with_depth"], "Correct each mesh with the measured depth: align it "
      "to the object's points, rest it on the table plane, carve it out of space the camera sees through, move "
      "its front onto the measured surface."),
    P("depth_holes", _PC["depth_holes"], "Also detect objects the depth camera returns nothing for (holes in the "
      "depth on the table: glass, black) and stand each on the table plane."),
    P("completion_margin", _PC["completion_margin"], "Depth tolerance (m) for 'the camera sees this point' "
      "(completion and cloud fusion).", False, 1e-4, 0.5),
    P("support_contact", _PC["support_contact"], "An object whose lowest measured point is at most this high "
      "(m) above the table rests on it.", False, 0.0, 1.0),
    P("hidden_surface", _PC["hidden_surface"], "Source of the surface the camera cannot see in ~/points: support "
      "(an object resting on the table fills the space between its measured surface and the table; other "
      "objects use the mesh), mesh (the completed mesh) or fused (support plus the mesh's hidden surface the "
      "support volume does not reach).", choices=("support", "mesh", "fused")),
    P("support_cell", _PC["support_cell"], "Grid pitch and sample spacing (m) of the support volume.", False,
      0.0005, 0.05),
    P("fused_max_gap", _PC["fused_max_gap"], "With hidden_surface fused: the network's hidden surface is added "
      "up to this far (m) from the support volume and the measured points.", False, 0.001, 1.0),
    P("support_carve", _PC["support_carve"], "Support-volume samples farther than this (m) outside the "
      "network's completed mesh are dropped (under handles and rims); 0 = off.", False, 0.0, 1.0),
    P("mesh_fit_iterations", _PC["mesh_fit_iterations"], "With the support volume, the published mesh is "
      "shrink-wrapped onto the object's cloud in this many iterations (the network's vertices, faces and "
      "colours kept); 0 = the completed network mesh as is.", False, 0, 100),
    P("points_per_object", _PC["points_per_object"], "Points sampled on each completed mesh surface for "
      "~/points.", False, 0, 1_000_000),
    P("add_observed_points", _PC["add_observed_points"], "~/points holds each object's measured depth points "
      "and its completed surface only where the camera cannot see it (else the surface samples alone)."),
    P("max_observed_points", _PC["max_observed_points"], "At most this many observed points per object "
      "(uniformly subsampled).", False, 0, 10_000_000),
    P("seed", _PC["seed"], "Seed of the surface sampling (fixed: clouds are repeatable).", False, 0, 2**31 - 1),
    P("debug_renderer", _PC["debug_renderer"], "Debug overlay renderer: auto (DIB-R if importable, else "
      "OpenCV), dibr or opencv.", choices=("auto", "dibr", "opencv")),
)
# The pipeline's debug_image switch is driven by the node's publish_debug_image.
_NODE_TO_PIPELINE = {"publish_debug_image": "debug_image"}
PARAMETERS = NODE_PARAMETERS + PIPELINE_PARAMETERS
_DOUBLE_PARAMS = frozenset(p.name for p in PARAMETERS if isinstance(p.default, float))
_DOUBLE_ARRAY_PARAMS = frozenset(p.name for p in PARAMETERS if isinstance(p.default, list))


class StartupError(RuntimeError):
    """A configuration problem that stops the node at startup (one-line reason)."""


def _qos_input(depth: int, reliability: str) -> QoSProfile:
    rel = ReliabilityPolicy.RELIABLE if reliability == "reliable" else ReliabilityPolicy.BEST_EFFORT
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=depth, reliability=rel,
                      durability=DurabilityPolicy.VOLATILE)


def publishers_reliable(infos) -> bool | None:
    """Whether every publisher in ``infos`` (``Node.get_publishers_info_by_topic``) is RELIABLE; None without
    publishers. A reliable reader matches only reliable writers, and it is what serves frames too large for
    best-effort delivery (a best-effort reader never asks again for a lost fragment)."""
    if not infos:
        return None
    return all(i.qos_profile.reliability == ReliabilityPolicy.RELIABLE for i in infos)


def _qos_latched() -> QoSProfile:
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.RELIABLE,
                      durability=DurabilityPolicy.TRANSIENT_LOCAL)


def resolve_device(requested: str, strict: bool) -> tuple[str, str | None]:
    """(torch device string, warning or None). ``StartupError`` for malformed names or strict failures."""
    import torch

    req = requested.strip().lower()
    if req == "auto":
        return ("cuda:0" if torch.cuda.is_available() else "cpu"), None
    if req == "cpu":
        return "cpu", None
    if req == "cuda" or (req.startswith("cuda:") and req[5:].isdigit()):
        index = int(req[5:]) if ":" in req else 0
        if torch.cuda.is_available() and index < torch.cuda.device_count():
            return f"cuda:{index}", None
        why = ("CUDA is not available" if not torch.cuda.is_available()
               else f"only {torch.cuda.device_count()} CUDA device(s)")
        if strict:
            raise StartupError(f"device '{requested}' requested but {why} (strict_device=true)")
        return "cpu", f"device '{requested}' requested but {why}: falling back to cpu (strict_device=false)"
    raise StartupError(f"invalid device '{requested}': use auto, cpu, cuda or cuda:N")


def _device_description(device: str) -> str:
    import torch

    if device.startswith("cuda"):
        idx = torch.device(device).index or 0
        free, total = torch.cuda.mem_get_info(idx)
        return f"{device} ({torch.cuda.get_device_name(idx)}, {free / 2**30:.1f} of {total / 2**30:.1f} GiB free)"
    return f"cpu ({torch.get_num_threads()} torch threads)"


def depth_to_metres(depth: np.ndarray, encoding: str, scale: float) -> np.ndarray:
    """(H, W) float32 metres; invalid (0, NaN, inf, negative) -> 0."""
    d = depth.astype(np.float32)
    if encoding in ("16UC1", "mono16"):
        d *= np.float32(scale)
    d[~(np.isfinite(d) & (d > 0))] = 0.0
    return d


class InputError(ValueError):
    """A bad input message: ``topic`` and ``kind`` (throttling key) plus the one-line reason."""

    def __init__(self, topic: str, kind: str, reason: str):
        super().__init__(reason)
        self.topic, self.kind = topic, kind


class PerceptionNode(Node):
    """The perception node; see the module docstring. ``close()`` stops the worker (call before destroy)."""

    def __init__(self, **node_kwargs):
        super().__init__(NODE_NAME, **node_kwargs)
        self._log = self.get_logger()
        self._throttle: dict[tuple[str, str, str], float] = {}
        self._topics: dict[str, str] = {}  # stream -> resolved topic name, for log lines
        self._inputs: dict[str, tuple] = {}  # stream -> (message type, callback)
        self._subs: dict = {}  # stream -> its subscription now
        self._reliable: dict[str, bool] = {}  # stream -> subscribed RELIABLE now
        self.stats = NodeStats()
        self._loss = FrameLossMonitor()  # camera_info stamps whose image never arrived (lost in transport)
        self._stop = threading.Event()
        self._slot = LatestSlot()
        self._overlay_slot = LatestSlot()  # published frames waiting for their debug image
        self._arrivals: dict[int, float] = {}  # image stamp (ns) -> arrival time, for image_to_points latency
        self._arrivals_lock = threading.Lock()
        self._info: CameraInfo | None = None  # latest CameraInfo and its K (None if that one was invalid)
        self._info_K: np.ndarray | None = None
        self._rectifiers = RectifierCache()  # undistortion maps of the latest calibration (rectify: auto)
        self._distortion_said = False  # rectify: off with a distorted camera: said once
        self._depth_resize_said = False  # registered depth of another resolution: said once
        self._last_image_ns: int | None = None
        self._unmatched_since: float | None = None  # first image arrival not yet matched to its partners

        # Whole numbers for double parameters, as `ros2 param set ... 20` and YAML `max_depth: 20` send them.
        overrides = getattr(self, "_parameter_overrides", {})
        for name, prm in list(overrides.items()):
            overrides[name] = _as_double(prm)
        for spec in PARAMETERS:
            self.declare_parameter(spec.name, spec.default, spec.descriptor())
        self.p = {spec.name: self.get_parameter(spec.name).value for spec in PARAMETERS}
        self._check_choices(self.p)
        try:
            self._plane = known_plane(self.p["table_plane"])
        except ValueError as exc:
            raise StartupError(str(exc)) from None
        self.error_throttle = float(self.p["error_throttle"])
        self._tf_buffer = self._make_tf_buffer()

        self._setup_device_and_model()
        self._pipeline = self._make_pipeline(self.p)
        self._warm_up()
        self.add_pre_set_parameters_callback(_whole_numbers_as_doubles)
        self.add_on_set_parameters_callback(self._on_set_parameters)

        # Outputs.
        self._pub_meshes = self.create_publisher(MarkerArray, "~/meshes", _qos_latched())
        self._pub_points = self.create_publisher(PointCloud2, "~/points", _qos_latched())
        self._pub_debug = self.create_publisher(Image, "~/debug_image", QoSProfile(
            depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.VOLATILE))
        self._pub_det, self._vision_msgs = self._make_detections_publisher()
        self._updater = self._make_updater()
        self._pub_diag = None if self._updater else self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self._cdr = conv.CdrMarkerSerializer()
        self._fast_markers = self._cdr.verify()
        if not self._fast_markers:
            self._log.warning("fast MarkerArray serialization does not match this distro/RMW: using messages")

        # Inputs.
        streams = ["image"]
        self._compressed = {"image": self.p["image_transport"] == "compressed",
                            "depth": self.p["depth_transport"] == "compressedDepth"}
        self._add_input("image", CompressedImage if self._compressed["image"] else Image, self._on_image)
        self._add_input("camera_info", CameraInfo, self._on_info)
        if self.p["use_depth"]:
            self._add_input("depth", CompressedImage if self._compressed["depth"] else Image,
                            lambda m: self._on_aux("depth", m, DEPTH_ENCODINGS))
            streams.append("depth")
            self._log.info(f"objects with < min_depth_points valid depth pixels are placed RGB-only: "
                           f"{self._pipeline.rgb_assumption}")
        elif self._plane is not None or self._tf_buffer is not None:
            where = f"TF frame '{self.p['table_frame']}'" if self._tf_buffer is not None else "table_plane"
            self._log.info(f"use_depth=false: RGB-only placement, each object standing on the table plane "
                           f"({where}; else {self._pipeline.rgb_assumption})")
        else:
            self._log.info(f"use_depth=false: RGB-only placement, {self._pipeline.rgb_assumption} (set "
                           "table_plane or table_frame for metric placement on the table)")
        if self.p["use_external_masks"]:
            self._add_input("instance_mask", Image, lambda m: self._on_aux("instance_mask", m, MASK_ENCODINGS))
            streams.append("instance_mask")
        self._streams = tuple(streams)
        self._matcher = make_matcher(streams, self.p["sync_slop"], self.p["sync_exact"], self.p["sync_queue_size"])

        self._diag_timer = self.create_timer(float(self.p["diagnostic_period"]), self._diagnostics_tick)
        self._qos_timer = None
        if self.p["input_reliability"] == "auto":
            self._adapt_input_qos()  # publishers already up: their QoS from the first frame on
            self._qos_timer = self.create_timer(1.0, self._adapt_input_qos)
        self._worker = threading.Thread(target=self._work, name="dibr_perception_worker", daemon=True)
        self._worker.start()
        self._overlay_worker = threading.Thread(target=self._draw_overlays, name="dibr_perception_overlay",
                                                daemon=True)
        self._overlay_worker.start()
        self._log.info(f"ready: inputs {', '.join(self._topics.values())} ({self.p['input_reliability']}, "
                       f"depth {self.p['input_qos_depth']}); outputs {self._pub_meshes.topic_name}, "
                       f"{self._pub_points.topic_name}, {self._pub_debug.topic_name}")

    # ------------------------------------------------------------------------------------------- setup
    @staticmethod
    def _check_choices(values: dict) -> None:
        for spec in PARAMETERS:
            if spec.choices and spec.name != "device" and values[spec.name] not in spec.choices:
                raise StartupError(f"parameter {spec.name}='{values[spec.name]}' must be one of "
                                   f"{', '.join(spec.choices)}")

    def _setup_device_and_model(self) -> None:
        import torch

        from dibr_ros.model.predictor import Predictor, default_weights_path

        if self.p["cpu_threads"] > 0:
            torch.set_num_threads(int(self.p["cpu_threads"]))
        device, warning = resolve_device(self.p["device"], self.p["strict_device"])
        if warning:
            self._log.warning(warning)
        path = self.p["weights"] or default_weights_path()
        try:
            self.predictor = Predictor.load(path, device=device)
        except (ValueError, OSError) as exc:
            raise StartupError(f"cannot load weights '{path}': {exc}") from None
        self.device = device
        self.stats.device = _device_description(device)
        self._log.info(f"device: {self.stats.device}; weights {path}")

    def _warm_up(self) -> None:
        """Run the whole pipeline twice on a small synthetic tabletop frame: the first real frame must not pay
        for lazy imports (open3d, OpenCV), allocator growth or kernel selection. Logs the second run's time."""
        from dibr_ros.perception.synthetic import tabletop_scene

        frame, _, K, _ = tabletop_scene(n_objects=1, seed=0, width=160, height=120)
        depth = frame["depth"] if self.p["use_depth"] else None
        labels = frame["labels"] if self.p["use_external_masks"] else None
        self._pipeline.process(frame["rgb"], K, depth, labels)
        t0 = time.perf_counter()
        result = self._pipeline.process(frame["rgb"], K, depth, labels)
        self._log.info(f"warm-up: synthetic 160x120 frame, {len(result.objects)} object, "
                       f"{(time.perf_counter() - t0) * 1e3:.1f} ms (predict {result.timings['predict']:.1f} ms)")

    def _make_pipeline(self, values: dict) -> PerceptionPipeline:
        cfg = {spec.name: values[spec.name] for spec in PIPELINE_PARAMETERS}
        cfg.update({dst: values[src] for src, dst in _NODE_TO_PIPELINE.items()})
        return PerceptionPipeline(self.predictor, PipelineConfig.from_dict(cfg))

    def _on_set_parameters(self, params) -> SetParametersResult:
        new = dict(self.p)
        new.update({prm.name: prm.value for prm in params})
        try:
            self._check_choices(new)
            plane = known_plane(new["table_plane"])
            pipeline = self._make_pipeline(new)
        except (ValueError, TypeError, StartupError) as exc:
            return SetParametersResult(successful=False, reason=str(exc))
        self.p, self._pipeline, self._plane = new, pipeline, plane
        self.error_throttle = float(new["error_throttle"])
        return SetParametersResult(successful=True)

    def _add_input(self, stream: str, msg_type, callback) -> None:
        """Subscribe input ``stream`` (its topic has the same name, remappable) with ``input_reliability``
        (auto starts best-effort, which matches any publisher, until :meth:`_adapt_input_qos` looks)."""
        self._inputs[stream] = (msg_type, callback)
        self._set_input_reliability(stream, self.p["input_reliability"] == "reliable")

    def _set_input_reliability(self, stream: str, reliable: bool) -> None:
        msg_type, callback = self._inputs[stream]
        old = self._subs.pop(stream, None)
        if old is not None:
            self.destroy_subscription(old)
        qos = _qos_input(int(self.p["input_qos_depth"]), "reliable" if reliable else "best_effort")
        topic = stream
        if msg_type is CompressedImage:  # image_transport's convention: <base topic, remapped>/<transport>
            topic = self.resolve_topic_name(stream) + ("/compressed" if stream == "image" else "/compressedDepth")
        self._subs[stream] = sub = self._subscribe(msg_type, topic, qos, callback)
        self._reliable[stream] = reliable
        self._topics[stream] = sub.topic_name

    def _adapt_input_qos(self) -> None:
        """input_reliability auto: subscribe each input reliable while all its publishers are reliable, else
        best-effort (a reliable reader would not match a best-effort publisher). Said once per change."""
        for stream in list(self._subs):
            topic = self._topics[stream]
            want = publishers_reliable(self.get_publishers_info_by_topic(topic))
            if want is None or want == self._reliable[stream]:
                continue
            self._set_input_reliability(stream, want)
            self._log.info(f"[{topic}] input_reliability auto: subscribed "
                           + ("reliable (every publisher is reliable)" if want else
                              "best_effort (a publisher is best-effort)"))

    def input_reliability(self) -> dict[str, str]:
        """stream -> "reliable" or "best_effort": the QoS each input is subscribed with now."""
        return {k: "reliable" if v else "best_effort" for k, v in self._reliable.items()}

    def _subscribe(self, msg_type, topic: str, qos: QoSProfile, callback):
        def incompatible(event, topic=topic):
            if self.p["input_reliability"] == "auto":
                return  # a best-effort publisher came up while subscribed reliable: the next check follows it
            self._report(topic, "qos", f"incompatible QoS with a publisher (policy {event.last_policy_kind}); "
                         f"input_reliability={self.p['input_reliability']}", warn=True)

        def guarded(msg, topic=topic):
            try:
                callback(msg)
            except Exception as exc:  # an exception escaping a callback would end rclpy.spin
                self.stats.count("failed")
                self._report(topic, "callback", f"internal error handling a message: {type(exc).__name__}: {exc}")

        return self.create_subscription(msg_type, topic, guarded, qos,
                                        event_callbacks=SubscriptionEventCallbacks(incompatible_qos=incompatible))

    # ------------------------------------------------------------------------------------------ logging
    def _report(self, topic: str, kind: str, reason: str, warn: bool = False) -> None:
        """Log ``[topic] reason`` at most once per ``error_throttle`` s per (topic, kind, problem); record it."""
        name = self._topics.get(topic, topic)
        text = f"[{name}] {reason}"
        self.stats.error(text)
        now = time.monotonic()
        key = (topic, kind, re.sub(r"\d+", "#", reason))  # same problem, other numbers: one line per period
        if now - self._throttle.get(key, -math.inf) < self.error_throttle:
            return
        self._throttle[key] = now
        # Separate call sites: rclpy refuses one call site logging at two severities.
        if warn:
            self._log.warning(text)
        else:
            self._log.error(text)

    # ---------------------------------------------------------------------------------------- callbacks
    def _on_info(self, msg: CameraInfo) -> None:
        self._loss.info(stamp_ns(msg), msg.width, msg.height, time.monotonic())
        try:
            K = conv.camera_info_to_K(msg)
        except ValueError as exc:
            self._report("camera_info", "invalid", f"{exc}; frames are skipped until a valid CameraInfo arrives")
            self._info, self._info_K = msg, None
            return
        self._info, self._info_K = msg, K

    def _on_image(self, msg: Image | CompressedImage) -> None:
        t = self.stats.arrival()
        compressed = isinstance(msg, CompressedImage)
        self._loss.image(stamp_ns(msg), None if compressed or not msg.width else msg.step // msg.width)
        try:
            if compressed:
                conv.check_compressed(msg)
            else:
                conv.check_image(msg, allowed=COLOR_ENCODINGS)
        except ValueError as exc:
            self.stats.count("rejected")
            self._report("image", "invalid", f"{exc}; frame skipped")
            return
        ns = stamp_ns(msg)
        if self._last_image_ns is not None and ns < self._last_image_ns:
            if self._last_image_ns - ns <= 1_000_000_000:
                self.stats.count("rejected")
                self._report("image", "order", f"stamp {ns * 1e-9:.3f} older than the previous image "
                             f"{self._last_image_ns * 1e-9:.3f}: out-of-order frame skipped", warn=True)
                return
            self._report("image", "clock", "stamp jumped back by more than 1 s: clock reset assumed", warn=True)
        self._last_image_ns = ns
        if self._unmatched_since is None:
            self._unmatched_since = t
        self._offer("image", msg, arrival=t)

    def _on_aux(self, stream: str, msg: Image | CompressedImage, encodings: tuple[str, ...]) -> None:
        try:
            if isinstance(msg, CompressedImage):
                conv.check_compressed(msg, depth=True)
            else:
                conv.check_image(msg, allowed=encodings)
        except ValueError as exc:
            self.stats.count("rejected")
            self._report(stream, "invalid", f"{exc}; message skipped")
            return
        self._offer(stream, msg)

    def _offer(self, stream: str, msg, arrival: float | None = None) -> None:
        if arrival is not None:
            with self._arrivals_lock:
                self._arrivals[stamp_ns(msg)] = arrival
                while len(self._arrivals) > 64:
                    del self._arrivals[next(iter(self._arrivals))]
        matched = self._matcher.add(stream, msg)
        self.stats.set_count("dropped_unmatched", self._matcher.dropped)
        if matched is None:
            return
        self._unmatched_since = None
        self.stats.count("matched")
        frame = dict(zip(self._streams, matched))
        frame["matched_at"] = time.monotonic()
        self._slot.put(frame)
        self.stats.set_count("dropped_newer", self._slot.dropped)

    # ------------------------------------------------------------------------------------------- worker
    def _work(self) -> None:
        while not self._stop.is_set():
            frame = self._slot.take(timeout=0.2)
            if frame is None or self._stop.is_set():
                continue
            try:
                self._process(frame)
            except InputError as exc:
                self.stats.count("rejected")
                self._report(exc.topic, exc.kind, str(exc))
            except Exception as exc:  # never let one frame kill the worker
                if self._stop.is_set():
                    return
                self.stats.count("failed")
                self._report("image", "pipeline", f"frame failed in the pipeline: {type(exc).__name__}: {exc}")

    def _decode(self, frame: dict):
        img = frame["image"]
        if self._info is None:
            raise InputError("camera_info", "missing", "no CameraInfo received yet; frame skipped")
        if self._info_K is None:
            raise InputError("camera_info", "invalid", "last CameraInfo is invalid; frame skipped")
        info = self._info
        if info.header.frame_id and img.header.frame_id and info.header.frame_id != img.header.frame_id:
            raise InputError("camera_info", "frame", f"frame_id '{info.header.frame_id}' differs from the "
                             f"image's '{img.header.frame_id}'; frame skipped")
        compressed = isinstance(img, CompressedImage)
        size = conv.encoded_size(img.data) if compressed else (img.width, img.height)
        if size is not None:  # before decoding (a compressed payload's header declares it)
            self._check_size(info, *size)
        try:
            rgb = conv.compressed_to_rgb(img) if compressed else conv.image_to_rgb(img)
        except ValueError as exc:
            raise InputError("image", "invalid", f"{exc}; frame skipped") from None
        if compressed:  # what it decoded to
            self._check_size(info, rgb.shape[1], rgb.shape[0])
        height, width = rgb.shape[:2]
        depth = labels = None
        if "depth" in frame:
            dmsg = frame["depth"]
            if dmsg.header.frame_id and img.header.frame_id and dmsg.header.frame_id != img.header.frame_id:
                raise InputError("depth", "frame", f"frame_id '{dmsg.header.frame_id}' differs from the image's "
                                 f"'{img.header.frame_id}' (depth must be registered to the colour camera); "
                                 "frame skipped")
            try:
                if isinstance(dmsg, CompressedImage):
                    raw, enc = conv.compressed_depth_to_numpy(dmsg)
                else:
                    raw, enc = conv.image_to_numpy(dmsg), dmsg.encoding
                if raw.shape[:2] != (height, width):
                    raw = self._registered_depth(raw, dmsg.header.frame_id, img.header.frame_id, width, height)
                depth = depth_to_metres(raw, enc, self.p["depth_scale"])
            except InputError:
                raise
            except ValueError as exc:
                raise InputError("depth", "invalid", f"{exc}; frame skipped") from None
            if not depth.any():
                raise InputError("depth", "empty", "depth has no valid pixel (all 0/NaN/inf/negative); "
                                 "frame skipped")
        if "instance_mask" in frame:
            mmsg = frame["instance_mask"]
            if (mmsg.width, mmsg.height) != (width, height):
                raise InputError("instance_mask", "size", f"mask is {mmsg.width}x{mmsg.height} but the image is "
                                 f"{width}x{height}; frame skipped")
            try:
                labels = conv.image_to_numpy(mmsg).astype(np.int32)
            except ValueError as exc:
                raise InputError("instance_mask", "invalid", f"{exc}; frame skipped") from None
        K = self._info_K
        if has_distortion(info.d):
            rgb, K, depth, labels = self._undistort(info, rgb, depth, labels)
        return rgb, K, depth, labels

    def _registered_depth(self, raw: np.ndarray, depth_frame: str, image_frame: str, width: int, height: int):
        """Depth registered to the colour camera at another resolution (same frame_id, same aspect ratio:
        the colour camera's field of view sampled coarser or finer, as some drivers align it) -> resized
        nearest to the image's size (said once). Anything else is not aligned: InputError."""
        dh, dw = raw.shape[:2]
        same_view = abs(dw * height - dh * width) <= 0.01 * dh * width
        if not (same_view and depth_frame and depth_frame == image_frame):
            why = ("another aspect ratio" if not same_view else
                   "no frame_id saying it is registered to the colour camera")
            raise InputError("depth", "size", f"depth is {dw}x{dh} but the image is {width}x{height} ({why}; "
                             "depth must be aligned to the colour image); frame skipped")
        if not self._depth_resize_said:
            self._depth_resize_said = True
            self._log.info(f"[{self._topics.get('depth', 'depth')}] depth {dw}x{dh} registered to "
                           f"'{image_frame}' is resized (nearest) to the image's {width}x{height}")
        return cv2.resize(raw, (width, height), interpolation=cv2.INTER_NEAREST)

    @staticmethod
    def _check_size(info: CameraInfo, width: int, height: int) -> None:
        if info.width and info.height and (info.width, info.height) != (width, height):
            raise InputError("camera_info", "size", f"size {info.width}x{info.height} differs from the image's "
                             f"{width}x{height}; frame skipped")

    def _undistort(self, info: CameraInfo, rgb, depth, labels):
        """rectify: auto -> the frame remapped to the pinhole camera; off -> as it is (said once)."""
        if self.p["rectify"] == "off":
            if not self._distortion_said:
                self._distortion_said = True
                self._log.warning(f"[{self._topics.get('camera_info', 'camera_info')}] {info.distortion_model} "
                                  f"distortion D={list(np.round(info.d, 4))} is ignored (rectify: off): crops and "
                                  "placement assume a pinhole camera; use image_rect topics or rectify: auto")
            return rgb, self._info_K, depth, labels
        try:
            rect = self._rectifiers.get(self._info_K, info.d, info.distortion_model, (info.width or rgb.shape[1],
                                        info.height or rgb.shape[0]), info.p)
        except ValueError as exc:
            raise InputError("camera_info", "distortion", f"{exc}; frame skipped (rectify: off uses the "
                             "distorted images as they are)") from None
        return (rect.rgb(rgb), rect.K_rect, None if depth is None else rect.nearest(depth),
                None if labels is None else rect.nearest(labels))

    def _process(self, frame: dict) -> None:
        img = frame["image"]
        with self._arrivals_lock:
            arrival = self._arrivals.pop(stamp_ns(img), None)
        t0 = time.perf_counter()
        rgb, K, depth, labels = self._decode(frame)
        self.stats.latency("decode", (time.perf_counter() - t0) * 1e3)
        # The overlay (~3-5 ms per object on CPU) is drawn only while someone watches it (a lazy publisher, as
        # image_transport's), and after the meshes and clouds are out, on the overlay thread.
        pipeline = self._pipeline
        watched = self.p["publish_debug_image"] and self._pub_debug.get_subscription_count() > 0
        result = pipeline.process(rgb, K, depth, labels, plane=self._table_plane(img.header), debug=False)
        if self._pipeline.predictor is not self.predictor:
            # the pipeline moved the model to the CPU after CUDA ran out of memory: keep it there (a
            # parameter change rebuilds the pipeline from self.predictor) and report the device in use
            self.predictor = self._pipeline.predictor
            self.device = str(self.predictor.device)
            self.stats.device = _device_description(self.device)
        for stage, ms in result.timings.items():
            if stage != "debug":  # timed on the overlay thread
                self.stats.latency(stage, ms)
        for line in result.warnings:
            self._report("image", "objects", line, warn=True)
        t1 = time.perf_counter()
        sources = result.cloud_sources()  # once: the cloud's field and the diagnostics' shares
        self._publish(img.header, result, sources)
        now = time.perf_counter()
        self.stats.latency("publish", (now - t1) * 1e3)
        done = time.monotonic()
        # node_total: complete frame set (image + partners) -> published; image_to_points: image arrival ->
        # published, which also holds any wait for a late depth/mask message.
        if "matched_at" in frame:
            self.stats.latency("node_total", (done - frame["matched_at"]) * 1e3)
        if arrival is not None:
            self.stats.latency("image_to_points", (done - arrival) * 1e3)
        self.stats.frame_ok(len(result.objects), sources)
        if watched:
            self._overlay_slot.put((pipeline, rgb, K, result, img.header))
            self.stats.set_count("debug_dropped", self._overlay_slot.dropped)

    def _draw_overlays(self) -> None:
        """Overlay thread: the debug image of the newest published frame."""
        while not self._stop.is_set():
            job = self._overlay_slot.take(timeout=0.2)
            if job is None or self._stop.is_set():
                continue
            pipeline, rgb, K, result, header = job
            t0 = time.perf_counter()
            try:
                image = pipeline.overlay(rgb, K, result)
            except Exception as exc:  # a broken overlay never stops the meshes and points
                self._report("debug_image", "overlay", f"debug overlay failed: {type(exc).__name__}: {exc}",
                             warn=True)
                continue
            self.stats.latency("debug", (time.perf_counter() - t0) * 1e3)
            if not self._stop.is_set():
                self._pub_debug.publish(conv.numpy_to_image(image, "rgb8", header))

    def _publish(self, header, result, sources=None) -> None:
        """Meshes, points (``sources``: ``result.cloud_sources()``, computed here when None) and detections."""
        p = self.p
        objs = result.objects
        if p["publish_meshes"]:
            self._publish_meshes(header, [(o.vertices, o.faces, o.colors) for o in objs],
                                 [int(o.detection.label) for o in objs])
        if p["publish_points"]:
            self._pub_points.publish(conv.points_to_cloud(header, *result.cloud(),
                                                          result.cloud_sources() if sources is None else sources))
        if self._pub_det is not None:
            self._pub_det.publish(conv.detection3d_array(
                self._vision_msgs, header, [(int(o.detection.label), o.vertices, o.detection.score) for o in objs]))

    def _make_tf_buffer(self):
        """A tf2_ros Buffer + TransformListener for ``table_frame``, or None (not set, or tf2_ros missing)."""
        frame = self.p["table_frame"]
        if not frame:
            return None
        try:
            import tf2_ros
        except ImportError:
            self._log.warning(f"table_frame '{frame}' needs tf2_ros, which is not installed: table_plane is used")
            return None
        buffer = tf2_ros.Buffer()
        self._tf_listener = tf2_ros.TransformListener(buffer, self)
        self._log.info(f"table plane: the z = 0 plane of TF frame '{frame}', looked up per frame")
        return buffer

    def _table_plane(self, header):
        """The table plane for this frame: ``table_frame`` through TF when it resolves, else ``table_plane``."""
        if self._tf_buffer is None:
            return self._plane
        frame = self.p["table_frame"]
        try:
            from rclpy.time import Time

            try:  # the frame's own time; a transform not there yet: the latest one
                tf = self._tf_buffer.lookup_transform(header.frame_id, frame, Time.from_msg(header.stamp))
            except Exception:
                tf = self._tf_buffer.lookup_transform(header.frame_id, frame, Time())
            t, q = tf.transform.translation, tf.transform.rotation
            return plane_from_pose((t.x, t.y, t.z), (q.x, q.y, q.z, q.w))
        except Exception as exc:  # tf2 raises its own exception types; none may stop the frame
            fallback = "table_plane" if self._plane is not None else "no table plane"
            self._report("tf", "lookup", f"table_frame '{frame}' in '{header.frame_id}': "
                         f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}; {fallback} used",
                         warn=True)
            return self._plane

    def _make_detections_publisher(self):
        """``~/detections`` (vision_msgs/Detection3DArray) when vision_msgs is importable, else (None, None)."""
        try:
            from vision_msgs import msg as vision_msgs
        except ImportError:
            return None, None
        return self.create_publisher(vision_msgs.Detection3DArray, "~/detections", _qos_latched()), vision_msgs

    def _publish_meshes(self, header, meshes, ids) -> None:
        lifetime = self.p["marker_lifetime"]
        if self._fast_markers:
            data = self._cdr.marker_array(header, meshes, "meshes", lifetime, ids)
            try:
                self._pub_meshes.publish(data)
                return
            except TypeError:  # an rclpy whose Publisher.publish does not take serialized bytes
                self._fast_markers = False
                self._log.warning("this rclpy cannot publish serialized messages: building Marker objects")
        self._pub_meshes.publish(conv.mesh_marker_array(header, meshes, "meshes", lifetime, ids))

    # -------------------------------------------------------------------------------------- diagnostics
    def _make_updater(self):
        """diagnostic_updater.Updater when the package is importable (it then owns /diagnostics), else None."""
        try:
            import diagnostic_updater
        except ImportError:
            return None
        updater = diagnostic_updater.Updater(self, period=float(self.p["diagnostic_period"]))
        updater.setHardwareID(self.device)

        def fill(stat):
            status = self.stats.status("pipeline", self.device)
            stat.summary(status.level, status.message)
            for kv in status.values:
                stat.add(kv.key, kv.value)
            return stat

        updater.add("pipeline", fill)
        return updater

    def _diagnostics_tick(self) -> None:
        lost, why = self._loss.check(time.monotonic())
        self.stats.set_count("lost_in_transport", self._loss.lost)
        if lost:
            self._report("image", "lost", why, warn=True)
        since = self._unmatched_since
        if since is not None and time.monotonic() - since > 5.0 and self.stats.input_rate(5.0) > 0:
            partners = " and ".join(self._topics[s] for s in self._streams[1:])
            self._report("image", "sync", f"images arrive but none matched {partners} within "
                         f"sync_slop={self.p['sync_slop']} s for 5 s (check the partner topics, their QoS "
                         "and stamps)", warn=True)
        if self._pub_diag is not None:
            arr = DiagnosticArray()
            arr.header.stamp = self.get_clock().now().to_msg()
            arr.status = [self.stats.status(f"{self.get_name()}: pipeline", self.device)]
            self._pub_diag.publish(arr)

    # ------------------------------------------------------------------------------------------ shutdown
    def close(self, timeout_s: float = 3.0) -> None:
        """Stop the worker; a frame in flight finishes (publishing is skipped after shutdown)."""
        self._stop.set()
        self._slot.wake()
        self._overlay_slot.wake()
        self._worker.join(timeout_s)
        self._overlay_worker.join(timeout_s)


# Raised by declare_parameter for overrides of the wrong type or out of range (names differ across distros).
_PARAMETER_ERRORS = tuple(getattr(rclpy.exceptions, name) for name in (
    "ParameterException", "InvalidParameterValueException", "InvalidParameterTypeException",
    "InvalidParameterException") if hasattr(rclpy.exceptions, name))


def main(args=None) -> int:
    """Console script ``perception_node``. Exit status 0 on SIGINT, 1 on a startup error."""
    rclpy.init(args=args)
    node = None
    code = 0
    try:
        node = PerceptionNode()
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except StartupError as exc:
        (node.get_logger() if node else rclpy.logging.get_logger(NODE_NAME)).fatal(str(exc))
        code = 1
    except _PARAMETER_ERRORS as exc:
        rclpy.logging.get_logger(NODE_NAME).fatal(f"bad parameter: {exc}")
        code = 1
    finally:
        if node is not None:
            node.close()
            node.destroy_node()
        rclpy.try_shutdown()
    return code


if __name__ == "__main__":
    sys.exit(main())
