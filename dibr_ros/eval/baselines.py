"""Non-learned baselines scored by the same code on the same views as the predictor.

Each baseline sees one view: depth (H,W) along the optical axis (0 = no return), mask (H,W) bool and the
OpenCV intrinsics K (3,3), and returns its shape in the **view frame** of that view (camera optical axes,
origin at the ground-truth object centre ``center`` given in camera optical coordinates, same length unit
as the depth). The centre only fixes the frame origin shared with the ground truth; it is not used to
build the shape.

- ``depth``: the visible surface alone, the back-projected depth pixels as a point cloud (what a depth
  camera + depth_image_proc hands a grasp planner).
- ``sphere``: a sphere fitted to the silhouette (area, centroid) and the mean visible depth.
- ``mirror``: the visible surface plus its point reflection through the fitted sphere's centre (a cloud).
- ``hull``: oracle reference, the convex hull of the ground truth (uses the ground truth; not a method).
"""

from __future__ import annotations

import numpy as np

from dibr_ros.perception.geometry import backproject

BASELINES = ("depth", "sphere", "mirror", "hull")


def fit_sphere(depth: np.ndarray, mask: np.ndarray, K: np.ndarray) -> tuple[np.ndarray, float]:
    """Sphere (centre (3,) optical frame, radius) fitted to silhouette + depth.

    The sphere whose image disc has the silhouette's area and centroid: angular radius
    ``a = atan(sqrt(area / pi) / f)``, centre on the centroid's viewing ray at the distance ``D`` at which
    such a sphere's mean visible depth (integrated over its image disc, perspective) equals the observed
    mean depth; radius ``D sin a``. Exact for a sphere on the optical axis, a least-squares-like fit (no
    outlier-driven enclosing circle) for other shapes.
    """
    m = np.asarray(mask, bool) & (np.asarray(depth) > 0)
    if not m.any():
        raise ValueError("empty mask: nothing to fit")
    v, u = np.nonzero(m)
    f = 0.5 * (K[0, 0] + K[1, 1])
    a = np.arctan(np.sqrt(len(u) / np.pi) / f)
    # Mean depth / D of a unit-distance sphere with angular radius a, uniform over its image disc.
    rho = (np.arange(256) + 0.5) / 256 * np.tan(a)
    th = np.arctan(rho)
    t = np.cos(th) - np.sqrt(np.clip(np.sin(a) ** 2 - np.sin(th) ** 2, 0, None))
    ratio = float(np.sum(t * np.cos(th) * rho) / np.sum(rho))
    zc = float(np.asarray(depth, np.float64)[m].mean()) / ratio
    s = np.sin(a)
    ray = np.array([(u.mean() - K[0, 2]) / K[0, 0], (v.mean() - K[1, 2]) / K[1, 1], 1.0])
    return ray / np.linalg.norm(ray) * zc, float(zc * s)


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
    pts = backproject(depth, K, mask, dtype=np.float64)[0]
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
