"""Depth segmentation benchmark: ``segment_depth`` on simulated tabletop scenes against the true instances.

    .venv/bin/python bench/segmentation_bench.py                    # writes bench/RESULTS_segmentation.md
    .venv/bin/python bench/segmentation_bench.py --seeds 100 101 --no-write --cache /tmp/segframes

Scenes: ``TabletopScene(SceneConfig(objects=<set>, seed=s, max_objects=3), CameraConfig(orbit_deg_per_s=180))``
for each set ("test", "ood") and seed, frames ``t = 0`` and ``t = 1`` (opposite sides of the table).
``segment_depth`` runs with the ``PipelineConfig`` defaults (``--colour``: followed by the pipeline's
colour split and merge of touching objects and self-occluded pieces, ``split_by_color`` and
``merge_by_color``). Detections are matched to the visible true objects (>= 100 px) by mask IoU (Hungarian,
a pair needs IoU > 0.1). Per set:

- mask IoU: mean over true objects (a missed object counts 0);
- P/R/F@10mm: ``dibr_ros.demo.shape_metrics`` of the matched detection's observed points against the true
  mesh, mean over matched objects, next to the same figures for the true mask's observed points ("truth");
- missed / extra: true objects without a detection, detections without a true object;
- pixels: of all true object pixels, the fraction the matched masks lose; of all mask pixels, the fraction
  on the table (true label 0) or on another object;
- with ``--noise-mm``, Gaussian depth noise (sigma = noise_mm * z^2, seeded) is added before segmenting;
- ms/call: wall time of the segmentation (median over frames, 3 calls per frame, best kept).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import os
import sys
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from e2e_bench import machine  # noqa: E402  (bench/ is this script's directory)

from dibr_ros.demo_report import shape_metrics  # noqa: E402
from dibr_ros.perception.pipeline import PipelineConfig, segment_rgbd  # noqa: E402

#: The shipped PipelineConfig's depth-segmentation settings (what the node runs), printed with each result.
CONFIG = PipelineConfig()
NO_COLOUR = dataclasses.replace(CONFIG, color_split=0.0, color_merge=0.0)
PARAMS = CONFIG.depth_segmentation_kwargs()
MIN_VISIBLE_PX = 100
MIN_IOU = 0.1


def frames(split: str, seeds, cache: str | None):
    """Yield (name, rgb, depth, K, labels, [(label, name, vertices, faces)]) per frame; cached as .npz if
    asked (a cache file without rgb is rendered again)."""
    for seed in seeds:
        path = os.path.join(cache, f"{split}_{seed}.npz") if cache else None
        z = np.load(path, allow_pickle=False) if path and os.path.exists(path) else None
        if z is not None and "f0_rgb" in z.files:
            n = int(z["n_frames"])
            for t in range(n):
                objs = [(int(z[f"f{t}_o{i}_label"]), str(z[f"f{t}_o{i}_name"]), z[f"f{t}_o{i}_v"],
                         z[f"f{t}_o{i}_f"]) for i in range(int(z[f"f{t}_nobj"]))]
                yield (f"{split}/{seed}/t{t}", z[f"f{t}_rgb"], z[f"f{t}_depth"], z[f"f{t}_K"], z[f"f{t}_labels"],
                       objs)
            continue
        from dibr_ros.sim.scene import CameraConfig, SceneConfig, TabletopScene

        store = {"n_frames": 2}
        out = []
        with TabletopScene(SceneConfig(objects=split, seed=seed, max_objects=3),
                           CameraConfig(orbit_deg_per_s=180.0)) as scene:
            for t in range(2):
                f = scene.render(t=float(t))
                objs = [(o.label, o.name, o.vertices, o.faces) for o in f.objects]
                out.append((f"{split}/{seed}/t{t}", f.rgb, f.depth, f.K, f.labels, objs))
                store.update({f"f{t}_rgb": f.rgb, f"f{t}_depth": f.depth, f"f{t}_K": f.K, f"f{t}_labels": f.labels,
                              f"f{t}_nobj": len(objs)})
                for i, (lab, name, v, fc) in enumerate(objs):
                    store.update({f"f{t}_o{i}_label": lab, f"f{t}_o{i}_name": name, f"f{t}_o{i}_v": v,
                                  f"f{t}_o{i}_f": fc})
        if path:
            os.makedirs(cache, exist_ok=True)
            np.savez_compressed(path, **store)
        yield from out


def evaluate(split: str, seeds, cache: str | None, noise_mm: float = 0.0, params: dict | None = None,
             seed: int = 0, colour: bool = False) -> tuple[dict, list[str]]:
    from scipy.optimize import linear_sum_assignment

    from dibr_ros.perception.geometry import backproject

    acc = dict(iou=[], p=[], r=[], f=[], tp=[], tr=[], tf=[], missed=0, extra=0, objects=0, ms=[],
               lost=0, truth_px=0, mask_px=0, on_table=0, on_other=0)
    notes = []
    rng = np.random.default_rng(seed)
    for name, rgb, depth, K, labels, objs in frames(split, seeds, cache):
        if noise_mm > 0:
            # Structured-light / stereo-like: sigma grows with z^2 (noise_mm at 1 m).
            depth = (depth + rng.normal(0.0, 1.0, depth.shape) * noise_mm * 1e-3 * depth ** 2).astype(np.float32)
        times = []
        for _ in range(3):
            t0 = time.perf_counter()
            dets = segment_rgbd(rgb, K, depth, CONFIG if colour else NO_COLOUR, params or PARAMS)[0]
            times.append((time.perf_counter() - t0) * 1e3)
        acc["ms"].append(min(times))
        vis = [o for o in objs if (labels == o[0]).sum() >= MIN_VISIBLE_PX]
        truth = [labels == o[0] for o in vis]
        iou = np.zeros((len(vis), len(dets)))
        for i, tm in enumerate(truth):
            for j, d in enumerate(dets):
                iou[i, j] = (tm & d.mask).sum() / max((tm | d.mask).sum(), 1)
        rows, cols = linear_sum_assignment(-iou) if iou.size else ((), ())
        pairs = {i: j for i, j in zip(rows, cols) if iou[i, j] > MIN_IOU}
        acc["objects"] += len(vis)
        acc["missed"] += len(vis) - len(pairs)
        acc["extra"] += len(dets) - len(pairs)
        for i, (_lab, oname, v, fc) in enumerate(vis):
            acc["iou"].append(iou[i, pairs[i]] if i in pairs else 0.0)
            acc["truth_px"] += int(truth[i].sum())
            if i not in pairs:
                acc["lost"] += int(truth[i].sum())
                notes.append(f"{name}: missed {oname} ({int(truth[i].sum())} px)")
                continue
            d = dets[pairs[i]]
            acc["lost"] += int((truth[i] & ~d.mask).sum())
            m = shape_metrics(d.points, (v, fc), seed) if len(d.points) >= 3 else {}
            ref = shape_metrics(backproject(depth, K, truth[i])[0], (v, fc), seed)
            for key, k in (("p", "p@10mm"), ("r", "r@10mm"), ("f", "f@10mm")):
                acc[key].append(m.get(k, 0.0))
                acc["t" + key].append(ref[k])
        for j, d in enumerate(dets):
            acc["mask_px"] += int(d.mask.sum())
            acc["on_table"] += int((d.mask & (labels == 0)).sum())
            if j in pairs.values():
                i = next(i for i, jj in pairs.items() if jj == j)
                acc["on_other"] += int((d.mask & (labels > 0) & ~truth[i]).sum())
            else:
                acc["on_other"] += int((d.mask & (labels > 0)).sum())
                notes.append(f"{name}: extra detection of {int(d.mask.sum())} px "
                             f"({int((d.mask & (labels == 0)).sum())} on the table)")
    res = dict(objects=acc["objects"], frames=len(acc["ms"]), iou=float(np.mean(acc["iou"])),
               p=float(np.mean(acc["p"])), r=float(np.mean(acc["r"])), f=float(np.mean(acc["f"])),
               tp=float(np.mean(acc["tp"])), tr=float(np.mean(acc["tr"])), tf=float(np.mean(acc["tf"])),
               missed=acc["missed"], extra=acc["extra"], ms=float(np.median(acc["ms"])),
               lost=acc["lost"] / max(acc["truth_px"], 1), on_table=acc["on_table"] / max(acc["mask_px"], 1),
               on_other=acc["on_other"] / max(acc["mask_px"], 1))
    return res, notes


HEADER = ("| set | frames | objects | mask IoU | P@10mm | R@10mm | F@10mm | truth P / R / F | missed | extra "
          "| px lost | px on table | px on other obj | ms/call |\n"
          "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")


def row(split: str, r: dict) -> str:
    return (f"| {split} | {r['frames']} | {r['objects']} | {r['iou']:.3f} | {r['p']:.3f} | {r['r']:.3f} "
            f"| {r['f']:.3f} | {r['tp']:.3f} / {r['tr']:.3f} / {r['tf']:.3f} | {r['missed']} | {r['extra']} "
            f"| {100 * r['lost']:.1f} % | {100 * r['on_table']:.2f} % | {100 * r['on_other']:.2f} % "
            f"| {r['ms']:.1f} |")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sets", nargs="+", default=["test", "ood"])
    ap.add_argument("--seeds", nargs="+", type=int, default=list(range(100, 106)))
    ap.add_argument("--noise-mm", type=float, default=0.0,
                    help="add Gaussian depth noise, sigma = this (mm) at 1 m, growing with z^2")
    ap.add_argument("--param", nargs="*", default=[], metavar="NAME=VALUE",
                    help="override a segment_depth argument, e.g. min_height=0.005")
    ap.add_argument("--cache", default=None, help="folder for rendered frames (.npz), reused when present")
    ap.add_argument("--label", default="", help="name of this run in the results file (e.g. before/after)")
    ap.add_argument("--out", default=os.path.join(REPO, "bench", "RESULTS_segmentation.md"))
    ap.add_argument("--no-write", action="store_true")
    ap.add_argument("--colour", action="store_true",
                    help="also the pipeline's colour split and merge (color_split, color_merge, merge_gap)")
    ap.add_argument("--notes", action="store_true", help="print every missed/extra detection")
    args = ap.parse_args(argv)
    params = dict(PARAMS)
    for item in args.param:
        name, _, value = item.partition("=")
        if name not in PARAMS or not value:
            ap.error(f"--param {item!r}: expected NAME=VALUE with NAME one of {sorted(PARAMS)}")
        params[name] = type(PARAMS[name])(float(value))
    lines = [HEADER]
    for split in args.sets:
        res, notes = evaluate(split, args.seeds, args.cache, args.noise_mm, params, colour=args.colour)
        lines.append(row(split, res))
        if args.notes:
            print("\n".join(notes))
    table = "\n".join(lines)
    print(table)
    if not args.no_write:
        cmd = "python bench/segmentation_bench.py " + " ".join(sys.argv[1:] if argv is None else argv)
        with open(args.out, "a") as f:
            f.write(f"\n## {args.label or 'run'} ({datetime.date.today().isoformat()})\n\n"
                    f"Machine: {machine()}; load average {os.getloadavg()[0]:.1f}.\n"
                    f"Command: `{cmd.strip()}`\n"
                    f"segment_depth arguments: {', '.join(f'{k}={v:g}' for k, v in params.items())}"
                    + (f"; then colour split {CONFIG.color_split:g}, merge {CONFIG.color_merge:g} within "
                       f"{CONFIG.merge_gap:g} m" if args.colour else "") + f"\n\n{table}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
