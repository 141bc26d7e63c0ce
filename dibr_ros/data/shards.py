"""Fixed multi-view shards on disk (val / test / ood evaluation views) and their ``torch`` Dataset.

Layout of a shard directory::

    manifest.json        split, seed, size, views, renderer/library versions, objects, shard files
    shard_000.npz ...    per object o, view v (H = W = size):
                         rgb (n,V,H,W,3) uint8, mask (n,V,H,W) uint8 0/1, depth (n,V,H,W) float32 object units,
                         R (n,V,3,3), eye (n,V,3), K (n,V,3,3), scale_m (n,), names (n,)

Every object is rendered from its own generator seeded by ``object_seed(seed, name)``: a shard set is a
function of (split, seed, size, views, jitter, renderer version) only, whatever ``max_objects`` or order.
"""

from __future__ import annotations

import json
import os

import numpy as np
import torch

from . import library, views

MANIFEST = "manifest.json"
FORMAT = 1


def render_object(obj: library.ObjectMesh, n_views: int, size: int, seed: int, jitter: bool = False,
                  device: str = "cpu", backend: str = "auto") -> dict:
    """Seeded views of one object: the :class:`~dibr_ros.data.views.MultiViewSampler` dict with B = 1."""
    packed = {k: torch.as_tensor(np.asarray(v)) for k, v in library.pack_objects([obj]).items() if k != "names"}
    gen = torch.Generator().manual_seed(views.object_seed(seed, obj.name))
    return views.render_views(packed, torch.zeros(1, dtype=torch.int64), n_views, size, gen, device, jitter,
                              backend=backend)


def write_shards(split: str, out_dir: str, size: int = 128, n_views: int = 8, seed: int = 0,
                 max_objects: int | None = None, objects_per_shard: int = 25, jitter: bool = False,
                 device: str = "cpu", backend: str = "auto", progress: bool = True) -> str:
    """Render the views of a split into ``out_dir`` (tqdm bar); returns the manifest path."""
    from tqdm import tqdm

    if size < 8 or n_views < 1 or objects_per_shard < 1:
        raise ValueError("size must be >= 8, n_views and objects_per_shard >= 1")
    objs = library.load_split(split, max_objects)
    os.makedirs(out_dir, exist_ok=True)
    shards = []
    bar = tqdm(total=len(objs), desc=f"render {split}", unit="obj", disable=not progress)
    for s in range(0, len(objs), objects_per_shard):
        chunk = objs[s : s + objects_per_shard]
        rec: dict[str, list] = {k: [] for k in ("rgb", "mask", "depth", "R", "eye", "K")}
        for obj in chunk:
            smp = render_object(obj, n_views, size, seed, jitter, device, backend)
            rec["rgb"].append((smp["rgb"][0] * 255).round().to(torch.uint8).cpu().numpy())
            rec["mask"].append(smp["mask"][0].to(torch.uint8).cpu().numpy())
            for k in ("depth", "R", "eye", "K"):
                rec[k].append(smp[k][0].float().cpu().numpy())
            bar.update(1)
        name = f"shard_{s // objects_per_shard:03d}.npz"
        np.savez_compressed(os.path.join(out_dir, name), **{k: np.stack(v) for k, v in rec.items()},
                            scale_m=np.array([o.scale_m for o in chunk], np.float32),
                            names=np.array([o.name for o in chunk], dtype=np.str_))
        shards.append({"file": name, "objects": [o.name for o in chunk]})
    bar.close()
    from dibr_ros import __version__

    manifest = {"format": FORMAT, "split": split, "seed": seed, "size": size, "views": n_views,
                "jitter": jitter, "fovy_deg": float(np.degrees(views.FOVY)), "distance": views.DISTANCE,
                "render_version": views.RENDER_VERSION, "library_version": library.LIBRARY_VERSION,
                "package_version": __version__, "backend": backend,
                "objects": [o.name for o in objs], "shards": shards}
    path = os.path.join(out_dir, MANIFEST)
    with open(path, "w") as f:
        json.dump(manifest, f, indent=1)
    return path


class ShardDataset(torch.utils.data.Dataset):
    """Views of one object per item from a shard directory written by :func:`write_shards`.

    Item (V views, H = W = size; frames as in :mod:`dibr_ros.data.views`, view 0 = input view):
        rgb (V,H,W,3) float32 [0,1]; mask (V,H,W) float32 0/1; depth (V,H,W) float32 object units, 0 off
        the object; R (V,3,3), eye (V,3) object-frame cameras; K (V,3,3) OpenCV pixels; view_rot (V,3,3);
        R_rel (V,3,3), eye_rel (V,3) cameras in the view frame of view 0; scale_m () float32;
        index () int64; name str. ``input_view`` rolls the views so that that view comes first.
    The ground-truth mesh of item i: :meth:`mesh` (object frame; ``vertices @ view_rot[v].T`` is view v).
    """

    def __init__(self, root: str, input_view: int = 0):
        path = os.path.join(root, MANIFEST)
        if not os.path.isfile(path):
            raise ValueError(f"{root}: no {MANIFEST} (not a shard directory)")
        with open(path) as f:
            self.manifest = json.load(f)
        if self.manifest.get("format") != FORMAT:
            raise ValueError(f"{path}: unsupported shard format {self.manifest.get('format')}")
        if not 0 <= input_view < self.manifest["views"]:
            raise ValueError(f"input_view must be in [0, {self.manifest['views']})")
        self.root, self.input_view = root, input_view
        self.index = [(i, j) for i, s in enumerate(self.manifest["shards"]) for j in range(len(s["objects"]))]
        self.names = [n for s in self.manifest["shards"] for n in s["objects"]]
        self._cache: tuple[int, dict] | None = None

    def __len__(self) -> int:
        return len(self.index)

    def _shard(self, i: int) -> dict:
        if self._cache is None or self._cache[0] != i:
            with np.load(os.path.join(self.root, self.manifest["shards"][i]["file"]), allow_pickle=False) as z:
                self._cache = (i, {k: z[k] for k in z.files})
        return self._cache[1]

    def mesh(self, i: int) -> library.ObjectMesh:
        """Ground-truth :class:`~dibr_ros.data.library.ObjectMesh` of item ``i``."""
        return library.load_object(self.names[i])

    def __getitem__(self, i: int) -> dict:
        if not 0 <= i < len(self):
            raise IndexError(i)
        si, j = self.index[i]
        z = self._shard(si)
        order = np.roll(np.arange(self.manifest["views"]), -self.input_view)
        R = torch.from_numpy(z["R"][j][order])
        eye = torch.from_numpy(z["eye"][j][order])
        rel = views.relative_cameras(R[None], eye[None])
        return {"rgb": torch.from_numpy(z["rgb"][j][order]).float() / 255.0,
                "mask": torch.from_numpy(z["mask"][j][order]).float(),
                "depth": torch.from_numpy(z["depth"][j][order]), "R": R, "eye": eye,
                "K": torch.from_numpy(z["K"][j][order]), "view_rot": rel["view_rot"][0],
                "R_rel": rel["R_rel"][0], "eye_rel": rel["eye_rel"][0],
                "scale_m": torch.tensor(float(z["scale_m"][j])), "index": torch.tensor(i), "name": self.names[i]}
