"""12 MP RGB-D frames (4000x3000 rgb8 + 16UC1) through the shipped Fast DDS profile, default reliability.

The node runs as its own process with the shipped parameters (``input_reliability: auto``) and the
shipped profile (conftest sets FASTDDS_DEFAULT_PROFILES_FILE). The test first publishes best-effort, like
a camera driver with sensor-data QoS: auto then subscribes best-effort, whose delivery of 34 MiB samples is
lossy (bench/large_frames_bench.py), so a frame is resent (new stamp) until one is served. Frames announced
by camera_info whose image never arrives are logged once and counted in /diagnostics. Then the camera
publishes reliably: auto follows it, and the first 12 MP pair sent is served.
"""

import os
import time

import numpy as np
import pytest

pytest.importorskip("rclpy")
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, Image, PointCloud2
from std_msgs.msg import Header
from test_node import REPO, NodeProcess, _weights

from dibr_ros.perception.synthetic import tabletop_scene
from dibr_ros.ros import conversions as cv
from dibr_ros.ros.frame_loss import FrameLossMonitor

W, H, UP = 4000, 3000, 8  # rendered at 500x375, upsampled 8x
LOST_LINE = "never arrived as images"


def test_frame_loss_monitor_counts_infos_without_images():
    m = FrameLossMonitor(window_s=1.0)
    m.info(1, W, H, now=0.0)
    m.image(1, 3)
    assert m.check(5.0) == (0, None)
    m.info(2, W, H, now=1.0)
    m.info(3, W, H, now=1.5)
    m.image(4, 3)  # an image whose camera_info comes later
    m.info(4, W, H, now=1.6)
    assert m.check(2.2)[0] == 1  # stamp 3 still inside its window
    n, why = m.check(3.0)
    assert n == 1 and m.lost == 2 and "4000x3000" in why and "34.3 MiB" in why and "reliable" in why
    # a camera whose camera_info stamps never equal its image stamps is never reported
    m2 = FrameLossMonitor(window_s=1.0)
    m2.image(10, 3)
    m2.info(11, 640, 480, now=0.0)
    assert m2.check(5.0) == (0, None) and m2.lost == 0


class _Rig:
    def __init__(self, domain):
        self.ctx = rclpy.Context()
        rclpy.init(context=self.ctx, domain_id=domain)
        self.node = rclpy.create_node("large_frames_harness", context=self.ctx)
        be = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.BEST_EFFORT)
        self.pub = {}
        self.publish_with(be)
        self.points, self.diag = {}, []
        latched = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE,
                             durability=DurabilityPolicy.TRANSIENT_LOCAL)
        self.node.create_subscription(PointCloud2, "/dibr_perception/points", self._on_points, latched)
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self.diag.append,
                                      QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE))
        self.ex = SingleThreadedExecutor(context=self.ctx)
        self.ex.add_node(self.node)

    def publish_with(self, qos):
        """(Re)create the camera's three publishers with ``qos``."""
        for p in self.pub.values():
            self.node.destroy_publisher(p)
        self.pub = {n: self.node.create_publisher(t, f"/{n}", qos)
                    for n, t in (("image", Image), ("depth", Image), ("camera_info", CameraInfo))}

    def node_reliability(self, topic) -> list:
        return [i.qos_profile.reliability for i in self.node.get_subscriptions_info_by_topic(topic)
                if i.node_name == "dibr_perception"]

    def _on_points(self, msg):
        self.points[(msg.header.stamp.sec, msg.header.stamp.nanosec)] = msg

    def spin(self, seconds):
        t0 = time.monotonic()
        while time.monotonic() - t0 < seconds:
            self.ex.spin_once(timeout_sec=0.05)

    def last_diag(self) -> dict:
        for arr in reversed(self.diag):
            for st in arr.status:
                if st.name.endswith("pipeline"):
                    return {kv.key: kv.value for kv in st.values}
        return {}

    def close(self):
        self.ex.shutdown()
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.ctx)


@pytest.fixture(scope="module")
def rig(tmp_path_factory):
    domain = 1 + (os.getpid() * 37 + 71) % 100
    env = dict(os.environ, ROS_DOMAIN_ID=str(domain), ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST")
    env["PYTHONPATH"] = REPO + os.pathsep + env.get("PYTHONPATH", "")
    env.pop("ROS_LOCALHOST_ONLY", None)
    assert env["FASTDDS_DEFAULT_PROFILES_FILE"].endswith(os.path.join("config", "fastdds_shm.xml"))
    node = NodeProcess(env, str(tmp_path_factory.mktemp("node") / "node.log"), _weights(tmp_path_factory),
                       extra=["-p", "error_throttle:=60.0"], reliable=False)
    rig = _Rig(domain)
    try:
        node.wait_log("ready:", timeout=60)
        yield node, rig
    finally:
        rig.close()
        node.stop()


def _frame_12mp(seed: int):
    """A 4000x3000 rgb8 image, its 16UC1 depth (mm) and K: a tabletop rendered at 500x375, upsampled 8x."""
    frame, _, K, _ = tabletop_scene(n_objects=2, seed=seed, width=W // UP, height=H // UP)
    rgb = np.repeat(np.repeat(frame["rgb"], UP, 0), UP, 1)
    mm = np.round(np.nan_to_num(frame["depth"], nan=0, posinf=0).clip(0, 60) * 1000).astype(np.uint16)
    K = K.copy()
    K[:2] *= UP
    return rgb, np.repeat(np.repeat(mm, UP, 0), UP, 1), K


def _header(stamp: float) -> Header:
    h = Header(frame_id="cam_optical")
    h.stamp.sec, h.stamp.nanosec = int(stamp), int(round((stamp % 1) * 1e9))
    return h


def test_4000x3000_rgbd_pair_is_served_with_default_reliability(rig):
    node, hs = rig
    assert "(auto, depth 1)" in node.text()  # the shipped default
    rgb, depth, K = _frame_12mp(seed=1)
    assert rgb.shape == (H, W, 3) and rgb.nbytes == 36_000_000 and depth.nbytes == 24_000_000
    hs.spin(1.0)  # discovery
    sent, t0 = [], time.monotonic()
    while not hs.points and time.monotonic() - t0 < 45:
        h = _header(100.0 + len(sent))
        hs.pub["camera_info"].publish(cv.make_camera_info(K, W, H, h))
        hs.pub["depth"].publish(cv.numpy_to_image(depth, "16UC1", h))
        hs.pub["image"].publish(cv.numpy_to_image(rgb, "rgb8", h))
        sent.append(h)
        hs.spin(6.0 if len(sent) == 1 else 4.0)
    assert hs.points, f"no 4000x3000 frame served of {len(sent)} sent:\n{node.text()[-3000:]}"
    stamp = next(iter(hs.points))
    cloud = cv.cloud_to_numpy(hs.points[stamp])
    assert len(cloud["xyz"]) > 0


def test_lost_frames_are_logged_once_and_counted(rig):
    node, hs = rig
    mark = len(node.text())
    lost_before = int(hs.last_diag().get("frames_lost_in_transport", "0"))
    K = np.array([[3000.0, 0, W / 2], [0, 3000.0, H / 2], [0, 0, 1]])
    for i in range(4):  # camera_info of four 12 MP frames whose images never come
        hs.pub["camera_info"].publish(cv.make_camera_info(K, W, H, _header(500.0 + i)))
        hs.spin(0.5)
    t0 = time.monotonic()
    while int(hs.last_diag().get("frames_lost_in_transport", "0")) < lost_before + 4 and time.monotonic() - t0 < 10:
        hs.spin(0.25)
    kv = hs.last_diag()
    assert int(kv["frames_lost_in_transport"]) >= lost_before + 4, kv
    log = node.text()  # once for the whole run (test 1's lost frames, if any, said it already)
    assert log.count(LOST_LINE) == 1, log[mark:]
    line = next(x for x in log.splitlines() if LOST_LINE in x)
    assert "4000x3000" in line and "MiB" in line and "input_reliability: auto" in line, line


def test_auto_reliability_follows_a_reliable_camera_and_serves_its_first_12mp_pair(rig):
    node, hs = rig
    BE, REL = ReliabilityPolicy.BEST_EFFORT, ReliabilityPolicy.RELIABLE
    assert all(hs.node_reliability(f"/{t}") == [BE] for t in ("image", "depth", "camera_info"))
    mark = len(node.text())
    hs.publish_with(QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1, reliability=REL))
    t0 = time.monotonic()
    while any(hs.node_reliability(f"/{t}") != [REL] for t in ("image", "depth", "camera_info")):
        assert time.monotonic() - t0 < 10, node.text()[mark:]
        hs.spin(0.25)
    log = node.text()[mark:]
    for t in ("image", "depth", "camera_info"):
        assert f"[/{t}] input_reliability auto: subscribed reliable" in log, log
    while any(p.get_subscription_count() < 1 for p in hs.pub.values()):
        assert time.monotonic() - t0 < 20
        hs.spin(0.1)
    rgb, depth, K = _frame_12mp(seed=2)
    hs.points.clear()
    h = _header(900.0)
    hs.pub["camera_info"].publish(cv.make_camera_info(K, W, H, h))
    hs.pub["depth"].publish(cv.numpy_to_image(depth, "16UC1", h))
    hs.pub["image"].publish(cv.numpy_to_image(rgb, "rgb8", h))
    t0 = time.monotonic()
    while (900, 0) not in hs.points and time.monotonic() - t0 < 30:
        hs.spin(0.25)
    assert (900, 0) in hs.points, f"the one reliable 12 MP pair was not served:\n{node.text()[mark:]}"
    # A best-effort publisher again: auto goes back to best-effort (a reliable reader would not match it).
    hs.publish_with(QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1, reliability=BE))
    t0 = time.monotonic()
    while hs.node_reliability("/image") != [BE]:
        assert time.monotonic() - t0 < 10, node.text()[mark:]
        hs.spin(0.25)


def test_12mp_pair_from_a_best_effort_camera_over_compressed_topics(tmp_path_factory):
    """A best-effort 12 MP camera through image_transport's compressed topics (JPEG + compressedDepth PNG,
    a few MiB each: under the size best-effort delivery loses, bench/large_frames_bench.py --compressed):
    the node (image_transport: compressed, depth_transport: compressedDepth) serves the pair, in metres."""
    from sensor_msgs.msg import CompressedImage

    domain = 1 + (os.getpid() * 41 + 29) % 100
    env = dict(os.environ, ROS_DOMAIN_ID=str(domain), ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST")
    env["PYTHONPATH"] = REPO + os.pathsep + env.get("PYTHONPATH", "")
    env.pop("ROS_LOCALHOST_ONLY", None)
    node = NodeProcess(env, str(tmp_path_factory.mktemp("node_jpeg") / "node.log"), _weights(tmp_path_factory),
                       extra=["-p", "image_transport:=compressed", "-p", "depth_transport:=compressedDepth"],
                       reliable=False)
    hs = _Rig(domain)
    try:
        node.wait_log("ready:", timeout=60)
        assert "/image/compressed" in node.text() and "/depth/compressedDepth" in node.text()
        be = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.BEST_EFFORT)
        pub_img = hs.node.create_publisher(CompressedImage, "/image/compressed", be)
        pub_dep = hs.node.create_publisher(CompressedImage, "/depth/compressedDepth", be)
        rgb, depth, K = _frame_12mp(seed=2)
        h = _header(300.0)
        img, dep = cv.rgb_to_compressed(rgb, h), cv.depth_to_compressed_depth(depth.astype(np.float32) / 1000, h)
        assert len(img.data) < 16 * 2**20 and len(dep.data) < 16 * 2**20
        hs.spin(1.5)  # discovery
        sent, t0 = 0, time.monotonic()
        while not hs.points and time.monotonic() - t0 < 45:
            hs.pub["camera_info"].publish(cv.make_camera_info(K, W, H, h))
            pub_dep.publish(dep)
            pub_img.publish(img)
            sent += 1
            hs.spin(6.0)
            h = _header(300.0 + sent)
            img.header, dep.header = h, h
        assert hs.points, f"no compressed 4000x3000 frame served of {sent} sent:\n{node.text()[-3000:]}"
        cloud = cv.cloud_to_numpy(next(iter(hs.points.values())))
        assert len(cloud["xyz"]) > 0 and 0.3 < np.median(cloud["xyz"][:, 2]) < 3.0  # metric, at the table
    finally:
        hs.close()
        node.stop()
