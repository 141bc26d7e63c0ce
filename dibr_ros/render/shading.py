"""Deferred shading on per-pixel normals: Lambertian, Phong and 9-coefficient spherical harmonics.

All functions take ``normals`` of shape (B, ..., 3) (typically (B, H, W, 3) interpolated vertex normals;
they are re-normalised here, zero vectors stay zero) and ``albedo`` broadcastable to (B, ..., 3). Light
parameters are per batch element: a direction is (3,) (shared) or (B, 3); a scalar factor is a float, a
(B,) tensor or a (B, 3) RGB tensor. Directions and normals must be in the same frame (the renderer uses
camera space unless told otherwise). Results are not clamped. Everything is differentiable.
"""

from __future__ import annotations

import torch

__all__ = ["lambertian", "phong", "sh9_basis", "sh9_shading", "SH9_CONSTANTS"]

SH9_CONSTANTS = (0.28209479177, 0.4886025119, 1.0925484306, 0.31539156525, 0.94617469575, 0.5462742153)
"""Real spherical-harmonics normalisation constants: Y00, |Y1m|, |Y2(-2,-1,1)|, and Y20 = c3*(3z^2 - 1) =
c4*z^2 - c3, Y22 = c5*(x^2 - y^2)."""


def _unit(v: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    return v / v.norm(dim=-1, keepdim=True).clamp_min(eps)


def _per_batch(x: float | torch.Tensor, ref: torch.Tensor, name: str) -> torch.Tensor:
    """Reshape a float, (B,) or (B, C) value so that it broadcasts against ``ref`` (B, ..., 3)."""
    if not torch.is_tensor(x):
        return torch.as_tensor(x, dtype=ref.dtype, device=ref.device)
    x = x.to(ref.dtype)
    middle = [1] * (ref.dim() - 2)
    if x.dim() == 0:
        return x
    if x.dim() == 1:
        return x.reshape(x.shape[0], *middle, 1)
    if x.dim() == 2:
        return x.reshape(x.shape[0], *middle, x.shape[1])
    raise ValueError(f"{name} must be a float, (B,) or (B, C), got shape {tuple(x.shape)}")


def _direction(d: torch.Tensor, ref: torch.Tensor, name: str) -> torch.Tensor:
    """Unit direction (3,) / (B, 3) / (B, ..., 3) made broadcastable against ``ref`` (B, ..., 3)."""
    d = torch.as_tensor(d, dtype=ref.dtype, device=ref.device)
    if d.shape[-1:] != (3,):
        raise ValueError(f"{name} must end in 3 coordinates, got shape {tuple(d.shape)}")
    if d.dim() == 2 and ref.dim() > 2:
        d = d.reshape(d.shape[0], *([1] * (ref.dim() - 2)), 3)
    return _unit(d)


def lambertian(
    normals: torch.Tensor,
    albedo: torch.Tensor,
    light_dir: torch.Tensor,
    ambient: float | torch.Tensor = 0.0,
    diffuse: float | torch.Tensor = 1.0,
) -> torch.Tensor:
    """Lambertian shading ``albedo * (ambient + diffuse * max(N . L, 0))``.

    Args:
        normals: (B, ..., 3) surface normals.
        albedo: broadcastable to (B, ..., 3).
        light_dir: (3,) or (B, 3) direction from the surface towards the light (normalised here).
        ambient, diffuse: float, (B,) or (B, 3) light intensities.

    Returns:
        (B, ..., 3) radiance.
    """
    n = _unit(normals)
    cos = (n * _direction(light_dir, n, "light_dir")).sum(-1, keepdim=True).clamp_min(0.0)
    return albedo * (_per_batch(ambient, n, "ambient") + _per_batch(diffuse, n, "diffuse") * cos)


def phong(
    normals: torch.Tensor,
    albedo: torch.Tensor,
    light_dir: torch.Tensor,
    view_dir: torch.Tensor,
    ambient: float | torch.Tensor = 0.1,
    diffuse: float | torch.Tensor = 0.8,
    specular: float | torch.Tensor = 0.2,
    shininess: float | torch.Tensor = 16.0,
) -> torch.Tensor:
    """Phong shading with a white directional light (DIB-R / Kaolin-2020 model).

    ``cos_t = clamp(N.L, 0, 1)``, ``R = 2 cos_t N - L``, ``cos_a = clamp(R.V, 1e-5, 1) ** shininess`` and
    ``out = (ambient + diffuse * cos_t) * albedo + specular * cos_a``. Unlike the 2020 code the highlight is
    switched off where the light is behind the surface (``N.L <= 0``); the 1e-5 floor keeps the power's
    gradient finite.

    Args:
        normals: (B, ..., 3).
        albedo: broadcastable to (B, ..., 3).
        light_dir: (3,) or (B, 3) direction from the surface towards the light.
        view_dir: (3,), (B, 3) or (B, ..., 3) direction from the surface towards the eye.
        ambient, diffuse, specular: float, (B,) or (B, 3) material/light coefficients (specular is not
            multiplied by the albedo).
        shininess: float or (B,) Phong exponent.

    Returns:
        (B, ..., 3) radiance.
    """
    n = _unit(normals)
    l_dir = _direction(light_dir, n, "light_dir")
    v_dir = _direction(view_dir, n, "view_dir")
    cos_t = (n * l_dir).sum(-1, keepdim=True).clamp(0.0, 1.0)
    r = 2.0 * cos_t * n - l_dir
    cos_a = (r * v_dir).sum(-1, keepdim=True).clamp(1e-5, 1.0) ** _per_batch(shininess, n, "shininess")
    lit = (cos_t > 0).to(n.dtype)
    diff = (_per_batch(ambient, n, "ambient") + _per_batch(diffuse, n, "diffuse") * cos_t) * albedo
    return diff + _per_batch(specular, n, "specular") * cos_a * lit


def sh9_basis(normals: torch.Tensor) -> torch.Tensor:
    """Real spherical-harmonics basis up to band 2 at unit directions.

    Band order (l, m) = (0,0), (1,-1), (1,0), (1,1), (2,-2), (2,-1), (2,0), (2,1), (2,2), i.e.
    ``[c0, -c1 y, c1 z, -c1 x, c2 xy, -c2 yz, c3 (3z^2 - 1), -c2 xz, c5 (x^2 - y^2)]`` with the constants of
    :data:`SH9_CONSTANTS` and the Condon-Shortley sign (as Kaolin's ``project_onto_sh9``). Orthonormal over
    the unit sphere.

    Args:
        normals: (..., 3) unit directions (not re-normalised here).

    Returns:
        (..., 9).
    """
    if normals.shape[-1:] != (3,):
        raise ValueError(f"normals must end in 3 coordinates, got shape {tuple(normals.shape)}")
    c0, c1, c2, c3, c4, c5 = SH9_CONSTANTS
    x, y, z = normals.unbind(-1)
    return torch.stack(
        [
            torch.full_like(x, c0),
            -c1 * y,
            c1 * z,
            -c1 * x,
            c2 * x * y,
            -c2 * y * z,
            c4 * z * z - c3,
            -c2 * x * z,
            c5 * (x * x - y * y),
        ],
        dim=-1,
    )


def sh9_shading(normals: torch.Tensor, albedo: torch.Tensor | None, sh_coeffs: torch.Tensor) -> torch.Tensor:
    """Spherical-harmonics lighting ``albedo * sum_k coeffs_k Y_k(N)`` (DIB-R's SH model).

    Args:
        normals: (B, ..., 3) (re-normalised here).
        albedo: broadcastable to (B, ..., 3), or None to return the lighting factor alone.
        sh_coeffs: (B, 9) grey or (B, 9, 3) RGB coefficients in :func:`sh9_basis` order; (9,) or (9, 3)
            are shared by the batch.

    Returns:
        (B, ..., 3) radiance (with ``albedo=None``: (B, ..., 1) for grey coefficients, else (B, ..., 3)).
    """
    n = _unit(normals)
    basis = sh9_basis(n)  # (B, ..., 9)
    c = torch.as_tensor(sh_coeffs, dtype=n.dtype, device=n.device)
    if c.dim() == 1 or (c.dim() == 2 and c.shape == (9, 3)):
        c = c.unsqueeze(0)
    if c.dim() not in (2, 3) or c.shape[1] != 9 or (c.dim() == 3 and c.shape[2] != 3):
        raise ValueError(f"sh_coeffs must be (B, 9) or (B, 9, 3), got shape {tuple(sh_coeffs.shape)}")
    if c.dim() == 2:
        c = c.unsqueeze(-1)
    c = c.reshape(c.shape[0], *([1] * (n.dim() - 2)), 9, c.shape[-1])
    light = (basis.unsqueeze(-1) * c).sum(-2)
    return light if albedo is None else albedo * light
