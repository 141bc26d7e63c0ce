"""Score the non-learned baselines on the fixed evaluation views of val, test and ood.

    .venv/bin/python bench/eval_baselines.py [--objects 40 --inputs 4 --views 8 --size 128 --iou-points 20000]
        [--out bench/RESULTS_data.md]

Each split's views are rendered once (same seeded code as ``python -m dibr_ros.data render``) and every
method is scored on the same items with :func:`dibr_ros.eval.evaluate.evaluate`. Writes a markdown table per
split (objects, input views, CPU seconds) to ``--out``.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from dibr_ros.data import library
from dibr_ros.eval.evaluate import BaselineMethod, eval_items, evaluate

METHODS = (("depth", "visible depth surface (cloud)"), ("mirror", "depth + mirror through fitted centre (cloud)"),
           ("sphere", "sphere fitted to silhouette + depth"), ("hull", "oracle: convex hull of the ground truth"))
COLS = (("fscore@0.05", "F@0.05"), ("fscore@0.10", "F@0.10"), ("precision@0.10", "P@0.10"),
        ("recall@0.10", "R@0.10"), ("chamfer_l1", "CD-L1"), ("chamfer_l1_mm", "CD-L1 mm"), ("iou_3d", "IoU 3D"),
        ("sil_iou_input", "sil IoU in"), ("sil_iou_novel", "sil IoU novel"))


def fmt(x: float) -> str:
    return "n/a" if x != x else f"{x:.3f}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--objects", type=int, default=40, help="objects per split (ood: all if fewer)")
    ap.add_argument("--inputs", type=int, default=4)
    ap.add_argument("--views", type=int, default=8)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--iou-points", type=int, default=20000)
    ap.add_argument("--splits", nargs="+", default=["val", "test", "ood"])
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "RESULTS_data.md"))
    args = ap.parse_args()
    lines = ["# Baselines on the fixed evaluation views (data/metrics issue)", "",
             f"Command: `.venv/bin/python bench/eval_baselines.py --objects {args.objects} --inputs {args.inputs} "
             f"--views {args.views} --size {args.size} --iou-points {args.iou_points}`  ",
             f"Machine: {platform.machine()} CPU ({os.cpu_count()} cores, shared), {platform.python_version()}, "
             f"date {datetime.date.today().isoformat()}.", "",
             "Protocol: per object the first N objects of the split (list order), 8 seeded renders at "
             f"{args.size}x{args.size} (30 degree camera at 4 bounding-sphere radii from the object centre, whole "
             "object in frame, azimuth uniform, elevation 0-70 deg, roll +-10 deg, random lights, true colours); "
             f"each of the first {args.inputs} views is the input in turn. Metrics in the input view's frame "
             "(optical axes, origin = object centre, unit = bounding-sphere radius): Chamfer-L1 = average of both "
             "directions' mean distances (10k surface samples, point-to-triangle), F-score/precision/recall at "
             f"tau = 0.05/0.10 radius, 3D IoU by {args.iou_points} Monte-Carlo points with a per-part "
             "ray-parity vote (n/a for point clouds), silhouette IoU of the shape re-rendered in the input view and "
             "in the 7 other views (n/a for clouds). CD-L1 mm = Chamfer at real object size. Baselines are "
             "placed by the input depth (the object centre only fixes the shared frame origin).", ""]
    for split in args.splits:
        n = len(library.list_objects(split))
        n_obj = min(n, args.objects)
        t0 = time.process_time()
        items = list(eval_items(split, args.views, args.size, 0, n_obj))
        t_render = time.process_time() - t0
        lines += [f"## {split} ({n_obj} of {n} objects, {n_obj * args.inputs} input views; render "
                  f"{t_render:.0f} s CPU)", "",
                  "| method | " + " | ".join(c[1] for c in COLS) + " | CPU s |",
                  "|---|" + "---|" * (len(COLS) + 1)]
        for kind, label in METHODS:
            t0 = time.process_time()
            res = evaluate(BaselineMethod(kind), items, n_inputs=args.inputs, n_iou_points=args.iou_points,
                           progress=False)
            dt = time.process_time() - t0
            s = res["summary"]
            lines.append(f"| {label} | " + " | ".join(fmt(s[c[0]]) for c in COLS) + f" | {dt:.0f} |")
            print(split, kind, res["n_objects"], res["n_views"], {k: round(v, 3) for k, v in s.items()},
                  f"{dt:.0f}s", flush=True)
        lines.append("")
    with open(args.out, "w") as f:
        f.write("\n".join(lines) + "\n")
    print(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
