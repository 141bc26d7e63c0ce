"""Test-time variants of the shipped predictor, scored with ``python -m dibr_ros.eval`` (MODULE:FACTORY).

Measured for issue 14's RGB-only rows and not shipped (see bench/RESULTS.md section 7):

    PYTHONPATH=bench .venv/bin/python -m dibr_ros.eval --predictor predictor_variants:default --split val \
        --max-objects 30 --inputs 2 --iou-points 2000 --depth none
    ... --predictor predictor_variants:tta_scale      # TTA_SCALES=0.9,1.0,1.1 (crop_scale factors)
    ... --predictor predictor_variants:tta_rotate     # TTA_ANGLES=-8,0,8 (in-plane degrees)
    ... --predictor predictor_variants:refine         # REFINE_ITERS=10 REFINE_LR=0.01

* ``tta_scale`` / ``tta_rotate``: the network on re-framed or in-plane rotated copies of each crop, the
  vertices (one template topology) averaged in the view frame after undoing the rotation about the optical
  axis.
* ``refine``: DIB-R silhouette fitting at test time: per-vertex offsets optimised (Adam) so that the soft
  silhouette of the mesh, rendered through ``dibr_rasterize`` by a camera 5 radii away whose intrinsics frame the
  mesh's projection on the mask's box, matches the input mask; the Laplacian energy may not grow. RGB-only
  inputs only (with depth the pipeline's completion fits the measurement).
"""

from __future__ import annotations

import os

import numpy as np
import torch

from dibr_ros.model.losses import soft_iou
from dibr_ros.model.network import normalize_vertices
from dibr_ros.model.predictor import PredictedMeshes, Predictor
from dibr_ros.model.rendering import render_faces
from dibr_ros.render.mesh import uniform_laplacian


def _floats(name: str, default: str) -> list[float]:
    return [float(x) for x in os.environ.get(name, default).split(",")]


class _Variant:
    """The shipped predictor's contract (attributes forwarded), ``predict`` replaced."""

    def __init__(self):
        self.base = Predictor.load(None, device="cpu")

    def __getattr__(self, name):
        return getattr(self.base, name)

    def _meshes(self, vertices, out) -> PredictedMeshes:
        return PredictedMeshes(vertices=vertices, faces=out.faces, colors=out.colors, sh=out.sh, device=out.device)


class TTAScale(_Variant):
    def predict(self, rgb, mask, depth=None, focal=None):
        s0, outs = self.base.crop_scale, []
        try:
            for s in _floats("TTA_SCALES", "0.9,1.0,1.1"):
                self.base.crop_scale = s0 * s
                outs.append(self.base.predict(rgb, mask, depth, focal))
        finally:
            self.base.crop_scale = s0
        return self._meshes(torch.stack([o.vertices for o in outs]).mean(0), outs[len(outs) // 2])


class TTARotate(_Variant):
    def predict(self, rgb, mask, depth=None, focal=None):
        import cv2

        vs, ref = [], None
        for a in _floats("TTA_ANGLES", "-8,0,8"):
            ims, ms, ds = [], [], []
            for i in range(len(rgb)):
                h, w = np.asarray(mask[i]).shape
                M = cv2.getRotationMatrix2D((w / 2 - 0.5, h / 2 - 0.5), a, 1.0)  # a > 0: counter-clockwise
                ims.append(cv2.warpAffine(np.ascontiguousarray(rgb[i]), M, (w, h), flags=cv2.INTER_LINEAR))
                ms.append(cv2.warpAffine(np.asarray(mask[i], np.uint8), M, (w, h), flags=cv2.INTER_NEAREST) > 0)
                if depth is not None:
                    ds.append(cv2.warpAffine(np.asarray(depth[i], np.float32), M, (w, h), flags=cv2.INTER_NEAREST))
            out = self.base.predict(ims, ms, ds if depth is not None else None, focal)
            t = np.deg2rad(a)
            # the image rotation turned the object about the optical axis by R: undo it (p @ R = R^T p)
            R = torch.tensor([[np.cos(t), np.sin(t), 0.0], [-np.sin(t), np.cos(t), 0.0], [0.0, 0.0, 1.0]],
                             dtype=torch.float32)
            vs.append(out.vertices @ R)
            ref = out if a == 0 or ref is None else ref
        return self._meshes(torch.stack(vs).mean(0), ref)


class Refine(_Variant):
    DISTANCE = 5.0  # camera distance in bounding radii (mid training range)

    def __init__(self):
        super().__init__()
        self.iters = int(os.environ.get("REFINE_ITERS", "10"))
        self.lr = float(os.environ.get("REFINE_LR", "0.01"))
        self.L = uniform_laplacian(int(self.base.network.template.shape[0]), self.base.network.faces)

    def predict(self, rgb, mask, depth=None, focal=None):
        b = self.base
        with torch.inference_mode():
            x = b.preprocess(rgb, mask, depth, focal)
            out = b.network(x)
        meshes = PredictedMeshes(vertices=out["vertices"], faces=b.network.faces, colors=out["colors"],
                                 sh=out["sh"], device=b.device)
        if self.iters == 0 or depth is not None:
            return meshes
        with torch.inference_mode(False), torch.enable_grad():
            v = self._refine(out["vertices"].clone(), x[:, 3].clone())
        return self._meshes(v, meshes)

    def _cameras(self, v, m):
        uv = v[..., :2] / (v[..., 2:] + self.DISTANCE)
        lo, hi = uv.amin(1), uv.amax(1)
        Ks = []
        for i in range(len(v)):
            ys, xs = torch.nonzero(m[i] > 0.5, as_tuple=True)
            mlo = torch.stack([xs.min(), ys.min()]).float() - 0.5
            mhi = torch.stack([xs.max(), ys.max()]).float() + 0.5
            f = float((mhi - mlo).max() / (hi[i] - lo[i]).max())
            c = 0.5 * (mlo + mhi) - f * 0.5 * (lo[i] + hi[i])
            Ks.append(torch.tensor([[f, 0.0, c[0]], [0.0, f, c[1]], [0.0, 0.0, 1.0]]))
        return torch.stack(Ks)

    def _refine(self, v0, m):
        n, S, faces = len(v0), m.shape[-1], self.base.network.faces
        K = self._cameras(v0, m)
        R = torch.diag(torch.tensor([1.0, -1.0, -1.0]))[None].repeat(n, 1, 1)  # optical -> OpenGL camera
        eye = torch.tensor([0.0, 0.0, -self.DISTANCE]).repeat(n, 1)

        def lap(v):
            return torch.stack([torch.sparse.mm(self.L, v[i]).pow(2).sum(-1).mean() for i in range(n)]).mean()

        lap0 = lap(v0).detach()
        off = torch.zeros_like(v0, requires_grad=True)
        opt = torch.optim.Adam([off], lr=self.lr)
        for _ in range(self.iters):
            v = v0 + off
            fv = v[:, faces]
            alpha = render_faces(fv, torch.ones_like(fv), R, eye, K, S)["alpha"]
            loss = (1 - soft_iou(alpha, m)).mean() + 100.0 * torch.relu(lap(v) - lap0)
            opt.zero_grad()
            loss.backward()
            opt.step()
        with torch.no_grad():
            return normalize_vertices(v0 + off)


def default():
    return Predictor.load(None, device="cpu")


def tta_scale():
    return TTAScale()


def tta_rotate():
    return TTARotate()


def refine():
    return Refine()
