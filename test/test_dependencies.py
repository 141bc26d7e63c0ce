"""package.xml says exactly what the perception node imports: every module it can reach, statically."""

import ast
import os
import sys
import xml.etree.ElementTree as ET

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
#: Python module -> rosdep key (ROS packages are their own key).
PY_KEYS = {"numpy": "python3-numpy", "torch": "python3-torch", "cv2": "python3-opencv", "scipy": "python3-scipy",
           "yaml": "python3-yaml", "open3d": "python3-open3d-pip", "tqdm": "python3-tqdm",
           "pybullet": "python3-pybullet-pip", "pybullet_data": "python3-pybullet-pip"}
#: Run dependencies that are not imported (see the comment in package.xml).
NOT_IMPORTED = {"ninja-build", "launch", "launch_ros", "rviz2"}
GUARDS = {"ImportError", "ModuleNotFoundError", "Exception"}


def _module_file(mod: str) -> str | None:
    p = os.path.join(REPO, *mod.split("."))
    if os.path.isfile(p + ".py"):
        return p + ".py"
    init = os.path.join(p, "__init__.py")
    return init if os.path.isfile(init) else None


def node_imports(entry: str = "dibr_ros.ros.perception_node") -> tuple[set, set]:
    """(required, optional) top-level third-party modules reachable from ``entry`` through dibr_ros modules;
    optional = every import of it sits in a try whose handler catches ImportError (or broader)."""
    seen, req, opt, stack = set(), set(), set(), [entry]
    while stack:
        mod = stack.pop()
        if mod in seen:
            continue
        seen.add(mod)
        path = _module_file(mod)
        if path is None:  # an attribute imported from a module (from x import name)
            continue
        tree = ast.parse(open(path).read())
        guarded = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Try) and any(
                    h.type is None or GUARDS & {n.id for n in ast.walk(h.type) if isinstance(n, ast.Name)}
                    for h in node.handlers):
                guarded |= {id(n) for stmt in node.body for n in ast.walk(stmt)}
        pkg = mod if path.endswith("__init__.py") else mod.rpartition(".")[0]
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = pkg
                    for _ in range(node.level - 1):
                        base = base.rpartition(".")[0]
                    prefix = f"{base}.{node.module}" if node.module else base
                    names = [f"{prefix}.{a.name}" for a in node.names] + [prefix]
                else:
                    names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            else:
                continue
            for n in names:
                top = n.split(".")[0]
                if top == "dibr_ros":
                    stack.append(n)
                elif top not in sys.stdlib_module_names and top != "__future__":
                    (opt if id(node) in guarded else req).add(top)
    return req, opt - req


def declared() -> tuple[set, set, set]:
    """(required run keys, optional run keys, test/tool keys) of package.xml; optional = after the
    ``optional:`` comment up to the next comment."""
    root = ET.parse(os.path.join(REPO, "package.xml"), ET.XMLParser(target=ET.TreeBuilder(insert_comments=True)))
    run, opt, test, section = set(), set(), set(), ""
    for el in root.getroot():
        if el.tag is ET.Comment:
            section = el.text.strip().split(":")[0].lower()
        elif el.tag in ("depend", "exec_depend"):
            (opt if section == "optional" else run).add(el.text.strip())
        elif el.tag == "test_depend":
            test.add(el.text.strip())
    return run, opt, test


def _key(module: str) -> str:
    return PY_KEYS.get(module, module)


def test_package_xml_declares_what_the_node_imports():
    req, opt = node_imports()
    run, run_opt, test = declared()
    assert {_key(m) for m in req} == run - NOT_IMPORTED, "required imports vs <depend>/<exec_depend>"
    assert {_key(m) for m in opt} <= run_opt, "optional imports not declared as optional"
    # tool-only dependencies stay off the robot
    for key in ("python3-open3d-pip", "python3-tqdm", "python3-yaml", "python3-pybullet-pip"):
        assert key not in run | run_opt and key in test
    assert "shape_msgs" not in run | run_opt


def test_the_import_scan_sees_guarded_and_function_level_imports():
    req, opt = node_imports()
    assert {"rclpy", "rcl_interfaces", "rosidl_parser", "scipy", "torch", "cv2"} <= req
    assert {"message_filters", "diagnostic_updater", "cv_bridge"} <= opt
    tools_req, _ = node_imports("dibr_ros.model.train")
    assert "tqdm" in tools_req  # a tool's own imports are seen (and are not the node's)
