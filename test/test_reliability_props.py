"""Property tests of dibr_ros.ros.conversions over arbitrary (and arbitrarily malformed) messages.

Oracles are independent of the implementation: an image is valid iff its encoding is known, it is non-empty,
``step`` holds a row and ``data`` holds exactly ``step * height`` bytes; then it decodes to what a byte-level
reference decoder gives, otherwise ``ValueError`` and nothing else. Outputs never exceed their input's size.
"""

import tracemalloc

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

pytest.importorskip("rclpy")
from sensor_msgs.msg import CameraInfo, Image, PointCloud2, PointField
from std_msgs.msg import Header

from dibr_ros.ros import conversions as cv

SETTINGS = settings(max_examples=150, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
COLOUR = cv.COLOR_ENCODINGS
CONVERTED = ("yuv422", "yuv422_yuy2", "bayer_rggb8", "bayer_bggr8", "bayer_gbrg8", "bayer_grbg8")  # OpenCV
U32 = 2**32 - 1
# Sizes: mostly small, sometimes absurd (a 20000x20000 header, the uint32 maximum).
SIZES = st.one_of(st.integers(0, 6), st.sampled_from([20000, 2**31, U32]), st.integers(0, U32))
ENC = st.one_of(st.sampled_from(sorted(cv.ENCODINGS)), st.sampled_from(["", "RGB8", "bayer_rggb16", "32FC3",
                                                                         "nv21", "16SC1", "64FC1"]),
                st.text(max_size=8))


def _reference_decode(data: bytes, h, w, step, encoding, big):
    """Byte-level decoder written from the sensor_msgs/Image definition (row r starts at r * step)."""
    dtype, ch = cv.ENCODINGS[encoding]
    row = w * ch * dtype.itemsize
    rows = [data[r * step: r * step + row] for r in range(h)]
    flat = np.frombuffer(b"".join(rows), dtype=dtype.newbyteorder(">" if big and dtype.itemsize > 1 else "<"))
    return flat.astype(dtype).reshape((h, w, ch) if ch > 1 else (h, w))


def _valid(h, w, step, encoding, n):
    if encoding not in cv.ENCODINGS or h == 0 or w == 0 or (encoding.startswith("yuv422") and w % 2):
        return False
    dtype, ch = cv.ENCODINGS[encoding]
    return step >= w * ch * dtype.itemsize and n == step * h


@st.composite
def image_messages(draw):
    """Arbitrary Image headers; data either consistent with a small header or of an arbitrary small length."""
    encoding = draw(ENC)
    h, w = draw(SIZES), draw(SIZES)
    dtype, ch = cv.ENCODINGS.get(encoding, (np.dtype(np.uint8), 1))
    row = w * ch * dtype.itemsize
    step = draw(st.one_of(st.just(row), st.integers(row, row + 7), st.integers(0, U32))) if row <= U32 \
        else draw(st.integers(0, U32))
    size = step * h
    n = draw(st.one_of(st.just(size), st.integers(max(0, size - 3), size + 3), st.integers(0, 64))) \
        if size <= 4096 else draw(st.integers(0, 64))
    data = draw(st.binary(min_size=n, max_size=n))
    big = draw(st.integers(0, 255))
    msg = Image(height=h, width=w, step=step, encoding=encoding, is_bigendian=big)
    msg.data = data
    return msg


def _decode_bounded(fn, msg):
    """fn(msg) with the peak traced allocation (bytes); numpy reports its buffers to tracemalloc."""
    tracemalloc.start()
    try:
        out = fn(msg)
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return out, peak


@SETTINGS
@given(msg=image_messages())
def test_image_to_numpy_arbitrary_messages(msg):
    h, w, step, enc, data = msg.height, msg.width, msg.step, msg.encoding, bytes(msg.data)
    if not _valid(h, w, step, enc, len(data)):
        with pytest.raises(ValueError):
            _decode_bounded(cv.image_to_numpy, msg)
        return
    out, peak = _decode_bounded(cv.image_to_numpy, msg)
    ref = _reference_decode(data, h, w, step, enc, bool(msg.is_bigendian))
    assert out.shape == ref.shape and out.dtype == ref.dtype and out.dtype.isnative
    # Native, contiguous, writeable and detached from the message buffer (which rclpy may reuse).
    assert out.flags.c_contiguous and out.flags.writeable
    assert not np.shares_memory(out, np.frombuffer(msg.data, np.uint8))
    np.testing.assert_array_equal(out, ref)
    assert peak <= 4 * len(data) + 65536


@SETTINGS
@given(msg=image_messages())
def test_image_to_rgb_arbitrary_messages(msg):
    h, w, step, enc, data = msg.height, msg.width, msg.step, msg.encoding, bytes(msg.data)
    if enc not in COLOUR or not _valid(h, w, step, enc, len(data)):
        with pytest.raises(ValueError):
            _decode_bounded(cv.image_to_rgb, msg)
        return
    out, peak = _decode_bounded(cv.image_to_rgb, msg)
    if enc in CONVERTED:  # their colours are tested against their definitions in test_conversions
        assert out.shape == (h, w, 3) and out.dtype == np.uint8
        assert peak <= 8 * len(data) + 65536
        return
    ref = _reference_decode(data, h, w, step, enc, bool(msg.is_bigendian))
    if ref.dtype == np.uint16:
        ref = (ref >> 8).astype(np.uint8)
    if ref.ndim == 2:
        ref = np.stack([ref] * 3, axis=-1)
    elif enc.startswith("bgr"):
        ref = ref[:, :, [2, 1, 0]]
    else:
        ref = ref[:, :, :3]
    assert out.shape == (h, w, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out, ref)
    assert peak <= 8 * len(data) + 65536


def test_huge_header_with_tiny_data_allocates_nothing_big():
    for h, w in ((20000, 20000), (U32, U32), (U32, 1), (1, U32)):
        for enc in ("rgb8", "32FC1", "mono16"):
            msg = Image(height=h, width=w, encoding=enc, step=min(U32, w * cv.ENCODINGS[enc][0].itemsize
                                                                  * cv.ENCODINGS[enc][1]))
            msg.data = b"\x01" * 16
            with pytest.raises(ValueError, match="bytes|step"):
                _decode_bounded(cv.image_to_numpy, msg)
            assert tracemalloc.get_traced_memory() == (0, 0)  # stopped even on the error path


@st.composite
def arrays_for_encoding(draw):
    encoding = draw(st.sampled_from(sorted(cv.ENCODINGS)))
    dtype, ch = cv.ENCODINGS[encoding]
    w = draw(st.integers(1, 3)) * 2 if encoding.startswith("yuv422") else draw(st.integers(1, 6))  # pairs
    shape = (draw(st.integers(1, 6)), w) + ((ch,) if ch > 1 else ())
    arr = draw(hnp.arrays(dtype, shape))
    return encoding, arr


@SETTINGS
@given(case=arrays_for_encoding(), pad=st.integers(0, 9), big=st.booleans())
def test_image_round_trips(case, pad, big):
    encoding, arr = case
    msg = cv.numpy_to_image(arr, encoding)
    assert (msg.height, msg.width, msg.encoding) == (arr.shape[0], arr.shape[1], encoding)
    assert len(msg.data) == msg.step * msg.height == arr.nbytes
    back = cv.image_to_numpy(msg)
    assert back.shape == arr.shape and back.dtype == arr.dtype
    np.testing.assert_array_equal(back, arr)  # NaN == NaN here, so 32FC1 payloads round trip too
    # The same pixels re-packed with row padding and the other byte order decode identically.
    a = arr.astype(arr.dtype.newbyteorder(">" if big else "<"))
    rows = a.reshape(a.shape[0], -1).view(np.uint8).reshape(a.shape[0], -1)
    padded = Image(height=arr.shape[0], width=arr.shape[1], encoding=encoding, is_bigendian=int(big),
                   step=rows.shape[1] + pad)
    padded.data = np.concatenate([rows, np.full((len(rows), pad), 0xEE, np.uint8)], axis=1).tobytes()
    np.testing.assert_array_equal(cv.image_to_numpy(padded), arr)


@SETTINGS
@given(arr=hnp.arrays(hnp.scalar_dtypes(), hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=5)),
       encoding=ENC)
def test_numpy_to_image_arbitrary_arrays(arr, encoding):
    try:
        msg = cv.numpy_to_image(arr, encoding)
    except (ValueError, TypeError):
        return
    dtype, ch = cv.ENCODINGS[encoding]
    assert msg.height == arr.shape[0] and msg.width == arr.shape[1] and arr.shape[0] * arr.shape[1] > 0
    assert arr.size == msg.height * msg.width * ch
    np.testing.assert_array_equal(cv.image_to_numpy(msg).reshape(arr.shape), arr.astype(dtype))


# ------------------------------------------------------------------------------------------------ clouds

F32 = st.floats(width=32, allow_nan=True, allow_infinity=True)


@st.composite
def clouds(draw):
    n = draw(st.integers(0, 40))
    xyz = draw(hnp.arrays(np.float32, (n, 3), elements=F32))
    if draw(st.booleans()):
        rgb = draw(hnp.arrays(np.uint8, (n, 3)))
    else:
        rgb = draw(hnp.arrays(draw(st.sampled_from([np.float32, np.float64])), (n, 3),
                              elements=st.one_of(st.floats(0, 1), st.floats(width=32))))
    instance = draw(hnp.arrays(draw(st.sampled_from([np.int32, np.int64])), (n,),
                               elements=st.integers(-(2**24), 2**24)))
    return xyz, rgb, instance


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")  # huge float colours, clipped
@SETTINGS
@given(case=clouds())
def test_cloud_round_trip(case):
    xyz, rgb, instance = case
    header = Header(frame_id="cam")
    msg = cv.points_to_cloud(header, xyz, rgb, instance)
    assert msg.width * msg.height == len(xyz) and len(msg.data) == msg.row_step * msg.height
    assert msg.is_dense == bool(np.isfinite(xyz).all())
    out = cv.cloud_to_numpy(msg)
    assert out["xyz"].shape == (len(xyz), 3) and out["rgb"].shape == (len(xyz), 3)
    assert out["instance"].shape == (len(xyz),)
    np.testing.assert_array_equal(out["xyz"], xyz)
    np.testing.assert_array_equal(out["instance"], instance)
    if rgb.dtype == np.uint8:
        np.testing.assert_array_equal(out["rgb"], rgb)
    else:
        got = out["rgb"].astype(np.float64)
        with np.errstate(invalid="ignore", over="ignore"):
            inside = np.isfinite(rgb) & (rgb >= 0) & (rgb <= 1)
            assert np.all(np.abs(got - rgb.astype(np.float64) * 255)[inside] <= 0.5 + 1e-9)
            assert np.all(got[rgb > 1] == 255) and np.all(got[rgb < 0] == 0)


@SETTINGS
@given(n=st.integers(0, 5), xyz_shape=hnp.array_shapes(min_dims=1, max_dims=3, max_side=6),
       rgb_shape=hnp.array_shapes(min_dims=1, max_dims=3, max_side=6),
       inst_shape=hnp.array_shapes(min_dims=0, max_dims=2, max_side=6))
def test_points_to_cloud_shape_mismatch_is_value_error(n, xyz_shape, rgb_shape, inst_shape):
    xyz, rgb, inst = np.zeros(xyz_shape, np.float32), np.zeros(rgb_shape, np.uint8), np.zeros(inst_shape, np.int64)
    consistent = len(xyz_shape) == 2 and xyz_shape[1] == 3 and rgb_shape == (xyz_shape[0], 3) \
        and inst_shape == (xyz_shape[0],)
    if consistent:
        assert len(cv.cloud_to_numpy(cv.points_to_cloud(Header(), xyz, rgb, inst))["xyz"]) == xyz_shape[0]
    else:
        with pytest.raises(ValueError):
            cv.points_to_cloud(Header(), xyz, rgb, inst)


@SETTINGS
@given(rgb=hnp.arrays(hnp.scalar_dtypes(), (3, 3)))
def test_points_to_cloud_colour_dtypes(rgb):
    """uint8 and float colours are packed; any other dtype (int 0..255 would read as 255) is a TypeError."""
    xyz, inst = np.zeros((3, 3), np.float32), np.arange(3)
    if rgb.dtype == np.uint8 or rgb.dtype.kind == "f":
        with np.errstate(all="ignore"):
            assert cv.cloud_to_numpy(cv.points_to_cloud(Header(), xyz, rgb, inst))["rgb"].shape == (3, 3)
    else:
        with pytest.raises(TypeError, match="rgb must be uint8 or float"):
            cv.points_to_cloud(Header(), xyz, rgb, inst)


@st.composite
def foreign_clouds(draw):
    names = draw(st.lists(st.sampled_from(["x", "y", "z", "rgb", "instance", "intensity"]), max_size=6))
    fields = [PointField(name=nm, offset=draw(st.integers(0, 40)), datatype=draw(st.integers(0, 10)),
                         count=draw(st.integers(0, 3))) for nm in names]
    h, w = draw(SIZES), draw(SIZES)
    ps, rs = draw(st.integers(0, 48)), draw(st.one_of(st.integers(0, 200), st.integers(0, U32)))
    size = rs * h
    n = draw(st.one_of(st.just(size), st.integers(0, 64))) if size <= 4096 else draw(st.integers(0, 64))
    msg = PointCloud2(height=h, width=w, point_step=ps, row_step=rs, fields=fields,
                      is_bigendian=draw(st.booleans()), is_dense=draw(st.booleans()))
    msg.data = draw(st.binary(min_size=n, max_size=n))
    return msg


@SETTINGS
@given(msg=foreign_clouds())
def test_cloud_to_numpy_arbitrary_clouds(msg):
    try:
        out = cv.cloud_to_numpy(msg)
    except ValueError:
        return
    n = msg.height * msg.width
    names = {f.name for f in msg.fields}
    assert {"x", "y", "z"} <= names
    assert n == 0 or len(msg.data) == msg.row_step * msg.height
    assert out["xyz"].shape == (n, 3) and out["xyz"].dtype == np.float32
    assert (out["rgb"] is None) == ("rgb" not in names)
    assert out["rgb"] is None or (out["rgb"].shape == (n, 3) and out["rgb"].dtype == np.uint8)
    assert (out["instance"] is None) == ("instance" not in names)
    assert out["instance"] is None or out["instance"].shape == (n,)


# ------------------------------------------------------------------------------------------- camera info

SPECIAL = st.sampled_from([0.0, -0.0, 1.0, -1.0, 525.0, 320.0, 1e-300, 1e300, np.nan, np.inf, -np.inf])


@SETTINGS
@given(k=st.lists(st.one_of(SPECIAL, st.floats(allow_nan=True, allow_infinity=True)), min_size=9, max_size=9),
       pinhole=st.booleans())
def test_camera_info_to_K_arbitrary(k, pinhole):
    if pinhole:  # half the cases keep the pinhole structure so the focal-length checks get exercised
        k[3], k[6], k[7], k[8] = 0.0, 0.0, 0.0, 1.0
    msg = CameraInfo()
    msg.k = k
    K_in = np.asarray(k, np.float64).reshape(3, 3)
    bad = (not np.isfinite(K_in).all() or K_in[0, 0] <= 0 or K_in[1, 1] <= 0 or K_in[1, 0] != 0
           or np.abs(K_in[2] - (0, 0, 1)).max() > 1e-3)
    try:
        K = cv.camera_info_to_K(msg)
    except ValueError as exc:
        assert str(exc) and "\n" not in str(exc)
        return
    assert not bad, f"accepted {K_in.tolist()}"
    assert K.shape == (3, 3) and K.dtype == np.float64
    np.testing.assert_array_equal(K, K_in)


def test_camera_info_to_K_rejects_the_classic_failures():
    for k in ([0.0] * 9, [np.nan] * 9, [525, 0, 320, 0, 525, 240, 0, 0, 0], [-525, 0, 320, 0, 525, 240, 0, 0, 1],
              [525, 0, 320, 0, 0, 240, 0, 0, 1], [525, 0, np.inf, 0, 525, 240, 0, 0, 1]):
        msg = CameraInfo()
        msg.k = [float(v) for v in k]
        with pytest.raises(ValueError, match="camera_info K"):
            cv.camera_info_to_K(msg)


# -------------------------------------------------------------------------------- compressed payloads

PNG_MAGIC, JPEG_MAGIC = b"\x89PNG\r\n\x1a\n", b"\xff\xd8"


@SETTINGS
@given(prefix=st.sampled_from([b"", PNG_MAGIC, PNG_MAGIC + b"\x00\x00\x00\x0dIHDR", JPEG_MAGIC,
                               JPEG_MAGIC + b"\xff\xc0\x00\x11\x08"]),
       body=st.binary(max_size=200), fmt=st.sampled_from(["jpeg", "png", "rgb8; jpeg compressed bgr8", "", "x"]),
       depth_fmt=st.sampled_from(["16UC1; compressedDepth png", "32FC1; compressedDepth png", "32FC1; rvl"]))
def test_compressed_arbitrary_payloads(prefix, body, fmt, depth_fmt):
    """Whatever bytes arrive on a compressed topic: an RGB image, a depth image or a ValueError, and no
    large allocation from a forged header."""
    from sensor_msgs.msg import CompressedImage

    msg = CompressedImage(format=fmt)
    msg.data = prefix + body
    try:
        out, peak = _decode_bounded(cv.compressed_to_rgb, msg)
    except ValueError:
        pass
    else:
        assert out.ndim == 3 and out.shape[2] == 3 and out.dtype == np.uint8
        assert peak <= 64 * out.size + 2**20
    dmsg = CompressedImage(format=depth_fmt)
    dmsg.data = bytes(12) + prefix + body
    try:
        d, enc = cv.compressed_depth_to_numpy(dmsg)
    except ValueError:
        return
    assert d.ndim == 2 and enc in ("16UC1", "32FC1")
