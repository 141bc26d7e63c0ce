"""Per-stage latency of :class:`PerceptionPipeline` on synthetic 640x480 tabletop frames.

    python bench/pipeline_bench.py --objects 5 --frames 50 [--predictor sphere|default]
        [--clock wall|cpu] [--renderer opencv|dibr] [--no-debug] [--mode depth|color|labels] [--threads N]

``--clock cpu`` times stages with process CPU time (all threads) instead of wall time: on a machine shared
with other jobs it shows the work done, which is what a dedicated machine's wall time would be.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def run(objects: int = 5, frames: int = 50, predictor: str = "sphere", clock: str = "wall",
        renderer: str = "opencv", debug: bool = True, mode: str = "depth", seed: int = 0,
        device: str = "auto") -> dict:
    """Time ``frames`` frames (after 3 warm-up frames); returns {stage: {p50, p95, mean}} in ms + meta."""
    from dibr_ros.perception import pipeline as pipeline_module
    from dibr_ros.perception.pipeline import PerceptionPipeline
    from dibr_ros.perception.synthetic import SpherePredictor, tabletop_scene

    if predictor == "sphere":
        pred = SpherePredictor()
    else:
        from dibr_ros.model import Predictor

        pred = Predictor.load(None if predictor == "default" else predictor, device=device)
    if clock == "cpu":
        pipeline_module.time = type("CpuClock", (), {"perf_counter": staticmethod(time.process_time)})
    frame, objs, K, _ = tabletop_scene(objects, seed=seed)
    pipe = PerceptionPipeline(pred, {"segmentation": mode, "debug_image": debug, "debug_renderer": renderer})
    kwargs = {"depth": frame["depth"]} if mode != "color" else {}
    if mode == "labels":
        kwargs["labels"] = frame["labels"]
    for _ in range(3):
        pipe.process(frame["rgb"], K, **kwargs)
    rows = []
    for _ in range(frames):
        res = pipe.process(frame["rgb"], K, **kwargs)
        rows.append(res.timings)
    pipeline_module.time = time
    stats = {k: {"p50": float(np.percentile([r[k] for r in rows], 50)),
                 "p95": float(np.percentile([r[k] for r in rows], 95)),
                 "mean": float(np.mean([r[k] for r in rows]))} for k in rows[0]}
    return {
        "stages_ms": stats, "objects_found": len(res.objects), "objects": len(objs), "frames": frames,
        "predictor": predictor, "predictor_device": str(getattr(pred, "device", "cpu")), "clock": clock,
        "overlay": pipe.overlay_renderer if debug else "off", "mode": res.segmentation,
        "machine": f"{platform.node()} {platform.processor() or platform.machine()}, {os.cpu_count()} cpus",
        "loadavg": os.getloadavg(), "date": time.strftime("%Y-%m-%d %H:%M:%S"),
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--objects", type=int, default=5)
    ap.add_argument("--frames", type=int, default=50)
    ap.add_argument("--predictor", default="sphere", help="sphere | default | path to a checkpoint")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--clock", choices=("wall", "cpu"), default="wall")
    ap.add_argument("--renderer", choices=("opencv", "dibr", "auto"), default="opencv")
    ap.add_argument("--no-debug", action="store_true")
    ap.add_argument("--mode", choices=("depth", "color", "labels"), default="depth")
    ap.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0 = leave)")
    ap.add_argument("--json", default="", help="also write the result here")
    args = ap.parse_args(argv)
    if args.frames < 1 or args.objects < 0:
        print("benchmark: --frames must be >= 1 and --objects >= 0", file=sys.stderr)
        return 2
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    out = run(args.objects, args.frames, args.predictor, args.clock, args.renderer, not args.no_debug,
              args.mode, device=args.device)
    print(f"{out['machine']}  load {out['loadavg'][0]:.1f}  {out['date']}")
    print(f"predictor={out['predictor']} ({out['predictor_device']}) mode={out['mode']} overlay={out['overlay']} "
          f"clock={out['clock']} objects {out['objects_found']}/{out['objects']} frames={out['frames']}")
    print(f"{'stage':8s} {'p50 ms':>8s} {'p95 ms':>8s} {'mean ms':>8s}")
    for k, s in out["stages_ms"].items():
        print(f"{k:8s} {s['p50']:8.1f} {s['p95']:8.1f} {s['mean']:8.1f}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(out, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
