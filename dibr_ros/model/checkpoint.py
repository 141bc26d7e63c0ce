"""Checkpoint files: ``{"format", "config", "state_dict", "meta", "digest"}`` with tensors and primitives only.

They load with ``torch.load(weights_only=True)`` (no code runs on load), and the SHA-256 digest of the
state_dict (names, dtypes, shapes, bytes) catches files whose tensors were altered after saving.
"""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import zipfile

import torch

__all__ = ["CheckpointError", "FORMAT", "save_checkpoint", "load_checkpoint", "state_digest", "atomic_save"]

FORMAT = "dibr_ros.model/1"


class CheckpointError(ValueError):
    """A checkpoint file is missing, unreadable, not a dibr_ros checkpoint, or was modified."""


def state_digest(state_dict: dict) -> str:
    """SHA-256 over the sorted (name, dtype, shape, bytes) of every tensor of a state_dict."""
    h = hashlib.sha256()
    for name in sorted(state_dict):
        t = state_dict[name].detach().cpu().contiguous()
        h.update(name.encode())
        h.update(str(t.dtype).encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(t.view(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def atomic_save(obj: dict, path: str) -> None:
    """torch.save to ``path`` through a temporary file + rename, so readers never see half a file."""
    path = os.fspath(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.tmp{os.getpid()}"
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def save_checkpoint(path: str, model: torch.nn.Module | dict, config: dict, meta: dict, *,
                    half: bool = False) -> None:
    """Write a model checkpoint.

    model: module or state_dict. config / meta: JSON-like dicts (str, int, float, bool, None, lists, dicts).
    half: store floating-point tensors as float16 (shipping size); load_checkpoint returns them as saved.
    """
    sd = model.state_dict() if isinstance(model, torch.nn.Module) else model
    out = {}
    for k, v in sd.items():
        v = v.detach().cpu().clone()
        if half and v.is_floating_point():
            v = v.half()
        out[k] = v
    atomic_save({"format": FORMAT, "config": dict(config), "state_dict": out, "meta": dict(meta),
                 "digest": state_digest(out)}, path)


def load_checkpoint(path: str) -> tuple[dict, dict, dict]:
    """Read a checkpoint safely -> (config, state_dict, meta). Raises CheckpointError with the reason."""
    path = os.fspath(path)
    if os.path.isdir(path):
        raise CheckpointError(f"{path} is a directory, not a checkpoint file")
    if not os.path.exists(path):
        raise CheckpointError(f"checkpoint not found: {path}")
    if not os.path.isfile(path):
        raise CheckpointError(f"{path} is not a regular file")
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise CheckpointError(f"cannot read {path}: {e.strerror or e}") from e
    if not data.startswith(b"PK\x03\x04"):
        # torch.save writes a zip archive; anything else would get torch's weights_only advice, which is
        # about trusting the file, not about what is wrong with it
        what = "an empty file" if not data else "not a zip archive (as torch.save writes)"
        raise CheckpointError(f"{path} is not a dibr_ros checkpoint: {what}")
    try:
        obj = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError,
            AttributeError, TypeError, KeyError, IndexError) as e:
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        if isinstance(e, pickle.UnpicklingError) and "weights_only" in str(e):
            reason = "it holds Python objects other than tensors and primitives (refused: loading would run code)"
        raise CheckpointError(f"{path} is not a dibr_ros checkpoint: {reason[:300]}") from e
    if not isinstance(obj, dict) or obj.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a dibr_ros checkpoint: no {FORMAT!r} format tag")
    config, sd, meta = obj.get("config"), obj.get("state_dict"), obj.get("meta")
    if not isinstance(config, dict) or not isinstance(meta, dict) or not isinstance(sd, dict):
        raise CheckpointError(f"{path}: config, state_dict and meta must be dicts")
    if not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in sd.items()):
        raise CheckpointError(f"{path}: state_dict must map names to tensors")
    if obj.get("digest") != state_digest(sd):
        raise CheckpointError(f"{path}: tensor digest mismatch (file modified or corrupted)")
    return config, sd, meta
