"""Training throughput: images per second of ``Trainer`` steps, split into batch rendering and the update.

    .venv/bin/python bench/train_bench.py --threads 2 --steps 30            # the shipped training recipe
    .venv/bin/python bench/train_bench.py --threads 1 2 --variants base chamfer rgb_only

Variants: ``base`` (RGB-D network, depth dropout, silhouette + colour + depth losses: the default recipe
without 3D supervision), ``chamfer`` (base + the Chamfer term, the shipped recipe), ``rgb_only`` (4-channel
network, DIB-R's losses only: the recipe before RGB-D). One image = one view of one object (batch_size *
views per step). Run it on an otherwise idle machine: it measures wall time.

``--modes`` runs the network as trained (``eager``), with channels-last activations and weights
(``channels_last``) or through ``torch.compile`` (``compile``: inductor's C++ backend on CPU; the one-off
compile time is reported apart and left out of the rate).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import torch

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from dibr_ros.model.train import Trainer  # noqa: E402

VARIANTS = {
    "rgb_only": {"network": {"in_channels": 4}, "loss_weights": {"depth": 0.0, "chamfer": 0.0}},
    "base": {"loss_weights": {"depth": 1.0, "chamfer": 0.0}},
    "chamfer": {"loss_weights": {"depth": 1.0, "chamfer": 2.0}},
}


MODES = ("eager", "channels_last", "compile")


def measure(variant: str, threads: int, steps: int, batch: int, views: int, mode: str = "eager") -> dict:
    torch.set_num_threads(threads)
    with tempfile.TemporaryDirectory() as run:
        cfg = {"run_dir": run, "train_split": "train+hh_train", "train_objects": 256, "val_objects": 2,
               "batch_size": batch, "views": views, "progress": False, "num_threads": threads, **VARIANTS[variant]}
        t = Trainer(cfg)
        for _ in range(3):  # warm-up: extension load, allocator
            t._step()
        net, fmt = t.net, torch.contiguous_format
        if mode == "channels_last":
            fmt = torch.channels_last
            net = t.net.to(memory_format=fmt)
        t_compile = 0.0
        if mode == "compile":
            net = torch.compile(t.net)
            t0 = time.perf_counter()
            for _ in range(2):  # the first calls compile forward and backward
                b = t.sampler.sample(batch)
                t.loss_fn(net(t._input(b, dropout=True)), b)["loss"].backward()
            t_compile = time.perf_counter() - t0
        t_sample = t_update = 0.0
        for _ in range(steps):
            t0 = time.perf_counter()
            b = t.sampler.sample(batch)
            t1 = time.perf_counter()
            x = t._input(b, dropout=True).contiguous(memory_format=fmt)
            out = t.loss_fn(net(x), b)
            t.opt.zero_grad(set_to_none=True)
            out["loss"].backward()
            t.opt.step()
            t2 = time.perf_counter()
            t_sample += t1 - t0
            t_update += t2 - t1
    total = t_sample + t_update
    return {"variant": variant, "mode": mode, "compile_s": t_compile, "threads": threads, "steps_per_s": steps / total,
            "images_per_s": steps * batch * views / total, "sample_ms": 1e3 * t_sample / steps,
            "update_ms": 1e3 * t_update / steps}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", nargs="+", type=int, default=[2])
    ap.add_argument("--variants", nargs="+", default=["rgb_only", "base", "chamfer"], choices=list(VARIANTS))
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--views", type=int, default=2)
    ap.add_argument("--modes", nargs="+", default=["eager"], choices=MODES)
    a = ap.parse_args(argv)
    print("| variant | mode | threads | steps/s | images/s | batch rendering ms/step | update ms/step | compile s |")
    print("|---|---|---|---|---|---|---|---|")
    for th in a.threads:
        for v in a.variants:
            for mode in a.modes:
                r = measure(v, th, a.steps, a.batch_size, a.views, mode)
                print(f"| {r['variant']} | {mode} | {r['threads']} | {r['steps_per_s']:.2f} | "
                      f"{r['images_per_s']:.0f} | {r['sample_ms']:.0f} | {r['update_ms']:.0f} | "
                      f"{r['compile_s']:.0f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
