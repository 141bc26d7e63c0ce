"""Simulated tabletop camera: reproducibility, metric depth, intrinsics, ground truth; the ROS node."""

import math
import os
import subprocess
import sys
import time

import numpy as np
import pytest

from dibr_ros.perception.geometry import backproject
from dibr_ros.sim.scene import (
    TABLE_TOP_Z,
    CameraConfig,
    SceneConfig,
    TabletopScene,
    depth_buffer_to_metres,
    gl_matrix,
    projection_to_K,
    transform,
)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMALL = dict(width=160, height=120)


def _scene(objects, seed=0, n=(1, 1), **cam):
    return TabletopScene(SceneConfig(objects=objects, min_objects=n[0], max_objects=n[1], seed=seed,
                                     renderer="tiny"), CameraConfig(**{**SMALL, **cam}))


def test_reproducible_from_seed():
    objs = [f"random_urdfs/{i}/{i}.urdf" for i in (900, 905, 910, 915)]
    frames = []
    for seed in (3, 3, 4):
        with _scene(objs, seed=seed, n=(2, 3)) as s:
            frames.append(s.render())
    a, b, c = frames
    assert np.array_equal(a.rgb, b.rgb) and np.array_equal(a.labels, b.labels)
    np.testing.assert_array_equal(a.depth, b.depth)
    assert [o.name for o in a.objects] == [o.name for o in b.objects]
    for oa, ob in zip(a.objects, b.objects):
        np.testing.assert_array_equal(oa.vertices, ob.vertices)
    assert not np.array_equal(a.rgb, c.rgb)


@pytest.mark.parametrize("renderer", ["tiny", "egl"])
def test_depth_backprojects_onto_table_plane(renderer):
    cam = CameraConfig(width=200, height=150, distance=0.6, elevation_deg=40.0, azimuth_deg=30.0, fov_deg=50.0)
    scene = SceneConfig(objects=["random_urdfs/900/900.urdf"], min_objects=1, max_objects=1, renderer=renderer)
    try:
        s = TabletopScene(scene, cam)
    except RuntimeError as e:
        pytest.skip(f"renderer {renderer} unavailable: {e}")
    with s:
        f = s.render()
    T_wc = np.linalg.inv(f.T_cam_world)
    # Table pixels spread over the image: background label, depth closer than the floor (z > 0.6 m up).
    table = (f.labels == 0) & np.isfinite(f.depth)
    pts_w = transform(T_wc, backproject(f.depth, f.K, table)[0])
    on_table = pts_w[pts_w[:, 2] > 0.3]
    assert len(on_table) > 0.3 * table.sum()
    # A half-pixel error in the principal point tilts this plane by ~1-3 mm over the image.
    np.testing.assert_allclose(on_table[:, 2], TABLE_TOP_Z, atol=5e-4)
    # The spread of x/y covers most of the image, so fx/fy/cx/cy errors would tilt the plane.
    assert np.ptp(on_table[:, 0]) > 0.2 and np.ptp(on_table[:, 1]) > 0.2


def test_depth_buffer_inverts_opengl_projection():
    near, far = 0.05, 5.0
    P = gl_matrix(__import__("pybullet").computeProjectionMatrixFOV(45.0, 4 / 3, near, far))
    z = np.array([0.06, 0.3, 1.0, 2.5, 4.9])
    clip = P @ np.stack([np.zeros_like(z), np.zeros_like(z), -z, np.ones_like(z)])
    zbuf = (clip[2] / clip[3] + 1.0) / 2.0
    np.testing.assert_allclose(depth_buffer_to_metres(zbuf, near, far), z, rtol=1e-5)
    assert np.isnan(depth_buffer_to_metres(np.array([1.0]), near, far)).all()


def test_K_matches_the_opengl_projection():
    import pybullet

    W, H, near, far = 160, 100, 0.05, 5.0
    P = gl_matrix(pybullet.computeProjectionMatrixFOV(60.0, W / H, near, far))
    K = projection_to_K(P, W, H)
    # Square-pixel pinhole with this vertical fov, principal point at the centre of the pixel grid.
    fy = (H / 2) / math.tan(math.radians(60.0) / 2)
    np.testing.assert_allclose(K, [[fy, 0, (W - 1) / 2], [0, fy, (H - 1) / 2], [0, 0, 1]], rtol=1e-6)
    # The OpenGL pipeline (optical -> GL camera, P, NDC -> integer pixel centres) agrees with K.
    rng = np.random.default_rng(0)
    pts_c = np.c_[rng.uniform(-0.2, 0.2, (50, 2)), rng.uniform(0.3, 2.0, 50)]
    clip = (P @ np.diag([1.0, -1.0, -1.0, 1.0]) @ np.c_[pts_c, np.ones(50)].T).T
    ndc = clip[:, :2] / clip[:, 3:]
    uv_gl = np.c_[(ndc[:, 0] * W + W - 1) / 2, (H - 1 - ndc[:, 1] * H) / 2]
    uv_k = pts_c @ K.T
    np.testing.assert_allclose(uv_k[:, :2] / uv_k[:, 2:], uv_gl, atol=1e-6)
    with pytest.raises(ValueError):
        projection_to_K(np.eye(4), W, H)


@pytest.mark.parametrize("urdf", ["duck_vhacd.urdf", "random_urdfs/907/907.urdf", "teddy_vhacd.urdf"])
def test_ground_truth_projects_into_its_segmentation(urdf):
    # duck and teddy have an inertial origin away from the link frame: a pose bug shows here.
    import cv2

    with _scene([urdf], width=320, height=240, distance=0.45) as s:
        f = s.render()
    (obj,) = f.objects
    assert obj.visible_pixels > 300
    mask = cv2.dilate((f.labels == obj.label).astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
    uv = obj.vertices @ f.K.T
    uv = np.round(uv[:, :2] / uv[:, 2:]).astype(int)
    inside = (uv[:, 0] >= 0) & (uv[:, 0] < 320) & (uv[:, 1] >= 0) & (uv[:, 1] < 240)
    assert inside.all()
    assert mask[uv[:, 1], uv[:, 0]].mean() > 0.95
    # The visible surface is the front of the true mesh: observed depth within a few mm of it.
    depth_pts = backproject(f.depth, f.K, f.labels == obj.label)[0]
    from scipy.spatial import cKDTree

    d, _ = cKDTree(obj.vertices).query(depth_pts)
    assert np.median(d) < 0.01


def test_bad_configuration_is_refused():
    with pytest.raises(ValueError, match="min_objects"):
        SceneConfig(min_objects=3, max_objects=2).validate()
    with pytest.raises(ValueError, match="near"):
        CameraConfig(near=1.0, far=0.5).validate()
    with pytest.raises(ValueError, match="not found"):
        _scene(["no/such/object.urdf"])


def test_node_publishes_consistent_headers(ros_env):
    """Two processes: sim_camera publishes; this side subscribes RELIABLE and checks every topic, the
    image_transport compressed ones too (compressed:=true)."""
    import rclpy
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import CameraInfo, CompressedImage, Image
    from visualization_msgs.msg import Marker, MarkerArray

    from dibr_ros.ros.conversions import (
        camera_info_to_K,
        compressed_depth_to_numpy,
        compressed_to_rgb,
        image_to_numpy,
    )

    cmd = [sys.executable, "-m", "dibr_ros.ros.sim_camera", "--ros-args", "-p", "rate:=4.0",
           "-p", "objects:=random_urdfs/900/900.urdf", "-p", "max_objects:=1", "-p", "renderer:=tiny",
           "-p", "width:=160", "-p", "height:=120", "-p", "frame_id:=sim_optical", "-p", "compressed:=true"]
    proc = subprocess.Popen(cmd, env=ros_env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    ctx = rclpy.Context()
    rclpy.init(context=ctx)
    node = rclpy.create_node("sim_camera_test", context=ctx)
    got: dict[str, dict] = {}

    def keep(topic):
        def cb(msg):
            h = msg.markers[0].header if isinstance(msg, MarkerArray) else msg.header
            got.setdefault(topic, {}).setdefault((h.stamp.sec, h.stamp.nanosec), msg)
        return cb

    qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
    subs = [node.create_subscription(Image, "image", keep("image"), qos),
            node.create_subscription(Image, "depth", keep("depth"), qos),
            node.create_subscription(Image, "instance_mask", keep("mask"), qos),
            node.create_subscription(CameraInfo, "camera_info", keep("info"), qos),
            node.create_subscription(MarkerArray, "/sim_camera/ground_truth", keep("gt"), QoSProfile(depth=10)),
            node.create_subscription(CompressedImage, "image/compressed", keep("jpeg"), qos),
            node.create_subscription(CompressedImage, "depth/compressedDepth", keep("png"), qos)]
    try:
        from rclpy.executors import SingleThreadedExecutor

        ex = SingleThreadedExecutor(context=ctx)
        ex.add_node(node)
        deadline = time.monotonic() + 40
        common: set = set()
        while time.monotonic() < deadline and len(common) < 2 and proc.poll() is None:
            ex.spin_once(timeout_sec=0.1)
            if len(got) == 7:
                common = set.intersection(*(set(v) for v in got.values()))
        assert proc.poll() is None, proc.stdout.read().decode()[-2000:]
        assert len(common) >= 2, {k: len(v) for k, v in got.items()}
        for stamp in sorted(common):
            msgs = [got[k][stamp] for k in ("image", "depth", "mask", "info", "gt")]
            headers = [m.header for m in msgs[:4]] + [mk.header for mk in msgs[4].markers]
            assert all(h == headers[0] for h in headers) and headers[0].frame_id == "sim_optical"
            rgb, depth, mask = (image_to_numpy(m) for m in msgs[:3])
            assert rgb.shape == (120, 160, 3) and msgs[0].encoding == "rgb8"
            assert depth.dtype == np.float32 and msgs[1].encoding == "32FC1"
            assert (msgs[3].width, msgs[3].height) == (160, 120)
            with _scene(["random_urdfs/900/900.urdf"]) as s:
                np.testing.assert_allclose(camera_info_to_K(msgs[3]), s.K)
            # The object's true mesh lies where the label map shows it and at the observed depth.
            markers = msgs[4].markers
            assert markers[0].action == Marker.DELETEALL and len(markers) == 2
            pts = np.array([[p.x, p.y, p.z] for p in markers[1].points])
            assert len(pts) % 3 == 0 and markers[1].color.a == 1.0
            obj_depth = depth[mask == 1]
            assert obj_depth.size > 20
            assert pts[:, 2].min() - 0.01 < np.median(obj_depth) < pts[:, 2].max() + 0.01
            # compressed: the same frame, JPEG close to it, depth to the millimetre
            jpeg, png = got["jpeg"][stamp], got["png"][stamp]
            assert jpeg.header == headers[0] and png.header == headers[0]
            assert np.abs(compressed_to_rgb(jpeg).astype(int) - rgb).mean() < 6
            mm, enc = compressed_depth_to_numpy(png)
            ok = np.isfinite(depth) & (depth > 0)
            assert enc == "16UC1" and (mm[~ok] == 0).all()
            assert np.abs(mm[ok].astype(float) - depth[ok] * 1000).max() <= 0.5 + 1e-3
    finally:
        for sub in subs:
            node.destroy_subscription(sub)
        node.destroy_node()
        rclpy.shutdown(context=ctx)
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_pose_matrix_reads_pybullet_xyzw_quaternions():
    from scipy.spatial.transform import Rotation

    from dibr_ros.sim.scene import pose_matrix

    s = math.sqrt(0.5)  # 90 degrees about +z, pybullet order (x, y, z, w)
    T = pose_matrix([1.0, 2.0, 3.0], [0.0, 0.0, s, s])
    np.testing.assert_allclose(T, [[0, -1, 0, 1], [1, 0, 0, 2], [0, 0, 1, 3], [0, 0, 0, 1]], atol=1e-12)
    # unnormalised input is normalised; matrix -> quaternion round trip returns it (up to sign)
    q = np.array([0.3, -0.2, 0.5, 0.8])
    back = Rotation.from_matrix(pose_matrix(np.zeros(3), 2.0 * q)[:3, :3]).as_quat()
    np.testing.assert_allclose(np.abs(back @ (q / np.linalg.norm(q))), 1.0, atol=1e-12)
