"""Scoring RGB-only segmentation on the shipped photographs (``test/data/photos``) against their drawn masks.

Bench helper, not part of the installed package (it reads test data): used by
``bench/photo_seg_bench.py`` and ``test/test_photo_segmentation.py``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

PHOTOS = Path(__file__).resolve().parents[1] / "test" / "data" / "photos"
MATCH_IOU = 0.5  # a detection counts as an object when its mask IoU with that object's drawn mask is >= this


def load_photos(root: Path = PHOTOS):
    """Yield (name, rgb (H, W, 3) uint8, [(object name, mask (H, W) bool, obvious_graspable)]).

    Raises ImportError when scikit-image (the photographs' source) is missing.
    """
    import cv2
    import skimage.data

    index = json.loads((root / "photos.json").read_text())
    for p in index["photos"]:
        rgb = getattr(skimage.data, p["name"])()
        if rgb.ndim == 2:  # grey photograph: the segmenter takes rgb
            rgb = np.repeat(rgb[..., None], 3, axis=2)
        objs = [(o["name"], cv2.imread(str(root / o["mask"]), cv2.IMREAD_GRAYSCALE) > 0, o["obvious_graspable"])
                for o in p["objects"]]
        yield p["name"], rgb, objs


def score(dets_masks, objects):
    """Match detections to drawn objects one-to-one by mask IoU (Hungarian, IoU >= MATCH_IOU).

    Args:
        dets_masks: list of (H, W) bool detection masks; objects: [(name, (H, W) bool, obvious)].
    Returns:
        dict: found [(object name, IoU)], missed [names of obvious objects not matched], spurious (int,
        detections matched to no object).
    """
    from scipy.optimize import linear_sum_assignment

    iou = np.zeros((len(objects), len(dets_masks)))
    for i, (_, g, _) in enumerate(objects):
        for j, m in enumerate(dets_masks):
            union = np.logical_or(g, m).sum()
            iou[i, j] = np.logical_and(g, m).sum() / union if union else 0.0
    rows, cols = linear_sum_assignment(-iou) if iou.size else ([], [])
    pairs = [(i, j) for i, j in zip(rows, cols) if iou[i, j] >= MATCH_IOU]
    found = [(objects[i][0], float(iou[i, j])) for i, j in pairs]
    hit = {i for i, _ in pairs}
    missed = [o[0] for i, o in enumerate(objects) if o[2] and i not in hit]
    return {"found": found, "missed": missed, "spurious": len(dets_masks) - len(pairs)}
