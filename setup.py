"""ament_python build of dibr_ros (colcon) and plain pip installs."""

import os
from glob import glob

from setuptools import find_packages, setup

package_name = "dibr_ros"
share = os.path.join("share", package_name)


def tree(src_dir: str, patterns: tuple[str, ...]) -> list[tuple[str, list[str]]]:
    """data_files entries that mirror ``src_dir`` (files matching ``patterns``) under share/dibr_ros."""
    out = []
    for root, _dirs, _files in os.walk(src_dir):
        files = sorted(f for p in patterns for f in glob(os.path.join(root, p)))
        if files:
            out.append((os.path.join(share, root), files))
    return out


setup(
    name=package_name,
    version="0.1.0",
    packages=find_packages(exclude=["test", "test.*", "bench"]),
    package_data={package_name: ["weights/*.pt"]},
    include_package_data=True,
    data_files=[
        ("share/ament_index/resource_index/packages", ["resource/" + package_name]),
        (share, ["package.xml"]),
        (os.path.join(share, "launch"), glob("launch/*.launch.py")),
        (os.path.join(share, "config"), glob("config/*.yaml") + glob("config/*.rviz") + glob("config/*.xml")),
        *tree("csrc", ("*.cpp", "*.cu", "*.h", "*.cuh")),
    ],
    install_requires=["setuptools", "numpy", "torch"],
    zip_safe=False,
    maintainer="dibr_ros developers",
    maintainer_email="dibr-ros@example.com",
    description="Single-image textured 3D object meshes with DIB-R for ROS 2 perception.",
    license="Apache-2.0",
    extras_require={"test": ["pytest", "hypothesis"]},
    entry_points={
        "console_scripts": [
            "perception_node = dibr_ros.ros.perception_node:main",
            "sim_camera = dibr_ros.ros.sim_camera:main",
        ],
    },
)
