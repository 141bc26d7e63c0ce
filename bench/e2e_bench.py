"""End-to-end benchmark: seeded simulated scene families against ground truth, with the network's contribution.

    .venv/bin/python bench/e2e_bench.py --mode direct --scenes 20       # every family, writes bench/RESULTS_e2e.md
    .venv/bin/python bench/e2e_bench.py --mode direct --families elev15 lifted --scenes 6 --weights path.pt
    .venv/bin/python bench/e2e_bench.py --mode ros --sets test ood      # the real node over loopback DDS

Modes:
- ``direct``: the scene families of :mod:`dibr_ros.sim.families` (tabletop at 50 deg, low / mid / high
  cameras, a lifted object, an object without depth, RGB only), frames straight into
  ``PerceptionPipeline.process`` in this process. Three rows per family from the same frames: the node as
  shipped; the observed depth points alone; and the ablation: the same pipeline (placement, completion,
  fusion) with the network's meshes replaced by a sphere (``SpherePredictor``). node - ablation is what the
  network contributes.
- ``ros``: ``sim_camera`` and ``perception_node`` as separate processes over loopback DDS (RELIABLE), the
  ground truth and outputs paired by stamp (``dibr_ros.demo.RosSession``); latency = the node's
  /diagnostics, throughput = frames processed per second of wall time.

Per ground-truth object: Chamfer-L1 (mm), F-score@5/10 mm, precision/recall@10 mm, against its outer surface
in the camera frame. Objects are matched to predictions by centroid distance (Hungarian, < 8 cm); unmatched
ones score 0, and so does the depth-only row for an object without depth. RGB only: objects are matched by
their masks, placed with ``default_object_size``, and scored after moving the cloud's centre onto the
truth's (scale and shape still count), and as shape in the view frame (both normalised to a unit bounding
sphere, F@0.10 as in the model benchmark).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import sys
import time

import numpy as np

# A benchmark's ROS traffic stays on this machine unless the caller says otherwise (the installed node
# itself never forces it: real robots need discovery).
os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from dibr_ros.demo import RosSession  # noqa: E402
from dibr_ros.demo_report import ObjectEval, _fmt, evaluate_objects, shape_metrics, summarize  # noqa: E402
from dibr_ros.sim.families import FAMILIES, apply_depth, family_configs  # noqa: E402
from dibr_ros.sim.scene import TabletopScene  # noqa: E402

RGB_ONLY_SIZE_M = 0.12  # default_object_size of the RGB-only rows (a typical graspable object's diameter)


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{cpu}, {os.cpu_count()} cores visible, {platform.system()} {platform.release()}"


def make_pipelines(weights: str | None, device: str, family: str, overrides: dict | None = None) -> dict:
    """{"node": shipped predictor, "ablation": SpherePredictor} pipelines with the family's settings
    (and PipelineConfig ``overrides``)."""
    from dibr_ros.model.predictor import Predictor
    from dibr_ros.perception.pipeline import PerceptionPipeline
    from dibr_ros.perception.synthetic import SpherePredictor

    cfg = {"debug_image": False}
    if FAMILIES[family].depth == "none":
        cfg["default_object_size"] = RGB_ONLY_SIZE_M
    cfg.update(overrides or {})
    return {"node": PerceptionPipeline(Predictor.load(weights or None, device=device), cfg),
            "ablation": PerceptionPipeline(SpherePredictor(), cfg)}


def _rows(res, frame, depth, seed: int) -> list[ObjectEval]:
    pred = [dict(vertices=o.vertices, faces=o.faces, points=o.points) for o in res.objects]
    gt = [dict(name=o.name, label=o.label, vertices=o.vertices, faces=o.faces) for o in frame.objects]
    return evaluate_objects(pred, gt, np.zeros_like(frame.depth) if depth is None else depth, frame.K,
                            frame.labels, seed=seed)


def rgb_only_rows(res, frame, min_visible_px: int = 100) -> list[dict]:
    """RGB-only scores per visible true object: cloud after aligning the centres (mm) and view-frame shape
    (F@0.10 of the normalised mesh). Matched by mask: each prediction to the label it covers most."""
    from dibr_ros.data.library import normalize
    from dibr_ros.eval.metrics import mesh_metrics

    owner = {}
    for i, o in enumerate(res.objects):
        lab = frame.labels[o.detection.mask]
        lab = lab[lab > 0]
        if len(lab):
            best = int(np.bincount(lab).argmax())
            if best not in owner:
                owner[best] = i
    out = []
    for g in frame.objects:
        if int((frame.labels == g.label).sum()) < min_visible_px:
            continue
        rec = {"name": g.name, "matched": g.label in owner, "f@10mm": 0.0, "f@5mm": 0.0, "shape_f@0.10": 0.0}
        if g.label in owner:
            o = res.objects[owner[g.label]]
            gc = 0.5 * (g.vertices.min(0) + g.vertices.max(0))
            pts = np.asarray(o.points, np.float64)
            pts = pts - 0.5 * (pts.min(0) + pts.max(0)) + gc
            m = shape_metrics(pts, (g.vertices, g.faces))
            rec.update({k: m[k] for k in ("f@5mm", "f@10mm", "chamfer_mm")})
            mv = mesh_metrics((normalize(o.vertices)[0], o.faces), (normalize(g.vertices)[0], g.faces),
                              n_points=4000, n_iou_points=1000, gt_surface="outer")
            rec["shape_f@0.10"] = mv["fscore@0.10"]
        out.append(rec)
    return out


def run_family(family: str, scenes: int, seed0: int, weights: str | None, device: str, views: int,
               progress=None, overrides: dict | None = None, val: bool = False) -> dict:
    """Scenes seed0..seed0+scenes-1 of a family, ``views`` orbiting views each, through the node and the
    ablation pipelines. Returns rows per method (and per-frame latency of the node)."""
    fam = FAMILIES[family]
    if val:  # the same family on validation objects (for choosing settings without looking at test)
        fam = dataclasses.replace(fam, objects=fam.objects.replace("hh_test", "hh_val").replace("test", "val"))
    pipes = make_pipelines(weights, device, family, overrides)
    out = {"node": [], "ablation": [], "node_full": [], "removed": [], "lat": [], "rgb": {"node": [], "ablation": []},
           # RGB only, metric (unaligned): the size assumption, or the table plane known (camera mounting)
           "rgb_plane": {"node_size": [], "node": [], "ablation": []},
           "sources": np.zeros(3, np.int64)}  # the node's cloud points by source (measured, support, network)
    for k in range(scenes):
        seed = seed0 + k
        scene_cfg, cam = family_configs(fam, seed, views=views)
        with TabletopScene(scene_cfg, cam) as scene:
            for v in range(views):
                f = scene.render(t=float(v))
                depth, removed = apply_depth(f, fam, seed * 31 + v)
                if k == v == 0:  # warm-up: lazy imports and OpenCV's colour tables, unmeasured
                    pipes["node"].process(f.rgb, f.K, depth)
                t0 = time.perf_counter()
                res = pipes["node"].process(f.rgb, f.K, depth)
                out["lat"].append((time.perf_counter() - t0) * 1e3)
                out["sources"] += np.bincount(res.cloud_sources(), minlength=3)[:3]
                res_a = pipes["ablation"].process(f.rgb, f.K, depth)
                if fam.depth == "none":
                    out["rgb"]["node"] += rgb_only_rows(res, f)
                    out["rgb"]["ablation"] += rgb_only_rows(res_a, f)
                    out["rgb_plane"]["node_size"] += _rows(res, f, None, k)
                    for key in ("node", "ablation"):  # metric: placed on the known table, scored unaligned
                        res_p = pipes[key].process(f.rgb, f.K, depth, plane=f.table_plane())
                        out["rgb_plane"][key] += _rows(res_p, f, None, k)
                    continue
                rows, rows_a = _rows(res, f, depth, k), _rows(res_a, f, depth, k)
                names = {o.label: o.name for o in f.objects}
                if removed is not None:  # the same frame with full depth: the other objects' reference
                    rows_f = _rows(pipes["node"].process(f.rgb, f.K, f.depth), f, f.depth, k)
                    out["node_full"] += rows_f
                    out["removed"] += [(len(out["node"]) + i, r.gt_name == names[removed]) for i, r in
                                       enumerate(rows)]
                out["node"] += rows
                out["ablation"] += rows_a
        if progress:
            progress(family, k + 1, scenes)
    out["lat"] = np.asarray(out["lat"])
    return out


def _mean(rows, kind: str, key: str, zero_missing: bool = True) -> float:
    vals = []
    for r in rows:
        d = getattr(r, kind)
        if key in d and np.isfinite(d[key]):
            vals.append(d[key])
        elif zero_missing and key != "chamfer_mm":
            vals.append(0.0)
    return float(np.mean(vals)) if vals else float("nan")


FAMILY_KEYS = (("chamfer_mm", "Chamfer-L1 mm", 1), ("f@5mm", "F@5mm", 3), ("f@10mm", "F@10mm", 3),
               ("p@10mm", "P@10mm", 3), ("r@10mm", "R@10mm", 3))


def family_table(family: str, res: dict) -> tuple[list[str], dict]:
    """Markdown lines of one family and its headline figures (cloud F@10mm per row, the network's share of
    the node's cloud points)."""
    fam = FAMILIES[family]
    lines = [f"### {family}: {fam.description}", ""]
    share = res["sources"] / max(1, int(res["sources"].sum()))
    head = {"network_share": float(share[2])}
    composition = (f"Node cloud points: measured {100 * share[0]:.0f} %, support volume {100 * share[1]:.0f} %, "
                   f"network mesh {100 * share[2]:.0f} % (the `source` field).")
    if fam.depth == "none":
        lines += ["| row | objects | cloud F@5mm (centre aligned) | cloud F@10mm (centre aligned) | "
                  "view-frame shape F@0.10 |", "|---|---|---|---|---|"]
        for key in ("node", "ablation"):
            rs = res["rgb"][key]
            f5, f10 = np.mean([r["f@5mm"] for r in rs]), np.mean([r["f@10mm"] for r in rs])
            sh = np.mean([r["shape_f@0.10"] for r in rs])
            lines.append(f"| {key} | {len(rs)} | {f5:.3f} | {f10:.3f} | {sh:.3f} |")
            head[key] = float(f10)
            head[f"{key}_shape"] = float(sh)
        lines.append("| depth only | - | 0 (no depth) | 0 (no depth) | - |")
        head["depth"] = 0.0
        gain = head["node"] - head["ablation"]
        lines += ["", f"Network contribution (node - ablation): cloud F@10mm {gain:+.3f}, view-frame shape "
                  f"F@0.10 {head['node_shape'] - head['ablation_shape']:+.3f}.", "", composition, ""]
        if res["rgb_plane"]["node"]:
            lines += ["Metric, scored in the camera frame without any alignment: the objects placed by the size "
                      f"assumption (`default_object_size` {RGB_ONLY_SIZE_M} m), or standing on the table when its "
                      "plane is known (`process(..., plane=...)`, the node's `table_plane` parameter: a robot "
                      "knows its camera's mounting).", "",
                      "| row | objects | matched | Chamfer-L1 mm | F@5mm | F@10mm | P@10mm | R@10mm | "
                      "centre error mm |",
                      "|---|---|---|---|---|---|---|---|---|"]
            for key, label in (("node_size", "node, size assumed"), ("node", "node, table plane known"),
                               ("ablation", "ablation, table plane known")):
                rs = res["rgb_plane"][key]
                vals = [_mean(rs, "cloud", k) for k, _, _ in FAMILY_KEYS]
                err = [r.centre_error_mm for r in rs if np.isfinite(r.centre_error_mm)]
                err = np.median(err) if err else np.nan
                lines.append(f"| {label} | {len(rs)} | {sum(r.matched for r in rs)} | " + " | ".join(
                    _fmt(v, d) for v, (_, _, d) in zip(vals, FAMILY_KEYS)) + f" | {err:.0f} |")
                head[f"{key}_plane"] = vals[2]
            lines += ["", f"Network contribution with the plane known: cloud F@10mm "
                      f"{head['node_plane'] - head['ablation_plane']:+.3f}.", ""]
        return lines, head
    rows = {"node": res["node"], "ablation": res["ablation"]}
    n = len(res["node"])
    lines += [f"{n} object views, {sum(r.matched for r in res['node'])} matched by the node.", "",
              "| row | " + " | ".join(h for _, h, _ in FAMILY_KEYS) + " |", "|---" * (len(FAMILY_KEYS) + 1) + "|"]
    for key, label, kind in (("node", "node cloud (shipped)", "cloud"), ("ablation", "ablation cloud (sphere)",
                             "cloud"), ("node", "node mesh", "mesh"), ("ablation", "ablation mesh", "mesh"),
                            ("node", "depth only (observed points)", "depth")):
        vals = [_mean(rows[key], kind, k) for k, _, _ in FAMILY_KEYS]
        lines.append(f"| {label} | " + " | ".join(_fmt(v, d) for v, (_, _, d) in zip(vals, FAMILY_KEYS)) + " |")
        if label.endswith("cloud (shipped)"):
            head["node"] = vals[2]
        elif label.startswith("ablation cloud"):
            head["ablation"] = vals[2]
        elif kind == "depth":
            head["depth"] = vals[2]
    lines += ["", f"Network contribution (node - ablation): cloud F@10mm {head['node'] - head['ablation']:+.3f}; "
              f"node - depth only: {head['node'] - head['depth']:+.3f}.", "", composition]
    if res["removed"]:
        idx_rm = [i for i, rm in res["removed"] if rm]
        idx_other = [i for i, rm in res["removed"] if not rm]
        pick = lambda rs, ids: [rs[i] for i in ids]  # noqa: E731
        rm_node = _mean(pick(res["node"], idx_rm), "cloud", "f@10mm")
        rm_abl = _mean(pick(res["ablation"], idx_rm), "cloud", "f@10mm")
        oth = _mean(pick(res["node"], idx_other), "cloud", "f@10mm")
        oth_full = _mean(pick(res["node_full"], idx_other), "cloud", "f@10mm")
        head.update(removed_node=rm_node, removed_ablation=rm_abl, others=oth, others_full=oth_full)
        lines += ["", f"The object without depth ({len(idx_rm)} views): node cloud F@10mm {rm_node:.3f}, ablation "
                  f"{rm_abl:.3f}, depth only 0. The other objects: {oth:.3f} (with every object's depth: "
                  f"{oth_full:.3f})."]
    lines.append("")
    return lines, head


def run_ros(split: str, frames: int, seed0: int, weights: str, device: str, domain_id: int, out_dir: str):
    """One sim_camera process dropping a new seeded scene every 2 frames, the real node, RELIABLE QoS."""
    sim = dict(objects=split, seed=seed0, max_objects=3, rate=1.0, new_scene_every=2, orbit_deg_per_s=20.0,
               reliability="reliable")
    node = dict(device=device, weights=weights, input_reliability="reliable", use_depth=True,
                publish_debug_image=False)
    rows = []
    t0 = time.monotonic()
    with RosSession(os.path.join(out_dir, f"logs_{split}"), sim, node, domain_id) as s:
        got = s.collect(frames, timeout_s=60 + 12 * frames, need_debug=False)
        t_first = got[0].arrival_s if got else float("nan")
        t_last = got[-1].arrival_s if got else float("nan")
        s.spin(1.2)
        diag = dict(s.diag)
    for i, fr in enumerate(got):
        rows += evaluate_objects(fr.pred, fr.gt, fr.depth, fr.K, fr.labels, seed=i)
    thr = (len(got) - 1) / (t_last - t_first) if len(got) > 1 and t_last > t_first else float("nan")
    diag["_wall_s"] = f"{time.monotonic() - t0:.1f}"
    diag["_throughput"] = f"{thr:.2f}"
    diag["_frames"] = str(len(got))
    return rows, diag


def table(title: str, rows: list[ObjectEval]) -> list[str]:
    s = summarize(rows)
    out = [f"**{title}**: {s['objects']} object views, {s['matched']} matched", "",
           "| method | Chamfer-L1 mm | F@5mm | F@10mm | P@10mm | R@10mm | 3D IoU |", "|---|---|---|---|---|---|---|"]
    for kind, label in (("mesh", "node mesh"), ("cloud", "node completed cloud"),
                        ("depth", "depth-only baseline")):
        out.append(f"| {label} | {_fmt(s[f'{kind}.chamfer_mm'], 1)} | {_fmt(s[f'{kind}.f@5mm'])} | "
                   f"{_fmt(s[f'{kind}.f@10mm'])} | {_fmt(s[f'{kind}.p@10mm'])} | {_fmt(s[f'{kind}.r@10mm'])} | "
                   f"{_fmt(s[f'{kind}.iou_3d'])} |")
    gain_f = s["cloud.f@10mm"] - s["depth.f@10mm"]
    gain_r = s["cloud.r@10mm"] - s["depth.r@10mm"]
    out += ["", f"Node cloud minus baseline: F@10mm {gain_f:+.3f}, R@10mm {gain_r:+.3f} (the most any method can "
                f"add to the baseline's recall is 1 - {_fmt(s['depth.r@10mm'])} = {1.0 - s['depth.r@10mm']:.3f})."]
    return out + [""]


def per_object(rows: list[ObjectEval]) -> list[str]:
    names = sorted({r.gt_name for r in rows})
    out = ["| object | views | node cloud F@10mm | baseline F@10mm | node R@10mm | baseline R@10mm | node IoU |",
           "|---|---|---|---|---|---|---|"]
    for n in names:
        rs = [r for r in rows if r.gt_name == n]
        s = summarize(rs)
        out.append(f"| {n} | {len(rs)} | {_fmt(s['cloud.f@10mm'], 2)} | {_fmt(s['depth.f@10mm'], 2)} | "
                   f"{_fmt(s['cloud.r@10mm'], 2)} | {_fmt(s['depth.r@10mm'], 2)} | {_fmt(s['mesh.iou_3d'], 2)} |")
    return out + [""]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mode", choices=("direct", "ros", "both"), default="direct")
    ap.add_argument("--scenes", type=int, default=20, help="direct mode: seeded scenes per family")
    ap.add_argument("--families", nargs="+", default=list(FAMILIES), choices=list(FAMILIES),
                    help="direct mode: scene families (dibr_ros.sim.families)")
    ap.add_argument("--views", type=int, default=2, help="direct mode: orbiting views per scene")
    ap.add_argument("--ros-frames", type=int, default=6, help="ros mode: processed frames per set")
    ap.add_argument("--sets", nargs="+", default=["test", "ood"], choices=("test", "ood", "val"),
                    help="ros mode: object sets (val: for choosing settings without looking at test)")
    ap.add_argument("--seed", type=int, default=100, help="first scene seed (test scenes 100+, val scenes 500+)")
    ap.add_argument("--val", action="store_true", help="direct mode: val and hh_val objects instead of test")
    ap.add_argument("--pipeline", action="append", default=[], metavar="KEY=VALUE",
                    help="direct mode: PipelineConfig override for both rows, e.g. hidden_surface=fused")
    ap.add_argument("--weights", default="", help="checkpoint (default: shipped weights)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--domain-id", type=int, default=int(os.environ.get("ROS_DOMAIN_ID", "43") or 43))
    ap.add_argument("--out", default=os.path.join(REPO, "bench", "RESULTS_e2e.md"))
    args = ap.parse_args(argv)
    import yaml

    overrides = {}
    for item in args.pipeline:
        key, sep, val = item.partition("=")
        if not sep:
            ap.error(f"--pipeline expects KEY=VALUE, got {item!r}")
        overrides[key] = yaml.safe_load(val)
    os.environ.setdefault("TORCH_EXTENSIONS_DIR", os.path.join(REPO, ".torch_ext"))
    t0 = time.time()
    lines = ["# End-to-end benchmark (simulated tabletop camera vs ground truth)", "",
             f"- command: `.venv/bin/python bench/e2e_bench.py {' '.join(argv if argv is not None else sys.argv[1:])}`",
             f"- machine: {machine()}; date {time.strftime('%Y-%m-%d %H:%M')}",
             f"- weights: {args.weights or 'shipped dibr_ros/weights/default.pt'}; device {args.device}; "
             f"pipeline overrides {args.pipeline or 'none'}",
             "- truth: each object's outer surface (`mesh_metrics(gt_surface=\"outer\")`: the simulator's meshes "
             "are glued parts; walls inside the solid are left out), camera frame, millimetres", ""]
    if args.mode in ("direct", "both"):
        lines += ["## Mode direct: scene families (PerceptionPipeline in-process, no ROS)", "",
                  f"Scenes: seeds {args.seed}..{args.seed + args.scenes - 1} per family, 1-3 objects, {args.views} "
                  "views each (640x480, 45 deg vertical fov); objects from the test split and, except in "
                  "tabletop, the household test split (`test+hh_test`).", ""]
        heads, body = {}, []
        for fam in args.families:
            res = run_family(fam, args.scenes, args.seed, args.weights, args.device, args.views,
                             progress=lambda f, k, n: print(f"  {f}: scene {k}/{n} ({time.time() - t0:.0f} s)",
                                                            flush=True), overrides=overrides, val=args.val)
            tab, heads[fam] = family_table(fam, res)
            lat = res["lat"]
            tab += [f"Node latency (pipeline.process, {len(lat)} frames): p50 {np.percentile(lat, 50):.0f} ms, "
                    f"p95 {np.percentile(lat, 95):.0f} ms.", ""]
            body += tab
            print("\n".join(tab), flush=True)
        lines += ["| family | node cloud F@10mm | depth only | ablation (sphere) | node - ablation | "
                  "node - depth only | node cloud from the network |", "|---|---|---|---|---|---|---|"]
        for fam, h in heads.items():
            lines.append(f"| {fam} | {h['node']:.3f} | {h['depth']:.3f} | {h['ablation']:.3f} | "
                         f"{h['node'] - h['ablation']:+.3f} | {h['node'] - h['depth']:+.3f} | "
                         f"{100 * h['network_share']:.0f} % |")
            if "node_plane" in h:  # the same RGB-only frames, metric, on the known table plane
                lines.append(f"| {fam}, table plane known | {h['node_plane']:.3f} | 0.000 | "
                             f"{h['ablation_plane']:.3f} | {h['node_plane'] - h['ablation_plane']:+.3f} | "
                             f"{h['node_plane']:+.3f} | "
                             f"{100 * h['network_share']:.0f} % |")
        lines += ["", "(rgb_only: cloud centre aligned to the truth's; with the table plane known: metric, unaligned; "
                  "see its table.)", ""] + body
    if args.mode in ("ros", "both"):
        lines += ["## Mode ros (sim_camera + perception_node processes, RELIABLE, loopback)", "",
                  "One sim_camera per set, a new seeded scene every 2 frames, 1 Hz; the node drops stale frames.", ""]
        for split in args.sets:
            rows, diag = run_ros(split, args.ros_frames, args.seed, args.weights, args.device, args.domain_id,
                                 os.path.join(REPO, "out", "e2e"))
            lines += table(f"{split} set, {diag['_frames']} frames", rows)
            lines += [f"Node latency (/diagnostics): total p50 {diag.get('latency_total_p50_ms', 'n/a')} ms, "
                      f"p95 {diag.get('latency_total_p95_ms', 'n/a')} ms; node_total (arrival to publish) p50 "
                      f"{diag.get('latency_node_total_p50_ms', 'n/a')} ms; throughput {diag['_throughput']} "
                      f"frames/s; counters: " + ", ".join(f"{k[7:]} {v}" for k, v in diag.items()
                                                           if k.startswith("frames_")), ""]
            print(f"ros {split}: done ({time.time() - t0:.0f} s)", flush=True)
    lines += [f"Total benchmark wall time {time.time() - t0:.0f} s.", ""]
    body = "\n".join(lines)
    with open(args.out, "w") as f:
        f.write(body)
    print(body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
