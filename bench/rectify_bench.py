"""Cost of ``rectify: auto`` per frame: undistorting a rgb8 + 16UC1/32FC1 depth pair (+ optional labels).

    .venv/bin/python bench/rectify_bench.py                 # 640x480, plumb_bob, 200 frames
    .venv/bin/python bench/rectify_bench.py --size 1280 720 --threads 1

Prints the map build time (once per calibration) and the per-frame remap time (median, p95).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import cv2
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from dibr_ros.perception.rectify import Rectifier


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, nargs=2, default=(640, 480), metavar=("W", "H"))
    ap.add_argument("--frames", type=int, default=200)
    ap.add_argument("--threads", type=int, default=0, help="cv2.setNumThreads (0 = OpenCV default)")
    a = ap.parse_args()
    if a.threads:
        cv2.setNumThreads(a.threads)
    w, h = a.size
    K = np.array([[0.8 * w, 0, w / 2 - 0.5], [0, 0.8 * w, h / 2 - 0.5], [0, 0, 1]])
    D = [-0.28, 0.09, 0.0008, -0.0006, 0.0]
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
    depth = rng.uniform(0.3, 2.0, (h, w)).astype(np.float32)
    labels = rng.integers(0, 20, (h, w)).astype(np.int32)
    t0 = time.perf_counter()
    rect = Rectifier(K, D, "plumb_bob", (w, h))
    build = (time.perf_counter() - t0) * 1e3
    rows = []
    for name, fn in (("rgb8 (linear)", lambda: rect.rgb(rgb)), ("depth 32FC1 (nearest)", lambda: rect.nearest(depth)),
                     ("labels int32 (nearest)", lambda: rect.nearest(labels)),
                     ("rgb + depth (a frame)", lambda: (rect.rgb(rgb), rect.nearest(depth)))):
        for _ in range(5):
            fn()
        ts = []
        for _ in range(a.frames):
            t = time.perf_counter()
            fn()
            ts.append((time.perf_counter() - t) * 1e3)
        rows.append((name, np.median(ts), np.percentile(ts, 95)))
    print(f"machine: {os.cpu_count()} CPUs, OpenCV {cv2.__version__}, {cv2.getNumThreads()} threads; {w}x{h}, "
          f"plumb_bob; maps built once in {build:.1f} ms")
    print("| remap | median ms | p95 ms |\n|---|---|---|")
    for name, med, p95 in rows:
        print(f"| {name} | {med:.2f} | {p95:.2f} |")


if __name__ == "__main__":
    main()
