"""Mesh rendering on top of :func:`dibr_ros.render.dibr_rasterize`: camera transform, projection, culling,
attribute interpolation, deferred shading, texturing, hard mask and depth.

Conventions are those of :mod:`dibr_ros.render.camera` (Kaolin legacy / OpenGL: camera looks down -z,
NDC +y up, image row 0 at the top). A batch of B meshes shares one (F, 3) faces tensor; each mesh has its
own camera. Colour and normals are interpolated with DIB-R's screen-space barycentrics; depth is
interpolated as 1/z, which is exact for planar triangles under perspective.
"""

from __future__ import annotations

import math

import torch

from .camera import intrinsics_to_projection, perspective_projection, project, unproject_pixels, world_to_camera
from .mesh import face_normals, gather_faces, vertex_normals
from .rasterize import dibr_rasterize
from .shading import lambertian, phong, sh9_shading
from .texture import sample_texture

__all__ = ["DEFAULT_FOVY", "render_mesh", "render_silhouette", "prepare_vertices", "pixel_ndc_grid"]

DEFAULT_FOVY = math.radians(30)
"""Default vertical field of view (radians): 30 degrees, as NMR / the DIB-R re-implementation."""

_LIGHT_KEYS = {"sh", "direction", "ambient", "diffuse", "specular", "shininess", "frame"}


def _batch(x: torch.Tensor, trailing: int, name: str) -> torch.Tensor:
    if not torch.is_tensor(x):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() == trailing:
        x = x.unsqueeze(0)
    if x.dim() != trailing + 1:
        raise ValueError(f"{name} must have {trailing} or {trailing + 1} dims, got shape {tuple(x.shape)}")
    return x


def _expand_batch(tensors: dict[str, torch.Tensor]) -> tuple[int, dict[str, torch.Tensor]]:
    """Broadcast the leading (batch) dim of the given tensors; batch 1 expands, others must agree."""
    sizes = {t.shape[0] for t in tensors.values()} - {1}
    if len(sizes) > 1:
        shapes = ", ".join(f"{k}={tuple(v.shape)}" for k, v in tensors.items())
        raise ValueError(f"batch sizes disagree: {shapes}")
    b = sizes.pop() if sizes else 1
    return b, {k: v.expand(b, *v.shape[1:]) for k, v in tensors.items()}


def pixel_ndc_grid(height: int, width: int, dtype=torch.float32, device=None) -> torch.Tensor:
    """NDC centres (H, W, 2) of the pixels: ``x = (2w + 1 - W)/W``, ``y = (H - 2h - 1)/H``."""
    x = (2.0 * torch.arange(width, dtype=dtype, device=device) + 1.0 - width) / width
    y = (height - 2.0 * torch.arange(height, dtype=dtype, device=device) - 1.0) / height
    return torch.stack(torch.meshgrid(y, x, indexing="ij")[::-1], dim=-1)


def prepare_vertices(
    vertices: torch.Tensor,
    faces: torch.Tensor,
    R: torch.Tensor,
    eye: torch.Tensor,
    proj: torch.Tensor,
    offset: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Camera-space and projected vertices plus the per-face facing value used for culling.

    Args:
        vertices: (B, V, 3) world coordinates.
        faces: (F, 3) int64.
        R: (B, 3, 3), eye: (B, 3) world-to-camera rotation and camera centre.
        proj: (B, 3) or (3,) projection vectors; offset: (B, 2) NDC principal-point offsets or None.

    Returns:
        vertices_camera (B, V, 3), face_vertices_camera (B, F, 3, 3), face_vertices_image (B, F, 3, 2),
        face_facing (B, F): cosine between the face normal and the direction from the face to the eye.
        It is positive exactly when the projected triangle is counter-clockwise on screen (the exact
        perspective back-face test; Kaolin's ``face_normals_z`` is the orthographic version). Only its
        sign matters to the rasterizer.
    """
    v_cam = world_to_camera(vertices, R, eye)
    xy = project(v_cam, proj, offset)
    fv_cam = gather_faces(v_cam, faces)
    fv_img = gather_faces(xy, faces)
    n = face_normals(v_cam, faces, unit=True)
    to_eye = -fv_cam[:, :, 0]
    facing = (n * to_eye).sum(-1) / to_eye.norm(dim=-1).clamp_min(1e-12)
    return v_cam, fv_cam, fv_img, facing


def _camera(
    fovy: float | torch.Tensor, K: torch.Tensor | None, height: int, width: int, like: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Projection vectors (B', 3) and NDC offsets (B', 2) (B' = 1 for a shared camera)."""
    if K is not None:
        return intrinsics_to_projection(_batch(K, 2, "K").to(like.dtype), width, height)
    if torch.is_tensor(fovy):
        fovy = fovy.to(like.dtype)
    proj = perspective_projection(fovy, width / height).to(device=like.device, dtype=like.dtype)
    proj = proj if proj.dim() == 2 else proj.unsqueeze(0)
    return proj, proj.new_zeros(proj.shape[0], 2)


def _check_size(height: int, width: int) -> None:
    if int(height) != height or int(width) != width or height <= 0 or width <= 0:
        raise ValueError(f"height and width must be positive ints, got {height}x{width}")


def render_silhouette(
    vertices: torch.Tensor,
    faces: torch.Tensor,
    R: torch.Tensor,
    eye: torch.Tensor,
    fovy: float | torch.Tensor = DEFAULT_FOVY,
    height: int = 64,
    width: int = 64,
    K: torch.Tensor | None = None,
    sigmainv: float = 7000.0,
    boxlen: float = 0.02,
    knum: int = 30,
    backend: str = "auto",
) -> torch.Tensor:
    """DIB-R soft silhouette (B, H, W) of a batch of meshes; arguments as :func:`render_mesh`."""
    _check_size(height, width)
    vertices = _batch(vertices, 2, "vertices")
    proj, offset = _camera(fovy, K, height, width, vertices)
    _, t = _expand_batch(
        {
            "vertices": vertices,
            "R": _batch(R, 2, "R").to(vertices.dtype),
            "eye": _batch(eye, 1, "eye").to(vertices.dtype),
            "proj": proj,
            "offset": offset,
        }
    )
    _, fv_cam, fv_img, facing = prepare_vertices(t["vertices"], faces, t["R"], t["eye"], t["proj"], t["offset"])
    ones = fv_img.new_ones(*fv_img.shape[:3], 1)
    _, soft, _ = dibr_rasterize(
        height, width, fv_cam[..., 2], fv_img, ones, facing,
        sigmainv=sigmainv, boxlen=boxlen, knum=knum, backend=backend,
    )  # fmt: skip
    return soft


def render_mesh(
    vertices: torch.Tensor,
    faces: torch.Tensor,
    colors: torch.Tensor | None,
    R: torch.Tensor,
    eye: torch.Tensor,
    fovy: float | torch.Tensor = DEFAULT_FOVY,
    height: int = 64,
    width: int = 64,
    lighting: dict | None = None,
    K: torch.Tensor | None = None,
    sigmainv: float = 7000.0,
    boxlen: float = 0.02,
    knum: int = 30,
    backend: str = "auto",
    *,
    uv: torch.Tensor | None = None,
    face_uvs: torch.Tensor | None = None,
    texture: torch.Tensor | None = None,
    texture_mode: str = "bilinear",
    texture_address: str = "clamp",
    smooth_normals: bool = True,
) -> dict[str, torch.Tensor]:
    """Render a batch of meshes with DIB-R (differentiable w.r.t. vertices, colours, lighting, texture, UVs).

    Args:
        vertices: (B, V, 3) (or (V, 3)) world coordinates.
        faces: (F, 3) int64, counter-clockwise seen from outside; shared by the batch.
        colors: (B, V, C) or (V, C) per-vertex albedo (C = 3 for lighting), or None with ``texture``.
            With a texture the two are multiplied.
        R: (B, 3, 3) or (3, 3) world-to-camera rotations; eye: (B, 3) or (3,) camera centres
            (:func:`~dibr_ros.render.camera.look_at_rotation`, :func:`~dibr_ros.render.camera.camera_from_spherical`).
        fovy: vertical field of view in radians (float or (B,)); the aspect ratio is width / height.
        height, width: image size in pixels.
        lighting: None (unlit: interpolated colours), ``{"sh": (B, 9) | (B, 9, 3)}`` (SH9, see
            :func:`~dibr_ros.render.shading.sh9_shading`), or ``{"direction": (B, 3) | (3,), "ambient": 0.0,
            "diffuse": 1.0}`` (Lambert, direction towards the light; defaults shown) and, when ``"specular"``
            (default 0.2) or ``"shininess"`` (default 16) is present, Phong with the eye at the camera centre.
            ``"frame": "camera"`` (default; x right, y up, z towards the viewer) or ``"world"`` says in which
            frame the light (and the SH coefficients) are given. Factors may be floats, (B,) or (B, 3).
        K: (B, 3, 3) or (3, 3) OpenCV intrinsics in pixels; when given, ``fovy`` is ignored.
        sigmainv, boxlen, knum, backend: passed to :func:`~dibr_ros.render.dibr_rasterize`.
        uv: (B, V, 2) or (V, 2) per-vertex UVs, or face_uvs: (B, F, 3, 2) or (F, 3, 2) per-corner UVs (for
            seams); either together with texture: (B, C, Ht, Wt) or (C, Ht, Wt), sampled with
            :func:`~dibr_ros.render.texture.sample_texture` (``texture_mode``, ``texture_address``).
        smooth_normals: shade with interpolated vertex normals (else flat face normals).

    Returns:
        dict with ``rgb`` (B, H, W, C) shaded colour times the hard mask (not clamped), ``alpha`` (B, H, W)
        DIB-R soft silhouette, ``mask`` (B, H, W) hard coverage 0/1 (no gradient), ``depth`` (B, H, W)
        distance along the optical axis (``-z_cam``, the caller's unit; 0 on background), ``face_idx``
        (B, H, W) int64 visible face (-1 on background).
    """
    _check_size(height, width)
    vertices = _batch(vertices, 2, "vertices")
    if vertices.shape[-1] != 3:
        raise ValueError(f"vertices must end in 3 coordinates, got shape {tuple(vertices.shape)}")
    if colors is None and texture is None:
        raise ValueError("need colors or a texture")
    if texture is not None and (uv is None) == (face_uvs is None):
        raise ValueError("a texture needs exactly one of uv (per vertex) or face_uvs (per face corner)")
    if lighting is not None:
        if not isinstance(lighting, dict):
            raise TypeError(f"lighting must be None or a dict, got {type(lighting).__name__}")
        unknown = set(lighting) - _LIGHT_KEYS
        if unknown:
            raise ValueError(f"unknown lighting keys {sorted(unknown)}; allowed: {sorted(_LIGHT_KEYS)}")
        if ("sh" in lighting) == ("direction" in lighting):
            raise ValueError("lighting needs exactly one of 'sh' or 'direction'")
        if lighting.get("frame", "camera") not in ("camera", "world"):
            raise ValueError(f"lighting frame must be 'camera' or 'world', got {lighting['frame']!r}")

    proj, offset = _camera(fovy, K, height, width, vertices)
    batched = {
        "vertices": vertices,
        "R": _batch(R, 2, "R").to(vertices.dtype),
        "eye": _batch(eye, 1, "eye").to(vertices.dtype),
        "proj": proj,
        "offset": offset,
    }
    if colors is not None:
        batched["colors"] = _batch(colors, 2, "colors")
    if uv is not None:
        batched["uv"] = _batch(uv, 2, "uv")
    b, t = _expand_batch(batched)
    nv = vertices.shape[1]
    for k in ("colors", "uv"):
        if k in t and t[k].shape[1] != nv:
            raise ValueError(f"{k} has {t[k].shape[1]} vertices, vertices has {nv}")

    v_cam, fv_cam, fv_img, facing = prepare_vertices(t["vertices"], faces, t["R"], t["eye"], t["proj"], t["offset"])
    nf = faces.shape[0]

    # Features: [albedo C | normals 3 (lit) | uv 2 (textured) | 1/depth 1].
    feats, sizes = [], []
    if colors is not None:
        feats.append(gather_faces(t["colors"].to(vertices.dtype), faces))
        sizes.append(("color", t["colors"].shape[-1]))
    if lighting is not None:
        in_world = lighting.get("frame", "camera") == "world"
        frame_vertices = t["vertices"] if in_world else v_cam
        if smooth_normals:
            fn = gather_faces(vertex_normals(frame_vertices, faces), faces)
        else:
            fn = face_normals(frame_vertices, faces).unsqueeze(2).expand(b, nf, 3, 3)
        feats.append(fn)
        sizes.append(("normal", 3))
    if texture is not None:
        fuv = gather_faces(t["uv"], faces) if uv is not None else _batch(face_uvs, 3, "face_uvs")
        if fuv.shape[1:] != (nf, 3, 2):
            raise ValueError(f"face_uvs must be (B, F, 3, 2) with F={nf}, got shape {tuple(fuv.shape)}")
        feats.append(fuv.to(vertices.dtype).expand(b, nf, 3, 2))
        sizes.append(("uv", 2))
    inv_depth = 1.0 / (-fv_cam[..., 2:3]).clamp_min(1e-8)
    feats.append(inv_depth)
    sizes.append(("inv_depth", 1))

    features, soft, face_idx = dibr_rasterize(
        height, width, fv_cam[..., 2], fv_img, torch.cat(feats, dim=-1), facing,
        sigmainv=sigmainv, boxlen=boxlen, knum=knum, backend=backend,
    )  # fmt: skip
    out = dict(zip([s[0] for s in sizes], features.split([s[1] for s in sizes], dim=-1)))

    mask = (face_idx >= 0).to(features.dtype)
    albedo = out.get("color")
    if texture is not None:
        tex = sample_texture(out["uv"], _batch(texture, 3, "texture"), texture_mode, texture_address)
        albedo = tex if albedo is None else albedo * tex

    if lighting is None:
        rgb = albedo
    elif "sh" in lighting:
        rgb = sh9_shading(out["normal"], albedo, lighting["sh"])
    else:
        light_dir = torch.as_tensor(lighting["direction"], dtype=features.dtype, device=features.device)
        ambient = lighting.get("ambient", 0.0)
        diffuse = lighting.get("diffuse", 1.0)
        if "specular" in lighting or "shininess" in lighting:
            rays = unproject_pixels(pixel_ndc_grid(height, width, features.dtype, features.device).reshape(1, -1, 2),
                                    t["proj"], t["offset"]).reshape(b, height, width, 3)  # fmt: skip
            to_eye = -rays
            if lighting.get("frame", "camera") == "world":
                to_eye = to_eye @ t["R"].unsqueeze(1)  # camera -> world for row vectors: v @ R
            rgb = phong(
                out["normal"], albedo, light_dir, to_eye, ambient=ambient, diffuse=diffuse,
                specular=lighting.get("specular", 0.2), shininess=lighting.get("shininess", 16.0),
            )  # fmt: skip
        else:
            rgb = lambertian(out["normal"], albedo, light_dir, ambient=ambient, diffuse=diffuse)
    rgb = rgb * mask.unsqueeze(-1)

    inv = out["inv_depth"].squeeze(-1)
    depth = torch.where(face_idx >= 0, 1.0 / inv.clamp_min(1e-12), torch.zeros_like(inv))
    return {"rgb": rgb, "alpha": soft, "mask": mask, "depth": depth, "face_idx": face_idx}
