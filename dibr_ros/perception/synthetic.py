"""Synthetic tabletop frames with exact geometry, and the sphere-baseline predictor.

Frames are ray-cast analytically (no renderer needed): spheres and oriented boxes resting on a plane seen
by a pinhole camera, giving rgb, depth and the true instance labels. Used by tests and benchmarks of the
perception pipeline and the node.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .geometry import pixel_rays, rotation_z_to
from .geometry import project as S_project


@dataclass
class SceneObject:
    """A sphere (``size`` = radius) or box (``size`` = (3,) half extents) in the optical frame (metres)."""

    kind: str
    center: np.ndarray
    size: np.ndarray
    rotation: np.ndarray = field(default_factory=lambda: np.eye(3))
    color: tuple[int, int, int] = (200, 60, 40)

    @property
    def radius(self) -> float:
        """Bounding-sphere radius (m)."""
        return float(self.size) if self.kind == "sphere" else float(np.linalg.norm(self.size))

    def mesh(self, level: int = 3) -> tuple[np.ndarray, np.ndarray]:
        """Closed triangle mesh in the optical frame: vertices (V, 3) float64, faces (F, 3) int64."""
        if self.kind == "sphere":
            v, f = ico_sphere(level)
            return v * float(self.size) + self.center, f
        v, f = box_mesh()
        return (v * self.size) @ self.rotation.T + self.center, f


def ico_sphere(level: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Unit ico-sphere of :func:`dibr_ros.render.mesh.ico_sphere` as numpy: (V, 3) float64, (F, 3) int64."""
    from dibr_ros.render.mesh import ico_sphere as render_ico_sphere

    v, f = render_ico_sphere(level)
    return v.numpy().astype(np.float64), f.numpy().astype(np.int64)


def box_mesh() -> tuple[np.ndarray, np.ndarray]:
    """Cube [-1, 1]^3: 8 vertices, 12 outward counter-clockwise faces."""
    v = np.array([[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)], dtype=np.float64)
    f = np.array([[0, 1, 3], [0, 3, 2], [4, 6, 7], [4, 7, 5], [0, 4, 5], [0, 5, 1],
                  [2, 3, 7], [2, 7, 6], [0, 2, 6], [0, 6, 4], [1, 5, 7], [1, 7, 3]], dtype=np.int64)
    return v, f


def default_intrinsics(width: int = 640, height: int = 480, fov_x_deg: float = 60.0) -> np.ndarray:
    """Pinhole K with the principal point at the image centre."""
    f = 0.5 * width / np.tan(np.radians(fov_x_deg) / 2)
    return np.array([[f, 0, (width - 1) / 2], [0, f, (height - 1) / 2], [0, 0, 1]], dtype=np.float64)


def _hit_sphere(rays, c, r):
    # |t ray - c|^2 = r^2 with ray z = 1, so t is the depth.
    a = (rays * rays).sum(-1)
    b = rays @ c
    disc = b * b - a * (c @ c - r * r)
    t = (b - np.sqrt(np.maximum(disc, 0))) / a
    return np.where((disc >= 0) & (t > 0), t, np.inf)


def _hit_box(rays, c, R, half):
    o = -(R.T @ c)
    dirs = rays @ R
    with np.errstate(divide="ignore", invalid="ignore"):
        t1 = (-half - o) / dirs
        t2 = (half - o) / dirs
    tn = np.nanmax(np.minimum(t1, t2), axis=-1)
    tf = np.nanmin(np.maximum(t1, t2), axis=-1)
    return np.where((tn <= tf) & (tn > 0), tn, np.inf)


def render_scene(objects, K, width: int, height: int, plane=None, plane_color=(150, 150, 140),
                 background_color=(90, 110, 130), light=(0.2, 0.9, 0.4)):
    """Ray-cast a frame.

    Args:
        objects: list of :class:`SceneObject`.
        plane: (n (3,), d) table plane ``n . p + d = 0`` or None.
    Returns:
        dict(rgb (H, W, 3) uint8, depth (H, W) float32 metres (0 = no surface), labels (H, W) uint16
        with object i labelled i + 1).
    """
    vv, uu = np.mgrid[0:height, 0:width]
    rays = pixel_rays(K, np.stack([uu, vv], axis=-1))
    depth = np.full((height, width), np.inf)
    labels = np.zeros((height, width), np.uint16)
    normals = np.zeros((height, width, 3))
    albedo = np.zeros((height, width, 3))
    albedo[:] = background_color
    if plane is not None:
        n, d = np.asarray(plane[0], float), float(plane[1])
        with np.errstate(divide="ignore"):
            t = -d / (rays @ n)
        hit = (t > 0) & np.isfinite(t)
        depth[hit] = t[hit]
        normals[hit] = n if d > 0 else -n
        albedo[hit] = plane_color
    for i, ob in enumerate(objects):
        if ob.kind == "sphere":
            t = _hit_sphere(rays, np.asarray(ob.center, float), float(ob.size))
        else:
            t = _hit_box(rays, np.asarray(ob.center, float), ob.rotation, np.asarray(ob.size, float))
        hit = t < depth
        depth[hit] = t[hit]
        labels[hit] = i + 1
        p = rays[hit] * t[hit][:, None]
        if ob.kind == "sphere":
            nrm = (p - ob.center) / float(ob.size)
        else:
            local = (p - ob.center) @ ob.rotation / ob.size
            axis = np.abs(local).argmax(-1)
            nrm_l = np.zeros_like(local)
            nrm_l[np.arange(len(local)), axis] = np.sign(local[np.arange(len(local)), axis])
            nrm = nrm_l @ ob.rotation.T
        normals[hit] = nrm
        albedo[hit] = ob.color
    light = np.asarray(light, float) / np.linalg.norm(light)
    shade = 0.55 + 0.45 * np.clip(-(normals @ light), 0, 1)
    shade[~np.isfinite(depth)] = 1.0
    rgb = np.clip(albedo * shade[..., None], 0, 255).astype(np.uint8)
    depth[~np.isfinite(depth)] = 0
    return {"rgb": rgb, "depth": depth.astype(np.float32), "labels": labels}


def table_plane(camera_height: float = 0.7, pitch_deg: float = 50.0):
    """Table plane (n, d) in the optical frame for a camera ``camera_height`` m above it, pitched down."""
    p = np.radians(pitch_deg)
    # World up in the optical frame (y down, z forward) for a camera pitched down by p.
    up = np.array([0.0, -np.cos(p), -np.sin(p)])
    return up, camera_height


def tabletop_scene(n_objects: int = 5, seed: int = 0, width: int = 640, height: int = 480,
                   camera_height: float = 0.7, pitch_deg: float = 50.0, kinds=("sphere", "box")):
    """Random objects of ``kinds`` resting on a table, apart from each other in space and image, in view.

    Returns:
        (frame dict from :func:`render_scene`, objects list, K (3, 3), plane (n, d)).
    """
    rng = np.random.default_rng(seed)
    K = default_intrinsics(width, height)
    n, d = table_plane(camera_height, pitch_deg)
    palette = [(200, 50, 40), (40, 160, 60), (50, 70, 200), (220, 190, 40), (160, 60, 170), (40, 170, 180)]
    # Table frame: e1 along the image x axis, e2 away from the camera on the table.
    e1 = np.array([1.0, 0.0, 0.0])
    e2 = np.cross(n, e1)
    e2 = e2 if e2[2] > 0 else -e2
    foot = -d * n  # table point below the camera
    objects = []
    tries = 0
    while len(objects) < n_objects and tries < 1000:
        tries += 1
        kind = kinds[int(rng.integers(len(kinds)))]
        fwd = rng.uniform(0.35, 0.95) * camera_height / 0.7
        side = rng.uniform(-0.3, 0.3) * fwd
        base = foot + e2 * fwd + e1 * side
        if kind == "sphere":
            r = rng.uniform(0.03, 0.06)
            ob = SceneObject("sphere", base + n * r, np.float64(r), color=palette[len(objects) % 6])
        else:
            half = np.array([rng.uniform(0.02, 0.05), rng.uniform(0.02, 0.05), rng.uniform(0.02, 0.05)])
            yaw = rng.uniform(0, np.pi)
            Rz = np.array([[np.cos(yaw), -np.sin(yaw), 0], [np.sin(yaw), np.cos(yaw), 0], [0, 0, 1.0]])
            # Box frame: local z = table normal.
            frame = np.stack([e1, e2, n], axis=1) @ Rz
            ob = SceneObject("box", base + n * half[2], half, frame, palette[len(objects) % 6])
        uv = ob.center @ K.T
        u, v = uv[:2] / uv[2]
        margin = 0.2 * width
        if not (margin < u < width - margin and margin < v < height - margin * 0.75):
            continue
        # Apart in space and in the image (projected bounding circles 10 px apart).
        def image_radius(o):
            return K[0, 0] * o.radius / max(o.center[2], 1e-6)

        if any(np.linalg.norm(ob.center - o.center) < ob.radius + o.radius + 0.04
               or np.linalg.norm(S_project(K, ob.center) - S_project(K, o.center))
               < image_radius(ob) + image_radius(o) + 10 for o in objects):
            continue
        objects.append(ob)
    frame = render_scene(objects, K, width, height, plane=(n, d))
    return frame, objects, K, (n, d)


@dataclass
class SphereMeshes:
    """Output of :class:`SpherePredictor` (same fields as ``dibr_ros.model`` predictions)."""

    vertices: object
    faces: object
    colors: object


class SpherePredictor:
    """Sphere baseline with the ``Predictor.predict`` contract: every object is a unit ico-sphere
    coloured with the mean colour of its masked crop pixels. Needs no weights."""

    device = "cpu"

    def __init__(self, level: int = 3, input_size: int = 64):
        v, f = ico_sphere(level)
        self._v = v.astype(np.float32)
        self._f = f
        self.input_size = input_size
        self.calls = 0

    def predict(self, rgb, mask) -> SphereMeshes:
        """rgb (N, h, w, 3) uint8, mask (N, h, w) bool -> vertices (N, V, 3), faces (F, 3), colors (N, V, 3)."""
        import torch

        rgb = np.asarray(rgb)
        mask = np.asarray(mask, dtype=bool)
        if rgb.ndim != 4 or rgb.shape[-1] != 3 or mask.shape != rgb.shape[:3]:
            raise ValueError(f"expected rgb (N, h, w, 3) and mask (N, h, w), got {rgb.shape}, {mask.shape}")
        self.calls += 1
        N = rgb.shape[0]
        colors = np.empty((N, len(self._v), 3), np.float32)
        for i in range(N):
            sel = rgb[i][mask[i]]
            mean = sel.mean(axis=0) / 255.0 if len(sel) else np.full(3, 0.5)
            colors[i] = mean
        verts = np.broadcast_to(self._v, (N,) + self._v.shape).copy()
        return SphereMeshes(torch.from_numpy(verts), torch.from_numpy(self._f), torch.from_numpy(colors))


def view_frame_mesh(ob: SceneObject, K: np.ndarray, crop_center) -> tuple[np.ndarray, np.ndarray]:
    """The exact view-frame mesh of ``ob`` for a crop centred at pixel ``crop_center``: what a perfect
    predictor returns (origin at the bounding-sphere centre, unit = bounding radius, crop-ray axes)."""
    v, f = ob.mesh()
    R = rotation_z_to(pixel_rays(K, np.asarray(crop_center, float)))
    return ((v - ob.center) @ R) / ob.radius, f
