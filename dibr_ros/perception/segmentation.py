"""Object segmentation for tabletop scenes: depth (plane + clusters), colour (border model) or labels.

All segmenters return a list of :class:`Detection` sorted by pixel area (largest first), at most
``max_objects`` long, possibly empty. Boxes are ``(x0, y0, x1, y1)`` integer pixels with x1/y1 exclusive
(``mask[y0:y1, x0:x1]`` holds the whole object).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .geometry import backproject, check_depth, check_intrinsics, check_labels, check_rgb, mask_box, pixel_rays

SEGMENTATION_MODES = ("auto", "depth", "color", "labels")


@dataclass
class Detection:
    """One segmented object.

    Attributes:
        label: instance id (> 0): the external label value, else 1..N by decreasing area.
        box: (x0, y0, x1, y1) int pixels, x1/y1 exclusive.
        mask: (H, W) bool full-frame mask.
        score: segmenter confidence in [0, 1] (1.0 for depth and label segmentation).
        points: (N, 3) float32 optical-frame metres of the mask's valid depth pixels, or None without depth.
        pixels: (N, 2) int32 (row, col) of those depth pixels, or None without depth.
    """

    label: int
    box: tuple[int, int, int, int]
    mask: np.ndarray
    score: float
    points: np.ndarray | None = None
    pixels: np.ndarray | None = None


def _finish(items, shape, depth, K, max_objects) -> list[Detection]:
    """Sort by area, cap the count, build full-frame masks, boxes and depth pixels.

    ``items``: (mask of a region (h, w) bool, region origin (x, y), score, label or None).
    """
    areas = [int(m.sum()) for m, _, _, _ in items]
    order = sorted(range(len(items)), key=lambda i: -areas[i])[:max_objects]
    dets = []
    for i in order:
        sub, (ox, oy), score, label = items[i]
        tight = mask_box(sub)
        if tight is None:
            continue
        x0, y0, x1, y1 = tight[0] + ox, tight[1] + oy, tight[2] + ox, tight[3] + oy
        mask = np.zeros(shape, bool)
        mask[y0:y1, x0:x1] = sub[tight[1]:tight[3], tight[0]:tight[2]]
        det = Detection(label=int(label) if label is not None else len(dets) + 1, box=(x0, y0, x1, y1),
                        mask=mask, score=float(np.clip(score, 0.0, 1.0)))
        if depth is not None:
            pts, pix = backproject(depth[y0:y1, x0:x1], _shift_K(K, x0, y0), mask[y0:y1, x0:x1])
            det.points, det.pixels = pts, pix + np.array([y0, x0], np.int32)
        dets.append(det)
    return dets


def _shift_K(K: np.ndarray, x0: int, y0: int) -> np.ndarray:
    """Intrinsics of the sub-image starting at pixel (x0, y0)."""
    Ks = K.copy()
    Ks[0, 2] -= x0
    Ks[1, 2] -= y0
    return Ks


def fit_plane(points: np.ndarray, distance: float = 0.01, iterations: int = 128, min_fraction: float = 0.15,
              max_points: int = 1000, seed: int = 0):
    """Dominant plane of a point set by RANSAC, refined by least squares on its inliers.

    All ``iterations`` 3-point hypotheses are scored at once on a fixed random subset of at most
    ``max_points`` points (a tabletop has thousands of support points); the best one's inliers among all
    points are then refit (smallest principal axis), since a 3-point plane tilts by up to ``distance``.
    Pure numpy and deterministic for a given ``seed``.

    Args:
        points: (N, 3) float points (m).
        distance: inlier distance (m).
        min_fraction: a plane needs at least this fraction of the points as inliers.
    Returns:
        (n (3,) unit normal, d float) with ``n . p + d = 0``, oriented so the origin (camera) side is positive,
        or None when no plane has enough support.
    """
    points = np.asarray(points, dtype=np.float64)
    if len(points) < 3:
        return None
    rng = np.random.default_rng(seed)
    sub = points if len(points) <= max_points else points[rng.choice(len(points), max_points, replace=False)]
    tri = sub[rng.integers(0, len(sub), (max(1, int(iterations)), 3))]
    normal = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    norm = np.linalg.norm(normal, axis=1)
    ok = norm > 1e-12
    if not ok.any():
        return None
    normal = normal[ok] / norm[ok, None]
    offset = -(normal * tri[ok, 0]).sum(axis=1)
    count = (np.abs(sub @ normal.T + offset) < distance).sum(axis=0)
    best = int(np.argmax(count))
    inliers = np.abs(points @ normal[best] + offset[best]) < distance
    if inliers.sum() < max(3, min_fraction * len(points)):
        return None
    inl = points[inliers]
    centroid = inl.mean(axis=0)
    _, vecs = np.linalg.eigh(np.cov((inl - centroid).T))
    n = vecs[:, 0]
    d = -float(n @ centroid)
    if d < 0:
        n, d = -n, -d
    return n, d


def support_plane(depth, K, exclude=None, *, stride: int = 4, distance: float = 0.01, max_depth: float = 10.0,
                  iterations: int = 128, min_fraction: float = 0.15):
    """The dominant plane (table) of a depth image, for segmenters that do not fit one themselves.

    Args:
        depth: (H, W) float metres (NaN/inf/<= 0 invalid). K: (3, 3) intrinsics.
        exclude: optional (H, W) bool, pixels not to use (e.g. the union of object masks).
        stride: pixel subsampling; distance: RANSAC inlier distance (m); max_depth: ignore farther depth (m).
    Returns:
        ``(n (3,), d)`` as :func:`fit_plane` returns it (camera side positive), or None.
    """
    K = check_intrinsics(K)
    depth = check_depth(depth, np.shape(depth)[:2])
    stride = max(1, int(stride))
    sub = depth[::stride, ::stride]
    use = (sub > 0) & (sub <= max_depth)
    if exclude is not None:
        use &= ~np.asarray(exclude, bool)[::stride, ::stride]
    vs, us = np.nonzero(use)
    if len(vs) < 50:
        return None
    pts = pixel_rays(K, np.stack([us * stride, vs * stride], axis=-1)) * sub[vs, us][:, None].astype(np.float64)
    return fit_plane(pts, distance, iterations, min_fraction)


def _components(valid: np.ndarray, z: np.ndarray, tol: np.ndarray) -> tuple[int, np.ndarray]:
    """4-connected components of ``valid`` on a grid, cutting edges whose depth jump exceeds ``tol``."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    h, w = valid.shape
    idx = np.full((h, w), -1, dtype=np.int64)
    n = int(valid.sum())
    idx[valid] = np.arange(n)
    rows, cols = [], []
    for a, b, za, zb, ta in (
        (idx[:, :-1], idx[:, 1:], z[:, :-1], z[:, 1:], tol[:, :-1]),
        (idx[:-1, :], idx[1:, :], z[:-1, :], z[1:, :], tol[:-1, :]),
    ):
        keep = (a >= 0) & (b >= 0) & (np.abs(za - zb) < ta)
        rows.append(a[keep])
        cols.append(b[keep])
    r = np.concatenate(rows)
    c = np.concatenate(cols)
    graph = coo_matrix((np.ones(r.size, dtype=np.int8), (r, c)), shape=(n, n))
    count, comp = connected_components(graph, directed=False)
    labels = np.zeros((h, w), dtype=np.int64)
    labels[valid] = comp + 1
    return count, labels


def segment_depth(depth, K, *, stride: int = 4, plane_distance: float = 0.01, min_height: float = 0.005,
                  cluster_distance: float = 0.02, min_object_size: float = 0.02,
                  max_object_size: float = 0.6, min_pixels: int = 100, max_objects: int = 10,
                  max_area_fraction: float = 1.0, max_depth: float = 10.0, plane_iterations: int = 128,
                  min_plane_fraction: float = 0.15, return_plane: bool = False):
    """Tabletop segmentation from depth: dominant plane by RANSAC (:func:`fit_plane`), points above it
    clustered.

    The plane and clusters are computed on ``stride`` x ``stride`` blocks (nearest valid depth); clusters
    are 4-connected neighbourhoods whose depth jump is below ``cluster_distance + 4 * z * stride / fx`` (the
    second term lets steep surfaces stay connected). Labels are then carried back to full resolution, where
    heights come from the plane refit by least squares on the pixels within ``plane_distance`` of it: a
    pixel belongs to object k when it lies more than ``min_height`` above the plane and its low-resolution
    cell (or a neighbour of it) is k. Then each object grows along its surface (4-connected, same depth-jump
    rule at stride 1, nearest object first) by up to ``3 * min_height`` metres into the pixels above the
    plane's noise level: the object's lowest ``min_height``, which it shares with the table's height band,
    and boundary pixels the low resolution missed. The noise level is ``3 sigma`` of the table pixels'
    heights (robust sigma), at least ``plane_distance / 10``; it reaches ``min_height`` on a noisy sensor,
    which leaves only the boundary pixels to grow into.
    Without a plane holding ``min_plane_fraction`` of the points, every valid point counts as foreground.

    Args:
        depth: (H, W) float32 metres (NaN/inf/<= 0 invalid).
        K: (3, 3) intrinsics.
        stride: subsampling step (pixels) for plane fitting and clustering.
        plane_distance: RANSAC inlier distance (m).
        min_height: points closer to the plane than this (m) are table unless an object's surface continues
            into them; an object entirely below it is table. Raised to 3 sigma of the table pixels' heights
            when the sensor is noisier than that (a flat 6 mm domino is found on exact depth, not on a
            sensor with sigma > 2 mm).
        cluster_distance: depth jump (m) that separates two objects.
        min_object_size, max_object_size: bounds (m) on the diagonal of an object's observed 3D bounding box.
        min_pixels: minimum full-resolution mask area (pixels); max_area_fraction: maximum area as a
            fraction of the image.
        max_objects: keep at most this many (largest first).
        max_depth: ignore depth beyond this (m).
        return_plane: also return the support plane.
    Returns:
        list of :class:`Detection` with ``points``/``pixels`` filled; with ``return_plane``, the tuple
        ``(detections, plane)``, plane = the refit ``(n (3,), d)`` as :func:`fit_plane` returns it, or None.
    """
    import cv2

    K = check_intrinsics(K)
    depth = check_depth(depth, np.shape(depth)[:2])
    depth = np.where(depth > max_depth, np.float32(0.0), depth)  # a copy: the caller's depth is not touched
    stride = max(1, int(stride))
    H, W = depth.shape
    # Block minimum of the valid depth: a block is as near as its nearest pixel, so sensor holes and
    # speckle do not cut objects apart at low resolution.
    h, w = -(-H // stride), -(-W // stride)
    blocks = np.full((h * stride, w * stride), np.inf, np.float32)
    blocks[:H, :W] = np.where(depth > 0, depth, np.inf)
    small = blocks[::stride, ::stride].copy()
    for i in range(stride):
        for j in range(stride):
            np.minimum(small, blocks[i::stride, j::stride], out=small)
    small[~np.isfinite(small)] = 0.0
    valid_s = small > 0
    if valid_s.sum() < 50:
        return ([], None) if return_plane else []
    vs, us = np.nonzero(valid_s)
    half = (stride - 1) / 2.0
    rays_s = pixel_rays(K, np.stack([us * stride + half, vs * stride + half], axis=-1))
    pts = rays_s * small[vs, us][:, None].astype(np.float64)
    plane = fit_plane(pts, plane_distance, plane_iterations, min_plane_fraction)
    fine, noise = None, plane_distance
    if plane is not None:
        # Full-resolution heights use the plane refit on true pixel positions: block-minimum points sit up
        # to half a block nearer the camera, which shifts ``plane`` by ~1 mm towards it.
        fine, noise = _refine_plane(depth, K, plane, 2 * stride, plane_distance)
    # Objects start above min_height, or above the table's own noise where the sensor is noisier.
    seed_height = max(min_height, 3.0 * noise) if plane is not None else min_height

    fg_s = np.zeros_like(valid_s)
    if plane is None:
        fg_s[vs, us] = True
    else:
        n, d = plane
        fg_s[vs, us] = pts @ n + d > seed_height
    if fg_s.sum() == 0:
        return ([], fine) if return_plane else []
    tol = cluster_distance + 4.0 * small * stride / K[0, 0]
    count, lab_s = _components(fg_s, small, tol)

    # Per-component statistics at low resolution, vectorised.
    comp = lab_s[vs, us]
    on = comp > 0
    comp_on, pts_on = comp[on], pts[on]
    npix = np.bincount(comp_on, minlength=count + 1)
    mins = np.full((count + 1, 3), np.inf)
    maxs = np.full((count + 1, 3), -np.inf)
    for a in range(3):
        np.minimum.at(mins[:, a], comp_on, pts_on[:, a])
        np.maximum.at(maxs[:, a], comp_on, pts_on[:, a])
    with np.errstate(invalid="ignore"):
        size = np.linalg.norm(maxs - mins, axis=1)
    area = npix * stride * stride
    keep = [k for k in range(1, count + 1)
            if min_pixels <= area[k] <= max_area_fraction * H * W and min_object_size <= size[k] <= max_object_size]
    keep = sorted(keep, key=lambda k: -npix[k])[:min(max_objects, 65535)]
    if not keep:
        return ([], fine) if return_plane else []

    # Full resolution: the low band (heights between the measured plane noise and min_height) may join an
    # object along its surface, up to ``reach`` metres from the pixels above min_height.
    margin = 0
    if plane is not None:
        n, d = fine
        ga, gb, gc = (np.linalg.inv(K).T @ n).astype(np.float32)
        band_low = min(min_height, max(3.0 * noise, 0.1 * plane_distance))
        reach = 3.0 * min_height
        z_near = min(float(mins[k, 2]) for k in keep)
        margin = int(np.ceil(reach * K[0, 0] / max(z_near, 1e-6))) + stride
    remap = np.zeros(count + 1, dtype=np.uint16)
    remap[keep] = np.arange(1, len(keep) + 1, dtype=np.uint16)
    lab_small = remap[lab_s]
    grown = cv2.dilate(lab_small, np.ones((3, 3), np.uint8)) if stride > 1 else lab_small
    boxes = []
    for j in range(1, len(keep) + 1):
        rows, cols = np.nonzero(lab_small == j)  # (grown may lose j where a neighbour's label is larger)
        boxes.append((max(0, rows.min() - 1) * stride, min(H, (rows.max() + 2) * stride),
                      max(0, cols.min() - 1) * stride, min(W, (cols.max() + 2) * stride)))
    # One crop around all objects (plus the growth reach) holds every full-resolution computation.
    uy0, ux0 = max(0, min(b[0] for b in boxes) - margin), max(0, min(b[2] for b in boxes) - margin)
    uy1, ux1 = min(H, max(b[1] for b in boxes) + margin), min(W, max(b[3] for b in boxes) + margin)
    crop = depth[uy0:uy1, ux0:ux1]
    if plane is not None:
        height = crop * ((ga * np.arange(ux0, ux1, dtype=np.float32))[None, :]
                         + (gb * np.arange(uy0, uy1, dtype=np.float32))[:, None] + gc) + np.float32(d)
    owner = np.zeros(crop.shape, np.uint16)
    for j, (k, (ry0, ry1, rx0, rx1)) in enumerate(zip(keep, boxes), start=1):
        # A pixel belongs to object j when it lies above the plane and its low-resolution cell, or a
        # neighbouring cell, is j.
        sub = depth[ry0:ry1, rx0:rx1]
        # Upsample by index: full pixel (y, x) lies in low-resolution cell (y // stride, x // stride).
        yi = np.arange(ry0, ry1) // stride
        xi = np.arange(rx0, rx1) // stride
        own = lab_small[np.ix_(yi, xi)]
        near = grown[np.ix_(yi, xi)]
        lab = np.where(own > 0, own, near)
        m = (lab == j) & (sub >= mins[k, 2] - cluster_distance) & (sub <= maxs[k, 2] + cluster_distance)
        if plane is not None:
            m &= height[ry0 - uy0:ry1 - uy0, rx0 - ux0:rx1 - ux0] > seed_height
        owner[ry0 - uy0:ry1 - uy0, rx0 - ux0:rx1 - ux0][m & (sub > 0)] = j
    if plane is not None and reach > 0:
        _grow(owner, crop, (crop > 0) & (height > band_low), K[0, 0], cluster_distance, reach)
    items = []
    for j in range(1, len(keep) + 1):
        m = owner == j
        if min_pixels <= m.sum() <= max_area_fraction * H * W:
            items.append((m, (ux0, uy0), 1.0, None))
    dets = _finish(items, (H, W), depth, K, max_objects)
    return (dets, fine) if return_plane else dets


def chromaticity(rgb: np.ndarray) -> np.ndarray:
    """(..., 2) float32 ``(r, g) / (r + g + b)`` of (..., 3) uint8 colours.

    Shading multiplies a surface's colour (also after the sRGB curve, a power law), which leaves this ratio
    unchanged: faces of one object in light and shadow get one value, two objects of one hue but different
    saturation do not. A count of 1 is added to each channel so that near-black pixels tend to grey instead
    of amplifying noise.
    """
    c = np.asarray(rgb, np.float32) + 1.0
    return (c[..., :2] / c.sum(-1, keepdims=True)).astype(np.float32)


def _two_means(x: np.ndarray, iterations: int = 10, sample: int = 2000) -> tuple[np.ndarray, np.ndarray]:
    """Lloyd's 2-means of (N, C) values, started from the means of the outer deciles along the principal
    axis (deterministic, and stray boundary colours do not become a centre). The centres are fitted on at
    most ``sample`` evenly strided values. Returns centres (2, C) and the index (N,) of each value's
    nearest centre."""
    x = np.asarray(x, np.float64)

    def nearest(v, c):  # the side of the bisecting hyperplane
        return (v @ (c[1] - c[0]) > 0.5 * (c[1] @ c[1] - c[0] @ c[0])).astype(np.int64)

    fit = x[::max(1, len(x) // sample)]
    d = fit - fit.mean(0)
    axis = np.linalg.svd(d, full_matrices=False)[2][0]
    t = d @ axis
    lo, hi = np.percentile(t, [10, 90])
    centres = np.stack([fit[t <= lo].mean(0), fit[t >= hi].mean(0)])
    for _ in range(iterations):
        which = nearest(fit, centres)
        if which.min() == which.max():
            break
        new = np.stack([fit[which == k].mean(0) for k in (0, 1)])
        if np.allclose(new, centres):
            break
        centres = new
    return centres, nearest(x, centres)


def split_by_color(dets, rgb, K, depth=None, *, threshold: float = 0.03, min_fraction: float = 0.1,
                   coherence: float = 0.9, min_pixels: int = 100, max_objects: int = 10) -> list[Detection]:
    """Split detections that hold two touching objects of clearly different colour.

    Depth alone cannot part objects that touch without a depth jump. A detection's pixels are clustered in
    two by chromaticity (:func:`chromaticity`: shading scales a pixel's colour, which leaves it unchanged);
    it is split when the two centres (:func:`_two_means`) are ``threshold`` apart, each part holds
    ``min_fraction`` of the pixels and ``min_pixels``, and each part is one region (its largest 8-connected
    component holds ``coherence`` of it; a texture's colours interleave and fail this). Applied once per
    detection (two objects per detection at most).

    Args:
        dets: detections (:func:`segment_depth`); rgb: (H, W, 3) uint8; K: (3, 3); depth: (H, W) metres or
            None (fills ``points``/``pixels`` of the parts).
        threshold: chromaticity distance between the two colours.
    Returns:
        detections, largest first, relabelled 1..N, at most ``max_objects``.
    """
    import cv2

    rgb = check_rgb(rgb)
    items, changed = [], False
    for det in dets:
        x0, y0, x1, y1 = det.box
        sub = det.mask[y0:y1, x0:x1]
        parts = [sub]
        chroma = chromaticity(rgb[y0:y1, x0:x1][sub])
        if len(chroma) >= 2 * min_pixels:
            centres, which = _two_means(chroma)
            if np.linalg.norm(centres[0] - centres[1]) >= threshold:
                cand = []
                for c in (0, 1):
                    part = np.zeros_like(sub)
                    part[sub] = which == c
                    count, comp, stats, _ = cv2.connectedComponentsWithStats(part.astype(np.uint8), connectivity=8)
                    size = int(part.sum())
                    if count < 2 or size < max(min_pixels, min_fraction * len(chroma)):
                        break
                    big = 1 + int(stats[1:, cv2.CC_STAT_AREA].argmax())
                    if stats[big, cv2.CC_STAT_AREA] < coherence * size:
                        break
                    cand.append(comp == big)  # stray pixels of the other colour stay out
                else:
                    parts, changed = cand, True
        items += [(m, (x0, y0), det.score, None) for m in parts]
    if not changed:
        return list(dets)
    return _finish(items, det.mask.shape, depth, K, max_objects)


def merge_by_color(dets, rgb, K, depth, *, threshold: float = 0.01, gap: float = 0.05,
                   max_objects: int = 10) -> list[Detection]:
    """Join detections that are pieces of one object cut apart by its own depth jumps.

    An object occludes parts of itself (a bar standing up in front of the bar it crosses, an arm over the
    body): depth clustering then returns several pieces. Pieces of one object share its colour, where
    neighbouring objects rarely match to within sensor noise: detections whose median chromaticity
    (:func:`chromaticity`, unchanged by shading) lies within ``threshold`` and whose measured points come
    within ``gap`` metres of each other are joined (transitively). Identical objects nearer than ``gap``
    are joined too: keep ``threshold`` tight.

    Args:
        dets: detections with ``points`` (:func:`segment_depth`); rgb: (H, W, 3) uint8; K: (3, 3);
            depth: (H, W) metres (fills ``points``/``pixels`` of joined detections).
        threshold: chromaticity distance below which two pieces count as one colour.
        gap: largest distance (m) between the nearest measured points of two pieces.
    Returns:
        detections, largest first, relabelled 1..N when any were joined (else ``dets`` unchanged).
    """
    import scipy.sparse as sp
    from scipy.sparse.csgraph import connected_components
    from scipy.spatial import cKDTree

    if len(dets) < 2:
        return list(dets)
    rgb = check_rgb(rgb)
    chroma = []
    for det in dets:
        x0, y0, x1, y1 = det.box
        chroma.append(np.median(chromaticity(rgb[y0:y1, x0:x1][det.mask[y0:y1, x0:x1]]), axis=0))
    measured = [d.points is not None and len(d.points) > 0 for d in dets]  # without depth: never joined
    lo = [d.points.min(0) if m else None for d, m in zip(dets, measured)]
    hi = [d.points.max(0) if m else None for d, m in zip(dets, measured)]
    trees = {}

    def tree(i):
        if i not in trees:
            trees[i] = cKDTree(dets[i].points[::max(1, len(dets[i].points) // 2000)])
        return trees[i]

    def near(i, j):  # bounding boxes first: most pairs are far apart
        if not (measured[i] and measured[j]):
            return False
        if np.linalg.norm(np.maximum(0.0, np.maximum(lo[i] - hi[j], lo[j] - hi[i]))) >= gap:
            return False
        return tree(i).query(tree(j).data, distance_upper_bound=gap)[0].min() < gap

    joined = [(i, j) for i in range(len(dets)) for j in range(i + 1, len(dets))
              if np.linalg.norm(chroma[i] - chroma[j]) < threshold and near(i, j)]
    if not joined:
        return list(dets)
    pairs = np.array(joined).T
    graph = sp.coo_matrix((np.ones(pairs.shape[1]), (pairs[0], pairs[1])), shape=(len(dets), len(dets)))
    count, group = connected_components(graph, directed=False)
    groups = [np.flatnonzero(group == g) for g in range(count)]
    items = []
    for members in groups:
        x0 = min(dets[i].box[0] for i in members)
        y0 = min(dets[i].box[1] for i in members)
        x1 = max(dets[i].box[2] for i in members)
        y1 = max(dets[i].box[3] for i in members)
        sub = np.logical_or.reduce([dets[i].mask[y0:y1, x0:x1] for i in members])
        items.append((sub, (x0, y0), min(dets[i].score for i in members), None))
    return _finish(items, dets[0].mask.shape, depth, K, max_objects)


def _refine_plane(depth: np.ndarray, K: np.ndarray, plane, step: int, distance: float):
    """Least-squares refit of ``plane`` on the depth pixels (every ``step``-th) within ``distance`` of it.

    Returns:
        ``(n (3,), d)`` (camera side positive; ``plane`` itself when too few pixels support it) and the
        robust standard deviation (m, 1.4826 MAD) of those pixels' distances to the refit plane.
    """
    sub = depth[::step, ::step]
    vs, us = np.nonzero(sub > 0)
    z = sub[vs, us].astype(np.float64)
    pts = np.linalg.solve(K, np.stack([us * step * z, vs * step * z, z]))  # (3, N)
    inl = pts[:, np.abs(plane[0] @ pts + plane[1]) < distance]
    if inl.shape[1] < 10:
        return plane, distance / 3.0
    centroid = inl.mean(axis=1)
    centred = inl - centroid[:, None]
    _, vecs = np.linalg.eigh(centred @ centred.T)
    n = vecs[:, 0] if vecs[:, 0] @ plane[0] > 0 else -vecs[:, 0]
    res = n @ centred
    return (n, -float(n @ centroid)), 1.4826 * float(np.median(np.abs(res - np.median(res))))


def _grow(owner: np.ndarray, depth: np.ndarray, cand: np.ndarray, fx: float, cluster_distance: float,
          reach: float) -> None:
    """Give unowned ``cand`` pixels to the object nearest along the surface, in place.

    Pixels are 4-connected where the depth jump is below ``cluster_distance + 4 * z / fx`` (as the
    clustering, at stride 1); a step costs its 3D length ((z / fx, dz) metres) and growth stops after
    ``reach`` metres (multi-source Dijkstra from the owned pixels next to candidates).

    Args:
        owner: (h, w) uint16 object index per pixel, 0 = none; updated.
        depth: (h, w) float32 metres, 0 = invalid. cand: (h, w) bool, pixels that may join an object.
    """
    import cv2
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import dijkstra

    free = cand & (owner == 0)
    if not free.any():
        return
    seeds = (owner > 0) & (cv2.dilate(free.view(np.uint8), np.ones((3, 3), np.uint8)) > 0)
    node = free | seeds
    idx = np.full(node.shape, -1, np.int64)
    count = int(node.sum())
    idx[node] = np.arange(count)
    rows, cols, cost = [], [], []
    for a, b, za, zb, fa, fb in (
        (idx[:, :-1], idx[:, 1:], depth[:, :-1], depth[:, 1:], free[:, :-1], free[:, 1:]),
        (idx[:-1, :], idx[1:, :], depth[:-1, :], depth[1:, :], free[:-1, :], free[1:, :]),
    ):
        dz = np.abs(za - zb)
        keep = (a >= 0) & (b >= 0) & (fa | fb) & (dz < cluster_distance + 4.0 * za / fx)
        rows.append(a[keep])
        cols.append(b[keep])
        cost.append(np.hypot(za[keep] / fx, dz[keep]))
    graph = coo_matrix((np.concatenate(cost), (np.concatenate(rows), np.concatenate(cols))),
                       shape=(count, count)).tocsr()
    sources = idx[seeds]
    _, _, src = dijkstra(graph, directed=False, indices=sources, limit=reach, min_only=True,
                         return_predecessors=True)
    flat = owner[node]
    got = (src >= 0) & (flat == 0)
    flat[got] = flat[src[got]]
    owner[node] = flat


def segment_color(rgb, *, stride: int = 2, border: int = 4, color_threshold: float = 18.0,
                  min_pixels: int = 100, max_area_fraction: float = 0.8, max_objects: int = 10,
                  min_solidity: float = 0.5, min_thickness: float = 0.02, min_aspect: float = 0.1,
                  min_relative_area: float = 0.05,
                  reject_border: bool = True, depth=None, K=None) -> list[Detection]:
    """Foreground segmentation on a plain background, from a colour model of the image border.

    The border strip (``border`` pixels of the ``stride``-subsampled image) is clustered into up to three
    colours in CIE Lab (k-means; clusters holding < 15 % of the strip are taken as objects touching the
    border and dropped). A pixel is background when its Lab distance (lightness weighted 0.5, so soft
    shadows stay background) to a kept cluster is below ``max(color_threshold, 3 sigma of that cluster)``.
    Foreground is opened/closed morphologically and split into 8-connected components.

    Lightness counts half only when the pixel is *darker* than the background (a shadow keeps the chroma of
    what it falls on and loses lightness); brighter pixels count in full (light objects on a dark cloth).
    Each component's holes are filled (a cup's rim around its contents), then what a photograph adds and a
    graspable object is not is rejected: pieces touching the image border (``reject_border``: cut off, the
    rest of the object unseen), slivers and curved shadow arcs (solidity = area / convex-hull area below
    ``min_solidity``, low enough to keep objects with arms and handles: 0.8 lost 10 of 34 object views of
    the RGB-only validation scenes, 0.5 none; thinner than ``min_thickness`` x the shorter image side,
    measured as twice the largest inscribed radius; or thinner than ``min_aspect`` x its own longest box
    side: streaks, edges) and specks smaller than ``min_relative_area`` x the largest component kept.
    Vignetting (a quadratic lightness trend over the border) is removed from every pixel first.

    Args:
        rgb: (H, W, 3) uint8.
        color_threshold: Lab distance separating object from background.
        min_pixels: minimum full-resolution area; max_area_fraction: maximum area as a fraction of the image.
        depth, K: optional; when both are given, detections carry their depth points.
    Returns:
        list of :class:`Detection`; score = median background distance of the object / (2 * threshold),
        clipped to [0, 1].
    """
    import cv2

    rgb = check_rgb(rgb)
    H, W = rgb.shape[:2]
    if depth is not None:
        depth = check_depth(depth, (H, W))
        K = check_intrinsics(K)
    stride = max(1, int(stride))
    small = rgb[::stride, ::stride] if stride > 1 else rgb
    h, w = small.shape[:2]
    b = max(1, min(int(border), h // 2, w // 2))
    lab = cv2.cvtColor(small.astype(np.float32) / 255.0, cv2.COLOR_RGB2Lab)
    ring = np.ones((h, w), bool)
    ring[b:h - b, b:w - b] = False
    # Photographs darken towards their corners (vignetting, a lamp's falloff): a quadratic lightness trend
    # fitted to the border is taken out of every pixel, so the background is one colour again.
    ys, xs = np.nonzero(ring)
    trend = _lightness_trend(xs * stride / W, ys * stride / H, lab[ring][:, 0])
    lab[..., 0] -= trend(*np.meshgrid(np.arange(w) * stride / W, np.arange(h) * stride / H))
    samples = lab[ring].reshape(-1, 3)
    weight = np.array([0.5, 1.0, 1.0], np.float32)  # for clustering the border only

    def weighted(diff):  # (N, 3) Lab differences to a centre -> shadow-aware weighting (see docstring)
        return diff * np.where(diff[:, :1] < 0, weight, 1.0).astype(np.float32)

    if len(samples) < 16:  # too few border pixels to cluster: one colour
        k, assign, centres = 1, np.zeros(len(samples), np.int32), (samples * weight).mean(axis=0, keepdims=True)
    else:
        k = 3
        criteria = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 20, 0.5)
        cv2.setRNGSeed(0)
        _, assign, centres = cv2.kmeans(np.ascontiguousarray(samples * weight), k, None, criteria, 2,
                                        cv2.KMEANS_PP_CENTERS)
        assign = assign.ravel()
    thresholds = []
    kept = []
    for c in range(k):
        member = samples[assign == c]
        if len(member) < 0.15 * len(samples):
            continue
        centre = centres[c] / weight  # back to plain Lab
        spread = float(np.sqrt((weighted(member - centre) ** 2).sum(axis=1).mean()))
        kept.append(centre)
        thresholds.append(max(color_threshold, 3.0 * spread))

    def background_distance(lab_img):
        flat = lab_img.reshape(-1, 3)
        dist = np.full(flat.shape[0], np.inf, np.float32)
        for centre, thr in zip(kept, thresholds):
            dist = np.minimum(dist, np.sqrt((weighted(flat - centre) ** 2).sum(axis=1)) / thr)
        return dist.reshape(lab_img.shape[:2])

    fg_s = (background_distance(lab) >= 1.0).astype(np.uint8)
    kernel = np.ones((3, 3), np.uint8)
    fg_s = cv2.morphologyEx(fg_s, cv2.MORPH_OPEN, kernel)
    fg_s = cv2.morphologyEx(fg_s, cv2.MORPH_CLOSE, kernel)
    count, lab_s, stats, _ = cv2.connectedComponentsWithStats(fg_s, connectivity=8)
    area_full = stats[:, cv2.CC_STAT_AREA] * stride * stride
    cand = [c for c in range(1, count)
            if min_pixels <= area_full[c] <= max_area_fraction * H * W]
    cand = sorted(cand, key=lambda c: -area_full[c])[:min(max_objects, 65535)]
    if not cand:
        return []
    remap = np.zeros(count, dtype=np.uint16)
    remap[cand] = np.arange(1, len(cand) + 1, dtype=np.uint16)
    lab_small = remap[lab_s]
    grown = cv2.dilate(lab_small, kernel) if stride > 1 else lab_small
    items = []
    for j, c in enumerate(cand, start=1):
        # Full resolution inside the component's (grown) box: the colour test decides the boundary.
        x, y, w_c, h_c = stats[c, :4]
        rx0, ry0 = max(0, (x - 1) * stride), max(0, (y - 1) * stride)
        rx1, ry1 = min(W, (x + w_c + 1) * stride), min(H, (y + h_c + 1) * stride)
        yi = np.arange(ry0, ry1) // stride
        xi = np.arange(rx0, rx1) // stride
        own = lab_small[np.ix_(yi, xi)]
        lab = np.where(own > 0, own, grown[np.ix_(yi, xi)])
        sub = rgb[ry0:ry1, rx0:rx1]
        sub_lab = cv2.cvtColor(sub.astype(np.float32) / 255.0, cv2.COLOR_RGB2Lab)
        sub_lab[..., 0] -= trend(*np.meshgrid(np.arange(rx0, rx1) / W, np.arange(ry0, ry1) / H))
        dist = background_distance(sub_lab)
        m = (lab == j) & (dist >= 1.0) if stride > 1 else lab == j
        m = _fill_holes(m)
        if m.sum() < min_pixels or (reject_border and _touches_border(m, (rx0, ry0), (H, W))):
            continue
        if not _is_compact(m, min_solidity, min_thickness * min(H, W), min_aspect):
            continue
        items.append((m, (rx0, ry0), float(np.median(dist[m])) / 2.0, None))
    if items:  # specks beside real objects: area relative to the largest survivor
        largest = max(int(m.sum()) for m, _, _, _ in items)
        items = [it for it in items if it[0].sum() >= min_relative_area * largest]
    return _finish(items, (H, W), depth, K, max_objects)


def _lightness_trend(x: np.ndarray, y: np.ndarray, L: np.ndarray):
    """Robust quadratic fit of lightness L (N,) over normalised image coordinates x, y (N,) in [0, 1].

    Returns f(x, y) -> the fitted trend minus its median over the samples (zero-mean offset, Lab L units).
    Two refits drop samples beyond 2.5 MAD (objects that touch the border must not bend the trend).
    """
    def basis(x, y):
        return np.stack([np.ones_like(x), x, y, x * x, x * y, y * y], axis=-1).astype(np.float64)

    A, keep = basis(x, y), np.ones(len(L), bool)
    coef = np.zeros(6)
    for _ in range(3):
        if keep.sum() < 12:
            return lambda x, y: np.zeros(np.shape(x), np.float32)
        coef = np.linalg.lstsq(A[keep], L[keep], rcond=None)[0]
        r = L - A @ coef
        mad = np.median(np.abs(r[keep] - np.median(r[keep]))) + 1e-3
        keep = np.abs(r - np.median(r[keep])) < 2.5 * 1.4826 * mad
    offset = float(np.median(A[keep] @ coef))
    return lambda x, y: (basis(np.asarray(x, float), np.asarray(y, float)) @ coef - offset).astype(np.float32)


def _fill_holes(m: np.ndarray) -> np.ndarray:
    """(h, w) bool -> the same with every enclosed background hole filled (flood fill from a padded corner)."""
    import cv2

    pad = np.pad(m, 1).astype(np.uint8)
    outside = pad.copy()
    cv2.floodFill(outside, None, (0, 0), 1)
    return (pad | (1 - outside)).astype(bool)[1:-1, 1:-1]


def _touches_border(m: np.ndarray, origin: tuple[int, int], shape: tuple[int, int]) -> bool:
    """Whether a region mask (h, w) placed at origin (x, y) in an (H, W) image reaches the image's edge."""
    (ox, oy), (H, W), (h, w) = origin, shape, m.shape
    return bool((oy == 0 and m[0].any()) or (ox == 0 and m[:, 0].any())
                or (oy + h == H and m[-1].any()) or (ox + w == W and m[:, -1].any()))


def _is_compact(m: np.ndarray, min_solidity: float, min_thickness_px: float, min_aspect: float) -> bool:
    """Solidity (area / convex-hull area) and thickness (2 x largest inscribed radius, px; also relative to the
    longest side of the region's box) tests of an (h, w) bool region."""
    import cv2

    u8 = m.astype(np.uint8)
    contours, _ = cv2.findContours(u8, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    hull = cv2.contourArea(cv2.convexHull(np.concatenate(contours))) if contours else 0.0
    if hull <= 0 or m.sum() / hull < min_solidity:
        return False
    thickness = 2.0 * float(cv2.distanceTransform(np.pad(u8, 1), cv2.DIST_L2, 3).max())
    x, y, w, h = cv2.boundingRect(u8)
    return thickness >= min_thickness_px and thickness >= min_aspect * max(w, h)


def segment_labels(labels, *, min_pixels: int = 100, max_objects: int = 10, depth=None,
                   K=None) -> list[Detection]:
    """Objects from an external instance label map: every label value > 0 with >= ``min_pixels`` pixels.

    Thousands of labels cost one counting pass; only the ``max_objects`` largest get masks.

    Args:
        labels: (H, W) integer map (mono8 / 16UC1 / int32), 0 and negatives = background.
        depth, K: optional; when both are given, detections carry their depth points.
    Returns:
        list of :class:`Detection` whose ``label`` is the label value, score 1.0.
    """
    labels = check_labels(labels, np.shape(labels)[:2])
    H, W = labels.shape
    if depth is not None:
        depth = check_depth(depth, (H, W))
        K = check_intrinsics(K)
    flat = labels.ravel()
    pos = flat[flat > 0]
    if pos.size == 0:
        return []
    if int(pos.max()) <= 1 << 20:
        counts = np.bincount(pos.astype(np.int64))
        values = np.flatnonzero(counts)
        counts = counts[values]
    else:
        values, counts = np.unique(pos, return_counts=True)
    ok = counts >= max(1, min_pixels)
    values, counts = values[ok], counts[ok]
    order = np.argsort(-counts, kind="stable")[:max_objects]
    items = [(labels == values[i], (0, 0), 1.0, int(values[i])) for i in order]
    return _finish(items, (H, W), depth, K, max_objects)


def segment_depth_holes(depth, K, plane, detections=(), *, min_pixels: int = 100, max_objects: int = 10,
                        min_ring_valid: float = 0.8, min_width: int = 8, max_area_fraction: float = 0.25,
                        start_label: int = 1) -> list[Detection]:
    """Objects the depth camera returns nothing for (glass, black, shiny): holes in the depth on the table.

    A hole is a 4-connected region of invalid depth, not touching the image border, at least ``min_pixels``
    large, ``min_width`` pixels across (sensor shadows are thin bands) and at most ``max_area_fraction`` of
    the image, whose 3-pixel surrounding ring holds valid depth on at least ``min_ring_valid`` of its pixels,
    most of them on or above ``plane`` (the table it stands on), and which overlaps no detection. Needs the
    table plane ``(n, d)`` (None -> no holes).

    Returns:
        :class:`Detection` list (score 0.5, empty ``points`` / ``pixels``: the object has no depth), labels
        from ``start_label`` on.
    """
    import cv2

    if plane is None:
        return []
    K = check_intrinsics(K)
    depth = check_depth(depth, np.shape(depth)[:2])
    H, W = depth.shape
    invalid = ~(depth > 0)
    taken = np.zeros((H, W), bool)
    for d in detections:
        taken |= d.mask
    count, lab, stats, _ = cv2.connectedComponentsWithStats(invalid.astype(np.uint8), connectivity=4)
    n, dist = plane
    items = []
    kernel = np.ones((7, 7), np.uint8)
    for k in range(1, count):
        x, y, w, h, area = stats[k]
        if area < min_pixels or area > max_area_fraction * H * W or min(w, h) < min_width:
            continue
        if x == 0 or y == 0 or x + w == W or y + h == H:
            continue
        x0, y0, x1, y1 = max(0, x - 4), max(0, y - 4), min(W, x + w + 4), min(H, y + h + 4)
        sub = lab[y0:y1, x0:x1] == k
        if (sub & taken[y0:y1, x0:x1]).any():
            continue
        ring = cv2.dilate(sub.astype(np.uint8), kernel).astype(bool) & ~sub
        zr = depth[y0:y1, x0:x1][ring]
        ok = zr > 0
        if ok.mean() < min_ring_valid:
            continue
        pts, _ = backproject(depth[y0:y1, x0:x1], _shift_K(K, x0, y0), ring)
        if len(pts) == 0 or np.median(pts @ n + dist) < -0.01:  # below the table: not standing on it
            continue
        m = sub.copy()
        m = cv2.morphologyEx(m.astype(np.uint8), cv2.MORPH_OPEN, np.ones((3, 3), np.uint8)).astype(bool)
        if m.sum() >= min_pixels:
            items.append((m, (x0, y0), 0.5, None))
    dets = _finish(items, (H, W), None, K, max_objects)
    for i, d in enumerate(dets):
        d.label = start_label + i
        d.points, d.pixels = np.zeros((0, 3), np.float32), np.zeros((0, 2), np.int32)
    return dets
