"""The one painter's-algorithm mesh renderer (OpenCV, CPU): the pipeline's debug overlay and the demo's report
images draw placed meshes with it."""

from __future__ import annotations

import numpy as np

from .geometry import project


def paint_meshes(K: np.ndarray, meshes, H: int, W: int):
    """Flat-shaded front faces painted far to near (meshes in the given order, faces by centroid depth) into
    the image region the meshes cover.

    Args:
        K: (3, 3) intrinsics. meshes: iterable of (vertices (V, 3) optical frame metres, faces (F, 3) int,
            colors (V, 3) [0, 1]), far first; a mesh with a vertex at z <= 1e-6 is skipped.
        H, W: image size (px).
    Returns:
        layer (h, w, 3) uint8, alpha (h, w) float32 in {0, 1}, region origin (x0, y0) in the image.
    """
    import cv2

    drawn = []
    for vertices, faces, colors in meshes:
        v = np.asarray(vertices, dtype=np.float64)
        if np.all(v[:, 2] > 1e-6):
            drawn.append((v, np.asarray(faces), np.asarray(colors), np.clip(project(K, v), -1e5, 1e5)))
    empty = np.zeros((0, 0, 3), np.uint8), np.zeros((0, 0), np.float32), (0, 0)
    if not drawn:
        return empty
    lo = np.min([uv.min(axis=0) for *_, uv in drawn], axis=0)
    hi = np.max([uv.max(axis=0) for *_, uv in drawn], axis=0)
    x0, y0 = (max(0, int(np.floor(c)) - 1) for c in lo)
    x1, y1 = min(W, int(np.ceil(hi[0])) + 2), min(H, int(np.ceil(hi[1])) + 2)
    if x1 <= x0 or y1 <= y0:
        return empty
    # RGB + coverage in one image, so each face is one fillConvexPoly call.
    layer = np.zeros((y1 - y0, x1 - x0, 4), np.uint8)
    for v, faces, colors, uv in drawn:
        tri = v[faces]
        normal = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
        centre = tri.sum(axis=1) / 3.0
        with np.errstate(invalid="ignore", divide="ignore"):
            cos = -(normal * centre).sum(1) / (np.linalg.norm(normal, axis=1) * np.linalg.norm(centre, axis=1))
        front = np.flatnonzero(cos > 0)
        if len(front) == 0:  # inward winding: draw everything, shade by |cos|
            front = np.flatnonzero(np.isfinite(cos))
            cos = np.abs(cos)
        front = front[np.argsort(-centre[front, 2])]
        shade = np.clip(0.35 + 0.65 * cos[front], 0.0, 1.0)
        colour = np.clip(colors[faces[front]].mean(axis=1) * shade[:, None] * 255, 0, 255)
        colour = np.concatenate([colour, np.full((len(front), 1), 255.0)], axis=1).tolist()
        # 4 bits of sub-pixel precision, relative to the region.
        fixed = np.round((uv - (x0, y0)) * 16).astype(np.int32)[faces[front]]
        for poly, col in zip(fixed, colour):
            cv2.fillConvexPoly(layer, poly, col, cv2.LINE_8, 4)
    return layer[..., :3], layer[..., 3].astype(np.float32) / 255.0, (x0, y0)
