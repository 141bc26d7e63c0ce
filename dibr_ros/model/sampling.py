"""On-the-fly multi-view training batches in the Predictor's crop framing.

Objects, cameras (look at the object centre; azimuth uniform, elevation 0-70 degrees, roll +-10 degrees),
lights and colour jitter come from :mod:`dibr_ros.data` (library + views); the camera distance is drawn
log-uniformly from ``distance`` (bounding-sphere radii) and every view is rendered at ``size`` pixels through
the square crop K of :func:`dibr_ros.model.rendering.crop_intrinsics`, i.e. exactly the network's input framing.
"""

from __future__ import annotations

import math
import warnings

import torch

from dibr_ros.model.inputs import network_input
from dibr_ros.model.rendering import crop_intrinsics, project_pixels, render_faces
from dibr_ros.render.shading import sh9_basis

__all__ = ["CropSampler", "network_input", "load_objects"]

_OPT = torch.diag(torch.tensor([1.0, -1.0, -1.0]))


def load_objects(split: str, count: int | None = None, names: list[str] | None = None) -> dict:
    """Packed library objects (``pack_objects`` dict) of a split: ``names`` if given, else ``count`` objects
    spread evenly over the split's list (all when None). Objects the library cannot load are skipped with a
    warning (the packed ``names`` say which were used)."""
    from dibr_ros.data.library import list_objects, load_object, pack_objects

    if names is None:
        names = list_objects(split)
        if count is not None and count < len(names):
            step = len(names) / count
            names = [names[int(i * step)] for i in range(count)]
    objs = []
    for n in names:
        try:
            objs.append(load_object(n))
        except ValueError as e:
            warnings.warn(f"skipping object {n}: {e}", stacklevel=2)
    if not objs:
        raise ValueError(f"no loadable objects for split {split!r}")
    return pack_objects(objs)


class CropSampler:
    """Random multi-view batches of packed objects (``load_objects`` / ``dibr_ros.data.library.pack_objects``).

    sample(batch_size) -> dict (B objects, W views, S = size): ``rgb`` (B, W, S, S, 3) shaded in [0, 1],
    background 0; ``mask`` (B, W, S, S) hard 0/1; ``depth`` (B, W, S, S) distance along the optical axis
    (object units, 0 on background; only with ``with_depth``, an extra feature channel to rasterise);
    ``R`` (B, W, 3, 3), ``eye`` (B, W, 3) world->camera (OpenGL, object frame); ``K`` (B, W, 3, 3) crop
    intrinsics (pixels); ``view_rot`` (B, W, 3, 3) object frame -> view frame (ground truth in the view
    frame of view w: ``vertices @ view_rot[:, w]^T``); ``object_index`` (B,) int64; with ``surface_points``
    > 0 also ``surface`` (B, W, P, 3): that many fixed area-weighted samples of each object's surface in the
    view frame of each view (3D supervision). Deterministic given the seed; state_dict()/load_state_dict()
    resume the stream exactly.
    """

    def __init__(self, objects: dict, views: int = 2, size: int = 64, crop_scale: float = 1.15, seed: int = 0,
                 distance: tuple[float, float] = (2.5, 8.0), jitter: bool = True, backend: str = "auto",
                 device: str | torch.device = "cpu", with_depth: bool = True, surface_points: int = 0):
        if views < 1 or size < 8:
            raise ValueError("views must be >= 1 and size >= 8")
        if not 1.0 < distance[0] <= distance[1]:
            raise ValueError(f"distance range must satisfy 1 < lo <= hi (object radius 1), got {distance}")
        self.names = list(objects["names"])
        self.packed = {k: torch.as_tensor(objects[k]).to(device)
                       for k in ("vertices", "faces", "colors", "num_vertices", "num_faces")}
        self.views, self.size, self.crop_scale = int(views), int(size), float(crop_scale)
        self.distance = (float(distance[0]), float(distance[1]))
        self.jitter, self.backend, self.device = bool(jitter), backend, torch.device(device)
        self.with_depth = bool(with_depth)
        self.generator = torch.Generator().manual_seed(int(seed))
        self.surface = None
        if surface_points > 0:  # fixed per object (own generator: the batch stream stays as without them)
            from dibr_ros.render.mesh import sample_points

            g = torch.Generator().manual_seed(12345)
            p = self.packed
            valid = torch.arange(p["faces"].shape[1], device=p["faces"].device)[None] < p["num_faces"][:, None]
            self.surface = torch.cat([sample_points(p["vertices"][i:i + 1].float(), p["faces"][i:i + 1].long(),
                                                    int(surface_points), g, valid[i:i + 1])
                                      for i in range(len(self.names))])

    def __len__(self) -> int:
        return len(self.names)

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"])

    def sample(self, batch_size: int, index: torch.Tensor | None = None) -> dict:
        """A batch of ``batch_size`` random objects (or the objects ``index`` (B,) int64)."""
        from dibr_ros.data.views import jitter_colors, sample_cameras, sample_lighting

        g, w, dev = self.generator, self.views, self.device
        if index is None:
            index = torch.randint(len(self.names), (batch_size,), generator=g)
        idx = torch.as_tensor(index).cpu()
        b = int(idx.shape[0])
        nv, nf = self.packed["num_vertices"][idx], self.packed["num_faces"][idx]
        vmax, fmax = int(nv.max()), int(nf.max())
        verts = self.packed["vertices"][idx, :vmax].float()
        faces = self.packed["faces"][idx, :fmax].long()
        cols = self.packed["colors"][idx, :vmax].float()
        albedo = jitter_colors(verts, cols, g) if self.jitter else cols
        cams = sample_cameras(b * w, g, distance=1.0)
        lo, hi = math.log(self.distance[0]), math.log(self.distance[1])
        dist = torch.exp(lo + (hi - lo) * torch.rand(b * w, generator=g))
        light = {k: v.to(dev) for k, v in sample_lighting(b, g).items()}
        R = cams["R"].to(dev)
        eye = (cams["eye"] * dist[:, None]).to(dev)

        # Flat Lambertian / SH9 shading of each face in the object frame (one light per sample, all views).
        fv = torch.gather(verts, 1, faces.reshape(b, -1, 1).expand(-1, -1, 3)).reshape(b, fmax, 3, 3)
        fc = torch.gather(albedo, 1, faces.reshape(b, -1, 1).expand(-1, -1, 3)).reshape(b, fmax, 3, 3)
        n = torch.nn.functional.normalize(torch.linalg.cross(fv[:, :, 1] - fv[:, :, 0], fv[:, :, 2] - fv[:, :, 0],
                                                             dim=-1), dim=-1)
        amb = light["ambient"][:, None]
        lam = amb + (1 - amb) * (n @ light["light_dir"][:, :, None])[..., 0].clamp_min(0.0)
        sh = (sh9_basis(n) * light["sh"][:, None, :]).sum(-1).clamp_min(0.0)
        shade = torch.where(light["use_sh"][:, None], sh, lam)
        shaded = (fc * shade[..., None, None]).clamp(0.0, 1.0)
        valid = torch.arange(fmax, device=dev)[None] < nf[:, None].to(dev)

        rep = lambda x: x.repeat_interleave(w, 0)  # noqa: E731  object b -> its w views
        vvalid = torch.arange(vmax, device=dev)[None] < nv[:, None].to(dev)
        uv, _ = project_pixels(rep(verts), R, eye)
        K = crop_intrinsics(uv, rep(vvalid), self.size, self.crop_scale)
        out = render_faces(rep(fv), rep(shaded), R, eye, K, self.size, valid=rep(valid), backend=self.backend,
                           with_depth=self.with_depth)
        s = self.size
        batch = {
            "rgb": out["rgb"].reshape(b, w, s, s, 3), "mask": out["mask"].reshape(b, w, s, s),
            "R": R.reshape(b, w, 3, 3), "eye": eye.reshape(b, w, 3), "K": K.reshape(b, w, 3, 3),
            "view_rot": (_OPT.to(R) @ R).reshape(b, w, 3, 3), "object_index": idx.to(dev),
        }
        if self.with_depth:
            batch["depth"] = out["depth"].reshape(b, w, s, s)
        if self.surface is not None:
            batch["surface"] = self.surface[idx.to(self.surface.device)][:, None] @ batch["view_rot"].transpose(-1, -2)
        return batch
