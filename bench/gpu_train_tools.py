"""Steps of bench/gpu_train.sh that need Python: backend check, resume state info, final export.

    python3 bench/gpu_train_tools.py backend                       # -> last line "backend=cuda|reference|auto"
    python3 bench/gpu_train_tools.py elapsed RUN/train_state.pt    # -> step time already trained (s)
    python3 bench/gpu_train_tools.py finish --out OUT --shipped dibr_ros/weights/default.pt CKPT...

``backend`` builds the extension and, on CUDA, renders predictions of the shipped model for a sampled batch
with the CUDA kernels and with the C++ CPU kernels (same inputs) and compares images, soft masks and
gradients: the CUDA kernels are used for training only if they agree (else the reference rasterizer).
``finish`` evaluates every given model checkpoint and the shipped one on the same val views (all val objects,
2 views each, seed 1234), exports the best by 0.5 * (IoU input + IoU novel) as fp16 to
``OUT/default_candidate.pt`` with those metrics in its meta, and writes ``OUT/gpu_val.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile

import torch

from dibr_ros.model.checkpoint import load_checkpoint, save_checkpoint
from dibr_ros.model.network import DIBRNet, checkpoint_network_config


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).norm() / b.double().norm().clamp_min(1e-12))


def check_backend(shipped: str) -> str:
    """'cuda' if the CUDA kernels build and match the CPU kernels, 'reference' if not, 'auto' without CUDA."""
    from dibr_ros.render import _ext

    if not torch.cuda.is_available():
        print("no CUDA device: backend auto (C++ CPU kernels)")
        return "auto"
    ops = _ext.ops()
    if ops is None or not _ext.has_cuda_kernels():
        print(f"CUDA kernels unavailable: {_ext.build_error()}")
        return "reference"
    from dibr_ros.model.losses import shade_vertices, view_to_world
    from dibr_ros.model.rendering import render_vertex_colors
    from dibr_ros.model.sampling import CropSampler, load_objects, network_input

    cfg, state, _ = load_checkpoint(shipped)
    net = DIBRNet(checkpoint_network_config(cfg))
    net.load_state_dict({k: v.float() for k, v in state.items()})
    net.eval()
    objs = load_objects("val", 8)
    batch = CropSampler(objs, 2, net.input_size, net.config["crop_scale"], seed=7, backend="cpu").sample(8)
    with torch.no_grad():
        pred = net(network_input(batch["rgb"], batch["mask"], batch.get("depth"), batch["K"][..., 0, 0],
                                 channels=net.in_channels))
    shaded = shade_vertices(pred["vertices"], net.faces, pred["colors"], pred["sh"])
    R, eye, K = (batch[k].flatten(0, 1) for k in ("R", "eye", "K"))
    world = view_to_world(pred["vertices"], R)
    gen = torch.Generator().manual_seed(3)
    w_rgb = torch.rand(16, net.input_size, net.input_size, 3, generator=gen)
    w_soft = torch.rand(16, net.input_size, net.input_size, generator=gen)
    res = {}
    for dev, backend in (("cpu", "cpu"), ("cuda", "cuda")):
        v = world.detach().to(dev).requires_grad_(True)
        c = shaded.detach().to(dev).requires_grad_(True)
        out = render_vertex_colors(v, net.faces.to(dev), c, R.to(dev), eye.to(dev), K.to(dev), net.input_size,
                                   backend=backend)
        loss = (out["rgb"] * w_rgb.to(dev)).sum() + (out["alpha"] * w_soft.to(dev)).sum()
        loss.backward()
        res[dev] = {"rgb": out["rgb"].detach().cpu(), "alpha": out["alpha"].detach().cpu(),
                    "face_idx": out["face_idx"].cpu(), "grad_v": v.grad.cpu(), "grad_c": c.grad.cpu()}
    a, b = res["cuda"], res["cpu"]
    figures = {
        "face_idx_agree": float((a["face_idx"] == b["face_idx"]).float().mean()),
        "rgb_rel": _rel(a["rgb"], b["rgb"]), "alpha_rel": _rel(a["alpha"], b["alpha"]),
        "grad_vertices_rel": _rel(a["grad_v"], b["grad_v"]), "grad_colors_rel": _rel(a["grad_c"], b["grad_c"]),
    }
    ok = (figures["face_idx_agree"] >= 0.999 and figures["rgb_rel"] <= 1e-2 and figures["alpha_rel"] <= 1e-3
          and figures["grad_vertices_rel"] <= 2e-2 and figures["grad_colors_rel"] <= 1e-2
          and all(torch.isfinite(t).all() for t in a.values() if t.is_floating_point()))
    print("CUDA vs CPU kernels on 16 renders of the shipped model's predictions: "
          + ", ".join(f"{k} {v:.3g}" for k, v in figures.items()) + (" -> OK" if ok else " -> MISMATCH"))
    return "cuda" if ok else "reference"


def finish(out_dir: str, shipped: str, ckpts: list[str], backend: str, val_objects: int | None) -> int:
    """Evaluate ``ckpts`` + ``shipped`` on the same val views, export the best candidate (see module doc)."""
    from dibr_ros.data.library import list_objects
    from dibr_ros.model.train import Trainer, make_config

    ckpts = [c for c in ckpts if os.path.isfile(c)]
    if not ckpts:
        print("finish: no checkpoint to export", file=sys.stderr)
        return 1
    scfg, sstate, smeta = load_checkpoint(shipped)
    with tempfile.TemporaryDirectory() as tmp:
        cfg = make_config({"run_dir": tmp, "network": scfg, "views": 2, "val_objects": val_objects,
                           "val_seed": 1234, "train_names": [list_objects("val")[0]], "backend": backend,
                           "progress": False, "seed": 0})
        trainer = Trainer(cfg)
        results = {}
        for path in [shipped, *ckpts]:
            c, st, meta = (scfg, sstate, smeta) if path == shipped else load_checkpoint(path)
            if DIBRNet(c).config != trainer.net.config:
                print(f"finish: {path}: network config differs from the shipped one; skipped")
                continue
            trainer.net.load_state_dict({k: v.float() for k, v in st.items()})
            m = trainer.validate()
            m["score"] = 0.5 * (m["iou_input"] + m["iou_novel"])
            results[path] = {"metrics": m, "meta": meta, "state": st, "config": c}
    protocol = (f"Trainer.validate on {len(list_objects('val')) if val_objects is None else val_objects} val "
                f"objects, 2 crop-framed 64x64 views each (val_seed 1234, jitter on), backend {backend}, "
                f"device {'cuda' if torch.cuda.is_available() else 'cpu'}; hard-silhouette IoU of the mesh in the "
                f"input / other view, colour L1 inside the target mask (0-1 RGB)")
    cands = {p: r for p, r in results.items() if p != shipped}
    best = max(cands, key=lambda p: cands[p]["metrics"]["score"])
    r = cands[best]
    meta = dict(r["meta"])
    meta["metrics"] = r["metrics"]
    meta["gpu_val"] = {"protocol": protocol, "source": os.path.basename(best),
                       "shipped": results[shipped]["metrics"] if shipped in results else None}
    os.makedirs(out_dir, exist_ok=True)
    dst = os.path.join(out_dir, "default_candidate.pt")
    save_checkpoint(dst, r["state"], r["config"], meta, half=True)
    table = {p: res["metrics"] for p, res in results.items()}
    with open(os.path.join(out_dir, "gpu_val.json"), "w") as f:
        json.dump({"protocol": protocol, "chosen": best, "iterations": meta.get("iterations"),
                   "metrics": table}, f, indent=1)
    print(f"\n{protocol}")
    print(f"{'checkpoint':<52} {'iou_in':>7} {'iou_nov':>7} {'col_l1':>7} {'score':>7}")
    for p, m in table.items():
        tag = " (shipped)" if p == shipped else " <- exported" if p == best else ""
        print(f"{p[-52:]:<52} {m['iou_input']:7.4f} {m['iou_novel']:7.4f} {m['color_l1_input']:7.4f} "
              f"{m['score']:7.4f}{tag}")
    print(f"exported {best} -> {dst} ({os.path.getsize(dst) / 1e6:.1f} MB, {meta.get('iterations')} iterations)")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("backend")
    b.add_argument("--shipped", default="dibr_ros/weights/default.pt")
    e = sub.add_parser("elapsed")
    e.add_argument("state")
    f = sub.add_parser("finish")
    f.add_argument("--out", required=True)
    f.add_argument("--shipped", default="dibr_ros/weights/default.pt")
    f.add_argument("--backend", default="auto")
    f.add_argument("--val-objects", type=int, default=None, help="default: the whole val split")
    f.add_argument("ckpts", nargs="+")
    a = ap.parse_args(argv)
    if a.cmd == "backend":
        print(f"backend={check_backend(a.shipped)}")
        return 0
    if a.cmd == "elapsed":
        st = torch.load(a.state, map_location="cpu", weights_only=True)
        print(f"{float(st['elapsed']):.1f}")
        return 0
    return finish(a.out, a.shipped, a.ckpts, a.backend, a.val_objects)


if __name__ == "__main__":
    sys.exit(main())
