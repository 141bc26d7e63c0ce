"""UV texture-map sampling, differentiable w.r.t. the texture and (bilinear mode) the UVs.

UV convention (OpenGL): u in [0, 1] left to right, v in [0, 1] bottom to top of the texture image, whose
row 0 is its top. Texel (i, j) (row, column) of an (Ht, Wt) map has its centre at
``u = (j + 0.5)/Wt``, ``v = 1 - (i + 0.5)/Ht`` (``grid_sample`` with ``align_corners=False``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["sample_texture"]


def sample_texture(
    uv: torch.Tensor, texture: torch.Tensor, mode: str = "bilinear", address: str = "clamp"
) -> torch.Tensor:
    """Sample texture maps at UV coordinates.

    Args:
        uv: (B, ..., 2) UV coordinates (typically (B, H, W, 2) interpolated by the rasterizer).
        texture: (B, C, Ht, Wt) or (C, Ht, Wt) texture maps (a batch of 1 is shared by all B).
        mode: "bilinear" or "nearest" (nearest: no gradient w.r.t. UVs).
        address: "clamp" (outside [0, 1] repeats the border texels, as Kaolin's ``texture_mapping``) or
            "wrap" (UVs taken modulo 1; bilinear filtering blends across the seam).

    Returns:
        (B, ..., C) sampled values.
    """
    if mode not in ("bilinear", "nearest"):
        raise ValueError(f"mode must be 'bilinear' or 'nearest', got {mode!r}")
    if address not in ("clamp", "wrap"):
        raise ValueError(f"address must be 'clamp' or 'wrap', got {address!r}")
    if texture.dim() == 3:
        texture = texture.unsqueeze(0)
    if texture.dim() != 4:
        raise ValueError(f"texture must be (B, C, Ht, Wt) or (C, Ht, Wt), got shape {tuple(texture.shape)}")
    if uv.dim() < 2 or uv.shape[-1] != 2:
        raise ValueError(f"uv must be (B, ..., 2), got shape {tuple(uv.shape)}")
    b = uv.shape[0]
    if texture.shape[0] not in (1, b):
        raise ValueError(f"texture batch {texture.shape[0]} does not match uv batch {b}")
    texture = texture.expand(b, *texture.shape[1:]).to(uv.dtype)
    lead = uv.shape[:-1]
    grid = uv.reshape(b, 1, -1, 2)
    u, v = grid[..., 0], grid[..., 1]
    if address == "wrap":
        # One texel of circular padding makes bilinear filtering wrap; remap [0, 1) into the padded map.
        ht, wt = texture.shape[-2:]
        texture = F.pad(texture, (1, 1, 1, 1), mode="circular")
        u = (torch.remainder(u, 1.0) * wt + 1.0) / (wt + 2.0)
        v = (torch.remainder(v, 1.0) * ht + 1.0) / (ht + 2.0)
    grid = torch.stack([2.0 * u - 1.0, 1.0 - 2.0 * v], dim=-1)
    out = F.grid_sample(texture, grid, mode=mode, padding_mode="border", align_corners=False)  # (B, C, 1, N)
    return out[:, :, 0].transpose(1, 2).reshape(*lead, texture.shape[1])
