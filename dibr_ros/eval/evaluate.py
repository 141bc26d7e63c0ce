"""Score a method (trained predictor or baseline) on the fixed evaluation views of a split.

Protocol: each object has ``views`` seeded renders (:func:`dibr_ros.data.shards.render_object`, 128x128,
30 degree camera at distance 4 from the object centre, so every view holds the whole object). Each of the
first ``n_inputs`` views is in turn the input; the method's shape in that view's frame is compared with
the ground truth in the same frame (:func:`~dibr_ros.eval.metrics.mesh_metrics`), and its silhouette is
compared with the ground truth's in the input view (``sil_iou_input``) and in all other views
(``sil_iou_novel``, mean). ``chamfer_l1_mm`` is ``chamfer_l1`` times the object's metric radius (the
camera-frame Chamfer distance at real size).
"""

from __future__ import annotations

import dataclasses
import importlib
import math
import os

import numpy as np
import torch

from dibr_ros.data import library, shards, views

from .baselines import BASELINES, baseline_shape
from .metrics import mesh_metrics, silhouette_iou

METRIC_KEYS = ("chamfer_l1", "chamfer_l1_mm", "fscore@0.05", "precision@0.05", "recall@0.05", "fscore@0.10",
               "precision@0.10", "recall@0.10", "iou_3d", "sil_iou_input", "sil_iou_novel")


RECOLOR_MODES = ("none", "white", "black", "random")


def recolor(obj: library.ObjectMesh, mode: str, seed: int = 0) -> library.ObjectMesh:
    """The object with a new base colour (:func:`~dibr_ros.data.views.rebase_colors`): "white"
    (0.9 grey), "black" (0.08 grey), "random" (seeded by object name and ``seed``: half of them grey, the rest
    uniform RGB), "none" (unchanged). Measures whether a predictor reads shape or hue."""
    if mode not in RECOLOR_MODES:
        raise ValueError(f"recolor mode must be one of {RECOLOR_MODES}, got {mode!r}")
    if mode == "none":
        return obj
    if mode == "random":
        rng = np.random.default_rng([views.object_seed(seed, obj.name), 17])
        base = rng.random(3)
        base = np.full(3, base[0]) if rng.random() < 0.5 else base
    else:
        base = np.full(3, 0.9 if mode == "white" else 0.08)
    cols = views.rebase_colors(torch.as_tensor(obj.colors, dtype=torch.float32),
                               torch.as_tensor(base, dtype=torch.float32)[None])
    return dataclasses.replace(obj, colors=cols.numpy())


def eval_items(split: str, n_views: int = 8, size: int = 128, seed: int = 0, max_objects: int | None = None,
               shard_dir: str | None = None, backend: str = "auto", recolor_mode: str = "none"):
    """Yield evaluation items (the :class:`~dibr_ros.data.shards.ShardDataset` item dict, view 0 first).

    With ``shard_dir`` the views are read from disk, else rendered now with the same seeded code (identical
    images up to the uint8 rounding that is applied here too), the objects recoloured by :func:`recolor`.
    """
    if shard_dir is not None and recolor_mode != "none":
        raise ValueError("recolouring renders the views now: it cannot be combined with a shard directory")
    if shard_dir is not None:
        ds = shards.ShardDataset(shard_dir)
        if ds.manifest["split"] != split:
            raise ValueError(f"{shard_dir} holds split {ds.manifest['split']!r}, not {split!r}")
        n = len(ds) if max_objects is None else min(len(ds), max_objects)
        for i in range(n):
            yield ds[i]
        return
    for i, obj in enumerate(library.load_split(split, max_objects)):
        smp = shards.render_object(recolor(obj, recolor_mode, seed), n_views, size, seed, backend=backend)
        rel = views.relative_cameras(smp["R"], smp["eye"])
        yield {"rgb": (smp["rgb"][0] * 255).round() / 255.0, "mask": smp["mask"][0], "depth": smp["depth"][0],
               "R": smp["R"][0], "eye": smp["eye"][0], "K": smp["K"][0], "view_rot": rel["view_rot"][0],
               "R_rel": rel["R_rel"][0], "eye_rel": rel["eye_rel"][0],
               "scale_m": torch.tensor(obj.scale_m), "index": torch.tensor(i), "name": obj.name}


def roll_views(item: dict, i: int) -> dict:
    """The item with view ``i`` first (cameras relative to it recomputed)."""
    n = item["R"].shape[0]
    order = torch.as_tensor(np.roll(np.arange(n), -i))
    out = dict(item)
    for k in ("rgb", "mask", "depth", "R", "eye", "K"):
        out[k] = item[k][order]
    out.update({k: v[0] for k, v in views.relative_cameras(out["R"][None], out["eye"][None]).items()})
    return out


class BaselineMethod:
    """Callable method from :data:`~dibr_ros.eval.baselines.BASELINES` (see :func:`evaluate`)."""

    normalize = False

    def __init__(self, kind: str):
        if kind not in BASELINES:
            raise ValueError(f"baseline must be one of {BASELINES}, got {kind!r}")
        self.kind = kind

    def __call__(self, batch: dict) -> list:
        return [baseline_shape(self.kind, batch["depth"][n], batch["mask"][n], batch["K"][n], batch["center"][n],
                               batch["gt"][n]) for n in range(len(batch["rgb"]))]


DEPTH_MODES = ("none", "full", "half")


def drop_half_depth(depth: np.ndarray, mask: np.ndarray, seed: int, fraction: float = 0.5) -> np.ndarray:
    """Depth with round holes (radius 4-12 % of the image side) punched until ``fraction`` of the mask's
    depth pixels are gone, as glossy or dark patches lose them. depth (H, W), mask (H, W) bool -> (H, W)."""
    rng = np.random.default_rng(seed)
    h, w = depth.shape
    out = depth.copy()
    ys, xs = np.nonzero(mask & (depth > 0))
    total = len(ys)
    yy, xx = np.mgrid[:h, :w]
    while total and ((out > 0) & mask).sum() > (1 - fraction) * total:
        j = rng.integers(total)
        r = rng.uniform(0.04, 0.12) * max(h, w)
        out[(yy - ys[j]) ** 2 + (xx - xs[j]) ** 2 < r * r] = 0
    return out


class PredictorMethod:
    """Wraps an object with the Predictor contract (DESIGN §4): ``predict(rgb uint8, mask bool[, depth,
    focal])`` -> meshes.

    Its crops are the whole input renders (object centre at the image centre, unit sphere just inside).
    Predictions are renormalised (bbox centre, unit bounding sphere) before scoring, as the ground truth is.
    depth: "none" (RGB only), "full" (the render's depth) or "half" (:func:`drop_half_depth`).
    """

    normalize = True

    def __init__(self, predictor, depth: str = "none"):
        if not callable(getattr(predictor, "predict", None)):
            raise TypeError("predictor must have a predict(rgb, mask) method")
        if depth not in DEPTH_MODES:
            raise ValueError(f"depth mode must be one of {DEPTH_MODES}, got {depth!r}")
        self.predictor = predictor
        self.depth = depth

    def __call__(self, batch: dict) -> list:
        with torch.inference_mode():
            if self.depth == "none":
                out = self.predictor.predict(batch["rgb"], batch["mask"])
            else:
                d = batch["depth"].astype(np.float32)
                if self.depth == "half":
                    d = np.stack([drop_half_depth(d[n], batch["mask"][n], seed=n) for n in range(len(d))])
                out = self.predictor.predict(batch["rgb"], batch["mask"], depth=d, focal=batch["K"][:, 0, 0])
        faces = np.asarray(torch.as_tensor(out.faces).cpu(), np.int64)
        verts = torch.as_tensor(out.vertices).detach().float().cpu().numpy()
        return [(verts[n].astype(np.float64), faces) for n in range(len(verts))]


class PipelineMethod(PredictorMethod):
    """The node's shape, not the network's alone: each input view through
    :class:`~dibr_ros.perception.pipeline.PerceptionPipeline` (its crop, placement and completion with the
    measured depth) with the true mask as the instance map, at real size (depth x the object's metric
    radius). Scored like :class:`PredictorMethod` (renormalised). Needs depth ("full" or "half")."""

    def __init__(self, predictor, depth: str = "full"):
        super().__init__(predictor, depth)
        if depth == "none":
            raise ValueError("the pipeline method completes with depth: use --depth full or half")
        from dibr_ros.perception.pipeline import PerceptionPipeline

        self.pipeline = PerceptionPipeline(predictor, {"debug_image": False})  # auto: the given labels

    def __call__(self, batch: dict) -> list:
        out = []
        for n in range(len(batch["rgb"])):
            d = batch["depth"][n].astype(np.float32)
            if self.depth == "half":
                d = drop_half_depth(d, batch["mask"][n], seed=n)
            d = np.where(d > 0, d * float(batch["scale_m"][n]), np.nan).astype(np.float32)
            res = self.pipeline.process(batch["rgb"][n], batch["K"][n], d, labels=batch["mask"][n].astype(np.int32))
            if len(res.objects) != 1:
                raise RuntimeError(f"pipeline found {len(res.objects)} objects in a one-object view")
            o = res.objects[0]
            out.append((np.asarray(o.vertices, np.float64), np.asarray(o.faces, np.int64)))
        return out


def load_method(spec: str, device: str = "cpu", depth: str = "none", pipeline: bool = False):
    """Method from a CLI spec: ``baseline:<kind>``, ``default`` (shipped weights), a checkpoint path, or
    ``module:factory`` (factory() returns an object with the Predictor contract); ``depth`` the predictor's
    depth input mode (:data:`DEPTH_MODES`); ``pipeline``: score the node's completed shape
    (:class:`PipelineMethod`) instead of the network's."""
    if spec.startswith("baseline:"):
        return BaselineMethod(spec.split(":", 1)[1])
    if spec == "default" or spec.endswith(".pt") or os.path.isfile(spec):
        if spec != "default" and not os.path.isfile(spec):
            raise ValueError(f"checkpoint {spec} does not exist")
        from dibr_ros.model import Predictor

        pred = Predictor.load(None if spec == "default" else spec, device=device)
        return (PipelineMethod if pipeline else PredictorMethod)(pred, depth)
    mod, sep, attr = spec.partition(":")
    if not sep or not mod or not attr:
        raise ValueError(f"predictor spec {spec!r} is not baseline:KIND, default, a .pt path or MODULE:FACTORY")
    try:
        factory = getattr(importlib.import_module(mod), attr)
    except (ImportError, AttributeError) as e:
        raise ValueError(f"cannot load {spec}: {e}") from e
    return (PipelineMethod if pipeline else PredictorMethod)(factory(), depth)


def evaluate(method, items, n_inputs: int = 4, n_points: int = 10000, n_iou_points: int = 50000, seed: int = 0,
             silhouettes: bool = True, progress: bool = True, total: int | None = None) -> dict:
    """Score ``method`` on evaluation ``items`` (:func:`eval_items`).

    Args:
        method: callable ``method(batch) -> list[(vertices, faces | None)]`` in each input view's frame, with
            ``batch`` = dict of numpy arrays over N input views: rgb (N,H,W,3) uint8, mask (N,H,W) bool,
            depth (N,H,W), K (N,3,3), center (N,3) object centre in optical coordinates, scale_m (N,) the
            object's metric bounding radius (depth unit = that radius), gt list of the
            ground-truth (vertices, faces) in the view frames (hull reference only). A ``normalize`` attribute
            that is True renormalises meshes (bbox centre, unit bounding sphere) before scoring.
        n_inputs: how many of each object's views serve as input.

    Returns:
        dict: records (list of per-(object, input view) dicts: name, view, the :data:`METRIC_KEYS`),
        summary (mean of each key over records, NaNs ignored; NaN if all are NaN), n_objects, n_views.
    """
    from tqdm import tqdm

    records = []
    for item in tqdm(items, total=total, desc="eval", unit="obj", disable=not progress):
        obj = library.load_object(item["name"])
        k = min(n_inputs, item["R"].shape[0])
        rolled = [roll_views(item, i) for i in range(k)]
        gts = [(obj.vertices.astype(np.float64) @ r["view_rot"][0].double().numpy().T, obj.faces) for r in rolled]
        centers = [(r["view_rot"][0] @ -r["eye"][0]).numpy() for r in rolled]
        batch = {"rgb": np.stack([(r["rgb"][0].numpy() * 255).round().astype(np.uint8) for r in rolled]),
                 "mask": np.stack([r["mask"][0].numpy() > 0.5 for r in rolled]),
                 "depth": np.stack([r["depth"][0].numpy() for r in rolled]),
                 "K": np.stack([r["K"][0].double().numpy() for r in rolled]), "center": np.stack(centers),
                 "gt": gts, "scale_m": np.full(k, float(item["scale_m"]))}
        preds = method(batch)
        for i, (r, gt, pred) in enumerate(zip(rolled, gts, preds)):
            pv, pf = pred
            if pf is not None and getattr(method, "normalize", False):
                pv = library.normalize(pv)[0]
            m = mesh_metrics((pv, pf), gt, n_points=n_points, seed=seed, n_iou_points=n_iou_points)
            m["chamfer_l1_mm"] = m["chamfer_l1"] * float(item["scale_m"]) * 1000.0
            if silhouettes and pf is not None:
                sil = silhouette_iou((pv, pf), r["mask"], (r["R_rel"], r["eye_rel"]), size=r["mask"].shape[-1])
                m["sil_iou_input"] = float(sil[0])
                m["sil_iou_novel"] = float(np.nanmean(sil[1:])) if len(sil) > 1 else math.nan
            else:
                m["sil_iou_input"] = m["sil_iou_novel"] = math.nan
            records.append({"name": item["name"], "view": i, **m})
    summary = {}
    for key in METRIC_KEYS:
        vals = np.array([rec[key] for rec in records], dtype=np.float64)
        summary[key] = float(np.nanmean(vals)) if np.isfinite(vals).any() else math.nan
    return {"records": records, "summary": summary, "n_objects": len({r["name"] for r in records}),
            "n_views": len(records)}
