"""DIB-R rasterization (Kaolin-compatible) with C++, CUDA and pure-PyTorch backends.

``dibr_rasterize`` is the same function as ``kaolin.render.mesh.dibr_rasterization(...,
rast_backend="cuda")``: nearest face by largest camera z (first face on ties), screen-space barycentric
interpolation, soft silhouette ``1 - prod(1 - exp(-sigmainv * d^2))`` over the first ``knum`` faces whose
box grown by ``boxlen`` holds the pixel. Formulas: ``../shared/notes/dibr-algorithm.md``.

The compiled backends are two autograd Functions, as in Kaolin: the rasterizer (features, face index)
and the soft mask (which takes the face index as a constant). Their gradients are summed by autograd.
"""

from __future__ import annotations

import warnings

import torch
from torch.autograd import Function
from torch.autograd.function import once_differentiable

from dibr_ros.render import _ext
from dibr_ros.render.reference import rasterize_reference

__all__ = ["dibr_rasterize", "BACKENDS"]

BACKENDS = ("auto", "reference", "cpu", "cuda")
_warned: set = set()


class _Rasterize(Function):
    """Hard rasterization: ``features (B,H,W,D)``, ``face_idx (B,H,W)`` (not differentiable)."""

    @staticmethod
    def forward(ctx, ops, fvz, fvi, feat, nz, height, width, multiplier, eps):
        features, face_idx, weights = ops.rasterize_forward(fvz, fvi, feat, nz, height, width, multiplier, eps)
        ctx.ops, ctx.multiplier, ctx.eps = ops, multiplier, eps
        ctx.save_for_backward(face_idx, weights, fvi, feat)
        ctx.mark_non_differentiable(face_idx)
        return features, face_idx

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_features, _grad_face_idx):
        face_idx, weights, fvi, feat = ctx.saved_tensors
        grad_fvi, grad_feat = ctx.ops.rasterize_backward(
            grad_features.contiguous(), face_idx, weights, fvi, feat, ctx.multiplier, ctx.eps
        )
        return None, None, grad_fvi, grad_feat, None, None, None, None, None


class _SoftMask(Function):
    """Soft silhouette ``(B,H,W)``; covered pixels are 1 without gradient."""

    @staticmethod
    def forward(ctx, ops, fvi, face_idx, sigmainv, boxlen, knum, multiplier):
        soft_mask, saved = ops.soft_mask_forward(fvi, face_idx, sigmainv, boxlen, knum, multiplier)
        ctx.ops, ctx.params = ops, (sigmainv, boxlen, knum, multiplier)
        ctx.num_saved = len(saved)
        ctx.save_for_backward(soft_mask, fvi, face_idx, *saved)
        return soft_mask

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_soft_mask):
        soft_mask, fvi, face_idx, *saved = ctx.saved_tensors
        grad_fvi = ctx.ops.soft_mask_backward(
            grad_soft_mask.contiguous(), soft_mask, fvi, face_idx, list(saved), *ctx.params
        )
        return None, grad_fvi, None, None, None, None, None


def _warn_once(key: str, message: str) -> None:
    if key not in _warned:
        _warned.add(key)
        warnings.warn(message, RuntimeWarning, stacklevel=3)


def _select_ops(backend: str, device: torch.device):
    """The ``torch.ops.dibr_ros`` namespace to run on, or ``None`` for the reference implementation."""
    if backend == "reference":
        return None
    if backend == "auto":
        if device.type == "cpu":
            return _ext.ops()  # None after a failed build; ops() has warned once
        if device.type == "cuda":
            if _ext.has_cuda_kernels():
                return _ext.ops()
            if _ext.ops() is not None:
                _warn_once("cuda", "dibr_ros: extension built without CUDA kernels; using the reference "
                                   "rasterizer for CUDA tensors (slower).")
            return None
        return None
    if backend == "cpu":
        if device.type != "cpu":
            raise ValueError(f"backend='cpu' needs CPU tensors, got device {device}")
        if _ext.ops() is None:
            raise RuntimeError(f"backend='cpu' unavailable: {_ext.build_error()}")
        return _ext.ops()
    if device.type != "cuda":
        raise ValueError(f"backend='cuda' needs CUDA tensors, got device {device}")
    if not _ext.has_cuda_kernels():
        raise RuntimeError(f"backend='cuda' unavailable: CUDA kernels not built ({_ext.build_error()})")
    return _ext.ops()


def _validate(height, width, fvz, fvi, feat, nz, sigmainv, boxlen, knum, multiplier, eps, backend):
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    for name, v in (("height", height), ("width", width), ("knum", knum)):
        if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
            raise ValueError(f"{name} must be a positive int, got {v!r}")
    for name, v in (("sigmainv", sigmainv), ("multiplier", multiplier)):
        if not float(v) > 0:
            raise ValueError(f"{name} must be > 0, got {v!r}")
    for name, v in (("boxlen", boxlen), ("eps", eps)):
        if not float(v) >= 0:
            raise ValueError(f"{name} must be >= 0, got {v!r}")
    tensors = {
        "face_vertices_z": fvz,
        "face_vertices_image": fvi,
        "face_features": feat,
        "face_normals_z": nz,
    }
    for name, t in tensors.items():
        if not isinstance(t, torch.Tensor):
            raise ValueError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
        if t.dtype not in (torch.float32, torch.float64):
            raise ValueError(f"{name} must be float32 or float64, got {t.dtype}")
    if fvz.dim() != 3 or fvz.shape[2] != 3:
        raise ValueError(f"face_vertices_z must be (B, F, 3), got {tuple(fvz.shape)}")
    b, f = fvz.shape[:2]
    if tuple(fvi.shape) != (b, f, 3, 2):
        raise ValueError(f"face_vertices_image must be (B, F, 3, 2) = {(b, f, 3, 2)}, got {tuple(fvi.shape)}")
    if feat.dim() != 4 or tuple(feat.shape[:3]) != (b, f, 3) or feat.shape[3] < 1:
        raise ValueError(f"face_features must be (B, F, 3, D) with B, F = {b}, {f}, got {tuple(feat.shape)}")
    if tuple(nz.shape) != (b, f):
        raise ValueError(f"face_normals_z must be (B, F) = {(b, f)}, got {tuple(nz.shape)}")
    if len({t.dtype for t in tensors.values()}) != 1:
        raise ValueError("all inputs must share one dtype, got " + ", ".join(
            f"{k}={v.dtype}" for k, v in tensors.items()))
    if len({t.device for t in tensors.values()}) != 1:
        raise ValueError("all inputs must be on one device, got " + ", ".join(
            f"{k}={v.device}" for k, v in tensors.items()))


def dibr_rasterize(
    height: int,
    width: int,
    face_vertices_z: torch.Tensor,
    face_vertices_image: torch.Tensor,
    face_features: torch.Tensor,
    face_normals_z: torch.Tensor,
    sigmainv: float = 7000.0,
    boxlen: float = 0.02,
    knum: int = 30,
    multiplier: float = 1000.0,
    eps: float = 1e-8,
    backend: str = "auto",
):
    """Differentiable DIB-R rasterization of a batch of triangle soups (Kaolin semantics).

    Args:
        height, width: image size in pixels; pixel centres are NDC ``x=(2w+1-W)/W``, ``y=(H-2h-1)/H``.
        face_vertices_z: (B, F, 3) camera-space z of each face vertex (camera looks down -z, so the
            face with the largest interpolated z is drawn; the first face in index order wins ties).
        face_vertices_image: (B, F, 3, 2) projected x, y in NDC [-1, 1], +y up.
        face_features: (B, F, 3, D) per-face-vertex features, interpolated with screen-space barycentrics.
        face_normals_z: (B, F) camera-space normal z; faces with a negative value are not rasterized
            (they still count for the soft mask).
        sigmainv: soft-mask sharpness; a face contributes ``exp(-sigmainv * d^2)``, d = NDC distance.
        boxlen: NDC margin around each face's box outside which it contributes nothing to the soft mask.
        knum: at most the first ``knum`` faces (by index) whose grown box holds a pixel contribute to it.
        multiplier: internal coordinate scale (numerics only).
        eps: barycentric normaliser.
        backend: "auto" (CUDA kernels for CUDA tensors, C++ kernels for CPU tensors, the reference
            implementation with one warning if the extension cannot be built), "reference", "cpu" or "cuda".

    Returns:
        features (B, H, W, D) (0 on background), soft_mask (B, H, W) (1 on covered pixels, without
        gradient), face_idx (B, H, W) int64 (-1 on background). Gradients reach ``face_vertices_image``
        and ``face_features`` only.
    """
    _validate(height, width, face_vertices_z, face_vertices_image, face_features, face_normals_z,
              sigmainv, boxlen, knum, multiplier, eps, backend)
    ops = _select_ops(backend, face_vertices_z.device)
    sigmainv, boxlen, multiplier, eps = float(sigmainv), float(boxlen), float(multiplier), float(eps)
    if ops is None:
        return rasterize_reference(height, width, face_vertices_z, face_vertices_image, face_features,
                                   face_normals_z, sigmainv, boxlen, knum, multiplier, eps)
    fvz = face_vertices_z.contiguous()
    fvi = face_vertices_image.contiguous()
    feat = face_features.contiguous()
    nz = face_normals_z.contiguous()
    features, face_idx = _Rasterize.apply(ops, fvz, fvi, feat, nz, height, width, multiplier, eps)
    soft_mask = _SoftMask.apply(ops, fvi, face_idx, sigmainv, boxlen, knum, multiplier)
    return features, soft_mask, face_idx
