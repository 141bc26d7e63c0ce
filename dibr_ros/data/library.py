"""Object library: pybullet_data meshes and procedural primitives, cleaned, normalised and split.

Names and splits (fixed by object id, DESIGN §6):

- ``random_NNN`` (pybullet_data ``random_urdfs/NNN``): NNN 000-799 -> "train", 800-899 -> "val",
  900-999 -> "test".
- ``prim_<kind>_NNN`` (procedural, kind in :data:`PRIMITIVE_KINDS`, NNN < :data:`PRIMITIVES_PER_KIND`): "train".
  The shape is drawn by :func:`primitive` from a generator seeded by (kind, NNN), so a name is a fixed mesh.
- named pybullet_data objects (:data:`NAMED_OBJECTS`: mug, duck, teddy, ...): "ood" (never trained on).
- ``hh_<kind>_NNN`` (procedural household objects of :mod:`dibr_ros.data.household`, upright, z up):
  "hh_train" / "hh_val" / "hh_test" by NNN.

A split argument may join splits with "+" ("train+hh_train").

Every :class:`ObjectMesh` is normalised: bounding-box centre at the origin, bounding-sphere radius (max
vertex distance from that centre) 1; ``scale_m`` is that radius in metres in the original URDF scale.
Loaded meshes are cached as ``.npz`` under ``$DIBR_ROS_CACHE`` (default ``~/.cache/dibr_ros``).
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import zlib
from dataclasses import dataclass

import numpy as np

from .meshio import clean_mesh, parse_urdf, read_obj

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test", "ood", "hh_train", "hh_val", "hh_test")
PRIMITIVE_KINDS = ("box", "cylinder", "capsule", "cone", "ellipsoid", "superquadric")
PRIMITIVES_PER_KIND = 40
#: Bumped whenever loading/cleaning changes what a name yields (invalidates the cache).
LIBRARY_VERSION = 2

#: name -> (path relative to pybullet_data: a URDF, or an OBJ with an explicit (scale, rgba)).
NAMED_OBJECTS: dict[str, tuple] = {
    "mug": ("objects/mug.urdf",),
    "duck": ("duck_vhacd.urdf",),
    "teddy": ("teddy_vhacd.urdf",),
    "bunny": ("bunny.obj", 0.1, (0.85, 0.75, 0.65, 1.0)),
    "torus": ("torus/torus_textured.obj", 0.1, None),
    "lego": ("lego/lego.urdf",),
    "jenga": ("jenga/jenga.urdf",),
    "soccerball": ("soccerball.urdf",),
    "domino": ("domino/domino.urdf",),
    "toy_cylinder": ("toys/cylinder.obj", 0.1, None),
    "toy_prism": ("toys/prism.obj", 0.1, None),
    "shape_sorter": ("toys/shape_sorter.obj", 0.1, None),
    "concave_box": ("toys/concave_box.urdf",),
    "block": ("block.urdf",),
}


@dataclass
class ObjectMesh:
    """A normalised object.

    Attributes:
        name: library name (see module docstring).
        split: "train" | "val" | "test" | "ood".
        vertices: (V,3) float32, bbox centre at 0, bounding-sphere radius 1 (object frame of the source file).
        faces: (F,3) int64, outward CCW winding for closed parts.
        colors: (V,3) float32 albedo in [0,1].
        scale_m: metric bounding-sphere radius of the original object (metres).
        source: file it came from, or "procedural:<kind>".
    """

    name: str
    split: str
    vertices: np.ndarray
    faces: np.ndarray
    colors: np.ndarray
    scale_m: float
    source: str


def data_root() -> str:
    """pybullet_data directory."""
    import pybullet_data

    return pybullet_data.getDataPath()


def cache_dir() -> str:
    """Mesh cache directory (``$DIBR_ROS_CACHE`` or ``~/.cache/dibr_ros``), created on demand."""
    root = os.environ.get("DIBR_ROS_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "dibr_ros")
    path = os.path.join(root, f"library_v{LIBRARY_VERSION}")
    os.makedirs(path, exist_ok=True)
    return path


def split_of(name: str) -> str:
    """Split of a library name; ValueError for unknown names."""
    if name.startswith("random_"):
        idx = name[len("random_"):]
        if len(idx) == 3 and idx.isdigit():
            i = int(idx)
            return "train" if i < 800 else "val" if i < 900 else "test"
    elif name.startswith("prim_"):
        kind, _, idx = name[len("prim_"):].rpartition("_")
        if kind in PRIMITIVE_KINDS and idx.isdigit() and int(idx) < PRIMITIVES_PER_KIND:
            return "train"
    elif name in NAMED_OBJECTS:
        return "ood"
    elif name.startswith("hh_"):
        from .household import household_split, parse_name

        return household_split(parse_name(name)[1])
    raise ValueError(f"unknown object name {name!r}")


@functools.lru_cache(maxsize=8)
def list_objects(split: str) -> list[str]:
    """Names of the objects of a split (one of :data:`SPLITS`, or several joined by "+"), sorted within each
    split; ood lists those that load."""
    if "+" in split:
        return [n for part in split.split("+") for n in list_objects(part)]
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS} (or several joined by '+'), got {split!r}")
    if split.startswith("hh_"):
        from .household import household_names

        return household_names(split)
    if split == "ood":
        names = []
        for name in NAMED_OBJECTS:
            try:
                load_object(name)
            except (OSError, ValueError, ImportError) as e:
                log.warning("skipping named object %s: %s", name, e)
                continue
            names.append(name)
        return names
    lo, hi = {"train": (0, 800), "val": (800, 900), "test": (900, 1000)}[split]
    names = [f"random_{i:03d}" for i in range(lo, hi)]
    if split == "train":
        names += [f"prim_{k}_{i:03d}" for k in PRIMITIVE_KINDS for i in range(PRIMITIVES_PER_KIND)]
    try:
        root = os.path.join(data_root(), "random_urdfs")
    except ImportError:
        # Without pybullet_data and open3d (the lent GPU machine) the mesh cache is the library.
        log.info("pybullet_data not installed: listing the cached objects of %s", cache_dir())
        return [n for n in names if os.path.isfile(_cache_path(n))]
    return [n for n in names
            if not n.startswith("random_") or os.path.isfile(os.path.join(root, n[7:], f"{n[7:]}.urdf"))]


def normalize(vertices: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """(V,3) -> (vertices centred on their bbox centre with unit bounding-sphere radius, centre (3,), radius)."""
    v = np.asarray(vertices, dtype=np.float64)
    center = 0.5 * (v.min(0) + v.max(0))
    radius = float(np.linalg.norm(v - center, axis=1).max())
    if not np.isfinite(radius) or radius <= 0:
        raise ValueError("degenerate mesh: zero or non-finite extent")
    return (v - center) / radius, center, radius


def _finish(name, v, f, c, metric_scale, source) -> ObjectMesh:
    v, f, c = clean_mesh(v, f, c)
    vn, _, radius = normalize(v)
    return ObjectMesh(name, split_of(name), vn.astype(np.float32), f.astype(np.int64),
                      np.clip(c, 0, 1).astype(np.float32), float(radius * metric_scale), source)


def _load_file_object(name: str) -> ObjectMesh:
    root = data_root()
    if name.startswith("random_"):
        idx = name[len("random_"):]
        spec: tuple = (f"random_urdfs/{idx}/{idx}.urdf",)
    else:
        spec = NAMED_OBJECTS[name]
    path = os.path.join(root, spec[0])
    if path.endswith(".urdf"):
        vis = parse_urdf(path)
        mesh_path, scale, rgba = vis.mesh_path, vis.scale, vis.rgba
    else:
        mesh_path, scale, rgba = path, np.full(3, spec[1]), None if spec[2] is None else np.asarray(spec[2])
    if not mesh_path.lower().endswith(".obj"):
        raise ValueError(f"{mesh_path}: only OBJ meshes are supported")
    if not os.path.isfile(mesh_path):
        raise OSError(f"{mesh_path}: missing")
    v, f, c = read_obj(mesh_path)
    # Like pybullet: a non-white URDF material colour tints the mesh (random_urdfs carry their colour
    # there, their MTL Kd is a constant grey); a white one leaves textures/MTL colours as they are.
    if rgba is not None and not np.allclose(rgba[:3], 1.0):
        c = np.broadcast_to(rgba[:3], c.shape).copy()
    v = v * scale
    return _finish(name, v, f, c, 1.0, os.path.relpath(mesh_path, root))


def _superquadric(rng: np.random.Generator, level: int = 3):
    import open3d as o3d

    m = o3d.geometry.TriangleMesh.create_sphere(1.0, resolution=24)
    d = np.asarray(m.vertices)
    e1, e2 = rng.uniform(0.3, 1.6, size=2)
    # Superellipsoid surface through the sphere direction field: signed powers of the sphere coordinates.
    theta = np.arcsin(np.clip(d[:, 2], -1, 1))
    phi = np.arctan2(d[:, 1], d[:, 0])

    def spow(x, p):
        return np.sign(x) * np.abs(x) ** p

    v = np.stack([spow(np.cos(theta), e1) * spow(np.cos(phi), e2),
                  spow(np.cos(theta), e1) * spow(np.sin(phi), e2),
                  spow(np.sin(theta), e1)], axis=1)
    return v, np.asarray(m.triangles).astype(np.int64)


def _primitive_geometry(kind: str, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    import open3d as o3d

    T = o3d.geometry.TriangleMesh
    if kind == "box":
        m = T.create_box(*rng.uniform(0.2, 1.0, size=3)).subdivide_midpoint(2)
    elif kind == "cylinder":
        m = T.create_cylinder(radius=rng.uniform(0.2, 1.0), height=rng.uniform(0.3, 2.0), resolution=32, split=3)
    elif kind == "cone":
        m = T.create_cone(radius=rng.uniform(0.2, 1.0), height=rng.uniform(0.3, 2.0), resolution=32, split=3)
    elif kind == "capsule":
        m = T.create_sphere(1.0, resolution=20)
        v = np.asarray(m.vertices).copy()
        r, h = rng.uniform(0.2, 0.6), rng.uniform(0.3, 1.6)
        v *= r
        v[:, 2] += np.where(v[:, 2] >= 0, h / 2, -h / 2)
        m.vertices = o3d.utility.Vector3dVector(v)
    elif kind == "ellipsoid":
        m = T.create_sphere(1.0, resolution=20)
        m.vertices = o3d.utility.Vector3dVector(np.asarray(m.vertices) * rng.uniform(0.25, 1.0, size=3))
    elif kind == "superquadric":
        v, f = _superquadric(rng)
        return v * rng.uniform(0.3, 1.0, size=3), f
    else:
        raise ValueError(f"primitive kind must be one of {PRIMITIVE_KINDS}, got {kind!r}")
    return np.asarray(m.vertices).copy(), np.asarray(m.triangles).astype(np.int64)


def _random_rotation(rng: np.random.Generator) -> np.ndarray:
    """Uniformly random (3, 3) rotation from a normalised Gaussian quaternion drawn as (w, x, y, z)."""
    from scipy.spatial.transform import Rotation

    return Rotation.from_quat(rng.normal(size=4), scalar_first=True).as_matrix()


def primitive(kind: str, rng: np.random.Generator, name: str | None = None) -> ObjectMesh:
    """A procedural primitive with random proportions, random orientation and a random uniform colour.

    Args:
        kind: one of :data:`PRIMITIVE_KINDS`.
        rng: numpy Generator the shape, colour and metric size are drawn from.
        name: library name to give it (default ``prim_<kind>_000``).
    """
    if not isinstance(rng, np.random.Generator):
        raise TypeError("rng must be a numpy.random.Generator")
    v, f = _primitive_geometry(kind, rng)
    v = v @ _random_rotation(rng).T
    color = rng.uniform(0.1, 1.0, size=3)
    c = np.broadcast_to(color, v.shape).copy()
    size_m = rng.uniform(0.03, 0.12)
    vn, _, radius = normalize(v)
    return _finish(name or f"prim_{kind}_000", vn, f, c, size_m, f"procedural:{kind}")


def _primitive_by_name(name: str) -> ObjectMesh:
    kind, _, idx = name[len("prim_"):].rpartition("_")
    seed = zlib.crc32(f"{kind}:{int(idx)}".encode())
    return primitive(kind, np.random.default_rng(seed), name=name)


def _cache_path(name: str) -> str:
    return os.path.join(cache_dir(), f"{name}.npz")


@functools.lru_cache(maxsize=2048)
def load_object(name: str) -> ObjectMesh:
    """Load one object by library name (cached on disk and in memory). ValueError for unknown names."""
    split = split_of(name)
    path = _cache_path(name)
    if os.path.isfile(path):
        try:
            with np.load(path, allow_pickle=False) as z:
                return ObjectMesh(name, split, z["vertices"], z["faces"], z["colors"],
                                  float(z["scale_m"]), str(z["source"]))
        except (OSError, ValueError, KeyError) as e:
            log.warning("ignoring unreadable cache %s: %s", path, e)
    if name.startswith("prim_"):
        obj = _primitive_by_name(name)
    elif name.startswith("hh_"):
        from .household import household_by_name

        v, f, c = household_by_name(name)
        obj = _finish(name, v, f, c, 1.0, f"procedural:household:{name.split('_', 1)[1].rpartition('_')[0]}")
    else:
        obj = _load_file_object(name)
    tmp = f"{path}.{os.getpid()}.tmp.npz"
    np.savez(tmp, vertices=obj.vertices, faces=obj.faces, colors=obj.colors,
             scale_m=np.float64(obj.scale_m), source=np.str_(obj.source))
    os.replace(tmp, path)
    return obj


def load_split(split: str, max_objects: int | None = None) -> list[ObjectMesh]:
    """All objects of a split (first ``max_objects`` in :func:`list_objects` order)."""
    names = list_objects(split)
    if max_objects is not None:
        if max_objects < 1:
            raise ValueError("max_objects must be >= 1")
        names = names[:max_objects]
    return [load_object(n) for n in names]


def pack_objects(objects: list[ObjectMesh]) -> dict:
    """Pad a list of meshes to common sizes.

    Returns dict of numpy arrays:
        vertices (N,Vmax,3) float32 (padding rows 0), faces (N,Fmax,3) int64 (padding faces (0,0,0)),
        colors (N,Vmax,3) float32, num_vertices (N,) int64, num_faces (N,) int64, scale_m (N,) float32,
        names list[str].
    """
    if not objects:
        raise ValueError("no objects to pack")
    n = len(objects)
    vmax = max(len(o.vertices) for o in objects)
    fmax = max(len(o.faces) for o in objects)
    out = {"vertices": np.zeros((n, vmax, 3), np.float32), "faces": np.zeros((n, fmax, 3), np.int64),
           "colors": np.zeros((n, vmax, 3), np.float32), "num_vertices": np.zeros(n, np.int64),
           "num_faces": np.zeros(n, np.int64), "scale_m": np.zeros(n, np.float32),
           "names": [o.name for o in objects]}
    for i, o in enumerate(objects):
        out["vertices"][i, : len(o.vertices)] = o.vertices
        out["colors"][i, : len(o.vertices)] = o.colors
        out["faces"][i, : len(o.faces)] = o.faces
        out["num_vertices"][i] = len(o.vertices)
        out["num_faces"][i] = len(o.faces)
        out["scale_m"][i] = o.scale_m
    return out


def load_split_arrays(split: str, max_objects: int | None = None) -> dict:
    """A whole split as padded arrays (see :func:`pack_objects`), cached as one ``.npz`` per request.

    The first call parses and cleans every mesh (about 10 ms each); later calls read one file.
    """
    names = list_objects(split)[: max_objects] if max_objects else list_objects(split)
    key = hashlib.sha1("\n".join(names).encode()).hexdigest()[:12]
    path = os.path.join(cache_dir(), f"split_{split}_{len(names)}_{key}.npz")
    if os.path.isfile(path):
        try:
            with np.load(path, allow_pickle=False) as z:
                out = {k: z[k] for k in z.files}
            out["names"] = [str(s) for s in out["names"]]
            return out
        except (OSError, ValueError, KeyError) as e:
            log.warning("ignoring unreadable cache %s: %s", path, e)
    out = pack_objects([load_object(n) for n in names])
    tmp = f"{path}.{os.getpid()}.tmp.npz"
    np.savez(tmp, **{k: (np.asarray(v, dtype=np.str_) if k == "names" else v) for k, v in out.items()})
    os.replace(tmp, path)
    return out
