"""Does the predictor read shape or hue? A unit sphere in four colourings, RGB only and with depth.

    .venv/bin/python bench/color_probe.py [--weights W.pt] [--views 8] [--threads 1]

The sphere (ico-sphere level 5) is rendered like an evaluation object (``shards.render_object``: 128x128,
seeded cameras and lights) in orange, white, black and white with 12 dark spots (a football's patches);
each view is the input in turn and the prediction is scored in its view frame against the sphere
(F@0.10, unit = bounding radius; a sphere is rotation invariant, so no frame change is needed). Prints one
Markdown table. Figures: ``bench/RESULTS.md`` section 7.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
import torch

COLOURINGS = ("orange", "white", "black", "spotted")


def sphere(colouring: str):
    from dibr_ros.data import library
    from dibr_ros.render.mesh import ico_sphere

    v, f = (t.numpy() for t in ico_sphere(5))
    base = {"orange": (0.9, 0.5, 0.1), "white": (0.9, 0.9, 0.9), "black": (0.08, 0.08, 0.08),
            "spotted": (0.9, 0.9, 0.9)}[colouring]
    cols = np.tile(np.asarray(base, np.float32), (len(v), 1))
    if colouring == "spotted":  # dark patches around the 12 icosahedron vertex directions
        centres = ico_sphere(0)[0].numpy()
        cols[(v @ centres.T).max(1) > 0.93] = 0.1
    return library.ObjectMesh(f"probe_{colouring}", "ood", v.astype(np.float32), f, cols, 0.05, "probe")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--weights", default=None, help="checkpoint (default: the shipped weights)")
    ap.add_argument("--views", type=int, default=8)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    from dibr_ros.data import shards
    from dibr_ros.eval.metrics import mesh_metrics
    from dibr_ros.model import Predictor

    try:
        pred = Predictor.load(args.weights)
    except (OSError, ValueError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"weights: {args.weights or 'shipped'}; F@0.10 of a unit sphere, {args.views} views each\n")
    print("| colouring | RGB only | full depth |\n|---|---|---|")
    for colouring in COLOURINGS:
        obj = sphere(colouring)
        smp = shards.render_object(obj, args.views, 128, 0)
        rgb = (smp["rgb"][0].numpy() * 255).round().astype(np.uint8)
        mask = smp["mask"][0].numpy() > 0.5
        row = []
        for with_depth in (False, True):
            kw = dict(depth=smp["depth"][0].numpy().astype(np.float32), focal=smp["K"][0][:, 0, 0].numpy()) \
                if with_depth else {}
            out = pred.predict(rgb, mask, **kw)
            faces = out.faces.cpu().numpy()
            scores = [mesh_metrics((out.vertices[i].double().cpu().numpy(), faces),
                                   (obj.vertices.astype(np.float64), obj.faces), seed=0,
                                   n_iou_points=1000)["fscore@0.10"] for i in range(args.views)]
            row.append(f"{np.mean(scores):.3f} (min {np.min(scores):.2f})")
        print(f"| {colouring} | {row[0]} | {row[1]} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
