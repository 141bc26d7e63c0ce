"""Simulated tabletop camera without ROS: a pybullet scene, a pinhole camera, metric ground truth.

Conventions: world z up (metres); the camera pose is given in the *optical* frame (x right, y down,
z forward), so ground-truth vertices, depth and ``K`` (OpenCV, pixel centres at integer coordinates) agree
with what a real RGB-D driver publishes. pybullet renders with an OpenGL projection
(``computeProjectionMatrixFOV``); ``K`` is derived from that same matrix (:func:`projection_to_K`).

pybullet, pybullet_data and open3d are imported lazily: this module is imported by the ROS node, the
demo and the benchmarks, never by the library layers.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field

import numpy as np

TABLE_TOP_Z = 0.625  # pybullet_data table/table.urdf: top slab centred at 0.6 m, 0.05 m thick
MESH_SUFFIXES = (".obj", ".stl", ".ply", ".off")
SPLITS = ("train", "val", "test", "ood", "hh_train", "hh_val", "hh_test")
#: (du, dv) pixel offset of each renderer's image from the OpenGL pixel-centre convention. TinyRenderer
#: samples NDC at integer viewport coordinates (u = (x+1) W/2) and pybullet flips its rows afterwards, so
#: its principal point sits at (W/2, H/2 - 1) instead of ((W-1)/2, (H-1)/2); measured: table-plane
#: back-projection error 1.3 mm median without the offset, < 0.01 mm with it.
RENDERER_PIXEL_OFFSET = {"egl": (0.0, 0.0), "tiny": (0.5, -0.5)}


@dataclass
class CameraConfig:
    """Pinhole camera looking at ``target`` from a spherical pose (degrees, metres)."""

    width: int = 640
    height: int = 480
    fov_deg: float = 45.0  # vertical field of view
    distance: float = 0.75
    elevation_deg: float = 50.0  # above the table plane
    azimuth_deg: float = 0.0  # 0 = camera on the +x side of the table, looking towards -x
    target: tuple[float, float, float] = (0.0, 0.0, TABLE_TOP_Z)
    near: float = 0.05
    far: float = 5.0
    orbit_deg_per_s: float = 0.0  # slow orbit of the azimuth around the target

    def validate(self) -> None:
        if self.width < 8 or self.height < 8:
            raise ValueError(f"camera size {self.width}x{self.height} is too small (>= 8x8)")
        if not 1.0 <= self.fov_deg <= 170.0:
            raise ValueError(f"fov_deg must lie in [1, 170], got {self.fov_deg}")
        if not 0.0 < self.near < self.far:
            raise ValueError(f"need 0 < near < far, got near={self.near}, far={self.far}")
        if self.distance <= self.near:
            raise ValueError(f"distance {self.distance} must exceed near {self.near}")
        if not -89.9 <= self.elevation_deg <= 89.9:
            raise ValueError(f"elevation_deg must lie in [-89.9, 89.9], got {self.elevation_deg}")


@dataclass
class SceneConfig:
    """Which objects, how many, where they are dropped, which renderer.

    ``objects``: a split name of :mod:`dibr_ros.data.library` ("test", "ood", "val", "train", "hh_test", ...,
    or several joined by "+"), or a list of URDF / mesh files (absolute, or relative to pybullet_data). URDFs
    load at their own scale; bare meshes are scaled by ``mesh_scale`` (their units times ``mesh_scale`` =
    metres). Household objects (``hh_*``) are dropped upright (random yaw), as they stand on a table.
    ``lift``: (lo, hi) metres: after settling, the first object is raised by a seeded height in that range
    and held there (as by a gripper), nothing under it; None = every object rests.
    """

    objects: str | list[str] = "test"
    min_objects: int = 1
    max_objects: int = 3
    seed: int = 0
    spread: float = 0.12  # half side of the square drop area around the table centre (m)
    min_separation: float = 0.12  # between drop points (m)
    mesh_scale: float = 1.0
    renderer: str = "auto"  # "auto" (EGL if it loads, else TinyRenderer) | "egl" | "tiny"
    shadows: bool = False
    settle_steps: int = 1200  # upper bound; stepping stops earlier once everything rests
    lift: tuple[float, float] | None = None

    def validate(self) -> None:
        if not 1 <= self.min_objects <= self.max_objects:
            raise ValueError(f"need 1 <= min_objects <= max_objects, got {self.min_objects}, "
                             f"{self.max_objects}")
        if self.renderer not in ("auto", "egl", "tiny"):
            raise ValueError(f"renderer must be 'auto', 'egl' or 'tiny', got {self.renderer!r}")
        if self.mesh_scale <= 0:
            raise ValueError(f"mesh_scale must be > 0, got {self.mesh_scale}")
        if isinstance(self.objects, str) and not all(part in SPLITS for part in self.objects.split("+")):
            raise ValueError(f"objects must be one of {SPLITS} (or several joined by '+') or a list of files, "
                             f"got {self.objects!r}")
        if self.lift is not None and not (len(self.lift) == 2 and 0 <= self.lift[0] <= self.lift[1] <= 2.0):
            raise ValueError(f"lift must be (lo, hi) metres with 0 <= lo <= hi <= 2, got {self.lift}")
        if not isinstance(self.objects, str) and len(self.objects) == 0:
            raise ValueError("objects: empty file list")


@dataclass
class GroundTruthObject:
    """One object as the camera sees it: true surface in the camera optical frame (metres)."""

    name: str
    label: int  # value of this object in SimFrame.labels
    vertices: np.ndarray  # (V, 3) float32, camera optical frame, metres
    faces: np.ndarray  # (F, 3) int64
    colors: np.ndarray  # (V, 3) float32 in [0, 1]
    pose_world: np.ndarray  # (4, 4) float64, link frame in the world
    visible_pixels: int


@dataclass
class SimFrame:
    """One rendered view. ``depth`` is metric z along the optical axis, NaN where nothing was hit."""

    rgb: np.ndarray  # (H, W, 3) uint8
    depth: np.ndarray  # (H, W) float32 metres
    labels: np.ndarray  # (H, W) int32, 0 = background / table, i + 1 = objects[i]
    K: np.ndarray  # (3, 3) float64, OpenCV
    T_cam_world: np.ndarray  # (4, 4) float64, world -> camera optical frame
    objects: list[GroundTruthObject]
    time_s: float
    render_ms: float

    def table_plane(self) -> np.ndarray:
        """(a, b, c, d) of the table top in the camera optical frame: a x + b y + c z + d = height above
        it (m), what a robot knows from its camera's mounting."""
        return table_plane_in_camera(self.T_cam_world)


def table_plane_in_camera(T_cam_world: np.ndarray) -> np.ndarray:
    """(a, b, c, d) of the table top (z = TABLE_TOP_Z, world z up) in the optical frame of a camera at
    ``T_cam_world`` (4, 4, world -> camera)."""
    R, t = T_cam_world[:3, :3], T_cam_world[:3, 3]
    n = R @ np.array([0.0, 0.0, 1.0])  # world up, in the camera frame
    # a camera point X is at world R^T (X - t): its height is up . R^T (X - t) - TABLE_TOP_Z
    return np.array([*n, -float(n @ t) - TABLE_TOP_Z])


@dataclass
class _Body:
    name: str
    uid: int
    # one entry per visual: (link index, vertices in the visual frame (V,3), faces, rgb, T_link_visual)
    visuals: list[tuple[int, np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = field(default_factory=list)


def pose_matrix(position, quaternion) -> np.ndarray:
    """(4, 4) float64 from a position (3,) and a pybullet quaternion (x, y, z, w; scipy's order too)."""
    from scipy.spatial.transform import Rotation

    T = np.eye(4)
    T[:3, :3] = Rotation.from_quat(np.asarray(quaternion, dtype=np.float64)).as_matrix()
    T[:3, 3] = position
    return T


def transform(T: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Apply a (4, 4) rigid transform to (N, 3) points."""
    return points @ T[:3, :3].T + T[:3, 3]


def gl_matrix(flat) -> np.ndarray:
    """pybullet's column-major 16-float matrix -> (4, 4) row-major float64."""
    return np.asarray(flat, dtype=np.float64).reshape(4, 4).T


def projection_to_K(P: np.ndarray, width: int, height: int) -> np.ndarray:
    """OpenCV K (3, 3) equivalent to an OpenGL projection ``P`` (4, 4) on a ``width`` x ``height`` image.

    NDC x = (2u + 1 - W) / W and y = (H - 2v - 1) / H at integer pixel centres (u, v); the optical frame is
    the OpenGL camera frame with y and z flipped.
    """
    if abs(P[3, 2] + 1.0) > 1e-6 or abs(P[3, 3]) > 1e-9:
        raise ValueError("projection_to_K: not a perspective projection matrix")
    K = np.eye(3)
    K[0, 0] = P[0, 0] * width / 2.0
    K[1, 1] = P[1, 1] * height / 2.0
    K[0, 2] = (width - 1) / 2.0 - P[0, 2] * width / 2.0
    K[1, 2] = (height - 1) / 2.0 + P[1, 2] * height / 2.0
    return K


def depth_buffer_to_metres(zbuf: np.ndarray, near: float, far: float) -> np.ndarray:
    """OpenGL depth buffer in [0, 1] -> metric z (float32), NaN at the far plane (nothing hit)."""
    zbuf = np.asarray(zbuf, dtype=np.float64)
    z = far * near / (far - (far - near) * zbuf)
    z[zbuf >= 1.0 - 1e-7] = np.nan
    return z.astype(np.float32)


def camera_pose(cam: CameraConfig, t: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Eye position (3,) and world -> optical (4, 4) at time ``t`` (seconds, for the orbit)."""
    az = math.radians(cam.azimuth_deg + cam.orbit_deg_per_s * t)
    el = math.radians(cam.elevation_deg)
    target = np.asarray(cam.target, dtype=np.float64)
    direction = np.array([math.cos(el) * math.cos(az), math.cos(el) * math.sin(az), math.sin(el)])
    eye = target + cam.distance * direction
    z = target - eye
    z /= np.linalg.norm(z)
    x = np.cross(z, [0.0, 0.0, 1.0])  # optical x = forward x world-up points right
    x /= np.linalg.norm(x)
    y = np.cross(z, x)  # down
    T = np.eye(4)
    T[:3, :3] = np.stack([x, y, z])
    T[:3, 3] = -T[:3, :3] @ eye
    return eye, T


def pybullet_data_path() -> str:
    import pybullet_data

    return pybullet_data.getDataPath()


def _resolve_file(path: str) -> str:
    if os.path.isfile(path):
        return os.path.abspath(path)
    cand = os.path.join(pybullet_data_path(), path)
    if os.path.isfile(cand):
        return cand
    raise ValueError(f"object file not found (also not under pybullet_data): {path}")


_MESH_CACHE: dict[str, tuple[np.ndarray, np.ndarray]] = {}


def load_mesh_file(path: str) -> tuple[np.ndarray, np.ndarray]:
    """Vertices (V, 3) float64 and faces (F, 3) int64 of a mesh file as pybullet reads it (file units)."""
    if path not in _MESH_CACHE:
        if path.lower().endswith(".obj"):
            verts, faces = _read_obj(path)
        else:
            import open3d as o3d

            m = o3d.io.read_triangle_mesh(path)
            verts, faces = np.asarray(m.vertices, np.float64), np.asarray(m.triangles, np.int64)
        if len(verts) == 0 or len(faces) == 0:
            raise ValueError(f"mesh file has no triangles: {path}")
        _MESH_CACHE[path] = (verts, faces)
    return _MESH_CACHE[path]


def _read_obj(path: str) -> tuple[np.ndarray, np.ndarray]:
    # All groups/objects of the file, polygons fanned: what pybullet's tinyobj loader renders.
    verts, faces = [], []
    with open(path, errors="replace") as f:
        for line in f:
            if line.startswith("v "):
                verts.append([float(x) for x in line.split()[1:4]])
            elif line.startswith("f "):
                idx = [int(tok.split("/")[0]) for tok in line.split()[1:]]
                idx = [i - 1 if i > 0 else len(verts) + i for i in idx]
                faces.extend([idx[0], idx[k], idx[k + 1]] for k in range(1, len(idx) - 1))
    return np.asarray(verts, np.float64).reshape(-1, 3), np.asarray(faces, np.int64).reshape(-1, 3)


def _primitive_mesh(geom: int, dims, p) -> tuple[np.ndarray, np.ndarray]:
    import open3d as o3d

    if geom == p.GEOM_BOX:
        m = o3d.geometry.TriangleMesh.create_box(*dims[:3])
        m.translate(-np.asarray(dims[:3]) / 2.0)
    elif geom == p.GEOM_SPHERE:
        m = o3d.geometry.TriangleMesh.create_sphere(dims[0], resolution=16)
    elif geom == p.GEOM_CYLINDER:
        m = o3d.geometry.TriangleMesh.create_cylinder(dims[1], dims[0], resolution=24)
    else:
        raise ValueError(f"unsupported visual geometry type {geom} (mesh, box, sphere, cylinder)")
    return np.asarray(m.vertices, np.float64), np.asarray(m.triangles, np.int64)


_VISUAL_CACHE: dict[str, list] = {}


def urdf_visuals(path: str) -> list[tuple[int, np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
    """Visual geometry of a URDF as pybullet loads it: per visual (link index, vertices (V,3) metres in
    the visual frame, faces (F,3), rgb (3,), T_link_visual (4,4)).

    Read in a private DIRECT client: with the EGL plugin loaded, getVisualShapeData of re-used body ids
    returns garbage.
    """
    if path not in _VISUAL_CACHE:
        import pybullet as p

        cid = p.connect(p.DIRECT)
        try:
            uid = p.loadURDF(path, physicsClientId=cid)
            shapes = p.getVisualShapeData(uid, physicsClientId=cid)
        finally:
            p.disconnect(cid)
        visuals = []
        for vis in shapes:
            link, geom, dims, fname, lpos, lorn, rgba = vis[1], vis[2], vis[3], vis[4], vis[5], vis[6], vis[7]
            if geom == p.GEOM_MESH:
                if not fname:
                    raise ValueError(f"{path}: mesh visual without a file name")
                verts, faces = load_mesh_file(fname.decode() if isinstance(fname, bytes) else fname)
                verts = verts * np.asarray(dims[:3], np.float64)
            else:
                verts, faces = _primitive_mesh(geom, dims, p)
            visuals.append((link, verts, faces, np.asarray(rgba[:3], np.float32), pose_matrix(lpos, lorn)))
        if not visuals:
            raise ValueError(f"{path}: URDF has no visual geometry")
        _VISUAL_CACHE[path] = visuals
    return _VISUAL_CACHE[path]


def _library_urdf(name: str) -> str | None:
    """pybullet_data URDF of a library object name (random_NNN or a named object), None if it has none."""
    from dibr_ros.data import library

    if name.startswith("random_"):
        rel = f"random_urdfs/{name[7:]}/{name[7:]}.urdf"
    else:
        rel = library.NAMED_OBJECTS.get(name, ("",))[0]
    path = os.path.join(pybullet_data_path(), rel)
    return path if rel.endswith(".urdf") and os.path.isfile(path) else None


def _random_quaternion(rng: np.random.Generator) -> list[float]:
    q = rng.normal(size=4)
    return (q / np.linalg.norm(q)).tolist()


class TabletopScene:
    """pybullet DIRECT tabletop: plane, table, 1..N settled objects, one pinhole camera.

    >>> scene = TabletopScene(SceneConfig(objects=["random_urdfs/900/900.urdf"]), CameraConfig())
    >>> frame = scene.render(t=0.0)  # SimFrame: rgb, depth (m), labels, K, ground-truth meshes
    """

    def __init__(self, scene: SceneConfig | None = None, camera: CameraConfig | None = None):
        import pybullet as p

        self.scene_cfg = scene or SceneConfig()
        self.camera = camera or CameraConfig()
        self.scene_cfg.validate()
        self.camera.validate()
        self._p = p
        self._cid = p.connect(p.DIRECT)
        self.renderer_name = self._select_renderer()
        self.bodies: list[_Body] = []
        self.scene_index = -1
        self.reset(self.scene_cfg.seed)

    # ---- scene -------------------------------------------------------------------------------------------
    def _select_renderer(self) -> str:
        p, want = self._p, self.scene_cfg.renderer
        if want == "tiny":
            return "tiny"
        import pkgutil

        loader = pkgutil.get_loader("eglRenderer")
        plugin = -1
        if loader is not None:
            plugin = p.loadPlugin(loader.get_filename(), "_eglRendererPlugin", physicsClientId=self._cid)
        if plugin >= 0:
            return "egl"
        if want == "egl":
            raise RuntimeError("pybullet EGL renderer plugin did not load")
        return "tiny"

    def _candidate_names(self) -> list[str]:
        objs = self.scene_cfg.objects
        if isinstance(objs, str):
            from dibr_ros.data import library

            names = list(library.list_objects(objs))
            if not names:
                raise ValueError(f"object split {objs!r} is empty")
            return names
        return [str(o) for o in objs]

    def reset(self, seed: int | None = None) -> None:
        """New scene: clear, drop a seeded random choice of objects, settle."""
        p, cid, cfg = self._p, self._cid, self.scene_cfg
        seed = cfg.seed if seed is None else int(seed)
        rng = np.random.default_rng(seed)
        p.resetSimulation(physicsClientId=cid)
        p.setGravity(0, 0, -9.81, physicsClientId=cid)
        p.setPhysicsEngineParameter(deterministicOverlappingPairs=1, physicsClientId=cid)
        data = pybullet_data_path()
        p.loadURDF(os.path.join(data, "plane.urdf"), physicsClientId=cid)
        p.loadURDF(os.path.join(data, "table/table.urdf"), useFixedBase=True, physicsClientId=cid)
        names = self._candidate_names()
        k = int(rng.integers(cfg.min_objects, cfg.max_objects + 1))
        chosen = rng.choice(len(names), size=k, replace=len(names) < k)
        drops = self._drop_points(rng, k)
        self.bodies = []
        for i, (idx, xy) in enumerate(zip(chosen, drops)):
            body = self._spawn(names[int(idx)], rng)
            lo, hi = p.getAABB(body.uid, physicsClientId=cid)
            pos, orn = p.getBasePositionAndOrientation(body.uid, physicsClientId=cid)
            lift = TABLE_TOP_Z + 0.01 + 0.06 * i - lo[2]
            centre = (np.asarray(lo) + np.asarray(hi)) / 2.0
            new_pos = [xy[0] + pos[0] - centre[0], xy[1] + pos[1] - centre[1], pos[2] + lift]
            p.resetBasePositionAndOrientation(body.uid, new_pos, orn, physicsClientId=cid)
            self.bodies.append(body)
        self._settle()
        # Objects that rolled off the table are not part of the scene any more.
        kept = []
        for body in self.bodies:
            # getAABB is the rotated local box (loose); the true vertices say where the object lies.
            if self._world_vertices(body)[:, 2].mean() > TABLE_TOP_Z:
                kept.append(body)
            else:
                p.removeBody(body.uid, physicsClientId=cid)
        self.bodies = kept
        self.lifted = None
        if cfg.lift is not None and self.bodies:
            # Hold the first object in the air: no more physics steps, so it stays where it is put.
            body = self.bodies[0]
            h = float(rng.uniform(*cfg.lift))
            pos, orn = p.getBasePositionAndOrientation(body.uid, physicsClientId=cid)
            p.resetBasePositionAndOrientation(body.uid, [pos[0], pos[1], pos[2] + h], orn, physicsClientId=cid)
            self.lifted = (body.name, h)
        self.scene_index = seed

    def _drop_points(self, rng: np.random.Generator, k: int) -> np.ndarray:
        cfg, tx, ty = self.scene_cfg, self.camera.target[0], self.camera.target[1]
        pts: list[np.ndarray] = []
        for _ in range(200 * k):
            if len(pts) == k:
                break
            c = np.array([tx, ty]) + rng.uniform(-cfg.spread, cfg.spread, size=2)
            if all(np.linalg.norm(c - q) >= cfg.min_separation for q in pts):
                pts.append(c)
        while len(pts) < k:  # crowded: accept overlaps, physics separates them
            pts.append(np.array([tx, ty]) + rng.uniform(-cfg.spread, cfg.spread, size=2))
        return np.asarray(pts)

    def _spawn(self, name: str, rng: np.random.Generator) -> _Body:
        p = self._p
        orn = _random_quaternion(rng)
        if name.startswith("hh_"):  # upright, random yaw
            orn = p.getQuaternionFromEuler([0.0, 0.0, float(rng.uniform(0, 2 * math.pi))])
        if isinstance(self.scene_cfg.objects, str):
            urdf = _library_urdf(name)
            if urdf is not None:
                try:
                    return self._spawn_urdf(name, urdf, orn)
                except p.error:
                    pass  # pybullet cannot read some URDFs (e.g. toys/concave_box): use the library mesh
            from dibr_ros.data import library

            obj = library.load_object(name)
            verts = np.asarray(obj.vertices, np.float64) * float(obj.scale_m)
            return self._spawn_vertices(name, verts, np.asarray(obj.faces, np.int64),
                                        np.asarray(obj.colors, np.float32), orn)
        path = _resolve_file(name)
        if path.lower().endswith(".urdf"):
            return self._spawn_urdf(os.path.splitext(os.path.basename(path))[0], path, orn)
        if path.lower().endswith(MESH_SUFFIXES):
            verts, faces = load_mesh_file(path)
            verts = verts * self.scene_cfg.mesh_scale
            verts = verts - (verts.min(0) + verts.max(0)) / 2.0
            color = np.tile(rng.uniform(0.2, 0.9, size=3).astype(np.float32), (len(verts), 1))
            return self._spawn_vertices(os.path.splitext(os.path.basename(path))[0], verts, faces, color, orn)
        raise ValueError(f"unsupported object file (URDF or {', '.join(MESH_SUFFIXES)}): {name}")

    def _spawn_urdf(self, name: str, path: str, orn) -> _Body:
        uid = self._p.loadURDF(path, [0, 0, 2.0], orn, physicsClientId=self._cid)
        return _Body(name, uid, urdf_visuals(path))

    def _spawn_vertices(self, name: str, verts: np.ndarray, faces: np.ndarray, colors: np.ndarray,
                        orn) -> _Body:
        p, cid = self._p, self._cid
        rgba = [*np.clip(colors.mean(0), 0, 1).tolist(), 1.0]
        vis = p.createVisualShape(p.GEOM_MESH, vertices=verts.tolist(), indices=faces.reshape(-1).tolist(),
                                  rgbaColor=rgba, physicsClientId=cid)
        col = p.createCollisionShape(p.GEOM_MESH, vertices=verts.tolist(), physicsClientId=cid)
        uid = p.createMultiBody(0.1, col, vis, [0, 0, 2.0], orn, physicsClientId=cid)
        return _Body(name, uid, [(-1, verts, faces, np.asarray(rgba[:3], np.float32), np.eye(4))])

    def _settle(self) -> None:
        p, cid = self._p, self._cid
        for step in range(self.scene_cfg.settle_steps):
            p.stepSimulation(physicsClientId=cid)
            if step >= 240 and step % 40 == 0:
                moving = False
                for b in self.bodies:
                    lin, ang = p.getBaseVelocity(b.uid, physicsClientId=cid)
                    moving |= np.linalg.norm(lin) > 2e-3 or np.linalg.norm(ang) > 2e-2
                if not moving:
                    break

    def _link_pose(self, uid: int, link: int) -> np.ndarray:
        p, cid = self._p, self._cid
        if link >= 0:
            st = p.getLinkState(uid, link, computeForwardKinematics=True, physicsClientId=cid)
            return pose_matrix(st[4], st[5])
        # The base pose pybullet reports is its centre of mass; visuals hang off the URDF link frame.
        pos, orn = p.getBasePositionAndOrientation(uid, physicsClientId=cid)
        ipos, iorn = p.getDynamicsInfo(uid, -1, physicsClientId=cid)[3:5]
        return pose_matrix(pos, orn) @ np.linalg.inv(pose_matrix(ipos, iorn))

    def _world_vertices(self, body: _Body) -> np.ndarray:
        """(V, 3) float64 world vertices of all visuals of ``body`` (concatenated in visual order)."""
        out = []
        for link, v, _f, _c, T_lv in body.visuals:
            out.append(transform(self._link_pose(body.uid, link) @ T_lv, v))
        return np.concatenate(out)

    # ---- camera ------------------------------------------------------------------------------------------
    def projection_matrix(self) -> np.ndarray:
        """(4, 4) OpenGL projection pybullet renders with."""
        c = self.camera
        return gl_matrix(self._p.computeProjectionMatrixFOV(c.fov_deg, c.width / c.height, c.near, c.far))

    @property
    def K(self) -> np.ndarray:
        """(3, 3) OpenCV intrinsics of the rendered images (this renderer's pixel grid)."""
        K = projection_to_K(self.projection_matrix(), self.camera.width, self.camera.height)
        du, dv = RENDERER_PIXEL_OFFSET[self.renderer_name]
        K[0, 2] += du
        K[1, 2] += dv
        return K

    def render(self, t: float = 0.0) -> SimFrame:
        """Render the camera at time ``t`` (s; only the orbit depends on it) with ground truth."""
        import time

        p, cid, c = self._p, self._cid, self.camera
        eye, T_cw = camera_pose(c, t)
        # OpenGL view = optical with y and z flipped.
        V = np.diag([1.0, -1.0, -1.0, 1.0]) @ T_cw
        P = self.projection_matrix()
        t0 = time.perf_counter()
        renderer = p.ER_BULLET_HARDWARE_OPENGL if self.renderer_name == "egl" else p.ER_TINY_RENDERER
        _w, _h, rgba, zbuf, seg = p.getCameraImage(
            c.width, c.height, V.T.reshape(-1).tolist(), P.T.reshape(-1).tolist(), renderer=renderer,
            shadow=int(self.scene_cfg.shadows), lightDirection=[0.4, 0.6, 1.0], physicsClientId=cid)
        render_ms = (time.perf_counter() - t0) * 1000.0
        rgb = np.asarray(rgba, np.uint8).reshape(c.height, c.width, 4)[..., :3].copy()
        depth = depth_buffer_to_metres(np.asarray(zbuf).reshape(c.height, c.width), c.near, c.far)
        seg = np.asarray(seg, np.int64).reshape(c.height, c.width)
        labels = np.zeros(seg.shape, np.int32)
        objects = []
        for i, body in enumerate(self.bodies):
            labels[seg == body.uid] = i + 1
        for i, body in enumerate(self.bodies):
            faces, colors, offset = [], [], 0
            for _link, v, f, rgb_c, _T in body.visuals:
                faces.append(f + offset)
                colors.append(np.tile(rgb_c, (len(v), 1)))
                offset += len(v)
            pose_world = self._link_pose(body.uid, -1)
            objects.append(GroundTruthObject(
                name=body.name, label=i + 1,
                vertices=transform(T_cw, self._world_vertices(body)).astype(np.float32),
                faces=np.concatenate(faces).astype(np.int64),
                colors=np.concatenate(colors).astype(np.float32),
                pose_world=pose_world, visible_pixels=int((labels == i + 1).sum())))
        return SimFrame(rgb=rgb, depth=depth, labels=labels, K=self.K,
                        T_cam_world=T_cw, objects=objects, time_s=float(t), render_ms=render_ms)

    def close(self) -> None:
        if self._cid is not None and self._p.isConnected(self._cid):
            self._p.disconnect(self._cid)
        self._cid = None

    def __enter__(self) -> TabletopScene:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
