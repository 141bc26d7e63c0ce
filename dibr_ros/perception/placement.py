"""Metric placement of a predicted view-frame mesh in the camera optical frame.

The predictor sees a crop as if the camera looked straight along the crop's central ray, so its view frame
is the optical frame rotated by ``R = rotation_z_to(K^-1 [u_c, v_c, 1])`` (the smallest rotation taking +z
to that ray). A placed mesh is ``X = s * R v + t`` with scale ``s`` (metres per view-frame unit, i.e. the
object's bounding-sphere radius when the prediction is normalised) and centre ``t`` (metres).

``s`` and ``t`` are solved by a fixed-point iteration that makes the projected mesh's bounding box match
the mask's bounding box (sides touching the image border are not used) and, with depth, makes the
predicted front surface meet the measured one along the crop ray:
``median_i(p_i . r) = |t| + s * f``, with ``f`` the median front-surface offset of the prediction along its
view axis (negative: the front is nearer than the centre). Without depth the missing constraint comes from
an assumption: the centre lies ``default_distance`` metres along the ray, or, when ``default_object_size``
is given, the bounding-sphere diameter is that many metres.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .geometry import check_intrinsics, mask_box, pixel_rays, project, rotation_z_to


@dataclass
class Placement:
    """Similarity transform from the view frame to the optical frame: ``X = scale * rotation @ v + center``.

    Attributes:
        scale: metres per view-frame unit (float).
        center: (3,) float64 metres, optical frame.
        rotation: (3, 3) float64 view frame -> optical frame.
        source: "depth", "distance", "size" or "table" (:func:`rest_on_plane`): what fixed the distance.
    """

    scale: float
    center: np.ndarray
    rotation: np.ndarray
    source: str

    def apply(self, vertices) -> np.ndarray:
        """Place view-frame points (..., 3) -> (..., 3) float32 metres in the optical frame."""
        v = np.asarray(vertices, dtype=np.float64)
        return (self.scale * v @ self.rotation.T + self.center).astype(np.float32)


# Weight of the contact rule against the lowest-point rule in rest_on_plane (geometric mean of the two scale
# factors). Val scenes (bench/e2e_bench.py --families rgb_only no_depth --scenes 12 --val --seed 500), cloud
# F@10mm of RGB-only objects on a known plane / of the object without depth: weight 1 (contact only) 0.661 /
# 0.635, 0.7 0.679 / 0.669, 0.6 0.677 / 0.673, 0.5 0.672 / 0.674, 0.3 0.643 / 0.665, 0 (lowest point) 0.626 on
# 6 scenes.
CONTACT_WEIGHT = 0.6


def rest_on_plane(placement: Placement, vertices, plane, *, K=None, depth=None, mask=None,
                  tolerance: float = 0.01, limits: tuple[float, float] = (0.2, 5.0),
                  contact_weight: float = CONTACT_WEIGHT):
    """Scale a placement about the camera centre so the mesh stands on ``plane``.

    Scaling about the optical centre leaves every pixel where it is, so the mask still fits, and the height
    above the plane is linear in the scale factor: the factor is exact in one step. This places an object the
    depth camera does not see (glass, black) that stands on a table whose plane it does see.

    Which point touches the table: with ``K``, ``depth`` and ``mask``, and where the table is measured just
    beyond the mask's lowest point in the image ("lowest" = towards the table, along the plane's downward
    normal as the camera sees it), that point is the object's front contact with the table: the mesh vertex
    lowest in the image is moved to the depth of the table under that pixel, so the distance comes from the
    silhouette, not from the predicted bottom (a rounded or too-deep bottom pulls the object towards the
    camera: on the no-depth validation scenes the lowest-point rule placed objects 13 mm too near on
    average, this one 4 mm; cloud F@10mm of those objects 0.592 -> 0.610). That rule in turn places a round
    bottom too far (its silhouette's lowest point is above the table), so the factor used is the weighted
    geometric mean of both (``CONTACT_WEIGHT``). Otherwise (an object in front hides the contact) the mesh's
    lowest point touches the plane and the distance follows from the predicted shape.

    vertices (V, 3) view frame; plane (n (3,), d) with n.X + d = height (camera side positive); K (3, 3),
    depth (H, W) metres, mask (H, W) bool of this object; tolerance [m]: a pixel beyond the mask is table
    when its measured point is this close to the plane. contact_weight: of the contact rule in the geometric
    mean (1 = the contact alone, 0 = the lowest point alone).
    Returns (Placement with source "table", factor) or (the input placement, 1.0) when the factor is not
    finite or leaves ``limits`` (the plane is above the object, or nearly parallel to the viewing rays).
    """
    n, d = np.asarray(plane[0], np.float64), float(plane[1])
    X = placement.apply(vertices).astype(np.float64)
    contact = None
    if K is not None and depth is not None and mask is not None:
        contact = _visible_contact(X, placement.center, n, d, check_intrinsics(K), np.asarray(depth),
                                   np.asarray(mask, bool), tolerance)
    low = float((X @ n).min())
    k = -d / low if low < 0 else float("nan")  # the predicted lowest point on the plane
    if contact is not None:  # that vertex to the depth of the table under the mask's foot pixel
        vertex, foot = contact
        k_contact = float(foot[2] / vertex[2])
        # The contact rule overshoots where the bottom is round (the silhouette's lowest point is above the
        # table: placed too far), the lowest-point rule where the predicted bottom is too deep (too near):
        # their weighted geometric mean beats either (chosen on val scenes, see CONTACT_WEIGHT).
        w = float(contact_weight)
        k = k_contact ** w * k ** (1.0 - w) if np.isfinite(k) and k > 0 else k_contact
    if not (np.isfinite(k) and limits[0] <= k <= limits[1]):
        return placement, 1.0
    return Placement(scale=placement.scale * k, center=placement.center * k, rotation=placement.rotation,
                     source="table"), k


def _visible_contact(X, center, n, d, K, depth, mask, tolerance, probe=(2, 3, 4, 5, 6)):
    """(the placed vertex lowest in the image (3,), the table point under the mask's lowest pixel (3,)) when
    the table is measured right beyond that pixel (the object's front contact is seen), else None.
    X (V, 3) placed mesh, optical frame."""
    if center[2] <= 0 or np.any(X[:, 2] <= 0):
        return None
    c2 = project(K, center)
    below = center - 0.05 * np.linalg.norm(center) * n  # a point under the centre
    if below[2] <= 0:
        return None
    down = project(K, below) - c2
    if not np.all(np.isfinite(down)) or np.linalg.norm(down) < 1e-6:
        return None
    down /= np.linalg.norm(down)
    vs, us = np.nonzero(mask)
    if len(us) == 0:
        return None
    reach = (np.stack([us, vs], 1) - c2) @ down
    foot = np.array([us[reach.argmax()], vs[reach.argmax()]], np.float64)
    H, W = depth.shape
    on_table = 0
    for s in probe:
        u, v = np.rint(foot + s * down).astype(int)
        if not (0 <= u < W and 0 <= v < H) or mask[v, u]:
            continue
        z = float(depth[v, u])
        if np.isfinite(z) and z > 0:
            P = z * pixel_rays(K, np.array([u, v], np.float64))
            on_table += abs(float(P @ n) + d) < tolerance
    if on_table * 2 < len(probe):
        return None
    ray = pixel_rays(K, foot)
    denom = float(ray @ n)
    if abs(denom) < 1e-9:
        return None
    foot3 = (-d / denom) * ray  # the table under the foot pixel
    if foot3[2] <= 0:
        return None
    return X[((project(K, X) - c2) @ down).argmax()], foot3


def _check_vertices(vertices) -> np.ndarray:
    try:
        v = np.asarray(vertices, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"vertices must be a numeric (V, 3) array: {exc}") from None
    if v.ndim != 2 or v.shape[1] != 3 or v.shape[0] < 1:
        raise ValueError(f"vertices must have shape (V, 3) with V >= 1, got {v.shape}")
    if not np.all(np.isfinite(v)):
        raise ValueError("vertices have non-finite values")
    with np.errstate(over="ignore"):
        radius = float(np.sqrt((v * v).sum(axis=1)).max())
        extent = float(np.ptp(v[:, :2], axis=0).max())
    if not np.isfinite(radius) or radius > 1e30:
        raise ValueError("vertices are too large")
    if extent <= 1e-9 * max(radius, 1e-30) or extent < 1e-30:
        raise ValueError("mesh has no extent across the view axis")
    return v


def front_offset(vertices: np.ndarray, grid: int | None = None) -> float:
    """Median front-surface offset along +z of a view-frame point set (V, 3), orthographic z-buffer.

    The xy bounding box is split into ``grid`` x ``grid`` cells (default ``clip(sqrt(V / 8), 2, 16)``, so a
    cell holds front points, not only back ones); the nearest (smallest z) point of each occupied cell is the
    visible surface there. Returns the median of those z (same unit as ``vertices``).
    """
    v = np.asarray(vertices, dtype=np.float64)
    if grid is None:
        grid = int(np.clip(np.sqrt(len(v) / 8.0), 2, 16))
    lo = v[:, :2].min(axis=0)
    span = np.maximum(np.ptp(v[:, :2], axis=0), 1e-300)
    cell = np.clip(((v[:, :2] - lo) / span * grid).astype(np.int64), 0, grid - 1)
    nearest = np.full(grid * grid, np.inf)
    np.minimum.at(nearest, cell[:, 0] * grid + cell[:, 1], v[:, 2])
    return float(np.median(nearest[np.isfinite(nearest)]))


def place_mesh(vertices, K, mask, crop_center=None, points=None, *, surface_points=None,
               default_distance: float = 1.0, default_object_size: float | None = None,
               min_points: int = 10, iterations: int = 12) -> Placement:
    """Scale and position a view-frame mesh so it matches an object's mask and depth.

    Args:
        vertices: (V, 3) view-frame mesh (x right, y down, z forward; origin at the object centre).
        K: (3, 3) intrinsics.
        mask: (H, W) bool object mask in the full image (non-empty).
        crop_center: (2,) pixel (u, v) of the crop centre the predictor saw; default: mask box centre.
        points: optional (N, 3) optical-frame observed surface points (metres) of this object; rows with
            non-finite values or z <= 0 are ignored; fewer than ``min_points`` valid rows = no depth.
        surface_points: optional (P, 3) view-frame samples of the predicted surface for the front-surface
            estimate (default: ``vertices``).
        default_distance: RGB-only assumption, distance (m) from the camera to the object centre.
        default_object_size: RGB-only assumption, bounding-sphere diameter (m); overrides default_distance.
        iterations: fixed-point iterations (each is O(V)).
    Returns:
        :class:`Placement`.
    Raises:
        ValueError: malformed arguments, empty mask, degenerate mesh, or a non-finite solution.
    """
    v = _check_vertices(vertices)
    K = check_intrinsics(K)
    mask = np.asarray(mask)
    if mask.ndim != 2 or mask.dtype != np.bool_:
        raise ValueError(f"mask must be an (H, W) bool array, got {mask.dtype} {mask.shape}")
    box = mask_box(mask)
    if box is None:
        raise ValueError("mask is empty")
    if not (np.isfinite(default_distance) and default_distance > 0):
        raise ValueError(f"default_distance must be finite and > 0, got {default_distance}")
    if default_object_size is not None and not (np.isfinite(default_object_size) and default_object_size > 0):
        raise ValueError(f"default_object_size must be finite and > 0, got {default_object_size}")
    H, W = mask.shape
    x0, y0, x1, y1 = box
    # Continuous extent of the mask (pixel edges) and which sides are free of the image border.
    edges = np.array([x0 - 0.5, x1 - 0.5, y0 - 0.5, y1 - 0.5])
    free = np.array([x0 > 0, x1 < W, y0 > 0, y1 < H])
    if crop_center is None:
        crop_center = ((x0 + x1 - 1) / 2.0, (y0 + y1 - 1) / 2.0)
    crop_center = np.asarray(crop_center, dtype=np.float64)
    if crop_center.shape != (2,) or not np.all(np.isfinite(crop_center)):
        raise ValueError(f"crop_center must be a finite (2,) pixel, got {crop_center}")

    ray = pixel_rays(K, crop_center)
    R = rotation_z_to(ray)
    # Work with a unit-radius mesh; the caller's units are restored in the returned scale.
    radius = float(np.sqrt((v * v).sum(axis=1)).max())
    vu = v / radius
    vr = vu @ R.T

    obs = None
    if points is not None:
        p = np.asarray(points, dtype=np.float64)
        if p.ndim != 2 or p.shape[1] != 3:
            raise ValueError(f"points must have shape (N, 3), got {p.shape}")
        with np.errstate(invalid="ignore"):
            p = p[np.all(np.isfinite(p), axis=1) & (p[:, 2] > 0)] if len(p) else p
        if len(p) >= max(1, min_points):
            obs = p
    with np.errstate(all="ignore"):
        return _solve(v, vu, vr, R, ray, K, edges, free, obs, surface_points, radius,
                      default_distance, default_object_size, iterations)


def _solve(v, vu, vr, R, ray, K, edges, free, obs, surface_points, radius, default_distance,
           default_object_size, iterations) -> Placement:
    d = ray / np.linalg.norm(ray)
    Kinv = np.linalg.inv(K)
    fx, fy = K[0, 0], K[1, 1]
    ext_px = np.array([edges[1] - edges[0], edges[3] - edges[2]])
    free_axis = np.array([free[0] and free[1], free[2] and free[3]])

    if obs is not None:
        source = "depth"
        along = float(np.median(obs @ d))
        sp = vu if surface_points is None else np.asarray(surface_points, dtype=np.float64) / radius
        if sp.ndim != 2 or sp.shape[1] != 3 or len(sp) == 0 or not np.all(np.isfinite(sp)):
            raise ValueError("surface_points must be a finite (P, 3) array")
        f = front_offset(sp)
        dist = along - f  # refined with s below
        s = None
    elif default_object_size is not None:
        source = "size"
        s = 0.5 * default_object_size
        dist = None
    else:
        source = "distance"
        dist = default_distance
        s = None
    # Initial guesses from the mask extent: an angular half-size of e pixels / f at distance D.
    half_ang = 0.5 * max(ext_px[0] / fx, ext_px[1] / fy)
    if dist is None:
        dist = s / max(np.tan(min(half_ang, 1.4)), 1e-12)
    if s is None:
        s = dist * np.tan(min(half_ang, 1.4))
        if obs is not None:
            s = max(s, 1e-6 * along)
            dist = along - s * f
    direction = d
    if not free_axis.any() and obs is not None and source == "depth":
        # Truncated on both axes: the mask extent says nothing about size; use the observed spread.
        s = 0.5 * float(np.linalg.norm(np.ptp(obs, axis=0)))
        dist = along - s * f

    def clamp(s, dist, direction):
        # Keep the whole (unit-radius) mesh in front of the camera.
        if source == "size":
            return s, max(dist, 1.05 * s / direction[2])
        return min(s, dist * direction[2] / 1.05), dist

    for _ in range(max(1, int(iterations))):
        s, dist = clamp(s, dist, direction)
        t = dist * direction
        X = s * vr + t
        uv = (X @ K.T)[:, :2] / X[:, 2:3]
        lo, hi = uv.min(axis=0), uv.max(axis=0)
        proj_ext = hi - lo
        ratios = [ext_px[a] / proj_ext[a] for a in range(2) if free_axis[a] and proj_ext[a] > 0]
        ratio = float(np.exp(np.mean(np.log(ratios)))) if ratios else 1.0
        if source == "size":
            dist = dist / ratio
        else:
            s = s * ratio
            if source == "depth":
                dist = (along - s * f) / float(direction @ d)
        # Shift the centre's image so the projected box sits where the mask's box is (free sides only).
        ct = (t @ K.T)[:2] / t[2]
        shift = np.zeros(2)
        for a, (e0, e1, f0, f1) in enumerate(((0, 1, free[0], free[1]), (2, 3, free[2], free[3]))):
            p0, p1 = (lo[a], hi[a])
            if f0 and f1:
                shift[a] = 0.5 * (edges[e0] + edges[e1]) - 0.5 * (p0 + p1)
            elif f0:
                shift[a] = edges[e0] - p0
            elif f1:
                shift[a] = edges[e1] - p1
        target = Kinv @ np.array([ct[0] + shift[0], ct[1] + shift[1], 1.0])
        direction = target / np.linalg.norm(target)
        if source == "depth":
            dist = (along - s * f) / float(direction @ d)
        if abs(ratio - 1.0) < 1e-4 and np.abs(shift).max() < 1e-3:
            break
    s, dist = clamp(s, dist, direction)
    center = dist * direction
    scale = s / radius
    if not (np.isfinite(scale) and scale > 0 and np.all(np.isfinite(center))):
        raise ValueError("placement has no finite solution for this mesh, mask and camera")
    return Placement(scale=float(scale), center=center, rotation=R, source=source)
