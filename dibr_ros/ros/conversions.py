"""ROS message <-> numpy conversions without cv_bridge or sensor_msgs_py (both used only when they work).

Images: ``image_to_numpy`` / ``numpy_to_image`` for rgb8, bgr8, rgba8, bgra8, mono8, mono16, 16UC1,
32FC1, the aliases 8UC1, 8UC3, and the raw formats of real camera drivers (16-bit colour rgb16 / bgr16 /
rgba16 / bgra16, YUV 4:2:2 yuv422 (UYVY) and yuv422_yuy2 (YUYV) of USB and V4L2 cameras, 8-bit Bayer mosaics
bayer_rggb8 / bggr8 / gbrg8 / grbg8 of machine-vision cameras), with row padding (``step``) and either byte
order; ``image_to_rgb`` turns every colour one into RGB (OpenCV's demosaicing and YUV conversion, as
cv_bridge does). ``compressed_to_rgb`` / ``compressed_depth_to_numpy`` decode image_transport's
``compressed`` (JPEG, PNG) and ``compressedDepth`` (PNG) payloads. Every malformed message raises
``ValueError`` with a one-line reason *before* anything of the claimed size is allocated.

Markers: ``mesh_marker_array`` builds a ``visualization_msgs/MarkerArray`` (DELETEALL, then one
TRIANGLE_LIST per mesh); ``mesh_marker_array_cdr`` serializes the same array straight from numpy to CDR
bytes (``Publisher.publish(bytes)``), about 100x faster than building 10^4 ``Point`` objects.
``CdrMarkerSerializer.verify()`` checks it against ``rclpy.serialization`` (same size, same decoded
message) on the running distro / RMW before the node relies on it.

Clouds: ``points_to_cloud`` packs x, y, z, rgb, instance (and the node's ``source``) into one ``PointCloud2``
(point_step 20, 24 with source; every field FLOAT32 so ``read_points_numpy`` works on the whole cloud;
``rgb`` is the PCL convention, uint32 0x00RRGGBB bit-cast to float32; ``instance`` is the object index as
float32, exact below 2**24; ``source`` 0 measured, 1 support volume, 2 network).
"""

from __future__ import annotations

import math
import struct
import sys
from collections.abc import Sequence

import cv2
import numpy as np
from builtin_interfaces.msg import Duration
from geometry_msgs.msg import Point
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2, PointField
from std_msgs.msg import ColorRGBA, Header
from visualization_msgs.msg import Marker, MarkerArray

__all__ = [
    "COLOR_ENCODINGS",
    "ENCODINGS",
    "CdrMarkerSerializer",
    "camera_info_to_K",
    "check_compressed",
    "check_image",
    "compressed_depth_to_numpy",
    "compressed_to_rgb",
    "depth_to_compressed_depth",
    "encoded_size",
    "cloud_to_numpy",
    "image_to_numpy",
    "image_to_rgb",
    "make_camera_info",
    "mesh_marker_array",
    "mesh_marker_array_cdr",
    "numpy_to_image",
    "points_to_cloud",
    "rgb_to_compressed",
]

# encoding -> (numpy dtype, channels). 8UC1/8UC3 are OpenCV-style aliases some drivers emit.
ENCODINGS: dict[str, tuple[np.dtype, int]] = {
    "rgb8": (np.dtype(np.uint8), 3),
    "bgr8": (np.dtype(np.uint8), 3),
    "rgba8": (np.dtype(np.uint8), 4),
    "bgra8": (np.dtype(np.uint8), 4),
    "mono8": (np.dtype(np.uint8), 1),
    "8UC1": (np.dtype(np.uint8), 1),
    "8UC3": (np.dtype(np.uint8), 3),
    "mono16": (np.dtype(np.uint16), 1),
    "16UC1": (np.dtype(np.uint16), 1),
    "32FC1": (np.dtype(np.float32), 1),
    "rgb16": (np.dtype(np.uint16), 3),
    "bgr16": (np.dtype(np.uint16), 3),
    "rgba16": (np.dtype(np.uint16), 4),
    "bgra16": (np.dtype(np.uint16), 4),
    "yuv422": (np.dtype(np.uint8), 2),  # UYVY: U0 Y0 V0 Y1 per pixel pair (sensor_msgs image_encodings)
    "yuv422_yuy2": (np.dtype(np.uint8), 2),  # YUYV: Y0 U0 Y1 V0
    "bayer_rggb8": (np.dtype(np.uint8), 1),
    "bayer_bggr8": (np.dtype(np.uint8), 1),
    "bayer_gbrg8": (np.dtype(np.uint8), 1),
    "bayer_grbg8": (np.dtype(np.uint8), 1),
}
# Encodings image_to_rgb decodes (the colour inputs of the node).
COLOR_ENCODINGS = ("rgb8", "bgr8", "rgba8", "bgra8", "mono8", "8UC1", "8UC3", "rgb16", "bgr16", "rgba16", "bgra16",
                   "yuv422", "yuv422_yuy2", "bayer_rggb8", "bayer_bggr8", "bayer_gbrg8", "bayer_grbg8")
_PAIRED = ("yuv422", "yuv422_yuy2")  # two pixels share one U and one V: the width must be even
_LITTLE = sys.byteorder == "little"


def _cv_bridge():
    """A CvBridge that imports *and* round-trips a padded image correctly, else None (NumPy-ABI breakage)."""
    try:
        from cv_bridge import CvBridge

        bridge = CvBridge()
        probe = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
        msg = numpy_to_image(probe, "rgb8")
        back = bridge.imgmsg_to_cv2(msg, desired_encoding="passthrough")
        if back.shape == probe.shape and np.array_equal(back, probe):
            return bridge
    except Exception:  # any failure (ImportError, NumPy-ABI error) means: do not use it
        pass
    return None


_BRIDGE: object | None = None
_BRIDGE_PROBED = False


def _data_len(data) -> int:
    return len(data) if not isinstance(data, memoryview) else data.nbytes


def check_image(msg: Image, allowed: Sequence[str] | None = None) -> tuple[np.dtype, int]:
    """Validate an Image's metadata against its data without decoding it.

    Returns ``(dtype, channels)``; raises ``ValueError`` naming the problem (unsupported encoding,
    zero size, ``step`` smaller than a row, data size != step * height).
    """
    enc = msg.encoding
    if enc not in ENCODINGS:
        raise ValueError(f"unsupported encoding '{enc}' (supported: {', '.join(ENCODINGS)})")
    if allowed is not None and enc not in allowed:
        raise ValueError(f"encoding '{enc}' not accepted here (expected one of: {', '.join(allowed)})")
    dtype, ch = ENCODINGS[enc]
    h, w, step = int(msg.height), int(msg.width), int(msg.step)
    if h <= 0 or w <= 0:
        raise ValueError(f"zero-size image ({w}x{h})")
    if enc in _PAIRED and w % 2:
        raise ValueError(f"{enc} needs an even width (pixel pairs share U and V), got {w}")
    row = w * ch * dtype.itemsize
    if step < row:
        raise ValueError(f"step {step} < width*bytes_per_pixel = {row} for {w}x{h} {enc}")
    n = _data_len(msg.data)
    if n != step * h:
        raise ValueError(f"data has {n} bytes, expected step*height = {step}*{h} = {step * h} "
                         f"({w}x{h} {enc})")
    return dtype, ch


def image_to_numpy(msg: Image) -> np.ndarray:
    """Decode an Image: (H, W, C) for multi-channel encodings, (H, W) for single-channel ones.

    Channel order is the encoding's own (bgr8 stays BGR; see ``image_to_rgb``). The result is native-endian,
    C-contiguous and owns its memory. Raises ``ValueError`` with the reason for a malformed message.
    """
    global _BRIDGE, _BRIDGE_PROBED
    dtype, ch = check_image(msg)
    h, w, step = int(msg.height), int(msg.width), int(msg.step)
    if not _BRIDGE_PROBED:
        _BRIDGE_PROBED = True
        _BRIDGE = _cv_bridge()
    if _BRIDGE is not None:
        try:
            out = np.ascontiguousarray(_BRIDGE.imgmsg_to_cv2(msg, desired_encoding="passthrough"))
            want = (h, w, ch) if ch > 1 else (h, w)
            if out.shape == want and out.dtype == dtype:
                return out.copy() if not out.flags.owndata else out
        except Exception:  # fall through to our own decoder
            pass
    raw = np.frombuffer(msg.data, dtype=np.uint8).reshape(h, step)[:, : w * ch * dtype.itemsize]
    big = bool(msg.is_bigendian) and dtype.itemsize > 1
    out = np.ascontiguousarray(raw).view(dtype.newbyteorder(">" if big else "<"))
    out = out.astype(dtype, copy=True)  # native byte order, owned memory
    return out.reshape(h, w, ch) if ch > 1 else out.reshape(h, w)


# OpenCV names a Bayer pattern by the 2x2 cell starting at pixel (1, 1), ROS by the one at (0, 0):
# ROS rggb (R at (0, 0)) is OpenCV's BG (B at (1, 1)), as in cv_bridge.
_CV_CODES = {"yuv422": cv2.COLOR_YUV2RGB_UYVY, "yuv422_yuy2": cv2.COLOR_YUV2RGB_YUY2,
             "bayer_rggb8": cv2.COLOR_BayerBG2RGB, "bayer_bggr8": cv2.COLOR_BayerRG2RGB,
             "bayer_gbrg8": cv2.COLOR_BayerGR2RGB, "bayer_grbg8": cv2.COLOR_BayerGB2RGB}


def image_to_rgb(msg: Image) -> np.ndarray:
    """Decode a colour (or mono8) Image (:data:`COLOR_ENCODINGS`) to (H, W, 3) uint8 RGB; ``ValueError``
    for other encodings. 16-bit colour keeps its high byte; YUV 4:2:2 is BT.601 (OpenCV's conversion);
    Bayer mosaics are demosaiced bilinearly."""
    check_image(msg, allowed=COLOR_ENCODINGS)
    a = image_to_numpy(msg)
    enc = msg.encoding
    if enc in _CV_CODES:
        return cv2.cvtColor(a, _CV_CODES[enc])
    if a.dtype == np.uint16:
        a = (a >> 8).astype(np.uint8)
    if a.ndim == 2:
        return np.repeat(a[:, :, None], 3, axis=2)
    if enc in ("bgr8", "bgra8", "bgr16", "bgra16"):
        return np.ascontiguousarray(a[:, :, 2::-1])
    return np.ascontiguousarray(a[:, :, :3])


# ------------------------------------------------------------------------------ image_transport plugins
# compressed_depth_image_transport's ConfigHeader before the PNG: int32 format (0 = inverse depth), float32
# depthParam[2] (the 32FC1 quantisation: stored = depthQuantA / depth + depthQuantB).
_DEPTH_HEADER = struct.Struct("<iff")
_PNG = b"\x89PNG\r\n\x1a\n"


# The most pixels a compressed payload may declare: 64 MP, five 12 MP frames. A few bytes of JPEG or PNG
# header can claim any size, and the decoder would allocate it before finding the data missing.
MAX_DECODED_PIXELS = 2**26
_JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def encoded_size(data) -> tuple[int, int] | None:
    """(width, height) a PNG or JPEG payload declares, read from its header (PNG IHDR, JPEG SOFn), without
    decoding; None when neither header is found."""
    b = bytes(data[:65536]) if not isinstance(data, (bytes, bytearray)) else data
    if b[:8] == _PNG and len(b) >= 24 and b[12:16] == b"IHDR":
        w, h = struct.unpack(">II", b[16:24])
        return int(w), int(h)
    if b[:2] != b"\xff\xd8":
        return None
    i = 2
    while i + 4 <= len(b):
        if b[i] != 0xFF:
            return None
        marker = b[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:  # no length field
            i += 2
            continue
        seg = struct.unpack(">H", b[i + 2:i + 4])[0]
        if marker in _JPEG_SOF:
            if i + 9 > len(b):
                return None
            h, w = struct.unpack(">HH", b[i + 5:i + 9])
            return int(w), int(h)
        i += 2 + seg
    return None


def _compressed_bytes(msg: CompressedImage, what: str) -> np.ndarray:
    n = _data_len(msg.data)
    if n == 0:
        raise ValueError(f"{what} has no data (format '{msg.format}')")
    return np.frombuffer(msg.data, np.uint8)


def _decode(buf: np.ndarray, what: str, fmt: str) -> np.ndarray:
    """cv2.imdecode with the declared size checked first; ValueError for what does not decode."""
    size = encoded_size(buf)
    if size is None:
        raise ValueError(f"{what} ({len(buf)} bytes, format '{fmt}') is neither PNG nor JPEG")
    if size[0] * size[1] > MAX_DECODED_PIXELS or 0 in size:
        raise ValueError(f"{what} declares {size[0]}x{size[1]} pixels (at most {MAX_DECODED_PIXELS} decoded)")
    try:
        img = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
    except cv2.error as exc:
        raise ValueError(f"{what} ({len(buf)} bytes, format '{fmt}') does not decode: "
                         f"{str(exc).strip().splitlines()[-1]}") from None
    if img is None:
        raise ValueError(f"{what} ({len(buf)} bytes, format '{fmt}') does not decode")
    return img


def compressed_to_rgb(msg: CompressedImage) -> np.ndarray:
    """Decode a ``compressed`` image_transport message (JPEG or PNG; ``format`` as compressed_image_transport
    writes it, e.g. "rgb8; jpeg compressed bgr8", or just "jpeg") to (H, W, 3) uint8 RGB.

    ``ValueError`` for an empty, truncated or undecodable payload and for formats other than JPEG / PNG."""
    fmt = msg.format.lower()
    if fmt and "jpeg" not in fmt and "jpg" not in fmt and "png" not in fmt:
        raise ValueError(f"compressed image format '{msg.format}' is not JPEG or PNG")
    img = _decode(_compressed_bytes(msg, "compressed image"), "compressed image", msg.format)
    if img.dtype == np.uint16:  # a 16-bit PNG
        img = (img >> 8).astype(np.uint8)
    if img.ndim == 2:
        return cv2.cvtColor(img, cv2.COLOR_GRAY2RGB)
    # OpenCV decodes to BGR(A), whatever the camera's encoding was (the encoder wrote what imencode got)
    return cv2.cvtColor(img, cv2.COLOR_BGRA2RGB if img.shape[2] == 4 else cv2.COLOR_BGR2RGB)


def compressed_depth_to_numpy(msg: CompressedImage) -> tuple[np.ndarray, str]:
    """Decode a ``compressedDepth`` image_transport message to ``(depth (H, W), encoding)``: uint16 for
    "16UC1; compressedDepth png" (the raw values), float32 metres for "32FC1; compressedDepth png" (the
    inverse-depth quantisation undone, NaN where nothing was measured). A format naming no codec
    ("16UC1; compressedDepth", ROS 1 bags and older ROS 2) is png.

    ``ValueError`` for another codec (e.g. rvl), a missing header or an undecodable PNG."""
    enc = msg.format.split(";")[0].strip()
    if enc not in ("16UC1", "32FC1", "mono16"):
        raise ValueError(f"compressedDepth format '{msg.format}': the depth encoding must be 16UC1 or 32FC1")
    if "rvl" in msg.format.lower():  # no codec named (ROS 1, older ROS 2): png, the plugin's default
        raise ValueError(f"compressedDepth format '{msg.format}' is not supported (only png; set the "
                         "publisher's compressedDepth format to png)")
    buf = _compressed_bytes(msg, "compressedDepth image")
    if len(buf) < _DEPTH_HEADER.size + len(_PNG) or buf[_DEPTH_HEADER.size:_DEPTH_HEADER.size + 8].tobytes() != _PNG:
        raise ValueError(f"compressedDepth image ({len(buf)} bytes) has no ConfigHeader + PNG payload")
    _, quant_a, quant_b = _DEPTH_HEADER.unpack_from(buf[:_DEPTH_HEADER.size].tobytes())
    raw = _decode(buf[_DEPTH_HEADER.size:], "compressedDepth image", msg.format)
    if raw.ndim != 2 or raw.dtype != np.uint16:
        raise ValueError(f"compressedDepth image ({len(buf)} bytes) does not decode to one 16-bit channel")
    if enc != "32FC1":
        return raw, "16UC1"
    if not (np.isfinite(quant_a) and np.isfinite(quant_b)) or quant_a == 0:
        raise ValueError(f"compressedDepth 32FC1 header has no valid quantisation ({quant_a}, {quant_b})")
    with np.errstate(divide="ignore", invalid="ignore"):
        depth = (quant_a / (raw.astype(np.float32) - np.float32(quant_b))).astype(np.float32)
    depth[raw == 0] = np.nan
    return depth, "32FC1"


def rgb_to_compressed(rgb: np.ndarray, header: Header | None = None, quality: int = 90) -> CompressedImage:
    """(H, W, 3) uint8 RGB -> a ``compressed`` image_transport message (JPEG of the BGR image, the format
    string compressed_image_transport writes: "rgb8; jpeg compressed bgr8")."""
    ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(np.asarray(rgb, np.uint8)[:, :, ::-1]),
                           [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise ValueError(f"JPEG encoding of a {np.shape(rgb)} image failed")
    msg = CompressedImage(format="rgb8; jpeg compressed bgr8")
    if header is not None:
        msg.header = header
    msg.data = buf.tobytes()
    return msg


def depth_to_compressed_depth(depth_m: np.ndarray, header: Header | None = None) -> CompressedImage:
    """(H, W) float metres (0 / NaN = no return) -> a ``compressedDepth`` message: 16UC1 millimetres, PNG,
    behind compressed_depth_image_transport's ConfigHeader ("16UC1; compressedDepth png")."""
    d = np.nan_to_num(np.asarray(depth_m, np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    mm = np.where(d > 0, np.round(d * 1000.0), 0).clip(0, 65535).astype(np.uint16)
    ok, buf = cv2.imencode(".png", mm)
    if not ok:
        raise ValueError(f"PNG encoding of a {np.shape(depth_m)} depth image failed")
    msg = CompressedImage(format="16UC1; compressedDepth png")
    if header is not None:
        msg.header = header
    msg.data = _DEPTH_HEADER.pack(0, 0.0, 0.0) + buf.tobytes()
    return msg


def check_compressed(msg: CompressedImage, depth: bool = False) -> None:
    """Cheap arrival check of a compressed message (format and non-empty data); decoding happens later."""
    if _data_len(msg.data) == 0:
        raise ValueError(f"compressed{'Depth' if depth else ''} image has no data (format '{msg.format}')")
    fmt = msg.format.lower()
    if depth and "compresseddepth" not in fmt and "png" not in fmt:
        raise ValueError(f"format '{msg.format}' is not a compressedDepth image")
    if not depth and fmt and not any(k in fmt for k in ("jpeg", "jpg", "png")):
        raise ValueError(f"compressed image format '{msg.format}' is not JPEG or PNG")


def numpy_to_image(arr: np.ndarray, encoding: str, header: Header | None = None) -> Image:
    """Encode (H, W[, C]) ``arr`` as an Image (native byte order, no padding).

    The dtype must be the encoding's (integers may be safely up-cast, e.g. uint8 -> 16UC1; any float for
    32FC1); the channel count must match. Raises ``ValueError`` / ``TypeError``.
    """
    if encoding not in ENCODINGS:
        raise ValueError(f"unsupported encoding '{encoding}' (supported: {', '.join(ENCODINGS)})")
    dtype, ch = ENCODINGS[encoding]
    arr = np.asarray(arr)
    if arr.ndim == 3 and ch == 1 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    want_ndim = 3 if ch > 1 else 2
    if arr.ndim != want_ndim or (ch > 1 and arr.shape[2] != ch):
        want = "(H, W)" if ch == 1 else f"(H, W, {ch})"
        raise ValueError(f"{encoding} needs shape {want}, got {arr.shape}")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f"zero-size image {arr.shape}")
    if encoding in _PAIRED and arr.shape[1] % 2:
        raise ValueError(f"{encoding} needs an even width (pixel pairs share U and V), got {arr.shape[1]}")
    ok = np.can_cast(arr.dtype, dtype, casting="safe") or (
        dtype.kind == "f" and arr.dtype.kind == "f"
    )
    if not ok:
        raise TypeError(f"{encoding} needs dtype {dtype}, got {arr.dtype}")
    arr = np.ascontiguousarray(arr, dtype=dtype)
    msg = Image()
    if header is not None:
        msg.header = header
    msg.height, msg.width = int(arr.shape[0]), int(arr.shape[1])
    msg.encoding = encoding
    msg.is_bigendian = 0 if _LITTLE else 1
    msg.step = int(arr.shape[1] * ch * dtype.itemsize)
    msg.data = arr.tobytes()
    return msg


def camera_info_to_K(msg: CameraInfo) -> np.ndarray:
    """(3, 3) float64 intrinsics from CameraInfo.k; ``ValueError`` for an uncalibrated / invalid K."""
    k = np.asarray(msg.k, dtype=np.float64)
    if k.size != 9:
        raise ValueError(f"camera_info K has {k.size} entries, expected 9")
    K = k.reshape(3, 3)
    if not np.all(np.isfinite(K)):
        raise ValueError("camera_info K contains NaN/inf")
    if not np.any(K):
        raise ValueError("camera_info K is all zeros (uncalibrated camera)")
    if K[0, 0] <= 0 or K[1, 1] <= 0:
        raise ValueError(f"camera_info K has non-positive focal length (fx={K[0, 0]}, fy={K[1, 1]})")
    if not np.allclose(K[2], (0.0, 0.0, 1.0)) or K[1, 0] != 0:
        raise ValueError(f"camera_info K is not a pinhole matrix (last row {K[2].tolist()})")
    return K


def make_camera_info(K: np.ndarray, width: int, height: int, header: Header | None = None) -> CameraInfo:
    """CameraInfo for an undistorted pinhole camera: k = K, p = [K | 0], r = I, plumb_bob with zero d."""
    K = np.asarray(K, dtype=np.float64)
    if K.shape != (3, 3):
        raise ValueError(f"K must be (3, 3), got {K.shape}")
    if width <= 0 or height <= 0:
        raise ValueError(f"camera size must be positive, got {width}x{height}")
    msg = CameraInfo()
    if header is not None:
        msg.header = header
    msg.width, msg.height = int(width), int(height)
    msg.distortion_model = "plumb_bob"
    msg.d = [0.0] * 5
    msg.k = K.reshape(-1).tolist()
    msg.r = np.eye(3).reshape(-1).tolist()
    msg.p = np.concatenate([K, np.zeros((3, 1))], axis=1).reshape(-1).tolist()
    return msg


# ---------------------------------------------------------------------------------------------- markers

def _mesh_arrays(mesh) -> tuple[np.ndarray, np.ndarray]:
    """(3F, 3) float64 points expanded per face and (3F, 4) float32 RGBA colours (alpha 1)."""
    vertices, faces, colors = mesh
    v = np.asarray(vertices, dtype=np.float64)
    f = np.asarray(faces, dtype=np.int64)
    c = np.asarray(colors)
    if v.ndim != 2 or v.shape[1] != 3:
        raise ValueError(f"mesh vertices must be (V, 3), got {v.shape}")
    if f.ndim != 2 or f.shape[1] != 3:
        raise ValueError(f"mesh faces must be (F, 3), got {f.shape}")
    if c.shape != v.shape:
        raise ValueError(f"mesh colors must be (V, 3) like vertices {v.shape}, got {c.shape}")
    if f.size and (f.min() < 0 or f.max() >= len(v)):
        raise ValueError(f"mesh faces index outside [0, {len(v)})")
    c = c.astype(np.float32) / 255.0 if c.dtype == np.uint8 else np.clip(c.astype(np.float32), 0.0, 1.0)
    idx = f.reshape(-1)
    rgba = np.ones((len(idx), 4), dtype=np.float32)
    rgba[:, :3] = c[idx]
    return np.ascontiguousarray(v[idx]), rgba


def _marker_base(header: Header, ns: str, mid: int, action: int, lifetime_s: float) -> Marker:
    m = Marker()
    m.header = header
    m.ns = ns
    m.id = mid
    m.action = action
    if action == Marker.ADD:
        m.type = Marker.TRIANGLE_LIST
        m.pose.orientation.w = 1.0
        m.scale.x = m.scale.y = m.scale.z = 1.0
        m.color = ColorRGBA(r=1.0, g=1.0, b=1.0, a=1.0)
        sec = math.floor(lifetime_s)
        m.lifetime = Duration(sec=int(sec), nanosec=int(round((lifetime_s - sec) * 1e9)) % 1_000_000_000)
    return m


def _marker_ids(meshes: Sequence, ids: Sequence[int] | None) -> list[int]:
    if ids is None:
        return list(range(len(meshes)))
    if len(ids) != len(meshes):
        raise ValueError(f"got {len(ids)} marker ids for {len(meshes)} meshes")
    return [int(i) for i in ids]


def mesh_marker_array(header: Header, meshes: Sequence, ns: str = "meshes", lifetime_s: float = 0.0,
                      ids: Sequence[int] | None = None) -> MarkerArray:
    """MarkerArray: a DELETEALL marker, then one TRIANGLE_LIST per mesh (id = ``ids[i]``, default i).

    meshes: list of ``(vertices (V, 3) metres in header.frame_id, faces (F, 3) int, colors (V, 3) float in
    [0, 1] or uint8)``. Points are expanded per face (3F points) with per-point colours, ``color.a = 1``,
    ``scale = 1``, identity orientation, ``lifetime`` = ``lifetime_s`` (0 = forever).
    """
    out = MarkerArray()
    out.markers.append(_marker_base(header, ns, 0, Marker.DELETEALL, lifetime_s))
    for mid, mesh in zip(_marker_ids(meshes, ids), meshes):
        pts, rgba = _mesh_arrays(mesh)
        m = _marker_base(header, ns, mid, Marker.ADD, lifetime_s)
        m.points = [Point(x=x, y=y, z=z) for x, y, z in pts.tolist()]
        m.colors = [ColorRGBA(r=r, g=g, b=b, a=a) for r, g, b, a in rgba.tolist()]
        out.markers.append(m)
    return out


def detection3d_array(vm, header: Header, boxes: Sequence) -> object:
    """vision_msgs/Detection3DArray of placed objects (``vm``: the ``vision_msgs.msg`` module, optional).

    boxes: list of ``(id int, vertices (V, 3) metres in header.frame_id, score float)``. Each Detection3D has
    ``id = str(id)`` (the mesh marker's id), an axis-aligned ``bbox`` of the vertices (centre pose with identity
    orientation, size in metres) and one hypothesis ``class_id "object"`` with the segmenter's score (the
    pipeline has no classes), posed at the box centre.
    """
    out = vm.Detection3DArray()
    out.header = header
    for oid, vertices, score in boxes:
        v = np.asarray(vertices, dtype=np.float64).reshape(-1, 3)
        lo, hi = v.min(axis=0), v.max(axis=0)
        c, size = (lo + hi) / 2.0, hi - lo
        det = vm.Detection3D()
        det.header = header
        det.id = str(int(oid))
        det.bbox.center.position.x, det.bbox.center.position.y, det.bbox.center.position.z = map(float, c)
        det.bbox.center.orientation.w = 1.0
        det.bbox.size.x, det.bbox.size.y, det.bbox.size.z = map(float, size)
        hyp = vm.ObjectHypothesisWithPose()
        hyp.hypothesis.class_id, hyp.hypothesis.score = "object", float(score)
        hyp.pose.pose.position.x, hyp.pose.pose.position.y, hyp.pose.pose.position.z = map(float, c)
        hyp.pose.pose.orientation.w = 1.0
        det.results.append(hyp)
        out.detections.append(det)
    return out


_BASIC = {
    "boolean": "<u1", "octet": "<u1", "char": "<u1", "uint8": "<u1", "int8": "<i1",
    "uint16": "<u2", "int16": "<i2", "uint32": "<u4", "int32": "<i4", "uint64": "<u8", "int64": "<i8",
    "float": "<f4", "double": "<f8",
}


class CdrMarkerSerializer:
    """Little-endian plain-CDR (XCDR1) writer for MarkerArray, field layout read from the message classes.

    The ``points`` / ``colors`` sequences are written straight from numpy; everything else by walking
    ``SLOT_TYPES``, so distro differences in ``Marker`` (e.g. Humble lacks ``texture``/``mesh_file``) are
    followed automatically. ``verify()`` compares with ``rclpy.serialization`` (padding bytes excluded).
    """

    def __init__(self):
        from rosidl_parser import definition as d

        self._d = d
        self._buf: list[bytes] = []
        self._pos = 0

    # -- low level
    def _align(self, n: int) -> None:
        pad = (-self._pos) % n
        if pad:
            self._buf.append(b"\0" * pad)
            self._pos += pad

    def _raw(self, b: bytes, align: int) -> None:
        self._align(align)
        self._buf.append(b)
        self._pos += len(b)

    def _u32(self, n: int) -> None:
        self._raw(struct.pack("<I", n), 4)

    def _string(self, s: str) -> None:
        b = s.encode("utf-8") + b"\0"
        self._u32(len(b))
        self._raw(b, 1)

    def _value(self, t, v) -> None:
        d = self._d
        if isinstance(t, d.BasicType):
            dt = np.dtype(_BASIC[t.typename])
            self._raw(np.asarray(v, dtype=dt).tobytes(), dt.itemsize)
        elif isinstance(t, d.AbstractString):
            self._string(v)
        elif isinstance(t, d.NamespacedType):
            self._message(v)
        elif isinstance(t, d.AbstractNestedType):  # Array, BoundedSequence, UnboundedSequence
            if not isinstance(t, d.Array):
                self._u32(len(v))
            vt = t.value_type
            if isinstance(vt, d.BasicType):
                dt = np.dtype(_BASIC[vt.typename])
                arr = np.frombuffer(v, dtype=dt) if isinstance(v, (bytes, bytearray)) else np.asarray(v, dt)
                if len(arr):
                    self._raw(arr.astype(dt, copy=False).tobytes(), dt.itemsize)
            else:
                for item in v:
                    self._value(vt, item)
        else:
            raise TypeError(f"cannot serialize field type {t!r}")

    def _message(self, msg, fast: dict | None = None) -> None:
        for field, t in zip(msg.get_fields_and_field_types(), msg.SLOT_TYPES):
            if fast is not None and field in fast:
                arr, align = fast[field]
                self._u32(len(arr))
                if len(arr):
                    self._raw(arr.tobytes(), align)
            else:
                self._value(t, getattr(msg, field))

    # -- public
    def marker_array(self, header: Header, meshes: Sequence, ns: str = "meshes", lifetime_s: float = 0.0,
                     ids: Sequence[int] | None = None) -> bytes:
        """Serialized ``mesh_marker_array(header, meshes, ns, lifetime_s, ids)``, built without Point objects."""
        self._buf, self._pos = [b"\x00\x01\x00\x00"], 0  # encapsulation CDR_LE; alignment restarts after it
        self._u32(len(meshes) + 1)
        self._message(_marker_base(header, ns, 0, Marker.DELETEALL, lifetime_s))
        for mid, mesh in zip(_marker_ids(meshes, ids), meshes):
            pts, rgba = _mesh_arrays(mesh)
            m = _marker_base(header, ns, mid, Marker.ADD, lifetime_s)
            self._message(m, fast={"points": (pts, 8), "colors": (rgba, 4)})
        out = b"".join(self._buf)
        self._buf = []
        return out

    def verify(self) -> bool:
        """True when this writer reproduces rclpy's serialization of a sample array byte for byte."""
        from rclpy.serialization import deserialize_message, serialize_message

        rng = np.random.default_rng(0)
        h = Header(frame_id="cam_optical")
        h.stamp.sec, h.stamp.nanosec = 12, 345
        meshes = [(rng.normal(size=(5, 3)), np.array([[0, 1, 2], [2, 3, 4]]), rng.random((5, 3)))
                  for _ in range(2)]
        try:
            ours = self.marker_array(h, meshes, "m", 0.25)
            ref = mesh_marker_array(h, meshes, "m", 0.25)
            # Padding bytes are unspecified (rclpy leaves them uninitialised): compare sizes and decoded values.
            return len(ours) == len(serialize_message(ref)) and deserialize_message(ours, MarkerArray) == ref
        except Exception:  # any failure means: do not use the fast path
            return False


def mesh_marker_array_cdr(header: Header, meshes: Sequence, ns: str = "meshes", lifetime_s: float = 0.0,
                          ids: Sequence[int] | None = None) -> bytes:
    """CDR bytes of ``mesh_marker_array(...)`` for ``Publisher.publish(bytes)`` (``CdrMarkerSerializer``)."""
    return CdrMarkerSerializer().marker_array(header, meshes, ns, lifetime_s, ids)


# ----------------------------------------------------------------------------------------------- clouds

_CLOUD_FIELDS = ("x", "y", "z", "rgb", "instance", "source")
# rgb written through a uint32 view: the bit pattern must survive untouched (no float arithmetic).
_CLOUD_DTYPES = {k: np.dtype([(n, "<u4" if n == "rgb" else "<f4") for n in _CLOUD_FIELDS[:k]]) for k in (5, 6)}
_PF_DTYPES = {
    PointField.INT8: "i1", PointField.UINT8: "u1", PointField.INT16: "i2", PointField.UINT16: "u2",
    PointField.INT32: "i4", PointField.UINT32: "u4", PointField.FLOAT32: "f4", PointField.FLOAT64: "f8",
}


def points_to_cloud(header: Header, xyz: np.ndarray, rgb: np.ndarray, instance: np.ndarray,
                    source: np.ndarray | None = None) -> PointCloud2:
    """PointCloud2 with FLOAT32 fields x, y, z, rgb, instance at offsets 0/4/8/12/16 (point_step 20), and
    with ``source`` a sixth, ``source`` at 20 (point_step 24).

    xyz (N, 3) metres; rgb (N, 3) float in [0, 1] or uint8, packed as uint32 0x00RRGGBB bit-cast to float32
    (PCL/RViz "rgb"); instance (N,) int object index, stored as float32; source (N,) int where each point
    comes from (:data:`dibr_ros.perception.pointcloud.SOURCES`), stored as float32. ``is_dense`` iff all xyz
    finite.
    """
    xyz = np.asarray(xyz)
    n = len(xyz)
    if xyz.ndim != 2 or xyz.shape[1] != 3:
        raise ValueError(f"xyz must be (N, 3), got {xyz.shape}")
    rgb = np.asarray(rgb)
    if rgb.shape != (n, 3):
        raise ValueError(f"rgb must be ({n}, 3), got {rgb.shape}")
    instance = np.asarray(instance)
    if instance.shape != (n,):
        raise ValueError(f"instance must be ({n},), got {instance.shape}")
    if source is not None and np.shape(source) != (n,):
        raise ValueError(f"source must be ({n},), got {np.shape(source)}")
    if rgb.dtype != np.uint8 and rgb.dtype.kind != "f":  # an int array would pass as [0, 1] floats: 1 -> 255
        raise TypeError(f"rgb must be uint8 or float in [0, 1], got {rgb.dtype}")
    if rgb.dtype != np.uint8:
        rgb = np.clip(np.rint(np.nan_to_num(rgb.astype(np.float64)) * 255.0), 0, 255).astype(np.uint8)
    packed = (rgb[:, 0].astype(np.uint32) << 16) | (rgb[:, 1].astype(np.uint32) << 8) | rgb[:, 2]
    dtype = _CLOUD_DTYPES[5 if source is None else 6]
    pts = np.empty(n, dtype=dtype)
    pts["x"], pts["y"], pts["z"] = xyz[:, 0], xyz[:, 1], xyz[:, 2]
    pts["rgb"] = packed
    pts["instance"] = instance
    if source is not None:
        pts["source"] = source
    msg = PointCloud2()
    msg.header = header
    msg.height, msg.width = 1, n
    msg.fields = [PointField(name=name, offset=4 * i, datatype=PointField.FLOAT32, count=1)
                  for i, name in enumerate(dtype.names)]
    msg.is_bigendian = False
    msg.point_step = dtype.itemsize
    msg.row_step = dtype.itemsize * n
    msg.is_dense = bool(np.isfinite(xyz).all())
    msg.data = pts.tobytes()
    return msg


def cloud_to_numpy(msg: PointCloud2) -> dict:
    """Read x, y, z (+ rgb, instance, source when present) from any PointCloud2 layout.

    Returns ``dict(xyz (N, 3) float32, rgb (N, 3) uint8 or None, instance (N,) int64 or None, source (N,)
    int64 or None)``; raises ``ValueError`` for inconsistent sizes or missing x/y/z.
    """
    fields = {f.name: f for f in msg.fields}
    for name in ("x", "y", "z"):
        if name not in fields:
            raise ValueError(f"cloud has no '{name}' field (fields: {sorted(fields)})")
    h, w, ps, rs = int(msg.height), int(msg.width), int(msg.point_step), int(msg.row_step)
    n = h * w
    if n and (rs < w * ps or _data_len(msg.data) != rs * h):
        raise ValueError(f"cloud data has {_data_len(msg.data)} bytes, expected row_step*height = {rs * h}")
    bo = ">" if msg.is_bigendian else "<"
    names, formats, offsets = [], [], []
    for name in _CLOUD_FIELDS:
        f = fields.get(name)
        if f is None:
            continue
        if f.datatype not in _PF_DTYPES:
            raise ValueError(f"cloud field '{name}' has unknown datatype {f.datatype}")
        dt = np.dtype(bo + _PF_DTYPES[f.datatype])
        if name == "rgb" and dt.itemsize == 4:
            dt = np.dtype(bo + "u4")  # read the packed bits, whatever the declared type
        if f.offset + dt.itemsize > ps:
            raise ValueError(f"cloud field '{name}' at offset {f.offset} exceeds point_step {ps}")
        names.append(name)
        formats.append(dt)
        offsets.append(f.offset)
    dtype = np.dtype({"names": names, "formats": formats, "offsets": offsets, "itemsize": ps})
    if n == 0:
        pts = np.zeros(0, dtype=dtype)
    else:
        raw = np.frombuffer(msg.data, dtype=np.uint8).reshape(h, rs)[:, : w * ps]
        pts = np.ascontiguousarray(raw).view(dtype).reshape(-1)
    xyz = np.stack([pts["x"], pts["y"], pts["z"]], axis=1).astype(np.float32)
    rgb = None
    if "rgb" in names:
        u = pts["rgb"].astype(np.uint32)
        rgb = np.stack([(u >> 16) & 255, (u >> 8) & 255, u & 255], axis=1).astype(np.uint8)
    inst = pts["instance"].astype(np.int64) if "instance" in names else None
    source = pts["source"].astype(np.int64) if "source" in names else None
    return {"xyz": xyz, "rgb": rgb, "instance": inst, "source": source}
