"""Per-frame perception without ROS: segment -> crop -> one batched prediction -> place -> complete with
the measured depth -> sample."""

from __future__ import annotations

import contextvars
import dataclasses
import logging
import os
import time
from dataclasses import dataclass, field

import numpy as np

from .completion import complete_mesh, fit_to_points, fuse_observed, rests_on, support_volume_samples, visibility
from .crops import Crop, make_crops, stack_crops
from .geometry import check_depth, check_intrinsics, check_labels, check_plane, check_rgb, inputs_checked, plane_depth
from .overlay import paint_meshes
from .placement import Placement, place_mesh, rest_on_plane
from .pointcloud import (
    SOURCE_NETWORK,
    SOURCE_OBSERVED,
    SOURCE_SUPPORT,
    merge_clouds,
    sample_surface,
    sample_surface_normals,
)
from .segmentation import (
    SEGMENTATION_MODES,
    Detection,
    merge_by_color,
    segment_color,
    segment_depth,
    segment_depth_holes,
    segment_labels,
    split_by_color,
    support_plane,
)

DEBUG_RENDERERS = ("auto", "dibr", "opencv")
HIDDEN_SURFACES = ("support", "mesh", "fused")
# Mesh samples behind support_carve: ~2-3 mm apart on a graspable object, under the 6 mm margin (8000 decided
# the same val scenes within 0.001 F at a 10 mm margin and cost 5 ms more per object on 2 cores).
_CARVE_SAMPLES = 4000
_log = logging.getLogger(__name__)


@dataclass
class PipelineConfig:
    """Perception parameters (units in brackets). The ROS node maps its parameters onto these names.

    Segmentation:
        segmentation: "auto" (labels if given, else depth if >= 10 % of it is valid, else colour), "depth",
            "color" or "labels".
        depth_stride [px]: subsampling for plane fit and clustering.
        plane_distance [m]: RANSAC inlier distance. min_height [m]: points nearer the plane are table (at
            least 3 sigma of the table's measured depth noise).
        cluster_distance [m]: depth jump separating objects. max_depth [m]: farther depth is ignored.
        color_split [chromaticity distance]: a depth segment whose pixels form two regions this far apart
            in chromaticity ((r, g) / (r + g + b)) is split in two (touching objects without a depth jump);
            0 = off. color_merge [chromaticity distance], merge_gap [m]: depth segments within color_merge in
            median chromaticity whose points come within merge_gap are joined (pieces of one object cut
            apart by its own depth jumps); 0 = off.
        min_object_size, max_object_size [m]: bounds on an object's observed 3D extent (depth mode).
        min_object_pixels [px]: minimum mask area; max_area_fraction: maximum mask area as a fraction of the
            image (both segmenters). max_objects: keep the largest this many.
        color_threshold [Lab distance], color_stride [px]: colour segmenter.
    Crops:
        crop_size [px]: side of the square network input; 0 = the predictor's ``input_size`` (64 if none).
        crop_padding: margin per side, fraction of the longer box side.
    Placement:
        default_distance [m]: RGB-only assumption, camera-to-object-centre distance.
        default_object_size [m]: RGB-only assumption, object bounding-sphere diameter; 0 = use
            default_distance instead.
        min_depth_points: fewer valid depth pixels on an object -> RGB-only placement for it.
        depth_holes: with depth segmentation, also detect objects the depth camera returns nothing for
            (holes in the depth on the table: glass, black; :func:`.segmentation.segment_depth_holes`) and
            stand each on the table plane (:func:`.placement.rest_on_plane`).
    Completion (objects with depth, :mod:`.completion`):
        complete_with_depth: align each placed mesh to its measured points, rest it on the table plane,
            carve it out of space the camera sees through and move its front onto the measured surface.
        completion_margin [m]: depth tolerance of "the camera sees this point". support_contact [m]: an
            object whose lowest measured point is at most this high above the table rests on it.
    Point clouds:
        points_per_object: samples of each completed surface. add_observed_points: the cloud holds the
            object's measured points (at most max_observed_points, uniformly subsampled) and, where the
            camera could not see, the hidden surface. hidden_surface: where that comes from: "support" (an
            object resting on the table fills the space between its measured surface and the table,
            :func:`.completion.support_volume_samples`; other objects use the mesh), "mesh" (the
            completed mesh) or "fused" (support plus the mesh's hidden samples the support volume does
            not reach, up to fused_max_gap [m] from it). support_cell [m]: grid pitch and sample spacing
            of the support volume. support_carve [m]: support-volume samples farther than this outside the
            network's completed mesh are dropped (the space under a handle or a rim the height field fills;
            0 = off; 6 mm chosen on val scenes over 2, 4, 10 and 15 mm).
            mesh_fit_iterations: with the support volume, the published mesh is shrink-wrapped onto the
            object's cloud (:func:`.completion.fit_to_points`, the network's connectivity and texture kept)
            in this many iterations; 0 = the completed network mesh as is.
            seed: sampling seed.
    Debug:
        debug_image: build the overlay. debug_renderer: "auto" (the DIB-R renderer when the predictor runs
        on CUDA, else the OpenCV painter), "dibr" (falls back to OpenCV for good if the renderer fails)
        or "opencv". debug_scale: the DIB-R overlay is rendered at this fraction of the
        image size and upsampled (CPU rasterisation cost grows with the pixel count).
    """

    segmentation: str = "auto"
    depth_stride: int = 4
    plane_distance: float = 0.01
    min_height: float = 0.005
    cluster_distance: float = 0.02
    color_split: float = 0.03
    color_merge: float = 0.01
    merge_gap: float = 0.05
    max_depth: float = 10.0
    min_object_size: float = 0.02
    max_object_size: float = 0.6
    min_object_pixels: int = 100
    max_objects: int = 10
    color_threshold: float = 18.0
    color_stride: int = 2
    max_area_fraction: float = 0.9
    crop_size: int = 0
    crop_padding: float = 0.15
    default_distance: float = 1.0
    default_object_size: float = 0.0
    min_depth_points: int = 20
    complete_with_depth: bool = True
    depth_holes: bool = True
    completion_margin: float = 0.01
    support_contact: float = 0.03
    hidden_surface: str = "fused"
    support_cell: float = 0.003
    fused_max_gap: float = 0.012
    support_carve: float = 0.006
    mesh_fit_iterations: int = 3
    points_per_object: int = 2048
    add_observed_points: bool = True
    max_observed_points: int = 2048
    seed: int = 0
    debug_image: bool = True
    debug_renderer: str = "auto"
    debug_scale: float = 0.5

    def __post_init__(self):
        if self.segmentation not in SEGMENTATION_MODES:
            raise ValueError(f"segmentation must be one of {SEGMENTATION_MODES}, got {self.segmentation!r}")
        if self.hidden_surface not in HIDDEN_SURFACES:
            raise ValueError(f"hidden_surface must be one of {HIDDEN_SURFACES}, got {self.hidden_surface!r}")
        if self.debug_renderer not in DEBUG_RENDERERS:
            raise ValueError(f"debug_renderer must be one of {DEBUG_RENDERERS}, got {self.debug_renderer!r}")
        positive = ("depth_stride", "plane_distance", "cluster_distance", "max_depth", "max_object_size",
                    "max_objects", "color_threshold", "color_stride", "default_distance", "completion_margin",
                    "support_cell", "merge_gap", "fused_max_gap")
        non_negative = ("color_split", "color_merge", "min_height", "min_object_size", "min_object_pixels", "crop_size",
                        "crop_padding", "default_object_size", "min_depth_points", "points_per_object",
                        "max_observed_points", "support_contact", "mesh_fit_iterations", "support_carve")
        for name in positive + non_negative:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value):
                raise ValueError(f"{name} must be a finite number, got {value!r}")
            if (name in positive and value <= 0) or value < 0:
                raise ValueError(f"{name} must be {'> 0' if name in positive else '>= 0'}, got {value}")
            if isinstance(getattr(type(self), name), int):
                if value != int(value):
                    raise ValueError(f"{name} must be an integer, got {value}")
                setattr(self, name, int(value))
        for name in ("add_observed_points", "debug_image", "complete_with_depth", "depth_holes"):
            if not isinstance(getattr(self, name), (bool, np.bool_)):
                raise ValueError(f"{name} must be a bool, got {getattr(self, name)!r}")
        if self.crop_padding > 100 or self.crop_size > 4096:
            raise ValueError("crop_padding must be <= 100 and crop_size <= 4096")
        if not 0 < self.debug_scale <= 1:
            raise ValueError(f"debug_scale must be in (0, 1], got {self.debug_scale}")
        if not 0 < self.max_area_fraction <= 1:
            raise ValueError(f"max_area_fraction must be in (0, 1], got {self.max_area_fraction}")
        if self.min_object_size > self.max_object_size:
            raise ValueError("min_object_size exceeds max_object_size")

    def depth_segmentation_kwargs(self) -> dict:
        """Keyword arguments of :func:`.segmentation.segment_depth` these settings stand for."""
        return dict(stride=self.depth_stride, plane_distance=self.plane_distance, min_height=self.min_height,
                    cluster_distance=self.cluster_distance, min_object_size=self.min_object_size,
                    max_object_size=self.max_object_size, min_pixels=self.min_object_pixels,
                    max_objects=self.max_objects, max_area_fraction=self.max_area_fraction, max_depth=self.max_depth)

    @classmethod
    def from_dict(cls, values: dict) -> PipelineConfig:
        """Build from a dict; unknown keys raise ValueError."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise ValueError(f"unknown pipeline parameters: {unknown}")
        return cls(**values)


def segment_rgbd(rgb, K, depth, config: PipelineConfig, depth_kwargs: dict | None = None):
    """Depth segmentation as the pipeline runs it: :func:`.segmentation.segment_depth` with ``config``'s
    settings (``depth_kwargs`` instead, when given), then the colour split of touching objects and the merge
    of one object's pieces (``config.color_split``, ``color_merge``, ``merge_gap``; 0 = off).

    Returns:
        (detections, table plane ``(n, d)`` or None).
    """
    c = config
    kwargs = c.depth_segmentation_kwargs() if depth_kwargs is None else depth_kwargs
    dets, plane = segment_depth(depth, K, **kwargs, return_plane=True)
    if c.color_split > 0:
        dets = split_by_color(dets, rgb, K, depth, threshold=c.color_split, min_pixels=kwargs["min_pixels"],
                              max_objects=kwargs["max_objects"])
    if c.color_merge > 0:
        dets = merge_by_color(dets, rgb, K, depth, threshold=c.color_merge, gap=c.merge_gap,
                              max_objects=kwargs["max_objects"])
    return dets, plane


@dataclass
class ObjectResult:
    """One reconstructed object in the camera optical frame (metres).

    Attributes:
        vertices (V, 3) float32, faces (F, 3) int64, colors (V, 3) float32 [0, 1]: placed mesh.
        points (P, 3) float32, point_colors (P, 3) float32 [0, 1]: surface samples (+ observed points).
        point_sources (P,) uint8: where each point comes from (:data:`.pointcloud.SOURCES`: measured depth,
            the support volume, the network's mesh).
        detection: the :class:`Detection`.
        completed: the mesh was corrected with the measured depth (:func:`.completion.complete_mesh`).
        instance: point-cloud instance id: detection.label when it fits an int32, else the object's 1-based
            position in the frame.
        scale_m: metres per view-frame unit (bounding-sphere radius of a normalised prediction).
        center (3,) float64: object centre (after the completion's alignment shift). placement: the
            :class:`Placement` of the network's mesh. crop: the :class:`Crop`.
    """

    vertices: np.ndarray
    faces: np.ndarray
    colors: np.ndarray
    points: np.ndarray
    point_colors: np.ndarray
    detection: Detection
    scale_m: float
    center: np.ndarray
    placement: Placement
    crop: Crop
    instance: int
    completed: bool = False
    point_sources: np.ndarray | None = None


@dataclass
class FrameResult:
    """Result of :meth:`PerceptionPipeline.process`.

    Attributes:
        objects: list of :class:`ObjectResult`.
        timings: ms per stage: segment, crop, predict, place, complete, sample, debug, total. place, complete
            and sample are summed over the objects, which run on a thread pool: their sum can exceed the wall
            time they take.
        debug_image: (H, W, 3) uint8 overlay or None.
        segmentation: the segmentation mode used ("depth", "color" or "labels").
        warnings: objects dropped and why, and predictor faults handled in this frame (CUDA out of memory:
            smaller batches, then the CPU), one line each; each fault is reported in one frame only.
        detections: every :class:`Detection` of the frame, also those whose object was dropped (the overlay
            tints them all).
    """

    objects: list
    timings: dict
    debug_image: np.ndarray | None = None
    segmentation: str = ""
    warnings: list = field(default_factory=list)
    detections: list = field(default_factory=list)

    def cloud(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """All objects' points merged: xyz (N, 3) float32, rgb (N, 3) float32 [0, 1], instance (N,) int32."""
        return merge_clouds((o.points, o.point_colors, o.instance) for o in self.objects)

    def cloud_sources(self) -> np.ndarray:
        """(N,) uint8 source of each point of :meth:`cloud` (:data:`.pointcloud.SOURCES`)."""
        for i, o in enumerate(self.objects):
            if o.point_sources is None or len(o.point_sources) != len(o.points):
                raise ValueError(f"object {i}: point_sources missing or not one per point")
        return np.concatenate([np.zeros(0, np.uint8)] + [o.point_sources for o in self.objects])


def _to_numpy(x) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def _is_oom(exc: BaseException) -> bool:
    """torch.cuda.OutOfMemoryError, or the plain RuntimeError older builds and cuDNN/cuBLAS raise."""
    if not isinstance(exc, RuntimeError):
        return False
    import torch

    oom = getattr(torch.cuda, "OutOfMemoryError", None)
    return (oom is not None and isinstance(exc, oom)) or "out of memory" in str(exc)


def _free_cuda_cache() -> None:
    import torch

    if torch.cuda.is_initialized():
        torch.cuda.empty_cache()


def _predictor_on_cpu(predictor):
    """A CPU copy of ``predictor``: its own ``to("cpu")`` when it has one; a ``dibr_ros.model.Predictor`` is
    rebuilt around a host copy of its weights (the original stays intact: others may hold it). None when
    neither applies."""
    to = getattr(predictor, "to", None)
    if callable(to):
        moved = to("cpu")
        return predictor if moved is None else moved  # in-place switches return None
    import torch

    from dibr_ros.model import DIBRNet, Predictor

    if not isinstance(predictor, Predictor):
        return None
    net = DIBRNet(predictor.network.config)
    net.load_state_dict({k: v.detach().cpu() for k, v in predictor.network.state_dict().items()})
    return Predictor(net, torch.device("cpu"), predictor.meta)


def _palette(i: int) -> tuple[int, int, int]:
    hue = (i * 0.618033988749895) % 1.0
    import colorsys

    r, g, b = colorsys.hsv_to_rgb(hue, 0.85, 1.0)
    return int(r * 255), int(g * 255), int(b * 255)


class PerceptionPipeline:
    """Segment objects, predict their meshes in one batch, place them metrically and sample clouds.

    CUDA out of memory while predicting: the cache is freed and the crops are predicted in halves (the
    limit is kept for later frames), down to one crop at a time; then the predictor moves to the CPU for
    good. Each step is said once, in ``FrameResult.warnings`` and as a ``logging`` warning.

    Args:
        predictor: object with ``predict(rgb (N, S, S, 3) uint8, mask (N, S, S) bool)`` returning
            ``.vertices (N, V, 3)``, ``.faces (F, 3)``, ``.colors (N, V, 3)`` (torch or numpy), e.g.
            ``dibr_ros.model.Predictor``; ``input_size`` is used when ``crop_size`` is 0. A predictor whose
            ``uses_depth`` is True also gets the depth crops: ``predict(rgb, mask, depth=(N, S, S) metres,
            focal=(N,) pixels)`` (with the frame's depth; crops without valid depth are all zero).
        config: :class:`PipelineConfig`, a dict of its fields, or None for defaults.
    """

    def __init__(self, predictor, config: PipelineConfig | dict | None = None):
        if config is None:
            config = PipelineConfig()
        elif isinstance(config, dict):
            config = PipelineConfig.from_dict(config)
        elif not isinstance(config, PipelineConfig):
            raise TypeError(f"config must be a PipelineConfig, dict or None, got {type(config).__name__}")
        if not callable(getattr(predictor, "predict", None)):
            raise TypeError("predictor must have a predict(rgb, mask) method")
        self.predictor = predictor
        self.config = config
        self.crop_size = int(config.crop_size or getattr(predictor, "input_size", 0) or 64)
        self._executor = None
        self.max_batch: int | None = None  # crops per predict call after an out-of-memory error; None = all
        self._dibr_failed = config.debug_renderer == "opencv"

    @property
    def rgb_assumption(self) -> str:
        """One line describing how objects without depth are placed (for the node to log once)."""
        c = self.config
        if c.default_object_size > 0:
            return f"objects without depth are assumed to be {c.default_object_size:g} m across"
        return f"objects without depth are assumed to be {c.default_distance:g} m from the camera"

    def _segment(self, rgb, K, depth, labels):
        """(mode, detections, table plane or None). The plane is only looked for when completion needs it."""
        c = self.config
        plane = None
        mode = c.segmentation
        if mode == "auto":
            if labels is not None:
                mode = "labels"
            elif depth is not None and np.count_nonzero(depth) >= 0.1 * depth.size:
                mode = "depth"
            else:
                mode = "color"
        if mode == "labels":
            if labels is None:
                raise ValueError("segmentation 'labels' needs a label map")
            dets = segment_labels(labels, min_pixels=c.min_object_pixels, max_objects=c.max_objects,
                                  depth=depth, K=K)
        elif mode == "depth":
            if depth is None:
                raise ValueError("segmentation 'depth' needs a depth image")
            dets, plane = segment_rgbd(rgb, K, depth, c)
            if c.depth_holes and plane is not None and len(dets) < c.max_objects:
                dets = dets + segment_depth_holes(
                    depth, K, plane, dets, min_pixels=c.min_object_pixels, max_objects=c.max_objects - len(dets),
                    max_area_fraction=min(c.max_area_fraction, 0.25),
                    start_label=max((d.label for d in dets), default=0) + 1)
        else:
            dets = segment_color(rgb, stride=c.color_stride, color_threshold=c.color_threshold,
                                 min_pixels=c.min_object_pixels, max_area_fraction=c.max_area_fraction,
                                 max_objects=c.max_objects, depth=depth, K=K)
        if mode != "depth" and dets and depth is not None and c.complete_with_depth:
            plane = support_plane(depth, K, np.logical_or.reduce([d.mask for d in dets]), stride=c.depth_stride,
                                  distance=c.plane_distance, max_depth=c.max_depth)
        return mode, dets, plane

    def process(self, rgb, K, depth=None, labels=None, *, plane=None, debug: bool | None = None) -> FrameResult:
        """Run the pipeline on one frame.

        Args:
            rgb: (H, W, 3) uint8.
            K: (3, 3) float intrinsics (pixels), finite, fx, fy > 0.
            depth: optional (H, W) float metres aligned to ``rgb``; NaN/inf/<= 0 = invalid.
            labels: optional (H, W) integer instance map, 0 = background.
            plane: optional known table plane, camera optical frame: (a, b, c, d) with a x + b y + c z + d =
                height above the table (m, the camera above it: d > 0), as a robot knows it from its
                camera's mounting (TF). Used where the depth gives none (RGB-only cameras, or no table in
                the depth): each object without depth then stands on it (:func:`.placement.rest_on_plane`,
                metric placement instead of the ``default_object_size`` assumption). A plane measured in
                the depth is preferred.
            debug: draw the debug overlay for this frame; None = ``config.debug_image`` (the node passes
                False while nobody subscribes to it).
        Returns:
            :class:`FrameResult`.
        Raises:
            ValueError: malformed inputs (one-line reason), or a predictor output of the wrong shape.
        """
        t0 = time.perf_counter()
        rgb = check_rgb(rgb)
        K = check_intrinsics(K)
        H, W = rgb.shape[:2]
        if depth is not None:
            depth = check_depth(depth, (H, W))
        if labels is not None:
            labels = check_labels(labels, (H, W))
        if plane is not None:
            plane = check_plane(plane)
        with inputs_checked():  # validated once here: the stages below trust these arrays
            return self._process_checked(rgb, K, depth, labels, t0,
                                         self.config.debug_image if debug is None else bool(debug), plane)

    def _process_checked(self, rgb, K, depth, labels, t0: float, debug_image: bool,
                         known_plane=None) -> FrameResult:
        """:meth:`process` after its input checks (``rgb`` C-contiguous uint8, ``K`` float64, ``depth``
        float32 with invalid = 0, ``labels`` integer, all of one size)."""
        c = self.config
        H, W = rgb.shape[:2]
        timings = dict.fromkeys(("segment", "crop", "predict", "place", "complete", "sample", "debug"), 0.0)

        def lap(name, start):
            now = time.perf_counter()
            timings[name] = (now - start) * 1e3
            return now

        mode, dets, plane = self._segment(rgb, K, depth, labels)
        if plane is None:
            plane = known_plane
        t = lap("segment", t0)
        objects, warnings = [], []
        if dets:
            with_depth = depth is not None and bool(getattr(self.predictor, "uses_depth", False))
            crops = make_crops(rgb, dets, self.crop_size, c.crop_padding, depth if with_depth else None)
            batch_rgb, batch_mask = stack_crops(crops)
            batch_depth = None
            if with_depth:  # focal of each resized crop: fx * S / side
                batch_depth = (np.stack([cr.depth for cr in crops]),
                               np.array([K[0, 0] * self.crop_size / cr.side for cr in crops]))
            t = lap("crop", t)
            verts, faces, colors, warnings = self._predict(batch_rgb, batch_mask, batch_depth)
            n = len(dets)
            if verts.ndim != 3 or verts.shape[0] != n or verts.shape[2] != 3 or colors.shape != verts.shape \
                    or faces.ndim != 2 or faces.shape[1] != 3:
                raise ValueError(f"predictor returned vertices {verts.shape}, colors {colors.shape}, faces "
                                 f"{faces.shape} for {n} crops")
            t = lap("predict", t)
            objects, dropped, t_place, t_complete, t_sample = self._place_all(dets, crops, verts, faces, colors,
                                                                              rgb, K, depth, plane)
            warnings += dropped
            timings["place"], timings["complete"], timings["sample"] = t_place, t_complete, t_sample
            t = time.perf_counter()
        debug = None
        if debug_image:
            debug = self._overlay(rgb, K, dets, objects)
            t = lap("debug", t)
        timings["total"] = (time.perf_counter() - t0) * 1e3
        return FrameResult(objects=objects, timings=timings, debug_image=debug, segmentation=mode,
                           warnings=warnings, detections=list(dets))

    def overlay(self, rgb, K, result: FrameResult) -> np.ndarray:
        """The debug image of a processed frame, drawn later (the node draws it on its own thread, after the
        meshes and points are out): the same image ``process(..., debug=True)`` returns.

        Args:
            rgb: (H, W, 3) uint8 and K: (3, 3), as given to :meth:`process` for ``result``.
        Returns:
            (H, W, 3) uint8.
        """
        return self._overlay(check_rgb(rgb), check_intrinsics(K), result.detections, result.objects)

    def _predict(self, rgb, mask, depth=None):
        """Predict in chunks of at most ``max_batch`` crops, shrinking the chunks (then leaving the GPU) on
        CUDA out of memory. depth: None or (depth crops (N, S, S), focal (N,)). Returns vertices, faces,
        colors as numpy and the lines to report."""
        n, parts, said = len(rgb), [], []
        i, limit = 0, self.max_batch
        while i < n:
            b = min(n - i, self.max_batch or n)
            on_cuda = str(getattr(self.predictor, "device", "cpu")).startswith("cuda")
            try:
                if depth is None:
                    pred = self.predictor.predict(rgb[i:i + b], mask[i:i + b])
                else:
                    pred = self.predictor.predict(rgb[i:i + b], mask[i:i + b], depth=depth[0][i:i + b],
                                                  focal=depth[1][i:i + b])
            except RuntimeError as exc:
                if not _is_oom(exc) or (b == 1 and not on_cuda):
                    raise
            else:
                # To the host at once: no device memory held across chunks.
                parts.append((_to_numpy(pred.vertices).astype(np.float32), _to_numpy(pred.faces).astype(np.int64),
                              _to_numpy(pred.colors).astype(np.float32)))
                del pred
                i += b
                continue
            # Outside the except block: its traceback would keep the failed call's device tensors alive.
            _free_cuda_cache()
            if b > 1:
                self.max_batch = b // 2
                continue
            cpu = _predictor_on_cpu(self.predictor)
            if cpu is None:
                raise RuntimeError(f"CUDA out of memory with one crop, and {type(self.predictor).__name__} "
                                   "cannot be moved to the CPU")
            self.predictor, self.max_batch, limit = cpu, None, None
            said.append("CUDA out of memory with one crop per batch: the predictor runs on the CPU from now on")
            _log.warning(said[-1])
        if self.max_batch != limit:
            said.insert(0, f"CUDA out of memory predicting {n} crops: at most {self.max_batch} per batch from now on")
            _log.warning(said[0])
        if len(parts) == 1:
            return (*parts[0], said)
        return (np.concatenate([p[0] for p in parts]), parts[0][1], np.concatenate([p[2] for p in parts]), said)

    def _pool(self):
        """Threads for the per-object geometry (created on first use, one per core up to 4)."""
        if self._executor is None:
            from concurrent.futures import ThreadPoolExecutor

            self._executor = ThreadPoolExecutor(max(1, min(4, os.cpu_count() or 1)), thread_name_prefix="dibr_obj")
        return self._executor

    def _place_all(self, dets, crops, verts, faces, colors, rgb, K, depth, plane):
        from scipy.spatial import cKDTree

        c = self.config
        objects, warnings = [], []
        t_place = t_complete = t_sample = 0.0
        n_surface = max(c.points_per_object, 2048)
        table_depth = None
        if depth is None and plane is not None:  # a known plane, no depth: the table as the camera would see it
            table_depth = plane_depth(plane, K, rgb.shape[:2])
            table_depth[np.logical_or.reduce([d.mask for d in dets])] = 0.0  # objects hide it

        def one(i: int):
            """Object ``i``: (ObjectResult or None, lines to report, [place, complete, sample] ms)."""
            det, crop = dets[i], crops[i]
            said, times = [], [0.0, 0.0, 0.0]
            ts = time.perf_counter()
            try:
                # Samples in the view frame serve both the front-surface estimate and (scaled) the cloud:
                # a similarity transform keeps area-weighted samples area-weighted.
                surf, surf_col = sample_surface(verts[i], faces, n_surface, colors[i], seed=c.seed + i)
            except ValueError as exc:
                return None, [f"object {det.label}: mesh rejected: {exc}"], times
            tp = time.perf_counter()
            times[2] += (tp - ts) * 1e3
            try:
                placement = place_mesh(verts[i], K, det.mask, crop.center, det.points, surface_points=surf,
                                       default_distance=c.default_distance,
                                       default_object_size=c.default_object_size or None,
                                       min_points=c.min_depth_points)
            except ValueError as exc:
                return None, [f"object {det.label}: placement failed: {exc}"], times
            if plane is not None and (det.points is None or len(det.points) == 0):
                # no depth on this object (a hole in the depth on the table, or an RGB-only camera with a
                # known table plane): stand it on the table
                placement, _ = rest_on_plane(placement, verts[i], plane, K=K,
                                             depth=depth if depth is not None else table_depth,
                                             mask=det.mask, tolerance=c.plane_distance)
            ts = time.perf_counter()
            times[0] += (ts - tp) * 1e3
            placed = placement.apply(verts[i])
            vcol = np.clip(np.nan_to_num(colors[i], nan=0.5), 0.0, 1.0)
            center = placement.center
            completed = c.complete_with_depth and placement.source == "depth" and depth is not None
            if completed:
                try:
                    done = complete_mesh(placed, faces, K, depth, det.mask, det.points, plane,
                                         margin=c.completion_margin, contact=c.support_contact)
                except ValueError as exc:  # e.g. fewer than 3 valid depth points: keep the placed mesh
                    said.append(f"object {det.label}: completion skipped: {exc}")
                    completed = False
            if completed:
                placed, center = done.vertices, placement.center + done.shift
                tc = time.perf_counter()
                times[1] += (tc - ts) * 1e3
                ts = tc
            # Observed points exist only with depth (the detections back-project it).
            observed = c.add_observed_points and det.points is not None and len(det.points) > 0
            hidden = None
            # (a plane is only found with depth)
            if observed and c.hidden_surface in ("support", "fused") and plane is not None \
                    and rests_on(det.points, plane, c.support_contact):
                try:
                    hidden = support_volume_samples(det.points, plane, K, depth, cell=c.support_cell,
                                                    margin=c.completion_margin)
                except ValueError as exc:
                    said.append(f"object {det.label}: support volume skipped: {exc}")
                carve = hidden is not None and c.support_carve > 0 and len(hidden) > 0
                fuse = hidden is not None and c.hidden_surface == "fused"
                if carve or fuse:
                    # One draw of the network's mesh serves the carve (all of it) and the fusion (its first
                    # points_per_object samples: the draws are independent, so any prefix is uniform too).
                    n_mesh = max(_CARVE_SAMPLES, c.points_per_object)
                    mesh_pts, mesh_nrm = sample_surface_normals(placed, faces, n_mesh, seed=c.seed + i)
                if carve:
                    hidden = hidden[~self._outside_mesh(hidden, mesh_pts, mesh_nrm, c.support_carve)]
                n_support = len(hidden) if hidden is not None else 0
                if fuse:
                    hidden = np.concatenate([hidden, self._beyond_support(mesh_pts[:c.points_per_object], hidden,
                                                                          det.points, K, depth, c)])
            if hidden is not None:
                # The network's texture colours the hidden side.
                near = cKDTree(placed).query(hidden)[1] if len(hidden) else np.zeros(0, np.int64)
                points, point_colors = hidden, vcol[near].astype(np.float32)
                sources = np.full(len(points), SOURCE_NETWORK, np.uint8)
                sources[:n_support] = SOURCE_SUPPORT
            elif completed:
                # The completion is not a similarity: sample the corrected surface anew.
                points, point_colors = sample_surface(placed, faces, c.points_per_object, vcol, seed=c.seed + i)
            else:
                points = placement.apply(surf[:c.points_per_object])
                point_colors = surf_col[:c.points_per_object]
            if hidden is None:
                sources = np.full(len(points), SOURCE_NETWORK, np.uint8)
            if observed:
                obs, pix = det.points, det.pixels
                if len(obs) > c.max_observed_points:
                    keep = np.linspace(0, len(obs) - 1, c.max_observed_points).astype(np.int64)
                    obs, pix = obs[keep], pix[keep]
                obs_col = rgb[pix[:, 0], pix[:, 1]].astype(np.float32) / 255.0
                if hidden is not None:  # already only what the camera cannot see
                    points = np.concatenate([points, obs.astype(np.float32)])
                    point_colors = np.concatenate([point_colors, obs_col])
                else:  # fuse_observed keeps the surface samples first, then the observed points
                    points, point_colors = fuse_observed(points, point_colors, obs, obs_col, K, depth,
                                                         c.completion_margin)
                    sources = sources[:len(points) - len(obs)]
                sources = np.concatenate([sources, np.full(len(obs), SOURCE_OBSERVED, np.uint8)])
            times[2] += (time.perf_counter() - ts) * 1e3
            if hidden is not None and c.mesh_fit_iterations > 0:  # the cloud holds the observed points too
                ts = time.perf_counter()
                placed = fit_to_points(placed, faces, points, iterations=c.mesh_fit_iterations)
                times[1] += (time.perf_counter() - ts) * 1e3
            return ObjectResult(
                vertices=placed, faces=faces, colors=vcol,
                points=points, point_colors=point_colors, detection=det, scale_m=placement.scale,
                center=center, placement=placement, crop=crop,
                instance=int(det.label) if 0 < det.label < 2**31 else i + 1, completed=completed,
                point_sources=sources), said, times

        # Objects are independent and seeded by their index: on a CPU the per-object geometry (numpy, scipy,
        # OpenCV; much of it outside the GIL) runs on the pool, in the same order and with the same result.
        # Each job runs in a copy of this thread's context: the inputs_checked() mark travels with it.
        ctxs = [contextvars.copy_context() for _ in dets]
        results = list(self._pool().map(lambda i: ctxs[i].run(one, i), range(len(dets)))) if len(dets) > 1 \
            else [one(0)]
        for obj, said, times in results:
            warnings += said
            t_place, t_complete, t_sample = t_place + times[0], t_complete + times[1], t_sample + times[2]
            if obj is not None:
                objects.append(obj)
        return objects, warnings, t_place, t_complete, t_sample

    @staticmethod
    def _outside_mesh(pts, surf, normals, margin: float) -> np.ndarray:
        """(P,) bool: points farther than ``margin`` outside the closed mesh whose dense surface samples are
        ``surf`` (S, 3) with face normals ``normals`` (S, 3) (:func:`.pointcloud.sample_surface_normals`).
        Distance and side from the nearest sample (side: its face's outward normal)."""
        from scipy.spatial import cKDTree

        out = np.zeros(len(pts), bool)
        if len(surf) == 0:
            return out
        tree = cKDTree(surf)
        # Most points lie within the margin: a bounded query settles them cheaply, only the rest need a side.
        near = np.isfinite(tree.query(pts, distance_upper_bound=margin)[0])
        far = np.flatnonzero(~near)
        if len(far):
            k = tree.query(pts[far])[1]
            out[far] = np.einsum("ij,ij->i", pts[far] - surf[k], normals[k]) > 0
        return out

    @staticmethod
    def _beyond_support(surf, support, observed, K, depth, c) -> np.ndarray:
        """Hidden samples ``surf`` (S, 3) of the network's completed mesh that the support volume does not
        explain: farther than 3 support cells from its samples and the measured points, and at most
        ``fused_max_gap`` from them: the network fills the gaps the height field leaves beside the measured
        surface (the sides and back a low camera barely sees); where its back strays farther it is not
        trusted (chosen on val scenes: a 12 mm limit beats 20 mm, 30 mm and none)."""
        from scipy.spatial import cKDTree

        pts = np.asarray(surf, np.float32).reshape(-1, 3)
        _, behind, _ = visibility(pts, K, depth, c.completion_margin)
        pts = pts[behind]
        ref = np.concatenate([np.asarray(support, np.float32).reshape(-1, 3), np.asarray(observed, np.float32)])
        if len(pts) == 0 or len(ref) == 0:
            return pts
        d = cKDTree(ref).query(pts)[0]
        keep = (d > 3.0 * c.support_cell) & (d <= c.fused_max_gap)
        return pts[keep]

    @property
    def overlay_renderer(self) -> str:
        """"dibr" or "opencv": what draws the meshes into the next debug image."""
        return "dibr" if self._use_dibr() else "opencv"

    def _use_dibr(self) -> bool:
        if self._dibr_failed:
            return False
        if self.config.debug_renderer == "dibr":
            return True
        # "auto": DIB-R where the predictor runs on a GPU; on CPU its rasterisation of a few thousand faces
        # costs far more than the whole perception step, so the OpenCV painter is used there.
        return str(getattr(self.predictor, "device", "cpu")).startswith("cuda")

    def _overlay(self, rgb, K, dets, objects) -> np.ndarray:
        """Input with masks tinted, boxes drawn and the placed meshes rendered over it."""
        import cv2

        out = rgb.copy()
        # Whole-box OpenCV blends written back through the mask: ~5x cheaper than fancy indexing in numpy.
        for i, det in enumerate(dets):
            x0, y0, x1, y1 = det.box
            sub = out[y0:y1, x0:x1]
            tint = np.empty_like(sub)
            tint[:] = _palette(i)
            cv2.copyTo(cv2.addWeighted(sub, 0.6, tint, 0.4, 0.0), det.mask[y0:y1, x0:x1].view(np.uint8), sub)
        if objects:
            H, W = rgb.shape[:2]
            layer, hard = None, False
            if self._use_dibr():
                try:
                    layer, alpha = self._render_dibr(K, objects, H, W, self.config.debug_scale)
                    origin = (0, 0)
                except Exception:  # any renderer failure (build, API, memory): OpenCV from now on
                    self._dibr_failed = True
            if layer is None:
                (layer, alpha, origin), hard = self._render_opencv(K, objects, H, W), True
            h, w = alpha.shape
            sub = out[origin[1]:origin[1] + h, origin[0]:origin[0] + w]
            if hard:  # the painter's coverage is 0 or 1
                cv2.copyTo(cv2.addWeighted(sub, 0.3, layer, 0.7, 0.0), (alpha > 0).view(np.uint8), sub)
            else:  # DIB-R's resized layer: fractional coverage at the edges
                a = 0.7 * alpha[..., None]
                sub[:] = (sub * (1 - a) + layer * a).astype(np.uint8)
        for i, det in enumerate(dets):
            x0, y0, x1, y1 = det.box
            cv2.rectangle(out, (x0, y0), (x1 - 1, y1 - 1), _palette(i), 2)
            cv2.putText(out, str(det.label), (x0 + 2, max(y0 - 4, 10)), cv2.FONT_HERSHEY_SIMPLEX, 0.5,
                        _palette(i), 1, cv2.LINE_AA)
        return out

    @staticmethod
    def _render_dibr(K, objects, H, W, scale):
        import cv2
        import torch

        from dibr_ros.render.camera import OPENCV_TO_OPENGL
        from dibr_ros.render.renderer import render_mesh

        offs = np.cumsum([0] + [len(o.vertices) for o in objects[:-1]])
        v = np.concatenate([o.vertices for o in objects])
        f = np.concatenate([o.faces + k for o, k in zip(objects, offs)])
        col = np.concatenate([o.colors for o in objects])
        R = torch.as_tensor(np.asarray(OPENCV_TO_OPENGL, np.float32)).reshape(1, 3, 3)
        h, w = max(1, round(H * scale)), max(1, round(W * scale))
        sx, sy = w / W, h / H
        # Pixel centres sit at integer coordinates, so the principal point maps as (c + 0.5) * s - 0.5.
        Ks = np.array([[K[0, 0] * sx, K[0, 1] * sx, (K[0, 2] + 0.5) * sx - 0.5],
                       [0.0, K[1, 1] * sy, (K[1, 2] + 0.5) * sy - 0.5], [0.0, 0.0, 1.0]], np.float32)
        with torch.no_grad():
            out = render_mesh(torch.from_numpy(v)[None], torch.from_numpy(f), torch.from_numpy(col)[None],
                              R, torch.zeros(1, 3), height=h, width=w, K=torch.from_numpy(Ks)[None],
                              lighting={"direction": torch.tensor([[0.3, 0.5, 1.0]]), "ambient": 0.35,
                                        "diffuse": 0.65})
        layer = (out["rgb"][0].clamp(0, 1) * 255).numpy()
        alpha = out["mask"][0].numpy()
        if (h, w) != (H, W):
            layer = cv2.resize(layer, (W, H), interpolation=cv2.INTER_LINEAR)
            alpha = cv2.resize(alpha, (W, H), interpolation=cv2.INTER_LINEAR)
        return layer, alpha

    @staticmethod
    def _render_opencv(K, objects, H, W):
        """:func:`.overlay.paint_meshes` of the objects, far to near by centre depth."""
        far_first = sorted(objects, key=lambda o: -float(o.center[2]))
        return paint_meshes(K, [(o.vertices, o.faces, o.colors) for o in far_first], H, W)
