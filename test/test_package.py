"""The package as ROS and pip see it: package.xml (format 3), setup.py data files, layout, lint config."""

import ast
import os
import subprocess
import sys
import zipfile

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_package_xml_validates_against_format3_schema():
    from lxml import etree

    schema = etree.XMLSchema(etree.parse(os.path.join(REPO, "test", "data", "package_format3.xsd")))
    doc = etree.parse(os.path.join(REPO, "package.xml"))
    assert schema.validate(doc), schema.error_log.filter_from_errors()


def test_schema_rejects_a_broken_manifest():
    """The schema test can fail: a manifest with version before name is refused."""
    from lxml import etree

    schema = etree.XMLSchema(etree.parse(os.path.join(REPO, "test", "data", "package_format3.xsd")))
    bad = etree.fromstring(
        b'<package format="3"><version>1.0.0</version><name>x_y</name><description>d</description>'
        b'<maintainer email="a@b.c">m</maintainer><license>MIT</license></package>'
    )
    assert not schema.validate(bad)


def test_package_xml_semantics_with_catkin_pkg():
    """catkin_pkg (what rosdep, bloom and colcon parse with) accepts it; runtime deps are declared."""
    from catkin_pkg.package import parse_package_string

    with open(os.path.join(REPO, "package.xml")) as f:
        pkg = parse_package_string(f.read())
    pkg.validate()
    assert pkg.package_format == 3 and pkg.name == "dibr_ros"
    assert pkg.exports and any(e.tagname == "build_type" and e.content == "ament_python" for e in pkg.exports)
    run = {d.name for d in pkg.exec_depends}
    for need in ("rclpy", "sensor_msgs", "visualization_msgs", "geometry_msgs", "std_msgs", "diagnostic_msgs",
                 "launch", "launch_ros", "rviz2", "python3-torch", "python3-numpy"):
        assert need in run, need
    assert {"python3-pytest"} <= {d.name for d in pkg.test_depends}


def test_setup_version_matches_package_xml():
    from catkin_pkg.package import parse_package_string

    with open(os.path.join(REPO, "package.xml")) as f:
        xml_version = parse_package_string(f.read()).version
    tree = ast.parse(open(os.path.join(REPO, "setup.py")).read())
    call = next(n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "id", "") == "setup")
    kw = {k.arg: k.value for k in call.keywords}
    assert ast.literal_eval(kw["version"]) == xml_version
    import dibr_ros

    assert dibr_ros.__version__ == xml_version


@pytest.fixture(scope="module")
def installed_prefix(tmp_path_factory):
    """Build a wheel of the package and install it into an empty prefix (what colcon's install step does)."""
    import shutil

    tmp = tmp_path_factory.mktemp("install")
    wheel_dir, prefix, src = tmp / "wheel", tmp / "prefix", tmp / "src"
    # build from a copy: setuptools writes build/ and *.egg-info next to setup.py
    shutil.copytree(REPO, src, ignore=shutil.ignore_patterns(
        ".git", ".venv", ".torch_ext", "out", "build", "*.egg-info", "__pycache__", ".gpu_carry", ".*_cache"))
    env = dict(os.environ, PIP_DISABLE_PIP_VERSION_CHECK="1")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                    "-w", str(wheel_dir), str(src)], check=True, env=env, cwd=tmp)
    wheel = next(wheel_dir.glob("dibr_ros-*.whl"))
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--prefix", str(prefix), str(wheel)],
                   check=True, env=env, cwd=tmp)
    return prefix, wheel


def _share_files(root):
    return {os.path.relpath(os.path.join(d, f), root) for d, _, fs in os.walk(root) for f in fs}


def test_install_puts_ros_files_in_share(installed_prefix):
    prefix, _ = installed_prefix
    share = prefix / "share" / "dibr_ros"
    files = _share_files(share)
    assert "package.xml" in files
    assert (prefix / "share" / "ament_index" / "resource_index" / "packages" / "dibr_ros").is_file()
    for launch in os.listdir(os.path.join(REPO, "launch")):
        if launch.endswith(".launch.py"):
            assert os.path.join("launch", launch) in files
    for cfg in os.listdir(os.path.join(REPO, "config")):
        assert os.path.join("config", cfg) in files
    # the C++/CUDA sources travel with the package so the extension can be built where it runs
    assert "csrc/dibr_ops.cpp" in files
    for sub in ("cpu", "cuda"):
        sub_dir = os.path.join(REPO, "csrc", sub)
        for src in os.listdir(sub_dir) if os.path.isdir(sub_dir) else []:
            assert f"csrc/{sub}/{src}" in files


def test_install_has_package_weights_and_scripts(installed_prefix):
    prefix, wheel = installed_prefix
    names = zipfile.ZipFile(wheel).namelist()
    assert "dibr_ros/render/_ext.py" in names
    shipped = [f for f in os.listdir(os.path.join(REPO, "dibr_ros", "weights")) if f.endswith(".pt")]
    for w in shipped:
        assert f"dibr_ros/weights/{w}" in names
    entry = next(n for n in names if n.endswith("entry_points.txt"))
    text = zipfile.ZipFile(wheel).read(entry).decode()
    assert "perception_node = dibr_ros.ros.perception_node:main" in text
    assert "sim_camera = dibr_ros.ros.sim_camera:main" in text


def test_installed_csrc_is_found_by_the_extension_loader(installed_prefix, monkeypatch):
    """From an install without the source tree, _ext.csrc_dir() resolves to share/dibr_ros/csrc."""
    prefix, _ = installed_prefix
    site = next(prefix.glob("lib/python*/site-packages"))
    code = ("import sys; from dibr_ros.render import _ext; d = _ext.csrc_dir(); "
            "print(d); sys.exit(0 if d.startswith(sys.argv[1]) else 1)")
    env = dict(os.environ, PYTHONPATH=str(site), AMENT_PREFIX_PATH=str(prefix))
    out = subprocess.run([sys.executable, "-c", code, str(prefix)], env=env, cwd=str(prefix),
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_setup_cfg_installs_scripts_for_ros2_run():
    import configparser

    cfg = configparser.ConfigParser()
    cfg.read(os.path.join(REPO, "setup.cfg"))
    assert cfg["install"]["install_scripts"] == "$base/lib/dibr_ros"
    assert cfg["develop"]["script_dir"] == "$base/lib/dibr_ros"
    assert os.path.isfile(os.path.join(REPO, "resource", "dibr_ros"))


def test_library_layers_do_not_import_rclpy():
    """Dependencies point one way: only dibr_ros/ros imports rclpy."""
    offenders = []
    for layer in ("render", "model", "data", "eval", "perception"):
        for d, _, fs in os.walk(os.path.join(REPO, "dibr_ros", layer)):
            for f in fs:
                if f.endswith(".py"):
                    tree = ast.parse(open(os.path.join(d, f)).read())
                    for n in ast.walk(tree):
                        mods = [a.name for a in n.names] if isinstance(n, ast.Import) else (
                            [n.module or ""] if isinstance(n, ast.ImportFrom) else [])
                        if any(m.split(".")[0] in ("rclpy", "dibr_ros.ros") or m.startswith("dibr_ros.ros")
                               for m in mods):
                            offenders.append(os.path.join(d, f))
    assert not offenders, offenders


def test_render_and_model_import_with_torch_and_numpy_only():
    """The GPU machine has torch + numpy but no open3d/cv2/pybullet/rclpy: module level must not need them."""
    code = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('open3d', 'cv2', 'pybullet', 'rclpy', 'skimage', 'scipy'):\n"
        "            raise ImportError('blocked ' + name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "import dibr_ros.render, dibr_ros.model\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]


def test_readme_documents_every_node_parameter():
    """The README's parameter table and the node's declared parameters stay the same set."""
    import re

    pytest.importorskip("rclpy")
    from dibr_ros.ros.perception_node import PARAMETERS

    text = open(os.path.join(REPO, "README.md")).read()
    table = text.split("### Parameters", 1)[1].split("\n## ", 1)[0]
    documented = set(re.findall(r"^\| `([a-z_]+)` \|", table, flags=re.M))
    assert documented == {p.name for p in PARAMETERS}
