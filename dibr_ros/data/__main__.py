"""``python -m dibr_ros.data``: render evaluation shards and contact sheets.

    python -m dibr_ros.data render --split val --out DIR [--size 128 --views 8 --seed 0 --max-objects N]
    python -m dibr_ros.data render --split all --out DIR     # val, test and ood into DIR/<split>
    python -m dibr_ros.data sheet --split val --out contact_val.png [--objects 24 --views 4 --size 96]
    python -m dibr_ros.data sheet --split hh_test --objects 28 --out bench/contact_household.png
"""

from __future__ import annotations

import argparse
import os
import sys

EVAL_SPLITS = ("val", "test", "ood")


def contact_sheet(split: str, path: str, n_objects: int = 24, n_views: int = 4, size: int = 96, seed: int = 0,
                  per_row: int = 3, jitter: bool = False) -> str:
    """PNG grid: ``n_objects`` objects of ``split`` spread over its list, ``n_views`` seeded views each."""
    import cv2
    import numpy as np

    from . import library, shards

    names = library.list_objects(split)
    pick = sorted({int(i) for i in np.linspace(0, len(names) - 1, min(n_objects, len(names)))})
    tiles = []
    for i in pick:
        smp = shards.render_object(library.load_object(names[i]), n_views, size, seed, jitter)
        row = (smp["rgb"][0].numpy() * 255).round().astype(np.uint8)
        tile = np.concatenate(list(row), 1)
        tile = cv2.copyMakeBorder(tile, 14, 2, 2, 2, cv2.BORDER_CONSTANT, value=(40, 40, 40))
        cv2.putText(tile, names[i], (4, 11), cv2.FONT_HERSHEY_SIMPLEX, 0.35, (255, 255, 255), 1, cv2.LINE_AA)
        tiles.append(tile)
    while len(tiles) % per_row:
        tiles.append(np.zeros_like(tiles[0]))
    rows = [np.concatenate(tiles[r : r + per_row], 1) for r in range(0, len(tiles), per_row)]
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    if not cv2.imwrite(path, np.concatenate(rows, 0)[:, :, ::-1]):
        raise ValueError(f"cannot write {path}")
    return path


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m dibr_ros.data", description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("render", help="render fixed multi-view shards with a manifest")
    r.add_argument("--split", required=True, choices=("train", *EVAL_SPLITS, "all"))
    r.add_argument("--out", required=True, help="output directory (for --split all: one subdirectory per split)")
    r.add_argument("--size", type=int, default=128)
    r.add_argument("--views", type=int, default=8)
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--max-objects", type=int, default=None)
    r.add_argument("--objects-per-shard", type=int, default=25)
    r.add_argument("--jitter", action="store_true", help="colour/texture jitter as in training")
    r.add_argument("--device", default="cpu")
    r.add_argument("--backend", default="auto", choices=("auto", "reference", "cpu", "cuda"))
    s = sub.add_parser("sheet", help="contact sheet PNG of a split")
    s.add_argument("--split", required=True, choices=("train", *EVAL_SPLITS, "hh_train", "hh_val", "hh_test"))
    s.add_argument("--out", required=True)
    s.add_argument("--objects", type=int, default=24)
    s.add_argument("--views", type=int, default=4)
    s.add_argument("--size", type=int, default=96)
    s.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    try:
        if args.cmd == "render":
            from .shards import write_shards

            if args.max_objects is not None and args.max_objects < 1:
                raise ValueError("--max-objects must be >= 1")
            splits = EVAL_SPLITS if args.split == "all" else (args.split,)
            for split in splits:
                out = os.path.join(args.out, split) if args.split == "all" else args.out
                path = write_shards(split, out, args.size, args.views, args.seed, args.max_objects,
                                    args.objects_per_shard, args.jitter, args.device, args.backend)
                print(path)
        else:
            if args.objects < 1 or args.views < 1 or args.size < 8:
                raise ValueError("--objects and --views must be >= 1, --size >= 8")
            print(contact_sheet(args.split, args.out, args.objects, args.views, args.size, args.seed))
    except (ValueError, OSError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
