"""Rectification of distorted cameras: a synthetic distorted checkerboard comes back to its pinhole image."""

import os

import cv2
import numpy as np
import pytest

from dibr_ros.perception.rectify import Rectifier, RectifierCache, has_distortion

W, H = 640, 480
K = np.array([[520.0, 0.0, 322.0], [0.0, 515.0, 236.0], [0.0, 0.0, 1.0]])
BOARD = (9, 6)  # inner corners


def pinhole_board(square: int = 40) -> np.ndarray:
    """(H, W, 3) uint8 checkerboard of the pinhole camera K (white margin so every corner is inside)."""
    img = np.full((H, W), 255, np.uint8)
    cols, rows = BOARD[0] + 1, BOARD[1] + 1
    x0, y0 = (W - cols * square) // 2, (H - rows * square) // 2
    for r in range(rows):
        for c in range(cols):
            if (r + c) % 2 == 0:
                img[y0 + r * square:y0 + (r + 1) * square, x0 + c * square:x0 + (c + 1) * square] = 0
    img = cv2.GaussianBlur(img, (3, 3), 0.7)  # a lens' blur: corners refine to sub-pixel
    return np.repeat(img[..., None], 3, axis=2)


def distort(img: np.ndarray, D, model="plumb_bob") -> np.ndarray:
    """The image a camera with (K, D) takes of the pinhole image: each distorted pixel looks up the pinhole
    pixel it shows (OpenCV's undistortPoints, independent of the maps under test)."""
    v, u = np.mgrid[0:H, 0:W].astype(np.float64)
    pts = np.stack([u.ravel(), v.ravel()], 1)[:, None, :]
    if model == "equidistant":
        und = cv2.fisheye.undistortPoints(pts, K, np.asarray(D, np.float64), P=K)
    else:
        und = cv2.undistortPoints(pts, K, np.asarray(D, np.float64), P=K)
    mx = und[:, 0, 0].reshape(H, W).astype(np.float32)
    my = und[:, 0, 1].reshape(H, W).astype(np.float32)
    return cv2.remap(img, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=(255, 255, 255))


def corners(img: np.ndarray) -> np.ndarray:
    grey = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
    ok, c = cv2.findChessboardCorners(grey, BOARD)
    assert ok, "checkerboard not found"
    c = cv2.cornerSubPix(grey, c, (5, 5), (-1, -1), (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 50, 1e-3))
    return c.reshape(-1, 2)


@pytest.mark.parametrize("model,D", [
    ("plumb_bob", [-0.28, 0.09, 0.0008, -0.0006, 0.0]),
    ("rational_polynomial", [-0.25, 0.07, 0.0005, 0.0004, 0.0, 0.02, -0.01, 0.003]),
    ("equidistant", [0.05, -0.02, 0.004, -0.001]),
])
def test_distorted_checkerboard_rectifies_to_the_pinhole_image(model, D):
    ideal = pinhole_board()
    raw = distort(ideal, D, model)
    truth = corners(ideal)
    before = np.linalg.norm(corners(raw) - truth, axis=1)
    assert before.max() > 3.0  # the distortion moves corners by pixels: the check below can fail
    rect = Rectifier(K, D, model, (W, H))
    np.testing.assert_array_equal(rect.K_rect, K)
    after = np.linalg.norm(corners(rect.rgb(raw)) - truth, axis=1)
    assert np.sqrt(np.mean(after ** 2)) < 0.5 and after.max() < 0.5, (before.max(), after)


def test_depth_and_labels_take_the_nearest_pixel():
    rng = np.random.default_rng(0)
    depth = np.where(rng.random((H, W)) < 0.3, 0.0, rng.uniform(0.4, 2.0, (H, W))).astype(np.float32)
    labels = rng.integers(0, 5000, (H, W)).astype(np.int32)
    rect = Rectifier(K, [-0.3, 0.1, 0.001, 0.0, 0.0], "plumb_bob", (W, H))
    d2, l2 = rect.nearest(depth), rect.nearest(labels)
    assert d2.dtype == np.float32 and l2.dtype == np.int32
    # no value is invented: every output is an input value (or 0 from outside the image)
    assert np.isin(d2, np.append(np.unique(depth), 0.0)).all()
    assert np.isin(l2, np.append(np.unique(labels), 0)).all()
    # and it is the value at the pixel the colour map samples: compare with linear remap of a smooth ramp
    ramp = np.tile(np.arange(W, dtype=np.float32), (H, 1))
    assert np.abs(rect.nearest(ramp) - rect.rgb(ramp))[50:-50, 50:-50].max() <= 0.5 + 1e-4


def test_projection_matrix_gives_the_rectified_intrinsics():
    P = np.array([[480.0, 0, 320, 0], [0, 480.0, 240, 0], [0, 0, 1, 0]])
    rect = Rectifier(K, [-0.2, 0.05, 0, 0, 0], "plumb_bob", (W, H), P=P)
    np.testing.assert_array_equal(rect.K_rect, P[:, :3])
    # a P of zeros (not set by the driver) keeps K
    assert np.array_equal(Rectifier(K, [-0.2, 0, 0, 0, 0], "plumb_bob", (W, H), P=np.zeros(12)).K_rect, K)
    # the principal point maps to the principal point of K_rect
    img = np.zeros((H, W), np.float32)
    img[236, 322] = 1.0
    out = rect.nearest(img)
    y, x = np.argwhere(out == 1.0)[0]
    assert abs(x - 320) <= 1 and abs(y - 240) <= 1


def test_cache_builds_once_per_calibration_and_none_without_distortion():
    cache = RectifierCache()
    D = [-0.2, 0.05, 0.0, 0.0, 0.0]
    a = cache.get(K, D, "plumb_bob", (W, H))
    assert a is not None and cache.get(K, list(D), "plumb_bob", (W, H)) is a  # same calibration: reused
    b = cache.get(K, [-0.21, 0.05, 0.0, 0.0, 0.0], "plumb_bob", (W, H))
    assert b is not a and b.D[0] == -0.21  # changed D: rebuilt
    assert cache.get(K, [0.0] * 5, "plumb_bob", (W, H)) is None and cache.get(K, [], "", (W, H)) is None
    assert not has_distortion([]) and not has_distortion([0, 0, 0, 0, 0]) and has_distortion([0, 0, 0, 0, 1e-6])


def test_bad_calibrations_are_refused_with_a_reason():
    with pytest.raises(ValueError, match="not supported"):
        Rectifier(K, [0.1, 0, 0, 0, 0], "kannala_brandt_xyz", (W, H))
    with pytest.raises(ValueError, match="4 coefficients"):
        Rectifier(K, [0.1, 0, 0, 0, 0], "equidistant", (W, H))
    rect = Rectifier(K, [0.1, 0, 0, 0, 0], "plumb_bob", (W, H))
    with pytest.raises(ValueError, match="calibration is 640x480"):
        rect.rgb(np.zeros((240, 320, 3), np.uint8))


# ------------------------------------------------------------------------------------ the node's wiring

def _distort_frame(rgb, depth, Ks, D):
    """A distorted camera's rgb (linear) and depth (nearest) of the pinhole frame (independent maps)."""
    h, w = depth.shape
    v, u = np.mgrid[0:h, 0:w].astype(np.float64)
    und = cv2.undistortPoints(np.stack([u.ravel(), v.ravel()], 1)[:, None, :], Ks, np.asarray(D), P=Ks)
    mx = und[:, 0, 0].reshape(h, w).astype(np.float32)
    my = und[:, 0, 1].reshape(h, w).astype(np.float32)
    return (cv2.remap(rgb, mx, my, cv2.INTER_LINEAR),
            cv2.remap(depth.astype(np.float32), np.rint(mx), np.rint(my), cv2.INTER_NEAREST))


def test_node_rectifies_distorted_frames_or_says_once_that_it_does_not(tmp_path):
    rclpy = pytest.importorskip("rclpy")
    from rclpy.parameter import Parameter

    from dibr_ros.model.checkpoint import save_checkpoint
    from dibr_ros.model.predictor import Predictor
    from dibr_ros.perception.synthetic import tabletop_scene
    from dibr_ros.ros import conversions as conv
    from dibr_ros.ros.perception_node import PerceptionNode

    frame, objects, Ks, _ = tabletop_scene(n_objects=2, seed=4, width=320, height=240)
    D = [-0.3, 0.1, 0.0, 0.0, 0.0]
    rgb_d, depth_d = _distort_frame(frame["rgb"], np.nan_to_num(frame["depth"], nan=0.0, posinf=0.0), Ks, D)
    info = conv.make_camera_info(Ks, 320, 240)
    info.d = list(D)
    img = conv.numpy_to_image(rgb_d, "rgb8", info.header)
    dmsg = conv.numpy_to_image(depth_d, "32FC1", info.header)

    pred = Predictor.from_config(seed=0)
    weights = str(tmp_path / "random.pt")
    save_checkpoint(weights, pred.network, pred.network.config, {"note": "random init for tests"})
    ctx = rclpy.Context()
    rclpy.init(context=ctx, domain_id=1 + (os.getpid() * 41 + 7) % 100)
    nodes = []
    try:
        for mode in ("auto", "off"):
            nodes.append(PerceptionNode(context=ctx, parameter_overrides=[
                Parameter("device", value="cpu"), Parameter("weights", value=weights),
                Parameter("rectify", value=mode)]))
        auto, off = nodes
        for n in nodes:
            n._on_info(info)
        rgb, K, depth, _ = auto._decode({"image": img, "depth": dmsg})
        # rectified: the pinhole frame back (away from the border the distortion pulls in)
        inner = (slice(30, -30), slice(40, -40))
        assert np.abs(rgb.astype(int) - frame["rgb"].astype(int))[inner].mean() < 6.0
        truth = np.nan_to_num(frame["depth"], nan=0.0, posinf=0.0)[inner]
        both = (depth[inner] > 0) & (truth > 0)
        assert both.mean() > 0.9 and np.median(np.abs(depth[inner] - truth)[both]) < 1e-6
        raw = (depth_d[inner] > 0) & (truth > 0)  # (the distorted depth was not: the check can fail)
        assert np.median(np.abs(depth_d[inner] - truth)[raw]) > 1e-3
        np.testing.assert_array_equal(K, Ks)
        said = []
        off._log = type("L", (), {"warning": lambda self, t: said.append(t), "error": print, "info": print})()
        for _ in range(3):
            rgb2, K2, depth2, _ = off._decode({"image": img, "depth": dmsg})
        assert np.array_equal(rgb2, rgb_d) and np.array_equal(depth2, depth_d)
        assert len(said) == 1 and "plumb_bob distortion" in said[0] and "rectify: off" in said[0]
        # an unknown model is a clear per-frame error, not a crash
        info_bad = conv.make_camera_info(Ks, 320, 240)
        info_bad.d, info_bad.distortion_model = list(D), "weird_model"
        auto._on_info(info_bad)
        with pytest.raises(Exception, match="not supported"):
            auto._decode({"image": img, "depth": dmsg})
    finally:
        for n in nodes:
            n.close()
            n.destroy_node()
        rclpy.shutdown(context=ctx)
