"""Completing a placed mesh with what the camera measured.

The network predicts the whole object from one crop, but only its shape is learned: where its visible
surface lies, and where the table is, the depth image knows better. :func:`complete_mesh` corrects a placed
mesh (optical frame, metres) in four steps, each a projection onto what the measurement allows:

1. *Align*: translate the mesh so its camera-visible vertices meet the observed points (robust ICP,
   translation only; the placement already fixed the scale from the mask).
2. *Support*: an object whose observed points reach down to the table rests on it. Its mesh is stretched
   along the plane normal, about its top, until the bottom touches the plane; vertices below the plane are
   put onto it (nothing is under the table top).
3. *Carve*: off the object's mask the camera sees something else (the table, say); an object vertex
   there that is not hidden behind it contradicts the image, and is pulled towards the object until it is
   (this also removes the skirt that flattening onto the table leaves outside the object's footprint).
4. *Snap*: the camera sees no surface in front of the measured one, so vertices in front of the measured
   depth of their pixel (and camera-facing vertices just behind it) move along their viewing ray onto it.

:func:`fuse_observed` then builds the cloud a grasp planner wants: the measured points, plus the completed
surface only where the camera could not see it (behind the measured surface, or where depth is missing).

:func:`support_volume_samples` is the other source of that hidden surface, for objects resting on the table:
the object is taken to fill the space between its measured top surface and the table (a 2.5D height field
over the table plane, as grasp planners commonly complete tabletop objects). From a camera looking down at
the table it sees most of each top, so the height field fixes the back walls that a single view leaves
to the network's guess; it cannot know the space under overhangs, which it fills. :func:`fit_to_points`
then shrink-wraps the network's mesh onto that cloud, so the mesh shown and the cloud published agree.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..render.mesh import face_signed_volumes, vertex_normals
from .geometry import check_intrinsics


def depth_at(points: np.ndarray, K: np.ndarray, depth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Measured depth at the pixel each point projects to.

    Args:
        points: (N, 3) optical-frame metres. K: (3, 3). depth: (H, W) metres, <= 0 or non-finite = invalid.
    Returns:
        d (N,) float64 measured depth (0 where invalid, out of the image or behind the camera) and
        pix (N, 2) int64 (row, col) of the pixel (clipped into the image).
    """
    p = np.asarray(points, dtype=np.float64)
    H, W = depth.shape
    z = p[:, 2]
    front = z > 1e-9
    with np.errstate(divide="ignore", invalid="ignore"):
        u = np.where(front, (K[0, 0] * p[:, 0] + K[0, 1] * p[:, 1]) / z + K[0, 2], -1.0)
        v = np.where(front, K[1, 1] * p[:, 1] / z + K[1, 2], -1.0)
    inside = front & (u > -0.5) & (u < W - 0.5) & (v > -0.5) & (v < H - 0.5)
    col = np.clip(np.rint(np.nan_to_num(u, nan=-1.0)), 0, W - 1).astype(np.int64)
    row = np.clip(np.rint(np.nan_to_num(v, nan=-1.0)), 0, H - 1).astype(np.int64)
    d = np.where(inside, depth[row, col], 0.0).astype(np.float64)
    d[~np.isfinite(d) | (d < 0)] = 0.0
    return d, np.stack([row, col], axis=1)


def visibility(points: np.ndarray, K: np.ndarray, depth: np.ndarray, margin: float = 0.01):
    """Classify points against a depth image.

    Args:
        points: (N, 3) optical-frame metres. K: (3, 3). depth: (H, W) metres. margin: measurement
            tolerance (m).
    Returns:
        (seen, hidden, free) (N,) bool: within ``margin`` of the measured surface; behind it by more than
        ``margin``; in front of it by more than ``margin`` (the camera sees past the point, so no surface is
        there). A point without a valid measurement is none of the three.
    """
    d, _ = depth_at(points, K, depth)
    z = np.asarray(points, dtype=np.float64)[:, 2]
    valid = d > 0
    return valid & (np.abs(z - d) <= margin), valid & (z > d + margin), valid & (z < d - margin)


@dataclass
class Completion:
    """Result of :func:`complete_mesh`.

    Attributes:
        vertices: (V, 3) float32 completed mesh, optical frame (m).
        shift: (3,) float64 translation applied by the alignment (m).
        supported: the mesh was made to rest on the plane.
        snapped: number of vertices moved onto the measured surface.
        carved: number of vertices pulled out of space the camera sees through.
    """

    vertices: np.ndarray
    shift: np.ndarray
    supported: bool
    snapped: int
    carved: int


def rests_on(points: np.ndarray, plane, contact: float) -> bool:
    """Whether an object whose measured points are ``points`` (N, 3) rests on ``plane`` ``(n, d)``: its lowest
    point is at most ``contact`` (m) above it."""
    n = np.asarray(plane[0], dtype=np.float64)
    return bool(len(points)) and float((np.asarray(points, dtype=np.float64) @ n + float(plane[1])).min()) <= contact


def complete_mesh(vertices, faces, K, depth, mask, observed, plane=None, *, margin: float = 0.01,
                  max_shift: float = 0.05, contact: float = 0.03, iterations: int = 8) -> Completion:
    """Correct a placed mesh with the measured depth and the support plane (module docstring).

    Args:
        vertices: (V, 3) placed mesh, optical frame (m). faces: (F, 3) int.
        K: (3, 3) intrinsics. depth: (H, W) metres of the whole frame. mask: (H, W) bool, this object's mask.
        observed: (N, 3) this object's measured points (m), N >= 3.
        plane: table plane ``(n (3,), d)`` with ``n . p + d`` the height above it (camera side positive), or
            None (no support step).
        margin: depth tolerance (m): a vertex within it of the measured surface counts as seen.
        max_shift: alignment matches vertices to observed points at most this far apart (m), and the total
            shift is capped at it.
        contact: the object rests on the plane when its lowest observed point is at most this high (m).
        iterations: alignment iterations.
    Returns:
        :class:`Completion`.
    Raises:
        ValueError: malformed shapes or non-finite values.
    """
    import cv2
    from scipy.spatial import cKDTree

    K = check_intrinsics(K)
    v = np.asarray(vertices, dtype=np.float64)
    f = np.asarray(faces, dtype=np.int64)
    obs = np.asarray(observed, dtype=np.float64)
    depth = np.asarray(depth)
    mask = np.asarray(mask, dtype=bool)
    if v.ndim != 2 or v.shape[1] != 3 or len(v) == 0 or not np.all(np.isfinite(v)):
        raise ValueError(f"vertices must be a finite (V, 3) array, got shape {v.shape}")
    if f.ndim != 2 or f.shape[1] != 3 or (f.size and (f.min() < 0 or f.max() >= len(v))):
        raise ValueError(f"faces must be (F, 3) indices into {len(v)} vertices")
    if obs.ndim != 2 or obs.shape[1] != 3 or len(obs) < 3 or not np.all(np.isfinite(obs)):
        raise ValueError(f"observed must be a finite (N >= 3, 3) array, got shape {obs.shape}")
    if depth.ndim != 2 or mask.shape != depth.shape:
        raise ValueError(f"depth (H, W) and mask must match, got {depth.shape} and {mask.shape}")
    v = v.copy()

    # 1. Align the camera-visible part to the measurement. Hidden vertices have no counterpart in it. A
    # median shift needs no more than a few thousand targets (the tree build dominates the cost).
    tree = cKDTree(obs[::max(1, len(obs) // 1500)])
    shift = np.zeros(3)
    for _ in range(max(0, int(iterations))):
        _, hidden, _ = visibility(v, K, depth, margin)
        front = np.flatnonzero(~hidden)
        front = front[::max(1, len(front) // 192)]  # a couple of hundred matches fix a median shift
        dist, idx = tree.query(v[front], distance_upper_bound=max_shift)
        ok = np.isfinite(dist)
        if ok.sum() < 3:
            break
        step = np.median(tree.data[idx[ok]] - v[front[ok]], axis=0)
        new = shift + step
        if np.linalg.norm(new) > max_shift:
            new *= max_shift / np.linalg.norm(new)
        step, shift = new - shift, new
        v += step
        if np.linalg.norm(step) < 5e-4:
            break

    # 2. Rest on the table.
    supported = False
    if plane is not None:
        n = np.asarray(plane[0], dtype=np.float64)
        d0 = float(plane[1])
        h = v @ n + d0
        if rests_on(obs, plane, contact):
            supported = True
            top, bottom = float(h.max()), float(h.min())
            if top > 0 and bottom > 0:
                v += ((top - (top - h) * top / (top - bottom)) - h)[:, None] * n
                h = v @ n + d0
            v -= np.minimum(h, 0.0)[:, None] * n

    # 3. Out of free space: a vertex off the object's mask and not behind what the camera sees there (the
    # table, say) is where the camera sees no object. Pull it towards the observed centre until it is
    # hidden or on the mask (bisection).
    # The mask grows by 2 px first: segmentation masks lose a pixel or two at the silhouette.
    grown = cv2.dilate(mask.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)

    def free_space(p):
        d, pix = depth_at(p, K, depth)
        return (d > 0) & ~grown[pix[:, 0], pix[:, 1]] & (p[:, 2] < d + margin)

    out = np.flatnonzero(free_space(v))
    if len(out):
        centre = obs.mean(axis=0)
        lo, hi = np.zeros(len(out)), np.ones(len(out))
        for _ in range(6):
            mid = 0.5 * (lo + hi)
            bad = free_space(centre + mid[:, None] * (v[out] - centre))
            hi = np.where(bad, mid, hi)
            lo = np.where(bad, lo, mid)
        v[out] = centre + lo[:, None] * (v[out] - centre)

    # 4. Onto the measured surface: every vertex in front of it, camera-facing ones just behind it.
    d, pix = depth_at(v, K, depth)
    on_object = (d > 0) & mask[pix[:, 0], pix[:, 1]]
    normals = vertex_normals(torch.from_numpy(np.asarray(v, np.float64)), torch.from_numpy(np.asarray(f, np.int64)))
    facing = (normals.numpy() * v).sum(axis=1) < 0
    snap = on_object & ((v[:, 2] < d - margin) | ((v[:, 2] <= d + margin) & facing))
    v[snap] *= (d[snap] / v[snap, 2])[:, None]
    return Completion(vertices=v.astype(np.float32), shift=shift, supported=supported, snapped=int(snap.sum()),
                      carved=len(out))


def support_volume_samples(observed, plane, K, depth, *, cell: float = 0.003, margin: float = 0.01) -> np.ndarray:
    """Hidden surface of the volume between an object's measured surface and the table it rests on.

    The observed points are binned on a grid in the table plane; each cell's height is its highest point,
    cells inside the footprint without points (occluded by taller parts) take the height of the nearest
    measured cell. The surface of that height field (tops of the filled cells, walls where neighbouring
    heights differ, the footprint on the table) is sampled on the grid, and only samples the camera cannot
    see are returned: samples near the measured surface are the measurement, samples in front of it are
    contradicted by it (:func:`visibility`).

    Args:
        observed: (N, 3) the object's measured points, optical frame (m), N >= 3.
        plane: table plane ``(n (3,), d)``, ``n . p + d`` the height above it (m, camera side positive).
        K: (3, 3) intrinsics. depth: (H, W) metres of the whole frame.
        cell: grid pitch and sample spacing (m). margin: depth tolerance (m), as in :func:`visibility`.
    Returns:
        (P, 3) float32 samples, optical frame (m); P may be 0.
    Raises:
        ValueError: malformed inputs, a degenerate plane normal, or a non-positive cell.
    """
    from scipy import ndimage

    obs = np.asarray(observed, dtype=np.float64)
    if obs.ndim != 2 or obs.shape[1] != 3 or len(obs) < 3 or not np.all(np.isfinite(obs)):
        raise ValueError(f"observed must be a finite (N >= 3, 3) array, got shape {obs.shape}")
    if not (np.isfinite(cell) and cell > 0):
        raise ValueError(f"cell must be > 0, got {cell}")
    n = np.asarray(plane[0], dtype=np.float64)
    d0 = float(plane[1])
    if n.shape != (3,) or not np.all(np.isfinite(n)) or abs(np.linalg.norm(n) - 1.0) > 1e-3 or not np.isfinite(d0):
        raise ValueError("plane must be (unit normal (3,), offset)")
    # Grid axes in the plane: e1 along the optical axis' horizontal part (away from the camera).
    ref = np.array([0.0, 0.0, 1.0]) if abs(n[2]) < 0.9 else np.array([1.0, 0.0, 0.0])
    e1 = ref - (ref @ n) * n
    e1 /= np.linalg.norm(e1)
    e2 = np.cross(n, e1)
    x, y, h = obs @ e1, obs @ e2, np.maximum(obs @ n + d0, 0.0)
    x0, y0 = x.min() - 2 * cell, y.min() - 2 * cell
    i, j = ((x - x0) / cell).astype(np.int64), ((y - y0) / cell).astype(np.int64)
    if i.max() > 4096 or j.max() > 4096:
        raise ValueError("object footprint too large for the grid (over 4096 cells a side)")
    top = np.zeros((i.max() + 3, j.max() + 3))
    np.maximum.at(top, (i, j), h)
    seen_cell = np.zeros(top.shape, bool)
    seen_cell[i, j] = True
    footprint = ndimage.binary_fill_holes(ndimage.binary_closing(seen_cell, np.ones((3, 3), bool)))
    _, (ni, nj) = ndimage.distance_transform_edt(~seen_cell, return_indices=True)
    height = np.where(footprint, top[ni, nj], 0.0)
    height[seen_cell] = top[seen_cell]

    def point(ci, cj, hh):
        return (x0 + ci * cell)[:, None] * e1 + (y0 + cj * cell)[:, None] * e2 + (hh - d0)[:, None] * n

    parts = []
    fi, fj = np.nonzero(footprint & ~seen_cell)
    parts.append(point(fi + 0.5, fj + 0.5, height[fi, fj]))
    bi, bj = np.nonzero(footprint)
    parts.append(point(bi + 0.5, bj + 0.5, np.zeros(len(bi))))
    for axis in (0, 1):  # walls on the shared edge of neighbouring cells, from the lower height to the higher
        a = height[:-1, :] if axis == 0 else height[:, :-1]
        b = height[1:, :] if axis == 0 else height[:, 1:]
        lo, hi = np.minimum(a, b), np.maximum(a, b)
        wi, wj = np.nonzero(hi - lo > cell)
        count = np.ceil((hi[wi, wj] - lo[wi, wj]) / cell - 0.5).astype(np.int64)
        k = np.arange(count.sum()) - np.repeat(np.cumsum(count) - count, count)
        wi, wj = np.repeat(wi, count), np.repeat(wj, count)
        hh = np.repeat(lo[np.nonzero(hi - lo > cell)], count) + (k + 0.5) * cell
        parts.append(point(wi + (1.0 if axis == 0 else 0.5), wj + (0.5 if axis == 0 else 1.0), hh))
    samples = np.concatenate(parts)
    seen, _, free = visibility(samples, K, depth, margin)
    return samples[~(seen | free)].astype(np.float32)


def fit_to_points(vertices, faces, points, *, iterations: int = 3, step: float = 0.8, smooth: float = 0.3,
                  max_points: int = 600, min_volume_ratio: float = 0.25) -> np.ndarray:
    """Shrink-wrap a closed mesh onto a point cloud, keeping its connectivity (and so its per-vertex texture).

    Each iteration moves every vertex by ``step`` times the offset to its nearest point, plus ``step`` times
    the mean offset of the points whose nearest vertex it is (the second term pulls the mesh out to parts of
    the cloud no vertex is near yet), then replaces it by ``(1 - smooth)`` itself plus ``smooth`` the mean of
    its neighbours (umbrella smoothing keeps the triangles from folding). Where the cloud's two sides are
    closer than the vertex spacing (a domino lying flat) both sides of the mesh snap to the same points and
    the surface folds flat: a fit whose enclosed volume falls below ``min_volume_ratio`` of the mesh's own is
    discarded and the input returned.

    Args:
        vertices: (V, 3) metres. faces: (F, 3) int, a closed surface. points: (P, 3) metres, P >= 1 (at most
            ``max_points`` of them, evenly strided, are used). iterations >= 0; step, smooth in [0, 1];
            min_volume_ratio >= 0.
    Returns:
        (V, 3) float32 vertices.
    Raises:
        ValueError: malformed inputs or parameters out of range.
    """
    from scipy.spatial import cKDTree

    v = np.asarray(vertices, dtype=np.float64).copy()
    f = np.asarray(faces, dtype=np.int64)
    pts = np.asarray(points, dtype=np.float64)
    if v.ndim != 2 or v.shape[1] != 3 or not np.all(np.isfinite(v)):
        raise ValueError(f"vertices must be a finite (V, 3) array, got shape {v.shape}")
    if f.ndim != 2 or f.shape[1] != 3 or (f.size and (f.min() < 0 or f.max() >= len(v))):
        raise ValueError("faces must be (F, 3) indices into vertices")
    if pts.ndim != 2 or pts.shape[1] != 3 or len(pts) == 0 or not np.all(np.isfinite(pts)):
        raise ValueError(f"points must be a finite non-empty (P, 3) array, got shape {pts.shape}")
    if iterations < 0 or not (0.0 <= step <= 1.0) or not (0.0 <= smooth <= 1.0) or max_points < 1 \
            or not min_volume_ratio >= 0.0:
        raise ValueError("need iterations >= 0, step and smooth in [0, 1], max_points >= 1, "
                         "min_volume_ratio >= 0")
    pts = pts[::-(-len(pts) // max_points)]
    laplacian = _laplacian(f, len(v))
    cloud = cKDTree(pts)
    start = v.copy()
    for _ in range(iterations):
        pull = pts[cloud.query(v)[1]] - v
        owner = cKDTree(v).query(pts)[1]
        count = np.bincount(owner, minlength=len(v))
        has = count > 0
        for k in range(3):
            total = np.bincount(owner, weights=pts[:, k] - v[owner, k], minlength=len(v))
            pull[has, k] += total[has] / count[has]
        v = v + step * pull
        v = v - smooth * (laplacian @ v)  # isolated vertices have an all-zero row: they stay
    shrunk = abs(face_signed_volumes(v, f).sum()) < min_volume_ratio * abs(face_signed_volumes(start, f).sum())
    if iterations and shrunk:
        v = start
    return v.astype(np.float32)


#: _laplacian results by (vertex count, faces bytes): every object of a frame shares the network's faces.
_LAPLACIAN_CACHE: dict = {}


def _laplacian(faces: np.ndarray, num_vertices: int):
    """:func:`dibr_ros.render.mesh.uniform_laplacian` of ``faces`` as a (V, V) scipy CSR matrix."""
    import scipy.sparse as sp
    import torch

    from ..render.mesh import uniform_laplacian

    key = (num_vertices, faces.tobytes())
    if key not in _LAPLACIAN_CACHE:
        L = uniform_laplacian(num_vertices, torch.from_numpy(faces), dtype=torch.float64)
        idx = L.indices().numpy()
        op = sp.csr_matrix((L.values().numpy(), (idx[0], idx[1])), shape=(num_vertices, num_vertices))
        if len(_LAPLACIAN_CACHE) >= 4:
            _LAPLACIAN_CACHE.pop(next(iter(_LAPLACIAN_CACHE)))
        _LAPLACIAN_CACHE[key] = op
    return _LAPLACIAN_CACHE[key]


def fuse_observed(surface, surface_colors, observed, observed_colors, K, depth, margin: float = 0.01):
    """The measured points plus the completed surface where the camera could not see it.

    Surface samples the camera sees (within ``margin`` of the measured depth) are replaced by the
    measurement; samples in front of it contradict it and are dropped; samples behind it or without a
    measurement are kept.

    Args:
        surface: (P, 3) completed-surface samples (m); surface_colors (P, 3) [0, 1].
        observed: (N, 3) measured points (m); observed_colors (N, 3) [0, 1].
        K: (3, 3). depth: (H, W) metres. margin: m.
    Returns:
        points (M, 3) float32 (kept surface samples first, then the observed points) and colors (M, 3)
        float32.
    """
    s = np.asarray(surface, dtype=np.float32).reshape(-1, 3)
    o = np.asarray(observed, dtype=np.float32).reshape(-1, 3)
    if len(s):
        seen, _, free = visibility(s, K, depth, margin)
        keep = ~(seen | free)
    else:
        keep = np.zeros(0, bool)
    points = np.concatenate([s[keep], o])
    colors = np.concatenate([np.asarray(surface_colors, np.float32).reshape(-1, 3)[keep],
                             np.asarray(observed_colors, np.float32).reshape(-1, 3)])
    return points, colors
