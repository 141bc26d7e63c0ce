"""DIB-R training losses: soft-silhouette IoU, masked L1 colour and depth (input + other views), Laplacian,
flatten.

Multi-view supervision (DIB-R ``viewnum``): the mesh predicted from view i of a sample is rendered with the
cameras of all views j of that sample (views^2 renders per sample) and compared with the target renders.
Shading is Lambertian per vertex: ``albedo * max(<sh, Y9(n)>, 0)`` with normals in the view frame of the
input view i, so a light fixed in the world shades every view j consistently.
"""

from __future__ import annotations

import torch
from torch import nn

from dibr_ros.model.rendering import render_vertex_colors
from dibr_ros.render.mesh import edge_face_adjacency, face_normals, sample_points, uniform_laplacian, vertex_normals
from dibr_ros.render.shading import sh9_basis

__all__ = [
    "DEFAULT_WEIGHTS",
    "OPTICAL_TO_GL",
    "DIBRLoss",
    "chamfer_loss",
    "flatten_loss",
    "laplacian_loss",
    "masked_l1",
    "shade_vertices",
    "soft_iou",
    "view_to_world",
]

# "depth" (off by default, as in DIB-R): L1 of the rendered depth where prediction and target both cover a
# pixel. Silhouettes leave the extent along each view ray to the other views; depth pins it down.
# "chamfer" (off by default, not in DIB-R): 3D supervision, the symmetric mean nearest-neighbour distance
# between samples of the predicted surface and fixed samples of the true surface (``batch["surface"]``), both
# in the input view's frame and normalisation: what the view-frame F-score measures.
DEFAULT_WEIGHTS = {"iou": 1.0, "color": 3.0, "laplacian": 0.01, "flatten": 0.001, "depth": 0.0, "chamfer": 0.0}

# Optical frame (x right, y down, z forward) <-> OpenGL camera frame (x right, y up, z backward).
OPTICAL_TO_GL = torch.diag(torch.tensor([1.0, -1.0, -1.0]))


def soft_iou(pred: torch.Tensor, target: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Soft IoU sum(S*T) / sum(S + T - S*T) per image. pred, target (N, H, W) in [0, 1] -> (N,)."""
    inter = (pred * target).flatten(1).sum(1)
    union = (pred + target - pred * target).flatten(1).sum(1)
    return inter / (union + eps)


def masked_l1(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """mean(|pred - target| * mask) over all pixels and channels ([REIMPL] colour loss).

    pred, target (N, H, W, 3); mask (N, H, W) -> scalar.
    """
    return ((pred - target).abs() * mask.unsqueeze(-1)).mean()


def laplacian_loss(offsets: torch.Tensor, laplacian: torch.Tensor) -> torch.Tensor:
    """sum over vertices of |L d|^2, averaged over the batch. offsets (B, V, 3); laplacian sparse (V, V)."""
    b, v, _ = offsets.shape
    x = offsets.transpose(0, 1).reshape(v, b * 3)
    lx = torch.sparse.mm(laplacian, x) if laplacian.is_sparse else laplacian @ x
    return lx.pow(2).sum() / b


def flatten_loss(vertices: torch.Tensor, faces: torch.Tensor, adjacency: torch.Tensor) -> torch.Tensor:
    """sum over edge-adjacent face pairs of (cos(n1, n2) - 1)^2, averaged over the batch.

    vertices (B, V, 3); faces (F, 3) int64; adjacency (E, 2) int64 face pairs.
    """
    n = face_normals(vertices, faces, unit=True)
    cos = (n[:, adjacency[:, 0]] * n[:, adjacency[:, 1]]).sum(-1)
    return (cos - 1.0).pow(2).sum() / vertices.shape[0]


def chamfer_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """0.5 * (mean_p min_t |p - t| + mean_t min_p |p - t|), averaged over the batch.

    pred (N, P, 3), target (N, T, 3) -> scalar (Euclidean distances, as the evaluation's Chamfer-L1).
    The nearest neighbours are found without autograd (one matrix product); only the matched pairs'
    distances are differentiated (the same gradient as through the min, 20x cheaper on a CPU).
    """
    with torch.no_grad():
        d = torch.cdist(pred, target, compute_mode="use_mm_for_euclid_dist")
        to_t, to_p = d.argmin(2), d.argmin(1)  # (N, P), (N, T)
    gather = lambda x, i: torch.gather(x, 1, i[..., None].expand(-1, -1, 3))  # noqa: E731
    d_pt = (pred - gather(target, to_t)).norm(dim=-1)
    d_tp = (target - gather(pred, to_p)).norm(dim=-1)
    return 0.5 * (d_pt.mean() + d_tp.mean())


def shade_vertices(vertices: torch.Tensor, faces: torch.Tensor, albedo: torch.Tensor,
                   sh: torch.Tensor) -> torch.Tensor:
    """Per-vertex SH9 Lambertian colour, clamped to [0, 1].

    vertices (B, V, 3) in the frame the SH coefficients refer to; albedo (B, V, 3); sh (B, 9) -> (B, V, 3).
    """
    n = vertex_normals(vertices, faces)
    irradiance = (sh9_basis(n) * sh[:, None, :]).sum(-1, keepdim=True).clamp_min(0.0)
    return (albedo * irradiance).clamp(0.0, 1.0)


def view_to_world(vertices: torch.Tensor, R: torch.Tensor) -> torch.Tensor:
    """View-frame vertices of a camera with world->camera rotation R into the world frame (same origin).

    p_world = R^T diag(1,-1,-1) p_view. vertices (..., V, 3); R (..., 3, 3) -> (..., V, 3).
    """
    return vertices @ (OPTICAL_TO_GL.to(vertices) @ R)


class DIBRLoss(nn.Module):
    """Weighted DIB-R loss over a multi-view batch.

    forward(pred, batch) with pred from DIBRNet on the B*W input images (W views per sample, flattened
    sample-major) and batch holding, per sample and view: ``rgb`` (B, W, H, H, 3) and ``mask`` (B, W, H, H)
    targets (and ``depth`` (B, W, H, H), object units, needed when the depth weight is > 0), cameras ``R``
    (B, W, 3, 3), ``eye`` (B, W, 3), ``K`` (B, W, 3, 3) (crop intrinsics, pixels).
    Returns a dict: ``loss`` (weighted total), ``iou`` / ``color`` / ``laplacian`` / ``flatten`` / ``depth``
    (terms; depth = mean absolute depth error over the pixels both cover, 0 when not computed),
    ``chamfer`` (with ``batch["surface"]`` (B, W, T, 3) and a chamfer weight > 0, else 0),
    ``iou_input`` / ``color_input`` (soft IoU and masked L1 of the input-view renders, detached), ``renders``
    (rgb (B, W, W, H, H, 3), alpha and hard mask (B, W, W, H, H) of the mesh predicted from view i rendered in
    view j, detached).
    multiview=False renders each prediction in its input view only.
    """

    def __init__(self, faces: torch.Tensor, num_vertices: int, weights: dict | None = None,
                 multiview: bool = True, backend: str = "auto"):
        super().__init__()
        self.weights = dict(DEFAULT_WEIGHTS)
        for k, v in (weights or {}).items():
            if k not in DEFAULT_WEIGHTS:
                raise ValueError(f"unknown loss weight {k!r}; expected one of {sorted(DEFAULT_WEIGHTS)}")
            self.weights[k] = float(v)
        self.multiview = bool(multiview)
        self.backend = backend
        faces = faces.long().cpu()
        self.register_buffer("faces", faces, persistent=False)
        self.register_buffer("adjacency", edge_face_adjacency(faces).long(), persistent=False)
        self.laplacian = uniform_laplacian(num_vertices, faces).coalesce().float()

    def forward(self, pred: dict, batch: dict) -> dict:
        rgb_t, mask_t = batch["rgb"], batch["mask"]
        b, w, h = mask_t.shape[:3]
        verts = pred["vertices"]  # (B*W, V, 3)
        nv = verts.shape[1]
        shaded = shade_vertices(verts, self.faces, pred["colors"], pred["sh"])
        R, eye, K = batch["R"], batch["eye"], batch["K"]
        world = view_to_world(verts.view(b, w, nv, 3), R)  # (B, W, V, 3)
        wj = w if self.multiview else 1
        if self.multiview:
            world = world.unsqueeze(2).expand(b, w, w, nv, 3)
            cols = shaded.view(b, w, 1, nv, 3).expand(b, w, w, nv, 3)
            cam = lambda x: x.unsqueeze(1).expand(b, w, *x.shape[1:])  # noqa: E731  view j of sample b
            Rj, eyej, Kj, rgbj, maskj = cam(R), cam(eye), cam(K), cam(rgb_t), cam(mask_t)
        else:
            world, cols = world.unsqueeze(2), shaded.view(b, w, 1, nv, 3)
            Rj, eyej, Kj = R.unsqueeze(2), eye.unsqueeze(2), K.unsqueeze(2)
            rgbj, maskj = rgb_t.unsqueeze(2), mask_t.unsqueeze(2)
        n = b * w * wj
        with_depth = self.weights["depth"] > 0
        if with_depth and "depth" not in batch:
            raise ValueError("the depth loss weight is > 0 but the batch has no 'depth' targets")
        out = render_vertex_colors(world.reshape(n, nv, 3), self.faces, cols.reshape(n, nv, 3),
                                   Rj.reshape(n, 3, 3), eyej.reshape(n, 3), Kj.reshape(n, 3, 3), h,
                                   backend=self.backend, with_depth=with_depth)
        alpha, rgb = out["alpha"], out["rgb"]
        tgt_m, tgt_rgb = maskj.reshape(n, h, h), rgbj.reshape(n, h, h, 3)
        ious = soft_iou(alpha, tgt_m)
        l_iou = 1.0 - ious.mean()
        l_col = masked_l1(rgb, tgt_rgb, tgt_m)
        l_lap = laplacian_loss(pred["offsets"], self.laplacian.to(verts.device))
        l_flat = flatten_loss(verts, self.faces, self.adjacency)
        wt = self.weights
        total = wt["iou"] * l_iou + wt["color"] * l_col + wt["laplacian"] * l_lap + wt["flatten"] * l_flat
        l_depth = torch.zeros((), device=verts.device)
        if with_depth:
            d_t = (batch["depth"].unsqueeze(1).expand(b, w, *batch["depth"].shape[1:]) if self.multiview
                   else batch["depth"].unsqueeze(2)).reshape(n, h, h)
            both = out["mask"] * tgt_m
            l_depth = ((out["depth"] - d_t).abs() * both).sum() / both.sum().clamp_min(1.0)
            total = total + wt["depth"] * l_depth
        l_chamfer = torch.zeros((), device=verts.device)
        if wt["chamfer"] > 0:
            if "surface" not in batch:
                raise ValueError("the chamfer loss weight is > 0 but the batch has no 'surface' samples")
            pts = sample_points(verts, self.faces, verts.shape[1])
            l_chamfer = chamfer_loss(pts, batch["surface"].reshape(b * w, -1, 3))
            total = total + wt["chamfer"] * l_chamfer
        # input-view renders: j == i (the diagonal when multiview)
        ious_bw = ious.detach().view(b, w, wj)
        err = ((rgb.detach() - tgt_rgb).abs() * tgt_m.unsqueeze(-1)).mean(dim=(1, 2, 3)).view(b, w, wj)
        if self.multiview:
            ious_in, err_in = ious_bw.diagonal(dim1=1, dim2=2), err.diagonal(dim1=1, dim2=2)
        else:
            ious_in, err_in = ious_bw[..., 0], err[..., 0]
        return {
            "loss": total, "iou": l_iou, "color": l_col, "laplacian": l_lap, "flatten": l_flat, "depth": l_depth,
            "chamfer": l_chamfer,
            "iou_input": ious_in.mean(), "color_input": err_in.mean(),
            "renders": {"rgb": rgb.detach().view(b, w, wj, h, h, 3), "alpha": alpha.detach().view(b, w, wj, h, h),
                        "mask": out["mask"].detach().view(b, w, wj, h, h)},
        }
