"""The demo: its launch file (launch is not installable here: executed against recording stand-ins),
its evaluation pieces, and its failure path (one-line reason, non-zero exit, children cleaned up)."""

import ast
import os
import subprocess
import sys
import time
import types

import numpy as np
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LAUNCH = os.path.join(REPO, "launch", "demo.launch.py")


class _Rec:
    def __init__(self, *args, **kwargs):
        self.args, self.kwargs = args, kwargs


def _run_launch_file(monkeypatch):
    """Execute generate_launch_description() with launch/launch_ros replaced by recording classes."""
    mods = {
        "launch": dict(LaunchDescription=_Rec),
        "launch.actions": dict(DeclareLaunchArgument=_Rec),
        "launch.conditions": dict(IfCondition=_Rec),
        "launch.substitutions": dict(LaunchConfiguration=_Rec, PathJoinSubstitution=_Rec),
        "launch_ros.actions": dict(Node=_Rec),
        "launch_ros.substitutions": dict(FindPackageShare=_Rec),
        "launch_ros": {},
    }
    for name, attrs in mods.items():
        m = types.ModuleType(name)
        m.__dict__.update(attrs)
        monkeypatch.setitem(sys.modules, name, m)
    ns: dict = {}
    with open(LAUNCH) as f:
        exec(compile(f.read(), LAUNCH, "exec"), ns)
    return ns["generate_launch_description"]()


def _sim_parameter_names() -> set:
    tree = ast.parse(open(os.path.join(REPO, "dibr_ros", "ros", "sim_camera.py")).read())
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "params":
            return {t.elts[0].value for t in node.value.elts}
    raise AssertionError("sim_camera.py has no params table")


def test_demo_launch_file(monkeypatch):
    from dibr_ros.ros.perception_node import PARAMETERS

    ld = _run_launch_file(monkeypatch)
    entities = ld.args[0]
    declared = {e.args[0] for e in entities if isinstance(e, _Rec) and "default_value" in e.kwargs}
    nodes = {e.kwargs["executable"]: e for e in entities if "executable" in e.kwargs}
    assert set(nodes) == {"sim_camera", "perception_node", "rviz2"}
    assert nodes["sim_camera"].kwargs["package"] == nodes["perception_node"].kwargs["package"] == "dibr_ros"
    assert nodes["perception_node"].kwargs["name"] == "dibr_perception"
    sim_params = nodes["sim_camera"].kwargs["parameters"][0]
    assert set(sim_params) <= _sim_parameter_names() and sim_params["reliability"] == "reliable"
    node_params = nodes["perception_node"].kwargs["parameters"][1]
    assert set(node_params) <= {p.name for p in PARAMETERS} and node_params["input_reliability"] == "reliable"
    # Every LaunchConfiguration refers to a declared argument.
    used = set()

    def walk(x):
        if isinstance(x, _Rec):
            if x.args and isinstance(x.args[0], str) and type(x) is _Rec and len(x.args) == 1 and not x.kwargs:
                used.add(x.args[0])
            for v in list(x.args) + list(x.kwargs.values()):
                walk(v)
        elif isinstance(x, (list, tuple)):
            for v in x:
                walk(v)
        elif isinstance(x, dict):
            for v in x.values():
                walk(v)

    walk([nodes[k] for k in nodes])
    assert used - {"dibr_ros"} <= declared
    assert "rviz" in declared and isinstance(nodes["rviz2"].kwargs["condition"], _Rec)


def test_weld_and_matching():
    from dibr_ros.demo_report import match_objects, weld

    v = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]], np.float32)
    f = np.array([[0, 1, 2], [0, 3, 1], [1, 3, 2]])
    v2, f2 = weld(v[f].reshape(-1, 3))
    assert len(v2) == 4 and len(f2) == 3
    np.testing.assert_array_equal(v2[f2], v[f])
    with pytest.raises(ValueError):
        weld(np.zeros((4, 3)))
    gt = [np.array([0.0, 0, 0.6]), np.array([0.1, 0, 0.6]), np.array([0.3, 0.3, 0.6])]
    pred = [np.array([0.105, 0, 0.6]), np.array([0.002, 0.0, 0.61]), np.array([-0.4, 0, 0.6])]
    assert sorted(match_objects(pred, gt)) == [(0, 1), (1, 0)]


def test_evaluation_of_perfect_and_partial_reconstructions():
    from dibr_ros.demo_report import evaluate_objects, summarize
    from dibr_ros.sim.scene import CameraConfig, SceneConfig, TabletopScene

    with TabletopScene(SceneConfig(objects=["random_urdfs/903/903.urdf"], min_objects=1, max_objects=1,
                                   renderer="tiny"), CameraConfig(width=240, height=180, distance=0.4)) as s:
        f = s.render()
    (g,) = f.objects
    gt = [dict(name=g.name, label=g.label, vertices=g.vertices, faces=g.faces)]
    from dibr_ros.eval.metrics import outer_surface_samples

    outer = outer_surface_samples(g.vertices.astype(np.float64), g.faces, 20000, np.random.default_rng(0))
    perfect = [dict(vertices=g.vertices, faces=g.faces, points=outer)]
    (ev,) = evaluate_objects(perfect, gt, f.depth, f.K, f.labels)
    # The truth is the outer surface: a cloud of it is perfect; the true mesh covers it and has its volume,
    # but its walls inside the solid (903 is glued boxes) are no surface, so its precision is below 1.
    assert ev.matched and ev.cloud["f@5mm"] > 0.99 and ev.cloud["chamfer_mm"] < 0.5
    assert ev.mesh["r@10mm"] > 0.99 and ev.mesh["iou_3d"] > 0.99 and ev.mesh["p@10mm"] < 1.0
    # The depth-only baseline sees the front only: precise but incomplete.
    assert ev.depth["p@10mm"] > 0.95 and ev.depth["r@5mm"] < 0.9
    far = [dict(vertices=g.vertices + np.float32([0.3, 0, 0]), faces=g.faces, points=np.zeros((0, 3)))]
    (miss,) = evaluate_objects(far, gt, f.depth, f.K, f.labels)
    assert not miss.matched and summarize([miss])["mesh.f@10mm"] == 0.0


def test_render_meshes_covers_the_projection():
    from dibr_ros.demo_report import render_meshes

    K = np.array([[100.0, 0, 63.5], [0, 100.0, 47.5], [0, 0, 1]])
    v = np.array([[-0.1, -0.1, 1.0], [0.1, -0.1, 1.0], [0.1, 0.1, 1.0], [-0.1, 0.1, 1.0]])
    f = np.array([[0, 1, 2], [0, 2, 3]])
    img = render_meshes(np.zeros((96, 128, 3), np.uint8), K, [(v, f, np.ones((4, 3)))])
    drawn = img.max(2) > 0
    # square of side 0.2 m at 1 m with f = 100 px: 20 x 20 px around the principal point
    assert abs(int(drawn.sum()) - 400) < 60
    ys, xs = np.nonzero(drawn)
    assert abs(xs.mean() - 63.5) < 1 and abs(ys.mean() - 47.5) < 1


def test_demo_fails_with_one_line_reason(tmp_path, ros_env, ros_domain_id):
    t0 = time.monotonic()
    r = subprocess.run([sys.executable, "-m", "dibr_ros.demo", "--out", str(tmp_path), "--frames", "1",
                        "--domain-id", str(ros_domain_id),
                        "--weights", str(tmp_path / "missing.pt"), "--timeout", "60", "--renderer", "tiny",
                        "--width", "160", "--height", "120"],
                       env=ros_env, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert r.returncode == 1
    err = [ln for ln in r.stderr.splitlines() if ln.startswith("demo:")]
    assert len(err) == 1 and "perception_node exited" in err[0], r.stderr[-2000:]
    assert time.monotonic() - t0 < 60
    # The children are gone: no dibr_ros.ros process left in this test's ROS domain.
    assert (tmp_path / "logs" / "sim_camera.log").exists()
    assert _children_in_domain(ros_env["ROS_DOMAIN_ID"]) == []


def _children_in_domain(domain: str) -> list:
    left = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmd = open(f"/proc/{pid}/cmdline", "rb").read().decode(errors="replace")
            env = open(f"/proc/{pid}/environ", "rb").read().split(b"\0")
        except OSError:
            continue
        if "dibr_ros.ros." in cmd and f"ROS_DOMAIN_ID={domain}".encode() in env:
            left.append(cmd)
    return left


def test_demo_family_and_camera_options_reach_the_sim():
    from dibr_ros.demo import build_parser, family_sim_params

    sim, depth = family_sim_params(build_parser().parse_args([]))
    assert sim["objects"] == "test" and "elevation_deg" not in sim and depth  # the sim's defaults
    sim, depth = family_sim_params(build_parser().parse_args(["--elevation", "15", "--distance", "0.8"]))
    assert sim["elevation_deg"] == 15.0 and sim["distance"] == 0.8
    sim, depth = family_sim_params(build_parser().parse_args(["--family", "lifted"]))
    assert sim["lift_min"] == 0.10 and sim["lift_max"] == 0.20 and sim["objects"] == "test+hh_test"
    assert sim["elevation_deg"] == 35.0 and sim["distance"] == 0.8 and depth
    sim, depth = family_sim_params(build_parser().parse_args(["--family", "no_depth", "--elevation", "20"]))
    assert sim["depth_condition"] == "drop_one" and sim["elevation_deg"] == 20.0  # explicit options first
    sim, depth = family_sim_params(build_parser().parse_args(["--family", "rgb_only", "--objects", "ood"]))
    assert not depth and sim["objects"] == "ood"
    sim, _ = family_sim_params(build_parser().parse_args(["--transport", "compressed", "--jpeg-quality", "70"]))
    assert sim["compressed"] is True and sim["jpeg_quality"] == 70
    assert "compressed" not in family_sim_params(build_parser().parse_args([]))[0]


def test_demo_table_plane_is_the_sim_cameras():
    """--table-plane: the plane handed to the node is the table in the sim camera's optical frame, the same
    as the rendered frames' (their depth's table pixels lie on it), at every orbit angle."""
    from dibr_ros.demo import build_parser, family_sim_params, sim_table_plane
    from dibr_ros.perception.geometry import backproject, check_plane
    from dibr_ros.sim.scene import CameraConfig, SceneConfig, TabletopScene

    sim, depth = family_sim_params(build_parser().parse_args(["--family", "rgb_only", "--table-plane"]))
    assert not depth and sim["elevation_deg"] == 35.0 and sim["distance"] == 0.8
    n, d = check_plane(sim_table_plane(sim))
    cam = CameraConfig(width=160, height=120, elevation_deg=35.0, distance=0.8, orbit_deg_per_s=40.0)
    with TabletopScene(SceneConfig(objects=["random_urdfs/900/900.urdf"], max_objects=1, renderer="tiny"),
                       cam) as s:
        for t in (0.0, 2.0):
            f = s.render(t=t)
            np.testing.assert_allclose(f.table_plane(), [*n, d], atol=1e-9)
            table = backproject(f.depth, f.K, (f.labels == 0) & (f.depth < 1.2))[0]
            assert np.median(np.abs(table @ n + d)) < 0.002
    sim, _ = family_sim_params(build_parser().parse_args(["--table-plane"]))
    assert (sim["elevation_deg"], sim["distance"]) == (55.0, 0.55)  # explicit: the plane is the sim's
