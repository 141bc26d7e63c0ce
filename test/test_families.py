"""Scene families of the end-to-end benchmark: seeded, their depth conditions real, the ablation a sphere."""

import numpy as np
import pytest

pytest.importorskip("pybullet")

from dibr_ros.sim.families import FAMILIES, apply_depth, family_configs
from dibr_ros.sim.scene import TABLE_TOP_Z, TabletopScene


def test_family_configs_are_seeded():
    for name, fam in FAMILIES.items():
        a, ca = family_configs(name, 11)
        b, cb = family_configs(name, 11)
        assert a == b and ca == cb
        assert ca.elevation_deg == fam.elevation_deg and fam.distance[0] <= ca.distance <= fam.distance[1]
        assert a.lift == fam.lift and a.objects == fam.objects
    d = {family_configs("elev15", s)[1].distance for s in range(6)}
    assert len(d) == 6  # the distance is drawn per scene


@pytest.fixture(scope="module")
def lifted_scene():
    scene_cfg, cam = family_configs("lifted", 3, max_objects=2, renderer="tiny")
    with TabletopScene(scene_cfg, cam) as scene:
        yield scene, scene.render(t=0.0)


def test_lifted_object_is_held_above_the_table(lifted_scene):
    scene, frame = lifted_scene
    name, h = scene.lifted
    assert 0.10 <= h <= 0.20
    lifted = frame.objects[0]
    assert lifted.name == name
    world = (np.linalg.inv(frame.T_cam_world) @ np.c_[lifted.vertices, np.ones(len(lifted.vertices))].T).T
    assert world[:, 2].min() > TABLE_TOP_Z + 0.09  # nothing under it
    for o in frame.objects[1:]:
        w = (np.linalg.inv(frame.T_cam_world) @ np.c_[o.vertices, np.ones(len(o.vertices))].T).T
        assert w[:, 2].min() < TABLE_TOP_Z + 0.02  # the others rest


def test_depth_conditions(lifted_scene):
    _, frame = lifted_scene
    full, none = apply_depth(frame, "lifted", 0)
    assert full is frame.depth and none is None
    assert apply_depth(frame, "rgb_only", 0) == (None, None)
    depth, label = apply_depth(frame, "no_depth", 5)
    again, label2 = apply_depth(frame, "no_depth", 5)
    assert label == label2 and np.array_equal(np.isnan(depth), np.isnan(again))
    gone = frame.labels == label
    assert gone.sum() >= 300 and np.isnan(depth[gone]).all()  # really no depth on that object
    keep = ~gone
    np.testing.assert_array_equal(np.nan_to_num(depth[keep], nan=-1), np.nan_to_num(frame.depth[keep], nan=-1))


def test_household_objects_stand_upright():
    from dibr_ros.sim.scene import SceneConfig

    with TabletopScene(SceneConfig(objects="hh_test", seed=1, min_objects=1, max_objects=1, renderer="tiny")) as s:
        frame = s.render()
        o = frame.objects[0]
        w = (np.linalg.inv(frame.T_cam_world) @ np.c_[o.vertices, np.ones(len(o.vertices))].T).T[:, :3]
        from dibr_ros.data.household import household_by_name

        v, _, _ = household_by_name(o.name)
        # upright: the world height of the object is its own z extent (tall things stay tall)
        assert np.ptp(w[:, 2]) == pytest.approx(np.ptp(v[:, 2]), rel=0.05, abs=0.005)


def test_ablation_replaces_the_network():
    import importlib.util
    import os

    spec = importlib.util.spec_from_file_location(
        "e2e_bench", os.path.join(os.path.dirname(__file__), "..", "bench", "e2e_bench.py"))
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    from dibr_ros.model.predictor import Predictor
    from dibr_ros.perception import synthetic as S

    pipes = bench.make_pipelines(None, "cpu", "elev35")
    assert isinstance(pipes["node"].predictor, Predictor)
    assert isinstance(pipes["ablation"].predictor, S.SpherePredictor)
    frame, _, K, _ = S.tabletop_scene(2, seed=4)
    a = pipes["ablation"].predictor.predict(np.zeros((1, 16, 16, 3), np.uint8), np.ones((1, 16, 16), bool))
    r = np.linalg.norm(np.asarray(a.vertices[0]), axis=1)
    np.testing.assert_allclose(r, r.mean(), rtol=1e-5)  # a sphere, whatever the image
    res_n = pipes["node"].process(frame["rgb"], K, frame["depth"])
    res_a = pipes["ablation"].process(frame["rgb"], K, frame["depth"])
    assert len(res_n.objects) == len(res_a.objects) == 2
    assert any(not np.allclose(x.vertices, y.vertices, atol=1e-3) for x, y in zip(res_n.objects, res_a.objects))
    assert bench.make_pipelines(None, "cpu", "rgb_only")["node"].config.default_object_size > 0
