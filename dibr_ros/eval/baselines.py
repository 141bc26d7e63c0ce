"""Non-learned baselines scored by the same code on the same views as the predictor.

Each baseline sees one view: depth (H,W) along the optical axis (0 = no return), mask (H,W) bool and the
OpenCV intrinsics K (3,3), and returns its shape in the **view frame** of that view (camera optical axes,
origin at the ground-truth object centre ``center`` given in camera optical coordinates, same length unit
as the depth). The centre only fixes the frame origin shared with the ground truth; it is not used to
build the shape.

- ``depth``: the visible surface alone, the back-projected depth pixels as a point cloud (what a depth
  camera + depth_image_proc hands a grasp planner).
- ``sphere``: a sphere fitted to the silhouette (smallest enclosing circle) and the nearest depth.
- ``mirror``: the visible surface plus its point reflection through the fitted sphere's centre (a cloud).
- ``hull``: oracle reference, the convex hull of the ground truth (uses the ground truth; not a method).
"""

from __future__ import annotations

import numpy as np

BASELINES = ("depth", "sphere", "mirror", "hull")


def backproject(depth: np.ndarray, mask: np.ndarray, K: np.ndarray) -> np.ndarray:
    """Camera optical-frame points (P,3) of the pixels with mask and depth > 0 (pixel centres at integers)."""
    v, u = np.nonzero(np.asarray(mask, bool) & (np.asarray(depth) > 0))
    z = np.asarray(depth, np.float64)[v, u]
    x = (u - K[0, 2]) / K[0, 0] * z
    y = (v - K[1, 2]) / K[1, 1] * z
    return np.stack([x, y, z], 1)


def fit_sphere(depth: np.ndarray, mask: np.ndarray, K: np.ndarray) -> tuple[np.ndarray, float]:
    """Sphere (centre (3,) optical frame, radius) from silhouette + depth.

    The silhouette's smallest enclosing circle (centre (u0,v0), radius rho + 0.5 px) gives the viewing
    ray of the centre and the angular radius ``a = atan(rho / f)``; a sphere whose nearest point is at the
    nearest observed depth ``z0`` and that subtends ``a`` has ``r = z0 sin a / (1 - sin a)`` and its centre
    at distance ``z0 + r`` along that ray.
    """
    import cv2

    m = np.asarray(mask, bool) & (np.asarray(depth) > 0)
    if not m.any():
        raise ValueError("empty mask: nothing to fit")
    v, u = np.nonzero(m)
    (u0, v0), rho = cv2.minEnclosingCircle(np.stack([u, v], 1).astype(np.float32))
    f = 0.5 * (K[0, 0] + K[1, 1])
    s = np.sin(np.arctan((rho + 0.5) / f))
    z0 = float(np.asarray(depth, np.float64)[m].min())
    r = z0 * s / (1 - s)
    ray = np.array([(u0 - K[0, 2]) / K[0, 0], (v0 - K[1, 2]) / K[1, 1], 1.0])
    return ray / np.linalg.norm(ray) * (z0 + r), float(r)


def baseline_shape(kind: str, depth: np.ndarray, mask: np.ndarray, K: np.ndarray, center: np.ndarray,
                   gt: tuple[np.ndarray, np.ndarray] | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """Shape of baseline ``kind`` (see module docstring) in the view frame.

    Args:
        depth (H,W), mask (H,W), K (3,3): the input view; center (3,): object centre, optical frame;
        gt: ``(vertices, faces)`` in the view frame, only for ``hull``.

    Returns:
        (vertices (V,3), faces (F,3) int64) for meshes, (points (P,3), None) for point clouds.
    """
    center = np.asarray(center, np.float64)
    if kind == "hull":
        if gt is None:
            raise ValueError("the hull reference needs the ground truth")
        from scipy.spatial import ConvexHull

        hull = ConvexHull(np.asarray(gt[0], np.float64))
        faces = hull.simplices.astype(np.int64)
        # qhull does not orient simplices: make each face's normal point away from the hull's centroid.
        p = hull.points
        c = p[hull.vertices].mean(0)
        n = np.cross(p[faces[:, 1]] - p[faces[:, 0]], p[faces[:, 2]] - p[faces[:, 0]])
        flip = np.einsum("ij,ij->i", n, p[faces[:, 0]] - c) < 0
        faces[flip] = faces[flip][:, ::-1]
        return p, faces
    if kind not in BASELINES:
        raise ValueError(f"baseline must be one of {BASELINES}, got {kind!r}")
    pts = backproject(depth, mask, K)
    if len(pts) == 0:
        raise ValueError("empty mask: the view shows nothing")
    if kind == "depth":
        return pts - center, None
    c, r = fit_sphere(depth, mask, K)
    if kind == "mirror":
        return np.concatenate([pts, 2 * c - pts]) - center, None
    from dibr_ros.render.mesh import ico_sphere

    sv, sf = ico_sphere(3)
    return sv.numpy().astype(np.float64) * r + (c - center), sf.numpy().astype(np.int64)
