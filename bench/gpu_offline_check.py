"""Check that training runs with only what the lent GPU machine has: torch, numpy, scipy, opencv, tqdm.

Blocks the imports the GPU machine lacks (open3d, pybullet, pybullet_data, rclpy, yaml, skimage) with a
``sys.meta_path`` finder, points ``DIBR_ROS_CACHE`` at a carried mesh cache, and runs a short training
through ``python -m dibr_ros.model.train`` in this process. CPU is fine (``--device cpu``).

    DIBR_ROS_CACHE=.gpu_carry/dibr_cache python bench/gpu_offline_check.py --steps 10 --batch-size 4
"""

from __future__ import annotations

import importlib.abc
import sys

BLOCKED = ("open3d", "pybullet", "pybullet_data", "rclpy", "yaml", "skimage")


class _Blocker(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"{name} is blocked (absent on the GPU machine)")
        return None


def main(argv: list[str]) -> int:
    for mod in list(sys.modules):
        if mod.split(".")[0] in BLOCKED:
            del sys.modules[mod]
    sys.meta_path.insert(0, _Blocker())
    from dibr_ros.model.train import main as train_main

    rc = train_main(argv)
    leaked = sorted({m.split(".")[0] for m in sys.modules} & set(BLOCKED))
    if leaked:
        print(f"gpu_offline_check: blocked modules were imported anyway: {leaked}", file=sys.stderr)
        return 1
    print(f"gpu_offline_check: train exit code {rc}, none of {BLOCKED} imported")
    return rc


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
