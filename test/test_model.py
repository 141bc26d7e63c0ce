"""dibr_ros.model: network, predictor contract, checkpoint safety, training loop (CPU)."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from dibr_ros.model import CheckpointError, Predictor, load_checkpoint, save_checkpoint
from dibr_ros.model.losses import DIBRLoss, soft_iou, view_to_world
from dibr_ros.model.network import DIBRNet, normalize_vertices
from dibr_ros.model.predictor import default_weights_path, resolve_device
from dibr_ros.model.rendering import project_pixels, render_vertex_colors
from dibr_ros.model.sampling import CropSampler, load_objects
from dibr_ros.model.train import Trainer, make_config
from dibr_ros.render.mesh import ico_sphere

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = {"enc_channels": [8, 16, 16, 32], "latent_dim": 32, "fc_dim": 64, "dec_hidden": 32, "dec_blocks": 2,
        "template_level": 2, "input_size": 32}
PRIMS = ["prim_box_000", "prim_ellipsoid_000", "prim_cylinder_000", "prim_cone_000"]


@pytest.fixture
def one_thread():
    """Single-threaded torch for bit-exact comparisons (restored afterwards)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _tiny_train_config(run_dir, **kw):
    cfg = {"run_dir": str(run_dir), "network": dict(TINY), "train_names": PRIMS[:2], "val_objects": 1,
           "batch_size": 2, "views": 2, "lr": 2e-3, "steps": 8, "val_every": 1000, "ckpt_every": 1000,
           "log_every": 1, "progress": False, "num_threads": 1, "seed": 3}
    cfg.update(kw)
    return cfg


# --- network ---------------------------------------------------------------------------------------

def test_network_outputs_and_template_at_init():
    net = DIBRNet()
    tv, tf = ico_sphere(3)
    assert net.template.shape == (642, 3) and net.faces.shape == (1280, 3) and net.faces.dtype == torch.int64
    assert torch.equal(net.faces, tf)
    assert net.in_channels == 6  # RGB-D by default
    x = torch.rand(3, 6, 64, 64)
    out = net(x)
    assert out["vertices"].shape == (3, 642, 3) and out["vertices"].dtype == torch.float32
    assert out["colors"].shape == (3, 642, 3) and out["sh"].shape == (3, 9)
    out = {k: v.detach() for k, v in out.items()}
    assert float(out["colors"].min()) >= 0.0 and float(out["colors"].max()) <= 1.0
    # residual scale 0 at init: exactly the (unit, centred) template sphere whatever the image
    assert float(net.residual_scale.detach()) == 0.0
    torch.testing.assert_close(out["vertices"], tv.expand(3, -1, -1), atol=1e-6, rtol=0)
    n_params = sum(p.numel() for p in net.parameters())
    assert n_params * 2 < 30e6  # fp16 shipping size bound


def test_network_is_batch_independent_and_normalised():
    torch.manual_seed(0)
    net = DIBRNet(TINY)
    with torch.no_grad():
        net.residual_scale.fill_(0.5)  # deformed meshes
        x = torch.rand(4, 6, 32, 32)
        full = net(x)
        single = [net(x[i:i + 1]) for i in range(4)]
    for i in range(4):
        torch.testing.assert_close(full["vertices"][i], single[i]["vertices"][0], atol=1e-5, rtol=1e-5)
    v = full["vertices"]
    centre = 0.5 * (v.amax(1) + v.amin(1))
    torch.testing.assert_close(centre, torch.zeros_like(centre), atol=1e-5, rtol=0)
    torch.testing.assert_close(v.norm(dim=-1).amax(1), torch.ones(4), atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="image must be"):
        net(torch.rand(1, 3, 32, 32))


def test_normalize_vertices_analytic():
    v = torch.tensor([[[1.0, 1.0, 1.0], [3.0, 1.0, 1.0], [1.0, 2.0, 1.0]]])
    out = normalize_vertices(v)
    # bbox centre (2, 1.5, 1); farthest vertex distance sqrt(1 + 0.25)
    expect = (v - torch.tensor([2.0, 1.5, 1.0])) / (1.25 ** 0.5)
    torch.testing.assert_close(out, expect)


# --- frames ----------------------------------------------------------------------------------------

def test_view_frame_axes_and_ground_truth_round_trip():
    objs = load_objects("train", names=[PRIMS[0]])
    s = CropSampler(objs, views=2, size=48, seed=5, jitter=False)
    b = s.sample(1)
    R, eye, K = b["R"][0], b["eye"][0], b["K"][0]
    # view frame: +x right (larger u), +y down (larger v), +z forward (deeper)
    pts = torch.tensor([[0.0, 0, 0], [0.3, 0, 0], [0, 0.3, 0], [0, 0, 0.3]])
    world = view_to_world(pts.expand(2, -1, -1), R)
    uv, cam = project_pixels(world, R, eye)
    px = uv * K[:, None, [0, 1], [0, 1]] + K[:, None, [0, 1], [2, 2]]
    for w in range(2):
        assert px[w, 1, 0] > px[w, 0, 0] and abs(float(px[w, 1, 1] - px[w, 0, 1])) < 1e-3 * float(K[w, 0, 0])
        assert px[w, 2, 1] > px[w, 0, 1]
        assert -cam[w, 3, 2] > -cam[w, 0, 2] + 0.29
    # ground truth in the view frame of view 0, rendered through the loss path, reproduces both targets
    n = int(objs["num_vertices"][0])
    nf = int(objs["num_faces"][0])
    gt = torch.as_tensor(objs["vertices"][0, :n]).float()
    faces = torch.as_tensor(objs["faces"][0, :nf]).long()
    gv = gt @ b["view_rot"][0, 0].T
    world = view_to_world(gv, R[0]).expand(2, -1, -1)  # the view-0 frame mesh, placed in the world ...
    out = render_vertex_colors(world, faces, torch.ones(2, n, 3), R, eye, K, 48)  # ... seen by both cameras
    iou = soft_iou(out["mask"], b["mask"][0])
    assert float(iou.min()) > 0.99


def test_loss_terms_and_perfect_silhouette():
    objs = load_objects("train", names=[PRIMS[1]])
    s = CropSampler(objs, views=2, size=32, seed=1, jitter=False)
    b = s.sample(1)
    tv, tf = ico_sphere(2)
    loss = DIBRLoss(tf, tv.shape[0], {"color": 0.0, "laplacian": 1.0, "flatten": 1.0})
    pred = {"vertices": tv.expand(2, -1, -1), "offsets": torch.zeros(2, tv.shape[0], 3),
            "colors": torch.full((2, tv.shape[0], 3), 0.5), "sh": torch.zeros(2, 9)}
    out = loss(pred, b)
    assert float(out["laplacian"]) == 0.0  # zero offsets
    assert 0.0 < float(out["flatten"]) < 1.0  # a sphere is not flat, but nearly so between neighbours
    assert 0.0 < float(out["iou"]) < 1.0
    assert out["renders"]["rgb"].shape == (1, 2, 2, 32, 32, 3)
    with pytest.raises(ValueError, match="unknown loss weight"):
        DIBRLoss(tf, tv.shape[0], {"colour": 1.0})


def test_depth_targets_and_depth_loss():
    """The sampler's depth is the rendered distance along the optical axis; the depth term is 0 for the true
    mesh and equals a shift of it along the input view's optical axis."""
    objs = load_objects("train", names=[PRIMS[0]])
    b = CropSampler(objs, views=2, size=48, seed=5, jitter=False).sample(1)
    m = b["mask"][0] > 0
    d = b["depth"][0]
    assert bool((d[~m] == 0).all())
    # A box of half-diagonal <= 1 (object units) around the origin, seen from |eye| away.
    dist = b["eye"][0].norm(dim=-1)
    for w in range(2):
        assert float(d[w][m[w]].min()) > float(dist[w]) - 1.0 and float(d[w][m[w]].max()) < float(dist[w]) + 1.0
    n, nf = int(objs["num_vertices"][0]), int(objs["num_faces"][0])
    gv = torch.as_tensor(objs["vertices"][0, :n]).float() @ b["view_rot"][0, 0].T
    faces = torch.as_tensor(objs["faces"][0, :nf]).long()
    shift = torch.zeros(1, requires_grad=True)
    loss = DIBRLoss(faces, n, {"color": 0.0, "depth": 1.0}, multiview=False)
    for delta, expect in ((0.0, 0.0), (0.2, 0.2)):
        shift.data.fill_(delta)
        v = gv + torch.stack([torch.zeros(1), torch.zeros(1), shift]).T  # +z = away from view 0's camera
        pred = {"vertices": torch.stack([v, gv]), "offsets": torch.zeros(2, n, 3), "colors": torch.ones(2, n, 3),
                "sh": torch.zeros(2, 9)}
        b1 = dict(b, depth=b["depth"][:, :1].expand(1, 2, 48, 48).clone())  # both renders compared in view 0
        b1.update(R=b["R"][:, :1].expand(1, 2, 3, 3), eye=b["eye"][:, :1].expand(1, 2, 3),
                  K=b["K"][:, :1].expand(1, 2, 3, 3), mask=b["mask"][:, :1].expand(1, 2, 48, 48),
                  rgb=b["rgb"][:, :1].expand(1, 2, 48, 48, 3))
        out = loss(pred, b1)
        # Half of the two renders is shifted: the mean over both is delta / 2 (up to edge pixels).
        assert float(out["depth"]) == pytest.approx(expect / 2, abs=0.01)
    out["loss"].backward()
    assert float(shift.grad) > 0.2  # moving the shifted mesh further away makes it worse
    assert float(DIBRLoss(faces, n)(pred, b1)["depth"]) == 0.0  # off by default
    with pytest.raises(ValueError, match="depth"):
        loss(pred, {k: v for k, v in b1.items() if k != "depth"})


# --- predictor -------------------------------------------------------------------------------------

def _blob(h, w, y0, y1, x0, x1, color=(200, 30, 60)):
    rgb = np.zeros((h, w, 3), np.uint8)
    mask = np.zeros((h, w), bool)
    yy, xx = np.mgrid[:h, :w]
    mask[(((yy - (y0 + y1) / 2) / ((y1 - y0) / 2)) ** 2 + ((xx - (x0 + x1) / 2) / ((x1 - x0) / 2)) ** 2) <= 1] = True
    rgb[mask] = color
    rgb[~mask] = 90  # background must not matter
    return rgb, mask


def test_predictor_contract_any_crop_sizes():
    p = Predictor.from_config(TINY, seed=0)
    with torch.no_grad():
        p.network.residual_scale.fill_(0.3)
    assert p.device == "cpu" and p.input_size == 32
    crops = [_blob(37, 51, 5, 30, 4, 47), _blob(120, 80, 10, 110, 20, 60), _blob(9, 9, 2, 7, 1, 8)]
    meshes = p.predict([c[0] for c in crops], [c[1] for c in crops])
    v = meshes.vertices
    assert v.shape == (3, 162, 3) and v.dtype == torch.float32 and len(meshes) == 3
    assert meshes.faces.shape == (320, 3) and meshes.faces.dtype == torch.int64
    assert meshes.colors.shape == (3, 162, 3) and meshes.colors.dtype == torch.float32
    assert float(meshes.colors.min()) >= 0 and float(meshes.colors.max()) <= 1
    torch.testing.assert_close(v.norm(dim=-1).amax(1), torch.ones(3), atol=1e-5, rtol=0)
    # batched numpy input == list input == torch input
    rgb, mask = _blob(40, 40, 3, 35, 8, 30)
    a = p.predict(np.stack([rgb, rgb]), np.stack([mask, mask]))
    b = p.predict(torch.from_numpy(rgb)[None], torch.from_numpy(mask)[None])
    torch.testing.assert_close(a.vertices[1], b.vertices[0])


def test_predictor_framing_depends_only_on_the_masked_object():
    p = Predictor.from_config(TINY, seed=1)
    rgb, mask = _blob(40, 30, 4, 36, 3, 27)
    big_rgb = np.full((97, 71, 3), 255, np.uint8)
    big_mask = np.zeros((97, 71), bool)
    big_rgb[50:90, 20:50], big_mask[50:90, 20:50] = rgb, mask  # same object, other crop, other background
    x1, x2 = p.preprocess([rgb], [mask]), p.preprocess([big_rgb], [big_mask])
    torch.testing.assert_close(x1, x2)
    assert x1.shape == (1, 6, 32, 32)
    m = x1[0, 3]
    assert set(torch.unique(m).tolist()) <= {0.0, 1.0}
    assert float(x1[0, :3][:, m == 0].abs().max()) == 0.0  # background zeroed
    ys, xs = torch.nonzero(m, as_tuple=True)
    # longer side (height 32 px) fills 1/crop_scale of the input
    assert abs((int(ys.max()) - int(ys.min()) + 1) - 32 / p.crop_scale) <= 2


def test_predictor_bad_inputs_and_devices():
    p = Predictor.from_config(TINY)
    rgb, mask = _blob(20, 20, 2, 18, 2, 18)
    with pytest.raises(ValueError, match="empty"):
        p.predict(rgb[None], np.zeros((1, 20, 20), bool))
    with pytest.raises(ValueError, match="do not match"):
        p.predict(rgb[None], mask[None, :10])
    with pytest.raises(ValueError, match="batched"):
        p.predict(rgb, mask)
    with pytest.raises(TypeError):
        p.predict("image", mask[None])
    with pytest.raises(ValueError):
        p.predict([rgb, rgb], [mask])
    assert str(resolve_device("auto")) == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ValueError):
        resolve_device("tpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA message")
def test_cuda_without_cuda_is_a_clear_error():
    with pytest.raises(ValueError, match="CUDA is not available"):
        Predictor.from_config(TINY, device="cuda")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_predictor_cuda_matches_cpu():
    cpu = Predictor.from_config(TINY, seed=2)
    gpu = Predictor(cpu.network.__class__(TINY), torch.device("cuda"))
    gpu.network.load_state_dict(cpu.network.state_dict())
    rgb, mask = _blob(50, 40, 5, 45, 3, 37)
    a, b = cpu.predict(rgb[None], mask[None]), gpu.predict(rgb[None], mask[None])
    assert b.vertices.device.type == "cuda"
    torch.testing.assert_close(a.vertices, b.vertices.cpu(), atol=1e-4, rtol=1e-4)


# --- checkpoints -----------------------------------------------------------------------------------

def test_checkpoint_round_trip_fp32_and_fp16(tmp_path):
    p = Predictor.from_config(TINY, seed=4)
    with torch.no_grad():
        p.network.residual_scale.fill_(0.2)
    meta = {"iterations": 7, "metrics": {"iou": 0.5}, "note": None, "list": [1, 2.0, "x"]}
    path = tmp_path / "m.pt"
    save_checkpoint(str(path), p.network, p.network.config, meta)
    config, state, meta2 = load_checkpoint(str(path))
    assert meta2 == meta and config == p.network.config
    q = Predictor.load(str(path), device="cpu")
    rgb, mask = _blob(30, 30, 2, 28, 5, 25)
    torch.testing.assert_close(q.predict(rgb[None], mask[None]).vertices, p.predict(rgb[None], mask[None]).vertices,
                               atol=0, rtol=0)
    half = tmp_path / "h.pt"
    save_checkpoint(str(half), p.network, p.network.config, meta, half=True)
    _, hstate, _ = load_checkpoint(str(half))
    assert all(v.dtype == torch.float16 for v in hstate.values() if v.is_floating_point())
    assert os.path.getsize(half) < 0.6 * os.path.getsize(path)
    h = Predictor.load(str(half), device="cpu")
    torch.testing.assert_close(h.predict(rgb[None], mask[None]).vertices, p.predict(rgb[None], mask[None]).vertices,
                               atol=2e-2, rtol=0)


def test_average_checkpoints_is_the_tensor_mean(tmp_path):
    from dibr_ros.model.train import main

    paths = []
    for seed in (1, 2, 3):
        net = Predictor.from_config(TINY, seed=seed).network
        paths.append(str(tmp_path / f"s{seed}.pt"))
        save_checkpoint(paths[-1], net, net.config, {"iterations": seed})
    out = tmp_path / "soup.pt"
    assert main(["--average", *paths, "--out", str(out)]) == 0
    config, soup, meta = load_checkpoint(str(out))
    states = [load_checkpoint(p)[1] for p in paths]
    assert config == load_checkpoint(paths[-1])[0] and meta["iterations"] == 3 and "s1.pt" in meta["parent"]
    for k, v in soup.items():
        expect = (states[0][k].double() + states[1][k].double() + states[2][k].double()) / 3
        torch.testing.assert_close(v.double(), expect, atol=1e-6, rtol=0)
    assert any((states[0][k] != states[1][k]).any() for k in soup)  # the sources really differ
    Predictor.load(str(out), device="cpu")  # the soup is a loadable model
    narrower = Predictor.from_config({**TINY, "latent_dim": 16}, seed=0).network
    save_checkpoint(str(tmp_path / "w.pt"), narrower, narrower.config, {})
    assert main(["--average", paths[0], str(tmp_path / "w.pt"), "--out", str(tmp_path / "x.pt")]) == 2
    assert main(["--average", paths[0], "--out", str(tmp_path / "x.pt")]) == 2  # one checkpoint is no average
    assert main(["--average", *paths]) == 2  # no --out
    assert not (tmp_path / "x.pt").exists()


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_checkpoint_refusals(tmp_path):
    p = Predictor.from_config(TINY, seed=0)
    good = tmp_path / "good.pt"
    save_checkpoint(str(good), p.network, p.network.config, {})
    data = good.read_bytes()
    with pytest.raises(CheckpointError, match="not found"):
        Predictor.load(str(tmp_path / "missing.pt"))
    trunc = tmp_path / "trunc.pt"
    trunc.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError):
        Predictor.load(str(trunc))
    # altered tensor values with the rest of the file intact: caught by the digest
    obj = torch.load(str(good), weights_only=True)
    name = next(iter(obj["state_dict"]))
    obj["state_dict"][name] = obj["state_dict"][name] + 1.0
    tampered = tmp_path / "tampered.pt"
    torch.save(obj, str(tampered))
    with pytest.raises(CheckpointError, match="digest"):
        load_checkpoint(str(tampered))
    # flipped bytes in the middle of the archive
    flipped = bytearray(data)
    mid = len(flipped) // 2
    flipped[mid:mid + 64] = bytes(255 - c for c in flipped[mid:mid + 64])
    (tmp_path / "flipped.pt").write_bytes(bytes(flipped))
    with pytest.raises(CheckpointError):
        load_checkpoint(str(tmp_path / "flipped.pt"))
    # a pickled arbitrary object must never run
    marker = tmp_path / "pwned"
    bomb = tmp_path / "bomb.pt"
    torch.save({"format": "dibr_ros.model/1", "config": {}, "state_dict": {}, "meta": _Evil(str(marker))}, str(bomb))
    with pytest.raises(CheckpointError):
        Predictor.load(str(bomb))
    import pickle

    raw = tmp_path / "raw.pkl"
    raw.write_bytes(pickle.dumps(_Evil(str(marker))))
    with pytest.raises(CheckpointError):
        load_checkpoint(str(raw))
    assert not marker.exists()
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(3)}, str(foreign))
    with pytest.raises(CheckpointError, match="not a dibr_ros checkpoint: no 'dibr_ros.model/1' format tag"):
        load_checkpoint(str(foreign))
    # what is wrong with the path, in one line
    with pytest.raises(CheckpointError, match="is a directory"):
        Predictor.load(str(tmp_path))
    noise = tmp_path / "noise.pt"
    noise.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(CheckpointError, match=r"not a dibr_ros checkpoint: not a zip archive") as info:
        load_checkpoint(str(noise))
    assert "\n" not in str(info.value) and "weights_only" not in str(info.value)
    with pytest.raises(CheckpointError, match="not a dibr_ros checkpoint: it holds Python objects"):
        load_checkpoint(str(bomb))
    (tmp_path / "empty.pt").write_bytes(b"")
    with pytest.raises(CheckpointError, match="empty file"):
        load_checkpoint(str(tmp_path / "empty.pt"))
    assert issubclass(CheckpointError, ValueError)


# --- training --------------------------------------------------------------------------------------

def test_training_loss_goes_down(tmp_path, one_thread):
    cfg = _tiny_train_config(tmp_path / "run", steps=40, train_names=[PRIMS[1]], jitter=False, lr=3e-3,
                             distance=[3.0, 3.0])
    curve = Trainer(cfg).train()
    assert len(curve) == 40
    first, last = np.mean(curve[:5]), np.mean(curve[-5:])
    assert last < 0.8 * first, (first, last)
    log = [json.loads(line) for line in open(tmp_path / "run" / "log.jsonl")]
    assert any("val_iou_input" in r for r in log)
    assert (tmp_path / "run" / "model_best.pt").exists()
    assert any(f.startswith("val_") and f.endswith(".png") for f in os.listdir(tmp_path / "run"))


def test_resume_reproduces_loss_curve_bit_for_bit(tmp_path, one_thread):
    straight = Trainer(_tiny_train_config(tmp_path / "a", steps=8)).train()
    first = Trainer(_tiny_train_config(tmp_path / "b", steps=4)).train()
    second = Trainer(_tiny_train_config(tmp_path / "b", steps=8), resume=True).train()
    assert len(straight) == 8 and len(first) == 4 and len(second) == 4
    assert straight == first + second  # exact float equality
    sa = torch.load(tmp_path / "a" / "train_state.pt", weights_only=True)
    sb = torch.load(tmp_path / "b" / "train_state.pt", weights_only=True)
    assert sa["step"] == sb["step"] == 8
    for k in sa["model"]:
        assert torch.equal(sa["model"][k], sb["model"][k]), k


def test_config_validation(tmp_path):
    with pytest.raises(ValueError, match="unknown training config"):
        make_config({"bach_size": 3})
    with pytest.raises(ValueError, match="unknown network config"):
        make_config({"network": {"hidden": 3}})
    from dibr_ros.model.train import main

    assert main(["--run-dir", str(tmp_path), "--set", "nokey"]) == 2


def test_ddp_two_gloo_processes(tmp_path):
    """Two gloo ranks started the way torchrun starts them (env://), without the launcher process."""
    import socket

    run = tmp_path / "ddp"
    cfg = _tiny_train_config(run, steps=3)
    cfg_path = tmp_path / "cfg.json"
    cfg_path.write_text(json.dumps(cfg))
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""), OMP_NUM_THREADS="1",
               MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE="2")
    procs = [subprocess.Popen([sys.executable, "-m", "dibr_ros.model.train", "--config", str(cfg_path)], cwd=REPO,
                              env=dict(env, RANK=str(r), LOCAL_RANK=str(r)), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for r in range(2)]
    outs = [p.communicate(timeout=240) for p in procs]
    for p, (_, err) in zip(procs, outs):
        assert p.returncode == 0, err[-3000:]
    st = torch.load(run / "train_state.pt", weights_only=True)
    assert st["world"] == 2 and st["step"] == 3 and len(st["data"]) == 2
    assert not torch.equal(st["data"][0]["generator"], st["data"][1]["generator"])  # ranks see different data
    init = DIBRNet(cfg["network"]).state_dict()
    assert any(not torch.equal(init[k], st["model"][k]) for k in init if k in st["model"])
    Predictor.load(str(run / "model_last.pt"), device="cpu")


# --- the shipped weights -----------------------------------------------------------------------------

def _input_view_iou(p: Predictor, name: str, seed: int) -> float:
    objs = load_objects("train", names=[name])
    b = CropSampler(objs, views=1, size=p.input_size, crop_scale=p.crop_scale, seed=seed).sample(1)
    rgb = (b["rgb"][0] * 255).round().byte().numpy()
    mask = b["mask"][0].numpy() > 0
    m = p.predict(rgb, mask)
    world = view_to_world(m.vertices, b["R"][0])
    out = render_vertex_colors(world, m.faces, m.colors, b["R"][0], b["eye"][0], b["K"][0], p.input_size)
    return float(soft_iou(out["mask"], b["mask"][0]).mean())


def test_shipped_weights_explain_the_input_silhouette():
    assert os.path.getsize(default_weights_path()) < 30e6
    p = Predictor.load()
    assert p.meta["iterations"] > 0 and "metrics" in p.meta
    _, tf = ico_sphere(3)
    assert torch.equal(p.faces.cpu(), tf)
    sphere = Predictor.from_config(p.network.config, seed=0)  # residual scale 0: the template sphere
    for name, seed in (("prim_box_001", 0), ("prim_capsule_002", 0), ("prim_superquadric_003", 1)):
        trained, base = _input_view_iou(p, name, seed), _input_view_iou(sphere, name, seed)
        # The template sphere alone overlaps these framed silhouettes at IoU ~0.6; the shipped CPU-trained
        # model measured 0.85 / 0.87 / 0.94. A model that explains what it saw must beat the sphere clearly;
        # 0.75 leaves room for retrained weights without accepting a sphere-like prediction.
        assert trained > 0.75 and trained > base + 0.1, (name, trained, base)
