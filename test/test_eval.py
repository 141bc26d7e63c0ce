"""dibr_ros.eval: metrics against analytic cases, baselines, evaluation protocol and CLI."""

import math

import numpy as np
import pytest
import torch

from dibr_ros.eval import inside_mesh, mesh_metrics, silhouette_iou
from dibr_ros.eval.baselines import baseline_shape, fit_sphere


@pytest.fixture(autouse=True)
def _cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("DIBR_ROS_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


def sphere(r, center=(0, 0, 0), resolution=48):
    import open3d as o3d

    m = o3d.geometry.TriangleMesh.create_sphere(r, resolution=resolution)
    return np.asarray(m.vertices) + np.asarray(center), np.asarray(m.triangles).astype(np.int64)


def cube(side=1.0, offset=(0, 0, 0)):
    import open3d as o3d

    m = o3d.geometry.TriangleMesh.create_box(side, side, side)
    return np.asarray(m.vertices) + np.asarray(offset), np.asarray(m.triangles).astype(np.int64)


def test_concentric_spheres():
    r1, r2 = 0.8, 1.0
    m = mesh_metrics(sphere(r1), sphere(r2), taus=(0.1, 0.3))
    assert m["chamfer_l1"] == pytest.approx(r2 - r1, abs=0.005)
    # Every point is exactly |r1 - r2| = 0.2 away: F = 0 below the gap, 1 above it.
    assert m["fscore@0.10"] == 0 and m["precision@0.10"] == 0 and m["recall@0.10"] == 0
    assert m["fscore@0.30"] == 1 and m["precision@0.30"] == 1 and m["recall@0.30"] == 1
    assert m["iou_3d"] == pytest.approx((r1 / r2) ** 3, abs=0.015)
    near = mesh_metrics(sphere(0.97), sphere(1.0))
    assert near["fscore@0.05"] == 1 and near["fscore@0.10"] == 1


def test_cube_and_shifted_cube():
    for s in (0.25, 0.5):
        m = mesh_metrics(cube(), cube(offset=(s, 0, 0)))
        assert m["iou_3d"] == pytest.approx((1 - s) / (1 + s), abs=0.01)
    m = mesh_metrics(cube(), cube(offset=(0.3, 0.3, 0.3)))
    assert m["iou_3d"] == pytest.approx(0.7**3 / (2 - 0.7**3), abs=0.01)


def test_identical_meshes():
    for shape in (sphere(1.0, resolution=20), cube()):
        m = mesh_metrics(shape, shape)
        assert m["chamfer_l1"] < 1e-6
        assert m["fscore@0.05"] == m["fscore@0.10"] == 1
        assert m["iou_3d"] == 1


def test_inside_test_handles_overlapping_parts_and_holes():
    # Two overlapping cubes in one mesh (like pybullet's convex decompositions): plain parity would call
    # the overlap outside; the union has volume 1 + 1 - 0.5.
    a, fa = cube()
    b, fb = cube(offset=(0.5, 0, 0))
    v, f = np.concatenate([a, b]), np.concatenate([fa, fb + len(a)])
    q = np.random.default_rng(0).uniform([-0.1, -0.1, -0.1], [1.6, 1.1, 1.1], size=(40000, 3))
    inside = inside_mesh(q, v, f)
    truth = (q[:, 1] > 0) & (q[:, 1] < 1) & (q[:, 2] > 0) & (q[:, 2] < 1) & (q[:, 0] > 0) & (q[:, 0] < 1.5)
    assert (inside == truth).mean() > 0.999
    # A sphere with a missing face still has an inside.
    sv, sf = sphere(1.0, resolution=20)
    q = np.random.default_rng(1).uniform(-1.2, 1.2, size=(20000, 3))
    truth = np.linalg.norm(q, axis=1) < 1.0
    holed = inside_mesh(q, sv, sf[1:])
    assert (holed == truth).mean() > 0.99


def test_point_cloud_prediction():
    rng = np.random.default_rng(0)
    d = rng.normal(size=(8000, 3))
    pts = 0.9 * d / np.linalg.norm(d, axis=1, keepdims=True)
    m = mesh_metrics(pts, sphere(1.0))
    assert math.isnan(m["iou_3d"])
    assert m["chamfer_l1"] == pytest.approx(0.1, abs=0.01)
    assert m["precision@0.05"] == 0 and m["precision@0.10"] > 0.99
    with pytest.raises(ValueError):
        mesh_metrics(sphere(1.0), pts)
    with pytest.raises(ValueError):
        mesh_metrics((pts, np.array([[0, 1, 10**6]])), sphere(1.0))


def _camera(distance, n=1):
    R = torch.diag(torch.tensor([1.0, 1.0, 1.0]))[None].expand(n, 3, 3)
    return R, torch.tensor([[0.0, 0.0, distance]]).expand(n, 3)


def test_silhouette_iou_concentric_spheres():
    d, size = 4.0, 96
    r1, r2 = 0.7, 1.0
    iou = silhouette_iou(sphere(r1), sphere(r2), _camera(d, 2), size=size)
    # Perspective disc radius ~ tan(asin(r / d)): IoU = ratio of disc areas.
    expect = (math.tan(math.asin(r1 / d)) / math.tan(math.asin(r2 / d))) ** 2
    np.testing.assert_allclose(iou, expect, atol=0.03)
    assert (silhouette_iou(cube(), cube(), _camera(4.0), size=48) == 1).all()
    assert np.isnan(silhouette_iou(np.zeros((5, 3)), sphere(1.0), _camera(d), size=48)).all()


def _render_sphere_view(size=96, distance=4.0):
    from dibr_ros.data import views

    v, f = sphere(1.0)
    R, eye = _camera(distance)
    out = views.render_batch(torch.as_tensor(v, dtype=torch.float32)[None], torch.as_tensor(f)[None],
                             torch.tensor([len(f)]), torch.ones(1, len(v), 3), R, eye, None, size)
    return out["depth"][0].numpy(), out["mask"][0].numpy() > 0, views.intrinsics(size).double().numpy()


def test_baselines_on_a_sphere():
    depth, mask, K = _render_sphere_view()
    center = np.array([0, 0, 4.0])
    gt = sphere(1.0)
    c, r = fit_sphere(depth, mask, K)
    np.testing.assert_allclose(c, center, atol=0.05)
    assert r == pytest.approx(1.0, abs=0.05)
    pts, none = baseline_shape("depth", depth, mask, K, center)
    assert none is None
    m = mesh_metrics(pts, gt)
    # The visible cap from distance 4 (cos = 1/4) is (1 - 1/4) / 2 = 37.5% of the sphere, all on the surface;
    # mirrored, twice that (a little less: pixels sample the cap sparsely near its grazing rim).
    assert m["precision@0.05"] > 0.99 and 0.33 < m["recall@0.05"] < 0.45
    mm = mesh_metrics(baseline_shape("mirror", depth, mask, K, center), gt)
    assert mm["precision@0.05"] > 0.95 and 0.66 < mm["recall@0.05"] < 0.85
    ms = mesh_metrics(baseline_shape("sphere", depth, mask, K, center), gt)
    assert ms["fscore@0.10"] > 0.95 and ms["iou_3d"] > 0.85
    mh = mesh_metrics(baseline_shape("hull", depth, mask, K, center, gt=gt), gt)
    assert mh["fscore@0.05"] == 1 and mh["iou_3d"] > 0.99
    with pytest.raises(ValueError):
        baseline_shape("nosuch", depth, mask, K, center)


class _UnitSpherePredictor:
    """Predictor contract stand-in: a unit ico-sphere for every crop."""

    def predict(self, rgb, mask):
        from types import SimpleNamespace

        from dibr_ros.render.mesh import ico_sphere

        v, f = ico_sphere(2)
        return SimpleNamespace(vertices=v[None].expand(len(rgb), -1, -1), faces=f,
                               colors=torch.ones(len(rgb), len(v), 3))


def test_evaluate_scores_a_predictor_like_the_metrics():
    from dibr_ros.data import library
    from dibr_ros.eval.evaluate import PredictorMethod, eval_items, evaluate
    from dibr_ros.render.mesh import ico_sphere

    items = list(eval_items("ood", n_views=3, size=32, max_objects=1))
    res = evaluate(PredictorMethod(_UnitSpherePredictor()), items, n_inputs=2, n_iou_points=5000, progress=False)
    assert res["n_objects"] == 1 and res["n_views"] == 2
    obj = library.load_object(items[0]["name"])
    v, f = ico_sphere(2)
    # A sphere is rotation invariant: the score equals the direct comparison in the object frame.
    direct = mesh_metrics((library.normalize(v.numpy())[0], f.numpy()), (obj.vertices, obj.faces), n_iou_points=5000)
    rec = res["records"][0]
    assert rec["chamfer_l1"] == pytest.approx(direct["chamfer_l1"], rel=0.05)
    assert rec["iou_3d"] == pytest.approx(direct["iou_3d"], abs=0.05)
    assert 0 < rec["sil_iou_input"] <= 1 and 0 < rec["sil_iou_novel"] <= 1


def test_recolor_changes_the_base_colour_only():
    from dibr_ros.data import library
    from dibr_ros.eval.evaluate import eval_items, recolor

    obj = library.load_object("soccerball")  # black and white patches
    assert recolor(obj, "none") is obj
    black = recolor(obj, "black")
    assert np.array_equal(black.vertices, obj.vertices) and np.array_equal(black.faces, obj.faces)
    assert np.allclose(black.colors.mean(0), 0.08, atol=1e-4)
    # the object's own colour variation is kept, in proportion
    assert np.allclose(black.colors * obj.colors.mean(0), obj.colors * 0.08, atol=1e-5)
    assert black.colors.std(0).min() > 0.01
    a, b = recolor(obj, "random", seed=3), recolor(obj, "random", seed=3)
    assert np.array_equal(a.colors, b.colors) and not np.array_equal(a.colors, recolor(obj, "random", 4).colors)
    with pytest.raises(ValueError, match="recolor mode"):
        recolor(obj, "purple")
    # the same cameras and lights, other colours: masks equal, object pixels grey where white
    plain = next(iter(eval_items("ood", n_views=2, size=32, max_objects=1)))
    grey = next(iter(eval_items("ood", n_views=2, size=32, max_objects=1, recolor_mode="white")))
    assert torch.equal(plain["mask"], grey["mask"]) and not torch.equal(plain["rgb"], grey["rgb"])
    px = grey["rgb"][grey["mask"] > 0.5]
    assert (px.amax(-1) - px.amin(-1)).median() < 0.05
    with pytest.raises(ValueError, match="shard directory"):
        next(iter(eval_items("ood", shard_dir="/nonexistent", recolor_mode="black")))


def test_pipeline_method_completes_a_sphere_with_the_depth():
    """The node's shape (placement + completion with the true depth, at real size) fits the object better
    than the network's sphere alone; RGB-only has nothing to complete with."""
    from dibr_ros.eval.evaluate import PipelineMethod, PredictorMethod, eval_items, evaluate

    items = list(eval_items("val", n_views=2, size=128, max_objects=4))
    kw = dict(n_inputs=1, n_iou_points=5000, progress=False, silhouettes=False)
    alone = evaluate(PredictorMethod(_UnitSpherePredictor()), items, **kw)["summary"]  # ignores depth anyway
    node = evaluate(PipelineMethod(_UnitSpherePredictor(), "full"), items, **kw)["summary"]
    assert node["chamfer_l1"] < 0.85 * alone["chamfer_l1"]  # measured 0.318 vs 0.435
    assert node["fscore@0.10"] > 1.5 * alone["fscore@0.10"]  # measured 0.095 vs 0.041
    with pytest.raises(ValueError, match="depth"):
        PipelineMethod(_UnitSpherePredictor(), "none")


def test_eval_cli(capsys):
    from dibr_ros.eval.__main__ import main

    assert main(["--predictor", "baseline:depth", "--split", "ood", "--max-objects", "1", "--views", "2",
                 "--inputs", "1", "--size", "32", "--iou-points", "1000"]) == 0
    out = capsys.readouterr().out
    assert "objects 1 views 1" in out and "chamfer_l1" in out
    for bad in (["--predictor", "baseline:nope", "--split", "test"], ["--predictor", "nomodule", "--split", "test"],
                ["--predictor", "no_such_module_x:f", "--split", "test"],
                ["--predictor", "baseline:depth", "--split", "test", "--inputs", "0"]):
        assert main(bad) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error:")


def test_outer_surface_leaves_out_walls_inside_the_solid():
    # Two unit cubes overlapping by half: the union is a 1.5 x 1 x 1 box. Its boundary has area 8 of the
    # two cubes' 12; the walls at x = 0.5 and x = 1 lie inside the solid.
    a, fa = cube()
    b, fb = cube(offset=(0.5, 0, 0))
    v, f = np.concatenate([a, b]), np.concatenate([fa, fb + len(a)])
    from dibr_ros.eval.metrics import outer_surface_samples

    p = outer_surface_samples(v, f, 6000, np.random.default_rng(0))
    assert p.shape == (6000, 3)
    lo, hi = np.array([0.0, 0, 0]), np.array([1.5, 1, 1])
    on_box = np.min(np.concatenate([np.abs(p - lo), np.abs(p - hi)], 1), axis=1)
    assert on_box.max() < 1e-9  # every sample is on the union's boundary
    # Uniform over that boundary: the two 1 x 1 end faces hold 2/8 of its area.
    ends = (np.abs(p[:, 0]) < 1e-9) | (np.abs(p[:, 0] - 1.5) < 1e-9)
    assert ends.mean() == pytest.approx(0.25, abs=0.02)
    # A cloud on the union's boundary: full recall against the outer surface, not against every face.
    cloud = outer_surface_samples(v, f, 20000, np.random.default_rng(1))
    outer = mesh_metrics(cloud, (v, f), taus=(0.05,), n_points=4000, gt_surface="outer")
    every = mesh_metrics(cloud, (v, f), taus=(0.05,), n_points=4000)
    assert outer["recall@0.05"] > 0.999 and outer["precision@0.05"] > 0.999
    # Against every face: the two inner walls (2 of the 12 unit faces) are missed except within 0.05 of
    # their edges on the boundary: recall 1 - (2/12) * 0.9 * 0.9.
    assert every["recall@0.05"] == pytest.approx(1 - 2 / 12 * 0.81, abs=0.02)
    # One closed part: nothing to leave out, same metrics up to sampling.
    single = mesh_metrics(sphere(0.97), sphere(1.0), gt_surface="outer")
    plain = mesh_metrics(sphere(0.97), sphere(1.0))
    assert single["fscore@0.05"] == pytest.approx(plain["fscore@0.05"], abs=0.01)
    with pytest.raises(ValueError, match="gt_surface"):
        mesh_metrics(cloud, (v, f), gt_surface="inner")
