"""Input checks and pinhole geometry in the camera optical frame (x right, y down, z forward, metres).

Pixel coordinates follow OpenCV: pixel ``(u, v)`` = (column, row) has its centre at integer coordinates
and covers ``[u - 0.5, u + 0.5] x [v - 0.5, v + 0.5]``.
"""

from __future__ import annotations

import contextlib
import contextvars

import numpy as np

# Set by PerceptionPipeline.process once it has validated a frame: the layers it calls (segmentation, crops,
# placement, completion) then trust their inputs instead of re-checking (and copying) the same arrays. Public
# functions called directly still check. A ContextVar: per thread, so the node's worker is unaffected by others.
_CHECKED: contextvars.ContextVar[bool] = contextvars.ContextVar("dibr_inputs_checked", default=False)


@contextlib.contextmanager
def inputs_checked():
    """Within this block ``check_*`` return their argument unchanged (the caller validated it already)."""
    token = _CHECKED.set(True)
    try:
        yield
    finally:
        _CHECKED.reset(token)


def check_intrinsics(K) -> np.ndarray:
    """See :func:`_check_intrinsics` (skipped inside :func:`inputs_checked`)."""
    return K if _CHECKED.get() else _check_intrinsics(K)


def _check_intrinsics(K) -> np.ndarray:
    """Validate a pinhole matrix.

    Args:
        K: (3, 3) OpenCV intrinsics ``[[fx, s, cx], [0, fy, cy], [0, 0, 1]]`` in pixels.
    Returns:
        (3, 3) float64 copy.
    Raises:
        ValueError: wrong shape, non-finite entries, non-positive focal lengths, last row not (0, 0, 1),
            or a matrix whose inverse is not finite.
    """
    try:
        K = np.array(K, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"K must be a (3, 3) numeric array: {exc}") from None
    if K.shape != (3, 3):
        raise ValueError(f"K must have shape (3, 3), got {K.shape}")
    if not np.all(np.isfinite(K)):
        raise ValueError("K has non-finite entries")
    if not (K[0, 0] > 0 and K[1, 1] > 0):
        raise ValueError(f"K focal lengths must be positive, got fx={K[0, 0]}, fy={K[1, 1]}")
    if not np.allclose(K[2], (0.0, 0.0, 1.0)) or K[1, 0] != 0:
        raise ValueError("K must be upper triangular with last row (0, 0, 1)")
    with np.errstate(all="ignore"):
        Kinv = np.linalg.inv(K)
    if not np.all(np.isfinite(Kinv)):
        raise ValueError("K is not invertible in float64")
    return K


def check_rgb(rgb) -> np.ndarray:
    """See :func:`_check_rgb` (skipped inside :func:`inputs_checked`)."""
    return rgb if _CHECKED.get() else _check_rgb(rgb)


def _check_rgb(rgb) -> np.ndarray:
    """Validate an (H, W, 3) uint8 image (H, W >= 1); returns it as a C-contiguous array."""
    if not isinstance(rgb, np.ndarray):
        raise ValueError(f"rgb must be a numpy array, got {type(rgb).__name__}")
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"rgb must have shape (H, W, 3), got {rgb.shape}")
    if rgb.dtype != np.uint8:
        raise ValueError(f"rgb must be uint8, got {rgb.dtype}")
    if rgb.shape[0] < 1 or rgb.shape[1] < 1:
        raise ValueError(f"rgb is empty: {rgb.shape}")
    return np.ascontiguousarray(rgb)


def check_depth(depth, shape: tuple[int, int]) -> np.ndarray:
    """See :func:`_check_depth` (skipped inside :func:`inputs_checked`)."""
    return depth if _CHECKED.get() else _check_depth(depth, shape)


def _check_depth(depth, shape: tuple[int, int]) -> np.ndarray:
    """Validate a depth image aligned to an image of ``shape`` (H, W).

    Args:
        depth: (H, W) float depth in metres along the optical axis; NaN, inf and values <= 0 mean invalid.
    Returns:
        (H, W) float32 with every invalid pixel set to 0.
    Raises:
        ValueError: not a float array, or its size differs from ``shape``.
    """
    if not isinstance(depth, np.ndarray):
        raise ValueError(f"depth must be a numpy array, got {type(depth).__name__}")
    if depth.ndim == 3 and depth.shape[2] == 1:
        depth = depth[..., 0]
    if depth.ndim != 2:
        raise ValueError(f"depth must have shape (H, W), got {depth.shape}")
    if tuple(depth.shape) != tuple(shape):
        raise ValueError(f"depth size {depth.shape} differs from image size {tuple(shape)}")
    if not np.issubdtype(depth.dtype, np.floating):
        raise ValueError(f"depth must be float metres, got {depth.dtype} (convert 16UC1 millimetres first)")
    with np.errstate(over="ignore", invalid="ignore"):
        out = depth.astype(np.float32, copy=True)  # beyond float32 -> inf -> invalid
        out[~(np.isfinite(out) & (out > 0))] = 0.0
    return out


def check_labels(labels, shape: tuple[int, int]) -> np.ndarray:
    """See :func:`_check_labels` (skipped inside :func:`inputs_checked`)."""
    return labels if _CHECKED.get() else _check_labels(labels, shape)


def _check_labels(labels, shape: tuple[int, int]) -> np.ndarray:
    """Validate an (H, W) integer label map (0 = background; negative values count as background)."""
    if not isinstance(labels, np.ndarray):
        raise ValueError(f"labels must be a numpy array, got {type(labels).__name__}")
    if labels.ndim == 3 and labels.shape[2] == 1:
        labels = labels[..., 0]
    if labels.ndim != 2:
        raise ValueError(f"labels must have shape (H, W), got {labels.shape}")
    if tuple(labels.shape) != tuple(shape):
        raise ValueError(f"labels size {labels.shape} differs from image size {tuple(shape)}")
    if not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels must be an integer label map, got {labels.dtype}")
    return labels


def check_plane(plane) -> tuple[np.ndarray, float]:
    """A table plane, camera optical frame: ``(a, b, c, d)`` or ``(n (3,), d)`` with ``n . X + d`` the
    height above the table -> ``(unit n (3,) float64, d)`` scaled so that |n| = 1. The camera must be above
    it (d > 0 after scaling): a plane through or above the camera is not a table it sees."""
    try:
        if len(plane) == 2 and np.size(plane[0]) == 3:
            n, d = np.asarray(plane[0], np.float64).reshape(3), float(plane[1])
        else:
            v = np.asarray(plane, np.float64).reshape(-1)
            if v.shape != (4,):
                raise ValueError
            n, d = v[:3], float(v[3])
    except (TypeError, ValueError):
        raise ValueError(f"plane must be (a, b, c, d) or (normal (3,), d), got {plane!r}") from None
    norm = float(np.linalg.norm(n))
    if not (np.all(np.isfinite(n)) and np.isfinite(d) and norm > 1e-9):
        raise ValueError(f"plane must have a finite non-zero normal and offset, got {plane!r}")
    n, d = n / norm, d / norm
    if d <= 0:
        raise ValueError(f"plane {plane!r}: the camera is not above it (its height there is {d:.3f} m); "
                         "give the normal pointing from the table towards the camera")
    return n, d


def plane_from_pose(translation, quaternion_xyzw) -> tuple[np.ndarray, float]:
    """The z = 0 plane of a frame whose pose in the camera optical frame is ``translation`` (3,) and
    ``quaternion_xyzw`` (4,) (a TF transform camera <- table) -> ``(n, d)`` as :func:`check_plane` returns
    it: n the frame's z axis in camera coordinates, d = -n . t (the camera's height above it)."""
    from scipy.spatial.transform import Rotation

    n = Rotation.from_quat(np.asarray(quaternion_xyzw, np.float64)).as_matrix()[:, 2]
    return check_plane([*n, -float(n @ np.asarray(translation, np.float64))])


def plane_depth(plane, K: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """(H, W) float32 depth (z, m) at which each pixel's ray meets ``plane`` ``(n, d)``; 0 where it does not
    (the ray runs parallel to the table or above its horizon)."""
    n, d = plane
    H, W = shape
    vv, uu = np.mgrid[0:H, 0:W]
    rays = pixel_rays(K, np.stack([uu, vv], axis=-1))
    denom = rays @ np.asarray(n, np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(denom < -1e-9, -float(d) / denom, 0.0)
    return z.astype(np.float32)


def pixel_rays(K: np.ndarray, uv: np.ndarray) -> np.ndarray:
    """Unnormalised rays ``K^-1 [u, v, 1]`` (z = 1) for pixel coordinates ``uv`` (..., 2) -> (..., 3)."""
    uv = np.asarray(uv, dtype=np.float64)
    Kinv = np.linalg.inv(K)
    ones = np.ones(uv.shape[:-1] + (1,))
    return np.concatenate([uv, ones], axis=-1) @ Kinv.T


def project(K: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Pinhole projection of optical-frame points (..., 3) with z > 0 to pixels (..., 2)."""
    p = points @ K.T
    return p[..., :2] / p[..., 2:3]


def backproject(depth: np.ndarray, K: np.ndarray, mask: np.ndarray | None = None, dtype=np.float32):
    """Back-project valid depth pixels to optical-frame points: the one implementation (perception, eval
    baselines, simulator ground truth, demo and benches all call this).

    Args:
        depth: (H, W) float depth in metres along the optical axis; 0, NaN, inf = invalid.
        K: (3, 3) intrinsics (pixel centres at integer coordinates).
        mask: optional (H, W) bool (or 0/1) restricting the pixels.
        dtype: dtype of the returned points (the eval baselines keep float64).
    Returns:
        points (N, 3) ``dtype`` metres and pixels (N, 2) int32 as (row, col), in row-major order.
    """
    valid = np.isfinite(depth) & (depth > 0)
    if mask is not None:
        valid &= np.asarray(mask, dtype=bool)
    rows, cols = np.nonzero(valid)
    z = depth[rows, cols].astype(np.float64)
    rays = pixel_rays(K, np.stack([cols, rows], axis=-1))
    points = (rays * z[:, None]).astype(dtype)
    return points, np.stack([rows, cols], axis=-1).astype(np.int32)


def rotation_z_to(direction) -> np.ndarray:
    """Smallest rotation taking +z to ``direction`` (3,) (any length > 0, z component > -1 after norm).

    Returns:
        (3, 3) float64 R with ``R @ [0, 0, 1] = direction / |direction|``; R maps crop-ray-frame
        coordinates to the optical frame.
    """
    d = np.asarray(direction, dtype=np.float64)
    n = np.linalg.norm(d)
    if not np.isfinite(n) or n == 0:
        raise ValueError("ray direction must be finite and non-zero")
    a, b, c = d / n
    if c <= -1.0 + 1e-9:
        raise ValueError("ray direction points backwards (z <= 0)")
    vx = np.array([[0.0, 0.0, a], [0.0, 0.0, b], [-a, -b, 0.0]])
    return np.eye(3) + vx + vx @ vx / (1.0 + c)


def mask_box(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    """Tight box (x0, y0, x1, y1) of a bool mask, x1/y1 exclusive; None if the mask is empty."""
    cols = np.flatnonzero(mask.any(axis=0))
    if cols.size == 0:
        return None
    rows = np.flatnonzero(mask.any(axis=1))
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1
