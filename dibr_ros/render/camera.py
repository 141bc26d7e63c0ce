"""Perspective cameras in the Kaolin-legacy / OpenGL convention, batched and differentiable.

Conventions
- World-to-camera: ``p_cam = (p_world - eye) @ R^T``; the rows of ``R`` are the camera's x (right), y (up)
  and z (backwards) axes expressed in world coordinates. The camera looks down its -z axis, so points in
  front of it have ``z_cam < 0`` and a larger (less negative) z is nearer.
- Projection vector ``proj = [1/(aspect*tan(fovy/2)), 1/tan(fovy/2), -1]``; normalised device coordinates
  are ``xy_ndc = (p_cam*proj)[:2] / (p_cam*proj)[2] + offset`` with +x right, +y up, the image spanning
  [-1, 1] on both axes. ``offset`` (NDC) carries an off-centre principal point; it is 0 for a centred one.
- Pixels: OpenCV pixel (u, v) (column, row, centres at integer coordinates, row 0 at the top) has NDC centre
  ``x = (2u + 1 - W)/W``, ``y = (H - 2v - 1)/H``: the pixel centres of :func:`dibr_ros.render.dibr_rasterize`.
- ``OPENCV_TO_OPENGL`` maps the OpenCV optical frame (x right, y down, z forward) to this camera frame and
  back (it is its own inverse).

Angles are in radians, distances in the caller's unit (metres for the ROS side).
"""

from __future__ import annotations

import math

import torch

__all__ = [
    "OPENCV_TO_OPENGL",
    "look_at_rotation",
    "world_to_camera",
    "camera_to_world",
    "perspective_projection",
    "project",
    "unproject_pixels",
    "intrinsics_to_projection",
    "projection_to_intrinsics",
    "fov_to_intrinsics",
    "camera_position_from_spherical",
    "camera_from_spherical",
    "ndc_to_pixel",
    "pixel_to_ndc",
]

OPENCV_TO_OPENGL = torch.diag(torch.tensor([1.0, -1.0, -1.0]))
"""(3, 3) float32 diag(1, -1, -1): optical frame (x right, y down, z forward) <-> camera frame (x right,
y up, z backwards). ``p_gl = p_cv @ OPENCV_TO_OPENGL.T``; ``R_gl = OPENCV_TO_OPENGL @ R_cv``."""


def _as_batch(x: torch.Tensor | float, trailing: int, name: str, like: torch.Tensor | None = None) -> torch.Tensor:
    """Tensor with a leading batch dim and ``trailing`` trailing dims (adds the batch dim when missing)."""
    if not torch.is_tensor(x):
        x = torch.as_tensor(
            x,
            dtype=like.dtype if like is not None else torch.get_default_dtype(),
            device=like.device if like is not None else None,
        )
    if x.dim() == trailing:
        x = x.unsqueeze(0)
    if x.dim() != trailing + 1:
        raise ValueError(f"{name} must have {trailing} or {trailing + 1} dims, got shape {tuple(x.shape)}")
    return x


def _normalize(v: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    return v / v.norm(dim=-1, keepdim=True).clamp_min(eps)


def look_at_rotation(eye: torch.Tensor, at: torch.Tensor, up: torch.Tensor | None = None) -> torch.Tensor:
    """World-to-camera rotation of cameras at ``eye`` looking at ``at``.

    Args:
        eye: (B, 3) or (3,) camera centres in world coordinates.
        at: (B, 3) or (3,) points to look at (they land on the optical axis, at ``z_cam = -|at - eye|``).
        up: (B, 3) or (3,) world up hint, default +y. Where it is parallel to the viewing direction, the
            world axis least aligned with the viewing direction is used instead.

    Returns:
        R: (B, 3, 3) with rows = camera x (right), y (up), z (backwards) axes in world coordinates.
    """
    eye = _as_batch(eye, 1, "eye")
    at = _as_batch(at, 1, "at", like=eye)
    if up is None:
        up = torch.tensor([0.0, 1.0, 0.0], dtype=eye.dtype, device=eye.device)
    up = _as_batch(up, 1, "up", like=eye)
    eye, at, up = torch.broadcast_tensors(eye, at, up)
    if eye.shape[-1] != 3:
        raise ValueError(f"eye/at/up must end in 3 coordinates, got shape {tuple(eye.shape)}")
    z = _normalize(eye - at)
    x = torch.linalg.cross(up, z, dim=-1)
    degenerate = x.norm(dim=-1, keepdim=True) < 1e-6 * up.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    if bool(degenerate.any()):
        axis = torch.nn.functional.one_hot(z.detach().abs().argmin(dim=-1), 3).to(z.dtype)
        x = torch.where(degenerate, torch.linalg.cross(axis, z, dim=-1), x)
    x = _normalize(x)
    y = torch.linalg.cross(z, x, dim=-1)
    return torch.stack([x, y, z], dim=-2)


def world_to_camera(points: torch.Tensor, R: torch.Tensor, eye: torch.Tensor) -> torch.Tensor:
    """``p_cam = (p - eye) @ R^T``.

    Args:
        points: (B, N, 3) or (N, 3) world points.
        R: (B, 3, 3) or (3, 3) world-to-camera rotations.
        eye: (B, 3) or (3,) camera centres.

    Returns:
        (B, N, 3) camera-space points (B broadcast over the inputs).
    """
    points = _as_batch(points, 2, "points")
    R = _as_batch(R, 2, "R")
    eye = _as_batch(eye, 1, "eye")
    return (points - eye[:, None, :]) @ R.transpose(-1, -2)


def camera_to_world(points_cam: torch.Tensor, R: torch.Tensor, eye: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`world_to_camera`: ``p = p_cam @ R + eye``; shapes as there."""
    points_cam = _as_batch(points_cam, 2, "points_cam")
    R = _as_batch(R, 2, "R")
    eye = _as_batch(eye, 1, "eye")
    return points_cam @ R + eye[:, None, :]


def perspective_projection(fovy: float | torch.Tensor, aspect: float | torch.Tensor = 1.0) -> torch.Tensor:
    """Kaolin projection vector ``[1/(aspect*tan(fovy/2)), 1/tan(fovy/2), -1]``.

    Args:
        fovy: vertical field of view in radians, a float or a (B,) tensor.
        aspect: width / height, a float or a (B,) tensor.

    Returns:
        (3,) for scalar inputs, else (B, 3).
    """
    batched = (torch.is_tensor(fovy) and fovy.dim() > 0) or (torch.is_tensor(aspect) and aspect.dim() > 0)
    like = fovy if torch.is_tensor(fovy) else aspect if torch.is_tensor(aspect) else None
    kw = {"dtype": like.dtype, "device": like.device} if like is not None else {"dtype": torch.float32}
    fovy = torch.as_tensor(fovy, **kw)
    aspect = torch.as_tensor(aspect, **kw)
    if bool(((fovy <= 0) | (fovy >= math.pi)).any()):
        raise ValueError("fovy must lie in (0, pi) radians")
    fovy, aspect = torch.broadcast_tensors(fovy, aspect)
    t = torch.tan(fovy / 2)
    proj = torch.stack([1.0 / (aspect * t), 1.0 / t, -torch.ones_like(t)], dim=-1)
    return proj if batched else proj.reshape(3)


def project(
    points_cam: torch.Tensor, proj: torch.Tensor, offset: torch.Tensor | None = None, eps: float = 1e-12
) -> torch.Tensor:
    """Perspective projection of camera-space points to NDC.

    Args:
        points_cam: (B, N, 3) or (N, 3) camera-space points (in front of the camera: z < 0).
        proj: (3,) or (B, 3) projection vectors (:func:`perspective_projection` or
            :func:`intrinsics_to_projection`).
        offset: optional (2,) or (B, 2) NDC principal-point offset (from :func:`intrinsics_to_projection`).
        eps: smallest |denominator|, so points on the camera plane give large but finite coordinates.

    Returns:
        (B, N, 2) NDC coordinates, +x right, +y up.
    """
    points_cam = _as_batch(points_cam, 2, "points_cam")
    proj = _as_batch(proj, 1, "proj", like=points_cam)
    if proj.shape[-1] != 3:
        raise ValueError(f"proj must have 3 entries, got shape {tuple(proj.shape)}")
    q = points_cam * proj[:, None, :]
    w = q[..., 2:3]
    w = torch.where(w.abs() < eps, torch.full_like(w, eps) * torch.where(w < 0, -1.0, 1.0), w)
    xy = q[..., :2] / w
    if offset is not None:
        xy = xy + _as_batch(offset, 1, "offset", like=points_cam)[:, None, :]
    return xy


def intrinsics_to_projection(K: torch.Tensor, width: int, height: int) -> tuple[torch.Tensor, torch.Tensor]:
    """OpenCV intrinsics to a Kaolin projection vector plus NDC principal-point offset.

    A camera-frame point p projects to the OpenCV pixel ``u = fx*p_x/(-p_z) + cx``,
    ``v = -fy*p_y/(-p_z) + cy``, and :func:`project` with the returned ``(proj, offset)`` gives that pixel's
    NDC coordinates ``((2u + 1 - W)/W, (H - 2v - 1)/H)``: ``proj = [2fx/W, 2fy/H, -1]``,
    ``offset = [(2cx + 1 - W)/W, (H - 2cy - 1)/H]``.

    Args:
        K: (B, 3, 3) or (3, 3) intrinsics in pixels ([[fx, 0, cx], [0, fy, cy], [0, 0, 1]]; skew must be 0).
        width, height: image size in pixels.

    Returns:
        proj (B, 3), offset (B, 2).
    """
    K = _as_batch(K, 2, "K")
    if K.shape[-2:] != (3, 3):
        raise ValueError(f"K must be (B,3,3) or (3,3), got shape {tuple(K.shape)}")
    if width <= 0 or height <= 0:
        raise ValueError(f"image size must be positive, got {width}x{height}")
    if bool((K[:, 0, 1].detach().abs() > 1e-9 * K[:, 0, 0].detach().abs()).any()):
        raise ValueError("K with non-zero skew is not supported")
    fx, fy, cx, cy = K[:, 0, 0], K[:, 1, 1], K[:, 0, 2], K[:, 1, 2]
    proj = torch.stack([2.0 * fx / width, 2.0 * fy / height, -torch.ones_like(fx)], dim=-1)
    offset = torch.stack([(2.0 * cx + 1.0 - width) / width, (height - 2.0 * cy - 1.0) / height], dim=-1)
    return proj, offset


def projection_to_intrinsics(proj: torch.Tensor, offset: torch.Tensor | None, width: int, height: int) -> torch.Tensor:
    """Inverse of :func:`intrinsics_to_projection`.

    Args:
        proj: (B, 3) or (3,) projection vectors (third entry -1).
        offset: (B, 2) or (2,) NDC principal-point offsets, or None for a centred principal point.
        width, height: image size in pixels.

    Returns:
        K: (B, 3, 3) OpenCV intrinsics in pixels.
    """
    proj = _as_batch(proj, 1, "proj")
    if offset is None:
        offset = torch.zeros(proj.shape[0], 2, dtype=proj.dtype, device=proj.device)
    offset = _as_batch(offset, 1, "offset", like=proj)
    b = max(proj.shape[0], offset.shape[0])
    proj, offset = proj.broadcast_to(b, 3), offset.broadcast_to(b, 2)
    fx = proj[:, 0] * width / 2.0
    fy = proj[:, 1] * height / 2.0
    cx = ((offset[:, 0] + 1.0) * width - 1.0) / 2.0
    cy = ((1.0 - offset[:, 1]) * height - 1.0) / 2.0
    zero, one = torch.zeros_like(fx), torch.ones_like(fx)
    rows = [
        torch.stack([fx, zero, cx], -1),
        torch.stack([zero, fy, cy], -1),
        torch.stack([zero, zero, one], -1),
    ]
    return torch.stack(rows, dim=-2)


def fov_to_intrinsics(fovy: float | torch.Tensor, width: int, height: int) -> torch.Tensor:
    """Intrinsics of a centred pinhole camera with vertical field of view ``fovy`` (rad), square pixels.

    Returns (3, 3) for a scalar ``fovy``, else (B, 3, 3); ``cx = (W-1)/2``, ``cy = (H-1)/2``.
    """
    proj = perspective_projection(fovy, width / height)
    K = projection_to_intrinsics(proj, None, width, height)
    return K if proj.dim() == 2 else K[0]


def ndc_to_pixel(xy: torch.Tensor, width: int, height: int) -> torch.Tensor:
    """NDC (..., 2) to OpenCV pixel coordinates (..., 2) (u right, v down, centres at integers)."""
    u = ((xy[..., 0] + 1.0) * width - 1.0) / 2.0
    v = ((1.0 - xy[..., 1]) * height - 1.0) / 2.0
    return torch.stack([u, v], dim=-1)


def pixel_to_ndc(uv: torch.Tensor, width: int, height: int) -> torch.Tensor:
    """OpenCV pixel coordinates (..., 2) to NDC (..., 2); inverse of :func:`ndc_to_pixel`."""
    x = (2.0 * uv[..., 0] + 1.0 - width) / width
    y = (height - 2.0 * uv[..., 1] - 1.0) / height
    return torch.stack([x, y], dim=-1)


def unproject_pixels(xy_ndc: torch.Tensor, proj: torch.Tensor, offset: torch.Tensor | None = None) -> torch.Tensor:
    """Unit camera-space ray directions (B, N, 3) through NDC points (B, N, 2); inverse of :func:`project`."""
    xy_ndc = _as_batch(xy_ndc, 2, "xy_ndc")
    proj = _as_batch(proj, 1, "proj", like=xy_ndc)
    if offset is not None:
        xy_ndc = xy_ndc - _as_batch(offset, 1, "offset", like=xy_ndc)[:, None, :]
    xy = xy_ndc / proj[:, None, :2]
    d = torch.cat([xy, -torch.ones_like(xy[..., :1])], dim=-1)
    return _normalize(d)


def camera_position_from_spherical(
    azimuth: float | torch.Tensor,
    elevation: float | torch.Tensor,
    distance: float | torch.Tensor,
) -> torch.Tensor:
    """Camera centre on a sphere around the origin (y-up world), Kaolin convention.

    ``eye = distance * [cos(el) sin(az), sin(el), cos(el) cos(az)]``: azimuth 0, elevation 0 sits on +z.

    Returns:
        (B, 3) with B the broadcast size of the (float or (B,)) inputs (B = 1 for scalars).
    """
    like = next((t for t in (azimuth, elevation, distance) if torch.is_tensor(t)), None)
    kw = {"dtype": like.dtype, "device": like.device} if like is not None else {"dtype": torch.float32}
    az, el, d = torch.broadcast_tensors(*(torch.as_tensor(t, **kw).reshape(-1) for t in (azimuth, elevation, distance)))
    return torch.stack([d * torch.cos(el) * torch.sin(az), d * torch.sin(el), d * torch.cos(el) * torch.cos(az)], -1)


def camera_from_spherical(
    azimuth: float | torch.Tensor,
    elevation: float | torch.Tensor,
    distance: float | torch.Tensor,
    roll: float | torch.Tensor = 0.0,
    at: float | torch.Tensor = 0.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Camera on a sphere around ``at`` looking at it, +y world up.

    Args:
        azimuth, elevation: radians, float or (B,) (see :func:`camera_position_from_spherical`).
        distance: distance from ``at``, float or (B,).
        roll: rotation about the optical axis in radians, float or (B,); positive turns the image content
            counter-clockwise (the camera clockwise as seen from behind it).
        at: look-at point, 0, (3,) or (B, 3).

    Returns:
        R (B, 3, 3), eye (B, 3).
    """
    offset = camera_position_from_spherical(azimuth, elevation, distance)
    at_t = torch.as_tensor(at, dtype=offset.dtype, device=offset.device)
    at_t = at_t.expand(3) if at_t.dim() == 0 else at_t
    at_t = _as_batch(at_t, 1, "at")
    eye = offset + at_t
    R = look_at_rotation(eye, at_t.expand_as(eye))
    roll_t = torch.as_tensor(roll, dtype=R.dtype, device=R.device).reshape(-1)
    c, s = torch.cos(roll_t), torch.sin(roll_t)
    zero, one = torch.zeros_like(c), torch.ones_like(c)
    Rz = torch.stack(
        [torch.stack([c, -s, zero], -1), torch.stack([s, c, zero], -1), torch.stack([zero, zero, one], -1)],
        -2,
    )
    R = Rz @ R
    return R, eye.expand(R.shape[0], 3)
