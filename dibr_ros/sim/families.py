"""Scene families: the camera poses, object sets and depth conditions the end-to-end benchmark and the demo
run, seeded.

Each family fixes a :class:`~dibr_ros.sim.scene.SceneConfig` / ``CameraConfig`` recipe and a depth
condition; :func:`family_configs` draws a scene of it from a seed, :func:`apply_depth` turns a rendered frame's
depth into what that family's camera returns.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["FAMILIES", "SceneFamily", "apply_depth", "family_configs"]

DEPTH_CONDITIONS = ("full", "drop_one", "none")


@dataclass(frozen=True)
class SceneFamily:
    """name; description (one line); objects (library split(s)); elevation_deg; distance (lo, hi) metres
    drawn uniformly per scene; lift (lo, hi) metres of the held object or None; depth: "full", "drop_one"
    (one seeded visible object returns no depth: glass, black), "none" (RGB-only camera)."""

    name: str
    description: str
    objects: str = "test+hh_test"
    elevation_deg: float = 35.0
    distance: tuple[float, float] = (0.6, 1.0)
    lift: tuple[float, float] | None = None
    depth: str = "full"


FAMILIES: dict[str, SceneFamily] = {f.name: f for f in (
    SceneFamily("tabletop", "objects resting on the table, camera 50 deg above it at 0.75 m (the demo's "
                "default)", objects="test", elevation_deg=50.0, distance=(0.75, 0.75)),
    SceneFamily("elev15", "low head camera 15 deg above the table, 0.6-1.0 m", elevation_deg=15.0),
    SceneFamily("elev35", "camera 35 deg above the table, 0.6-1.0 m", elevation_deg=35.0),
    SceneFamily("elev60", "camera 60 deg above the table, 0.6-1.0 m", elevation_deg=60.0),
    SceneFamily("lifted", "one object held 10-20 cm above the table, nothing under it; 35 deg", lift=(0.10, 0.20)),
    SceneFamily("no_depth", "one object returns no depth (glass, black); 35 deg", depth="drop_one"),
    SceneFamily("rgb_only", "RGB camera, no depth at all; 35 deg", depth="none"),
)}


def family_configs(family: SceneFamily | str, seed: int, max_objects: int = 3, renderer: str = "auto",
                   views: int = 2):
    """(SceneConfig, CameraConfig) of scene ``seed`` of a family; the camera orbits 360/views deg per second
    of render time, so ``render(t=v)`` for v < views gives evenly spread views."""
    from dibr_ros.sim.scene import CameraConfig, SceneConfig

    fam = FAMILIES[family] if isinstance(family, str) else family
    rng = np.random.default_rng([int(seed), 7919])
    dist = float(rng.uniform(*fam.distance))
    scene = SceneConfig(objects=fam.objects, seed=int(seed), max_objects=max_objects, renderer=renderer,
                        lift=fam.lift)
    cam = CameraConfig(elevation_deg=fam.elevation_deg, distance=dist, orbit_deg_per_s=360.0 / max(views, 1))
    return scene, cam


def apply_depth(frame, family: SceneFamily | str, seed: int, min_pixels: int = 300):
    """The depth image a family's camera returns for a rendered ``SimFrame`` -> (depth (H, W) float32 metres
    with NaN where none, or None for RGB-only; the label whose depth was removed, or None). ``family``: a
    family, its name, or a depth condition of :data:`DEPTH_CONDITIONS`."""
    if isinstance(family, str) and family in DEPTH_CONDITIONS:
        condition = family
    else:
        condition = (FAMILIES[family] if isinstance(family, str) else family).depth
    if condition == "none":
        return None, None
    if condition == "full":
        return frame.depth, None
    visible = [o.label for o in frame.objects if o.visible_pixels >= min_pixels]
    if not visible:
        return frame.depth, None
    label = int(np.random.default_rng([int(seed), 104729]).choice(visible))
    depth = frame.depth.copy()
    depth[frame.labels == label] = np.nan
    return depth, label
