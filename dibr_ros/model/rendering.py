"""Crop-framed DIB-R renders for training: cameras with OpenCV intrinsics K of a square crop around the object.

The network sees a square crop ``crop_scale`` times the longer side of the object's silhouette box, resized
to ``input_size`` (the Predictor's preprocessing). Training renders produce that framing directly: the camera
looks at the object centre, K maps the crop square onto the image (principal point off-centre in general), so
prediction renders and targets share cameras without any image resampling. Meshes of different topology are
batched by padding faces (padding rows are culled and moved out of every soft-mask box).
"""

from __future__ import annotations

import torch

from dibr_ros.render.rasterize import dibr_rasterize

__all__ = ["crop_intrinsics", "project_pixels", "render_faces", "render_vertex_colors"]


def project_pixels(points: torch.Tensor, R: torch.Tensor, eye: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """World points -> (normalised optical-frame image coordinates (N, P, 2) = (x/z, y/z), OpenGL cam (N, P, 3)).

    points (N, P, 3); R (N, 3, 3) world->camera (OpenGL); eye (N, 3).
    """
    cam = (points - eye[:, None, :]) @ R.transpose(-1, -2)
    depth = (-cam[..., 2]).clamp_min(1e-6)
    uv = torch.stack([cam[..., 0] / depth, -cam[..., 1] / depth], -1)
    return uv, cam


def crop_intrinsics(uv: torch.Tensor, valid: torch.Tensor, size: int, crop_scale: float) -> torch.Tensor:
    """K (N, 3, 3) of a ``size`` pixel image of the square crop around the projected points.

    uv (N, P, 2) normalised image coordinates (x/z, y/z); valid (N, P) bool (points that count for the box).
    The crop is centred on the points' bounding box, side ``crop_scale`` times its longer side; pixel
    centres are at integer coordinates, so the crop square spans [-0.5, size - 0.5].
    """
    big = torch.finfo(uv.dtype).max
    lo = torch.where(valid[..., None], uv, torch.full_like(uv, big)).amin(1)
    hi = torch.where(valid[..., None], uv, torch.full_like(uv, -big)).amax(1)
    centre = 0.5 * (lo + hi)
    side = crop_scale * (hi - lo).amax(-1).clamp_min(1e-6)
    f = size / side
    c = -f[:, None] * (centre - 0.5 * side[:, None]) - 0.5
    K = torch.zeros(uv.shape[0], 3, 3, dtype=uv.dtype, device=uv.device)
    K[:, 0, 0], K[:, 1, 1], K[:, 0, 2], K[:, 1, 2], K[:, 2, 2] = f, f, c[:, 0], c[:, 1], 1.0
    return K


def render_faces(face_vertices: torch.Tensor, face_colors: torch.Tensor, R: torch.Tensor, eye: torch.Tensor,
                 K: torch.Tensor, size: int, valid: torch.Tensor | None = None, backend: str = "auto",
                 with_depth: bool = False) -> dict:
    """Render triangle soups with per-face-vertex colours through dibr_rasterize.

    face_vertices (N, F, 3, 3) world; face_colors (N, F, 3, 3); R (N, 3, 3), eye (N, 3) world->camera
    (OpenGL); K (N, 3, 3) OpenCV pixels; valid (N, F) bool (padding faces False) or None.
    Returns dict: rgb (N, S, S, 3) in [0, 1] (0 on background), alpha (N, S, S) DIB-R soft silhouette,
    mask (N, S, S) hard 0/1 float, face_idx (N, S, S) int64 (-1 background); with ``with_depth`` also
    depth (N, S, S): distance along the optical axis (world units, 0 on background), interpolated like the
    colours (an extra feature channel). Differentiable w.r.t. face_vertices (image positions, and the depth
    values) and face_colors.
    """
    n, nf = face_vertices.shape[:2]
    uv, cam = project_pixels(face_vertices.reshape(n, nf * 3, 3), R, eye)
    px = uv * K[:, None, [0, 1], [0, 1]] + K[:, None, [0, 1], [2, 2]]
    ndc = torch.stack([(2 * px[..., 0] + 1 - size) / size, (size - 2 * px[..., 1] - 1) / size], -1)
    ndc = ndc.reshape(n, nf, 3, 2)
    cam = cam.reshape(n, nf, 3, 3)
    nz = torch.linalg.cross(cam[:, :, 1] - cam[:, :, 0], cam[:, :, 2] - cam[:, :, 0], dim=-1)[..., 2]
    if valid is not None:
        nz = torch.where(valid, nz, torch.full_like(nz, -1.0))
        ndc = torch.where(valid[..., None, None], ndc, torch.full_like(ndc, -10.0))
    if with_depth:
        face_colors = torch.cat([face_colors, -cam[..., 2:3]], -1)
    feats, soft, face_idx = dibr_rasterize(size, size, cam[..., 2], ndc, face_colors, nz, backend=backend)
    mask = (face_idx >= 0).to(feats.dtype)
    out = {"rgb": feats[..., :3].clamp(0.0, 1.0), "alpha": soft, "mask": mask, "face_idx": face_idx}
    if with_depth:
        out["depth"] = feats[..., 3] * mask
    return out


def render_vertex_colors(vertices: torch.Tensor, faces: torch.Tensor, colors: torch.Tensor, R: torch.Tensor,
                         eye: torch.Tensor, K: torch.Tensor, size: int, backend: str = "auto",
                         with_depth: bool = False) -> dict:
    """Render meshes sharing one topology. vertices (N, V, 3) world; faces (F, 3); colors (N, V, 3).

    See :func:`render_faces` for the cameras and the returned dict.
    """
    fv = vertices[:, faces]  # (N, F, 3, 3)
    fc = colors[:, faces]
    return render_faces(fv, fc, R, eye, K, size, backend=backend, with_depth=with_depth)
