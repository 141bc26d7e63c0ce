"""``python -m dibr_ros.eval``: score a predictor or a baseline on a split's fixed evaluation views.

    python -m dibr_ros.eval --predictor baseline:sphere --split test [--max-objects 50 --inputs 4]
    python -m dibr_ros.eval --predictor default --split ood          # shipped weights
    python -m dibr_ros.eval --predictor default --split hh_test --depth full   # RGB-D input
    python -m dibr_ros.eval --predictor default --split test --depth full --pipeline   # the node's shape
    python -m dibr_ros.eval --predictor default --split val --recolor white   # shape, not hue?
    python -m dibr_ros.eval --predictor run/ckpt.pt --split val --shards DIR/val
    python -m dibr_ros.eval --predictor my_module:make_predictor --split test --json out.json

Prints one line of mean metrics (and writes every record with --json).
"""

from __future__ import annotations

import argparse
import json
import sys


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m dibr_ros.eval", description=__doc__.split("\n")[0])
    ap.add_argument("--predictor", required=True,
                    help="baseline:{depth,sphere,mirror,hull} | default | CHECKPOINT.pt | MODULE:FACTORY")
    ap.add_argument("--split", required=True, choices=("val", "test", "ood", "train", "hh_train", "hh_val", "hh_test"))
    ap.add_argument("--shards", default=None, help="shard directory of the split (default: render now)")
    ap.add_argument("--max-objects", type=int, default=None)
    ap.add_argument("--views", type=int, default=8, help="views per object when rendering now")
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--inputs", type=int, default=4, help="views per object used as input")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--iou-points", type=int, default=50000)
    ap.add_argument("--depth", default="none", choices=("none", "full", "half"),
                    help="predictor depth input: none (RGB only), full, half (half the depth pixels missing)")
    ap.add_argument("--pipeline", action="store_true",
                    help="score the node's shape (the perception pipeline's placement and completion with the "
                         "depth, true mask) instead of the network's alone; needs --depth full or half")
    ap.add_argument("--recolor", default="none", choices=("none", "white", "black", "random"),
                    help="render the objects with a new base colour (their own variation kept): does the "
                         "predictor read shape or hue?")
    ap.add_argument("--json", default=None, help="write summary and records here")
    args = ap.parse_args(argv)
    try:
        from dibr_ros.data import library

        from .evaluate import eval_items, evaluate, load_method

        for name in ("max_objects", "views", "inputs", "iou_points"):
            val = getattr(args, name)
            if val is not None and val < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be >= 1")
        method = load_method(args.predictor, args.device, args.depth, pipeline=args.pipeline)
        n = len(library.list_objects(args.split))
        total = n if args.max_objects is None else min(n, args.max_objects)
        items = eval_items(args.split, args.views, args.size, args.seed, args.max_objects, args.shards,
                           recolor_mode=args.recolor)
        res = evaluate(method, items, n_inputs=args.inputs, n_iou_points=args.iou_points, seed=args.seed,
                       total=total)
    except (ValueError, TypeError, OSError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    s = res["summary"]
    name = args.predictor + (" (pipeline)" if args.pipeline else "") + (
        f" recolor={args.recolor}" if args.recolor != "none" else "")
    print(f"{name} {args.split} depth={args.depth}: objects {res['n_objects']} views {res['n_views']} "
          + " ".join(f"{k} {v:.4f}" for k, v in s.items()))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"predictor": args.predictor, "pipeline": args.pipeline, "split": args.split,
                       "depth": args.depth, "recolor": args.recolor, **res}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
