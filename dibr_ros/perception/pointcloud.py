"""Surface point clouds of placed meshes for grasp planners."""

from __future__ import annotations

import numpy as np

#: Where a cloud point comes from (``ObjectResult.point_sources``, the cloud's ``source`` field): measured by
#: the depth camera; the support volume under the measured surface (an assumption: solid down to the
#: table); the network's completed mesh (a prediction).
SOURCE_OBSERVED, SOURCE_SUPPORT, SOURCE_NETWORK = 0, 1, 2
SOURCES = {SOURCE_OBSERVED: "observed", SOURCE_SUPPORT: "support", SOURCE_NETWORK: "network"}


def _check_mesh(vertices, faces, colors):
    try:
        with np.errstate(over="ignore", invalid="ignore"):
            v = np.asarray(vertices, dtype=np.float32)
        f = np.asarray(faces)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"vertices/faces must be numeric arrays: {exc}") from None
    if v.ndim != 2 or v.shape[1] != 3:
        raise ValueError(f"vertices must have shape (V, 3), got {v.shape}")
    if not np.all(np.isfinite(v)):
        raise ValueError("vertices have non-finite values (or exceed float32)")
    if f.ndim != 2 or f.shape[1] != 3:
        raise ValueError(f"faces must have shape (F, 3), got {f.shape}")
    if f.size and not np.issubdtype(f.dtype, np.integer):
        raise ValueError(f"faces must be integer indices, got {f.dtype}")
    f = f.astype(np.int64)
    if f.size and (f.min() < 0 or f.max() >= len(v)):
        raise ValueError(f"face indices must lie in [0, {len(v)})")
    if colors is not None:
        try:
            c = np.asarray(colors, dtype=np.float32)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"colors must be numeric: {exc}") from None
        if c.shape != v.shape:
            raise ValueError(f"colors must have shape {v.shape}, got {c.shape}")
        colors = np.nan_to_num(np.clip(c, 0.0, 1.0), nan=0.5)
    return v, f, colors


def sample_triangles(tri: np.ndarray, weights: np.ndarray, n: int, rng: np.random.Generator):
    """``n`` points uniform inside triangles, triangle ``i`` drawn with probability ``weights[i] / sum``.

    The one surface sampler of the package (the node's clouds and the benchmarks' metrics): faces by
    inverse CDF, points by the ``sqrt`` barycentric trick (uniform over each triangle).

    Args:
        tri: (F, 3, 3) float corners. weights: (F,) >= 0 with a positive finite sum (areas, usually).
        n: number of points (>= 0). rng: generator, advanced by 3 n draws.
    Returns:
        points (n, 3) float64, face (n,) int64 index of each point's triangle, bary (n, 3) float64 weights of
        its corners.
    """
    cdf = np.cumsum(np.asarray(weights, np.float64))
    face = np.minimum(np.searchsorted(cdf, rng.random(n) * cdf[-1], side="right"), len(cdf) - 1)
    r1 = np.sqrt(rng.random(n))
    r2 = rng.random(n)
    bary = np.stack([1.0 - r1, r1 * (1.0 - r2), r1 * r2], axis=1)
    t = np.asarray(tri, np.float64)[face]
    return bary[:, 0:1] * t[:, 0] + bary[:, 1:2] * t[:, 1] + bary[:, 2:3] * t[:, 2], face, bary


def _corners_normals_areas(v: np.ndarray, f: np.ndarray):
    """(F, 3, 3) float64 face corners, (F, 3) normals ``(v1 - v0) x (v2 - v0)`` and (F,) areas of a mesh."""
    tri = v[f].astype(np.float64)
    with np.errstate(over="ignore", invalid="ignore"):
        normal = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
        area = 0.5 * np.linalg.norm(normal, axis=1)
    return tri, normal, area


def sample_surface_normals(vertices, faces, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Area-weighted uniform samples of a mesh (:func:`sample_triangles`) with the normal of each one's face.

    Args:
        vertices: (V, 3) float coordinates (trusted: the caller validated the mesh). faces: (F, 3) int.
        n: number of points. seed: random seed.
    Returns:
        points (n, 3) float64 and normals (n, 3) float64 ``(v1 - v0) x (v2 - v0)`` of their faces (unnormalised,
        outward for an outward-wound mesh); (0, 3) both for a mesh without a finite positive area.
    """
    tri, normal, area = _corners_normals_areas(np.asarray(vertices), np.asarray(faces, np.int64))
    if not (np.isfinite(area.sum()) and area.sum() > 0):
        return np.zeros((0, 3)), np.zeros((0, 3))
    points, face, _ = sample_triangles(tri, area, n, np.random.default_rng(seed))
    return points, normal[face]


def sample_surface(vertices, faces, n: int, colors=None, seed: int | np.random.Generator | None = 0):
    """Area-weighted uniform samples of a triangle mesh surface (:func:`sample_triangles`).

    Colours are interpolated barycentrically from vertex colours. A mesh whose total area is zero (or
    overflows) is sampled at its face corners instead, uniformly.

    Args:
        vertices: (V, 3) float coordinates.
        faces: (F, 3) int vertex indices.
        n: number of points (>= 0).
        colors: optional (V, 3) vertex colours in [0, 1] (clipped; NaN -> 0.5).
        seed: random seed (None = nondeterministic), or a ``np.random.Generator`` to draw from (advanced).
    Returns:
        points (n, 3) float32 and colors (n, 3) float32 (0.5 grey without vertex colours).
    Raises:
        ValueError: malformed shapes, non-finite vertices, out-of-range indices, n < 0, or n > 0 with F = 0.
    """
    v, f, c = _check_mesh(vertices, faces, colors)
    n = int(n)
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    if n == 0:
        return np.zeros((0, 3), np.float32), np.zeros((0, 3), np.float32)
    if len(f) == 0:
        raise ValueError("mesh has no faces to sample")
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    tri, _, area = _corners_normals_areas(v, f)
    with np.errstate(over="ignore", invalid="ignore"):
        total = area.sum()
    if np.isfinite(total) and total > 0:
        points, face, w = sample_triangles(tri, area, n, rng)
    else:
        face = rng.integers(0, len(f), size=n)
        w = np.eye(3)[rng.integers(0, 3, size=n)]
        points = np.einsum("nk,nkd->nd", w, tri[face])
    fi = f[face]
    # Convex combinations of float32 values stay within their range; clip rounding at the float32 limit.
    points = np.clip(points, v.min(axis=0), v.max(axis=0)).astype(np.float32)
    if c is None:
        pc = np.full((n, 3), 0.5, np.float32)
    else:
        cc = c.astype(np.float64)
        pc = w[:, 0:1] * cc[fi[:, 0]] + w[:, 1:2] * cc[fi[:, 1]] + w[:, 2:3] * cc[fi[:, 2]]
        pc = np.clip(pc, 0.0, 1.0).astype(np.float32)
    return points, pc


def merge_clouds(parts) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Concatenate per-object clouds.

    Args:
        parts: iterable of (points (P_i, 3), colors (P_i, 3) in [0, 1], instance id int).
    Returns:
        xyz (N, 3) float32, rgb (N, 3) float32 in [0, 1], instance (N,) int32.
    """
    xyz, rgb, inst = [np.zeros((0, 3), np.float32)], [np.zeros((0, 3), np.float32)], [np.zeros(0, np.int32)]
    for points, colors, instance in parts:
        p = np.asarray(points, dtype=np.float32).reshape(-1, 3)
        c = np.asarray(colors, dtype=np.float32).reshape(-1, 3)
        if len(p) != len(c):
            raise ValueError(f"points ({len(p)}) and colors ({len(c)}) differ in length")
        if not -(2**31) <= int(instance) < 2**31:
            raise ValueError(f"instance id {instance} does not fit an int32")
        xyz.append(p)
        rgb.append(c)
        inst.append(np.full(len(p), int(instance), np.int32))
    return np.concatenate(xyz), np.concatenate(rgb), np.concatenate(inst)
