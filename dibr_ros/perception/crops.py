"""Square, padded, resized object crops and their geometry in the full image."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .geometry import check_rgb


@dataclass
class Crop:
    """One object crop as the predictor sees it.

    Attributes:
        rgb: (S, S, 3) uint8 resized crop; parts outside the image are black.
        mask: (S, S) bool object mask in the crop.
        box: (x0, y0, x1, y1) int pixels of the square region in the full image (x1 - x0 = y1 - y0, x1/y1
            exclusive, may extend past the image border).
        depth: (S, S) float32 metres resized over the valid pixels of the object mask only (0 = none), or None
            without depth.
    """

    rgb: np.ndarray
    mask: np.ndarray
    box: tuple[int, int, int, int]
    depth: np.ndarray | None = None

    @property
    def center(self) -> np.ndarray:
        """(2,) float64 pixel (u, v) at the centre of the square region: the crop's viewing ray."""
        x0, y0, x1, y1 = self.box
        return np.array([(x0 + x1 - 1) / 2.0, (y0 + y1 - 1) / 2.0])

    @property
    def side(self) -> int:
        """Side of the square region in full-image pixels."""
        return self.box[2] - self.box[0]


def square_box(box, padding: float = 0.15) -> tuple[int, int, int, int]:
    """Square integer region centred on ``box`` (x0, y0, x1, y1; x1/y1 exclusive).

    The side is ``ceil(max(w, h) * (1 + 2 * padding))`` pixels (at least 1), so ``padding`` (0..100) is the
    margin on each side as a fraction of the longer box side. The result may extend past the image.
    """
    try:
        b = np.asarray(box, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"box must be 4 numbers (x0, y0, x1, y1): {exc}") from None
    if b.shape != (4,) or not np.all(np.isfinite(b)) or np.abs(b).max() > 1e9:
        raise ValueError(f"box must be 4 finite pixel coordinates, got {box}")
    x0, y0, x1, y1 = (int(v) for v in b)
    if x1 <= x0 or y1 <= y0:
        raise ValueError(f"box must have x1 > x0 and y1 > y0, got {box}")
    if not (np.isfinite(padding) and 0 <= padding <= 100):
        raise ValueError(f"padding must be finite and >= 0, got {padding}")
    side = max(1, int(np.ceil(max(x1 - x0, y1 - y0) * (1.0 + 2.0 * padding) - 1e-9)))
    # Same centre (in doubled integer units to stay exact): (x0 + x1) / 2 -> left = centre - side / 2.
    left = (x0 + x1 - side) // 2
    top = (y0 + y1 - side) // 2
    return left, top, left + side, top + side


def _cut(img: np.ndarray, box) -> np.ndarray:
    """img[y0:y1, x0:x1] with zero padding wherever the region leaves the image."""
    x0, y0, x1, y1 = box
    H, W = img.shape[:2]
    out = np.zeros((y1 - y0, x1 - x0) + img.shape[2:], dtype=img.dtype)
    sx0, sy0, sx1, sy1 = max(x0, 0), max(y0, 0), min(x1, W), min(y1, H)
    if sx1 > sx0 and sy1 > sy0:
        out[sy0 - y0:sy1 - y0, sx0 - x0:sx1 - x0] = img[sy0:sy1, sx0:sx1]
    return out


def make_crop(rgb: np.ndarray, mask: np.ndarray, box, size: int, padding: float = 0.15,
              depth: np.ndarray | None = None) -> Crop:
    """Crop one object.

    Args:
        rgb: (H, W, 3) uint8 image.
        mask: (H, W) bool object mask.
        box: (x0, y0, x1, y1) object box, x1/y1 exclusive.
        size: output side S in pixels (>= 1).
        padding: margin per side as a fraction of the longer box side.
        depth: optional (H, W) float metres (<= 0 / non-finite = invalid), cropped to ``Crop.depth`` over the
            mask's pixels only.
    Returns:
        :class:`Crop`; downscaling uses area averaging, the mask is thresholded at 0.5 coverage; depth is
        averaged over the valid pixels of the mask only (a pixel is valid where more than half its area was).
    """
    import cv2

    rgb = check_rgb(rgb)
    mask = np.asarray(mask)
    if mask.shape != rgb.shape[:2]:
        raise ValueError(f"mask shape {mask.shape} differs from image size {rgb.shape[:2]}")
    if not isinstance(size, (int, np.integer)) or not 1 <= size <= 4096:
        raise ValueError(f"crop size must be an int in [1, 4096], got {size!r}")
    size = int(size)
    region = square_box(box, padding)
    side = region[2] - region[0]
    if side > 8 * max(rgb.shape[:2]) + 8:
        raise ValueError(f"crop side {side} px is far larger than the image {rgb.shape[:2]}")
    interp = cv2.INTER_AREA if side >= size else cv2.INTER_LINEAR
    crop_rgb = cv2.resize(_cut(rgb, region), (size, size), interpolation=interp)
    cover = cv2.resize(_cut(mask.astype(np.float32), region), (size, size), interpolation=interp)
    crop_depth = None
    if depth is not None:
        d = _cut(np.asarray(depth, np.float32), region)
        # Only the object's own pixels: averaging in the background behind its silhouette (a table 20 cm
        # farther back behind a lifted object) would make depths the object does not have, and the network
        # reads those as a deep back.
        ok = (np.isfinite(d) & (d > 0) & _cut(mask, region).astype(bool)).astype(np.float32)
        d = np.where(ok > 0, d, 0.0).astype(np.float32)
        num = cv2.resize(d, (size, size), interpolation=interp).reshape(size, size)
        den = cv2.resize(ok, (size, size), interpolation=interp).reshape(size, size)
        crop_depth = np.where(den > 0.5, num / np.maximum(den, 1e-6), 0.0).astype(np.float32)
    return Crop(rgb=crop_rgb.reshape(size, size, 3), mask=cover.reshape(size, size) >= 0.5, box=region,
                depth=crop_depth)


def make_crops(rgb: np.ndarray, detections, size: int, padding: float = 0.15,
               depth: np.ndarray | None = None) -> list[Crop]:
    """:func:`make_crop` for each detection (anything with ``.mask`` and ``.box``)."""
    return [make_crop(rgb, d.mask, d.box, size, padding, depth) for d in detections]


def stack_crops(crops: list[Crop]) -> tuple[np.ndarray, np.ndarray]:
    """Batch crops of one size: rgb (N, S, S, 3) uint8 and mask (N, S, S) bool."""
    if not crops:
        raise ValueError("no crops to stack")
    return np.stack([c.rgb for c in crops]), np.stack([c.mask for c in crops])
