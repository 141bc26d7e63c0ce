"""Rendering toolkit around the DIB-R rasterizer: cameras, meshes, shading, textures, render_mesh.

Expectations are analytic (closed-form projections, sphere silhouettes, SH orthonormality), from
OpenCV / SciPy as independent references, or finite differences (gradcheck). The rasterizer runs on the
pure-PyTorch reference backend, so no compiler is needed.
"""

import math

import numpy as np
import pytest
import torch

from dibr_ros.render import (
    OPENCV_TO_OPENGL,
    SH9_CONSTANTS,
    camera_from_spherical,
    edge_face_adjacency,
    face_normals,
    face_signed_volumes,
    fov_to_intrinsics,
    gather_faces,
    ico_sphere,
    intrinsics_to_projection,
    lambertian,
    look_at_rotation,
    mesh_edges,
    ndc_to_pixel,
    normalize_mesh,
    perspective_projection,
    phong,
    pixel_to_ndc,
    project,
    projection_to_intrinsics,
    render_mesh,
    render_silhouette,
    sample_texture,
    sh9_basis,
    sh9_shading,
    uniform_laplacian,
    unproject_pixels,
    vertex_adjacency,
    vertex_normals,
    world_to_camera,
)

REF = "reference"


def _fibonacci_sphere(n: int, dtype=torch.float64) -> torch.Tensor:
    """n nearly uniform unit directions (equal-area quadrature points)."""
    i = torch.arange(n, dtype=dtype) + 0.5
    z = 1.0 - 2.0 * i / n
    phi = i * math.pi * (3.0 - math.sqrt(5.0))
    r = torch.sqrt(1.0 - z * z)
    return torch.stack([r * torch.cos(phi), r * torch.sin(phi), z], dim=-1)


# ----------------------------------------------------------------------------------------------- mesh


@pytest.mark.parametrize("level,nv,nf", [(0, 12, 20), (1, 42, 80), (2, 162, 320), (3, 642, 1280), (4, 2562, 5120)])
def test_ico_sphere_counts_and_topology(level, nv, nf):
    v, f = ico_sphere(level)
    assert v.shape == (nv, 3) and v.dtype == torch.float32
    assert f.shape == (nf, 3) and f.dtype == torch.int64
    torch.testing.assert_close(v.norm(dim=-1), torch.ones(nv), atol=1e-6, rtol=0)
    edges = mesh_edges(f)
    assert nv - edges.shape[0] + nf == 2  # Euler characteristic of a sphere
    # Closed, consistently oriented 2-manifold: every directed edge once, its reverse once.
    directed = torch.cat([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]])
    key = directed[:, 0] * nv + directed[:, 1]
    assert torch.unique(key).numel() == 3 * nf
    assert torch.equal(torch.sort(key).values, torch.sort(directed[:, 1] * nv + directed[:, 0]).values)
    # No duplicate vertices and outward normals.
    assert torch.cdist(v, v).add(torch.eye(nv) * 10).min() > 1e-3
    n = face_normals(v, f)
    assert ((n * v[f].mean(1)).sum(-1) > 0.79).all()


def test_ico_sphere_returns_fresh_tensors():
    v, _ = ico_sphere(1)
    v.mul_(0)
    assert ico_sphere(1)[0].norm(dim=-1).min() > 0.99
    with pytest.raises(ValueError):
        ico_sphere(-1)


def test_face_normal_of_known_triangle():
    v = torch.tensor([[[0.0, 0.0, 0.0], [2.0, 0.0, 0.0], [0.0, 3.0, 0.0]]])
    f = torch.tensor([[0, 1, 2]])
    torch.testing.assert_close(face_normals(v, f), torch.tensor([[[0.0, 0.0, 1.0]]]))
    torch.testing.assert_close(face_normals(v, f, unit=False), torch.tensor([[[0.0, 0.0, 6.0]]]))  # 2 * area
    torch.testing.assert_close(face_normals(v, f.flip(1)), torch.tensor([[[0.0, 0.0, -1.0]]]))


def test_vertex_normals_of_sphere_are_radial():
    v, f = ico_sphere(3)
    n = vertex_normals(v[None] * 2.5 + 1.0, f)[0]
    assert ((n * v).sum(-1) > 0.999).all()
    torch.testing.assert_close(n.norm(dim=-1), torch.ones(v.shape[0]))


def test_uniform_laplacian():
    v, f = ico_sphere(2)
    L = uniform_laplacian(v.shape[0], f)
    assert L.is_sparse and L.shape == (162, 162)
    torch.testing.assert_close(L @ torch.full((162, 2), 3.7), torch.zeros(162, 2), atol=1e-6, rtol=0)
    torch.testing.assert_close(torch.sparse.sum(L, dim=1).to_dense(), torch.zeros(162), atol=1e-6, rtol=0)
    # Row i = x_i minus the mean over the neighbours found directly from the faces.
    x = torch.randn(162, 3, generator=torch.Generator().manual_seed(0))
    i = 17
    nbrs = torch.unique(f[(f == i).any(1)])
    nbrs = nbrs[nbrs != i]
    torch.testing.assert_close((L @ x)[i], x[i] - x[nbrs].mean(0))
    degrees = vertex_adjacency(f, 162).to_dense().sum(1)
    assert set(degrees.tolist()) == {5.0, 6.0}  # 12 icosahedron vertices have valence 5


def test_edge_face_adjacency():
    _, f = ico_sphere(2)
    pairs, edges = edge_face_adjacency(f, return_edges=True)
    assert pairs.shape == (480, 2) and edges.shape == (480, 2)
    assert (pairs[:, 0] < pairs[:, 1]).all()
    assert torch.equal(torch.bincount(pairs.reshape(-1), minlength=320), torch.full((320,), 3))
    for k in range(2):  # the shared edge belongs to both faces
        fk = f[pairs[:, k]]
        assert ((fk == edges[:, :1]).any(1) & (fk == edges[:, 1:]).any(1)).all()
    # An open strip: boundary edges give no pair.
    strip = torch.tensor([[0, 1, 2], [2, 1, 3], [2, 3, 4]])
    assert edge_face_adjacency(strip).tolist() == [[0, 1], [1, 2]]


def test_gather_faces_and_normalize_mesh():
    v = torch.randn(2, 5, 3, generator=torch.Generator().manual_seed(1))
    f = torch.tensor([[0, 1, 2], [4, 3, 0]])
    g = gather_faces(v, f)
    assert g.shape == (2, 2, 3, 3)
    assert torch.equal(g[1, 1, 0], v[1, 4]) and torch.equal(g[0, 0, 2], v[0, 2])
    nv, center, radius = normalize_mesh(v * 3.0 + torch.tensor([1.0, -2.0, 0.5]))
    torch.testing.assert_close(nv.norm(dim=-1).amax(-1), torch.ones(2))
    torch.testing.assert_close((nv.amax(1) + nv.amin(1)) / 2, torch.zeros(2, 3), atol=1e-6, rtol=0)
    torch.testing.assert_close(nv * radius[:, None, None] + center[:, None], v * 3.0 + torch.tensor([1.0, -2.0, 0.5]))


# --------------------------------------------------------------------------------------------- camera


def test_look_at_puts_target_on_optical_axis():
    g = torch.Generator().manual_seed(2)
    eye, at = torch.randn(8, 3, generator=g) * 3, torch.randn(8, 3, generator=g)
    R = look_at_rotation(eye, at)
    torch.testing.assert_close(R @ R.transpose(1, 2), torch.eye(3).expand(8, 3, 3), atol=1e-5, rtol=0)
    torch.testing.assert_close(torch.linalg.det(R), torch.ones(8))
    p = world_to_camera(at[:, None], R, eye)[:, 0]
    torch.testing.assert_close(p[:, :2], torch.zeros(8, 2), atol=1e-5, rtol=0)
    torch.testing.assert_close(p[:, 2], -(at - eye).norm(dim=-1))
    assert (R[:, 1, 1] > 0).all()  # camera up has a positive world-y component
    # Up parallel to the viewing direction still gives a proper rotation.
    R2 = look_at_rotation(torch.tensor([0.0, 5.0, 0.0]), torch.zeros(3))
    torch.testing.assert_close(R2[0] @ R2[0].T, torch.eye(3), atol=1e-6, rtol=0)
    torch.testing.assert_close(R2[0, 2], torch.tensor([0.0, 1.0, 0.0]))


def test_camera_from_spherical():
    R, eye = camera_from_spherical(0.0, 0.0, 3.0)
    torch.testing.assert_close(eye, torch.tensor([[0.0, 0.0, 3.0]]))
    torch.testing.assert_close(R, torch.eye(3)[None])
    az, el = torch.tensor([0.4, -1.0]), torch.tensor([0.3, 0.5])
    R, eye = camera_from_spherical(az, el, 2.0, at=torch.tensor([0.1, 0.2, 0.3]))
    expect = 2.0 * torch.stack([el.cos() * az.sin(), el.sin(), el.cos() * az.cos()], -1) + torch.tensor([0.1, 0.2, 0.3])
    torch.testing.assert_close(eye, expect)
    p = world_to_camera(torch.tensor([[0.1, 0.2, 0.3]]), R, eye)
    torch.testing.assert_close(p, torch.tensor([[[0.0, 0.0, -2.0]]]).expand(2, 1, 3), atol=1e-6, rtol=0)
    # Roll turns the image content counter-clockwise: camera +x lands at +y.
    r90, e90 = camera_from_spherical(0.0, 0.0, 3.0, roll=math.pi / 2)
    p = world_to_camera(torch.tensor([[1.0, 0.0, 0.0]]), r90, e90)
    torch.testing.assert_close(p, torch.tensor([[[0.0, 1.0, -3.0]]]), atol=1e-6, rtol=0)


def test_projection_of_known_points():
    proj = perspective_projection(math.radians(90), aspect=2.0)
    torch.testing.assert_close(proj, torch.tensor([0.5, 1.0, -1.0]))
    pts = torch.tensor([[[1.0, 2.0, -4.0], [-3.0, 0.5, -1.0], [0.0, 0.0, -7.0]]])
    xy = project(pts, proj)
    torch.testing.assert_close(xy, torch.tensor([[[0.125, 0.5], [-1.5, 0.5], [0.0, 0.0]]]))
    # tan(30 deg / 2) fov: a point at the top edge of the frustum maps to y = 1.
    proj = perspective_projection(torch.tensor([math.radians(30), math.radians(60)]))
    top = torch.tensor([[[0.0, math.tan(math.radians(15)) * 5, -5.0]], [[0.0, math.tan(math.radians(30)) * 2, -2.0]]])
    torch.testing.assert_close(project(top, proj)[..., 1], torch.ones(2, 1))
    # unproject is the inverse up to depth.
    d = unproject_pixels(xy, perspective_projection(math.radians(90), aspect=2.0))
    torch.testing.assert_close(d, pts / pts.norm(dim=-1, keepdim=True))


def test_intrinsics_projection_round_trip_off_centre():
    K = torch.tensor([[[500.0, 0.0, 300.5], [0.0, 480.0, 200.25], [0.0, 0.0, 1.0]],
                      [[60.0, 0.0, 31.5], [0.0, 60.0, 23.5], [0.0, 0.0, 1.0]]])  # fmt: skip
    proj, offset = intrinsics_to_projection(K, 640, 480)
    torch.testing.assert_close(proj[0], torch.tensor([2 * 500 / 640, 2 * 480 / 480, -1.0]))
    torch.testing.assert_close(offset[0], torch.tensor([(2 * 300.5 + 1 - 640) / 640, (480 - 2 * 200.25 - 1) / 480]))
    torch.testing.assert_close(projection_to_intrinsics(proj, offset, 640, 480), K)
    # A centred principal point has no offset and matches the fov projection.
    Kc = fov_to_intrinsics(math.radians(40), 64, 48)
    proj_c, off_c = intrinsics_to_projection(Kc, 64, 48)
    torch.testing.assert_close(off_c, torch.zeros(1, 2), atol=1e-7, rtol=0)
    torch.testing.assert_close(proj_c[0], perspective_projection(math.radians(40), 64 / 48))
    uv = torch.tensor([[0.0, 0.0], [63.0, 47.0], [10.25, 3.5]])
    torch.testing.assert_close(ndc_to_pixel(pixel_to_ndc(uv, 64, 48), 64, 48), uv)
    torch.testing.assert_close(pixel_to_ndc(uv[:1], 64, 48), torch.tensor([[-63 / 64, 47 / 48]]))
    with pytest.raises(ValueError):
        intrinsics_to_projection(torch.tensor([[500.0, 1.0, 3.0], [0.0, 500.0, 2.0], [0.0, 0.0, 1.0]]), 8, 8)


def test_projection_with_K_matches_opencv():
    cv2 = pytest.importorskip("cv2")
    import numpy as np

    g = torch.Generator().manual_seed(3)
    W, H = 640, 480
    K = torch.tensor([[520.0, 0.0, 330.7], [0.0, 515.0, 251.2], [0.0, 0.0, 1.0]], dtype=torch.float64)
    eye = torch.tensor([0.4, -0.3, 2.5], dtype=torch.float64)
    R = look_at_rotation(eye, torch.tensor([0.1, 0.0, 0.0], dtype=torch.float64))[0]
    pts = torch.rand(20, 3, generator=g, dtype=torch.float64) - 0.5
    proj, offset = intrinsics_to_projection(K, W, H)
    ours = ndc_to_pixel(project(world_to_camera(pts, R, eye), proj, offset), W, H)[0]
    R_cv = OPENCV_TO_OPENGL.double() @ R  # world -> optical frame
    rvec, _ = cv2.Rodrigues(R_cv.numpy())
    tvec = -(R_cv @ eye).numpy()
    theirs, _ = cv2.projectPoints(pts.numpy(), rvec, tvec, K.numpy(), np.zeros(5))
    torch.testing.assert_close(ours, torch.from_numpy(theirs[:, 0]), atol=1e-6, rtol=0)


def test_rasterized_point_lands_on_the_opencv_pixel():
    # A small triangle around a point that OpenCV projects to pixel (u, v) covers exactly that pixel.
    W, H = 40, 30
    K = torch.tensor([[45.0, 0.0, 17.3], [0.0, 45.0, 12.8], [0.0, 0.0, 1.0]])
    for u, v in [(5, 7), (33, 21), (0, 0)]:
        z = 3.0  # optical-frame depth
        x_cv = torch.tensor([(u - 17.3) * z / 45.0, (v - 12.8) * z / 45.0, z])
        c = x_cv @ OPENCV_TO_OPENGL.T  # camera frame
        s = 0.2 * z / 45.0  # well under half a pixel
        tri = torch.stack([c + torch.tensor([-s, -s, 0]), c + torch.tensor([s, -s, 0]), c + torch.tensor([0, s, 0])])
        out = render_mesh(tri, torch.tensor([[0, 1, 2]]), torch.ones(3, 3), torch.eye(3), torch.zeros(3),
                          height=H, width=W, K=K, backend=REF)  # fmt: skip
        assert out["mask"][0].nonzero().tolist() == [[v, u]]


# -------------------------------------------------------------------------------------------- shading


def test_sh9_basis_orthonormal():
    d = _fibonacci_sphere(40000)
    Y = sh9_basis(d)
    gram = Y.T @ Y * (4 * math.pi / d.shape[0])
    torch.testing.assert_close(gram, torch.eye(9, dtype=torch.float64), atol=2e-3, rtol=0)
    assert SH9_CONSTANTS[0] == pytest.approx(0.5 / math.sqrt(math.pi))


def test_sh9_basis_matches_scipy_real_sh():
    special = pytest.importorskip("scipy.special")
    import numpy as np

    d = _fibonacci_sphere(50)
    theta = torch.arccos(d[:, 2]).numpy()
    phi = torch.atan2(d[:, 1], d[:, 0]).numpy()
    cols = []
    for l_ in range(3):
        for m in range(-l_, l_ + 1):
            y = special.sph_harm_y(l_, abs(m), theta, phi)  # complex, Condon-Shortley phase included
            cols.append(np.full_like(theta, y.real) if m == 0 else math.sqrt(2) * (y.real if m > 0 else y.imag))
    expect = torch.from_numpy(np.stack(cols, -1))
    torch.testing.assert_close(sh9_basis(d), expect, atol=1e-9, rtol=0)


def test_sh9_constant_band_is_constant_and_rgb():
    n = torch.randn(2, 5, 7, 3, generator=torch.Generator().manual_seed(4))
    albedo = torch.rand(2, 5, 7, 3, generator=torch.Generator().manual_seed(5))
    coeffs = torch.zeros(2, 9)
    coeffs[:, 0] = torch.tensor([1.0, 3.0])
    out = sh9_shading(n, albedo, coeffs)
    torch.testing.assert_close(out, albedo * (SH9_CONSTANTS[0] * torch.tensor([1.0, 3.0])).view(2, 1, 1, 1))
    # RGB coefficients act per channel; band 1 (z) follows the normal.
    rgb = torch.zeros(9, 3)
    rgb[2] = torch.tensor([1.0, 0.0, 2.0])
    nz = torch.tensor([[[0.0, 0.0, 1.0], [0.0, 0.0, -2.0]]])
    torch.testing.assert_close(
        sh9_shading(nz, None, rgb), SH9_CONSTANTS[1] * torch.tensor([[[1.0, 0.0, 2.0], [-1.0, 0.0, -2.0]]])
    )


def test_lambert_cosine_law():
    n = torch.tensor([[0.0, 0.0, 2.0]]).expand(1, 3).reshape(1, 1, 3)
    albedo = torch.tensor([0.2, 0.5, 1.0])
    for ang in [0.0, 0.3, 1.0, 1.5]:
        light = torch.tensor([[math.sin(ang), 0.0, math.cos(ang)]]) * 4.0  # not unit on purpose
        out = lambertian(n, albedo, light, ambient=0.1, diffuse=0.8)
        torch.testing.assert_close(out, (albedo * (0.1 + 0.8 * math.cos(ang))).view(1, 1, 3))
    behind = lambertian(n, albedo, torch.tensor([0.0, 0.3, -1.0]), ambient=0.25)
    torch.testing.assert_close(behind, (albedo * 0.25).view(1, 1, 3))


def test_phong_highlight_at_mirror_direction():
    n = torch.tensor([0.0, 0.0, 1.0])
    light = torch.tensor([math.sin(0.6), 0.0, math.cos(0.6)])
    # View directions sweeping the x-z plane; the mirror direction is at angle -0.6.
    angles = torch.linspace(-1.4, 1.4, 281, dtype=torch.float64)
    views = torch.stack([torch.sin(angles), torch.zeros_like(angles), torch.cos(angles)], -1)[None]
    out = phong(n.double().expand(1, 281, 3), torch.full((3,), 0.5, dtype=torch.float64), light.double(), views,
                ambient=0.1, diffuse=0.6, specular=0.4, shininess=30.0)  # fmt: skip
    best = angles[out[0, :, 0].argmax()]
    assert abs(best.item() + 0.6) < 0.011
    torch.testing.assert_close(out[0, :, 0].max(), torch.tensor((0.1 + 0.6 * math.cos(0.6)) * 0.5 + 0.4).double())
    # Light behind the surface: no highlight, ambient only.
    back = phong(n.expand(1, 1, 3), torch.ones(3), -light, torch.tensor([0.0, 0.0, 1.0]), ambient=0.1)
    torch.testing.assert_close(back, torch.full((1, 1, 3), 0.1))


# -------------------------------------------------------------------------------------------- texture


def test_texture_at_texel_centres_and_addressing():
    tex = torch.arange(2 * 3 * 4, dtype=torch.float32).reshape(1, 2, 3, 4)
    i, j = torch.meshgrid(torch.arange(3), torch.arange(4), indexing="ij")
    uv = torch.stack([(j + 0.5) / 4, 1 - (i + 0.5) / 3], -1)[None].float()
    for mode in ("bilinear", "nearest"):
        for address in ("clamp", "wrap"):
            out = sample_texture(uv, tex, mode=mode, address=address)
            torch.testing.assert_close(out, tex.permute(0, 2, 3, 1))
    edge = torch.tensor([[[0.0, 1 - 0.5 / 3], [1.2, 1 - 0.5 / 3], [-0.5, 2.0]]])
    # clamp: the border texel; wrap: halfway between the last and the first column (row 0).
    torch.testing.assert_close(sample_texture(edge, tex)[0, :, 0], torch.tensor([0.0, 3.0, 0.0]))
    torch.testing.assert_close(sample_texture(edge[:, :1], tex, address="wrap")[0, 0, 0], torch.tensor(1.5))
    torch.testing.assert_close(sample_texture(edge[:, 1:2], tex, address="wrap"), sample_texture(
        torch.tensor([[[0.2, 1 - 0.5 / 3]]]), tex, address="wrap"))  # fmt: skip
    with pytest.raises(ValueError):
        sample_texture(uv, tex, mode="bicubic")


def test_texture_gradcheck():
    g = torch.Generator().manual_seed(6)
    tex = torch.rand(2, 3, 5, 6, generator=g, dtype=torch.float64, requires_grad=True)
    uv = (torch.rand(2, 4, 3, 2, generator=g, dtype=torch.float64) * 1.4 - 0.2).requires_grad_()
    for address in ("clamp", "wrap"):
        assert torch.autograd.gradcheck(lambda t, u, a=address: sample_texture(u, t, address=a), (tex, uv))


# ------------------------------------------------------------------------------------------- renderer


def _sphere_camera(distance: float):
    """Camera on the axis through ico-sphere vertex 0, so the image centre sees that vertex."""
    v, f = ico_sphere(3)
    eye = v[0] * distance
    R = look_at_rotation(eye, torch.zeros(3), torch.tensor([0.0, 0.0, 1.0]))
    return v, f, R, eye


def test_render_sphere_silhouette_area_and_depth():
    radius, distance, fovy, size = 0.5, 3.0, math.radians(30), 65
    v, f, R, eye = _sphere_camera(distance)
    colors = torch.rand(642, 3, generator=torch.Generator().manual_seed(7))
    out = render_mesh(v * radius, f, colors, R, eye, fovy=fovy, height=size, width=size, backend=REF)
    # Analytic disc: the tangent cone's half angle asin(r/d) in NDC units of tan(fovy/2).
    rho = math.tan(math.asin(radius / distance)) / math.tan(fovy / 2) * size / 2
    area = out["mask"].sum().item()
    assert abs(area - math.pi * rho**2) / (math.pi * rho**2) < 0.03
    c = size // 2
    assert out["depth"][0, c, c].item() == pytest.approx(distance - radius, abs=1e-4)
    fg = out["mask"][0] > 0
    # Everywhere on the sphere: depth between the nearest point and the silhouette's depth.
    assert ((out["depth"][0][fg] >= distance - radius - 1e-4) & (out["depth"][0][fg] <= distance)).all()
    assert (out["depth"][0][~fg] == 0).all() and (out["face_idx"][0][~fg] == -1).all()
    assert (out["rgb"][0][~fg] == 0).all()
    assert torch.equal(out["alpha"][0][fg], torch.ones(int(fg.sum())))
    # Visible faces face the camera.
    n = face_normals(v, f)[out["face_idx"][0][fg]]
    assert ((n @ (R[0, 2])) > 0).all()


def test_render_mesh_K_matches_fovy_and_shifts_with_principal_point():
    v, f, R, eye = _sphere_camera(3.0)
    col = torch.rand(642, 3, generator=torch.Generator().manual_seed(8))
    kw = {"height": 24, "width": 32, "backend": REF}
    a = render_mesh(v * 0.5, f, col, R, eye, fovy=math.radians(40), **kw)
    K = fov_to_intrinsics(math.radians(40), 32, 24)
    b = render_mesh(v * 0.5, f, col, R, eye, K=K, **kw)
    torch.testing.assert_close(a["rgb"], b["rgb"], atol=1e-5, rtol=0)
    assert torch.equal(a["face_idx"], b["face_idx"])
    K2 = K.clone()
    K2[0, 2] += 3.0
    K2[1, 2] -= 2.0
    c = render_mesh(v * 0.5, f, col, R, eye, K=K2, **kw)
    assert torch.equal(c["face_idx"][0, :22, 3:], a["face_idx"][0, 2:, :-3])


def test_render_mesh_batch_and_culling():
    v, f, R, eye = _sphere_camera(3.0)
    R2, eye2 = camera_from_spherical(torch.tensor([0.0, 2.0]), torch.tensor([0.3, -0.4]), torch.tensor([3.0, 4.0]))
    col = torch.rand(2, 642, 3, generator=torch.Generator().manual_seed(9))
    both = render_mesh(v[None].expand(2, -1, -1) * 0.5, f, col, R2, eye2, height=16, width=16, backend=REF)
    for b in range(2):
        one = render_mesh(v * 0.5, f, col[b], R2[b], eye2[b], height=16, width=16, backend=REF)
        for k in ("rgb", "alpha", "depth", "face_idx"):
            torch.testing.assert_close(both[k][b], one[k][0])
    # Per-camera intrinsics broadcast a single mesh; Phong's per-pixel eye vectors follow each camera.
    K = torch.stack([fov_to_intrinsics(math.radians(30), 16, 16), fov_to_intrinsics(math.radians(50), 16, 16)])
    K[1, 0, 2] += 1.5
    light = {"direction": torch.tensor([[0.0, 0.0, 1.0], [0.3, 0.2, 1.0]]), "specular": 0.3}
    pair = render_mesh(v * 0.5, f, col[0], R2, eye2, K=K, lighting=light, height=16, width=16, backend=REF)
    assert pair["rgb"].shape == (2, 16, 16, 3)
    for b in range(2):
        one = render_mesh(
            v * 0.5, f, col[0], R2[b], eye2[b], K=K[b], height=16, width=16, backend=REF,
            lighting={"direction": light["direction"][b], "specular": 0.3},
        )  # fmt: skip
        torch.testing.assert_close(pair["rgb"][b], one["rgb"][0])
    # A counter-clockwise (seen from the camera) triangle is drawn, the reversed one is culled.
    tri = torch.tensor([[-0.5, -0.5, -2.0], [0.5, -0.5, -2.0], [0.0, 0.5, -2.0]])
    face = torch.tensor([[0, 1, 2]])
    drawn = render_mesh(tri, face, torch.ones(3, 3), torch.eye(3), torch.zeros(3), height=8, width=8, backend=REF)
    culled = render_mesh(tri, face.flip(1), torch.ones(3, 3), torch.eye(3), torch.zeros(3), height=8, width=8,
                         backend=REF)  # fmt: skip
    assert drawn["mask"].sum() > 10 and culled["mask"].sum() == 0
    torch.testing.assert_close(drawn["depth"][drawn["mask"] > 0], torch.full((int(drawn["mask"].sum()),), 2.0))


def test_render_mesh_lighting_and_texture():
    v, f, R, eye = _sphere_camera(3.0)
    grey = torch.full((642, 3), 0.5)
    kw = {"height": 17, "width": 17, "backend": REF}
    sh = torch.zeros(1, 9)
    sh[0, 0] = 2.0
    flat = render_mesh(v * 0.5, f, grey, R, eye, lighting={"sh": sh}, **kw)
    m = flat["mask"][0] > 0
    torch.testing.assert_close(flat["rgb"][0][m], torch.full((int(m.sum()), 3), 0.5 * 2.0 * SH9_CONSTANTS[0]))
    # Headlight Lambert: brightest at the image centre, where the normal faces the camera.
    lam = render_mesh(v * 0.5, f, grey, R, eye, lighting={"direction": torch.tensor([0.0, 0.0, 1.0])}, **kw)
    assert lam["rgb"][0, 8, 8, 0] == pytest.approx(0.5, abs=2e-3)
    assert lam["rgb"][0][m][:, 0].max() <= 0.5 + 1e-6 and lam["rgb"][0][m][:, 0].min() < 0.35
    # World-frame light along the camera axis equals the camera-frame headlight.
    world = render_mesh(v * 0.5, f, grey, R, eye, lighting={"direction": R[0, 2], "frame": "world"}, **kw)
    torch.testing.assert_close(world["rgb"], lam["rgb"], atol=1e-5, rtol=0)
    # Phong adds a highlight at the centre (mirror direction of the headlight is the view direction).
    ph = render_mesh(v * 0.5, f, grey, R, eye, lighting={"direction": torch.tensor([0.0, 0.0, 1.0]), "specular": 0.3},
                     **kw)  # fmt: skip
    assert ph["rgb"][0, 8, 8, 0] == pytest.approx(0.8, abs=5e-3)
    # A 2x1 texture (left red, right blue) mapped by the vertices' world x.
    tex = torch.tensor([[[1.0, 0.0]], [[0.0, 0.0]], [[0.0, 1.0]]])
    uv = torch.stack([(v[:, 0] > 0).float() * 0.5 + 0.25, torch.full((642,), 0.5)], -1)
    out = render_mesh(v * 0.5, f, None, R, eye, uv=uv, texture=tex, **kw)
    torch.testing.assert_close(out["rgb"][0][m].sum(-1), torch.ones(int(m.sum())), atol=1e-5, rtol=0)
    assert (out["rgb"][0][m][:, 0] > 0.99).any() and (out["rgb"][0][m][:, 2] > 0.99).any()
    with pytest.raises(ValueError):
        render_mesh(v, f, grey, R, eye, lighting={"sh": sh, "direction": torch.ones(3)}, **kw)
    with pytest.raises(ValueError):
        render_mesh(v, f, grey, R, eye, lighting={"colour": 1}, **kw)


def test_silhouette_iou_gradients():
    v, f, R, eye = _sphere_camera(3.0)
    target = render_silhouette(v * 0.5, f, R, eye, height=32, width=32, backend=REF).detach()
    verts = (v * 0.4 + torch.tensor([0.05, 0.0, 0.0])).requires_grad_()
    alpha = render_mesh(verts, f, torch.ones(642, 3), R, eye, height=32, width=32, backend=REF)["alpha"]
    iou_loss = 1 - (alpha * target).sum() / (alpha + target - alpha * target).sum()
    iou_loss.backward()
    assert torch.isfinite(verts.grad).all() and verts.grad.abs().sum() > 0
    # Growing the shrunken sphere must reduce the loss: the gradient points inwards on average.
    assert (verts.grad * v).sum() < 0


def test_render_mesh_gradcheck_float64():
    g = torch.Generator().manual_seed(10)
    verts = torch.tensor([[0.0, 0.0, 0.45], [0.5, -0.2, -0.1], [-0.45, -0.3, 0.0], [0.05, 0.5, -0.05]],
                         dtype=torch.float64)  # fmt: skip
    verts = (verts + 0.02 * torch.randn(4, 3, generator=g, dtype=torch.float64)).requires_grad_()
    faces = torch.tensor([[0, 1, 3], [0, 3, 2], [0, 2, 1], [1, 2, 3]])
    colors = torch.rand(4, 3, generator=g, dtype=torch.float64, requires_grad=True)
    sh = torch.randn(1, 9, generator=g, dtype=torch.float64, requires_grad=True)
    R = look_at_rotation(torch.tensor([0.3, 0.4, 2.0], dtype=torch.float64), torch.zeros(3, dtype=torch.float64))

    def fn(v, c, s):
        out = render_mesh(v, faces, c, R, torch.tensor([0.3, 0.4, 2.0], dtype=torch.float64), fovy=math.radians(40),
                          height=9, width=9, lighting={"sh": s}, sigmainv=300.0, boxlen=0.3, backend=REF)  # fmt: skip
        return out["rgb"], out["alpha"], out["depth"]

    assert fn(verts, colors, sh)[0].abs().sum() > 0
    assert torch.autograd.gradcheck(fn, (verts, colors, sh), atol=1e-6, rtol=1e-4)


def test_face_signed_volumes_sum_to_a_cube_volume_and_flip_with_winding():
    from dibr_ros.perception.synthetic import box_mesh

    v, f = box_mesh()  # [-1, 1]^3, outward-wound
    for shift in (np.zeros(3), np.array([3.0, -2.0, 5.0])):  # closed mesh: the origin does not matter
        vol = face_signed_volumes(0.5 * v + shift, f)  # unit cube
        assert vol.shape == (len(f),)
        assert vol.sum() == pytest.approx(1.0, rel=1e-12)
    assert face_signed_volumes(v, f[:, ::-1]).sum() == pytest.approx(-8.0, rel=1e-12)
