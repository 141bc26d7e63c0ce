"""Inference API (DESIGN section 4): RGB crops + masks -> coloured meshes in the view frame.

Preprocessing (the framing the network was trained on): the mask's bounding box inside the crop, a square
``crop_scale`` times its longer side centred on it (zero padded where it leaves the crop), resized with an
antialiased bilinear filter to ``input_size``; the resized mask is thresholded at 0.5 and the colours are
un-premultiplied inside it, zero outside. Crops of different sizes can be mixed in one call.

Depth (RGB-D networks, optional per call): the aligned depth crop goes through the same framing, averaged
over its valid pixels on the mask only (a missing pixel, or the background behind the silhouette, never
blends into the object's depth), then is normalised around the object's own depth
(:mod:`dibr_ros.model.inputs`). Without depth, or with a 4-channel (RGB-only) checkpoint, the network sees
colour and mask only.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from dibr_ros.model.checkpoint import CheckpointError, load_checkpoint
from dibr_ros.model.inputs import fill_depth_holes, normalize_depth
from dibr_ros.model.network import DIBRNet, checkpoint_network_config, network_config

__all__ = ["PredictedMeshes", "Predictor", "default_weights_path", "resolve_device", "crop_box"]


def default_weights_path() -> str:
    """Path of the shipped checkpoint dibr_ros/weights/default.pt."""
    return os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "weights", "default.pt")


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """"auto" -> cuda if available else cpu; "cuda[:i]" without CUDA -> ValueError."""
    if isinstance(device, str) and device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise ValueError(f"invalid device {device!r}: use 'auto', 'cpu' or 'cuda[:index]'") from e
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {device!r} requested but CUDA is not available in this torch build/machine")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(f"device {device!r}: only {torch.cuda.device_count()} CUDA device(s)")
    elif dev.type != "cpu":
        raise ValueError(f"unsupported device {device!r}: use 'auto', 'cpu' or 'cuda[:index]'")
    return dev


def crop_box(x0: float, y0: float, x1: float, y1: float, scale: float) -> tuple[float, float, float]:
    """Square framing of a box given by its pixel edges [x0, x1) x [y0, y1): (centre x, centre y, side)."""
    return 0.5 * (x0 + x1), 0.5 * (y0 + y1), scale * max(x1 - x0, y1 - y0)


@dataclass
class PredictedMeshes:
    """Predicted meshes, one per input crop.

    vertices (N, V, 3) float32 view frame (optical axes x right, y down, z forward of a camera looking at
    the object centre; origin at the object centre; unit = bounding-sphere radius); faces (F, 3) int64
    shared topology; colors (N, V, 3) float32 albedo in [0, 1]; sh (N, 9) float32 SH9 lighting in the
    view frame; device (str) where the tensors live.
    """

    vertices: torch.Tensor
    faces: torch.Tensor
    colors: torch.Tensor
    sh: torch.Tensor
    device: str

    def __len__(self) -> int:
        return int(self.vertices.shape[0])


def _as_list(x, name: str, ndim: int) -> list:
    if isinstance(x, (list, tuple)):
        items = list(x)
    elif isinstance(x, (np.ndarray, torch.Tensor)):
        if x.ndim == ndim - 1:
            raise ValueError(f"{name} must be batched ({ndim}-D, N first) or a list; got shape {tuple(x.shape)}")
        if x.ndim != ndim:
            raise ValueError(f"{name} must be {ndim}-D (N first), got shape {tuple(x.shape)}")
        items = [x[i] for i in range(x.shape[0])]
    else:
        raise TypeError(f"{name} must be a numpy array, a torch tensor or a list of them, got {type(x).__name__}")
    for i, it in enumerate(items):
        if not isinstance(it, (np.ndarray, torch.Tensor)) or it.ndim != ndim - 1:
            raise ValueError(f"{name}[{i}] must be a {ndim - 1}-D array")
    return items


class Predictor:
    """Single-image mesh predictor. Build with :meth:`load` (checkpoint) or :meth:`from_config` (random).

    ``fill_holes`` (default True): the holes of partial depth inside the mask are filled before the network
    (:func:`~dibr_ros.model.inputs.fill_depth_holes`); False feeds them as missing.
    """

    def __init__(self, network: DIBRNet, device: torch.device, meta: dict | None = None):
        self.network = network.to(device).eval()
        self._device = device
        self.meta = dict(meta or {})
        self.crop_scale = float(network.config["crop_scale"])
        self.fill_holes = True

    @property
    def device(self) -> str:
        return str(self._device)

    @property
    def input_size(self) -> int:
        return self.network.input_size

    @property
    def faces(self) -> torch.Tensor:
        return self.network.faces

    @classmethod
    def load(cls, path: str | None = None, device: str = "auto") -> Predictor:
        """Load a checkpoint (None = the shipped dibr_ros/weights/default.pt) onto ``device``.

        Raises CheckpointError (a ValueError) for a missing/corrupt/foreign file, ValueError for a bad device.
        """
        dev = resolve_device(device)
        config, state, meta = load_checkpoint(default_weights_path() if path is None else path)
        net = DIBRNet(checkpoint_network_config(config))
        try:
            net.load_state_dict(state)
        except RuntimeError as e:
            raise CheckpointError(f"checkpoint does not match its network config: {str(e).splitlines()[0]}") from e
        return cls(net, dev, meta)

    @classmethod
    def from_config(cls, config: dict | None = None, device: str = "cpu", seed: int | None = None) -> Predictor:
        """Randomly initialised predictor (tests, training). seed: fixes the initialisation."""
        dev = resolve_device(device)
        if seed is None:
            return cls(DIBRNet(network_config(config)), dev)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return cls(DIBRNet(network_config(config)), dev)

    @property
    def uses_depth(self) -> bool:
        """True when the network takes depth (RGB-D checkpoint)."""
        return self.network.uses_depth

    def preprocess(self, rgb, mask, depth=None, focal=None) -> torch.Tensor:
        """Crops -> network input (N, C, S, S) float32 on the predictor's device (see module docstring).

        rgb: (N, h, w, 3) uint8 (or float in [0, 1]) numpy/torch, or a list of (h_i, w_i, 3);
        mask: (N, h, w) bool (or 0/1 numbers), or a list of (h_i, w_i);
        depth: None, or (N, h, w) / a list of (h_i, w_i) (None items allowed) along the optical axis, float
        metres (any unit: it is normalised) or uint16 millimetres, 0 / non-finite where missing;
        focal: focal length in pixels of the crops (scalar or (N,)), needed with depth.
        """
        rgbs, masks = _as_list(rgb, "rgb", 4), _as_list(mask, "mask", 3)
        if len(rgbs) != len(masks):
            raise ValueError(f"got {len(rgbs)} rgb crops but {len(masks)} masks")
        depths = [None] * len(rgbs)
        use_depth = self.uses_depth and depth is not None
        if use_depth:
            depths = list(depth) if isinstance(depth, (list, tuple)) else _as_list(depth, "depth", 3)
            if len(depths) != len(rgbs):
                raise ValueError(f"got {len(rgbs)} rgb crops but {len(depths)} depth crops")
            if focal is None:
                raise ValueError("depth crops need focal= (focal length of the crops in pixels)")
            focals = np.broadcast_to(np.asarray(focal, dtype=np.float64).reshape(-1), (len(rgbs),))
            if not (np.isfinite(focals) & (focals > 0)).all():
                raise ValueError(f"focal must be finite and > 0, got {focal}")
        size, dev = self.input_size, self._device
        out, dout, scale = [], [], []
        for i, (im, m) in enumerate(zip(rgbs, masks)):
            if im.shape[-1] != 3 or tuple(im.shape[:2]) != tuple(m.shape):
                raise ValueError(f"crop {i}: rgb {tuple(im.shape)} and mask {tuple(m.shape)} do not match "
                                 "(h, w, 3) / (h, w)")
            # The box is found on the host (one small copy for device masks), then only the box is moved.
            mh = np.asarray(m.detach().cpu() if isinstance(m, torch.Tensor) else m) != 0
            rows, cols = np.flatnonzero(mh.any(axis=1)), np.flatnonzero(mh.any(axis=0))
            if rows.size == 0:
                raise ValueError(f"crop {i}: mask is empty")
            cx, cy, side = crop_box(int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1, self.crop_scale)
            s = max(1, math.ceil(side))
            bx, by = round(cx - s / 2), round(cy - s / 2)
            h, w = mh.shape
            sx0, sy0, sx1, sy1 = max(bx, 0), max(by, 0), min(bx + s, w), min(by + s, h)
            it = im[sy0:sy1, sx0:sx1]
            it = torch.from_numpy(np.ascontiguousarray(it)) if isinstance(it, np.ndarray) else it
            it = it.to(dev, non_blocking=True)
            if it.dtype == torch.uint8:
                it = it.float() / 255.0
            elif it.is_floating_point():
                it = it.float()
            else:
                raise TypeError(f"crop {i}: rgb must be uint8 or floating point, got {it.dtype}")
            mf = torch.from_numpy(np.ascontiguousarray(mh[sy0:sy1, sx0:sx1])).to(dev, non_blocking=True).float()
            x = torch.cat([it * mf[..., None], mf[..., None]], dim=-1).permute(2, 0, 1)
            x = F.pad(x, (sx0 - bx, bx + s - sx1, sy0 - by, by + s - sy1))
            out.append(F.interpolate(x[None], size=(size, size), mode="bilinear", antialias=s > size,
                                     align_corners=False))
            if use_depth:
                dout.append(self._depth_crop(depths[i], i, mh, (sx0, sy0, sx1, sy1), (bx, by, s)))
                scale.append(float(focals[i]) * size / s)  # focal of the resized crop
        x = torch.cat(out, 0)
        alpha = x[:, 3:]
        hard = (alpha > 0.5).float()
        rgb_in = (x[:, :3] / alpha.clamp_min(1e-3)).clamp(0.0, 1.0) * hard
        if not self.uses_depth:
            return torch.cat([rgb_in, hard], dim=1)
        if not use_depth:
            return torch.cat([rgb_in, hard, torch.zeros_like(hard), torch.zeros_like(hard)], dim=1)
        d = torch.cat(dout, 0)  # (N, 2, S, S): depth * weight, weight
        valid = (d[:, 1] > 0.5) & (hard[:, 0] > 0)
        z = d[:, 0] / d[:, 1].clamp_min(1e-6)
        if self.fill_holes:
            z, valid = fill_depth_holes(z, valid, hard[:, 0] > 0)
        zn = normalize_depth(z, valid, torch.tensor(scale, device=dev))
        return torch.cat([rgb_in, hard, zn[:, None], valid[:, None].float()], dim=1)

    def _depth_crop(self, depth, i: int, mask: np.ndarray, src, box) -> torch.Tensor:
        """One depth crop framed like its rgb -> (1, 2, S, S): resized depth * validity, resized validity.
        Valid: finite, > 0 and on the mask (the background behind a silhouette is not the object's depth)."""
        size, dev = self.input_size, self._device
        sx0, sy0, sx1, sy1 = src
        bx, by, s = box
        if depth is None:
            return torch.zeros(1, 2, size, size, device=dev)
        if tuple(depth.shape) != tuple(mask.shape):
            raise ValueError(f"crop {i}: depth {tuple(depth.shape)} does not match its mask {tuple(mask.shape)}")
        dt = depth[sy0:sy1, sx0:sx1]
        dt = torch.from_numpy(np.ascontiguousarray(dt)) if isinstance(dt, np.ndarray) else dt
        if dt.dtype == torch.uint16 or dt.dtype == torch.int32 or dt.dtype == torch.int16:
            dt = dt.to(torch.int32).float() * 1e-3  # millimetres (16UC1) -> metres
        elif not dt.is_floating_point():
            raise TypeError(f"crop {i}: depth must be float (metres) or uint16 (millimetres), got {dt.dtype}")
        dt = dt.to(dev).float()
        on = torch.from_numpy(np.ascontiguousarray(mask[sy0:sy1, sx0:sx1])).to(dev)
        ok = (torch.isfinite(dt) & (dt > 0) & on).float()
        dt = torch.where(ok > 0, dt, torch.zeros_like(dt))
        x = torch.stack([dt * ok, ok])
        x = F.pad(x, (sx0 - bx, bx + s - sx1, sy0 - by, by + s - sy1))
        return F.interpolate(x[None], size=(size, size), mode="bilinear", antialias=s > size, align_corners=False)

    def predict(self, rgb, mask, depth=None, focal=None) -> PredictedMeshes:
        """Crops + masks (+ optional aligned depth crops and their focal length in pixels) -> PredictedMeshes
        (N meshes). See :meth:`preprocess` for the accepted inputs; depth is ignored by RGB-only networks."""
        with torch.inference_mode():
            x = self.preprocess(rgb, mask, depth, focal)
            out = self.network(x)
        return PredictedMeshes(vertices=out["vertices"], faces=self.network.faces, colors=out["colors"],
                               sh=out["sh"], device=self.device)
