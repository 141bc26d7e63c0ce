"""DIB-R rasterizer: Kaolin conformance, gradcheck, analytic cases, errors and fallback (reference + cpu)."""

import math
import os

import numpy as np
import pytest
import torch

from dibr_ros.render import _ext, dibr_rasterize, rasterize_reference

# Kaolin's own outputs (test/data/conformance/README.md); DIBR_CONFORMANCE overrides the location.
CONFORMANCE = os.environ.get("DIBR_CONFORMANCE", os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "data", "conformance", "kaolin_dibr_public.pt"))

BACKENDS = ["reference", "cpu"]


@pytest.fixture(scope="module")
def cases():
    assert os.path.isfile(CONFORMANCE), f"conformance data missing: {CONFORMANCE}"
    return torch.load(CONFORMANCE, weights_only=True)["cases"]


def _need(backend):
    if backend == "cpu" and _ext.ops() is None:
        pytest.fail(f"C++ extension failed to build: {_ext.build_error()}")


def _rel(got, ref):
    return ((got.double() - ref).norm() / ref.norm().clamp_min(1e-30)).item()


def _run_case(case, backend):
    p = case["params"]
    dt = getattr(torch, p["dtype"])
    inp = {k: v.to(dt) for k, v in case["inputs"].items()}
    fvi = inp["face_vertices_image"].clone().requires_grad_(True)
    feat = inp["face_features"].clone().requires_grad_(True)
    out = dibr_rasterize(p["height"], p["width"], inp["face_vertices_z"], fvi, feat, inp["face_normals_z"],
                         sigmainv=p["sigmainv"], boxlen=p["boxlen"], knum=p["knum"],
                         multiplier=p["multiplier"], backend=backend)
    lw = case["loss_weights"]
    loss = (out[0] * lw["features"].to(dt)).sum() + (out[1] * lw["soft_mask"].to(dt)).sum()
    loss.backward()
    return out, fvi.grad, feat.grad


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("index", range(5))
def test_kaolin_conformance(cases, backend, index):
    """Every case of the Kaolin CUDA outputs, within the README tolerances, computed in the case's dtype."""
    _need(backend)
    case = cases[index]
    (features, soft, face_idx), g_img, g_feat = _run_case(case, backend)
    ref = case["outputs"]
    dt = getattr(torch, case["params"]["dtype"])
    assert features.dtype == dt and soft.dtype == dt and face_idx.dtype == torch.int64
    assert torch.equal(face_idx, ref["face_idx"])
    assert _rel(features, ref["features"]) <= 1e-5
    assert _rel(soft, ref["soft_mask"]) <= 1e-5
    assert _rel(g_img, ref["grad_face_vertices_image"]) <= 1e-3
    assert _rel(g_feat, ref["grad_face_features"]) <= 1e-3


def _random_mesh(seed, batch=2, faces=6, dim=2, dtype=torch.float64, size=0.9):
    g = torch.Generator().manual_seed(seed)
    centre = torch.rand(batch, faces, 1, 2, generator=g, dtype=dtype) * 1.2 - 0.6
    fvi = centre + (torch.rand(batch, faces, 3, 2, generator=g, dtype=dtype) - 0.5) * size
    fvz = -2 - torch.rand(batch, faces, 3, generator=g, dtype=dtype)
    feat = torch.rand(batch, faces, 3, dim, generator=g, dtype=dtype)
    nz = torch.where(torch.rand(batch, faces, generator=g) < 0.8, 1.0, -1.0).to(dtype)
    return fvz, fvi, feat, nz


@pytest.mark.parametrize("backend", BACKENDS)
def test_gradcheck_float64(backend):
    """Analytic (cpu) and autograd (reference) gradients match finite differences, soft band included."""
    _need(backend)
    fvz, fvi, feat, nz = _random_mesh(6, batch=1, faces=4, dim=1, size=1.8)
    kw = dict(sigmainv=60.0, boxlen=0.3, knum=3, backend=backend)
    _, soft, face_idx = dibr_rasterize(9, 8, fvz, fvi, feat, nz, **kw)
    band = (face_idx < 0) & (soft > 1e-3)
    assert band.sum() > 20 and (face_idx >= 0).sum() > 20 and len(face_idx.unique()) >= 3  # both regions carry gradient

    def fn(a, b):
        f, s, _ = dibr_rasterize(9, 8, fvz, a, b, nz, **kw)
        return f, s

    assert torch.autograd.gradcheck(fn, (fvi.requires_grad_(True), feat.requires_grad_(True)),
                                    eps=1e-6, atol=1e-5, rtol=1e-3)


def _pixel_ndc(h, w, height, width):
    return (2 * w + 1 - width) / width, (height - 2 * h - 1) / height


def _seg_dist(p, a, b):
    ab, ap = b - a, p - a
    t = np.clip(ap @ ab / (ab @ ab), 0.0, 1.0)
    return float(np.linalg.norm(p - (a + t * ab)))


def _inside(p, tri):
    s = []
    for i in range(3):
        a, b = tri[i], tri[(i + 1) % 3]
        s.append((b[0] - a[0]) * (p[1] - a[1]) - (b[1] - a[1]) * (p[0] - a[0]))
    return all(v > 0 for v in s) or all(v < 0 for v in s)


@pytest.mark.parametrize("backend", BACKENDS)
def test_single_triangle_coverage_interpolation_and_soft_mask(backend):
    """Coverage by the point-in-triangle test, features = (x, y, 1) interpolate to the pixel centre,
    soft mask = exp(-sigmainv d^2) with d the distance to the boundary, 0 beyond the grown box."""
    _need(backend)
    H, W, sig, boxlen = 12, 10, 300.0, 0.15
    tri = np.array([[-0.61, -0.53], [0.47, -0.38], [-0.12, 0.58]])
    fvi = torch.tensor(tri, dtype=torch.float64).view(1, 1, 3, 2)
    feat = torch.cat([fvi, torch.ones(1, 1, 3, 1, dtype=torch.float64)], dim=-1)
    fvz = torch.full((1, 1, 3), -2.0, dtype=torch.float64)
    features, soft, face_idx = dibr_rasterize(H, W, fvz, fvi, feat, torch.ones(1, 1, dtype=torch.float64),
                                              sigmainv=sig, boxlen=boxlen, backend=backend)
    lo, hi = tri.min(0) - boxlen, tri.max(0) + boxlen
    n_cov = n_band = 0
    for h in range(H):
        for w in range(W):
            p = np.array(_pixel_ndc(h, w, H, W))
            if _inside(p, tri):
                n_cov += 1
                assert face_idx[0, h, w] == 0
                assert soft[0, h, w] == 1.0
                np.testing.assert_allclose(features[0, h, w].numpy(), [p[0], p[1], 1.0], atol=1e-9)
            else:
                assert face_idx[0, h, w] == -1
                assert torch.all(features[0, h, w] == 0)
                if np.all(p >= lo) and np.all(p < hi):
                    d = min(_seg_dist(p, tri[i], tri[(i + 1) % 3]) for i in range(3))
                    n_band += 1
                    assert soft[0, h, w].item() == pytest.approx(math.exp(-sig * d * d), rel=1e-5, abs=1e-12)
                else:
                    assert soft[0, h, w] == 0
    assert n_cov > 10 and n_band > 10


def _quad_pair(z_first, z_second, dtype=torch.float64):
    """Two identical big triangles (same screen footprint) with constant depths and distinct features."""
    tri = torch.tensor([[-0.9, -0.9], [0.9, -0.9], [0.0, 0.9]], dtype=dtype)
    fvi = tri.expand(1, 2, 3, 2).clone()
    fvz = torch.tensor([[[z_first] * 3, [z_second] * 3]], dtype=dtype)
    feat = torch.tensor([[[[1.0]] * 3, [[2.0]] * 3]], dtype=dtype)
    return fvz, fvi, feat, torch.ones(1, 2, dtype=dtype)


@pytest.mark.parametrize("backend", BACKENDS)
def test_depth_order_nearest_is_largest_z(backend):
    _need(backend)
    for zs, winner in (((-3.0, -2.0), 1), ((-2.0, -3.0), 0)):
        fvz, fvi, feat, nz = _quad_pair(*zs)
        features, _, face_idx = dibr_rasterize(8, 8, fvz, fvi, feat, nz, backend=backend)
        covered = face_idx >= 0
        assert covered.sum() > 10
        assert torch.all(face_idx[covered] == winner)
        torch.testing.assert_close(features[..., 0][covered], torch.full_like(features[..., 0][covered], winner + 1.0))


@pytest.mark.parametrize("backend", BACKENDS)
def test_tie_goes_to_first_face_and_partial_overlap(backend):
    _need(backend)
    fvz, fvi, feat, nz = _quad_pair(-2.0, -2.0)
    _, _, face_idx = dibr_rasterize(8, 8, fvz, fvi, feat, nz, backend=backend)
    assert torch.all(face_idx[face_idx >= 0] == 0) and (face_idx >= 0).sum() > 10
    # A nearer triangle covering the right part only: both faces visible, split by depth.
    fvz, fvi, feat, nz = _quad_pair(-3.0, -2.0)
    fvi[0, 1] = torch.tensor([[0.05, -1.5], [3.0, -1.5], [0.05, 3.0]], dtype=fvi.dtype)  # all of x > 0.05
    _, _, face_idx = dibr_rasterize(8, 8, fvz, fvi, feat, nz, backend=backend)
    xs = torch.tensor([(2 * w + 1 - 8) / 8 for w in range(8)])
    assert torch.all(face_idx[0][:, xs < 0][face_idx[0][:, xs < 0] >= 0] == 0)
    assert torch.all(face_idx[0][:, xs > 0.1] == 1)


@pytest.mark.parametrize("backend", BACKENDS)
def test_culled_face_not_drawn_but_counts_in_soft_mask(backend):
    _need(backend)
    fvz, fvi, feat, nz = _quad_pair(-2.0, -3.0)
    nz[0, 0] = -1.0  # the nearer face is back-facing: the farther one shows through
    features, soft, face_idx = dibr_rasterize(8, 8, fvz, fvi, feat, nz, backend=backend)
    assert torch.all(face_idx[face_idx >= 0] == 1)
    nz[0, 1] = -1.0  # both culled: nothing drawn, soft mask from distances to the boundary (< 1, > 0)
    features, soft, face_idx = dibr_rasterize(8, 8, fvz, fvi, feat, nz, sigmainv=30.0, backend=backend)
    assert torch.all(face_idx == -1) and torch.all(features == 0)
    centre = soft[0, 4, 4].item()
    assert 0 < centre < 1


@pytest.mark.parametrize("backend", BACKENDS)
def test_knum_takes_first_candidates_by_index(backend):
    """With knum=1 a background pixel sees only the lowest-index face whose grown box holds it."""
    _need(backend)
    dtype = torch.float64
    far = torch.tensor([[0.5, 0.5], [0.9, 0.5], [0.9, 0.9]], dtype=dtype)  # index 0: far from the pixel
    near = torch.tensor([[-0.2, -0.2], [0.2, -0.2], [0.0, 0.2]], dtype=dtype)
    fvi = torch.stack([far, near]).unsqueeze(0)
    fvz = torch.full((1, 2, 3), -2.0, dtype=dtype)
    feat = torch.zeros(1, 2, 3, 1, dtype=dtype)
    nz = -torch.ones(1, 2, dtype=dtype)  # culled: every pixel is background
    kw = dict(sigmainv=10.0, boxlen=2.0, backend=backend)
    _, s1, _ = dibr_rasterize(6, 6, fvz, fvi, feat, nz, knum=1, **kw)
    _, s2, _ = dibr_rasterize(6, 6, fvz, fvi, feat, nz, knum=2, **kw)
    _, s_far, _ = dibr_rasterize(6, 6, fvz[:, :1], fvi[:, :1], feat[:, :1], nz[:, :1], knum=1, **kw)
    _, s_near, _ = dibr_rasterize(6, 6, fvz[:, 1:], fvi[:, 1:], feat[:, 1:], nz[:, 1:], knum=1, **kw)
    torch.testing.assert_close(s1, s_far)
    torch.testing.assert_close(s2, 1 - (1 - s_far) * (1 - s_near))


@pytest.mark.parametrize("backend", BACKENDS)
def test_no_gradient_to_z_or_through_covered_soft_mask(backend):
    _need(backend)
    fvz, fvi, feat, nz = _random_mesh(5)
    fvz.requires_grad_(True)
    fvi.requires_grad_(True)
    features, soft, face_idx = dibr_rasterize(10, 10, fvz, fvi, feat, nz, sigmainv=60.0, boxlen=0.3,
                                              backend=backend)
    gz = torch.autograd.grad(features.sum() + soft.sum(), fvz, allow_unused=True)[0]
    assert gz is None or torch.all(gz == 0)
    # The soft mask of covered pixels alone carries no gradient.
    (g,) = torch.autograd.grad((soft * (face_idx >= 0)).sum(), fvi, allow_unused=True)
    assert g is None or torch.all(g == 0)


def test_cpu_matches_reference_float32_and_is_deterministic():
    _need("cpu")
    fvz, fvi, feat, nz = _random_mesh(11, batch=3, faces=40, dim=3, dtype=torch.float32)
    fvi = fvi * 0.5
    outs, grads = {}, {}
    for backend in BACKENDS:
        a = fvi.clone().requires_grad_(True)
        b = feat.clone().requires_grad_(True)
        out = dibr_rasterize(24, 20, fvz, a, b, nz, backend=backend)
        (out[0].square().sum() + out[1].sum()).backward()
        outs[backend], grads[backend] = out, (a.grad, b.grad)
    assert torch.equal(outs["cpu"][2], outs["reference"][2])
    torch.testing.assert_close(outs["cpu"][0], outs["reference"][0], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(outs["cpu"][1], outs["reference"][1], rtol=1e-5, atol=1e-6)
    for got, ref in zip(grads["cpu"], grads["reference"]):
        assert _rel(got, ref.double()) < 1e-4
    # Same gradients bit for bit across runs and thread counts.
    threads = torch.get_num_threads()
    try:
        results = []
        for n in (1, max(2, threads)):
            torch.set_num_threads(n)
            a = fvi.clone().requires_grad_(True)
            out = dibr_rasterize(24, 20, fvz, a, feat, nz, backend="cpu")
            (out[0].square().sum() + out[1].sum()).backward()
            results.append(a.grad)
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(results[0], results[1])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    assert _ext.has_cuda_kernels(), _ext.build_error()
    fvz, fvi, feat, nz = _random_mesh(7, batch=4, faces=200, dim=3, dtype=torch.float32)
    fvi = fvi * 0.6
    res = {}
    for dev, backend in (("cpu", "cpu"), ("cuda", "cuda")):
        a = fvi.to(dev).requires_grad_(True)
        b = feat.to(dev).requires_grad_(True)
        out = dibr_rasterize(40, 48, fvz.to(dev), a, b, nz.to(dev), backend=backend)
        (out[0].square().sum() + out[1].sum()).backward()
        res[backend] = [t.detach().cpu() for t in out] + [a.grad.cpu(), b.grad.cpu()]
    assert torch.equal(res["cpu"][2], res["cuda"][2])
    torch.testing.assert_close(res["cuda"][0], res["cpu"][0], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(res["cuda"][1], res["cpu"][1], rtol=1e-5, atol=1e-5)
    assert _rel(res["cuda"][3], res["cpu"][3].double()) < 1e-4
    assert _rel(res["cuda"][4], res["cpu"][4].double()) < 1e-4


def _good_inputs():
    fvz, fvi, feat, nz = _random_mesh(1, dtype=torch.float32)
    return dict(face_vertices_z=fvz, face_vertices_image=fvi, face_features=feat, face_normals_z=nz)


@pytest.mark.parametrize(
    "change, match",
    [
        (dict(face_vertices_z=torch.zeros(2, 6)), "face_vertices_z"),
        (dict(face_vertices_image=torch.zeros(2, 6, 3, 3)), "face_vertices_image"),
        (dict(face_features=torch.zeros(2, 5, 3, 2)), "face_features"),
        (dict(face_normals_z=torch.zeros(2, 6, 1)), "face_normals_z"),
        (dict(face_features=torch.zeros(2, 6, 3, 2, dtype=torch.float64)), "one dtype"),
        (dict(face_normals_z=torch.zeros(2, 6, dtype=torch.int64)), "float32 or float64"),
        (dict(face_vertices_image=np.zeros((2, 6, 3, 2))), "torch.Tensor"),
        (dict(face_normals_z=torch.zeros(2, 6, device="meta")), "one device"),
        (dict(height=0), "height"),
        (dict(knum=0), "knum"),
        (dict(sigmainv=-1.0), "sigmainv"),
        (dict(backend="opengl"), "backend"),
        (dict(backend="cuda"), "CUDA tensors"),
    ],
)
def test_bad_input_raises_value_error(change, match):
    kw = dict(height=8, width=8, **_good_inputs())
    kw.update(change)
    with pytest.raises(ValueError, match=match):
        dibr_rasterize(**kw)


def test_reference_fallback_when_extension_missing(monkeypatch):
    kw = dict(height=9, width=11, **_good_inputs())
    expected = rasterize_reference(**kw)
    monkeypatch.setattr(_ext, "ops", lambda: None)
    monkeypatch.setattr(_ext, "has_cuda_kernels", lambda: False)
    got = dibr_rasterize(**kw, backend="auto")
    for a, b in zip(got, expected):
        assert torch.equal(a, b)
    with pytest.raises(RuntimeError, match="cpu"):
        dibr_rasterize(**kw, backend="cpu")
