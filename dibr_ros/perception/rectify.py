"""Lens-distortion removal for cameras whose CameraInfo carries a non-zero ``D`` (``rectify: auto``).

The pipeline assumes a pinhole camera. A distorted image is remapped once per frame to the pinhole camera
``K_rect`` (CameraInfo ``P[:, :3]`` when it is set, else ``K``) with maps built once per calibration
(:class:`RectifierCache`). The rectification rotation ``R`` is deliberately not applied: without it the
rectified pixels see the same rays' 3D points in the same frame, so every output stays in the camera's
optical frame (``R`` only matters for stereo pairs, whose driver publishes ``image_rect`` anyway).

Colour is interpolated linearly; depth and instance labels take the nearest source pixel, so no depth value
or label is invented at an edge (a z-depth value is unchanged by undistortion: same point, same frame).
"""

from __future__ import annotations

import cv2
import numpy as np

__all__ = ["MODELS", "Rectifier", "RectifierCache", "has_distortion"]

# ROS distortion model names (sensor_msgs/distortion_models.hpp) -> OpenCV family
MODELS = {"plumb_bob": "pinhole", "rational_polynomial": "pinhole", "equidistant": "fisheye"}


def has_distortion(D) -> bool:
    """True when any distortion coefficient is non-zero (an empty ``D`` means none)."""
    d = np.asarray(D, dtype=np.float64).reshape(-1)
    return bool(d.size and np.any(d != 0.0))


class Rectifier:
    """Undistortion maps of one calibrated camera.

    Args:
        K: (3, 3) intrinsics of the distorted image, pixels.
        D: (N,) distortion coefficients in OpenCV order (plumb_bob 5, rational_polynomial 8, equidistant 4).
        model: ROS distortion model name (:data:`MODELS`).
        size: (width, height) of the image, pixels.
        P: optional (3, 4) or (3, 3) projection of the rectified image; its left 3x3 becomes ``K_rect`` when it
            has positive focal lengths, else ``K`` is kept.
    Raises:
        ValueError: unknown model, wrong number of coefficients, bad size.
    """

    def __init__(self, K, D, model: str, size: tuple[int, int], P=None):
        if model not in MODELS:
            raise ValueError(f"distortion model {model!r} is not supported (supported: {sorted(MODELS)})")
        w, h = int(size[0]), int(size[1])
        if w <= 0 or h <= 0:
            raise ValueError(f"image size must be positive, got {w}x{h}")
        K = np.asarray(K, dtype=np.float64).reshape(3, 3)
        D = np.asarray(D, dtype=np.float64).reshape(-1)
        K_rect = K.copy()
        if P is not None:
            Pm = np.asarray(P, dtype=np.float64).reshape(3, -1)[:, :3]
            if np.all(np.isfinite(Pm)) and Pm[0, 0] > 0 and Pm[1, 1] > 0:
                K_rect = Pm.copy()
        if MODELS[model] == "fisheye":
            if D.size != 4:
                raise ValueError(f"equidistant distortion needs 4 coefficients, got {D.size}")
            m1, m2 = cv2.fisheye.initUndistortRectifyMap(K, D, np.eye(3), K_rect, (w, h), cv2.CV_16SC2)
        else:
            if D.size not in (4, 5, 8, 12, 14):
                raise ValueError(f"{model} distortion needs 4, 5, 8, 12 or 14 coefficients, got {D.size}")
            m1, m2 = cv2.initUndistortRectifyMap(K, D, None, K_rect, (w, h), cv2.CV_16SC2)
        self.K, self.D, self.model, self.size, self.K_rect = K, D, model, (w, h), K_rect
        self._m1, self._m2 = m1, m2
        # nearest rounds the float map (the fixed-point map's integer part would floor it)
        fx, fy = cv2.convertMaps(m1, m2, cv2.CV_32FC1)
        self._near = np.stack([np.rint(fx), np.rint(fy)], axis=-1).astype(np.int16)

    def _check(self, img: np.ndarray) -> None:
        if img.shape[1] != self.size[0] or img.shape[0] != self.size[1]:
            raise ValueError(f"image is {img.shape[1]}x{img.shape[0]}, the calibration is "
                             f"{self.size[0]}x{self.size[1]}")

    def rgb(self, img: np.ndarray) -> np.ndarray:
        """(H, W, C) or (H, W) image -> the same shape and dtype, bilinear; pixels from outside -> 0."""
        self._check(img)
        return cv2.remap(img, self._m1, self._m2, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)

    def nearest(self, img: np.ndarray) -> np.ndarray:
        """(H, W) depth (metres, 0 = invalid) or instance labels -> the same, nearest source pixel (0 outside)."""
        self._check(img)
        src = img.astype(np.float32) if img.dtype in (np.int32, np.int64, np.uint32) else img
        out = cv2.remap(src, self._near, None, cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT)
        return out.astype(img.dtype, copy=False) if out.dtype != img.dtype else out


class RectifierCache:
    """One :class:`Rectifier` per calibration: rebuilt only when K, D, model, P or the size change."""

    def __init__(self):
        self._key = None
        self._rect: Rectifier | None = None

    def get(self, K, D, model: str, size: tuple[int, int], P=None) -> Rectifier | None:
        """The calibration's rectifier, or None when ``D`` has no non-zero coefficient (nothing to do)."""
        if not has_distortion(D):
            return None
        key = (np.asarray(K, np.float64).tobytes(), np.asarray(D, np.float64).tobytes(), model,
               (int(size[0]), int(size[1])), None if P is None else np.asarray(P, np.float64).tobytes())
        if key != self._key:
            self._rect, self._key = Rectifier(K, D, model, size, P), key
        return self._rect
