"""Benchmark of the DIB-R rasterizer backends (issue 3, item 4).

Workload: a batch of level-3 ico-spheres (642 V, 1280 F), each vertex at radius 0.35-0.45 and the whole
sphere shifted by up to ~0.05, seen from 2.5 units by a 30 degree (vertical) camera in a random direction
(about a third of the pixels covered). ``dibr_rasterize`` with 3 vertex-colour features plus the soft
mask (default sigmainv/boxlen/knum); forward, and forward + backward through both outputs.

Timings are medians over ``--repeats`` runs after ``--warmup`` runs (CUDA events on the GPU,
``time.perf_counter`` on the CPU; the slow reference uses ``--ref-repeats``). On CUDA the peak memory of
one forward + backward above what the inputs hold is reported per pixel.

    .venv/bin/python bench/render_bench.py [--json out.json] [--backends reference,cpu,cuda]
        [--configs 64x64x64,64x256x256,1x480x640,8x64x64] [--repeats 20] [--ref-repeats 3]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from dibr_ros.render import _ext, dibr_rasterize
from dibr_ros.render.camera import look_at_rotation, perspective_projection
from dibr_ros.render.mesh import gather_faces, ico_sphere
from dibr_ros.render.renderer import prepare_vertices

DEFAULT_CONFIGS = "64x64x64,64x256x256,1x480x640,8x64x64"


def make_inputs(batch: int, height: int, width: int, device: str, seed: int = 0):
    """Rasterizer inputs for ``batch`` jittered spheres: (fvz, fvi, face_colors, face_normals_z), F."""
    g = torch.Generator().manual_seed(seed)
    verts, faces = ico_sphere(3)
    radius = 0.35 + 0.10 * torch.rand(batch, verts.shape[0], 1, generator=g)
    shift = (torch.rand(batch, 1, 3, generator=g) - 0.5) * 0.1
    v = verts.unsqueeze(0) * radius + shift
    direction = torch.nn.functional.normalize(torch.randn(batch, 3, generator=g), dim=-1)
    eye = 2.5 * direction
    R = look_at_rotation(eye, torch.zeros(3))
    proj = perspective_projection(math.radians(30.0), width / height)
    _, fv_cam, fv_img, facing = prepare_vertices(v, faces, R, eye, proj)
    colors = torch.rand(batch, verts.shape[0], 3, generator=g)
    tensors = (fv_cam[..., 2], fv_img, gather_faces(colors, faces), facing)
    return [t.to(device).contiguous() for t in tensors], faces.shape[0]


class Timer:
    def __init__(self, device: str):
        self.cuda = device.startswith("cuda")

    def __call__(self, fn) -> float:
        """Milliseconds of one call of ``fn``."""
        if self.cuda:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            torch.cuda.synchronize()
            return start.elapsed_time(end)
        t0 = time.perf_counter()
        fn()
        return (time.perf_counter() - t0) * 1e3


def bench_one(backend: str, batch: int, height: int, width: int, device: str, warmup: int, repeats: int):
    (fvz, fvi, feat, nz), num_faces = make_inputs(batch, height, width, device)
    fvi_g = fvi.clone().requires_grad_(True)
    feat_g = feat.clone().requires_grad_(True)
    gen = torch.Generator().manual_seed(1)
    w_feat = torch.rand(batch, height, width, 3, generator=gen).to(device)
    w_soft = torch.rand(batch, height, width, generator=gen).to(device)

    def fwd():
        with torch.no_grad():
            dibr_rasterize(height, width, fvz, fvi, feat, nz, backend=backend)

    def fwdbwd():
        features, soft, _ = dibr_rasterize(height, width, fvz, fvi_g, feat_g, nz, backend=backend)
        torch.autograd.backward((features, soft), (w_feat, w_soft))
        fvi_g.grad = None
        feat_g.grad = None

    timer = Timer(device)
    record = {"backend": backend, "batch": batch, "height": height, "width": width, "faces": num_faces}
    _, _, face_idx = dibr_rasterize(height, width, fvz, fvi, feat, nz, backend=backend)
    record["coverage"] = round(float((face_idx >= 0).float().mean()), 4)
    for name, fn in (("fwd_ms", fwd), ("fwdbwd_ms", fwdbwd)):
        for _ in range(warmup):
            fn()
        record[name] = round(statistics.median(timer(fn) for _ in range(repeats)), 4)
    record["repeats"] = repeats
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        fwdbwd()
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated() - base
        record["peak_bytes_per_pixel"] = round(peak / (batch * height * width), 1)
        record["device"] = torch.cuda.get_device_name()
    else:
        record["device"] = f"{cpu_name()} ({torch.get_num_threads()} threads)"
        record["threads"] = torch.get_num_threads()
    return record


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "cpu"


def thread_scaling(warmup: int, repeats: int) -> dict:
    """cpu backend, B=8 64x64 forward + backward with 1 thread vs all threads (checks both cores work)."""
    threads = torch.get_num_threads()
    out = {"threads": threads}
    try:
        for n in sorted({1, threads}):
            torch.set_num_threads(n)
            out[f"fwdbwd_ms_{n}_threads"] = bench_one("cpu", 8, 64, 64, "cpu", warmup, repeats)["fwdbwd_ms"]
    finally:
        torch.set_num_threads(threads)
    if threads > 1:
        out["speedup"] = round(out["fwdbwd_ms_1_threads"] / out[f"fwdbwd_ms_{threads}_threads"], 2)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--backends", default=None, help="comma list (default: every available backend)")
    ap.add_argument("--configs", default=DEFAULT_CONFIGS, help="comma list of BxHxW")
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--ref-repeats", type=int, default=3, help="repeats for the (slow) reference backend")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--ref-max-pixels", type=int, default=8 * 64 * 64,
                    help="skip the reference backend on CPU above this many B*H*W pixels")
    ap.add_argument("--json", default=None, help="write the records to this JSON file")
    ap.add_argument("--no-thread-check", action="store_true")
    args = ap.parse_args(argv)

    try:
        configs = [tuple(int(x) for x in c.split("x")) for c in args.configs.split(",") if c]
        if any(len(c) != 3 or min(c) <= 0 for c in configs):
            raise ValueError
    except ValueError:
        print(f"render_bench: bad --configs {args.configs!r} (expected BxHxW,...)", file=sys.stderr)
        return 2
    available = ["reference"]
    if _ext.ops() is not None:
        available.append("cpu")
    if torch.cuda.is_available() and _ext.has_cuda_kernels():
        available.append("cuda")
    backends = available if args.backends is None else args.backends.split(",")
    unknown = [b for b in backends if b not in available]
    if unknown:
        print(f"render_bench: backend(s) {unknown} unavailable here (available: {available})", file=sys.stderr)
        return 2

    print(f"torch {torch.__version__}, CPU threads {torch.get_num_threads()}, cpu: {cpu_name()}, "
          f"cuda: {torch.cuda.get_device_name() if torch.cuda.is_available() else 'none'}")
    records = []
    header = f"{'backend':<10}{'device':<6}{'B':>4}{'H':>6}{'W':>6}{'F':>6}{'cover':>7}{'fwd ms':>11}" \
             f"{'fwd+bwd ms':>12}{'runs':>6}{'B/px':>8}"
    print(header)
    for backend in backends:
        # The reference runs on CUDA tensors too; time it where the compiled backend of that device lives.
        devices = ["cuda"] if backend == "cuda" else ["cpu"] + (["cuda"] if "cuda" in available else [])
        for device in devices:
            for batch, height, width in configs:
                if backend == "reference" and device == "cpu" and batch * height * width > args.ref_max_pixels:
                    print(f"{backend:<10}{device:<6}{batch:>4}{height:>6}{width:>6}  skipped (> --ref-max-pixels)")
                    continue
                repeats = args.ref_repeats if backend == "reference" else args.repeats
                warmup = 1 if backend == "reference" else args.warmup
                r = bench_one(backend, batch, height, width, device, warmup, repeats)
                records.append(r)
                bpp = r.get("peak_bytes_per_pixel", "")
                print(f"{backend:<10}{device:<6}{batch:>4}{height:>6}{width:>6}{r['faces']:>6}{r['coverage']:>7.2f}"
                      f"{r['fwd_ms']:>11.3f}{r['fwdbwd_ms']:>12.3f}{repeats:>6}{bpp!s:>8}", flush=True)
    if "cpu" in backends and not args.no_thread_check:
        ts = thread_scaling(args.warmup, args.repeats)
        print("cpu thread scaling (B=8 64x64 fwd+bwd):", json.dumps(ts))
        records.append({"thread_scaling": ts})
    ref = {(r["batch"], r["height"], r["width"]): r for r in records
           if r.get("backend") == "reference" and r.get("threads")}
    for r in records:
        key = (r.get("batch"), r.get("height"), r.get("width"))
        if r.get("backend") == "cpu" and key in ref:
            print(f"cpu vs reference B={key[0]} {key[1]}x{key[2]}: fwd {ref[key]['fwd_ms'] / r['fwd_ms']:.1f}x, "
                  f"fwd+bwd {ref[key]['fwdbwd_ms'] / r['fwdbwd_ms']:.1f}x")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(records, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
