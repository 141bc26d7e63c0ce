"""dibr_ros.data: library splits and loading, mesh cleaning, multi-view renders, shards, CLI."""

import json
import os

import numpy as np
import pytest
import torch

from dibr_ros.data import library, shards, views
from dibr_ros.data.meshio import clean_mesh


@pytest.fixture(autouse=True)
def _cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("DIBR_ROS_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


def _ids(names):
    return {int(n.split("_")[1]) for n in names if n.startswith("random_")}


def test_splits_are_disjoint_and_no_heldout_object_leaks_into_train():
    sets = {s: set(library.list_objects(s)) for s in library.SPLITS}
    assert len(_ids(sets["train"])) == 800 and len(_ids(sets["val"])) == 100 and len(_ids(sets["test"])) == 100
    for a in library.SPLITS:
        for b in library.SPLITS:
            if a < b:
                assert not sets[a] & sets[b], (a, b)
    assert max(_ids(sets["train"])) < 800 <= min(_ids(sets["val"]))
    assert max(_ids(sets["val"])) < 900 <= min(_ids(sets["test"]))
    # Training never sees a named (ood) object or a held-out random_urdfs file, whatever its name.
    train_sources = {library.load_object(n).source for n in sorted(sets["train"])[::40]}
    held_out = {library.load_object(n).source for n in sorted(sets["ood"] | sets["val"] | sets["test"])[::7]}
    assert not train_sources & held_out
    assert {"mug", "duck", "teddy", "bunny", "torus", "lego", "jenga"} <= sets["ood"]
    n_prim = len(library.PRIMITIVE_KINDS) * library.PRIMITIVES_PER_KIND
    assert sum(n.startswith("prim_") for n in sets["train"]) == n_prim


def test_random_urdf_loads_with_urdf_scale_and_colour():
    obj = library.load_object("random_123")
    root = os.path.join(library.data_root(), "random_urdfs", "123")
    raw = np.array([[float(t) for t in line.split()[1:4]] for line in open(os.path.join(root, "123.obj"))
                    if line.startswith("v ")])
    center = 0.5 * (raw.min(0) + raw.max(0))
    radius = np.linalg.norm(raw - center, axis=1).max()
    urdf = open(os.path.join(root, "123.urdf")).read()
    rgba = [float(t) for t in urdf.split('color rgba="')[1].split('"')[0].split()]
    assert obj.split == "train"
    assert obj.scale_m == pytest.approx(0.015 * radius, rel=1e-5)
    np.testing.assert_allclose(0.5 * (obj.vertices.min(0) + obj.vertices.max(0)), 0, atol=1e-6)
    assert np.linalg.norm(obj.vertices, axis=1).max() == pytest.approx(1.0, abs=1e-6)
    np.testing.assert_allclose(obj.colors, np.broadcast_to(rgba[:3], obj.colors.shape), atol=1e-6)
    assert obj.vertices.dtype == np.float32 and obj.faces.dtype == np.int64
    # Same file read again from the on-disk cache gives the same arrays.
    library.load_object.cache_clear()
    again = library.load_object("random_123")
    np.testing.assert_array_equal(again.vertices, obj.vertices)
    np.testing.assert_array_equal(again.faces, obj.faces)


def _edges_directed(f):
    return np.concatenate([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]])


def test_clean_mesh_merges_duplicates_drops_degenerates_and_orients_outwards():
    import open3d as o3d

    box = o3d.geometry.TriangleMesh.create_box(1, 1, 1)
    v, f = np.asarray(box.vertices), np.asarray(box.triangles)
    soup = v[f].reshape(-1, 3)  # every face with its own vertices (36 vertices)
    faces = np.arange(36).reshape(12, 3)
    faces[3] = faces[3][::-1]  # one face wound the wrong way
    faces = np.concatenate([faces, faces[:1], [[0, 0, 1]], [[0, 1, 2]]])  # duplicate + degenerate + copy
    faces[-1] = faces[0]
    cols = np.random.default_rng(0).random((36, 3))
    cv, cf, cc = clean_mesh(soup, faces, cols)
    assert cv.shape == (8, 3) and cf.shape == (12, 3) and cc.shape == (8, 3)
    e = _edges_directed(cf)
    # Closed and consistently wound: every directed edge once, its reverse exactly once.
    assert len({tuple(x) for x in e}) == 36
    assert {tuple(x) for x in e} == {tuple(x[::-1]) for x in e}
    tri = cv[cf]
    vol = np.einsum("ij,ij->i", tri[:, 0] - 0.5, np.cross(tri[:, 1] - 0.5, tri[:, 2] - 0.5)).sum() / 6
    assert vol == pytest.approx(1.0, rel=1e-9)


@pytest.mark.parametrize("kind", library.PRIMITIVE_KINDS)
def test_primitives_are_closed_normalised_and_outward(kind):
    obj = library.primitive(kind, np.random.default_rng(3))
    v, f = obj.vertices.astype(np.float64), obj.faces
    assert np.linalg.norm(v, axis=1).max() == pytest.approx(1.0, abs=1e-5)
    e = {tuple(x) for x in _edges_directed(f)}
    assert e == {(b, a) for a, b in e}
    tri = v[f]
    assert np.einsum("ij,ij->i", tri[:, 0], np.cross(tri[:, 1], tri[:, 2])).sum() > 0
    assert 0.01 < obj.scale_m < 0.2
    assert obj.colors.min() >= 0 and obj.colors.max() <= 1
    again = library.load_object(f"prim_{kind}_005")
    assert library.load_object(f"prim_{kind}_005") is again
    with pytest.raises(ValueError):
        library.primitive("torus", np.random.default_rng(0))


def test_unknown_names_and_splits_raise():
    for bad in ("random_1000", "random_12", "prim_box_999", "nothing"):
        with pytest.raises(ValueError):
            library.load_object(bad)
    with pytest.raises(ValueError):
        library.list_objects("training")


def test_load_split_arrays_pads_consistently():
    a = library.load_split_arrays("val", max_objects=5)
    b = library.load_split_arrays("val", max_objects=5)  # second call: from the cache file
    assert a["names"] == b["names"] == library.list_objects("val")[:5]
    for i, name in enumerate(a["names"]):
        o = library.load_object(name)
        nv, nf = int(a["num_vertices"][i]), int(a["num_faces"][i])
        np.testing.assert_array_equal(b["vertices"][i, :nv], o.vertices)
        np.testing.assert_array_equal(b["faces"][i, :nf], o.faces)
        assert (b["faces"][i, nf:] == 0).all()


def _sample(size=48, n_views=3, seed=1, names=("random_801", "prim_cone_002")):
    objs = [library.load_object(n) for n in names]
    sampler = views.MultiViewSampler(objs, views=n_views, size=size, seed=seed)
    return objs, sampler, sampler.sample(len(objs), index=torch.arange(len(objs)))


def test_multiview_sample_frames_depth_and_relative_cameras_agree():
    objs, sampler, s = _sample()
    b, nv, size = 2, 3, 48
    assert s["rgb"].shape == (b, nv, size, size, 3) and s["mask"].shape == (b, nv, size, size)
    # Whole object in frame: no silhouette pixel on the border.
    m = s["mask"]
    assert m.sum() > 0 and m[..., 0, :].sum() == m[..., -1, :].sum() == m[..., :, 0].sum() == m[..., :, -1].sum() == 0
    assert torch.equal(m, (s["depth"] > 0).float())
    K = s["K"][0, 0].double().numpy()
    for i, obj in enumerate(objs):
        # Depth of view 0 back-projected into the view frame lies on the ground truth in that frame.
        vr = s["view_rot"][i, 0].double().numpy()
        gt_view = obj.vertices.astype(np.float64) @ vr.T
        d = s["depth"][i, 0].double().numpy()
        vv, uu = np.nonzero(d > 0)
        z = d[vv, uu]
        pts = np.stack([(uu - K[0, 2]) / K[0, 0] * z, (vv - K[1, 2]) / K[1, 1] * z, z], 1) - [0, 0, views.DISTANCE]
        from dibr_ros.eval.metrics import distance_to_shape

        dist = distance_to_shape(pts, gt_view, obj.faces)
        assert np.median(dist) < 0.01 and np.quantile(dist, 0.9) < 0.05
        # The view-0-frame ground truth rendered with the relative cameras reproduces every view's mask.
        n = len(obj.faces)
        out = views.render_batch(torch.as_tensor(gt_view, dtype=torch.float32)[None].expand(nv, -1, -1),
                                 torch.as_tensor(obj.faces)[None].expand(nv, -1, -1), torch.full((nv,), n),
                                 torch.ones(nv, len(gt_view), 3), s["R_rel"][i], s["eye_rel"][i], None, size)
        agree = (out["mask"] == s["mask"][i]).float().mean()
        assert agree > 0.995
    torch.testing.assert_close(s["R_rel"][:, 0], torch.diag(torch.tensor([1.0, -1, -1])).expand(b, 3, 3),
                               atol=1e-5, rtol=0)
    torch.testing.assert_close(s["eye_rel"][:, 0], torch.tensor([0, 0, -views.DISTANCE]).expand(b, 3),
                               atol=1e-5, rtol=0)


def test_jitter_colors_recolours_so_hue_does_not_give_the_shape_away():
    from dibr_ros.render.mesh import ico_sphere

    v = ico_sphere(3)[0].expand(400, -1, -1)
    orange = torch.tensor([0.9, 0.5, 0.1]).expand(400, v.shape[1], 3)

    def jitter(seed, **kw):
        return views.jitter_colors(v, orange, torch.Generator().manual_seed(seed), **kw)

    assert torch.equal(jitter(5), jitter(5))
    out = jitter(5)
    assert out.shape == orange.shape and out.min() >= 0 and out.max() <= 1
    # Gain (0.75-1.25 per channel) and a common shift keep orange's channel order r > g > b; a new base
    # colour (p_recolor) does not, for about 5/6 of the recoloured objects.
    def reordered(c):
        m = c.mean(1)
        return ((m[:, 0] <= m[:, 1]) | (m[:, 1] <= m[:, 2])).float().mean().item()

    assert reordered(jitter(1, p_recolor=0.0, p_texture=0.0)) == 0.0
    assert 0.6 < reordered(jitter(1, p_recolor=1.0, p_texture=0.0)) < 0.95
    # Without a texture a uniform object stays uniform; each texture (stripes, noise, spots) varies it.
    assert jitter(2, p_texture=0.0).std(1).amax().item() < 1e-6
    assert (jitter(2, p_texture=1.0).std(1).amax(-1) > 0.01).float().mean().item() > 0.95


def test_render_batch_matches_toolkit_render_mesh_unlit():
    from dibr_ros.render.renderer import render_mesh

    obj = library.load_object("random_805")
    cams = views.sample_cameras(2, torch.Generator().manual_seed(0))
    v = torch.as_tensor(obj.vertices)[None].expand(2, -1, -1)
    c = torch.as_tensor(obj.colors)[None].expand(2, -1, -1)
    f = torch.as_tensor(obj.faces)
    ours = views.render_batch(v, f[None].expand(2, -1, -1), torch.full((2,), len(f)), c, cams["R"], cams["eye"],
                              None, 40)
    ref = render_mesh(v, f, c, cams["R"], cams["eye"], fovy=views.FOVY, height=40, width=40)
    torch.testing.assert_close(ours["mask"], ref["mask"])
    torch.testing.assert_close(ours["rgb"], ref["rgb"].clamp(0, 1), atol=1e-5, rtol=0)
    # Ours interpolates 1/z (perspective-correct depth); the toolkit interpolates z in screen space.
    on = ref["mask"] > 0
    torch.testing.assert_close(ours["depth"][on], ref["depth"][on], atol=0.02, rtol=0)


def test_sampler_is_deterministic_and_resumable():
    objs = [library.load_object(n) for n in ("random_802", "random_803", "prim_box_001")]
    a = views.MultiViewSampler(objs, views=2, size=24, seed=5)
    b = views.MultiViewSampler(objs, views=2, size=24, seed=5)
    first = a.sample(2)
    state = a.state_dict()
    second = a.sample(2)
    assert torch.equal(first["rgb"], b.sample(2)["rgb"])
    b.load_state_dict(state)
    again = b.sample(2)
    assert torch.equal(second["rgb"], again["rgb"]) and torch.equal(second["object_index"], again["object_index"])
    assert not torch.equal(first["rgb"], second["rgb"])


def test_shards_round_trip_manifest_and_reproducibility(tmp_path):
    path = shards.write_shards("ood", str(tmp_path / "a"), size=24, n_views=2, seed=3, max_objects=3,
                               objects_per_shard=2, progress=False)
    man = json.load(open(path))
    assert man["split"] == "ood" and man["seed"] == 3 and man["views"] == 2 and man["size"] == 24
    assert man["render_version"] == views.RENDER_VERSION and len(man["shards"]) == 2
    ds = shards.ShardDataset(str(tmp_path / "a"))
    assert len(ds) == 3 and ds.names == library.list_objects("ood")[:3]
    item = ds[2]
    direct = shards.render_object(library.load_object(ds.names[2]), 2, 24, 3)
    torch.testing.assert_close(item["rgb"], (direct["rgb"][0] * 255).round() / 255)
    torch.testing.assert_close(item["depth"], direct["depth"][0])
    torch.testing.assert_close(item["R_rel"], direct["R_rel"][0])
    # One object rendered alone equals the same object inside a bigger run (seed per object name).
    shards.write_shards("ood", str(tmp_path / "b"), size=24, n_views=2, seed=3, max_objects=1, progress=False)
    torch.testing.assert_close(shards.ShardDataset(str(tmp_path / "b"))[0]["rgb"], ds[0]["rgb"])
    rolled = shards.ShardDataset(str(tmp_path / "a"), input_view=1)[2]
    torch.testing.assert_close(rolled["rgb"][0], item["rgb"][1])
    batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=2)))
    assert batch["rgb"].shape == (2, 2, 24, 24, 3)
    with pytest.raises(ValueError):
        shards.ShardDataset(str(tmp_path))


def test_cli_render_and_bad_arguments(tmp_path, capsys):
    from dibr_ros.data.__main__ import main

    assert main(["render", "--split", "ood", "--out", str(tmp_path / "s"), "--size", "16", "--views", "1",
                 "--max-objects", "1"]) == 0
    assert os.path.isfile(tmp_path / "s" / "manifest.json")
    capsys.readouterr()
    assert main(["render", "--split", "val", "--out", str(tmp_path / "x"), "--max-objects", "0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:")
    with pytest.raises(SystemExit) as e:
        main(["render", "--split", "nosuch", "--out", str(tmp_path)])
    assert e.value.code != 0
