"""dibr_ros.ros.conversions: image / CameraInfo / marker / cloud round trips and malformed input."""

import time

import numpy as np
import pytest

pytest.importorskip("rclpy")
from camera_payloads import compressed_depth_payload  # test/camera_payloads.py
from rclpy.serialization import deserialize_message, serialize_message
from sensor_msgs.msg import Image, PointCloud2, PointField
from std_msgs.msg import Header
from visualization_msgs.msg import Marker, MarkerArray

from dibr_ros.ros import conversions as cv

RNG = np.random.default_rng(0)


def _header(frame="cam_optical", sec=7, nanosec=123):
    h = Header(frame_id=frame)
    h.stamp.sec, h.stamp.nanosec = sec, nanosec
    return h


def _random_image(encoding, h=5, w=7):
    dtype, ch = cv.ENCODINGS[encoding]
    w += w % 2 if encoding.startswith("yuv422") else 0  # 4:2:2 stores pixel pairs
    shape = (h, w, ch) if ch > 1 else (h, w)
    if dtype.kind == "f":
        return RNG.normal(size=shape).astype(dtype)
    return RNG.integers(0, np.iinfo(dtype).max, size=shape, endpoint=True).astype(dtype)


def _manual_msg(arr, encoding, pad=0, big=False):
    """Independent encoder: rows of ``arr`` bytes in the requested byte order, ``pad`` junk bytes per row."""
    dtype, ch = cv.ENCODINGS[encoding]
    a = arr.astype(dtype.newbyteorder(">" if big else "<"))
    rows = a.reshape(a.shape[0], -1).view(np.uint8).reshape(a.shape[0], -1)
    junk = np.full((a.shape[0], pad), 0xAB, dtype=np.uint8)
    msg = Image(height=a.shape[0], width=a.shape[1], encoding=encoding, is_bigendian=int(big))
    msg.step = rows.shape[1] + pad
    msg.data = np.concatenate([rows, junk], axis=1).tobytes()
    return msg


@pytest.mark.parametrize("encoding", sorted(cv.ENCODINGS))
@pytest.mark.parametrize("pad", [0, 5])
@pytest.mark.parametrize("big", [False, True])
def test_image_decode_padding_and_byte_order(encoding, pad, big):
    arr = _random_image(encoding)
    out = cv.image_to_numpy(_manual_msg(arr, encoding, pad=pad, big=big))
    assert out.dtype == arr.dtype and out.dtype.isnative
    assert out.shape == arr.shape
    np.testing.assert_array_equal(out, arr)


@pytest.mark.parametrize("encoding", sorted(cv.ENCODINGS))
def test_image_encode_round_trip(encoding):
    arr = _random_image(encoding, h=4, w=9)
    h = _header()
    msg = cv.numpy_to_image(arr, encoding, header=h)
    assert msg.header == h and msg.encoding == encoding
    assert msg.step == arr.shape[1] * arr.itemsize * (arr.shape[2] if arr.ndim == 3 else 1)
    back = deserialize_message(serialize_message(msg), Image)  # through the wire format too
    np.testing.assert_array_equal(cv.image_to_numpy(back), arr)


def test_image_to_rgb_channel_orders():
    rgb = _random_image("rgb8")
    np.testing.assert_array_equal(cv.image_to_rgb(cv.numpy_to_image(rgb[:, :, ::-1], "bgr8")), rgb)
    rgba = np.concatenate([rgb, np.full(rgb.shape[:2] + (1,), 9, np.uint8)], axis=2)
    np.testing.assert_array_equal(cv.image_to_rgb(cv.numpy_to_image(rgba, "rgba8")), rgb)
    bgra = np.concatenate([rgb[:, :, ::-1], np.full(rgb.shape[:2] + (1,), 9, np.uint8)], axis=2)
    np.testing.assert_array_equal(cv.image_to_rgb(cv.numpy_to_image(bgra, "bgra8")), rgb)
    mono = rgb[:, :, 0]
    np.testing.assert_array_equal(cv.image_to_rgb(cv.numpy_to_image(mono, "mono8")), np.stack([mono] * 3, 2))
    with pytest.raises(ValueError, match="not accepted"):
        cv.image_to_rgb(cv.numpy_to_image(np.zeros((2, 2), np.float32), "32FC1"))


# Bayer cells as sensor_msgs defines them: the pattern names the 2x2 cell at the top-left pixel, row-major.
BAYER = {"bayer_rggb8": "RGGB", "bayer_bggr8": "BGGR", "bayer_gbrg8": "GBRG", "bayer_grbg8": "GRBG"}


@pytest.mark.parametrize("encoding", sorted(BAYER))
def test_image_to_rgb_demosaics_bayer(encoding):
    """A uniform colour mosaicked by the encoding's own definition comes back as that colour (a pattern
    mapped wrongly swaps red and blue or turns them into green)."""
    colour = {"R": 200, "G": 90, "B": 30}
    h, w = 12, 16
    mosaic = np.zeros((h, w), np.uint8)
    for k, ch in enumerate(BAYER[encoding]):
        mosaic[k // 2::2, k % 2::2] = colour[ch]
    out = cv.image_to_rgb(cv.numpy_to_image(mosaic, encoding))
    assert out.shape == (h, w, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out[2:-2, 2:-2], np.broadcast_to([200, 90, 30], (h - 4, w - 4, 3)))


def _bt601(rgb):
    """RGB (0-255) -> Y, U, V of ITU-R BT.601 with studio range (Y 16-235), the video cameras' convention."""
    r, g, b = (np.asarray(rgb, np.float64) / 255.0).T
    y = 16 + 65.481 * r + 128.553 * g + 24.966 * b
    u = 128 - 37.797 * r - 74.203 * g + 112.0 * b
    v = 128 + 112.0 * r - 93.786 * g - 18.214 * b
    return np.round(np.stack([y, u, v], -1)).astype(np.uint8)


@pytest.mark.parametrize("encoding", ["yuv422", "yuv422_yuy2"])
def test_image_to_rgb_converts_yuv422(encoding):
    """Pixel pairs of two colours (one shared U, V per pair, as 4:2:2 stores them) in the encoding's byte
    order come back within rounding; the two pixels of a pair differ in lightness, so a swapped byte order
    (UYVY read as YUYV) cannot pass."""
    dark, light = np.array([60, 70, 150]), np.array([90, 100, 180])  # similar hue, different lightness
    yuv = _bt601([dark, light]).astype(int)
    y0, y1 = yuv[:, 0]
    u, v = yuv[:, 1:].mean(0).round().astype(int)  # 4:2:2 keeps the pair's mean chroma
    h, w = 4, 8
    pair = [u, y0, v, y1] if encoding == "yuv422" else [y0, u, y1, v]
    data = np.tile(np.array(pair, np.uint8), (h, w // 2)).reshape(h, w, 2)
    out = cv.image_to_rgb(cv.numpy_to_image(data, encoding)).astype(int)
    assert out.shape == (h, w, 3)
    assert np.abs(out[:, 0::2] - dark).max() <= 6 and np.abs(out[:, 1::2] - light).max() <= 6


def test_image_to_rgb_16_bit_colour():
    rgb16 = np.random.default_rng(3).integers(0, 65536, (5, 6, 3), dtype=np.uint16)
    want = (rgb16 >> 8).astype(np.uint8)
    np.testing.assert_array_equal(cv.image_to_rgb(cv.numpy_to_image(rgb16, "rgb16")), want)
    np.testing.assert_array_equal(cv.image_to_rgb(cv.numpy_to_image(np.ascontiguousarray(rgb16[..., ::-1]),
                                                                    "bgr16")), want)
    bgra = np.concatenate([rgb16[..., ::-1], np.full((5, 6, 1), 7, np.uint16)], 2)
    np.testing.assert_array_equal(cv.image_to_rgb(cv.numpy_to_image(bgra, "bgra16")), want)


def _msg(encoding="rgb8", h=4, w=4, step=None, nbytes=None):
    dtype, ch = cv.ENCODINGS.get(encoding, (np.dtype(np.uint8), 3))
    step = w * ch * dtype.itemsize if step is None else step
    msg = Image(height=h, width=w, encoding=encoding, step=step)
    msg.data = bytes(step * h if nbytes is None else nbytes)
    return msg


@pytest.mark.parametrize("msg, reason", [
    (_msg("nv21"), "unsupported encoding 'nv21'"),
    (_msg("bayer_rggb16"), "unsupported encoding 'bayer_rggb16'"),
    (_msg("yuv422", w=5), "yuv422 needs an even width"),
    (_msg("rgb8", nbytes=47), "data has 47 bytes"),
    (_msg("rgb8", nbytes=49), "data has 49 bytes"),
    (_msg("rgb8", h=0), "zero-size"),
    (_msg("mono8", w=0), "zero-size"),
    (_msg("rgb8", step=11), "step 11 < width"),
    (_msg("rgb8", h=20000, w=20000, nbytes=100), "data has 100 bytes"),
    (_msg("32FC1", h=2**31, w=1000, step=4000, nbytes=16), "data has 16 bytes"),
    (_msg("32FC1", h=2**31, w=2**31 - 1, step=2**32 - 4, nbytes=16), "step 4294967292 < width"),
])
def test_image_malformed(msg, reason):
    t0 = time.perf_counter()
    with pytest.raises(ValueError, match=reason):
        cv.image_to_numpy(msg)
    assert time.perf_counter() - t0 < 5.0  # sanity bound: no allocation of the claimed size happened


def test_numpy_to_image_rejects_wrong_arrays():
    with pytest.raises(ValueError, match="needs shape"):
        cv.numpy_to_image(np.zeros((4, 4), np.uint8), "rgb8")
    with pytest.raises(TypeError, match="dtype"):
        cv.numpy_to_image(np.zeros((4, 4, 3), np.float32), "rgb8")
    with pytest.raises(ValueError, match="unsupported"):
        cv.numpy_to_image(np.zeros((4, 4), np.uint8), "nope")
    msg = cv.numpy_to_image(np.arange(6, dtype=np.uint8).reshape(2, 3), "16UC1")  # safe up-cast
    np.testing.assert_array_equal(cv.image_to_numpy(msg), np.arange(6).reshape(2, 3))


def test_camera_info_round_trip_and_validation():
    K = np.array([[525.0, 0, 319.5], [0, 530.0, 239.5], [0, 0, 1]])
    info = cv.make_camera_info(K, 640, 480, header=_header())
    assert (info.width, info.height) == (640, 480)
    np.testing.assert_array_equal(cv.camera_info_to_K(info), K)
    np.testing.assert_array_equal(np.reshape(info.p, (3, 4))[:, :3], K)
    info.k = [0.0] * 9
    with pytest.raises(ValueError, match="all zeros"):
        cv.camera_info_to_K(info)
    bad = K.copy()
    bad[0, 0] = np.nan
    info.k = bad.reshape(-1).tolist()
    with pytest.raises(ValueError, match="NaN"):
        cv.camera_info_to_K(info)
    bad = K.copy()
    bad[1, 1] = -1
    info.k = bad.reshape(-1).tolist()
    with pytest.raises(ValueError, match="focal"):
        cv.camera_info_to_K(info)


def _meshes(n=3):
    out = []
    for i in range(n):
        v = RNG.normal(size=(10 + i, 3))
        f = RNG.integers(0, len(v), size=(6 + 2 * i, 3))
        c = RNG.random((len(v), 3)).astype(np.float32)
        out.append((v, f, c))
    return out


def test_mesh_marker_array_layout():
    h = _header()
    meshes = _meshes()
    arr = cv.mesh_marker_array(h, meshes, ns="meshes", lifetime_s=1.5)
    assert len(arr.markers) == 1 + len(meshes)
    assert arr.markers[0].action == Marker.DELETEALL and arr.markers[0].ns == "meshes"
    for i, (m, (v, f, c)) in enumerate(zip(arr.markers[1:], meshes)):
        assert m.type == Marker.TRIANGLE_LIST and m.action == Marker.ADD
        assert m.header == h and m.ns == "meshes" and m.id == i
        assert len(m.points) == 3 * len(f) and len(m.points) % 3 == 0
        assert len(m.colors) == len(m.points)
        assert m.color.a == 1.0 and (m.scale.x, m.scale.y, m.scale.z) == (1.0, 1.0, 1.0)
        assert (m.pose.orientation.x, m.pose.orientation.y, m.pose.orientation.z, m.pose.orientation.w) == (
            0.0, 0.0, 0.0, 1.0)
        assert (m.lifetime.sec, m.lifetime.nanosec) == (1, 500_000_000)
        pts = np.array([[p.x, p.y, p.z] for p in m.points])
        np.testing.assert_array_equal(pts, v[f.reshape(-1)])
        cols = np.array([[q.r, q.g, q.b, q.a] for q in m.colors])
        np.testing.assert_allclose(cols[:, :3], c[f.reshape(-1)], atol=1e-7)
        assert np.all(cols[:, 3] == 1.0)


def test_mesh_marker_array_rejects_bad_meshes():
    v = np.zeros((4, 3))
    with pytest.raises(ValueError, match="index"):
        cv.mesh_marker_array(_header(), [(v, np.array([[0, 1, 4]]), np.zeros((4, 3)))])
    with pytest.raises(ValueError, match="colors"):
        cv.mesh_marker_array(_header(), [(v, np.array([[0, 1, 2]]), np.zeros((3, 3)))])


def test_cdr_marker_serializer_matches_rclpy():
    ser = cv.CdrMarkerSerializer()
    assert ser.verify()
    h = _header(sec=1_700_000_000, nanosec=999_999_999)
    for meshes in ([], _meshes(1), _meshes(4)):
        fast = cv.mesh_marker_array_cdr(h, meshes, ns="objs", lifetime_s=0.1)
        ref = cv.mesh_marker_array(h, meshes, ns="objs", lifetime_s=0.1)
        assert len(fast) == len(serialize_message(ref))
        assert deserialize_message(fast, MarkerArray) == ref


def test_points_to_cloud_layout_and_rgb_bits():
    xyz = RNG.normal(size=(6, 3)).astype(np.float32)
    rgb = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255], [1, 2, 3], [255, 255, 255], [0, 0, 0]], np.uint8)
    inst = np.array([0, 0, 1, 1, 2, 70000])
    h = _header()
    cloud = cv.points_to_cloud(h, xyz, rgb, inst)
    assert cloud.header == h and (cloud.height, cloud.width) == (1, 6)
    assert [(f.name, f.offset, f.datatype, f.count) for f in cloud.fields] == [
        ("x", 0, PointField.FLOAT32, 1), ("y", 4, PointField.FLOAT32, 1), ("z", 8, PointField.FLOAT32, 1),
        ("rgb", 12, PointField.FLOAT32, 1), ("instance", 16, PointField.FLOAT32, 1)]
    assert cloud.point_step == 20 and cloud.row_step == 120 and len(cloud.data) == 120 and cloud.is_dense
    raw = np.frombuffer(bytes(cloud.data), dtype=np.uint8).reshape(6, 20)
    packed = raw[:, 12:16].copy().view("<u4")[:, 0]
    expect = [0xFF0000, 0x00FF00, 0x0000FF, 0x010203, 0xFFFFFF, 0]
    assert packed.tolist() == expect
    np.testing.assert_array_equal(raw[:, 0:12].copy().view("<f4"), xyz)
    back = cv.cloud_to_numpy(deserialize_message(serialize_message(cloud), PointCloud2))
    np.testing.assert_array_equal(back["xyz"], xyz)
    np.testing.assert_array_equal(back["rgb"], rgb)
    np.testing.assert_array_equal(back["instance"], inst)


def test_points_to_cloud_with_sources():
    """The node's layout: a sixth FLOAT32 field ``source`` at offset 20, point_step 24; round trip."""
    xyz = RNG.normal(size=(5, 3)).astype(np.float32)
    rgb, inst, src = np.full((5, 3), 7, np.uint8), np.array([1, 1, 2, 2, 2]), np.array([0, 1, 2, 0, 2], np.uint8)
    cloud = cv.points_to_cloud(_header(), xyz, rgb, inst, src)
    assert [(f.name, f.offset) for f in cloud.fields][-2:] == [("instance", 16), ("source", 20)]
    assert cloud.point_step == 24 and len(cloud.data) == 120
    raw = np.frombuffer(bytes(cloud.data), dtype=np.uint8).reshape(5, 24)
    np.testing.assert_array_equal(raw[:, 20:24].copy().view("<f4")[:, 0], src.astype(np.float32))
    back = cv.cloud_to_numpy(deserialize_message(serialize_message(cloud), PointCloud2))
    np.testing.assert_array_equal(back["source"], src)
    np.testing.assert_array_equal(back["xyz"], xyz)
    np.testing.assert_array_equal(back["instance"], inst)
    assert cv.cloud_to_numpy(cv.points_to_cloud(_header(), xyz, rgb, inst))["source"] is None
    with pytest.raises(ValueError, match="source"):
        cv.points_to_cloud(_header(), xyz, rgb, inst, src[:4])


def test_points_to_cloud_float_colours_and_empty():
    c = cv.points_to_cloud(_header(), np.zeros((2, 3)), np.array([[1.0, 0.5, 0.0], [0.2, 0.2, 0.2]]), [3, 4])
    np.testing.assert_array_equal(cv.cloud_to_numpy(c)["rgb"], [[255, 128, 0], [51, 51, 51]])
    empty = cv.points_to_cloud(_header(), np.zeros((0, 3)), np.zeros((0, 3)), np.zeros(0, int))
    assert empty.width == 0 and len(empty.data) == 0 and len(empty.fields) == 5
    back = cv.cloud_to_numpy(empty)
    assert back["xyz"].shape == (0, 3) and back["rgb"].shape == (0, 3)
    with pytest.raises(ValueError, match="rgb"):
        cv.points_to_cloud(_header(), np.zeros((2, 3)), np.zeros((3, 3)), [0, 1])


def test_cloud_to_numpy_foreign_layouts():
    """The C++ PointCloud2Modifier layout (rgb at 16, point_step 32), big-endian, with row padding."""
    n = 4
    xyz = RNG.normal(size=(n, 3)).astype(np.float32)
    rgb_u32 = np.array([0x102030, 0xA0B0C0, 0, 0xFFFFFF], np.uint32)
    for big in (False, True):
        bo = ">" if big else "<"
        dt = np.dtype({"names": ["x", "y", "z", "rgb"], "formats": [bo + "f4"] * 3 + [bo + "u4"],
                       "offsets": [0, 4, 8, 16], "itemsize": 32})
        pts = np.zeros(n, dt)
        pts["x"], pts["y"], pts["z"], pts["rgb"] = xyz[:, 0], xyz[:, 1], xyz[:, 2], rgb_u32
        rows = np.concatenate([pts.view(np.uint8).reshape(2, 64), np.zeros((2, 8), np.uint8)], axis=1)
        msg = PointCloud2(height=2, width=2, point_step=32, row_step=72, is_bigendian=big)
        msg.fields = [PointField(name=k, offset=o, datatype=PointField.FLOAT32, count=1)
                      for k, o in zip("x y z rgb".split(), (0, 4, 8, 16))]
        msg.data = rows.tobytes()
        back = cv.cloud_to_numpy(msg)
        np.testing.assert_array_equal(back["xyz"], xyz)
        np.testing.assert_array_equal(back["rgb"][:, 0], (rgb_u32 >> 16) & 255)
        np.testing.assert_array_equal(back["rgb"][:, 2], rgb_u32 & 255)
        assert back["instance"] is None
    msg.data = bytes(10)
    with pytest.raises(ValueError, match="row_step"):
        cv.cloud_to_numpy(msg)


@pytest.mark.parametrize("bridge_ok", [True, False])
def test_image_decoding_uses_cv_bridge_only_when_it_round_trips(monkeypatch, bridge_ok):
    """A CvBridge (its API: ``CvBridge().imgmsg_to_cv2(msg, desired_encoding="passthrough")``) is used when
    it decodes the probe image right; a broken one (e.g. built against another NumPy: wrong rows here) is
    never used, and every image still decodes to the same pixels."""
    import sys
    import types

    calls = []

    class CvBridge:
        def imgmsg_to_cv2(self, msg, desired_encoding="passthrough"):
            assert desired_encoding == "passthrough"
            calls.append(msg.encoding)
            dtype, ch = cv.ENCODINGS[msg.encoding]
            rows = np.frombuffer(bytes(msg.data), np.uint8).reshape(msg.height, msg.step)
            out = rows[:, : msg.width * ch * dtype.itemsize].copy().view(dtype)
            out = out.reshape(msg.height, msg.width, ch) if ch > 1 else out.reshape(msg.height, msg.width)
            return out if bridge_ok else out[::-1]

    monkeypatch.setitem(sys.modules, "cv_bridge", types.SimpleNamespace(CvBridge=CvBridge))
    monkeypatch.setattr(cv, "_BRIDGE", None)
    monkeypatch.setattr(cv, "_BRIDGE_PROBED", False)
    for encoding in ("rgb8", "32FC1", "16UC1"):
        img = _random_image(encoding)
        back = cv.image_to_numpy(cv.numpy_to_image(img, encoding, _header()))
        assert back.dtype == img.dtype and np.array_equal(back, img)
    assert (cv._BRIDGE is not None) == bridge_ok
    # The probe runs once; a working bridge then decodes every image, a broken one none.
    assert calls == ["rgb8"] + (["rgb8", "32FC1", "16UC1"] if bridge_ok else [])


# ------------------------------------------------------------------------------ image_transport payloads

def _compressed(data: bytes, fmt: str):
    from sensor_msgs.msg import CompressedImage

    msg = CompressedImage(format=fmt)
    msg.data = data
    return msg


def test_compressed_image_png_exact_and_jpeg_close():
    """compressed_image_transport encodes the BGR image OpenCV is handed: PNG comes back exactly, in RGB."""
    import cv2

    rgb = np.zeros((24, 32, 3), np.uint8)
    rgb[:, :16] = (220, 40, 10)  # red left half, blue right half: a channel swap cannot pass
    rgb[:, 16:] = (10, 60, 230)
    png = cv2.imencode(".png", rgb[:, :, ::-1])[1].tobytes()
    np.testing.assert_array_equal(cv.compressed_to_rgb(_compressed(png, "rgb8; png compressed bgr8")), rgb)
    jpg = cv2.imencode(".jpg", rgb[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 95])[1].tobytes()
    out = cv.compressed_to_rgb(_compressed(jpg, "jpeg")).astype(int)
    assert out.shape == rgb.shape and np.abs(out[4:-4, 4:12] - rgb[4:-4, 4:12]).max() <= 12
    assert np.abs(out[4:-4, 20:28] - rgb[4:-4, 20:28]).max() <= 12
    mono = cv2.imencode(".png", rgb[:, :, 0])[1].tobytes()
    np.testing.assert_array_equal(cv.compressed_to_rgb(_compressed(mono, "mono8; png compressed mono8")),
                                  np.stack([rgb[:, :, 0]] * 3, -1))


def test_compressed_payload_size_read_before_decoding():
    """The size a PNG or JPEG declares is read from its header; a forged header claiming a huge image is
    refused before the decoder allocates it; a truncated PNG does not decode."""
    import cv2

    img = np.random.default_rng(1).integers(0, 255, (37, 53, 3), dtype=np.uint8)
    for ext in (".png", ".jpg"):
        assert cv.encoded_size(cv2.imencode(ext, img)[1].tobytes()) == (53, 37)
    png = cv2.imencode(".png", img)[1].tobytes()
    forged = png[:16] + (60000).to_bytes(4, "big") + (60000).to_bytes(4, "big") + png[24:]
    with pytest.raises(ValueError, match="declares 60000x60000"):
        cv.compressed_to_rgb(_compressed(forged, "png"))
    with pytest.raises(ValueError, match="does not decode"):
        cv.compressed_to_rgb(_compressed(png[:len(png) // 2], "png"))


@pytest.mark.parametrize("data, fmt, reason", [
    (b"", "jpeg", "no data"),
    (b"\xff\xd8\xff\xe0 not really a jpeg", "jpeg", "neither PNG nor JPEG"),
    (b"GIF89a" + bytes(40), "png", "neither PNG nor JPEG"),
    (b"\x00" * 64, "rgb8; theora", "not JPEG or PNG"),
])
def test_compressed_image_refused(data, fmt, reason):
    with pytest.raises(ValueError, match=reason):
        cv.compressed_to_rgb(_compressed(data, fmt))


def test_compressed_depth_16uc1_exact_and_32fc1_within_its_quantisation():
    rng = np.random.default_rng(5)
    depth = rng.uniform(0.3, 3.0, (20, 30)).astype(np.float32)
    depth[3:6, 4:9] = np.nan  # no return
    raw, enc = cv.compressed_depth_to_numpy(_compressed(compressed_depth_payload(depth, "16UC1"),
                                                        "16UC1; compressedDepth png"))
    assert enc == "16UC1" and raw.dtype == np.uint16
    np.testing.assert_array_equal(raw, np.round(np.nan_to_num(depth) * 1000).astype(np.uint16))
    legacy, _ = cv.compressed_depth_to_numpy(_compressed(compressed_depth_payload(depth, "16UC1"),
                                                         "16UC1; compressedDepth"))  # ROS 1: no codec named
    np.testing.assert_array_equal(legacy, raw)
    out, enc = cv.compressed_depth_to_numpy(_compressed(compressed_depth_payload(depth, "32FC1"),
                                                        "32FC1; compressedDepth png"))
    assert enc == "32FC1" and out.dtype == np.float32
    assert np.isnan(out[3:6, 4:9]).all()
    ok = np.isfinite(depth)
    # one quantisation step of a / z + b at z is z^2 / a: 0.9 mm at 3 m
    assert np.all(np.abs(out[ok] - depth[ok]) <= 0.5 * depth[ok] ** 2 / 10100 + 1e-5)


@pytest.mark.parametrize("payload, fmt, reason", [
    (b"\x00" * 12 + b"\x89PNG\r\n\x1a\n", "32FC1; compressedDepth rvl", "only png"),
    (b"\x89PNG\r\n\x1a\n" + b"\x00" * 30, "16UC1; compressedDepth png", "no ConfigHeader"),
    (b"\x00" * 40, "rgb8; compressedDepth png", "must be 16UC1 or 32FC1"),
    (b"\x00" * 12 + b"\x89PNG\r\n\x1a\n" + b"\x00" * 20, "16UC1; compressedDepth png", "neither PNG nor JPEG"),
])
def test_compressed_depth_refused(payload, fmt, reason):
    with pytest.raises(ValueError, match=reason):
        cv.compressed_depth_to_numpy(_compressed(payload, fmt))


def test_compressed_encoders_write_the_transports_formats():
    """The sim camera's encoders: compressedDepth byte-identical to the format's definition, JPEG in BGR
    order as compressed_image_transport writes it (decoded independently with OpenCV)."""
    import cv2

    h = _header()
    depth = np.random.default_rng(2).uniform(0.2, 4.0, (10, 14)).astype(np.float32)
    depth[2, 3] = np.nan
    msg = cv.depth_to_compressed_depth(depth, h)
    assert msg.header == h and msg.format == "16UC1; compressedDepth png"
    assert bytes(msg.data) == compressed_depth_payload(depth, "16UC1")
    rgb = np.zeros((16, 16, 3), np.uint8)
    rgb[..., 0] = 230  # red
    msg = cv.rgb_to_compressed(rgb, h, quality=95)
    assert msg.header == h and msg.format == "rgb8; jpeg compressed bgr8"
    bgr = cv2.imdecode(np.frombuffer(bytes(msg.data), np.uint8), cv2.IMREAD_COLOR)
    assert bgr[..., 2].min() > 200 and bgr[..., 0].max() < 30
