"""RGB-only segmentation (``segment_color``) on real photographs: found / missed / spurious / mask IoU.

Photographs and drawn masks: ``test/data/photos`` (scikit-image's bundled sample data).
Usage: ``python bench/photo_seg_bench.py``; prints a markdown table.
"""

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from photo_eval import load_photos, score  # bench/photo_eval.py

from dibr_ros.perception.segmentation import segment_color

KWARGS = dict(max_objects=40, max_area_fraction=0.9)  # photos hold up to 24 objects


def main():
    print("| photo | objects | found | missed | spurious | mean IoU (found) | per-object IoU | ms |")
    print("|---|---|---|---|---|---|---|---|")
    tot = dict(n=0, found=0, missed=0, spurious=0, ious=[], photos=0)
    for name, rgb, objects in load_photos():
        t = time.perf_counter()
        dets = segment_color(rgb, **KWARGS)
        ms = 1000 * (time.perf_counter() - t)
        s = score([d.mask for d in dets], objects)
        ious = [v for _, v in s["found"]]
        per = ", ".join(f"{n} {v:.2f}" for n, v in s["found"]) or "-"
        mean = f"{sum(ious) / len(ious):.3f}" if ious else "-"
        print(f"| {name} | {len(objects)} | {len(ious)} | {len(s['missed'])} | {s['spurious']} | {mean} | {per} | "
              f"{ms:.0f} |")
        tot["n"] += len(objects)
        tot["found"] += len(ious)
        tot["missed"] += len(s["missed"])
        tot["spurious"] += s["spurious"]
        tot["ious"] += ious
        tot["photos"] += 1
    mean = f"{sum(tot['ious']) / len(tot['ious']):.3f}" if tot["ious"] else "-"
    print(f"| **total** | {tot['n']} | {tot['found']} | {tot['missed']} | {tot['spurious']} "
          f"({tot['spurious'] / tot['photos']:.1f} per photo) | {mean} | min "
          f"{min(tot['ious'], default=0):.2f} | |")


if __name__ == "__main__":
    main()
