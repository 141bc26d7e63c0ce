"""perception_node as its own process, fed synthetic tabletop frames (and malformed ones) over ROS.

One node process per module (module-scoped fixture); the test process publishes image + camera_info +
depth RELIABLE (full-size images over loopback) and the node subscribes reliable (parameter). Each
malformed-input test checks: one clear log line naming the topic, no output for the bad frame, and the
next good frame is processed.
"""

import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

pytest.importorskip("rclpy")
import rclpy
from camera_payloads import compressed_depth_payload, raw_camera_image  # test/camera_payloads.py
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, Image, PointCloud2
from std_msgs.msg import Header
from visualization_msgs.msg import Marker, MarkerArray

from dibr_ros.perception.synthetic import SceneObject, render_scene, table_plane, tabletop_scene
from dibr_ros.ros import conversions as cv
from dibr_ros.ros.sync import LatestSlot, StampMatcher

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHIPPED = os.path.join(REPO, "dibr_ros", "weights", "default.pt")
W, H = 320, 240
FRAME = "cam_optical"
WAIT = 20.0  # s, generous: CPU inference on a shared 2-core machine
THROTTLE = 1.0  # s, the node's error_throttle here


# ------------------------------------------------------------------------------------ pure unit tests

def _stamped(sec, nsec=0, tag=None):
    msg = Image()
    msg.header.stamp.sec, msg.header.stamp.nanosec = sec, nsec
    msg.header.frame_id = tag or f"{sec}.{nsec}"
    return msg


def test_stamp_matcher_exact_and_approximate():
    m = StampMatcher(["image", "depth"], slop=0.0, queue_size=3)
    assert m.add("image", _stamped(1)) is None
    assert m.add("depth", _stamped(2)) is None
    out = m.add("depth", _stamped(1))
    assert out is not None and [x.header.frame_id for x in out] == ["1.0", "1.0"]
    # Approximate: newest image wins; the older image and depth are dropped as orphans.
    m = StampMatcher(["image", "depth"], slop=0.02, queue_size=5)
    m.add("image", _stamped(5, 0))
    m.add("image", _stamped(6, 0))
    assert m.add("depth", _stamped(7, 0)) is None  # 1 s off both
    out = m.add("depth", _stamped(6, 10_000_000))  # 10 ms off image 6
    assert [x.header.frame_id for x in out] == ["6.0", "6.10000000"]
    assert m.dropped == 1  # image 5 (older than the match); depth 7 stays (newer)
    assert m.add("image", _stamped(7, 15_000_000)) is None  # depth 7.0 is 15 ms off and nothing newer yet
    out = m.add("depth", _stamped(7, 25_000_000))  # 10 ms off: the closer partner wins
    assert [x.header.frame_id for x in out] == ["7.15000000", "7.25000000"]


def test_stamp_matcher_does_not_pair_with_a_stale_partner():
    """30 Hz, depth arriving after its image: image k must wait for depth k, not take depth k-1 (33 ms)."""
    m = StampMatcher(["image", "depth"], slop=0.05, queue_size=5)
    period = 33_333_333
    assert m.add("depth", _stamped(0, period, tag="d1")) is None  # its image was lost
    assert m.add("image", _stamped(0, 2 * period, tag="i2")) is None  # d1 is within slop but stale
    out = m.add("depth", _stamped(0, 2 * period, tag="d2"))
    assert [x.header.frame_id for x in out] == ["i2", "d2"] and m.dropped == 1
    # Partner stamps 10 ms before the image's: final once the next depth shows nothing closer comes.
    m = StampMatcher(["image", "depth"], slop=0.05, queue_size=5)
    assert m.add("depth", _stamped(0, period - 10_000_000, tag="d1")) is None
    assert m.add("image", _stamped(0, period, tag="i1")) is None
    out = m.add("depth", _stamped(0, 2 * period - 10_000_000, tag="d2"))
    assert [x.header.frame_id for x in out] == ["i1", "d1"]


def test_stamp_matcher_queue_bound_and_single_stream():
    m = StampMatcher(["image", "depth"], slop=0.0, queue_size=2)
    for s in range(5):
        m.add("image", _stamped(s))
    assert m.dropped == 3
    single = StampMatcher(["image"])
    assert single.add("image", _stamped(3)).__len__() == 1
    with pytest.raises(ValueError):
        single.add("depth", _stamped(3))


def _fake_message_filters(made):
    """A stand-in for message_filters with its documented Python API: ``SimpleFilter`` (``registerCallback``,
    ``signalMessage``), ``TimeSynchronizer(fs, queue_size)`` and ``ApproximateTimeSynchronizer(fs,
    queue_size, slop)``, which call their callbacks synchronously with one message per input."""
    import types

    from dibr_ros.ros.sync import stamp_ns

    class SimpleFilter:
        def __init__(self):
            self.callbacks = []

        def registerCallback(self, cb, *args):
            self.callbacks.append((cb, args))

        def signalMessage(self, *msg):
            for cb, args in self.callbacks:
                cb(*(msg + args))

    class TimeSynchronizer(SimpleFilter):
        def __init__(self, fs, queue_size, slop=0.0):
            super().__init__()
            made.append((type(self).__name__, queue_size, slop))
            self.latest = [None] * len(fs)
            self.slop_ns = int(slop * 1e9)
            for i, f in enumerate(fs):
                f.registerCallback(self._add, i)

        def _add(self, msg, i):
            self.latest[i] = msg
            if all(m is not None for m in self.latest):
                stamps = [stamp_ns(m) for m in self.latest]
                if max(stamps) - min(stamps) <= self.slop_ns:
                    out, self.latest = tuple(self.latest), [None] * len(self.latest)
                    self.signalMessage(*out)

    class ApproximateTimeSynchronizer(TimeSynchronizer):
        pass

    return types.SimpleNamespace(SimpleFilter=SimpleFilter, TimeSynchronizer=TimeSynchronizer,
                                 ApproximateTimeSynchronizer=ApproximateTimeSynchronizer)


def test_make_matcher_uses_message_filters_when_importable(monkeypatch):
    import sys

    from dibr_ros.ros.sync import make_matcher

    made = []
    monkeypatch.setitem(sys.modules, "message_filters", _fake_message_filters(made))
    m = make_matcher(["image", "depth"], slop=0.02, exact=False, queue_size=4)
    assert type(m).__name__ == "_MessageFiltersMatcher" and made == [("ApproximateTimeSynchronizer", 4, 0.02)]
    assert m.add("image", _stamped(1, 0, tag="i")) is None
    out = m.add("depth", _stamped(1, 10_000_000, tag="d"))  # 10 ms off: within slop
    assert [x.header.frame_id for x in out] == ["i", "d"]
    assert m.add("depth", _stamped(2, tag="d2")) is None  # the set was consumed
    with pytest.raises(ValueError, match="unknown stream"):
        m.add("mask", _stamped(2))
    exact = make_matcher(["image", "depth"], slop=0.02, exact=True, queue_size=3)
    assert made[-1] == ("TimeSynchronizer", 3, 0.0)
    exact.add("depth", _stamped(5, 1))
    assert exact.add("image", _stamped(5, 2)) is None  # 1 ns apart is not exact
    # Asked not to, or alone, or without the package: the built-in matcher.
    assert isinstance(make_matcher(["image", "depth"], 0.02, False, 4, use_message_filters=False), StampMatcher)
    assert isinstance(make_matcher(["image"], 0.02, False, 4), StampMatcher)
    monkeypatch.setitem(sys.modules, "message_filters", None)  # import raises ImportError
    assert isinstance(make_matcher(["image", "depth"], 0.02, False, 4), StampMatcher)


def test_diagnostic_updater_reports_the_pipeline_status_when_importable(monkeypatch):
    """With diagnostic_updater (its documented API: ``Updater(node, period)``, ``setHardwareID``,
    ``add(name, fn)``, ``fn(stat)`` filling ``stat.summary`` / ``stat.add``) the node's status goes through
    it; without the package the node keeps its own /diagnostics publisher (``_make_updater`` -> None)."""
    import types

    from dibr_ros.ros.diagnostics import NodeStats
    from dibr_ros.ros.perception_node import PerceptionNode

    class Updater:
        def __init__(self, node, period=1.0):
            self.node, self.period, self.tasks, self.hardware_id = node, period, {}, None

        def setHardwareID(self, hwid):
            self.hardware_id = hwid

        def add(self, name, fn):
            self.tasks[name] = fn

    class Stat:
        def __init__(self):
            self.level, self.message, self.values = None, None, {}

        def summary(self, level, message):
            self.level, self.message = level, message

        def add(self, key, value):
            self.values[key] = value

    stats = NodeStats()
    stats.count("processed", 3)
    node = types.SimpleNamespace(p={"diagnostic_period": 2.5}, device="cpu", stats=stats)
    monkeypatch.setitem(sys.modules, "diagnostic_updater", types.SimpleNamespace(Updater=Updater))
    updater = PerceptionNode._make_updater(node)
    assert updater.node is node and updater.period == 2.5 and updater.hardware_id == "cpu"
    stat = updater.tasks["pipeline"](Stat())
    expected = stats.status("pipeline", "cpu")
    assert (stat.level, stat.message) == (expected.level, expected.message) == (expected.WARN, "no image for 5 s")
    assert stat.values["frames_processed"] == "3" and stat.values.keys() == {kv.key for kv in expected.values}
    monkeypatch.setitem(sys.modules, "diagnostic_updater", None)
    assert PerceptionNode._make_updater(node) is None


def test_latest_slot_keeps_newest_and_counts_drops():
    slot = LatestSlot()
    assert slot.take(timeout=0.01) is None
    assert not slot.put(1) and slot.put(2) and slot.put(3)
    assert slot.take() == 3 and slot.dropped == 2
    got = []
    t = threading.Thread(target=lambda: got.append(slot.take(timeout=5.0)))
    t.start()
    slot.put(4)
    t.join(5.0)
    assert got == [4]


# ------------------------------------------------------------------------------------------ harness

def _surface_distance(ob, x):
    """Unsigned distance (m) of points x (N, 3) to a synthetic sphere / box surface."""
    if ob.kind == "sphere":
        return np.abs(np.linalg.norm(x - ob.center, axis=1) - float(ob.size))
    q = np.abs((x - ob.center) @ ob.rotation) - ob.size
    return np.abs(np.linalg.norm(np.maximum(q, 0), axis=1) + np.minimum(q.max(axis=1), 0))


def _weights(tmp_path_factory) -> str:
    if os.path.isfile(SHIPPED):
        return SHIPPED
    from dibr_ros.model.checkpoint import save_checkpoint
    from dibr_ros.model.predictor import Predictor

    pred = Predictor.from_config(seed=0)
    path = str(tmp_path_factory.mktemp("weights") / "random.pt")
    save_checkpoint(path, pred.network, pred.network.config, {"note": "random init for tests"})
    return path


class Harness:
    """Test-side ROS node: publishes frames, collects the perception node's outputs by stamp."""

    def __init__(self, domain: int):
        self.ctx = rclpy.Context()
        rclpy.init(context=self.ctx, domain_id=domain)
        self.node = rclpy.create_node("dibr_test_harness", context=self.ctx)
        rel = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        latched = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE,
                             durability=DurabilityPolicy.TRANSIENT_LOCAL)
        self.pub = {name: self.node.create_publisher(typ, f"/{name}", rel) for name, typ in (
            ("image", Image), ("depth", Image), ("camera_info", CameraInfo))}
        self.lock = threading.Lock()
        self.meshes, self.points, self.debug, self.diag = {}, {}, {}, []
        self.node.create_subscription(MarkerArray, "/dibr_perception/meshes",
                                      lambda m: self._store(self.meshes, m), latched)
        self.node.create_subscription(PointCloud2, "/dibr_perception/points",
                                      lambda m: self._store(self.points, m), latched)
        self.debug_sub = self.node.create_subscription(Image, "/dibr_perception/debug_image",
                                                       lambda m: self._store(self.debug, m), rel)
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diag, rel)
        self.executor = SingleThreadedExecutor(context=self.ctx)
        self.executor.add_node(self.node)
        self._spin = threading.Thread(target=self._spin_loop, daemon=True)
        self._running = True
        self._spin.start()
        self.stamp = 1000

    def wait_matched(self, timeout=20.0):
        """Block until discovery has matched every input publisher with the node's subscriptions.

        A reliable volatile message published before the match is never delivered, so a test that
        sends right after the node says "ready:" would otherwise race discovery.
        """
        t0 = time.monotonic()
        while any(p.get_subscription_count() < 1 for p in self.pub.values()):
            assert time.monotonic() - t0 < timeout, "node's subscriptions not discovered"
            time.sleep(0.05)
        # the node draws its debug overlay only while it sees a subscriber
        while self.debug_sub.get_publisher_count() < 1:
            assert time.monotonic() - t0 < timeout, "node's debug_image publisher not discovered"
            time.sleep(0.05)
        time.sleep(0.2)  # discovery is not symmetric to the instant

    def _spin_loop(self):
        while self._running and self.ctx.ok():
            self.executor.spin_once(timeout_sec=0.05)

    def _store(self, table, msg):
        key = msg.markers[0].header.stamp if isinstance(msg, MarkerArray) else msg.header.stamp
        with self.lock:
            table[(key.sec, key.nanosec)] = msg

    def _on_diag(self, msg):
        with self.lock:
            self.diag.append(msg)

    def header(self, stamp=None, frame=FRAME) -> Header:
        if stamp is None:
            self.stamp += 1
            stamp = self.stamp
        h = Header(frame_id=frame)
        h.stamp.sec, h.stamp.nanosec = int(stamp), int(round((stamp % 1) * 1e9))
        return h

    def send(self, rgb_msg=None, depth_msg=None, info_msg=None):
        if info_msg is not None:
            self.pub["camera_info"].publish(info_msg)
        if depth_msg is not None:
            self.pub["depth"].publish(depth_msg)
        if rgb_msg is not None:
            self.pub["image"].publish(rgb_msg)

    def send_frame(self, frame, K, header=None, depth_encoding="32FC1", info=True, big_endian=False):
        h = header or self.header()
        rgb_msg = cv.numpy_to_image(frame["rgb"], "rgb8", h)
        d = frame["depth"]
        if depth_encoding == "16UC1":
            d = np.round(np.nan_to_num(d, nan=0, posinf=0, neginf=0).clip(0, 60) * 1000).astype(np.uint16)
        depth_msg = cv.numpy_to_image(d, depth_encoding, h)
        if big_endian:
            depth_msg.is_bigendian = 1
            depth_msg.data = d.astype(d.dtype.newbyteorder(">")).tobytes()
        self.send(rgb_msg, depth_msg, cv.make_camera_info(K, W, H, h) if info else None)
        return h

    def wait_output(self, h, timeout=WAIT):
        key = (h.stamp.sec, h.stamp.nanosec)
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            with self.lock:
                if key in self.meshes and key in self.points:
                    return self.meshes[key], self.points[key]
            time.sleep(0.02)
        raise AssertionError(f"no output for stamp {key} within {timeout} s")

    def has_output(self, h) -> bool:
        key = (h.stamp.sec, h.stamp.nanosec)
        with self.lock:
            return key in self.meshes or key in self.points or key in self.debug

    def close(self):
        self._running = False
        self._spin.join(2.0)
        self.executor.shutdown()
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.ctx)


class NodeProcess:
    def __init__(self, env, log_path, weights, extra=(), reliable=True):
        self.log_path = log_path
        self.log = open(log_path, "wb")
        cmd = [sys.executable, "-m", "dibr_ros.ros.perception_node", "--ros-args",
               "--params-file", os.path.join(REPO, "config", "perception.yaml"),
               "-p", "device:=cpu", "-p", f"weights:={weights}",
               "-p", "diagnostic_period:=0.5", "-p", f"error_throttle:={THROTTLE}", "-p", "points_per_object:=500"]
        cmd += ["-p", "input_reliability:=reliable"] if reliable else []
        cmd += list(extra)
        self.proc = subprocess.Popen(cmd, env=env, cwd=REPO, stdout=self.log, stderr=subprocess.STDOUT)

    def text(self) -> str:
        with open(self.log_path, "rb") as f:
            return f.read().decode(errors="replace")

    def wait_log(self, needle, timeout=WAIT, start=0) -> str:
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            text = self.text()[start:]
            if needle in text:
                return text
            assert self.proc.poll() is None, f"node exited ({self.proc.returncode}):\n{self.text()[-3000:]}"
            time.sleep(0.05)
        raise AssertionError(f"'{needle}' not logged within {timeout} s:\n{self.text()[-3000:]}")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


@pytest.fixture(scope="module")
def scene():
    frame, objects, K, plane = tabletop_scene(n_objects=3, seed=3, width=W, height=H)
    return frame, objects, K, plane


@pytest.fixture(scope="module")
def rig(tmp_path_factory):
    domain = 1 + (os.getpid() * 37 + 53) % 100
    env = dict(os.environ, ROS_DOMAIN_ID=str(domain), ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST")
    env["PYTHONPATH"] = REPO + os.pathsep + env.get("PYTHONPATH", "")
    env.pop("ROS_LOCALHOST_ONLY", None)
    log = str(tmp_path_factory.mktemp("node") / "node.log")
    node = NodeProcess(env, log, _weights(tmp_path_factory))
    harness = Harness(domain)
    try:
        node.wait_log("ready:", timeout=60)
        harness.wait_matched()
        yield node, harness
    finally:
        harness.close()
        node.stop()


def _mark(node) -> int:
    return len(node.text())


# -------------------------------------------------------------------------------- integration tests

def test_frames_without_camera_info_are_skipped(rig, scene):
    node, hs = rig
    frame, _, K, _ = scene
    start = _mark(node)
    h = hs.send_frame(frame, K, info=False)
    text = node.wait_log("no CameraInfo received yet", start=start)
    line = next(ln for ln in text.splitlines() if "no CameraInfo" in ln)
    assert "[/camera_info]" in line and "ERROR" in line
    time.sleep(0.3)
    assert not hs.has_output(h)


def test_good_frame_outputs(rig, scene):
    node, hs = rig
    frame, objects, K, _ = scene
    hs.send(info_msg=cv.make_camera_info(K, W, H, hs.header(stamp=999)))
    time.sleep(0.2)
    h = hs.send_frame(frame, K)
    markers, cloud = hs.wait_output(h)
    # Markers: DELETEALL then TRIANGLE_LISTs in the input frame, stamped like the input.
    assert markers.markers[0].action == Marker.DELETEALL
    tris = markers.markers[1:]
    assert 1 <= len(tris) <= len(objects) + 1
    for m in tris:
        assert m.type == Marker.TRIANGLE_LIST and m.header == h
        assert len(m.points) > 0 and len(m.points) % 3 == 0 and len(m.colors) == len(m.points)
        assert m.color.a == 1.0 and all(c.a == 1.0 for c in m.colors[:50])
        cols = np.array([[c.r, c.g, c.b] for c in m.colors])
        assert np.all((cols >= 0) & (cols <= 1))
    # Cloud: fields, stamp, instances match the marker ids, points near the true objects.
    assert cloud.header == h
    assert [f.name for f in cloud.fields] == ["x", "y", "z", "rgb", "instance", "source"]
    data = cv.cloud_to_numpy(cloud)
    ids = sorted({m.id for m in tris})
    assert sorted(set(data["instance"].tolist())) == ids
    # source: the measured points lie on the depth image, the inferred ones (support, network) behind it
    src = data["source"]
    assert set(src.tolist()) <= {0, 1, 2} and (src == 0).any() and (src > 0).any()
    uvz = data["xyz"] @ K.T
    u, v = np.rint(uvz[:, 0] / uvz[:, 2]).astype(np.int64), np.rint(uvz[:, 1] / uvz[:, 2]).astype(np.int64)
    z = frame["depth"][np.clip(v, 0, H - 1), np.clip(u, 0, W - 1)]
    assert np.median(np.abs(data["xyz"][src == 0, 2] - z[src == 0])) < 0.002
    assert np.median(data["xyz"][src > 0, 2] - z[src > 0]) > 0.005
    assert len(data["xyz"]) >= 500 * len(ids)
    centres = np.array([o.center for o in objects])
    radii = np.array([o.radius for o in objects])
    trained = os.path.isfile(SHIPPED)  # random-init weights: only the placement is meaningful
    for i in ids:
        pts = data["xyz"][data["instance"] == i]
        c = pts.mean(axis=0)
        d = np.linalg.norm(centres - c, axis=1)
        j = int(d.argmin())
        tol = 0.5 * radii[j] + 0.01 if trained else 2.0 * radii[j] + 0.05
        assert d[j] < tol, f"instance {i} centroid {c} is {d[j]:.3f} m from the nearest object"
        if trained:
            surf = np.median(_surface_distance(objects[j], pts))
            assert surf < 0.02, f"instance {i}: median distance to the true surface {surf:.4f} m"
    # Debug image: rgb8, same header and size.
    t0 = time.monotonic()
    while not hs.has_output(h) or (h.stamp.sec, h.stamp.nanosec) not in hs.debug:
        assert time.monotonic() - t0 < 5.0, "no debug image"
        time.sleep(0.05)
    dbg = hs.debug[(h.stamp.sec, h.stamp.nanosec)]
    assert dbg.encoding == "rgb8" and (dbg.width, dbg.height) == (W, H) and dbg.header == h
    # drawn on the overlay thread, after the frame's outputs: timed there, its skips counted
    while True:
        with hs.lock:
            kv = {v.key: v.value for v in hs.diag[-1].status[0].values} if hs.diag else {}
        if "latency_debug_p50_ms" in kv:
            break
        assert time.monotonic() - t0 < 5.0, "no overlay latency in /diagnostics"
        time.sleep(0.05)
    assert float(kv["latency_debug_p50_ms"]) > 0 and int(kv["frames_debug_dropped"]) >= 0


def _assert_every_object_placed(cloud, objects, what=""):
    """Each published instance's centroid lies within half its object's radius (+ 1 cm) of a true object's
    centre, and every true object has one."""
    data = cv.cloud_to_numpy(cloud)
    centres = np.array([o.center for o in objects])
    found = set()
    for i in sorted(set(data["instance"].tolist())):
        d = np.linalg.norm(centres - data["xyz"][data["instance"] == i].mean(axis=0), axis=1)
        assert d.min() < 0.5 * objects[int(d.argmin())].radius + 0.01, f"{what}instance {i} is {d.min():.3f} m off"
        found.add(int(d.argmin()))
    assert found == set(range(len(objects)))


@pytest.mark.parametrize("encoding", ["bayer_rggb8", "yuv422_yuy2"])
def test_raw_camera_formats(rig, scene, encoding):
    """A machine-vision camera's Bayer mosaic and a USB camera's YUYV are served like rgb8: the same
    objects, placed where they are."""
    node, hs = rig
    frame, objects, K, _ = scene
    h = hs.header()
    img = cv.numpy_to_image(raw_camera_image(frame["rgb"], encoding), encoding, h)
    hs.send(img, cv.numpy_to_image(frame["depth"], "32FC1", h), cv.make_camera_info(K, W, H, h))
    _, cloud = hs.wait_output(h)
    _assert_every_object_placed(cloud, objects, f"{encoding}: ")


def test_diagnostics(rig):
    node, hs = rig
    t0 = time.monotonic()
    while True:
        with hs.lock:
            last = hs.diag[-1] if hs.diag else None
        if last is not None:
            st = last.status[0]
            kv = {v.key: v.value for v in st.values}
            if int(kv.get("frames_processed", "0")) >= 1:
                break
        assert time.monotonic() - t0 < 5.0, "no diagnostics with a processed frame"
        time.sleep(0.1)
    assert st.name == "dibr_perception: pipeline" and st.hardware_id == "cpu"
    assert kv["device"].startswith("cpu")
    for key in ("input_rate_hz", "frames_received", "frames_dropped_newer", "frames_dropped_unmatched",
                "frames_rejected", "latency_predict_p50_ms", "latency_predict_p95_ms", "latency_total_p95_ms",
                "latency_node_total_p50_ms", "latency_image_to_points_p95_ms", "last_error"):
        assert key in kv, key
    assert float(kv["latency_node_total_p95_ms"]) >= float(kv["latency_predict_p50_ms"]) > 0
    assert kv["last_error"].startswith("[/")  # names the topic (the missing CameraInfo before)
    # the last frame's cloud by source: shares that add up (0 for a frame without objects)
    shares = [float(kv[f"cloud_{k}_pct_last_frame"]) for k in ("measured", "support", "network")]
    assert sum(shares) == pytest.approx(100.0 if int(kv["objects_last_frame"]) else 0.0, abs=0.2)


def _bad_image(h, **over):
    msg = cv.numpy_to_image(np.zeros((H, W, 3), np.uint8), "rgb8", h)
    for k, v in over.items():
        setattr(msg, k, v)
    return msg


BAD_IMAGES = {
    "unknown encoding": (dict(encoding="nv21"), "unsupported encoding 'nv21'"),
    "step/data mismatch": (dict(data=bytes(W * H * 3 - 7)), "data has 230393 bytes"),
    "huge header": (dict(width=20000, height=20000, step=60000, data=bytes(100)), "data has 100 bytes"),
    "zero size": (dict(width=0, height=0, step=0, data=b""), "zero-size image"),
    "step < row": (dict(step=W * 3 - 1), "step 959 < width"),
}


@pytest.mark.parametrize("case", list(BAD_IMAGES))
def test_malformed_image(rig, scene, case):
    node, hs = rig
    frame, _, K, _ = scene
    over, needle = BAD_IMAGES[case]
    if case == "huge header":
        time.sleep(THROTTLE)  # same problem as the step/data mismatch just before: let the throttle expire
    start = _mark(node)
    h_bad = hs.header()
    hs.send(_bad_image(h_bad, **over), None, cv.make_camera_info(K, W, H, h_bad))
    text = node.wait_log(needle, start=start)
    line = next(ln for ln in text.splitlines() if needle in ln)
    assert "[/image]" in line
    h = hs.send_frame(frame, K)
    hs.wait_output(h)
    assert not hs.has_output(h_bad)


def test_bad_input_is_throttled(rig, scene):
    node, hs = rig
    frame, _, K, _ = scene
    start = _mark(node)
    for _ in range(5):
        hs.send(_bad_image(hs.header(), encoding="nv12"))
        time.sleep(0.05)
    node.wait_log("unsupported encoding 'nv12'", start=start)
    h = hs.send_frame(frame, K)
    hs.wait_output(h)
    assert node.text()[start:].count("unsupported encoding 'nv12'") == 1


@pytest.mark.parametrize("kind", ["zero", "nan"])
def test_invalid_camera_info(rig, scene, kind):
    node, hs = rig
    frame, _, K, _ = scene
    start = _mark(node)
    bad = K.copy()
    if kind == "zero":
        bad[:] = 0
    else:
        bad[0, 0] = np.nan
    h_bad = hs.header()
    info = cv.make_camera_info(np.eye(3), W, H, h_bad)
    info.k = bad.reshape(-1).tolist()
    time.sleep(THROTTLE)  # the "invalid CameraInfo" lines of the previous case have expired
    hs.send(None, None, info)
    needle = "all zeros" if kind == "zero" else "NaN"
    text = node.wait_log(needle, start=start)
    assert "[/camera_info]" in next(ln for ln in text.splitlines() if needle in ln)
    hs.send_frame(frame, K, header=h_bad, info=False)
    text = node.wait_log("last CameraInfo is invalid", start=start)
    assert "[/camera_info]" in next(ln for ln in text.splitlines() if "last CameraInfo is invalid" in ln)
    assert not hs.has_output(h_bad)
    hs.wait_output(hs.send_frame(frame, K))  # a valid CameraInfo heals the node


def test_depth_problems(rig, scene):
    node, hs = rig
    frame, _, K, _ = scene
    # Wrong size: another aspect ratio is not the colour camera's view.
    start = _mark(node)
    h_bad = hs.header()
    small = cv.numpy_to_image(np.ones((H // 2, W // 3), np.float32), "32FC1", h_bad)
    hs.send(cv.numpy_to_image(frame["rgb"], "rgb8", h_bad), small, cv.make_camera_info(K, W, H, h_bad))
    text = node.wait_log("but the image is", start=start)
    line = next(ln for ln in text.splitlines() if "but the image is" in ln)
    assert "[/depth]" in line and "another aspect ratio" in line
    # No valid pixel at all.
    start = _mark(node)
    h_bad2 = hs.header()
    hs.send_frame({"rgb": frame["rgb"], "depth": np.zeros((H, W), np.float32)}, K, header=h_bad2)
    text = node.wait_log("no valid pixel", start=start)
    assert "[/depth]" in next(ln for ln in text.splitlines() if "no valid pixel" in ln)
    # Depth in another frame (not registered to the colour camera).
    start = _mark(node)
    h_bad4 = hs.header()
    other = Header(frame_id="depth_optical", stamp=h_bad4.stamp)
    hs.send(cv.numpy_to_image(frame["rgb"], "rgb8", h_bad4), cv.numpy_to_image(frame["depth"], "32FC1", other),
            cv.make_camera_info(K, W, H, h_bad4))
    text = node.wait_log("must be registered", start=start)
    assert "[/depth]" in next(ln for ln in text.splitlines() if "must be registered" in ln)
    # Wrong encoding on the depth topic.
    start = _mark(node)
    h_bad3 = hs.header()
    hs.send(cv.numpy_to_image(frame["rgb"], "rgb8", h_bad3), cv.numpy_to_image(frame["rgb"], "rgb8", h_bad3),
            cv.make_camera_info(K, W, H, h_bad3))
    text = node.wait_log("not accepted here", start=start)
    assert "[/depth]" in next(ln for ln in text.splitlines() if "not accepted here" in ln)
    # NaN / inf / negative / zero patches: the frame is still processed.
    d = frame["depth"].copy()
    d[:20] = np.nan
    d[20:40] = np.inf
    d[40:60] = -1.0
    d[60:80] = 0.0
    h = hs.send_frame({"rgb": frame["rgb"], "depth": d}, K)
    hs.wait_output(h)
    for hb in (h_bad, h_bad2, h_bad3, h_bad4):
        assert not hs.has_output(hb)


def test_registered_depth_at_half_resolution(rig, scene):
    """A driver that registers depth to the colour camera at half its resolution (same frame_id, same
    view): resized nearest, said once, and the objects are placed as with full-resolution depth."""
    node, hs = rig
    frame, objects, K, _ = scene
    start = _mark(node)
    h = hs.send_frame({"rgb": frame["rgb"], "depth": np.ascontiguousarray(frame["depth"][::2, ::2])}, K)
    _, cloud = hs.wait_output(h)
    node.wait_log("is resized (nearest) to the image's", start=start)
    _assert_every_object_placed(cloud, objects)
    # The same depth without a frame_id saying it is registered: refused.
    start = _mark(node)
    h2 = hs.header()
    hs.send(cv.numpy_to_image(frame["rgb"], "rgb8", h2),
            cv.numpy_to_image(np.ascontiguousarray(frame["depth"][::2, ::2]), "32FC1",
                              Header(frame_id="", stamp=h2.stamp)), cv.make_camera_info(K, W, H, h2))
    text = node.wait_log("no frame_id saying it is registered", start=start)
    assert "[/depth]" in text


def test_big_endian_16uc1_depth(rig, scene):
    node, hs = rig
    frame, objects, K, _ = scene
    h = hs.send_frame(frame, K, depth_encoding="16UC1", big_endian=True)
    _, cloud = hs.wait_output(h)
    xyz = cv.cloud_to_numpy(cloud)["xyz"]
    assert len(xyz) > 0
    # Metric placement survived the byte swap: the cloud sits at the objects' depth, not 256x off.
    zc = np.array([o.center[2] for o in objects])
    assert zc.min() - 0.3 < np.median(xyz[:, 2]) < zc.max() + 0.3


def test_out_of_order_stamps(rig, scene):
    node, hs = rig
    frame, _, K, _ = scene
    h_new = hs.send_frame(frame, K)
    hs.wait_output(h_new)
    start = _mark(node)
    h_old = hs.header(stamp=hs.stamp - 0.5)
    hs.send_frame(frame, K, header=h_old)
    text = node.wait_log("out-of-order", start=start)
    assert "[/image]" in next(ln for ln in text.splitlines() if "out-of-order" in ln)
    hs.wait_output(hs.send_frame(frame, K))
    assert not hs.has_output(h_old)


def test_empty_scene_and_object_filling_the_frame(rig, scene):
    node, hs = rig
    _, _, K, plane = scene
    empty = render_scene([], K, W, H, plane=plane)
    markers, cloud = hs.wait_output(hs.send_frame(empty, K))
    assert [m.action for m in markers.markers] == [Marker.DELETEALL]
    assert cloud.width == 0 and len(cloud.data) == 0 and len(cloud.fields) == 6
    big = render_scene([SceneObject("sphere", np.array([0.0, 0.0, 0.5]), np.float64(0.45))], K, W, H,
                       plane=table_plane())
    h = hs.send_frame(big, K)
    # Whatever the segmenter makes of it, the node answers (or skips with a log) and stays alive.
    t0 = time.monotonic()
    while not hs.has_output(h) and time.monotonic() - t0 < WAIT:
        time.sleep(0.05)
    markers, _ = hs.wait_output(hs.send_frame(render_scene([], K, W, H, plane=plane), K))
    assert markers.markers[0].action == Marker.DELETEALL


def test_newest_frame_wins_and_drops_are_counted(rig, scene):
    node, hs = rig
    frame, _, K, _ = scene
    headers = []
    for _ in range(6):
        headers.append(hs.send_frame(frame, K))
        time.sleep(0.01)
    hs.wait_output(headers[-1])
    time.sleep(0.5)
    done = [h for h in headers if hs.has_output(h)]
    assert len(done) < len(headers)
    t0 = time.monotonic()
    while True:
        with hs.lock:
            kv = {v.key: v.value for v in hs.diag[-1].status[0].values}
        if int(kv["frames_dropped_newer"]) >= 1:
            break
        assert time.monotonic() - t0 < 3.0, kv
        time.sleep(0.1)


def test_sigint_with_frame_in_flight(rig, scene):
    node, hs = rig
    frame, _, K, _ = scene
    hs.send_frame(frame, K)
    time.sleep(0.3)  # the frame is in the worker now (CPU inference takes longer)
    node.proc.send_signal(signal.SIGINT)
    assert node.proc.wait(15) == 0
    assert "Traceback" not in node.text()  # over the whole run: no exception ever escaped
    assert "internal error" not in node.text()


def test_external_label_map_with_thousands_of_labels(tmp_path_factory, scene):
    """In-process node (no DDS traffic needed): use_external_masks, RGB-only, a 16UC1 map with 5000 labels."""
    from rclpy.parameter import Parameter

    from dibr_ros.ros.perception_node import PerceptionNode, StartupError

    frame, objects, K, _ = scene
    labels = np.zeros((H, W), np.uint16)
    speckle = np.arange(1, 5001, dtype=np.uint16)  # 5000 one-pixel labels (< min_object_pixels)
    labels.reshape(-1)[np.linspace(0, H * W - 1, 5000).astype(int)] = speckle + 100
    labels[frame["labels"] > 0] = frame["labels"][frame["labels"] > 0]
    ctx = rclpy.Context()
    rclpy.init(context=ctx, domain_id=1 + (os.getpid() * 37 + 71) % 100)
    node = None
    try:
        overrides = [Parameter("device", value="cpu"), Parameter("weights", value=_weights(tmp_path_factory)),
                     Parameter("use_depth", value=False), Parameter("use_external_masks", value=True),
                     Parameter("publish_debug_image", value=False)]
        node = PerceptionNode(context=ctx, parameter_overrides=overrides)
        assert node._streams == ("image", "instance_mask")
        h = Header(frame_id=FRAME)
        node._on_info(cv.make_camera_info(K, W, H, h))
        node._process({"image": cv.numpy_to_image(frame["rgb"], "rgb8", h),
                       "instance_mask": cv.numpy_to_image(labels, "16UC1", h)})
        assert node.stats.counts["processed"] == 1
        assert node.stats.objects_last == len(objects)
        # Run-time parameter changes: validated, applied to the pipeline; read-only ones refused.
        res = node.set_parameters([Parameter("segmentation", value="bogus")])[0]
        assert not res.successful and "segmentation" in res.reason
        res = node.set_parameters([Parameter("points_per_object", value=64)])[0]
        assert res.successful and node._pipeline.config.points_per_object == 64
        assert not node.set_parameters([Parameter("device", value="cuda")])[0].successful
        assert not node.set_parameters([Parameter("crop_padding", value=5.0)])[0].successful  # out of range
        # After the pipeline's CUDA-OOM fallback swapped in a CPU predictor, the node keeps that one (a
        # rebuilt pipeline must not go back to the failing device) and reports its device.
        from dibr_ros.model import Predictor

        moved = Predictor.load(_weights(tmp_path_factory), device="cpu")
        node._pipeline.predictor = moved
        node._process({"image": cv.numpy_to_image(frame["rgb"], "rgb8", h),
                       "instance_mask": cv.numpy_to_image(labels, "16UC1", h)})
        assert node.predictor is moved and node.stats.device.startswith("cpu")
        assert node.set_parameters([Parameter("points_per_object", value=32)])[0].successful
        assert node._pipeline.predictor is moved
        # Startup refuses a missing weights file with a one-line reason.
        bad = [Parameter("device", value="cpu"), Parameter("weights", value="/nonexistent/w.pt")]
        with pytest.raises(StartupError, match="cannot load weights '/nonexistent/w.pt'"):
            PerceptionNode(context=ctx, parameter_overrides=bad)
        # ... a directory, and a file that is no checkpoint, each with what is wrong with it
        for value, reason in ((str(tmp_path_factory.getbasetemp()), "is a directory"),
                              (__file__, "not a dibr_ros checkpoint: not a zip archive")):
            bad = [Parameter("device", value="cpu"), Parameter("weights", value=value)]
            with pytest.raises(StartupError, match=reason) as info:
                PerceptionNode(context=ctx, parameter_overrides=bad)
            assert "\n" not in str(info.value)
        # A label map of another size is refused with the topic named.
        with pytest.raises(ValueError, match="mask is 10x10"):
            node._decode({"image": cv.numpy_to_image(frame["rgb"], "rgb8", h),
                          "instance_mask": cv.numpy_to_image(np.zeros((10, 10), np.uint8), "mono8", h)})
    finally:
        if node is not None:
            node.close()
            node.destroy_node()
        rclpy.try_shutdown(context=ctx)


def test_device_resolution():
    import torch

    from dibr_ros.ros.perception_node import StartupError, resolve_device

    assert resolve_device("cpu", strict=True) == ("cpu", None)
    assert resolve_device("auto", strict=True)[0] == ("cuda:0" if torch.cuda.is_available() else "cpu")
    with pytest.raises(StartupError, match="invalid device 'gpu0'"):
        resolve_device("gpu0", strict=False)
    if not torch.cuda.is_available():
        dev, warning = resolve_device("cuda:1", strict=False)
        assert dev == "cpu" and "falling back to cpu" in warning
        with pytest.raises(StartupError, match="CUDA is not available"):
            resolve_device("cuda", strict=True)


class _InProcess:
    """One rclpy context (its own domain) holding PerceptionNodes (cpu, the test weights, no debug image, plus
    the given parameters) and helper nodes; everything is closed and shut down on exit."""

    def __init__(self, tmp_path_factory, salt: int):
        self.weights = _weights(tmp_path_factory)
        self.ctx = rclpy.Context()
        rclpy.init(context=self.ctx, domain_id=1 + (os.getpid() * 37 + salt) % 100)
        self.nodes = []

    def perception(self, *params, **node_kwargs):
        from rclpy.parameter import Parameter

        from dibr_ros.ros.perception_node import PerceptionNode

        base = [Parameter("device", value="cpu"), Parameter("weights", value=self.weights),
                Parameter("publish_debug_image", value=False)]
        node = PerceptionNode(context=self.ctx, parameter_overrides=base + list(params), **node_kwargs)
        self.nodes.append(node)
        return node

    def helper(self, name: str):
        node = rclpy.create_node(name, context=self.ctx)
        self.nodes.append(node)
        return node

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        for node in reversed(self.nodes):
            if hasattr(node, "close"):
                node.close()
            node.destroy_node()
        rclpy.shutdown(context=self.ctx)


def test_whole_numbers_for_double_parameters_over_the_set_parameters_service(tmp_path_factory):
    """`ros2 param set /dibr_perception max_depth 20` sends an INTEGER; YAML `max_depth: 20` too."""
    from rcl_interfaces.msg import Parameter as ParameterMsg
    from rcl_interfaces.msg import ParameterType, ParameterValue
    from rcl_interfaces.srv import SetParameters
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.parameter import Parameter

    with _InProcess(tmp_path_factory, 89) as rig:
        node = rig.perception(Parameter("max_depth", value=7))
        assert node.p["max_depth"] == 7.0 and isinstance(node.p["max_depth"], float)  # from YAML / -p
        client_node = rig.helper("param_client")
        ex = SingleThreadedExecutor(context=rig.ctx)
        ex.add_node(node)
        ex.add_node(client_node)
        cli = client_node.create_client(SetParameters, f"{node.get_fully_qualified_name()}/set_parameters")
        assert cli.wait_for_service(timeout_sec=10)

        def send(name, value):
            req = SetParameters.Request(parameters=[ParameterMsg(name=name, value=value)])
            fut = cli.call_async(req)
            ex.spin_until_future_complete(fut, timeout_sec=10)
            return fut.result().results[0]

        res = send("max_depth", ParameterValue(type=ParameterType.PARAMETER_INTEGER, integer_value=20))
        assert res.successful, res.reason
        assert node.p["max_depth"] == 20.0 and node.get_parameter("max_depth").type_ == Parameter.Type.DOUBLE
        res = send("crop_padding", ParameterValue(type=ParameterType.PARAMETER_INTEGER, integer_value=50))
        assert not res.successful and "crop_padding" in res.reason and "50" in res.reason  # the range, named
        res = send("points_per_object", ParameterValue(type=ParameterType.PARAMETER_INTEGER, integer_value=128))
        assert res.successful and node.p["points_per_object"] == 128  # integers stay integers


def test_compressed_transports_on_remapped_topics(tmp_path_factory, scene):
    """image_transport: compressed JPEG on <image>/compressed and 32FC1 compressedDepth on
    <depth>/compressedDepth of remapped base topics, as a bag of a RealSense recorded compressed holds."""
    import cv2
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.parameter import Parameter
    from sensor_msgs.msg import CompressedImage

    frame, objects, K, _ = scene
    with _InProcess(tmp_path_factory, 71) as rig:
        remap = ["--ros-args", "-r", "image:=/cam/color/image_raw", "-r", "depth:=/cam/depth/image_raw",
                 "-r", "camera_info:=/cam/color/camera_info"]
        node = rig.perception(Parameter("input_reliability", value="reliable"),
                              Parameter("image_transport", value="compressed"),
                              Parameter("depth_transport", value="compressedDepth"), cli_args=remap)
        assert node._topics["image"] == "/cam/color/image_raw/compressed"
        assert node._topics["depth"] == "/cam/depth/image_raw/compressedDepth"
        sender = rig.helper("bag_player")
        qos = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE)
        pub_img = sender.create_publisher(CompressedImage, "/cam/color/image_raw/compressed", qos)
        pub_dep = sender.create_publisher(CompressedImage, "/cam/depth/image_raw/compressedDepth", qos)
        pub_info = sender.create_publisher(CameraInfo, "/cam/color/camera_info", qos)
        clouds = []
        sender.create_subscription(PointCloud2, "/dibr_perception/points", clouds.append, QoSProfile(
            depth=5, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL))
        ex = SingleThreadedExecutor(context=rig.ctx)
        ex.add_node(node)
        ex.add_node(sender)
        t0 = time.monotonic()
        while pub_img.get_subscription_count() < 1 or pub_dep.get_subscription_count() < 1:
            assert time.monotonic() - t0 < 10, "the node did not subscribe the compressed topics"
            ex.spin_once(timeout_sec=0.05)
        h = Header(frame_id=FRAME)
        h.stamp.sec = 77
        img = CompressedImage(header=h, format="rgb8; jpeg compressed bgr8")
        img.data = cv2.imencode(".jpg", frame["rgb"][:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes()
        dep = CompressedImage(header=h, format="32FC1; compressedDepth png")
        dep.data = compressed_depth_payload(frame["depth"], "32FC1")
        pub_info.publish(cv.make_camera_info(K, W, H, h))
        pub_dep.publish(dep)
        pub_img.publish(img)
        while not clouds:
            assert time.monotonic() - t0 < WAIT, "no cloud from the compressed frame"
            ex.spin_once(timeout_sec=0.05)
        cloud = clouds[-1]
        assert cloud.header == h
        _assert_every_object_placed(cloud, objects)
        # A truncated payload: said (naming the topic), counted, and the next good frame is served.
        png = cv2.imencode(".png", frame["rgb"][:, :, ::-1])[1].tobytes()
        for sec, data in ((78, png[:len(png) // 2]), (79, bytes(img.data))):
            h = Header(frame_id=FRAME)
            h.stamp.sec = sec
            pub_info.publish(cv.make_camera_info(K, W, H, h))
            dep.header, img.header = h, h
            pub_dep.publish(dep)
            img.data = data
            pub_img.publish(img)
            t1 = time.monotonic()
            while not (node.stats.counts["rejected"] if sec == 78 else clouds[-1].header.stamp.sec == 79):
                assert time.monotonic() - t1 < WAIT, f"frame {sec} neither rejected nor served"
                ex.spin_once(timeout_sec=0.05)
        assert "/cam/color/image_raw/compressed" in node.stats.last_error
        assert "does not decode" in node.stats.last_error


def test_rgb_only_camera_with_a_known_table_plane(tmp_path_factory, scene):
    """use_depth false: the objects are placed by default_object_size until `ros2 param set ... table_plane`
    gives the table (as the CLI sends it, whole numbers included); then they stand on it, where they are."""
    from rcl_interfaces.msg import Parameter as ParameterMsg
    from rcl_interfaces.msg import ParameterType, ParameterValue
    from rcl_interfaces.srv import SetParameters
    from rclpy.parameter import Parameter

    frame, objects, K, plane = scene
    centres = np.array([o.center for o in objects])
    with _InProcess(tmp_path_factory, 97) as rig:
        node = rig.perception(Parameter("use_depth", value=False), Parameter("default_object_size", value=0.3))
        client = rig.helper("param_client")
        ex = SingleThreadedExecutor(context=rig.ctx)
        ex.add_node(node)
        ex.add_node(client)
        cli = client.create_client(SetParameters, f"{node.get_fully_qualified_name()}/set_parameters")
        assert cli.wait_for_service(timeout_sec=10)

        def send(value):
            fut = cli.call_async(SetParameters.Request(parameters=[ParameterMsg(name="table_plane", value=value)]))
            ex.spin_until_future_complete(fut, timeout_sec=10)
            return fut.result().results[0]

        qos = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE)
        pub_img = client.create_publisher(Image, "/image", qos)
        pub_info = client.create_publisher(CameraInfo, "/camera_info", qos)
        clouds = []
        client.create_subscription(PointCloud2, "/dibr_perception/points", clouds.append, QoSProfile(
            depth=5, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL))
        t0 = time.monotonic()
        while pub_img.get_subscription_count() < 1:
            assert time.monotonic() - t0 < 10, "the node did not subscribe"
            ex.spin_once(timeout_sec=0.05)
        stamp = [200]

        def centre_errors():
            """One RGB-only frame through the node's topics -> each published object's centre error (m)."""
            stamp[0] += 1
            h = Header(frame_id=FRAME)
            h.stamp.sec = stamp[0]
            pub_info.publish(cv.make_camera_info(K, W, H, h))
            pub_img.publish(cv.numpy_to_image(frame["rgb"], "rgb8", h))
            t1 = time.monotonic()
            while not clouds or clouds[-1].header.stamp.sec != stamp[0]:
                assert time.monotonic() - t1 < WAIT, "no cloud"
                ex.spin_once(timeout_sec=0.05)
            data = cv.cloud_to_numpy(clouds[-1])
            ids = sorted(set(data["instance"].tolist()))
            assert len(ids) == len(objects)
            # RGB only: the cloud is the placed mesh's surface, its centroid the object's centre
            return [np.linalg.norm(centres - data["xyz"][data["instance"] == i].mean(0), axis=1).min() for i in ids]

        assert node._plane is None
        guessed = centre_errors()
        n, d = plane
        res = send(ParameterValue(type=ParameterType.PARAMETER_DOUBLE_ARRAY, double_array_value=[*n, d]))
        assert res.successful, res.reason
        placed = centre_errors()
        assert max(placed) < max(o.radius for o in objects) and max(placed) < max(guessed) / 3
        res = send(ParameterValue(type=ParameterType.PARAMETER_DOUBLE_ARRAY, double_array_value=[0.0, 1.0, 0.0, -1.0]))
        assert not res.successful and "table_plane" in res.reason and "not above it" in res.reason
        res = send(ParameterValue(type=ParameterType.PARAMETER_INTEGER_ARRAY, integer_array_value=[0, 0, 0, 0]))
        assert res.successful, res.reason
        assert node._plane is None


def test_table_frame_through_tf2_ros_when_installed(tmp_path_factory, scene, monkeypatch):
    """table_frame: the plane is the z = 0 plane of that TF frame in the image's frame, looked up per frame
    (a stand-in with tf2_ros's Buffer / TransformListener / lookup_transform layout); a failed lookup falls
    back to table_plane and says so; without tf2_ros the node says so once and uses table_plane."""
    import types

    from rclpy.parameter import Parameter
    from scipy.spatial.transform import Rotation

    from dibr_ros.perception.geometry import rotation_z_to

    frame, objects, K, (n, d) = scene
    # the table frame: z along the table's normal, origin at the camera's foot on the table
    quat = Rotation.from_matrix(rotation_z_to(n)).as_quat()  # x, y, z, w
    origin = -d * np.asarray(n)
    lookups, fail = [], []

    class Buffer:
        def lookup_transform(self, target, source, time):
            lookups.append((target, source))
            if fail:
                raise RuntimeError("\"table\" passed to lookupTransform argument source_frame does not exist")
            v = types.SimpleNamespace
            return v(transform=v(translation=v(x=origin[0], y=origin[1], z=origin[2]),
                                 rotation=v(x=quat[0], y=quat[1], z=quat[2], w=quat[3])))

    listeners = []
    tf2 = types.ModuleType("tf2_ros")
    tf2.Buffer = Buffer
    tf2.TransformListener = lambda buffer, node: listeners.append((buffer, node))
    with _InProcess(tmp_path_factory, 61) as rig:
        params = [Parameter("use_depth", value=False), Parameter("table_frame", value="table")]
        monkeypatch.setitem(sys.modules, "tf2_ros", tf2)
        node = rig.perception(*params)
        assert len(listeners) == 1 and listeners[0][1] is node
        h = Header(frame_id=FRAME)
        got = node._table_plane(h)
        assert lookups[-1] == (FRAME, "table")
        np.testing.assert_allclose(got[0], n, atol=1e-9)
        assert got[1] == pytest.approx(d)
        # the frame through the pipeline with that plane: metric placement
        res = node._pipeline.process(frame["rgb"], K, plane=got)
        centres = np.array([o.center for o in objects])
        assert all(np.linalg.norm(centres - o.center, axis=1).min() < max(o.radius for o in objects)
                   for o in res.objects) and len(res.objects) == len(objects)
        fail.append(1)
        assert node._table_plane(h) is None  # no table_plane either
        assert "table_frame 'table'" in node.stats.last_error and "no table plane used" in node.stats.last_error
        monkeypatch.setitem(sys.modules, "tf2_ros", None)  # not installed
        plain = rig.perception(*params)
        assert plain._tf_buffer is None and plain._table_plane(h) is None
