"""Pure-PyTorch DIB-R rasterizer: the readable specification of the C++/CUDA kernels.

Reproduces ``kaolin.render.mesh.dibr_rasterization(..., rast_backend="cuda")`` including its
arithmetic (coordinates scaled by ``multiplier``, pixel centres computed in float32, the soft-mask
``EPS``), so face selection and values match Kaolin bit for bit up to rounding order. Autograd provides
the backward pass; gradients reach ``face_vertices_image`` and ``face_features`` only.

Work is done per batch element and per band of image rows, restricted to the faces whose (grown)
bounding box meets the band, so memory stays bounded by ``_CHUNK_ELEMS`` pixel-face pairs.
"""

from __future__ import annotations

import torch

__all__ = ["rasterize_reference", "pixel_centers"]

# Distance normaliser of Kaolin's soft-mask kernel (``EPS``), a double constant even for float32 data.
_SOFT_EPS = 1e-7
# Upper bound on pixel x face pairs evaluated at once (each pair holds a few dozen scalars).
_CHUNK_ELEMS = 1 << 19


def pixel_centers(height: int, width: int, multiplier: float, dtype: torch.dtype, device=None):
    """Scaled NDC pixel centres ``x (W,)``, ``y (H,)``: ``M/W*(2w+1-W)`` and ``M/H*(H-2h-1)``.

    Computed in float32 (as Kaolin's kernels do, whose ``multiplier`` is a C ``float``), then cast.
    """
    m = torch.tensor(float(multiplier), dtype=torch.float32, device=device)
    cols = torch.arange(width, dtype=torch.float32, device=device) * 2 + 1 - width
    rows = height - torch.arange(height, dtype=torch.float32, device=device) * 2 - 1
    return ((m / width) * cols).to(dtype), ((m / height) * rows).to(dtype)


def _band_rows(height: int, width: int, num_faces: int):
    rows = max(1, _CHUNK_ELEMS // max(1, width * max(num_faces, 1)))
    for r0 in range(0, height, rows):
        yield r0, min(height, r0 + rows)


def _edge_functions(v: torch.Tensor, px: torch.Tensor, py: torch.Tensor):
    """Kaolin's edge functions ``w0=(b-p)x(c-p)``, ``w1=(c-p)x(a-p)``, ``w2=(a-p)x(b-p)``.

    ``v (..., 3, 2)`` scaled vertices, ``px, py`` broadcastable to ``v[..., 0, 0]``.
    """
    ex = v[..., 0] - px.unsqueeze(-1)
    ey = v[..., 1] - py.unsqueeze(-1)
    ax, bx, cx = ex.unbind(-1)
    ay, by, cy = ey.unbind(-1)
    w0 = bx * cy - by * cx
    w1 = cx * ay - cy * ax
    w2 = ax * by - ay * bx
    return w0, w1, w2


def _normalise(w0, w1, w2, eps: float):
    """``w_i / (sum + copysign(eps, sum))`` with Kaolin's float32 ``eps``."""
    norm = w0 + w1 + w2
    e = torch.tensor(eps, dtype=torch.float32).item()
    norm = norm + torch.where(torch.signbit(norm), -e, e)
    return w0 / norm, w1 / norm, w2 / norm


def _rasterize_one(height, width, vz, vimg, valid, xs, ys, eps):
    """Face index map (H, W) int64 of one mesh: largest interpolated z wins, first face on ties."""
    face_idx = torch.full((height, width), -1, dtype=torch.long, device=vimg.device)
    bmin = vimg.amin(dim=1)
    bmax = vimg.amax(dim=1)
    for r0, r1 in _band_rows(height, width, vimg.shape[0]):
        # Faces whose box can hold a pixel centre of this band (y decreases with the row).
        sel = valid & (bmax[:, 1] > ys[r1 - 1]) & (bmin[:, 1] <= ys[r0])
        fids = torch.nonzero(sel).squeeze(1)
        if fids.numel() == 0:
            continue
        v, lo, hi, z = vimg[fids], bmin[fids], bmax[fids], vz[fids]
        py = ys[r0:r1].view(-1, 1, 1)
        px = xs.view(1, -1, 1)
        inb = (px >= lo[:, 0]) & (px < hi[:, 0]) & (py >= lo[:, 1]) & (py < hi[:, 1])  # (R, W, Fs)
        w0, w1, w2 = _normalise(*_edge_functions(v, px, py), eps)
        inside = inb & (w0 >= 0) & (w1 >= 0) & (w2 >= 0)
        z0 = w0 * z[:, 0] + w1 * z[:, 1] + w2 * z[:, 2]
        z0 = torch.where(inside, z0, torch.full_like(z0, -torch.inf))
        zbest, best = z0.max(dim=-1)  # first maximum = first face in index order
        face_idx[r0:r1] = torch.where(zbest > -torch.inf, fids[best], -1)
    return face_idx


def _candidates_prob(v, px, py, sigmainv: float, multiplier: float):
    """Kaolin's soft-mask probability of each candidate face.

    ``v (P, K, 3, 2)`` scaled vertices, ``px, py (P, 1)``; returns ``prob (P, K)``.
    The squared distance to the triangle boundary is the minimum of the three edge distances (when the
    foot of the perpendicular lies on the segment, else ``4*M^2``) and the three vertex distances.
    """
    dtype = v.dtype
    x1, y1 = v[..., 0], v[..., 1]  # (P, K, 3)
    x2, y2 = v.roll(-1, dims=-2)[..., 0], v.roll(-1, dims=-2)[..., 1]
    x0, y0 = px.unsqueeze(-1), py.unsqueeze(-1)
    a = y2 - y1
    b = x1 - x2
    c = x2 * y1 - x1 * y2
    up = a * x0 + b * y0 + c
    down = a * a + b * b
    # Kaolin divides by (down + EPS) with a double EPS: the quotient is formed in double, then rounded.
    den = down.double() + _SOFT_EPS
    x3 = ((b * b * x0 - a * b * y0 - a * c).double() / den).to(dtype)
    y3 = ((a * a * y0 - a * b * x0 - b * c).double() / den).to(dtype)
    direct = (x3 - x1) * (x3 - x2) + (y3 - y1) * (y3 - y2)
    edge = ((up * up).double() / den).to(dtype)
    edge = torch.where(direct > 0, torch.full_like(edge, 4 * multiplier * multiplier), edge)
    point = (x0 - x1) * (x0 - x1) + (y0 - y1) * (y0 - y1)
    dists = torch.cat([edge, point], dim=-1)  # (P, K, 6): edges 0-2, vertices 3-5
    kind = dists.detach().argmin(dim=-1, keepdim=True)  # first minimum, as Kaolin's strict '>'
    d2 = dists.gather(-1, kind).squeeze(-1)
    m = torch.tensor(float(multiplier), dtype=torch.float32).to(dtype).item()
    s = torch.tensor(float(sigmainv), dtype=torch.float32).to(dtype).item()
    return torch.exp(-(s * d2 / m / m))


def _soft_mask_one(height, width, vimg, face_idx, xs, ys, sigmainv, boxlen, knum, multiplier):
    """Soft mask values of the background pixels of one mesh: ``(pixel flat index (N,), value (N,))``."""
    margin = torch.tensor(boxlen * multiplier, dtype=vimg.dtype).item()
    lo = vimg.detach().amin(dim=1) - margin
    hi = vimg.detach().amax(dim=1) + margin
    flat_all, vals_all = [], []
    for r0, r1 in _band_rows(height, width, vimg.shape[0]):
        bg = torch.nonzero(face_idx[r0:r1].reshape(-1) < 0).squeeze(1)
        if bg.numel() == 0:
            continue
        rr = r0 + torch.div(bg, width, rounding_mode="floor")
        cc = bg % width
        px, py = xs[cc].unsqueeze(1), ys[rr].unsqueeze(1)  # (P, 1)
        sel = (hi[:, 1] > ys[r1 - 1]) & (lo[:, 1] <= ys[r0])
        fids = torch.nonzero(sel).squeeze(1)
        flat = r0 * width + bg
        if fids.numel() == 0:
            flat_all.append(flat)
            vals_all.append(torch.zeros(bg.numel(), dtype=vimg.dtype, device=vimg.device))
            continue
        flo, fhi = lo[fids], hi[fids]
        inb = (px >= flo[:, 0]) & (px < fhi[:, 0]) & (py >= flo[:, 1]) & (py < fhi[:, 1])  # (P, Fs)
        # The first knum candidates in face-index order.
        order = torch.arange(fids.numel(), device=vimg.device).expand_as(inb)
        key = torch.where(inb, order, fids.numel())
        k = min(knum, fids.numel())
        key = key.topk(k, dim=1, largest=False, sorted=True).values  # (P, k)
        ok = key < fids.numel()
        cand = fids[key.clamp(max=fids.numel() - 1)]
        prob = _candidates_prob(vimg[cand], px, py, sigmainv, multiplier)
        prob = torch.where(ok, prob, torch.zeros_like(prob))
        flat_all.append(flat)
        vals_all.append(1.0 - torch.prod(1.0 - prob, dim=1))
    if not flat_all:
        return face_idx.new_zeros(0), vimg.new_zeros(0)
    return torch.cat(flat_all), torch.cat(vals_all)


def rasterize_reference(
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
):
    """DIB-R rasterization (Kaolin semantics) in plain PyTorch.

    Args:
        height, width: image size in pixels.
        face_vertices_z: (B, F, 3) camera-space z of each face vertex (camera looks down -z, larger = nearer).
        face_vertices_image: (B, F, 3, 2) NDC x, y in [-1, 1], +y up.
        face_features: (B, F, 3, D) per-face-vertex features, interpolated with screen-space barycentrics.
        face_normals_z: (B, F) camera-space normal z; faces with a negative value are not rasterized (they
            still contribute to the soft mask, as in Kaolin).
        sigmainv: soft-mask sharpness, ``prob = exp(-sigmainv * d^2)`` with d in NDC units.
        boxlen: NDC margin around each face's box inside which it contributes to the soft mask.
        knum: at most this many faces (the first ones by index) contribute to a pixel's soft mask.
        multiplier: internal coordinate scale (numerics only).
        eps: barycentric normaliser ``w_i = e_i / (sum e + copysign(eps, sum e))``.

    Returns:
        features (B, H, W, D) (0 on background), soft_mask (B, H, W) (1 on covered pixels, without
        gradient), face_idx (B, H, W) int64 (-1 on background).
    """
    batch = face_vertices_z.shape[0]
    dim = face_features.shape[-1]
    dtype, device = face_vertices_image.dtype, face_vertices_image.device
    xs, ys = pixel_centers(height, width, multiplier, dtype, device)
    m = torch.tensor(float(multiplier), dtype=dtype).item()
    vimg = face_vertices_image * m  # scaled, differentiable
    features = face_features.new_zeros(batch * height * width, dim)
    soft = face_vertices_image.new_ones(batch * height * width)
    face_idx = torch.empty(batch, height, width, dtype=torch.long, device=device)
    pix_r = torch.arange(height, device=device).view(-1, 1).expand(height, width).reshape(-1)
    pix_c = torch.arange(width, device=device).view(1, -1).expand(height, width).reshape(-1)
    for b in range(batch):
        with torch.no_grad():
            fi = _rasterize_one(
                height, width, face_vertices_z[b], vimg[b].detach(), face_normals_z[b] >= 0, xs, ys, eps
            )
        face_idx[b] = fi
        flat = fi.reshape(-1)
        cov = torch.nonzero(flat >= 0).squeeze(1)
        if cov.numel() > 0:
            f = flat[cov]
            w0, w1, w2 = _normalise(*_edge_functions(vimg[b, f], xs[pix_c[cov]], ys[pix_r[cov]]), eps)
            feat = face_features[b, f]  # (N, 3, D)
            val = w0.unsqueeze(-1) * feat[:, 0] + w1.unsqueeze(-1) * feat[:, 1] + w2.unsqueeze(-1) * feat[:, 2]
            features = features.index_put((b * height * width + cov,), val)
        sflat, sval = _soft_mask_one(height, width, vimg[b], fi, xs, ys, sigmainv, boxlen, knum, multiplier)
        if sflat.numel() > 0:
            soft = soft.index_put((b * height * width + sflat,), sval)
    return (
        features.view(batch, height, width, dim),
        soft.view(batch, height, width),
        face_idx,
    )
