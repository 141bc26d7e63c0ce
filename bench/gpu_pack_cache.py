"""Pack the mesh cache the GPU training needs into ``.gpu_carry/dibr_cache`` (run here, before the device call).

    .venv/bin/python bench/gpu_pack_cache.py            # train + val splits, household ones too
    then: run(command="bash bench/gpu_train.sh", carry=[".gpu_carry"], timeout_s=600)

Loads every object of the given splits through :mod:`dibr_ros.data.library` (which fills the local cache
from pybullet_data + open3d where needed) and writes each as a compressed ``.npz`` (same keys, so
``load_object`` reads it unchanged) under ``.gpu_carry/dibr_cache/library_v<N>/``. On the GPU machine,
``DIBR_ROS_CACHE=.gpu_carry/dibr_cache`` makes that folder the whole library (no pybullet_data, no open3d).
Prints the size; the device call carries at most 64 MiB together with the working tree.
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from dibr_ros.data import library


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dest", default=".gpu_carry/dibr_cache")
    ap.add_argument("--splits", nargs="+", default=["train", "val", "hh_train", "hh_val"], choices=library.SPLITS)
    a = ap.parse_args(argv)
    out = os.path.join(a.dest, f"library_v{library.LIBRARY_VERSION}")
    os.makedirs(out, exist_ok=True)
    total = count = 0
    for split in a.splits:
        skipped = []
        for name in library.list_objects(split):
            try:
                obj = library.load_object(name)
            except (OSError, ValueError) as e:
                skipped.append(f"{name} ({e})")
                continue
            path = os.path.join(out, f"{name}.npz")
            np.savez_compressed(path, vertices=obj.vertices, faces=obj.faces, colors=obj.colors,
                                scale_m=np.float64(obj.scale_m), source=np.str_(obj.source))
            total += os.path.getsize(path)
            count += 1
        print(f"{split}: {len(library.list_objects(split)) - len(skipped)} objects"
              + (f", skipped (not loadable) {'; '.join(skipped)}" if skipped else ""))
    print(f"{count} objects, {total / 2**20:.1f} MiB in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
