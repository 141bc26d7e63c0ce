"""Soak benchmark (issue 8 item 4): perception_node fed by sim_camera for N frames.

    .venv/bin/python bench/soak.py --frames 2000 --rate 4

sim_camera pre-renders ``--cache`` frames (a seeded scene, orbiting camera) and replays them with fresh
stamps at ``--rate`` Hz, RELIABLE, so the node sees a steady stream faster than pybullet renders. The node
runs in its own process; this script samples its resident memory (VmRSS), open file descriptors and
threads from /proc after warm-up (``--warmup`` frames) and at the end, and reads the node's counters
(processed, dropped, failed) from /diagnostics. Exit status 1 if RSS grew >= 5 % after warm-up, fds or
threads grew, or a frame failed.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

# A benchmark's ROS traffic stays on this machine unless the caller says otherwise (the installed node
# itself never forces it: real robots need discovery).
os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from dibr_ros.demo import RosSession  # noqa: E402


def proc_stats(pid: int) -> dict:
    """rss_mb, fds, threads of a live process."""
    with open(f"/proc/{pid}/status") as f:
        st = dict(ln.split(":", 1) for ln in f if ":" in ln)
    return {"rss_mb": int(st["VmRSS"].split()[0]) / 1024.0, "threads": int(st["Threads"]),
            "fds": len(os.listdir(f"/proc/{pid}/fd"))}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--frames", type=int, default=2000, help="frames published by sim_camera")
    ap.add_argument("--rate", type=float, default=4.0, help="sim_camera frames per second")
    ap.add_argument("--cache", type=int, default=16, help="pre-rendered frames replayed in a cycle")
    ap.add_argument("--warmup", type=int, default=50, help="frames before the reference sample")
    ap.add_argument("--weights", default="")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--width", type=int, default=640)
    ap.add_argument("--height", type=int, default=480)
    ap.add_argument("--domain-id", type=int, default=int(os.environ.get("ROS_DOMAIN_ID", "44") or 44))
    ap.add_argument("--out", default=os.path.join(REPO, "out", "soak"))
    args = ap.parse_args(argv)
    sim = dict(objects="test", seed=7, max_objects=3, rate=args.rate, cache_frames=args.cache,
               max_frames=args.frames, orbit_deg_per_s=30.0, reliability="reliable", width=args.width,
               height=args.height)
    node = dict(device=args.device, weights=args.weights, input_reliability="reliable", use_depth=True)
    t0 = time.monotonic()
    samples = []
    with RosSession(os.path.join(args.out, "logs"), sim, node, args.domain_id, keep_sim_frames=4) as s:
        pid = s.procs["perception_node"].pid
        ref = None
        last_seen, idle_since = -1, time.monotonic()
        while True:
            s.check_children()
            s.spin(1.0)
            s._out.clear()  # outputs are not paired here; only counters matter
            seen = s.sim_frames_seen
            if ref is None and seen >= args.warmup:
                ref = proc_stats(pid) | {"frame": seen, "t": time.monotonic() - t0}
                print(f"soak: warm-up done at frame {seen}: {ref}", flush=True)
            if seen != last_seen:
                last_seen, idle_since = seen, time.monotonic()
                if seen % 100 == 0:
                    samples.append(proc_stats(pid) | {"frame": seen})
                    print(f"soak: {seen}/{args.frames} frames, node {samples[-1]}", flush=True)
            if seen >= args.frames or time.monotonic() - idle_since > 30:
                break
        s.spin(3.0)  # the node finishes its frame in flight and reports
        end = proc_stats(pid) | {"frame": s.sim_frames_seen, "t": time.monotonic() - t0}
        diag = dict(s.diag)
    if ref is None:
        print(f"soak: only {s.sim_frames_seen} frames arrived (< warm-up {args.warmup})", file=sys.stderr)
        return 1
    growth = (end["rss_mb"] - ref["rss_mb"]) / ref["rss_mb"] * 100.0
    counts = {k[7:]: int(v) for k, v in diag.items() if k.startswith("frames_") and v.isdigit()}
    print(f"soak: {end['frame']} frames published in {end['t']:.0f} s; node counters {counts}")
    print(f"soak: RSS {ref['rss_mb']:.1f} MB after warm-up (frame {ref['frame']}) -> {end['rss_mb']:.1f} MB "
          f"({growth:+.2f} %); fds {ref['fds']} -> {end['fds']}; threads {ref['threads']} -> {end['threads']}")
    print(f"soak: latency total p50 {diag.get('latency_total_p50_ms')} ms p95 {diag.get('latency_total_p95_ms')} ms; "
          f"last error '{diag.get('last_error', '')}'")
    ok = growth < 5.0 and end["fds"] <= ref["fds"] and end["threads"] <= ref["threads"] \
        and counts.get("failed", 0) == 0
    print("soak: PASS" if ok else "soak: FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
