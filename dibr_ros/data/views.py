"""Multi-view renders of library objects with our DIB-R rasterizer, batched over objects of any topology.

Frames and units (all float32):

- **object frame**: the :class:`~dibr_ros.data.library.ObjectMesh` frame (bbox centre at 0, bounding-sphere
  radius 1, +z up as in pybullet_data). Lights live here, so every view of a sample sees the same scene.
- **camera (OpenGL) frame**: ``p_cam = (p - eye) @ R^T``; the camera looks down -z, +y up (Kaolin /
  :mod:`dibr_ros.render.camera`).
- **view frame** of a view: the camera optical frame (x right, y down, z forward) rotated about the object
  centre, i.e. ``p_view = p_obj @ view_rot^T`` with ``view_rot = diag(1,-1,-1) @ R``; origin at the object
  centre, unit = bounding-sphere radius. This is the frame of ``Predictor`` outputs (DESIGN §4).

Cameras look at the object centre from ``distance`` (default 4, 30 degree fovy: the unit sphere, so the
whole object, is always inside the image), azimuth uniform, elevation uniform in [0, 70] degrees above the
horizontal (object xy) plane, roll uniform in +-10 degrees.
"""

from __future__ import annotations

import math
import zlib

import numpy as np
import torch

#: Bumped when anything changes what a seed renders (recorded in shard manifests).
RENDER_VERSION = 1
FOVY = math.radians(30.0)
DISTANCE = 4.0
ELEVATION_RANGE = (0.0, math.radians(70.0))
ROLL_MAX = math.radians(10.0)
_OPT = torch.diag(torch.tensor([1.0, -1.0, -1.0]))


def object_seed(seed: int, name: str) -> int:
    """Per-object 32-bit seed: a sample depends only on (seed, object name), not on list order."""
    return zlib.crc32(f"{int(seed)}:{name}".encode())


def sh9_basis(n: torch.Tensor) -> torch.Tensor:
    """Real spherical-harmonics basis up to band 2 of unit directions (..., 3) -> (..., 9)."""
    x, y, z = n.unbind(-1)
    return torch.stack([
        torch.full_like(x, 0.282095), 0.488603 * y, 0.488603 * z, 0.488603 * x,
        1.092548 * x * y, 1.092548 * y * z, 0.315392 * (3 * z * z - 1), 1.092548 * x * z,
        0.546274 * (x * x - y * y)], -1)


def sample_cameras(n: int, generator: torch.Generator, distance: float = DISTANCE) -> dict:
    """Random cameras around the origin.

    Returns dict: R (n,3,3) world->camera, eye (n,3), azimuth, elevation, roll (n,) radians.
    """
    from dibr_ros.render.camera import look_at_rotation

    u = torch.rand(n, 3, generator=generator, dtype=torch.float64)
    az = 2 * math.pi * u[:, 0]
    el = ELEVATION_RANGE[0] + (ELEVATION_RANGE[1] - ELEVATION_RANGE[0]) * u[:, 1]
    roll = ROLL_MAX * (2 * u[:, 2] - 1)
    eye = distance * torch.stack([torch.cos(el) * torch.cos(az), torch.cos(el) * torch.sin(az), torch.sin(el)], -1)
    R = look_at_rotation(eye, torch.zeros_like(eye), torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64))
    c, s = torch.cos(roll), torch.sin(roll)
    zero, one = torch.zeros_like(c), torch.ones_like(c)
    Rz = torch.stack([torch.stack([c, -s, zero], -1), torch.stack([s, c, zero], -1),
                      torch.stack([zero, zero, one], -1)], -2)
    return {"R": (Rz @ R).float(), "eye": eye.float(), "azimuth": az.float(), "elevation": el.float(),
            "roll": roll.float()}


def sample_lighting(n: int, generator: torch.Generator) -> dict:
    """Random lighting in the object frame: half directional + ambient, half SH9.

    Returns dict: use_sh (n,) bool, light_dir (n,3) unit, ambient (n,), sh (n,9); shading of a surface
    with unit normal m is ``ambient + (1-ambient) max(0, m.light_dir)`` or ``max(0, sh9_basis(m) . sh)``.
    """
    use_sh = torch.rand(n, generator=generator) < 0.5
    d = torch.randn(n, 3, generator=generator)
    d[:, 2] = d[:, 2].abs() + 0.3  # mostly from above, as in a room
    light_dir = d / d.norm(dim=-1, keepdim=True)
    ambient = 0.3 + 0.4 * torch.rand(n, generator=generator)
    sh = torch.zeros(n, 9)
    sh[:, 0] = (0.6 + 0.5 * torch.rand(n, generator=generator)) / 0.282095 * 0.8
    sh[:, 1:4] = 0.5 * torch.randn(n, 3, generator=generator) * sh[:, :1] * 0.282095
    sh[:, 4:] = 0.15 * torch.randn(n, 5, generator=generator)
    return {"use_sh": use_sh, "light_dir": light_dir, "ambient": ambient, "sh": sh}


def rebase_colors(colors: torch.Tensor, base: torch.Tensor) -> torch.Tensor:
    """Per-vertex albedo (..., V, 3) with its mean colour moved to ``base`` (..., 1, 3) and its own
    variation kept in proportion (``colors / mean * base``, clamped to [0, 1])."""
    own = colors.mean(-2, keepdim=True).clamp_min(1e-3)
    return (colors / own * base).clamp(0.0, 1.0)


def jitter_colors(vertices: torch.Tensor, colors: torch.Tensor, generator: torch.Generator,
                  p_texture: float = 0.5, p_recolor: float = 0.3) -> torch.Tensor:
    """Colour and procedural-texture jitter of per-vertex albedo.

    Per object: with probability ``p_recolor`` a new base colour (half of them grey, white to black), keeping
    the object's own colour variation (:func:`rebase_colors`), so that hue cannot stand in for shape (a white
    ball, a green bottle); then a gain in [0.75, 1.25] per channel plus a brightness shift in +-0.1; with probability
    ``p_texture`` a texture on the vertices, in equal shares: stripes along a random direction (second random
    colour), smooth value noise (sum of random sinusoids, +-0.2), or 4-12 round spots of a second colour
    (printed labels, a football's patches).

    Args:
        vertices: (N,V,3) object frame; colors: (N,V,3) in [0,1].

    Returns:
        (N,V,3) albedo in [0,1].
    """
    n = colors.shape[0]
    dev = colors.device
    u = torch.rand(n, 2, generator=generator).to(dev)
    base = torch.rand(n, 1, 3, generator=generator).to(dev)
    base = torch.where(u[:, 1, None, None] < 0.5, base[..., :1].expand(-1, -1, 3), base)
    colors = torch.where(u[:, 0, None, None] < p_recolor, rebase_colors(colors, base), colors)
    gain = (0.75 + 0.5 * torch.rand(n, 1, 3, generator=generator)).to(dev)
    shift = (0.2 * torch.rand(n, 1, 1, generator=generator) - 0.1).to(dev)
    out = colors * gain + shift
    kind = torch.rand(n, generator=generator).to(dev)
    direction = torch.nn.functional.normalize(torch.randn(n, 3, generator=generator), dim=-1).to(dev)
    freq = (3.0 + 6.0 * torch.rand(n, 1, generator=generator)).to(dev)
    second = torch.rand(n, 1, 3, generator=generator).to(dev)
    stripes = torch.sin(freq * (vertices @ direction[:, :, None])[..., 0]) > 0
    stripe_col = torch.where(stripes[..., None], second, out)
    waves = torch.randn(n, 4, 3, generator=generator).to(dev) * 2.5
    phase = (2 * math.pi * torch.rand(n, 4, generator=generator)).to(dev)
    noise = torch.sin(vertices @ waves.transpose(1, 2) + phase[:, None, :]).mean(-1, keepdim=True) * 0.4
    noise_col = out + noise
    k = 12
    centres = torch.nn.functional.normalize(torch.randn(n, k, 3, generator=generator), dim=-1).to(dev)
    used = (torch.arange(k)[None] < torch.randint(4, k + 1, (n, 1), generator=generator)).to(dev)
    cos_r = torch.cos(0.2 + 0.3 * torch.rand(n, 1, 1, generator=generator)).to(dev)  # spot radius 11-29 deg
    dirs = torch.nn.functional.normalize(vertices, dim=-1)
    near = ((dirs @ centres.transpose(1, 2) > cos_r) & used[:, None, :]).any(-1)  # (N, V)
    spot_col = torch.where(near[..., None], second, out)
    t = p_texture / 3
    out = torch.where((kind < t)[:, None, None], stripe_col,
                      torch.where((kind < 2 * t)[:, None, None], noise_col,
                                  torch.where((kind < p_texture)[:, None, None], spot_col, out)))
    return out.clamp(0.0, 1.0)


def render_batch(vertices: torch.Tensor, faces: torch.Tensor, num_faces: torch.Tensor, colors: torch.Tensor,
                 R: torch.Tensor, eye: torch.Tensor, lighting: dict | None, size: int, fovy: float = FOVY,
                 backend: str = "auto", double_sided: bool = False) -> dict:
    """Render N meshes, each with its own (padded) topology, flat shaded, with one DIB-R rasterizer call.

    Args:
        vertices: (N,Vmax,3) object frame; faces: (N,Fmax,3) int64 (rows >= num_faces are padding);
        num_faces: (N,) int64; colors: (N,Vmax,3) albedo in [0,1];
        R: (N,3,3) world->camera; eye: (N,3);
        lighting: :func:`sample_lighting` dict with n = N, or None (unlit: rgb = albedo);
        size: image side in pixels; fovy: radians; backend: rasterizer backend;
        double_sided: also draw faces seen from behind (for open or inconsistently wound meshes).

    Returns dict (H = W = size):
        rgb (N,H,W,3) shaded, albedo (N,H,W,3), mask (N,H,W) hard 0/1, soft_mask (N,H,W),
        depth (N,H,W) along the optical axis in object units (0 = background), face_idx (N,H,W) int64.
    """
    from dibr_ros.render.rasterize import dibr_rasterize

    n, fmax = faces.shape[:2]
    if double_sided:
        faces = torch.cat([faces, faces.flip(-1)], 1)
        valid = torch.arange(fmax, device=faces.device)[None] < num_faces[:, None]
        valid = torch.cat([valid, valid], 1)
    else:
        valid = torch.arange(fmax, device=faces.device)[None] < num_faces[:, None]
    idx = faces.reshape(n, -1, 1).expand(-1, -1, 3)
    fv = torch.gather(vertices, 1, idx).reshape(n, -1, 3, 3)
    fc = torch.gather(colors, 1, idx).reshape(n, -1, 3, 3)
    cam = (fv - eye[:, None, None, :]) @ R[:, None].transpose(-1, -2)
    t = math.tan(fovy / 2)
    z = cam[..., 2]
    img = cam[..., :2] / (-z).clamp_min(1e-6)[..., None] / t
    e1, e2 = cam[:, :, 1] - cam[:, :, 0], cam[:, :, 2] - cam[:, :, 0]
    nz = torch.linalg.cross(e1, e2, dim=-1)[..., 2]
    # Padding faces: culled and moved out of every soft-mask box.
    nz = torch.where(valid, nz, torch.full_like(nz, -1.0))
    img = torch.where(valid[..., None, None], img, torch.full_like(img, -10.0))
    if lighting is None:
        shade = torch.ones(fv.shape[:2], device=fv.device, dtype=fv.dtype)
    else:
        wn = torch.nn.functional.normalize(torch.linalg.cross(fv[:, :, 1] - fv[:, :, 0], fv[:, :, 2] - fv[:, :, 0],
                                                              dim=-1), dim=-1)
        lt = {k: v.to(fv.device) for k, v in lighting.items()}
        cos = (wn @ lt["light_dir"][:, :, None])[..., 0].clamp_min(0)
        lam = lt["ambient"][:, None] + (1 - lt["ambient"][:, None]) * cos
        sh = (sh9_basis(wn) * lt["sh"][:, None, :]).sum(-1).clamp_min(0)
        shade = torch.where(lt["use_sh"][:, None], sh, lam)
    shaded = fc * shade[..., None, None]
    feats = torch.cat([shaded, fc, (1.0 / (-z).clamp_min(1e-6))[..., None]], -1)
    out, soft, face_idx = dibr_rasterize(size, size, z, img, feats, nz, backend=backend)
    mask = (face_idx >= 0).to(out.dtype)
    depth = torch.where(mask > 0, 1.0 / out[..., 6].clamp_min(1e-6), torch.zeros_like(mask))
    return {"rgb": out[..., :3].clamp(0, 1), "albedo": out[..., 3:6].clamp(0, 1), "mask": mask, "soft_mask": soft,
            "depth": depth, "face_idx": face_idx}


def intrinsics(size: int, fovy: float = FOVY) -> torch.Tensor:
    """OpenCV K (3,3) of the render camera at ``size`` pixels (principal point at the image centre)."""
    f = size / (2 * math.tan(fovy / 2))
    c = (size - 1) / 2
    return torch.tensor([[f, 0, c], [0, f, c], [0, 0, 1.0]])


def relative_cameras(R: torch.Tensor, eye: torch.Tensor) -> dict:
    """Cameras of all views expressed in the view frame of view 0.

    Args:
        R: (B,V,3,3) world->camera; eye: (B,V,3) object frame.

    Returns dict:
        view_rot (B,V,3,3): object frame -> view frame of each view (``diag(1,-1,-1) @ R``);
        R_rel (B,V,3,3), eye_rel (B,V,3): camera j in view-0 frame, so that a mesh ``p`` in the view frame
        of view 0 renders in view j with ``render_mesh(p, faces, colors, R_rel[:, j], eye_rel[:, j])``
        (view 0 itself: R_rel = diag(1,-1,-1), eye_rel = (0,0,-distance)).
    """
    view_rot = _OPT.to(R) @ R
    r0 = view_rot[:, :1]
    R_rel = R @ r0.transpose(-1, -2)
    eye_rel = (eye[..., None, :] @ r0.transpose(-1, -2))[..., 0, :]
    return {"view_rot": view_rot, "R_rel": R_rel, "eye_rel": eye_rel}


def render_views(packed: dict, index: torch.Tensor, views: int, size: int, generator: torch.Generator,
                 device: str | torch.device = "cpu", jitter: bool = True, distance: float = DISTANCE,
                 backend: str = "auto") -> dict:
    """Render ``views`` random views of each object ``packed[...][index]`` (see :func:`MultiViewSampler`)."""
    b = int(index.shape[0])
    idx = index.cpu()
    nv = torch.as_tensor(packed["num_vertices"])[idx]
    nf = torch.as_tensor(packed["num_faces"])[idx]
    vmax, fmax = int(nv.max()), int(nf.max())
    verts = torch.as_tensor(packed["vertices"])[idx, :vmax].to(device)
    faces = torch.as_tensor(packed["faces"])[idx, :fmax].to(device)
    cols = torch.as_tensor(packed["colors"])[idx, :vmax].to(device)
    albedo = jitter_colors(verts, cols, generator) if jitter else cols
    cams = sample_cameras(b * views, generator, distance)
    light = sample_lighting(b, generator)
    light_v = {k: v.repeat_interleave(views, 0) for k, v in light.items()}

    def rep(x):
        return x.repeat_interleave(views, 0)

    out = render_batch(rep(verts), rep(faces), rep(nf.to(device)), rep(albedo), cams["R"].to(device),
                       cams["eye"].to(device), light_v, size, backend=backend)
    R = cams["R"].to(device).reshape(b, views, 3, 3)
    eye = cams["eye"].to(device).reshape(b, views, 3)
    sample = {k: v.reshape(b, views, *v.shape[1:]) for k, v in out.items() if k != "face_idx"}
    sample.update(relative_cameras(R, eye))
    sample.update({"R": R, "eye": eye, "K": intrinsics(size).to(device).expand(b, views, 3, 3),
                   "object_index": idx.to(device), "scale_m": torch.as_tensor(packed["scale_m"])[idx].to(device)})
    return sample


class MultiViewSampler:
    """On-the-fly multi-view batches for training (fresh random views, lights and jitter every call).

    Args:
        objects: ``load_split_arrays(...)`` / ``pack_objects(...)`` dict, or a list of ``ObjectMesh``.
        views: views per object (view 0 is the input view); size: image side in pixels (64 or 128 ...);
        device: where meshes live and rendering runs; seed: generator seed (CPU generator, so a seed gives
        the same batches on every device up to rasterizer float differences).

    ``sampler.sample(batch_size)`` -> dict of tensors (B objects, V views, H = W = size), on ``device``:

    - ``rgb`` (B,V,H,W,3) shaded colour in [0,1], background 0; ``albedo`` (B,V,H,W,3) unshaded colour;
    - ``mask`` (B,V,H,W) hard 0/1; ``soft_mask`` (B,V,H,W) DIB-R soft silhouette;
    - ``depth`` (B,V,H,W) distance along the optical axis in object units (bounding-sphere radius 1;
      multiply by ``scale_m`` for metres), 0 on background;
    - ``R`` (B,V,3,3), ``eye`` (B,V,3): world->camera (OpenGL) cameras in the object frame;
    - ``K`` (B,V,3,3): OpenCV intrinsics in pixels (30 degree fovy);
    - ``view_rot`` (B,V,3,3): object frame -> each view's view frame; the ground truth in the view frame of
      view v is ``vertices @ view_rot[:, v]^T``;
    - ``R_rel`` (B,V,3,3), ``eye_rel`` (B,V,3): every view's camera in the view frame of view 0 (render a
      view-0-frame prediction into view j with them; see :func:`relative_cameras`);
    - ``object_index`` (B,) int64 into ``objects``; ``scale_m`` (B,) metric radius.
    """

    def __init__(self, objects, views: int = 2, size: int = 64, device: str | torch.device = "cpu",
                 seed: int = 0, jitter: bool = True, backend: str = "auto"):
        from .library import pack_objects

        if isinstance(objects, list):
            objects = pack_objects(objects)
        if views < 1 or size < 8:
            raise ValueError("views must be >= 1 and size >= 8")
        self.names = list(objects["names"])
        self.packed = {k: torch.as_tensor(np.asarray(objects[k])).to(device)
                       for k in ("vertices", "faces", "colors", "num_vertices", "num_faces", "scale_m")}
        self.views, self.size, self.device, self.jitter, self.backend = views, size, device, jitter, backend
        self.generator = torch.Generator().manual_seed(int(seed))

    def __len__(self) -> int:
        return len(self.names)

    def sample(self, batch_size: int, index: torch.Tensor | None = None) -> dict:
        """A batch of ``batch_size`` random objects (or the given ``index`` (B,) int64), see class docstring."""
        if index is None:
            index = torch.randint(len(self.names), (batch_size,), generator=self.generator)
        return render_views(self.packed, torch.as_tensor(index), self.views, self.size, self.generator,
                            self.device, self.jitter, backend=self.backend)

    def state_dict(self) -> dict:
        """Generator state, for exact resume."""
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"])
