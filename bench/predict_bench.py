"""Predictor benchmark: end-to-end latency, quality vs baselines, contact sheet.

    .venv/bin/python bench/predict_bench.py                       # latency, batch 1/8/32, every device
    .venv/bin/python bench/predict_bench.py --quality --max-objects 20 --splits val test ood
    .venv/bin/python bench/predict_bench.py --sheet bench/contact_sheet_model.png

Latency: ``Predictor.predict`` on uint8 crops (crop preprocessing included) of ``--crop`` pixels rendered
from test objects; CUDA timed with CUDA events (warm-up first), CPU with perf_counter; median over
``--reps``. Quality: :func:`dibr_ros.eval.evaluate` (the data/metrics protocol: 128x128 seeded views, each
of the first ``--inputs`` views as input, view-frame metrics) for the shipped model and the baselines.
The contact sheet shows, for 16 test objects: input | prediction in the input view | prediction in another
view | ground truth in that view. Writes JSON with ``--json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from dibr_ros.model import Predictor
from dibr_ros.model.losses import shade_vertices, view_to_world
from dibr_ros.model.rendering import render_vertex_colors
from dibr_ros.model.sampling import CropSampler, load_objects


def _crops(n: int, size: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """rgb (n, S, S, 3) uint8, mask (n, S, S) bool, depth (n, S, S) float32, focal (n,) px of test renders."""
    objs = load_objects("test", count=n)
    k = len(objs["names"])
    idx = torch.arange(n) % k  # more crops than test objects: repeat them (other views)
    b = CropSampler(objs, views=1, size=size, crop_scale=1.4, seed=seed).sample(n, index=idx)
    rgb = (b["rgb"][:, 0] * 255).round().byte().numpy()
    return rgb, b["mask"][:, 0].numpy() > 0, b["depth"][:, 0].numpy(), b["K"][:, 0, 0, 0].numpy()


def latency(devices: list[str], batches: list[int], crop: int, reps: int, path: str | None) -> list[dict]:
    rgb_all, mask_all, depth_all, focal_all = _crops(max(batches), crop)
    rows = []
    for dev in devices:
        p = Predictor.load(path, device=dev)
        for bs in batches:
            rgb, mask = rgb_all[:bs], mask_all[:bs]
            # an RGB-D network is timed with its depth input (the pipeline's path with a depth camera)
            kw = {"depth": depth_all[:bs], "focal": focal_all[:bs]} if p.uses_depth else {}
            for _ in range(3):
                p.predict(rgb, mask, **kw)
            times = []
            for _ in range(reps):
                if dev.startswith("cuda"):
                    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                    torch.cuda.synchronize()
                    start.record()
                    p.predict(rgb, mask, **kw)
                    end.record()
                    torch.cuda.synchronize()
                    times.append(start.elapsed_time(end))
                else:
                    t0 = time.perf_counter()
                    p.predict(rgb, mask, **kw)
                    times.append(1e3 * (time.perf_counter() - t0))
            med = statistics.median(times)
            rows.append({"device": dev, "batch": bs, "depth": bool(kw), "ms_per_call": round(med, 3),
                         "ms_per_object": round(med / bs, 3),
                         "threads": torch.get_num_threads() if dev == "cpu" else None})
            print(f"{dev:6s} batch {bs:3d}: {med:8.2f} ms/call  {med / bs:7.2f} ms/object", flush=True)
    return rows


def quality(splits: list[str], max_objects: int, inputs: int, path: str | None, baselines: list[str]) -> dict:
    from dibr_ros.eval.evaluate import BaselineMethod, PredictorMethod, eval_items, evaluate

    methods = {"dibr (shipped)": PredictorMethod(Predictor.load(path, device="cpu"))}
    methods.update({f"baseline:{b}": BaselineMethod(b) for b in baselines})
    table = {}
    for split in splits:
        items = list(eval_items(split, max_objects=max_objects))
        for name, method in methods.items():
            res = evaluate(method, items, n_inputs=inputs, progress=False)
            table[f"{split}/{name}"] = {"n_objects": res["n_objects"], "n_views": res["n_views"], **res["summary"]}
            s = res["summary"]
            print(f"{split:5s} {name:16s} n={res['n_views']:4d}  F@0.05 {s['fscore@0.05']:.3f}  F@0.10 "
                  f"{s['fscore@0.10']:.3f}  IoU3D {s['iou_3d']:.3f}  CD-L1 {s['chamfer_l1']:.4f}  "
                  f"sil-in {s['sil_iou_input']:.3f}  sil-novel {s['sil_iou_novel']:.3f}", flush=True)
    return table


def contact_sheet(out_path: str, path: str | None, n: int = 16, size: int = 96) -> None:
    import cv2

    p = Predictor.load(path, device="cpu")
    objs = load_objects("test", count=n)
    k = len(objs["names"])
    b = CropSampler(objs, views=2, size=size, crop_scale=p.crop_scale, seed=7).sample(k, index=torch.arange(k))
    rgb = (b["rgb"][:, 0] * 255).round().byte().numpy()
    m = p.predict(rgb, b["mask"][:, 0].numpy() > 0)
    shaded = shade_vertices(m.vertices, m.faces, m.colors, m.sh)
    world = view_to_world(m.vertices, b["R"][:, 0])
    rows = []
    for j in range(2):
        out = render_vertex_colors(world, m.faces, shaded, b["R"][:, j], b["eye"][:, j], b["K"][:, j], size)
        rows.append(out["rgb"])
    tiles = torch.cat([b["rgb"][:, 0], rows[0], rows[1], b["rgb"][:, 1]], 2)  # (N, S, 4S, 3)
    half = (k + 1) // 2
    pad = torch.zeros(2 * half - k, *tiles.shape[1:])
    tiles = torch.cat([tiles, pad])
    sheet = torch.cat([torch.cat(list(tiles[:half]), 0), torch.cat(list(tiles[half:]), 0)], 1)
    img = (sheet.clamp(0, 1) * 255).round().byte().numpy()
    cv2.imwrite(out_path, img[..., ::-1])
    print(f"contact sheet: {out_path} ({k} test objects: input | pred input view | pred other view | "
          f"ground truth other view)")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--weights", default=None, help="checkpoint (default: shipped dibr_ros/weights/default.pt)")
    ap.add_argument("--devices", nargs="*", default=None, help="default: cpu and cuda when available")
    ap.add_argument("--batches", nargs="*", type=int, default=[1, 8, 32])
    ap.add_argument("--crop", type=int, default=128, help="crop side in pixels fed to predict()")
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    ap.add_argument("--no-latency", action="store_true")
    ap.add_argument("--quality", action="store_true")
    ap.add_argument("--splits", nargs="*", default=["val", "test", "ood"])
    ap.add_argument("--max-objects", type=int, default=20)
    ap.add_argument("--inputs", type=int, default=2, help="views per object used as input")
    ap.add_argument("--baselines", nargs="*", default=["depth", "sphere", "hull"])
    ap.add_argument("--sheet", default=None, help="write the contact sheet PNG here")
    ap.add_argument("--json", default=None)
    a = ap.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    devices = a.devices or (["cpu"] + (["cuda"] if torch.cuda.is_available() else []))
    machine = (torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU") + \
        f"; CPU {platform.machine()} x{os.cpu_count()}, torch {torch.__version__}, {torch.get_num_threads()} threads"
    print("machine:", machine)
    res: dict = {"machine": machine}
    try:
        if not a.no_latency:
            res["latency"] = latency(devices, a.batches, a.crop, a.reps, a.weights)
        if a.quality:
            res["quality"] = quality(a.splits, a.max_objects, a.inputs, a.weights, a.baselines)
        if a.sheet:
            contact_sheet(a.sheet, a.weights)
    except (ValueError, OSError) as e:
        print(f"predict_bench: error: {e}", file=sys.stderr)
        return 2
    if a.json:
        with open(a.json, "w") as f:
            json.dump(res, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
