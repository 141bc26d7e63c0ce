"""Reconstruction metrics between a predicted and a ground-truth shape given in the same frame.

Conventions: lengths are in the units of the inputs (the bounding-sphere radius in the view frame);
surfaces are sampled area-uniformly; distances from points to a mesh are exact point-to-triangle distances
(open3d ``RaycastingScene``), to a point cloud nearest-neighbour distances (scipy ``cKDTree``).
"""

from __future__ import annotations

import math

import numpy as np

from ..perception.pointcloud import sample_surface, sample_triangles

#: Ray directions for the inside test: spread over the sphere, off the axes and diagonals so that rays
#: rarely graze edges of axis-aligned meshes.
_RAY_DIRS = np.array([[0.5377, 0.8622, 0.3188], [-0.4336, 0.3426, 0.8338], [0.7254, -0.0631, -0.6855],
                      [-0.7147, -0.6050, 0.3510], [0.0851, -0.8927, 0.4425]])
_RAY_DIRS = _RAY_DIRS / np.linalg.norm(_RAY_DIRS, axis=1, keepdims=True)


def _as_shape(x, what: str) -> tuple[np.ndarray, np.ndarray | None]:
    """(vertices, faces) pair, or a bare (P,3) point cloud -> (vertices (V,3) float64, faces (F,3) or None)."""
    if isinstance(x, (tuple, list)):
        if len(x) != 2:
            raise ValueError(f"{what} must be (vertices, faces) or a (P,3) point array")
        v, f = x
    else:
        v, f = x, None
    v = np.asarray(v.detach().cpu() if hasattr(v, "detach") else v, dtype=np.float64)
    if v.ndim != 2 or v.shape[1] != 3 or len(v) == 0:
        raise ValueError(f"{what} vertices must be a non-empty (V,3) array, got shape {v.shape}")
    if not np.isfinite(v).all():
        raise ValueError(f"{what} vertices contain NaN or inf")
    if f is not None:
        f = np.asarray(f.detach().cpu() if hasattr(f, "detach") else f, dtype=np.int64)
        if f.size == 0:
            f = None
        elif f.ndim != 2 or f.shape[1] != 3 or f.min() < 0 or f.max() >= len(v):
            raise ValueError(f"{what} faces must be (F,3) indices into the vertices")
    return v, f


#: outer_surface_samples results by (mesh bytes, n, generator state before): one true mesh is scored
#: against several predictions with the same seed; the entry restores the generator state after the draw.
_OUTER_CACHE: dict = {}


def outer_surface_samples(vertices: np.ndarray, faces: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` points (n,3) uniform over the boundary of the union of the mesh's closed parts.

    Meshes built as unions of overlapping closed parts (pybullet_data's convex decompositions, boxes glued
    into each other) carry walls inside the solid; those are no surface of the object, and no camera or
    shape method can reach them. A sample whose both sides (offset by 1e-3 of the bounding-box diagonal
    along its face normal) are inside the mesh (:func:`inside_mesh`) lies on such a wall and is dropped.
    Where faces of k parts coincide (glued boxes sharing a plane) a sample is kept with probability 1/k, so
    the samples stay uniform over the boundary. For a single closed part this is
    :func:`~dibr_ros.perception.pointcloud.sample_surface`.
    Repeated calls with the same mesh, ``n`` and generator state return the same points (and leave the
    generator in the same state) without recomputing them.
    """
    import hashlib

    key = (hashlib.blake2b(np.ascontiguousarray(vertices).tobytes() + np.ascontiguousarray(faces).tobytes()
                           ).hexdigest(), n, repr(rng.bit_generator.state))
    if key in _OUTER_CACHE:
        pts, state = _OUTER_CACHE[key]
        rng.bit_generator.state = state
        return pts.copy()
    pts = _outer_surface_samples(vertices, faces, n, rng)
    if len(_OUTER_CACHE) >= 16:
        _OUTER_CACHE.pop(next(iter(_OUTER_CACHE)))
    _OUTER_CACHE[key] = (pts, rng.bit_generator.state)
    return pts.copy()


def _outer_surface_samples(vertices, faces, n, rng):
    """:func:`outer_surface_samples` without the cache."""
    import open3d as o3d

    tri = vertices[faces]
    normal = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    area = 0.5 * np.linalg.norm(normal, axis=1)
    if not area.sum() > 0:
        raise ValueError("mesh has zero surface area")
    normal = normal / np.maximum(2.0 * area, 1e-300)[:, None]
    eps = 1e-3 * float(np.linalg.norm(vertices.max(0) - vertices.min(0)))
    tm = o3d.geometry.TriangleMesh(o3d.utility.Vector3dVector(vertices),
                                   o3d.utility.Vector3iVector(faces.astype(np.int32)))
    part = np.asarray(tm.cluster_connected_triangles()[0], dtype=np.int64)
    n_parts = int(part.max()) + 1
    # (a triangle soup has a part per face and no shared planes to speak of: no reweighting then)
    scenes = [_scene(vertices, faces[part == k]) for k in range(n_parts)] if 1 < n_parts <= 64 else []
    out: list[np.ndarray] = []
    kept = 0
    for _ in range(8):  # internal walls are rarely more than half the area; a few rounds fill n
        m = 2 * (n - kept) + 64
        p, fi, _ = sample_triangles(tri, area, m, rng)
        off = eps * normal[fi]
        outer = ~(inside_mesh(p + off, vertices, faces) & inside_mesh(p - off, vertices, faces))
        if scenes:
            q = o3d.core.Tensor(p.astype(np.float32))
            k = sum((sc.compute_distance(q).numpy() < eps).astype(np.int64) for sc in scenes)
            outer &= rng.random(m) * np.maximum(k, 1) < 1.0
        out.append(p[outer])
        kept += int(outer.sum())
        if kept >= n:
            break
    pts = np.concatenate(out)
    if len(pts) < n:
        raise ValueError("mesh has (almost) no outer surface")
    return pts[:n]


def _surface_points(vertices, faces, n, rng) -> np.ndarray:
    """(n, 3) float64 samples of a scored mesh; a mesh without area cannot be scored."""
    tri = vertices[faces]
    if not np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1).sum() > 0:
        raise ValueError("mesh has zero surface area")
    return sample_surface(vertices, faces, n, seed=rng)[0].astype(np.float64)


def _scene(vertices: np.ndarray, faces: np.ndarray):
    import open3d as o3d

    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(o3d.core.Tensor(vertices.astype(np.float32)), o3d.core.Tensor(faces.astype(np.uint32)))
    return scene


def distance_to_shape(points: np.ndarray, vertices: np.ndarray, faces: np.ndarray | None) -> np.ndarray:
    """Unsigned distance (P,) of points (P,3) to a mesh (point-to-triangle) or, with faces None, to a cloud."""
    if faces is None:
        from scipy.spatial import cKDTree

        return cKDTree(vertices).query(points, k=1)[0]
    import open3d as o3d

    d = _scene(vertices, faces).compute_distance(o3d.core.Tensor(points.astype(np.float32)))
    return d.numpy().astype(np.float64)


def _layers(vertices: np.ndarray, faces: np.ndarray) -> list[np.ndarray]:
    """Face index arrays of groups of connected parts whose bounding boxes are pairwise disjoint."""
    import open3d as o3d

    m = o3d.geometry.TriangleMesh(o3d.utility.Vector3dVector(vertices),
                                  o3d.utility.Vector3iVector(faces.astype(np.int32)))
    labels = np.asarray(m.cluster_connected_triangles()[0], dtype=np.int64)
    n_parts = int(labels.max()) + 1
    corner = vertices[faces]
    lo = np.full((n_parts, 3), np.inf)
    hi = np.full((n_parts, 3), -np.inf)
    np.minimum.at(lo, labels, corner.min(1))
    np.maximum.at(hi, labels, corner.max(1))
    groups: list[list[int]] = []
    for p in np.argsort(-(hi - lo).prod(1)):
        for g in groups:
            if all((lo[p] > hi[q]).any() or (hi[p] < lo[q]).any() for q in g):
                g.append(int(p))
                break
        else:
            groups.append([int(p)])
    return [np.nonzero(np.isin(labels, g))[0] for g in groups]


def inside_mesh(points: np.ndarray, vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Robust inside test (P,) bool for meshes that are unions of closed parts, possibly with small holes.

    For every connected part and each of 5 fixed ray directions the crossings of the part are counted
    (ray parity); a point is inside a part when most of the 5 rays say so, and inside the mesh when it is
    inside any part. Overlapping parts (pybullet_data's convex decompositions, even with coplanar faces)
    and single missing faces therefore do not flip the answer, unlike plain parity over the whole mesh.
    Parts with disjoint bounding boxes share one ray-casting scene (their parities simply add up).
    """
    import open3d as o3d

    p = points.astype(np.float32)
    k = len(_RAY_DIRS)
    inside = np.zeros(len(p), dtype=bool)
    for layer in _layers(vertices, faces):
        scene = _scene(vertices, faces[layer])
        votes = np.zeros(len(p), dtype=np.int32)
        for d in _RAY_DIRS.astype(np.float32):
            rays = np.concatenate([p, np.broadcast_to(d, p.shape)], 1)
            votes += scene.count_intersections(o3d.core.Tensor(rays)).numpy().astype(np.int32) % 2
        inside |= votes * 2 > k
    return inside


def iou_3d(pred_v, pred_f, gt_v, gt_f, n_points: int = 100000, rng: np.random.Generator | None = None) -> float:
    """Volumetric IoU by Monte Carlo: ``n_points`` uniform points in the union bounding box (5% margin)."""
    rng = rng if rng is not None else np.random.default_rng(0)
    lo = np.minimum(pred_v.min(0), gt_v.min(0))
    hi = np.maximum(pred_v.max(0), gt_v.max(0))
    pad = 0.05 * (hi - lo).max()
    q = rng.uniform(lo - pad, hi + pad, size=(n_points, 3))
    a, b = inside_mesh(q, pred_v, pred_f), inside_mesh(q, gt_v, gt_f)
    union = np.count_nonzero(a | b)
    return float(np.count_nonzero(a & b) / union) if union else float("nan")


def mesh_metrics(pred, gt, taus=(0.05, 0.10), n_points: int = 10000, seed: int = 0,
                 n_iou_points: int = 100000, gt_surface: str = "all") -> dict:
    """Chamfer-L1, F-score/precision/recall at each tau, and volumetric IoU of ``pred`` against ``gt``.

    Args:
        pred: ``(vertices (V,3), faces (F,3))`` mesh, or a point cloud: a bare (P,3) array or
            ``(points, None)``. A point cloud is used as is (randomly subsampled to ``n_points`` when
            larger) and its ``iou_3d`` is NaN (a cloud has no inside).
        gt: ``(vertices (V,3), faces (F,3))`` mesh in the same frame and units.
        taus: F-score thresholds, in the units of the inputs (fractions of the radius in the view frame).
        n_points: surface samples per mesh; seed: sampling seed (fixed seed -> deterministic metrics);
        n_iou_points: Monte-Carlo points for ``iou_3d`` (inside test: :func:`inside_mesh`).
        gt_surface: "all" (every face of ``gt``) or "outer" (the boundary of the union of its closed parts,
            :func:`outer_surface_samples`): recall samples only that boundary, and precision measures the
            distance to it (to 8 * n_points of its samples, so within about their spacing).

    Returns:
        dict of floats: ``chamfer_l1`` = the AVERAGE of the two directions' mean nearest distances,
        ``0.5 * (mean_{p in pred} d(p, gt) + mean_{g in gt} d(g, pred))``; for each tau ``precision@tau``
        (fraction of pred samples within tau of gt), ``recall@tau`` (fraction of gt samples within tau of
        pred), ``fscore@tau`` (their harmonic mean, 0 when both are 0), keys formatted ``f"{tau:.2f}"``;
        ``iou_3d``.
    """
    pv, pf = _as_shape(pred, "pred")
    gv, gf = _as_shape(gt, "gt")
    if gf is None:
        raise ValueError("gt must be a mesh (vertices, faces)")
    if n_points < 1:
        raise ValueError("n_points must be >= 1")
    if gt_surface not in ("all", "outer"):
        raise ValueError(f"gt_surface must be 'all' or 'outer', got {gt_surface!r}")
    rng = np.random.default_rng(seed)
    if gt_surface == "outer":
        dense = outer_surface_samples(gv, gf, 8 * n_points, rng)
        gt_pts, gt_shape = dense[:n_points], (dense, None)
    else:
        gt_pts, gt_shape = _surface_points(gv, gf, n_points, rng), (gv, gf)
    if pf is None:
        pred_pts = pv if len(pv) <= n_points else pv[rng.choice(len(pv), n_points, replace=False)]
    else:
        pred_pts = _surface_points(pv, pf, n_points, rng)
    d_pred = distance_to_shape(pred_pts, *gt_shape)  # precision direction
    d_gt = distance_to_shape(gt_pts, pv, pf)  # recall direction
    out = {"chamfer_l1": float(0.5 * (d_pred.mean() + d_gt.mean()))}
    for tau in taus:
        p = float((d_pred < tau).mean())
        r = float((d_gt < tau).mean())
        key = f"{tau:.2f}"
        out[f"precision@{key}"] = p
        out[f"recall@{key}"] = r
        out[f"fscore@{key}"] = 2 * p * r / (p + r) if p + r > 0 else 0.0
    out["iou_3d"] = iou_3d(pv, pf, gv, gf, n_iou_points, rng) if pf is not None else float("nan")
    return out


def silhouette_iou(pred, gt, cameras, size: int = 128, fovy: float = math.radians(30.0),
                   backend: str = "auto") -> np.ndarray:
    """IoU of the hard silhouettes of ``pred`` and ``gt`` rendered with our rasterizer from each camera.

    Meshes are drawn double-sided, so winding does not matter.

    Args:
        pred: ``(vertices (V,3), faces (F,3))`` in the frame of the cameras (a point-cloud pred gives NaN).
        gt: a mesh like ``pred``, or its already rendered hard masks (N,size,size) (e.g. the sample's own
            ``mask``, saving a render).
        cameras: ``(R (N,3,3), eye (N,3))`` world->camera (OpenGL) rotations and centres, e.g. the
            ``R_rel``/``eye_rel`` of a sample (cameras in the input view's frame).
        size: image side in pixels; fovy: vertical field of view in radians.

    Returns:
        (N,) float64 IoU per camera (NaN where both silhouettes are empty).
    """
    import torch

    from dibr_ros.data.views import render_batch

    R, eye = (torch.as_tensor(np.asarray(c), dtype=torch.float32) for c in cameras)
    if R.ndim != 3 or R.shape[1:] != (3, 3) or eye.shape != (R.shape[0], 3):
        raise ValueError("cameras must be (R (N,3,3), eye (N,3))")
    pv, pf = _as_shape(pred, "pred")
    n = R.shape[0]
    shapes = [(pv, pf)]
    gt_masks = None
    if isinstance(gt, (tuple, list)):
        shapes.append(_as_shape(gt, "gt"))
    else:
        gt_masks = np.asarray(gt.detach().cpu() if hasattr(gt, "detach") else gt) > 0.5
        if gt_masks.shape != (n, size, size):
            raise ValueError(f"gt masks must have shape {(n, size, size)}, got {gt_masks.shape}")
    if pf is None:
        return np.full(n, np.nan)
    masks = []
    for v, f in shapes:
        vt = torch.as_tensor(v, dtype=torch.float32)[None].expand(n, -1, -1)
        ft = torch.as_tensor(f)[None].expand(n, -1, -1)
        out = render_batch(vt, ft, torch.full((n,), len(f)), torch.ones_like(vt), R, eye, None, size,
                           fovy=fovy, backend=backend, double_sided=True)
        masks.append(out["mask"].numpy() > 0.5)
    if gt_masks is not None:
        masks.append(gt_masks)
    inter = (masks[0] & masks[1]).sum((1, 2))
    union = (masks[0] | masks[1]).sum((1, 2))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, inter / np.maximum(union, 1), np.nan)
