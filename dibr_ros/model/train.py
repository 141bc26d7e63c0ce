"""Train the DIB-R predictor from on-the-fly multi-view renders: ``python -m dibr_ros.model.train``.

    python -m dibr_ros.model.train --run-dir /work/runs/r1 --steps 20000 --batch-size 16
    python -m dibr_ros.model.train --config cfg.yaml --set loss_weights.color=1.0 --resume
    torchrun --nproc_per_node 2 -m dibr_ros.model.train --run-dir runs/ddp     # DDP (nccl on CUDA, else gloo)
    python -m dibr_ros.model.train --export runs/r1/model_best.pt dibr_ros/weights/default.pt   # fp16 ship
    python -m dibr_ros.model.train --average r1/model_best.pt r1/snap_a.pt r1/model_last.pt --out soup.pt

Run folder: ``train_state.pt`` (exact resume: model, optimizer, scheduler, RNG and sampler states of every
rank, step), ``model_last.pt`` / ``model_best.pt`` (model checkpoints, best by validation silhouette IoU),
``config.json``, ``log.jsonl`` (scalars), ``val_<step, 7 digits>.png`` (val inputs vs predictions rendered in the
input and another view), TensorBoard scalars under ``tb/`` when tensorboard is installed.
On CPU a run is deterministic given its seed (same thread count), and resuming reproduces the uninterrupted
loss curve bit for bit.
"""

from __future__ import annotations

import argparse
import copy
import datetime
import json
import math
import os
import platform
import sys
import time

import torch

from dibr_ros.model.checkpoint import CheckpointError, atomic_save, load_checkpoint, save_checkpoint
from dibr_ros.model.inputs import depth_dropout, network_input
from dibr_ros.model.losses import DEFAULT_WEIGHTS, DIBRLoss
from dibr_ros.model.network import DIBRNet, checkpoint_network_config, expand_input_channels, network_config
from dibr_ros.model.sampling import CropSampler, load_objects

__all__ = ["TRAIN_DEFAULTS", "Trainer", "average_checkpoints", "export_checkpoint", "load_config", "main",
           "make_config", "run"]

STATE_FORMAT = "dibr_ros.train/1"

TRAIN_DEFAULTS: dict = {
    "run_dir": "runs/dibr",
    "seed": 0,
    "steps": 20000,
    "batch_size": 16,  # objects per step and process; each brings `views` images
    "views": 2,
    "lr": 3e-4,
    "residual_lr_mult": 10.0,  # learning-rate factor of the residual scale (see Trainer)
    "lr_step": 400000,  # StepLR period (DIB-R re-implementation: x0.5 every 400k)
    "lr_gamma": 0.5,
    "grad_clip": 5.0,
    "loss_weights": dict(DEFAULT_WEIGHTS),
    "multiview": True,
    "train_split": "train",
    "train_objects": None,  # None = all objects of the split, else that many spread over it
    "train_names": None,  # explicit object names (overrides train_split/train_objects)
    "val_split": "val",
    "val_objects": 16,
    "val_seed": 1234,
    "distance": [2.5, 8.0],  # camera distance range in bounding-sphere radii
    "jitter": True,
    "val_every": 500,
    "ckpt_every": 200,
    "log_every": 10,
    "max_minutes": None,  # stop (with a checkpoint) after this much training time, resumed runs included
    "num_threads": None,  # torch.set_num_threads on CPU
    "device": "auto",
    "amp": True,  # bf16 autocast of the network on CUDA
    "backend": "auto",
    "progress": True,
    "network": {},
    "init_from": None,  # model checkpoint to start from (fine-tuning; fresh optimizer), ignored when resuming
    # RGB-D networks: per-image probabilities of no depth / holes / a missing region (inputs.depth_dropout)
    "depth_dropout": {"p_none": 0.3, "p_holes": 0.35, "p_region": 0.2},
    "depth_noise": 0.02,  # max std of the normalised depth's noise (~1 mm on a 5 cm object at 0.6 m)
    "surface_points": 512,  # true-surface samples per object for the chamfer loss (when its weight is > 0)
}


def _merge(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def make_config(overrides: dict | None = None) -> dict:
    """TRAIN_DEFAULTS merged with ``overrides``; unknown keys are an error; network keys completed."""
    over = overrides or {}
    unknown = set(over) - set(TRAIN_DEFAULTS)
    if unknown:
        raise ValueError(f"unknown training config keys: {sorted(unknown)}")
    cfg = _merge(TRAIN_DEFAULTS, over)
    bad = set(cfg["network"]) - set(network_config())
    if bad:
        raise ValueError(f"unknown network config keys: {sorted(bad)}")
    cfg["network"] = network_config(cfg["network"])
    if int(cfg["batch_size"]) < 1 or int(cfg["views"]) < 1 or int(cfg["steps"]) < 0:
        raise ValueError("batch_size and views must be >= 1, steps >= 0")
    return cfg


def load_config(path: str) -> dict:
    """Read a YAML or JSON config file -> dict."""
    with open(path) as f:
        text = f.read()
    if path.endswith(".json"):
        data = json.loads(text)
    else:
        import yaml

        data = yaml.safe_load(text) or {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: config must be a mapping")
    return data


def _machine() -> str:
    if torch.cuda.is_available():
        return f"{torch.cuda.get_device_name(0)} (CUDA {torch.version.cuda}), torch {torch.__version__}"
    cpu = platform.processor() or platform.machine()
    return f"CPU {cpu}, {torch.get_num_threads()} thread(s), torch {torch.__version__}"


def _data_version() -> dict:
    from dibr_ros.data.library import LIBRARY_VERSION
    from dibr_ros.data.views import RENDER_VERSION

    return {"library_version": LIBRARY_VERSION, "render_version": RENDER_VERSION}


class Trainer:
    """One training process (rank ``rank`` of ``world``; DDP when world > 1 and torch.distributed is initialised).

    ``train()`` runs until ``config["steps"]`` (or ``max_minutes``) and returns the list of per-step total
    losses it computed, in order (the loss curve; with DDP this rank's).
    """

    def __init__(self, config: dict, rank: int = 0, world: int = 1, resume: bool = False):
        self.cfg = make_config(config)
        self.rank, self.world = rank, world
        cfg = self.cfg
        if cfg["device"] == "auto":
            local = int(os.environ.get("LOCAL_RANK", rank))
            cuda = torch.cuda.is_available()
            self.device = torch.device(f"cuda:{local % torch.cuda.device_count()}" if cuda else "cpu")
        else:
            self.device = torch.device(cfg["device"])
        if self.device.type == "cuda":
            torch.cuda.set_device(self.device)
        elif cfg["num_threads"]:
            torch.set_num_threads(int(cfg["num_threads"]))
        torch.manual_seed(int(cfg["seed"]))
        self.net = DIBRNet(cfg["network"]).to(self.device)
        self.parent = {}
        if cfg["init_from"]:
            pcfg, pstate, pmeta = load_checkpoint(cfg["init_from"])
            pcfg = checkpoint_network_config(pcfg)
            if {**pcfg, "in_channels": 0} != {**self.net.config, "in_channels": 0}:
                raise ValueError(f"init_from {cfg['init_from']}: its network config differs from this run's")
            # an RGB-only parent warm-starts an RGB-D run (its new input channels start at zero)
            self.net.load_state_dict(expand_input_channels({k: v.float() for k, v in pstate.items()},
                                                           self.net.in_channels))
            self.parent = {"init_from": os.path.abspath(cfg["init_from"]),
                           "iterations": int(pmeta.get("iterations", 0)), "wall_time_s": pmeta.get("wall_time_s", 0.0)}
        self.model = self.net
        if world > 1:
            from torch.nn.parallel import DistributedDataParallel

            self.model = DistributedDataParallel(
                self.net, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        self.loss_fn = DIBRLoss(self.net.faces.cpu(), self.net.template.shape[0], cfg["loss_weights"],
                                multiview=cfg["multiview"], backend=cfg["backend"]).to(self.device)
        self._needs_depth = self.net.uses_depth or self.loss_fn.weights["depth"] > 0
        self._surface_points = int(cfg["surface_points"]) if self.loss_fn.weights["chamfer"] > 0 else 0
        # The residual scale starts at 0 and Adam moves a scalar by ~lr per step: give it its own rate, or
        # the offsets stay tiny for thousands of steps (the re-implementation trained 470k steps at 1e-4).
        rest = [p for n, p in self.net.named_parameters() if n != "residual_scale"]
        lr = float(cfg["lr"])
        self.opt = torch.optim.Adam(
            [{"params": rest}, {"params": [self.net.residual_scale], "lr": lr * float(cfg["residual_lr_mult"])}], lr=lr)
        self.sched = torch.optim.lr_scheduler.StepLR(self.opt, int(cfg["lr_step"]), float(cfg["lr_gamma"]))
        size = self.net.input_size
        train = load_objects(cfg["train_split"], cfg["train_objects"], cfg["train_names"])
        self.sampler = CropSampler(train, cfg["views"], size, self.net.config["crop_scale"],
                                   seed=int(cfg["seed"]) * 1000 + rank, distance=tuple(cfg["distance"]),
                                   jitter=cfg["jitter"], backend=cfg["backend"], device=self.device,
                                   with_depth=self._needs_depth, surface_points=self._surface_points)
        self.num_train = len(self.sampler)
        self.step = 0
        self.elapsed = 0.0
        self.best = {"score": -1.0, "step": -1, "metrics": {}}
        self.run_dir = cfg["run_dir"]
        self.amp = bool(cfg["amp"]) and self.device.type == "cuda"
        self._val_batch = None
        self._val_step = -1
        if rank == 0:
            os.makedirs(self.run_dir, exist_ok=True)
            with open(os.path.join(self.run_dir, "config.json"), "w") as f:
                json.dump(cfg, f, indent=1)
        if resume:
            self._load_state()

    # --- state -------------------------------------------------------------------------------------
    @property
    def state_path(self) -> str:
        return os.path.join(self.run_dir, "train_state.pt")

    def _gather(self, obj):
        if self.world == 1:
            return [obj]
        import torch.distributed as dist

        out = [None] * self.world
        dist.all_gather_object(out, obj)
        return out

    def _save_state(self) -> None:
        data = self._gather(self.sampler.state_dict())
        if self.rank != 0:
            return
        state = {
            "format": STATE_FORMAT, "step": self.step, "elapsed": self.elapsed, "world": self.world,
            "config": self.cfg, "model": {k: v.detach().cpu() for k, v in self.net.state_dict().items()},
            "optimizer": self.opt.state_dict(), "scheduler": self.sched.state_dict(),
            "rng_cpu": torch.get_rng_state(),
            "rng_cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "data": data, "best": self.best,
        }
        atomic_save(state, self.state_path)
        save_checkpoint(os.path.join(self.run_dir, "model_last.pt"), self.net, self.net.config,
                        self._meta(self.best["metrics"] if self.best["step"] == self.step else {}))

    def _load_state(self) -> None:
        if not os.path.isfile(self.state_path):
            return
        try:
            st = torch.load(self.state_path, map_location="cpu", weights_only=True)
        except Exception as e:  # any unreadable state file: say which and why
            raise CheckpointError(f"cannot load training state {self.state_path}: {e}") from e
        if st.get("format") != STATE_FORMAT:
            raise CheckpointError(f"{self.state_path} is not a {STATE_FORMAT} training state")
        if st["world"] != self.world:
            raise ValueError(f"resume needs the same number of processes ({st['world']}), got {self.world}")
        self.net.load_state_dict(st["model"])
        self.opt.load_state_dict(st["optimizer"])
        self.sched.load_state_dict(st["scheduler"])
        torch.set_rng_state(st["rng_cpu"])
        if st["rng_cuda"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(st["rng_cuda"])
        self.sampler.load_state_dict(st["data"][self.rank])
        self.step, self.elapsed, self.best = int(st["step"]), float(st["elapsed"]), st["best"]

    def _meta(self, metrics: dict) -> dict:
        cfg = self.cfg
        return {
            "data": {**_data_version(), "train_split": cfg["train_split"], "train_objects": self.num_train,
                     "val_split": cfg["val_split"], "val_objects": cfg["val_objects"], "views": cfg["views"],
                     "image_size": self.net.input_size, "distance": list(cfg["distance"])},
            "iterations": self.step + self.parent.get("iterations", 0), "run_iterations": self.step,
            "parent": self.parent, "batch_size": int(cfg["batch_size"]), "world_size": self.world,
            "samples_seen": self.step * int(cfg["batch_size"]) * self.world,
            "wall_time_s": round(self.elapsed, 1), "machine": _machine(),
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "metrics": dict(metrics), "train_config": cfg,
        }

    # --- validation --------------------------------------------------------------------------------
    def validate(self) -> dict:
        """Metrics on the fixed val views: hard silhouette IoU in the input / other view, colour L1 inside
        the target mask (input view), total loss. Writes ``val_<step>.png``."""
        cfg = self.cfg
        if self._val_batch is None:
            objs = load_objects(cfg["val_split"], cfg["val_objects"])
            s = CropSampler(objs, max(2, int(cfg["views"])), self.net.input_size, self.net.config["crop_scale"],
                            seed=int(cfg["val_seed"]), distance=tuple(cfg["distance"]), jitter=cfg["jitter"],
                            backend=cfg["backend"], device=self.device, with_depth=self._needs_depth,
                            surface_points=self._surface_points)
            with torch.no_grad():
                self._val_batch = s.sample(len(s), index=torch.arange(len(s)))
        b = self._val_batch
        self.net.eval()
        with torch.no_grad():
            out = self.loss_fn(self.net(self._input(b)), b)
            rgb_only = None
            if self.net.uses_depth:  # the same views without depth: the RGB-only camera case
                rgb_only = self.loss_fn(self.net(self._input(b, use_depth=False)), b)["renders"]["mask"]
        self.net.train()
        r, tgt = out["renders"], b["mask"]
        w = tgt.shape[1]
        pm = r["mask"]  # (B, W, W, H, H): mesh from view i rendered in view j
        tm = tgt.unsqueeze(1).expand_as(pm)
        iou = (pm * tm).flatten(3).sum(-1) / ((pm + tm - pm * tm).flatten(3).sum(-1)).clamp_min(1.0)
        eye_w = torch.eye(w, dtype=torch.bool, device=iou.device)
        rgb_t = b["rgb"]
        diag_rgb = r["rgb"].diagonal(dim1=1, dim2=2).permute(0, 4, 1, 2, 3)  # (B, W, H, H, 3)
        l1 = ((diag_rgb - rgb_t).abs() * tgt[..., None]).sum() / (3 * tgt.sum()).clamp_min(1.0)
        metrics = {
            "iou_input": float(iou[:, eye_w].mean()), "iou_novel": float(iou[:, ~eye_w].mean()),
            "color_l1_input": float(l1), "loss": float(out["loss"]),
        }
        if rgb_only is not None:
            union = (rgb_only + tm - rgb_only * tm).flatten(3).sum(-1)
            iou_r = (rgb_only * tm).flatten(3).sum(-1) / union.clamp_min(1.0)
            metrics["iou_novel_rgb"] = float(iou_r[:, ~eye_w].mean())
        if self.loss_fn.weights["depth"] > 0:  # mean |depth error| (object units) where both cover a pixel
            metrics["depth_l1"] = float(out["depth"])
        if self.loss_fn.weights["chamfer"] > 0:
            metrics["chamfer"] = float(out["chamfer"])
        self._write_val_image(b, r)
        return metrics

    def _write_val_image(self, b: dict, r: dict) -> None:
        try:
            import cv2
        except ImportError:
            return
        n = min(8, b["rgb"].shape[0])
        rows = []
        for i in range(n):  # input view 0 | prediction in view 0 | target view 1 | prediction in view 1
            tiles = [b["rgb"][i, 0], r["rgb"][i, 0, 0], b["rgb"][i, 1], r["rgb"][i, 0, 1]]
            rows.append(torch.cat(tiles, 1))
        img = (torch.cat(rows, 0).clamp(0, 1) * 255).round().byte().cpu().numpy()
        cv2.imwrite(os.path.join(self.run_dir, f"val_{self.step:07d}.png"), img[..., ::-1])

    # --- loop --------------------------------------------------------------------------------------
    def _input(self, batch: dict, use_depth: bool = True, dropout: bool = False) -> torch.Tensor:
        """Network input of a sampled batch (B*W images); training adds depth dropout and noise."""
        if not self.net.uses_depth:
            return network_input(batch["rgb"], batch["mask"], channels=4)
        depth = batch["depth"] if use_depth else None
        if depth is None or not dropout:
            return network_input(batch["rgb"], batch["mask"], depth, batch["K"][..., 0, 0], 6)
        s = depth.shape[-1]
        m = batch["mask"].reshape(-1, s, s) > 0.5
        g = self.sampler.generator
        valid = depth_dropout(m & (depth.reshape(-1, s, s) > 0), g, **self.cfg["depth_dropout"])
        x = network_input(batch["rgb"], batch["mask"], depth, batch["K"][..., 0, 0], 6, valid=valid)
        sigma = float(self.cfg["depth_noise"]) * torch.rand(x.shape[0], 1, 1, generator=g).to(x)
        x[:, 4] += sigma * torch.randn(x.shape[0], s, s, generator=g).to(x) * x[:, 5]
        return x

    def _step(self) -> dict:
        cfg = self.cfg
        batch = self.sampler.sample(int(cfg["batch_size"]))
        x = self._input(batch, dropout=True)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.amp):
            pred = self.model(x)
        pred = {k: v.float() for k, v in pred.items()}
        out = self.loss_fn(pred, batch)
        self.opt.zero_grad(set_to_none=True)
        out["loss"].backward()
        if cfg["grad_clip"]:
            torch.nn.utils.clip_grad_norm_(self.net.parameters(), float(cfg["grad_clip"]))
        self.opt.step()
        self.sched.step()
        self.step += 1
        return {k: float(v.detach()) for k, v in out.items() if k != "renders"}

    def _should_stop(self) -> bool:
        lim = self.cfg["max_minutes"]
        stop = torch.tensor([float(lim is not None and self.elapsed >= 60.0 * float(lim))])
        if self.world > 1:
            import torch.distributed as dist

            dist.broadcast(stop, 0)
        return bool(stop.item())

    def train(self) -> list[float]:
        cfg = self.cfg
        main = self.rank == 0
        writer = None
        if main:
            try:
                from torch.utils.tensorboard import SummaryWriter

                writer = SummaryWriter(os.path.join(self.run_dir, "tb"))
            except ImportError:
                writer = None
        from tqdm import tqdm

        bar = tqdm(total=int(cfg["steps"]), initial=self.step, disable=not (main and cfg["progress"]),
                   dynamic_ncols=True, mininterval=2.0)
        log = open(os.path.join(self.run_dir, "log.jsonl"), "a") if main else None
        curve: list[float] = []
        try:
            while self.step < int(cfg["steps"]) and not self._should_stop():
                t0 = time.perf_counter()
                terms = self._step()
                self.elapsed += time.perf_counter() - t0
                curve.append(terms["loss"])
                if not math.isfinite(terms["loss"]):
                    raise FloatingPointError(f"non-finite loss at step {self.step}: {terms}")
                bar.update(1)
                bar.set_postfix(loss=f"{terms['loss']:.4f}", iou=f"{terms['iou_input']:.3f}")
                if main and (self.step % int(cfg["log_every"]) == 0 or self.step == 1):
                    rec = {"step": self.step, "time_s": round(self.elapsed, 2), "lr": self.sched.get_last_lr()[0],
                           **{k: round(v, 6) for k, v in terms.items()}}
                    log.write(json.dumps(rec) + "\n")
                    log.flush()
                    if writer is not None:
                        for k, v in terms.items():
                            writer.add_scalar(f"train/{k}", v, self.step)
                if self.step % int(cfg["val_every"]) == 0 or self.step == int(cfg["steps"]):
                    self._validate_and_log(log, writer)
                if self.step % int(cfg["ckpt_every"]) == 0:
                    self._save_state()
            if self.step % int(cfg["ckpt_every"]) != 0 or not curve:
                if self._val_step != self.step:
                    self._validate_and_log(log, writer)
                self._save_state()
        finally:
            bar.close()
            if log is not None:
                log.close()
            if writer is not None:
                writer.close()
        return curve

    def _validate_and_log(self, log, writer) -> None:
        self._val_step = self.step
        if self.rank != 0:
            return
        m = self.validate()
        score = 0.5 * (m["iou_input"] + m["iou_novel"])
        if "iou_novel_rgb" in m:  # one network for every camera: RGB-only counts as much as RGB-D
            score = 0.5 * (score + m["iou_novel_rgb"])
        rec = {"step": self.step, "time_s": round(self.elapsed, 2), **{f"val_{k}": round(v, 6) for k, v in m.items()}}
        log.write(json.dumps(rec) + "\n")
        log.flush()
        if writer is not None:
            for k, v in m.items():
                writer.add_scalar(f"val/{k}", v, self.step)
        if score > self.best["score"]:
            self.best = {"score": score, "step": self.step, "metrics": m}
            save_checkpoint(os.path.join(self.run_dir, "model_best.pt"), self.net, self.net.config, self._meta(m))


def run(config: dict, resume: bool = False) -> list[float]:
    """Train in this process, joining a torch.distributed job when WORLD_SIZE > 1 (torchrun env)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    if world > 1:
        import torch.distributed as dist

        if not dist.is_initialized():
            dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
        try:
            return Trainer(config, rank, world, resume=resume).train()
        finally:
            dist.destroy_process_group()
    return Trainer(config, resume=resume).train()


def export_checkpoint(src: str, dst: str, half: bool = True, metrics: dict | None = None) -> dict:
    """Copy a model checkpoint to ``dst`` (fp16 tensors when ``half``) -> its meta. ``metrics``: benchmark
    figures to record in ``meta["metrics"]["benchmarks"]`` (the shipped model carries its own record)."""
    config, state, meta = load_checkpoint(src)
    if metrics:
        meta = {**meta, "metrics": {**meta.get("metrics", {}), "benchmarks": metrics}}
    save_checkpoint(dst, state, config, meta, half=half)
    return meta


def average_checkpoints(srcs: list[str], dst: str, half: bool = False) -> dict:
    """Write the uniform tensor-by-tensor mean of model checkpoints ``srcs`` to ``dst`` -> its meta.

    A "model soup" (Wortsman et al. 2022): checkpoints of one fine-tune, averaged, generalise better than
    each of them (the shipped 2026-12-07 22:08 weights, ``bench/RESULTS.md`` section 7). The checkpoints must
    share the network config and tensor names and shapes; the last one's config and meta are kept, with
    ``meta["parent"]`` naming the sources.
    """
    if len(srcs) < 2:
        raise ValueError("--average needs at least two checkpoints")
    loaded = [load_checkpoint(s) for s in srcs]
    config, ref, meta = loaded[-1]
    for src, (cfg, sd, _) in zip(srcs, loaded):
        if cfg != config:
            raise ValueError(f"{src}: network config differs from {srcs[-1]}'s; only one network's checkpoints "
                             "can be averaged")
        if sd.keys() != ref.keys() or any(sd[k].shape != ref[k].shape for k in ref):
            raise ValueError(f"{src}: tensor names or shapes differ from {srcs[-1]}'s")
    state = {k: (torch.stack([sd[k].double() for _, sd, _ in loaded]).mean(0).to(torch.float32)
                 if v.is_floating_point() else v) for k, v in ref.items()}
    meta = {**meta, "parent": "uniform average of " + ", ".join(os.path.basename(s) for s in srcs)}
    save_checkpoint(dst, state, config, meta, half=half)
    return meta


def _parse_value(text: str):
    try:
        import yaml
    except ImportError:  # the lent GPU machine has no pyyaml: JSON values, else the plain string
        try:
            return json.loads(text)
        except ValueError:
            return text
    return yaml.safe_load(text)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m dibr_ros.model.train", description=__doc__.split("\n")[0])
    ap.add_argument("--config", help="YAML or JSON file with training config keys (see TRAIN_DEFAULTS)")
    ap.add_argument("--run-dir")
    ap.add_argument("--steps", type=int)
    ap.add_argument("--batch-size", type=int)
    ap.add_argument("--views", type=int)
    ap.add_argument("--lr", type=float)
    ap.add_argument("--seed", type=int)
    ap.add_argument("--train-objects", type=int)
    ap.add_argument("--val-objects", type=int)
    ap.add_argument("--val-every", type=int)
    ap.add_argument("--ckpt-every", type=int)
    ap.add_argument("--max-minutes", type=float)
    ap.add_argument("--threads", type=int, dest="num_threads")
    ap.add_argument("--device")
    ap.add_argument("--backend")
    ap.add_argument("--no-progress", action="store_true")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="override a config key (dotted for nested, value parsed as YAML, or JSON without "
                         "pyyaml), repeatable")
    ap.add_argument("--resume", action="store_true", help="continue from RUN_DIR/train_state.pt if present")
    ap.add_argument("--export", nargs=2, metavar=("SRC", "DST"), help="write SRC model checkpoint as fp16 to DST")
    ap.add_argument("--metrics", help="with --export: JSON file of benchmark figures to record in the checkpoint")
    ap.add_argument("--average", nargs="+", metavar="SRC",
                    help="with --out: write the mean of these model checkpoints (a model soup, fp32) to --out")
    ap.add_argument("--out", help="destination of --average")
    a = ap.parse_args(argv)
    try:
        if a.export:
            metrics = None
            if a.metrics:
                with open(a.metrics) as f:
                    metrics = json.load(f)
            meta = export_checkpoint(*a.export, metrics=metrics)
            print(f"exported {a.export[0]} -> {a.export[1]} ({os.path.getsize(a.export[1]) / 1e6:.1f} MB, "
                  f"{meta.get('iterations')} iterations)")
            return 0
        if a.average:
            if not a.out:
                raise ValueError("--average needs --out DST")
            average_checkpoints(a.average, a.out)
            print(f"averaged {len(a.average)} checkpoints -> {a.out}")
            return 0
        over = load_config(a.config) if a.config else {}
        flags = {k: getattr(a, k) for k in ("run_dir", "steps", "batch_size", "views", "lr", "seed", "train_objects",
                                            "val_objects", "val_every", "ckpt_every", "max_minutes", "num_threads",
                                            "device", "backend")}
        over.update({k: v for k, v in flags.items() if v is not None})
        if a.no_progress:
            over["progress"] = False
        for item in a.set:
            key, sep, val = item.partition("=")
            if not sep:
                raise ValueError(f"--set expects KEY=VALUE, got {item!r}")
            *path, last = key.split(".")
            d = over
            for p in path:
                d = d.setdefault(p, {})
            d[last] = _parse_value(val)
        run(make_config(over), resume=a.resume)
    except (ValueError, OSError, KeyError) as e:
        print(f"dibr_ros.model.train: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
