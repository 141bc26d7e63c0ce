"""What camera drivers and image_transport publishers put on the wire, written from the formats'
definitions (sensor_msgs image_encodings, compressed_depth_image_transport), independent of the package's
decoders: the tests' expectations."""

import struct

import cv2
import numpy as np


def raw_camera_image(rgb: np.ndarray, encoding: str) -> np.ndarray:
    """What a camera driver sends for ``rgb`` (H, W, 3): a Bayer mosaic (RGGB cells) or YUYV 4:2:2
    (BT.601 studio range, the pair's mean chroma), written from the formats' definitions."""
    if encoding == "bayer_rggb8":
        out = np.empty(rgb.shape[:2], np.uint8)
        for k, c in enumerate((0, 1, 1, 2)):  # R G / G B
            out[k // 2::2, k % 2::2] = rgb[k // 2::2, k % 2::2, c]
        return out
    f = rgb.astype(np.float64) / 255.0
    y = 16 + f @ np.array([65.481, 128.553, 24.966])
    u = 128 + f @ np.array([-37.797, -74.203, 112.0])
    v = 128 + f @ np.array([112.0, -93.786, -18.214])
    u, v = 0.5 * (u[:, 0::2] + u[:, 1::2]), 0.5 * (v[:, 0::2] + v[:, 1::2])
    out = np.stack([y[:, 0::2], u, y[:, 1::2], v], axis=-1).reshape(rgb.shape[0], rgb.shape[1], 2)
    return np.round(out).clip(0, 255).astype(np.uint8)


def compressed_depth_payload(depth_m: np.ndarray, encoding: str) -> bytes:
    """compressed_depth_image_transport's png payload, from its definition: a ConfigHeader (int32 format 0,
    float32 depthQuantA, depthQuantB) then the PNG of the 16UC1 values, or for 32FC1 of the inverse depth
    quantised as depthQuantA / z + depthQuantB (0 = no depth), with its defaults depth_quantization 100 and
    depth_max 10 m."""
    if encoding == "16UC1":
        head, img = struct.pack("<iff", 0, 0.0, 0.0), np.round(np.nan_to_num(depth_m) * 1000).astype(np.uint16)
    else:
        a = 100.0 * (100.0 + 1.0)
        b = 1.0 - a / 10.0
        ok = np.isfinite(depth_m) & (depth_m > 0) & (depth_m < 10.0)
        z = np.where(ok, depth_m, 1.0)
        img = np.where(ok, np.round(a / z + b), 0).astype(np.uint16)
        head = struct.pack("<iff", 0, a, b)
    return head + cv2.imencode(".png", img)[1].tobytes()
