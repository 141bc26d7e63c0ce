"""launch/perception.launch.py, config/perception.yaml and config/dibr.rviz against the node's interface.

``launch``/``launch_ros`` are not installable here, so the launch file is read as Python source (ast);
when launch_ros is importable its LaunchDescription is built as well.
"""

import ast
import importlib.util
import os
import re

import pytest
import yaml

pytest.importorskip("rclpy")
from dibr_ros.ros import perception_node as pn

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LAUNCH = os.path.join(REPO, "launch", "perception.launch.py")
PARAMS = os.path.join(REPO, "config", "perception.yaml")
RVIZ = os.path.join(REPO, "config", "dibr.rviz")
EXPECTED_ARGS = {"image", "camera_info", "depth", "instance_mask", "namespace", "params_file", "device", "rviz",
                 "frame", "image_transport", "depth_transport"}


@pytest.fixture(scope="module")
def launch_tree():
    with open(LAUNCH) as f:
        return ast.parse(f.read(), LAUNCH)


def _arguments(tree) -> dict:
    """name -> default (a string, or the ast node of a substitution) from the ARGUMENTS table."""
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "ARGUMENTS" for t in node.targets):
            out = {}
            for elt in node.value.elts:
                name, default = elt.elts[0].value, elt.elts[1]
                out[name] = default.value if isinstance(default, ast.Constant) else default
                assert isinstance(elt.elts[2], ast.Constant) and elt.elts[2].value, f"{name} has no description"
            return out
    raise AssertionError("launch file has no ARGUMENTS table")


def _calls(tree, func_name):
    return [n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "id", "") == func_name]


def _kw(call, name):
    for k in call.keywords:
        if k.arg == name:
            return k.value
    return None


def test_launch_arguments(launch_tree):
    args = _arguments(launch_tree)
    assert set(args) == EXPECTED_ARGS
    assert args["rviz"] == "false" and args["device"] == "auto"
    # Every declared argument is used through LaunchConfiguration.
    used = {c.args[0].value for c in _calls(launch_tree, "LaunchConfiguration") if isinstance(c.args[0], ast.Constant)}
    used |= {"image", "camera_info", "depth", "instance_mask"}  # via the remapping comprehension
    # and the parameters comprehension (each name a literal in its tuple)
    perception = next(c for c in _calls(launch_tree, "Node") if _kw(c, "executable").value == "perception_node")
    params_src = ast.unparse(_kw(perception, "parameters"))
    used |= {n for n in ("device", "image_transport", "depth_transport") if repr(n) in params_src}
    assert {"device", "image_transport", "depth_transport"} <= {s.name for s in pn.NODE_PARAMETERS}
    assert EXPECTED_ARGS <= used
    assert len(_calls(launch_tree, "DeclareLaunchArgument")) == 1  # generated from ARGUMENTS


def test_launch_nodes_and_files(launch_tree):
    nodes = {}
    for call in _calls(launch_tree, "Node"):
        pkg, exe = _kw(call, "package"), _kw(call, "executable")
        pkg = pkg.value if isinstance(pkg, ast.Constant) else "dibr_ros"  # PACKAGE constant
        nodes[exe.value] = (pkg, call)
    assert set(nodes) == {"perception_node", "rviz2"}
    pkg, node = nodes["perception_node"]
    assert pkg == "dibr_ros" and _kw(node, "name").value == pn.NODE_NAME
    # The remapped names are the node's relative inputs.
    remap_src = ast.unparse(_kw(node, "remappings"))
    assert all(repr(t) in remap_src for t in pn.INPUT_TOPICS)
    assert set(pn.INPUT_TOPICS) <= EXPECTED_ARGS
    assert "IfCondition" in ast.unparse(_kw(nodes["rviz2"][1], "condition"))
    # The console script exists and points at main().
    with open(os.path.join(REPO, "setup.py")) as f:
        setup_src = f.read()
    assert "perception_node = dibr_ros.ros.perception_node:main" in setup_src
    assert callable(pn.main)
    # Config files named in PathJoinSubstitution([..., "config", name]) exist and are installed.
    named = []
    for call in _calls(launch_tree, "PathJoinSubstitution"):
        parts = [e.value for e in call.args[0].elts if isinstance(e, ast.Constant)]
        if "config" in parts:
            named.append(parts[-1])
    assert sorted(named) == ["dibr.rviz", "perception.yaml"]
    for name in named:
        assert os.path.isfile(os.path.join(REPO, "config", name))
        assert f"config/*{os.path.splitext(name)[1]}" in setup_src
    assert re.search(r"glob\(\"launch/\*\.launch\.py\"\)", setup_src)


def test_launch_description_builds():
    pytest.importorskip("launch_ros", reason="launch_ros not installed (no wheel for this platform)")
    spec = importlib.util.spec_from_file_location("perception_launch", LAUNCH)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    from launch.actions import DeclareLaunchArgument

    ld = mod.generate_launch_description()
    declared = {e.name for e in ld.entities if isinstance(e, DeclareLaunchArgument)}
    assert declared == EXPECTED_ARGS


def _yaml_params() -> dict:
    with open(PARAMS) as f:
        doc = yaml.safe_load(f)
    assert list(doc) == ["/**"] and list(doc["/**"]) == ["ros__parameters"]
    return doc["/**"]["ros__parameters"]


def test_params_file_matches_declared_parameters():
    values = _yaml_params()
    specs = {s.name: s for s in pn.PARAMETERS}
    assert len(specs) == len(pn.PARAMETERS), "duplicate parameter names"
    assert set(values) == set(specs)
    for name, value in values.items():
        spec = specs[name]
        assert type(value) is type(spec.default), f"{name}: yaml {type(value).__name__}, node {type(spec.default)}"
        if spec.low is not None:
            assert spec.low <= value <= spec.high, name
        if spec.choices and name != "device":
            assert value in spec.choices, name
        assert spec.description.strip(), name
    from rclpy.parameter import parameter_dict_from_yaml_file

    parsed = parameter_dict_from_yaml_file(PARAMS, use_wildcard=True)  # rclpy's own reader agrees
    assert set(parsed) == set(specs)


def test_parameter_descriptors():
    for spec in pn.PARAMETERS:
        d = spec.descriptor()
        assert d.name == spec.name and d.description == spec.description and d.read_only == spec.read_only
        if spec.low is not None:
            rng = d.floating_point_range or d.integer_range
            assert len(rng) == 1 and rng[0].from_value == spec.low and rng[0].to_value == spec.high
    ro = {s.name for s in pn.PARAMETERS if s.read_only}
    assert {"device", "weights", "use_depth", "input_reliability", "input_qos_depth"} <= ro


def test_rviz_config():
    with open(RVIZ) as f:
        cfg = yaml.safe_load(f)
    displays = {d["Class"]: d for d in cfg["Visualization Manager"]["Displays"]}
    topics = {cls.split("/")[-1]: d["Topic"]["Value"] for cls, d in displays.items() if "Topic" in d}
    assert topics == {"Image": f"{pn.NODE_NAME}/debug_image", "MarkerArray": f"{pn.NODE_NAME}/meshes",
                      "PointCloud2": f"{pn.NODE_NAME}/points"}
    assert {t.split("/")[-1] for t in topics.values()} == set(pn.OUTPUT_TOPICS)
    assert displays["rviz_default_plugins/PointCloud2"]["Color Transformer"] == "RGB8"
    # Marker/cloud displays must request what the node offers (TRANSIENT_LOCAL, reliable).
    for cls in ("MarkerArray", "PointCloud2"):
        assert displays[f"rviz_default_plugins/{cls}"]["Topic"]["Durability Policy"] == "Transient Local"
    args = {}
    with open(LAUNCH) as f:
        args = _arguments(ast.parse(f.read()))
    assert cfg["Visualization Manager"]["Global Options"]["Fixed Frame"] == args["frame"]
