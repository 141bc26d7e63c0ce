"""The DIB-R predictor network: RGBA crop -> deformed ico-sphere with per-vertex albedo and SH9 lighting.

Encoder: DIB-R's 64x64 RGBA conv encoder (k5 s2 convolutions) with GroupNorm, so predictions do not
depend on the batch and train/eval behave the same. Decoder: DVR-style per-vertex residual MLP conditioned
on the latent code and on the template position (plus a few Fourier features of it), giving an offset and
an albedo per template vertex; ``vertices = template + residual_scale * offset`` with ``residual_scale`` a
learnable scalar initialised to 0 (the network starts from the template sphere). A linear head predicts
9 grey SH lighting coefficients (shading = albedo * <sh, Y(n)>), so shading is not baked into the albedo.

Output frame ("view frame", DESIGN section 4): optical axes of the camera that looks at the object centre
(x right, y down, z forward), origin at the object centre (bounding-box middle), unit = bounding-sphere
radius. Every predicted mesh is re-normalised to exactly that (bbox centre at 0, max radius 1), as DIB-R
re-normalises its predictions.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from dibr_ros.render.mesh import ico_sphere
from dibr_ros.render.shading import sh9_basis

__all__ = ["DEFAULT_CONFIG", "DIBRNet", "build_network", "checkpoint_network_config", "expand_input_channels",
           "normalize_vertices", "network_config"]

DEFAULT_CONFIG: dict = {
    "input_size": 64,  # crop side in pixels the network sees
    "in_channels": 6,  # 6: RGB-D (see dibr_ros.model.inputs); 4: RGB only (checkpoints before RGB-D)
    "template_level": 3,  # ico-sphere subdivisions: 3 -> 642 V / 1280 F
    "enc_channels": [32, 64, 128, 256],  # k5 s2 convs: 64 -> 32 -> 16 -> 8 -> 4
    "latent_dim": 256,
    "fc_dim": 512,
    "groups": 8,  # GroupNorm groups
    "dec_hidden": 64,
    "dec_blocks": 3,
    "fourier_freqs": 3,  # template-position features sin/cos(2^k pi p), k < fourier_freqs
    "crop_scale": 1.15,  # square crop side / max(mask bbox width, height); training renders use the same
}


def network_config(config: dict | None = None) -> dict:
    """DEFAULT_CONFIG updated with the network keys of ``config`` (other keys are ignored)."""
    out = dict(DEFAULT_CONFIG)
    for k, v in (config or {}).items():
        if k in DEFAULT_CONFIG:
            out[k] = list(v) if isinstance(v, (list, tuple)) else v
    if int(out["input_size"]) % 16 != 0 or int(out["input_size"]) < 16:
        raise ValueError(f"input_size must be a positive multiple of 16, got {out['input_size']}")
    if int(out["in_channels"]) not in (4, 6):
        raise ValueError(f"in_channels must be 4 (RGB + mask) or 6 (RGB + mask + depth + validity), "
                         f"got {out['in_channels']}")
    return out


def checkpoint_network_config(config: dict) -> dict:
    """Network config of a saved checkpoint: those written before RGB-D input have no ``in_channels`` and
    are RGB-only (4 channels)."""
    return network_config({"in_channels": 4, **(config or {})})


def expand_input_channels(state_dict: dict, in_channels: int) -> dict:
    """A 4-channel (RGB-only) state_dict widened to ``in_channels`` inputs: the new channels' first-layer
    weights start at zero, so the widened network computes exactly what the old one did (warm start)."""
    w = state_dict["conv.0.weight"]
    if w.shape[1] == in_channels:
        return state_dict
    if w.shape[1] > in_channels:
        raise ValueError(f"cannot narrow a {w.shape[1]}-channel network to {in_channels} channels")
    out = dict(state_dict)
    out["conv.0.weight"] = torch.cat([w, w.new_zeros(w.shape[0], in_channels - w.shape[1], *w.shape[2:])], 1)
    return out


def normalize_vertices(vertices: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Centre on the bounding-box middle and scale to a unit bounding sphere (differentiable).

    vertices (B, V, 3) -> (B, V, 3).
    """
    center = 0.5 * (vertices.amax(dim=1, keepdim=True) + vertices.amin(dim=1, keepdim=True))
    v = vertices - center
    radius = v.norm(dim=-1).amax(dim=1, keepdim=True).unsqueeze(-1)
    return v / radius.clamp_min(eps)


class _ResBlockFC(nn.Module):
    """Pre-activation residual FC block; the second layer starts at zero (DVR's ResnetBlockFC)."""

    def __init__(self, width: int):
        super().__init__()
        self.fc0 = nn.Linear(width, width)
        self.fc1 = nn.Linear(width, width)
        nn.init.zeros_(self.fc1.weight)
        nn.init.zeros_(self.fc1.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.fc1(F.relu(self.fc0(F.relu(x))))


class DIBRNet(nn.Module):
    """Single-view mesh predictor.

    forward(image (B, C, S, S) float, C = config["in_channels"]: RGB multiplied by the mask, the mask, and
    for C = 6 the normalised depth and its validity (:func:`dibr_ros.model.inputs.network_input`)) -> dict:
      vertices (B, V, 3) view frame, unit bounding sphere; offsets (B, V, 3) = residual_scale * offset
      (before re-normalisation, what the Laplacian regulariser sees); colors (B, V, 3) albedo in [0, 1];
      sh (B, 9) grey SH9 lighting in the view frame (convention of dibr_ros.render.shading.sh9_basis).
    Buffers (rebuilt from the config, not saved): template (V, 3) unit ico-sphere, faces (F, 3) int64.
    """

    def __init__(self, config: dict | None = None):
        super().__init__()
        cfg = network_config(config)
        self.config = cfg
        size = int(cfg["input_size"])
        groups = int(cfg["groups"])
        chans = [int(cfg["in_channels"])] + [int(c) for c in cfg["enc_channels"]]
        layers: list[nn.Module] = []
        for cin, cout in zip(chans[:-1], chans[1:]):
            layers += [nn.Conv2d(cin, cout, 5, stride=2, padding=2), nn.GroupNorm(groups, cout), nn.ReLU(True)]
        self.conv = nn.Sequential(*layers)
        feat = size // (2 ** (len(chans) - 1))
        latent = int(cfg["latent_dim"])
        self.fc = nn.Sequential(
            nn.Flatten(),
            nn.Linear(chans[-1] * feat * feat, int(cfg["fc_dim"])),
            nn.ReLU(True),
            nn.Linear(int(cfg["fc_dim"]), latent),
        )

        verts, faces = ico_sphere(int(cfg["template_level"]))
        self.register_buffer("template", verts.float().contiguous(), persistent=False)
        self.register_buffer("faces", faces.long().contiguous(), persistent=False)
        nf = int(cfg["fourier_freqs"])
        self.register_buffer("freqs", (2.0 ** torch.arange(nf, dtype=torch.float32)) * math.pi, persistent=False)

        hidden = int(cfg["dec_hidden"])
        self.fc_p = nn.Linear(3 + 6 * nf, hidden)
        self.fc_c = nn.ModuleList(nn.Linear(latent, hidden) for _ in range(int(cfg["dec_blocks"])))
        self.blocks = nn.ModuleList(_ResBlockFC(hidden) for _ in range(int(cfg["dec_blocks"])))
        self.fc_out = nn.Linear(hidden, 6)
        self.residual_scale = nn.Parameter(torch.zeros(()))

        # Start lighting at "ambient only, shading = albedo": <sh, Y(n)> = 1 needs sh_0 = 1 / Y_0.
        y0 = float(sh9_basis(torch.tensor([[0.0, 0.0, 1.0]]))[0, 0])
        self.sh_head = nn.Linear(latent, 9)
        nn.init.normal_(self.sh_head.weight, std=1e-3)
        with torch.no_grad():
            self.sh_head.bias.zero_()
            self.sh_head.bias[0] = 1.0 / y0

    @property
    def input_size(self) -> int:
        return int(self.config["input_size"])

    @property
    def in_channels(self) -> int:
        return int(self.config["in_channels"])

    @property
    def uses_depth(self) -> bool:
        return self.in_channels == 6

    def encode(self, image: torch.Tensor) -> torch.Tensor:
        """image (B, C, S, S) -> latent (B, latent_dim)."""
        c, s = self.in_channels, self.input_size
        if image.dim() != 4 or image.shape[1] != c or image.shape[2] != s or image.shape[3] != s:
            raise ValueError(f"image must be (B, {c}, {s}, {s}), got {tuple(image.shape)}")
        return self.fc(self.conv(image - 0.5))

    def _point_features(self) -> torch.Tensor:
        p = self.template
        ang = p[:, :, None] * self.freqs  # (V, 3, nf)
        return torch.cat([p, torch.sin(ang).flatten(1), torch.cos(ang).flatten(1)], dim=1)

    def forward(self, image: torch.Tensor) -> dict:
        code = self.encode(image)
        net = self.fc_p(self._point_features()).unsqueeze(0)  # (1, V, H)
        for fc_c, block in zip(self.fc_c, self.blocks):
            net = block(net + fc_c(code).unsqueeze(1))
        # float32 from here on, also under autocast: vertices and their normalisation need the precision
        out = self.fc_out(F.leaky_relu(net, 0.2)).float()  # (B, V, 6)
        colors = torch.sigmoid(out[..., :3])
        offsets = self.residual_scale * out[..., 3:]
        vertices = normalize_vertices(self.template.unsqueeze(0) + offsets)
        return {"vertices": vertices, "offsets": offsets, "colors": colors, "sh": self.sh_head(code).float()}


def build_network(config: dict | None = None) -> DIBRNet:
    """DIBRNet from a (possibly partial) config dict."""
    return DIBRNet(config)
