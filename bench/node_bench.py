"""Latency of the perception node: image arrival -> ~/points publication, and behaviour under 30 Hz input.

Starts ``perception_node`` as its own process (one per scenario), publishes synthetic 640x480 tabletop
frames (image + 32FC1 depth + camera_info, RELIABLE) from this process and reports:

* ``node`` latency: the node's own measurement from image arrival (subscription callback) to the
  ~/points publish call, p50/p95 over the frames, read from /diagnostics (``latency_node_total_*``);
* ``e2e`` latency: publish here -> ~/points received here (adds DDS transport of both messages);
* the pipeline stage split (p50 ms);
* with input at ``--rate`` Hz for ``--burst-s`` seconds: frames sent / processed / dropped (newest wins)
  and whether the newest frame of the burst was the one processed last.

    .venv/bin/python bench/node_bench.py [--device cpu] [--frames 20] [--objects 1 5] [--no-debug]
        [--watch-debug]

The node draws ``~/debug_image`` only while it has a subscriber: ``--watch-debug`` subscribes to it here (as
an RViz image panel would), so the overlay's cost is in the figures; without it nobody watches.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import threading
import time

import numpy as np

# A benchmark's ROS traffic stays on this machine unless the caller says otherwise (the installed node
# itself never forces it: real robots need discovery).
os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

import rclpy  # noqa: E402
from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy  # noqa: E402
from sensor_msgs.msg import CameraInfo, Image, PointCloud2  # noqa: E402
from std_msgs.msg import Header  # noqa: E402

from dibr_ros.perception.synthetic import tabletop_scene  # noqa: E402
from dibr_ros.ros import conversions as cv  # noqa: E402

W, H = 640, 480


def weights_path(tmpdir: str) -> tuple[str, str]:
    shipped = os.path.join(REPO, "dibr_ros", "weights", "default.pt")
    if os.path.isfile(shipped):
        return shipped, "shipped"
    from dibr_ros.model.checkpoint import save_checkpoint
    from dibr_ros.model.predictor import Predictor

    pred = Predictor.from_config(seed=0)
    path = os.path.join(tmpdir, "random.pt")
    save_checkpoint(path, pred.network, pred.network.config, {})
    return path, "random-init (shipped weights absent)"


class Client:
    def __init__(self, domain: int, watch_debug: bool = False):
        self.ctx = rclpy.Context()
        rclpy.init(context=self.ctx, domain_id=domain)
        self.node = rclpy.create_node("dibr_bench_client", context=self.ctx)
        rel = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        self.pub_img = self.node.create_publisher(Image, "/image", rel)
        self.pub_depth = self.node.create_publisher(Image, "/depth", rel)
        self.pub_info = self.node.create_publisher(CameraInfo, "/camera_info", rel)
        self.lock = threading.Lock()
        self.points: dict[int, float] = {}
        self.diag = None
        latched = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE,
                             durability=DurabilityPolicy.TRANSIENT_LOCAL)
        self.sub_points = self.node.create_subscription(PointCloud2, "/dibr_perception/points", self._on_points,
                                                        latched)
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diag, rel)
        self.debug_frames = 0
        self.sub_debug = self.node.create_subscription(Image, "/dibr_perception/debug_image",
                                                       self._on_debug, rel) if watch_debug else None
        self.ex = SingleThreadedExecutor(context=self.ctx)
        self.ex.add_node(self.node)
        self.running = True
        self.thread = threading.Thread(target=self._spin, daemon=True)
        self.thread.start()

    def _spin(self):
        while self.running and self.ctx.ok():
            self.ex.spin_once(timeout_sec=0.02)

    def _on_points(self, msg):
        t = time.perf_counter()
        with self.lock:
            self.points[msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec] = t

    def _on_debug(self, msg):
        with self.lock:
            self.debug_frames += 1

    def _on_diag(self, msg):
        with self.lock:
            self.diag = {v.key: v.value for v in msg.status[0].values}

    def send(self, frame, K, stamp_ns: int) -> float:
        h = Header(frame_id="cam_optical")
        h.stamp.sec, h.stamp.nanosec = divmod(stamp_ns, 10**9)
        info = cv.make_camera_info(K, W, H, h)
        depth = cv.numpy_to_image(frame["depth"], "32FC1", h)
        img = cv.numpy_to_image(frame["rgb"], "rgb8", h)
        self.pub_info.publish(info)
        self.pub_depth.publish(depth)
        t = time.perf_counter()
        self.pub_img.publish(img)
        return t

    def wait(self, stamp_ns: int, timeout: float) -> float | None:
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            with self.lock:
                if stamp_ns in self.points:
                    return self.points[stamp_ns]
            time.sleep(0.002)
        return None

    def close(self):
        self.running = False
        self.thread.join(2)
        self.ex.shutdown()
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.ctx)


def start_node(env, weights, device, debug, log_path, extra=()):
    cmd = [sys.executable, "-m", "dibr_ros.ros.perception_node", "--ros-args",
           "--params-file", os.path.join(REPO, "config", "perception.yaml"),
           "-p", f"device:={device}", "-p", f"weights:={weights}", "-p", "input_reliability:=reliable",
           "-p", f"publish_debug_image:={'true' if debug else 'false'}", "-p", "diagnostic_period:=0.25"]
    for kv in extra:
        cmd += ["-p", kv]
    log = open(log_path, "wb")
    proc = subprocess.Popen(cmd, env=env, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
    t0 = time.monotonic()
    while time.monotonic() - t0 < 180:
        with open(log_path, "rb") as f:
            text = f.read().decode(errors="replace")
        if "ready:" in text:
            return proc, log
        if proc.poll() is not None:
            raise SystemExit(f"node exited during startup:\n{text[-2000:]}")
        time.sleep(0.1)
    proc.kill()
    raise SystemExit("node did not become ready in 180 s")


def stop_node(proc, log):
    import signal

    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    log.close()


def pct(x, q):
    return float(np.percentile(np.asarray(x), q)) if len(x) else float("nan")


def scenario(n_objects, args, env, weights, domain, tmpdir):
    frame, objects, K, _ = tabletop_scene(n_objects=n_objects, seed=1, width=W, height=H)
    proc, log = start_node(env, weights, args.device, not args.no_debug,
                           os.path.join(tmpdir, f"node_{n_objects}.log"), args.param)
    client = Client(domain, args.watch_debug)
    out = {"objects_in_scene": len(objects)}
    try:
        t0 = time.monotonic()
        while min(client.pub_img.get_subscription_count(), client.pub_depth.get_subscription_count(),
                  client.pub_info.get_subscription_count(), client.sub_points.get_publisher_count(),
                  client.sub_debug.get_publisher_count() if client.sub_debug else 1) < 1:
            if time.monotonic() - t0 > 30:
                raise SystemExit("node and client did not discover each other in 30 s")
            time.sleep(0.05)
        stamp = 1_000_000_000_000
        # The node warms its pipeline up at startup; extra warm-up frames here are optional.
        for _ in range(args.warmup):
            stamp += 10**8
            client.send(frame, K, stamp)
            if client.wait(stamp, 120) is None:
                raise SystemExit("no output for a warm-up frame")
        e2e = []
        for _ in range(args.frames):
            stamp += 10**8
            t = client.send(frame, K, stamp)
            r = client.wait(stamp, 60)
            if r is not None:
                e2e.append((r - t) * 1e3)
        time.sleep(0.6)
        with client.lock:
            diag = dict(client.diag or {})
        out["e2e_ms"] = {"p50": pct(e2e, 50), "p95": pct(e2e, 95), "n": len(e2e), "all": [round(x, 1) for x in e2e]}
        # The diagnostics window (last 300 frames) spans warm-up + measured frames here.
        out["node_ms"] = {"p50": float(diag["latency_node_total_p50_ms"]),
                          "p95": float(diag["latency_node_total_p95_ms"])}
        out["image_to_points_ms"] = {"p50": float(diag["latency_image_to_points_p50_ms"]),
                                     "p95": float(diag["latency_image_to_points_p95_ms"])}
        out["stages_p95_ms"] = {k[len("latency_"):-len("_p95_ms")]: float(v) for k, v in diag.items()
                                if k.startswith("latency_") and k.endswith("_p95_ms")}
        out["stages_p50_ms"] = {k[len("latency_"):-len("_p50_ms")]: float(v) for k, v in diag.items()
                                if k.startswith("latency_") and k.endswith("_p50_ms")}
        out["objects_found"] = int(diag["objects_last_frame"])
        with client.lock:
            out["debug_images_received"] = client.debug_frames
        # Burst at args.rate Hz: the node must drop, not queue.
        before = dict(diag)
        sent = []
        period = 1.0 / args.rate
        t_next = time.perf_counter()
        for _ in range(int(args.burst_s * args.rate)):
            stamp += 10**8
            client.send(frame, K, stamp)
            sent.append(stamp)
            t_next += period
            time.sleep(max(0.0, t_next - time.perf_counter()))
        last_done = client.wait(sent[-1], 60) is not None
        time.sleep(1.0)
        with client.lock:
            done = [s for s in sent if s in client.points]
            diag = dict(client.diag or {})
        out["burst"] = {
            "rate_hz": args.rate, "sent": len(sent), "processed": len(done),
            "dropped_newer": int(diag["frames_dropped_newer"]) - int(before["frames_dropped_newer"]),
            "dropped_unmatched": int(diag["frames_dropped_unmatched"]) - int(before["frames_dropped_unmatched"]),
            "received_by_node": int(diag["frames_received"]) - int(before["frames_received"]),
            "newest_processed": bool(last_done),
            "measured_input_hz": float(diag["input_rate_hz"]),
        }
        out["device"] = diag.get("device", "")
    finally:
        client.close()
        stop_node(proc, log)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--objects", type=int, nargs="+", default=[1, 5])
    ap.add_argument("--frames", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=0, help="unmeasured frames first (also in node p50/p95)")
    ap.add_argument("--rate", type=float, default=30.0)
    ap.add_argument("--burst-s", type=float, default=3.0)
    ap.add_argument("--no-debug", action="store_true", help="publish_debug_image:=false")
    ap.add_argument("--watch-debug", action="store_true", help="subscribe to ~/debug_image (the node then draws it)")
    ap.add_argument("--param", action="append", default=[], metavar="NAME:=VALUE",
                    help="extra node parameter (repeatable)")
    ap.add_argument("--json", help="also write the results here")
    args = ap.parse_args()
    import tempfile

    tmpdir = tempfile.mkdtemp(prefix="dibr_node_bench_")
    domain = 1 + (os.getpid() * 37 + 11) % 100
    env = dict(os.environ, ROS_DOMAIN_ID=str(domain), ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST")
    os.environ.setdefault("FASTDDS_DEFAULT_PROFILES_FILE", env.setdefault(
        "FASTDDS_DEFAULT_PROFILES_FILE", os.path.join(REPO, "config", "fastdds_shm.xml")))
    env["PYTHONPATH"] = REPO + os.pathsep + env.get("PYTHONPATH", "")
    weights, kind = weights_path(tmpdir)
    info = {"machine": f"{platform.node()} {os.cpu_count()} CPUs, load avg {os.getloadavg()}",
            "weights": kind, "device": args.device, "debug_image": not args.no_debug,
            "debug_watched": args.watch_debug, "params": args.param,
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    results = {}
    for n in args.objects:
        results[n] = scenario(n, args, env, weights, domain, tmpdir)
        r = results[n]
        i2p, nd, e2e = r["image_to_points_ms"], r["node_ms"], r["e2e_ms"]
        print(f"{n} object(s) [{r['objects_found']} found]: image arrival -> points p50 {i2p['p50']:.1f} ms, "
              f"p95 {i2p['p95']:.1f} ms; complete set -> points p50 {nd['p50']:.1f}, p95 {nd['p95']:.1f} ms; "
              f"e2e p50 {e2e['p50']:.1f}, p95 {e2e['p95']:.1f} ms (n={e2e['n']})", flush=True)
        print("   stages p50/p95 ms: " + ", ".join(f"{k} {v:.1f}/{r['stages_p95_ms'][k]:.1f}"
                                                   for k, v in r["stages_p50_ms"].items()), flush=True)
        print(f"   e2e per frame ms: {e2e['all']}", flush=True)
        b = r["burst"]
        print(f"   {b['rate_hz']:.0f} Hz burst: sent {b['sent']}, node received {b['received_by_node']}, processed "
              f"{b['processed']}, dropped (newest wins) {b['dropped_newer']}, unmatched {b['dropped_unmatched']}, "
              f"newest frame processed: {b['newest_processed']}", flush=True)
    info["load_after"] = os.getloadavg()
    print(json.dumps(info))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"info": info, "results": results}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
