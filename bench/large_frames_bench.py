"""Which RGB-D frame sizes reach a subscriber over the active Fast DDS profile, best-effort vs reliable.

Publishes rgb8 image + 16UC1 depth pairs of increasing sizes (the node's input topics and QoS: KEEP_LAST
depth 1) from this process to a subscriber process, both with the same reliability, and prints per size and
reliability: pairs delivered / sent and the publish -> receive latency of the pairs that arrived. Run it
with the profile the pipeline uses (the Makefile and tests use the shipped one):

    source ../shared/ros-local.env
    FASTDDS_DEFAULT_PROFILES_FILE=$PWD/config/fastdds_shm.xml .venv/bin/python bench/large_frames_bench.py
    .venv/bin/python bench/large_frames_bench.py --sizes 4000x3000 --reliability best_effort --frames 10

The profile's SHM transport limits (segment_size, maxMessageSize) are printed with the results.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time

# A benchmark's ROS traffic stays on this machine unless the caller says otherwise (the installed node
# itself never forces it: real robots need discovery).
os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SIZES = ("640x480", "1920x1080", "2600x1950", "3264x2448", "4000x3000")


def _qos(reliability: str, depth: int = 1):
    from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy

    rel = ReliabilityPolicy.RELIABLE if reliability == "reliable" else ReliabilityPolicy.BEST_EFFORT
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=depth, reliability=rel)


def subscriber(reliability: str, depth: int = 1, compressed: bool = False) -> None:
    """Child process: print one JSON line per received image/depth (stamp, receive time, bytes)."""
    import rclpy
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import CompressedImage, Image
    from std_msgs.msg import String

    rclpy.init()
    node = rclpy.create_node("large_frames_sub")
    done = []

    def on(topic):
        def cb(msg):
            t = time.time_ns()
            st = msg.header.stamp
            print(json.dumps({"topic": topic, "stamp": st.sec * 10**9 + st.nanosec, "recv": t,
                              "bytes": len(msg.data)}), flush=True)
        return cb

    typ, (ti, td) = (CompressedImage, TOPICS_COMPRESSED) if compressed else (Image, ("/image", "/depth"))
    node.create_subscription(typ, ti, on("image"), _qos(reliability, depth))
    node.create_subscription(typ, td, on("depth"), _qos(reliability, depth))
    node.create_subscription(String, "/bench_done", lambda m: done.append(1), QoSProfile(
        depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL))
    print(json.dumps({"ready": True}), flush=True)
    while rclpy.ok() and not done:
        rclpy.spin_once(node, timeout_sec=0.1)
    node.destroy_node()
    rclpy.try_shutdown()


def profile_limits() -> str:
    path = os.environ.get("FASTDDS_DEFAULT_PROFILES_FILE", "")
    if not path or not os.path.isfile(path):
        return "FASTDDS_DEFAULT_PROFILES_FILE unset: Fast DDS defaults (SHM segment 512 KiB, UDP fragments)"
    text = open(path).read()
    text = re.sub(r"<!--.*?-->", "", text, flags=re.S)
    found = {k: re.search(rf"<{k}>\s*(\d+)\s*</{k}>", text) for k in ("segment_size", "maxMessageSize")}
    return f"{os.path.basename(path)}: " + ", ".join(
        f"{k} {int(m.group(1)) / 2**20:.0f} MiB" if m else f"{k} default" for k, m in found.items())


def camera_like_image(h: int, w: int):
    """(H, W, 3) uint8 with the smooth shading and edges of a real scene (random noise would not compress:
    a camera's JPEG is several times smaller than its raw frame)."""
    import numpy as np

    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    r = 128 + 100 * np.sin(x / 97.0) * np.cos(y / 131.0)
    g = 128 + 90 * np.cos((x + y) / 211.0)
    b = np.where(((x // 400) + (y // 300)) % 2 == 0, 60.0, 190.0)  # blocks: edges
    noise = np.random.default_rng(0).normal(0, 4, (h, w)).astype(np.float32)  # sensor noise
    return np.clip(np.stack([r + noise, g + noise, b + noise], -1), 0, 255).astype(np.uint8)


TOPICS_COMPRESSED = ("/image/compressed", "/depth/compressedDepth")


def run(reliability: str, sizes, frames: int, period: float, drain: float, writer: str | None = None,
        reader_depth: int = 1, compressed: bool = False) -> list[dict]:
    """One subscriber process with ``reliability``; the publishers use ``writer`` (default: the same)."""
    import numpy as np
    import rclpy
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import CompressedImage, Image
    from std_msgs.msg import Header, String

    sys.path.insert(0, REPO)
    from dibr_ros.ros.conversions import depth_to_compressed_depth, rgb_to_compressed

    proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--role", "sub", "--reliability",
                             reliability, "--reader-depth", str(reader_depth)] + (["--compressed"] * compressed),
                            stdout=subprocess.PIPE, text=True, cwd=REPO)
    assert json.loads(proc.stdout.readline()).get("ready")
    rclpy.init()
    node = rclpy.create_node("large_frames_pub")
    writer = writer or reliability
    typ, (ti, td) = (CompressedImage, TOPICS_COMPRESSED) if compressed else (Image, ("/image", "/depth"))
    pub_img = node.create_publisher(typ, ti, _qos(writer))
    pub_dep = node.create_publisher(typ, td, _qos(writer))
    pub_done = node.create_publisher(String, "/bench_done", QoSProfile(
        depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL))
    t0 = time.monotonic()
    while (pub_img.get_subscription_count() < 1 or pub_dep.get_subscription_count() < 1) \
            and time.monotonic() - t0 < 10:
        rclpy.spin_once(node, timeout_sec=0.05)
    time.sleep(0.5)
    sent = {}  # stamp -> size label
    sizes_mib = {}  # label -> (image MiB, depth MiB) on the wire, compressed
    for label in sizes:
        w, h = (int(v) for v in label.split("x"))
        if compressed:  # encoded once: a camera's JPEG q90 and a PNG depth of a slanted table with noise
            jpeg = bytes(rgb_to_compressed(camera_like_image(h, w)).data)
            table = np.linspace(0.6, 1.2, h, dtype=np.float32)[:, None] * np.ones((1, w), np.float32)
            noise = np.random.default_rng(1).normal(0, 0.002, (h, w)).astype(np.float32)  # 2 mm, as sensors
            png = bytes(depth_to_compressed_depth(table + noise).data)
            sizes_mib[label] = (len(jpeg) / 2**20, len(png) / 2**20)
        else:
            rgb = np.random.default_rng(0).integers(0, 255, (h, w, 3), dtype=np.uint8).tobytes()
            dep = np.full((h, w), 900, np.uint16).tobytes()
        for _ in range(frames):
            stamp = time.time_ns()
            hdr = Header(frame_id="cam")
            hdr.stamp.sec, hdr.stamp.nanosec = divmod(stamp, 10**9)
            if compressed:
                img = CompressedImage(header=hdr, format="rgb8; jpeg compressed bgr8")
                img.data = jpeg
                d = CompressedImage(header=hdr, format="16UC1; compressedDepth png")
                d.data = png
            else:
                img = Image(header=hdr, height=h, width=w, encoding="rgb8", step=3 * w)
                img.data = rgb
                d = Image(header=hdr, height=h, width=w, encoding="16UC1", step=2 * w)
                d.data = dep
            pub_dep.publish(d)
            pub_img.publish(img)
            sent[stamp] = label
            time.sleep(period)
        time.sleep(drain)
    pub_done.publish(String(data="done"))
    try:
        out, _ = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
    node.destroy_node()
    rclpy.try_shutdown()
    recv = {"image": {}, "depth": {}}
    for line in out.splitlines():
        rec = json.loads(line)
        if "topic" in rec:
            recv[rec["topic"]][rec["stamp"]] = rec["recv"]
    rows = []
    for label in sizes:
        w, h = (int(v) for v in label.split("x"))
        stamps = [s for s, lab in sent.items() if lab == label]
        lat_pairs = [max(recv["image"][s], recv["depth"][s]) - s for s in stamps
                     if s in recv["image"] and s in recv["depth"]]
        lat = sorted(x / 1e6 for x in lat_pairs)
        mib = sizes_mib.get(label, (3 * w * h / 2**20, 2 * w * h / 2**20))
        rows.append({"size": label, "reliability": f"{writer} -> {reliability}", "rgb_MiB": mib[0],
                     "depth_MiB": mib[1], "sent": len(stamps),
                     "images": sum(s in recv["image"] for s in stamps),
                     "depths": sum(s in recv["depth"] for s in stamps), "pairs": len(lat),
                     "p50_ms": lat[len(lat) // 2] if lat else None, "max_ms": lat[-1] if lat else None,
                     # which pairs (0 = the first of this size) did not arrive whole: a pattern tells
                     # start-up losses from losses in steady state
                     "lost": [i for i, s in enumerate(sorted(stamps))
                              if s not in recv["image"] or s not in recv["depth"]]})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--role", choices=("bench", "sub"), default="bench")
    ap.add_argument("--reliability", nargs="+", default=["best_effort", "reliable"],
                    choices=("best_effort", "reliable"))
    ap.add_argument("--writer", choices=("same", "best_effort", "reliable"), default="same",
                    help="publisher reliability (default: the subscriber's)")
    ap.add_argument("--reader-depth", type=int, default=1, help="subscriber KEEP_LAST depth")
    ap.add_argument("--compressed", action="store_true",
                    help="image_transport's compressed (JPEG q90) and compressedDepth (PNG) topics instead of raw")
    ap.add_argument("--sizes", nargs="+", default=list(SIZES))
    ap.add_argument("--frames", type=int, default=5, help="pairs per size")
    ap.add_argument("--period", type=float, default=0.5, help="s between pairs")
    ap.add_argument("--drain", type=float, default=1.5, help="s after each size before the next")
    args = ap.parse_args()
    if args.role == "sub":
        subscriber(args.reliability[0], args.reader_depth, args.compressed)
        return
    print(f"# profile: {profile_limits()}")
    kind = "JPEG + PNG compressed" if args.compressed else "rgb8+16UC1"
    print(f"# {args.frames} {kind} pairs per size, one every {args.period} s, KEEP_LAST 1 writers, "
          f"KEEP_LAST {args.reader_depth} reader")
    print("| size | image MiB | depth MiB | writer -> reader | images | depths | pairs/sent | latency p50 / max ms | "
          "pairs lost (index) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for rel in args.reliability:
        writer = None if args.writer == "same" else args.writer
        for r in run(rel, args.sizes, args.frames, args.period, args.drain, writer, args.reader_depth,
                     args.compressed):
            lat = f"{r['p50_ms']:.0f} / {r['max_ms']:.0f}" if r["pairs"] else "-"
            print(f"| {r['size']} | {r['rgb_MiB']:.1f} | {r['depth_MiB']:.1f} | {r['reliability']} | "
                  f"{r['images']} | {r['depths']} | {r['pairs']}/{r['sent']} | {lat} | "
                  f"{', '.join(map(str, r['lost'])) or '-'} |", flush=True)


if __name__ == "__main__":
    main()
