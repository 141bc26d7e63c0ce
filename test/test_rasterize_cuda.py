"""CUDA DIB-R kernels: Kaolin conformance, agreement with the C++ backend, gradcheck, determinism, odd sizes."""

import os

import pytest
import torch

from dibr_ros.render import _ext, dibr_rasterize

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")

# Kaolin's own outputs (test/data/conformance/README.md); DIBR_CONFORMANCE overrides the location.
CONFORMANCE = os.environ.get("DIBR_CONFORMANCE", os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "data", "conformance", "kaolin_dibr_public.pt"))


@pytest.fixture(scope="module", autouse=True)
def kernels():
    assert _ext.has_cuda_kernels(), f"CUDA kernels failed to build: {_ext.build_error()}"


@pytest.fixture(scope="module")
def cases():
    assert os.path.isfile(CONFORMANCE), f"conformance data missing: {CONFORMANCE}"
    return torch.load(CONFORMANCE, weights_only=True)["cases"]


def _rel(got, ref):
    got, ref = got.detach().double().cpu(), ref.detach().double().cpu()
    return ((got - ref).norm() / ref.norm().clamp_min(1e-30)).item()


def _render(inputs, height, width, backend, weights=None, **kw):
    """Forward + backward of sum(features * wf) + sum(soft * ws); returns outputs and input gradients."""
    fvz, fvi, feat, nz = inputs
    fvi = fvi.detach().clone().requires_grad_(True)
    feat = feat.detach().clone().requires_grad_(True)
    features, soft, face_idx = dibr_rasterize(height, width, fvz, fvi, feat, nz, backend=backend, **kw)
    if weights is None:
        g = torch.Generator().manual_seed(123)
        weights = (torch.rand(features.shape, generator=g, dtype=torch.float64).to(features),
                   torch.rand(soft.shape, generator=g, dtype=torch.float64).to(soft))
    loss = (features * weights[0]).sum() + (soft * weights[1]).sum()
    loss.backward()
    return features.detach(), soft.detach(), face_idx, fvi.grad, feat.grad


def _soup(seed, batch, faces, dim, dtype, big=0, degenerate=0):
    """Random triangle soup: small faces around the image (some off-screen), a few huge and zero-area ones."""
    g = torch.Generator().manual_seed(seed)
    centre = torch.rand(batch, faces, 1, 2, generator=g, dtype=torch.float64) * 2.4 - 1.2
    size = 0.02 + 0.3 * torch.rand(batch, faces, 1, 1, generator=g, dtype=torch.float64) ** 2
    fvi = centre + (torch.rand(batch, faces, 3, 2, generator=g, dtype=torch.float64) - 0.5) * size
    if big:
        fvi[:, :big] = (torch.rand(batch, big, 3, 2, generator=g, dtype=torch.float64) - 0.5) * 8
    if degenerate:
        fvi[:, big:big + degenerate, 2] = fvi[:, big:big + degenerate, 1]
    fvz = -2 - torch.rand(batch, faces, 3, generator=g, dtype=torch.float64)
    feat = torch.rand(batch, faces, 3, dim, generator=g, dtype=torch.float64)
    nz = torch.where(torch.rand(batch, faces, generator=g) < 0.7, 1.0, -1.0).to(torch.float64)
    return [t.to(dtype) for t in (fvz, fvi, feat, nz)]


def _compare_with_cpu(inputs, height, width, **kw):
    """CUDA vs C++ backend. The vertex gradients differ by design in the soft band: the CUDA kernels use
    Kaolin's (1 - A) / (1 - p + 1e-7) for prod_{j != k} (1 - p_j) (the C++ backend forms the exact
    product), a difference of the same size as between Kaolin and an exact implementation (README)."""
    cpu = _render(inputs, height, width, "cpu", **kw)
    cuda = _render([t.cuda() for t in inputs], height, width, "cuda", **kw)
    same = cpu[2] == cuda[2].cpu()
    # Pixel centres within an ulp of an edge may fall either way (the GPU contracts to FMA).
    assert (~same).sum().item() <= max(1, same.numel() // 10000)
    for a, b in zip(cuda[:2], cpu[:2]):
        assert a.dtype == b.dtype and a.shape == b.shape
        assert _rel(a.cpu()[same], b[same]) <= 1e-5
    assert _rel(cuda[3], cpu[3]) <= 1e-3
    assert _rel(cuda[4], cpu[4]) <= 1e-4
    return cuda


@pytest.mark.parametrize("index", range(5))
def test_kaolin_conformance(cases, index):
    """Every case of Kaolin's CUDA outputs, in the case's dtype, within the README tolerances."""
    case = cases[index]
    p = case["params"]
    dt = getattr(torch, p["dtype"])
    inputs = [case["inputs"][k].to(dt).cuda() for k in
              ("face_vertices_z", "face_vertices_image", "face_features", "face_normals_z")]
    lw = case["loss_weights"]
    features, soft, face_idx, g_img, g_feat = _render(
        inputs, p["height"], p["width"], "cuda", weights=(lw["features"].to(dt).cuda(), lw["soft_mask"].to(dt).cuda()),
        sigmainv=p["sigmainv"], boxlen=p["boxlen"], knum=p["knum"], multiplier=p["multiplier"])
    ref = case["outputs"]
    assert features.dtype == dt and soft.dtype == dt and face_idx.dtype == torch.int64
    assert torch.equal(face_idx.cpu(), ref["face_idx"])
    assert _rel(features, ref["features"]) <= 1e-5
    assert _rel(soft, ref["soft_mask"]) <= 1e-5
    assert _rel(g_img, ref["grad_face_vertices_image"]) <= 1e-3
    assert _rel(g_feat, ref["grad_face_features"]) <= 1e-3


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("height,width,dim,knum,boxlen", [
    (64, 64, 3, 30, 0.02), (35, 31, 5, 7, 0.2), (70, 45, 12, 3, 0.1), (23, 100, 16, 40, 0.05)])
def test_matches_cpu_backend(dtype, height, width, dim, knum, boxlen):
    """Many faces over several tiles (huge, zero-area, culled and off-screen ones included), D up to 16."""
    inputs = _soup(height * 7 + dim, 3, 1500, dim, dtype, big=3, degenerate=5)
    cuda = _compare_with_cpu(inputs, height, width, knum=knum, boxlen=boxlen)
    assert (cuda[2] >= 0).any() and (cuda[2] < 0).any()


@pytest.mark.parametrize("height,width", [(1, 1), (1, 7), (5, 1), (3, 2), (17, 16), (35, 31)])
def test_tiny_and_non_square_images(height, width):
    inputs = _soup(height * 100 + width, 2, 40, 2, torch.float64, big=1)
    _compare_with_cpu(inputs, height, width, boxlen=0.3)


def test_large_batch_beyond_grid_limit():
    """B > 65535 exercises the batch loop of the tile kernels."""
    inputs = _soup(5, 65537, 2, 1, torch.float32, big=1)
    _compare_with_cpu(inputs, 2, 3, boxlen=0.5)


def test_many_faces():
    inputs = _soup(11, 1, 100_000, 3, torch.float32, big=2)
    _compare_with_cpu(inputs, 96, 128)


def test_no_faces_is_background():
    fvz, fvi, feat, nz = (t[:, :0].cuda() for t in _soup(1, 2, 1, 3, torch.float32))
    features, soft, face_idx = dibr_rasterize(9, 8, fvz, fvi, feat, nz, backend="cuda")
    assert features.shape == (2, 9, 8, 3) and not features.any()
    assert not soft.any() and (face_idx == -1).all()


def test_gradcheck_float64():
    """Analytic CUDA gradients (barycentric and soft band) match finite differences."""
    fvz, fvi, feat, nz = (t.cuda() for t in _soup(3, 2, 6, 2, torch.float64))
    fvi = (fvi * 0.6).requires_grad_(True)  # keep the faces on screen
    feat = feat.requires_grad_(True)

    def fn(v, f):
        out = dibr_rasterize(12, 10, fvz, v, f, nz, sigmainv=300.0, boxlen=0.3, knum=4, backend="cuda")
        return out[0], out[1]

    assert torch.autograd.gradcheck(fn, (fvi, feat), eps=1e-7, atol=1e-5, rtol=1e-3)


def test_backward_is_deterministic():
    """Per-face gathers (no atomics): two backward passes are bitwise equal."""
    inputs = [t.cuda() for t in _soup(8, 4, 3000, 3, torch.float32, big=2)]
    first = _render(inputs, 96, 80, "cuda", boxlen=0.1)
    second = _render(inputs, 96, 80, "cuda", boxlen=0.1)
    assert first[3].abs().sum() > 0 and first[4].abs().sum() > 0
    assert torch.equal(first[3], second[3]) and torch.equal(first[4], second[4])
    for a, b in zip(first[:3], second[:3]):
        assert torch.equal(a, b)


def test_tie_goes_to_first_face_across_chunks():
    """Identical faces at indices 10, 255, 256 and 600 (different 256-face chunks): the first one wins."""
    fvz, fvi, feat, nz = _soup(2, 1, 700, 1, torch.float32)
    fvi[:, :] = fvi[:, :] * 0.01 + 5.0  # everything off-screen ...
    big = torch.tensor([[-3.0, -3.0], [3.0, -3.0], [0.0, 3.0]])
    for i in (600, 256, 255, 10):  # ... except four copies of one big face
        fvi[0, i], fvz[0, i], nz[0, i], feat[0, i] = big, -2.0, 1.0, float(i)
    features, soft, face_idx = dibr_rasterize(20, 40, fvz.cuda(), fvi.cuda(), feat.cuda(), nz.cuda(),
                                              backend="cuda")
    assert (face_idx == 10).all()
    torch.testing.assert_close(features.cpu(), torch.full((1, 20, 40, 1), 10.0))
    assert (soft == 1).all()
