"""segment_depth's full-resolution masks against ray-cast boxes resting on a table (exact geometry).

Every pixel's true height above the table follows from the ray-cast depth and the true plane, so the mask
an object should get is known: all of its pixels clearly above the table's noise, none of the table's.
"""

import numpy as np
import pytest

from dibr_ros.perception import segment_depth
from dibr_ros.perception import synthetic as S
from dibr_ros.perception.geometry import pixel_rays

W, H = 640, 480
CAMERA_HEIGHT = 0.7
PITCH = 50.0


def box_on_table(fwd, side, half, yaw_deg=0.0):
    """A box of half extents ``half`` (x, y along the table, z up) resting on the table, ``fwd`` m ahead
    of the camera's foot point and ``side`` m to its right."""
    n, d = S.table_plane(CAMERA_HEIGHT, PITCH)
    e1 = np.array([1.0, 0.0, 0.0])
    e2 = np.cross(n, e1)
    e2 = e2 if e2[2] > 0 else -e2
    yaw = np.radians(yaw_deg)
    Rz = np.array([[np.cos(yaw), -np.sin(yaw), 0], [np.sin(yaw), np.cos(yaw), 0], [0, 0, 1.0]])
    half = np.asarray(half, float)
    centre = -d * n + e2 * fwd + e1 * side + n * half[2]
    return S.SceneObject("box", centre, half, np.stack([e1, e2, n], axis=1) @ Rz)


def render(objects, noise=0.0, seed=0):
    """Frame, K, true plane and each pixel's true height above the table (m, before noise)."""
    K = S.default_intrinsics(W, H)
    plane = S.table_plane(CAMERA_HEIGHT, PITCH)
    frame = S.render_scene(objects, K, W, H, plane=plane)
    vv, uu = np.mgrid[0:H, 0:W]
    height = frame["depth"] * (pixel_rays(K, np.stack([uu, vv], axis=-1)) @ plane[0]) + plane[1]
    if noise > 0:
        rng = np.random.default_rng(seed)
        depth = frame["depth"]
        frame["depth"] = np.where(depth > 0, depth + rng.normal(0.0, noise, depth.shape), 0).astype(np.float32)
    return frame, K, plane, height


def best_match(dets, truth):
    """The detection overlapping ``truth`` (bool mask) most."""
    return max(dets, key=lambda d: (d.mask & truth).sum())


def test_mask_holds_the_lowest_centimetre_and_no_table():
    frame, K, _, height = render([box_on_table(0.55, 0.0, (0.04, 0.03, 0.03), yaw_deg=30.0)])
    truth = frame["labels"] == 1
    dets = segment_depth(frame["depth"], K)
    assert len(dets) == 1
    m = dets[0].mask
    band = truth & (height > 0.002) & (height <= 0.01)
    assert band.sum() > 150  # the low band is a real part of the object's image
    # Every object pixel 2 mm or more above the table is in the mask (the old masks stopped at 1 cm) ...
    assert m[truth & (height > 0.002)].all()
    # ... and nothing else: no table pixel, and points reach down to the table.
    assert not (m & ~truth).any()
    assert (dets[0].points @ S.table_plane(CAMERA_HEIGHT, PITCH)[0] + CAMERA_HEIGHT).min() < 0.002
    assert (m & truth).sum() / (m | truth).sum() > 0.98


def test_flat_object_mostly_below_min_height_is_whole():
    # A 1.2 cm bar lying on the table (like a toy cylinder on its side): 5/6 of it lies below min_height.
    frame, K, _, height = render([box_on_table(0.45, -0.05, (0.06, 0.006, 0.006), yaw_deg=20.0)])
    truth = frame["labels"] == 1
    dets = segment_depth(frame["depth"], K)
    assert len(dets) == 1
    m = dets[0].mask
    assert m[truth & (height > 0.002)].all() and not (m & ~truth).any()
    assert m.sum() > 0.9 * truth.sum()


def test_refit_plane_is_exact():
    frame, K, (n_true, d_true), _ = render([box_on_table(0.55, 0.0, (0.04, 0.03, 0.03))])
    _, (n, d) = segment_depth(frame["depth"], K, return_plane=True)
    # The block-minimum RANSAC plane sits ~1 mm towards the camera; the refit is exact up to float32 depth.
    assert abs(d - d_true) < 1e-4 and np.degrees(np.arccos(min(1.0, n @ n_true))) < 0.02


def test_object_in_front_keeps_its_band_and_leaves_the_other_ones():
    # A box in front of another, 7 cm nearer, hiding part of its base and touching it in the image: two
    # objects; each band pixel goes to its own object, none across the occluding edge.
    back = box_on_table(0.64, 0.0, (0.05, 0.03, 0.06))
    front = box_on_table(0.5, 0.05, (0.05, 0.02, 0.065), yaw_deg=10.0)
    frame, K, _, height = render([back, front])
    lab = frame["labels"]
    touching = ((lab[1:] == 1) & (lab[:-1] == 2)) | ((lab[1:] == 2) & (lab[:-1] == 1))
    assert touching.sum() > 20  # the scene is what the test claims
    dets = segment_depth(frame["depth"], K)
    assert len(dets) == 2
    for i in (1, 2):
        truth = lab == i
        m = best_match(dets, truth).mask
        assert not (m & ~truth).any()
        assert m[truth & (height > 0.002)].all()


def test_two_boxes_side_by_side_each_get_their_band():
    # 2 cm apart on the table: separate clusters, each grows only into its own base.
    a = box_on_table(0.5, -0.06, (0.04, 0.03, 0.025), yaw_deg=5.0)
    b = box_on_table(0.5, 0.03, (0.03, 0.03, 0.035), yaw_deg=-5.0)
    frame, K, _, height = render([a, b])
    dets = segment_depth(frame["depth"], K)
    assert len(dets) == 2
    for i in (1, 2):
        truth = frame["labels"] == i
        m = best_match(dets, truth).mask
        assert not (m & ~truth).any() and m[truth & (height > 0.002)].all()


@pytest.mark.parametrize("sigma", [0.001, 0.002])
def test_noisy_depth_adds_band_pixels_not_table(sigma):
    frame, K, _, height = render([box_on_table(0.42, 0.05, (0.05, 0.04, 0.04), yaw_deg=30.0),
                                  box_on_table(0.35, -0.12, (0.04, 0.03, 0.02), yaw_deg=-40.0)],
                                 noise=sigma, seed=3)
    dets = segment_depth(frame["depth"], K)
    assert len(dets) == 2
    for i in (1, 2):
        truth = frame["labels"] == i
        m = best_match(dets, truth).mask
        # Table pixels next to the object (true height 0) that noise lifts past the band's floor may join
        # it; they stay a small fraction.
        assert (m & ~truth).sum() < 0.01 * truth.sum()
        # The band from 4 sigma up to min_height is recovered (below it, noise and table are alike).
        band = truth & (height > 4 * sigma) & (height <= 0.01)
        assert band.sum() > 40 and m[band].mean() > 0.9


def test_heavy_noise_closes_the_band():
    # Noise at min_height's scale: the band's floor reaches min_height, so the table is not taken in.
    frame, K, _, _ = render([box_on_table(0.55, 0.0, (0.04, 0.03, 0.04), yaw_deg=30.0)], noise=0.004, seed=5)
    dets = segment_depth(frame["depth"], K)
    assert len(dets) == 1
    truth = frame["labels"] == 1
    m = dets[0].mask
    assert (m & ~truth).sum() < 0.02 * truth.sum() and (m & truth).sum() > 0.8 * truth.sum()


def test_holes_stay_out_of_grown_masks():
    frame, K, _, _ = render([box_on_table(0.55, 0.0, (0.04, 0.03, 0.03), yaw_deg=30.0)])
    depth = frame["depth"].copy()
    holes = np.random.default_rng(1).random(depth.shape) < 0.2
    depth[holes] = np.nan
    dets = segment_depth(depth, K)
    assert len(dets) == 1 and not dets[0].mask[holes].any()
    assert len(dets[0].points) == dets[0].mask.sum()
    truth = (frame["labels"] == 1) & ~holes
    assert (dets[0].mask & truth).sum() > 0.97 * truth.sum()


@pytest.mark.parametrize("noise, found", [(0.0, True), (0.001, True), (0.004, False)])
def test_flat_object_threshold_follows_the_sensor_noise(noise, found):
    # A 7 mm slab (a domino lying flat) clears min_height (5 mm) on exact or 1 mm-noise depth; with 4 mm
    # noise the seed threshold rises to 3 sigma (12 mm): the slab is table, and no noise blob becomes an object.
    frame, K, _, height = render([box_on_table(0.5, 0.02, (0.025, 0.012, 0.0035), yaw_deg=10.0)], noise=noise,
                                 seed=7)
    truth = frame["labels"] == 1
    dets = segment_depth(frame["depth"], K)
    if found:
        assert len(dets) == 1
        m = dets[0].mask
        assert (m & truth).sum() > 0.8 * truth.sum() and (m & ~truth).sum() < 0.05 * truth.sum()
    else:
        assert dets == []
    assert len(segment_depth(frame["depth"], K, min_height=0.01)) == 0  # the old threshold never saw it


def touching_pair(color_b, color_a=(200, 60, 40)):
    """Two boxes of the same height pressed together side by side: no depth jump between them."""
    a = box_on_table(0.5, -0.04, (0.04, 0.03, 0.03))
    b = box_on_table(0.5, 0.04, (0.04, 0.03, 0.03))
    a.color, b.color = color_a, color_b
    return render([a, b])


@pytest.mark.parametrize("color_a, color_b", [((200, 60, 40), (40, 90, 210)),
                                              # one hue, a dark and a pale one: CIE a*b* 9 apart only
                                              ((50, 40, 140), (120, 105, 200))])
def test_color_split_parts_touching_objects_of_different_colour(color_a, color_b):
    from dibr_ros.perception.segmentation import split_by_color

    frame, K, _, _ = touching_pair(color_b, color_a)
    dets = segment_depth(frame["depth"], K)
    assert len(dets) == 1  # depth alone cannot part them
    split = split_by_color(dets, frame["rgb"], K, frame["depth"], threshold=0.03)
    assert len(split) == 2 and [d.label for d in split] == [1, 2]
    for i in (1, 2):
        truth = frame["labels"] == i
        m = best_match(split, truth).mask
        assert (m & truth).sum() / (m | truth).sum() > 0.9
        det = best_match(split, truth)
        assert len(det.points) == det.mask[frame["depth"] > 0].sum()


@pytest.mark.parametrize("case", ["same colour", "striped"])
def test_color_split_leaves_one_object_whole(case):
    from dibr_ros.perception.segmentation import split_by_color

    if case == "same colour":  # shading differs between the faces, chroma does not
        frame, K, _, _ = touching_pair((200, 60, 40))
        rgb = frame["rgb"]
    else:  # one box with a two-colour texture: stripes interleave, no single region per colour
        frame, K, _, _ = render([box_on_table(0.5, 0.0, (0.06, 0.04, 0.03))])
        rgb = frame["rgb"].copy()
        stripes = (np.arange(W) // 6 % 2 == 0)[None, :] & (frame["labels"] == 1)
        rgb[stripes] = (40, 90, 210)
    dets = segment_depth(frame["depth"], K)
    assert len(dets) == 1
    assert len(split_by_color(dets, rgb, K, frame["depth"], threshold=0.03)) == 1


def pieces(gap, color_b):
    """Two boxes ``gap`` m apart along the table (table visible between them: two depth segments)."""
    a = box_on_table(0.5, -0.03 - gap / 2, (0.03, 0.03, 0.02))
    b = box_on_table(0.5, 0.03 + gap / 2, (0.03, 0.03, 0.04))
    a.color, b.color = (200, 60, 40), color_b
    return render([a, b])


@pytest.mark.parametrize("gap, color_b, joined, rgb_noise", [
    (0.03, (200, 60, 40), True, 0.0), (0.03, (200, 60, 40), True, 4.0),  # sensor noise: sigma 4 of 255
    (0.08, (200, 60, 40), False, 0.0), (0.03, (200, 68, 40), False, 0.0), (0.03, (200, 68, 40), False, 4.0)])
def test_color_merge_joins_near_pieces_of_one_colour_only(gap, color_b, joined, rgb_noise):
    from dibr_ros.perception.segmentation import merge_by_color

    frame, K, _, _ = pieces(gap, color_b)
    rgb = frame["rgb"]
    if rgb_noise:
        noise = np.random.default_rng(0).normal(0.0, rgb_noise, rgb.shape)
        rgb = np.clip(rgb + noise, 0, 255).astype(np.uint8)
    dets = segment_depth(frame["depth"], K)
    assert len(dets) == 2
    out = merge_by_color(dets, rgb, K, frame["depth"], threshold=0.01, gap=0.05)
    if not joined:
        assert out == dets
        return
    assert len(out) == 1 and out[0].label == 1
    truth = frame["labels"] > 0
    assert (out[0].mask & truth).sum() / (out[0].mask | truth).sum() > 0.95
    assert out[0].mask.sum() == dets[0].mask.sum() + dets[1].mask.sum()
    assert len(out[0].points) == len(dets[0].points) + len(dets[1].points)
    x0, y0, x1, y1 = out[0].box
    assert out[0].mask[y0:y1, x0:x1].sum() == out[0].mask.sum()
    # A piece without depth points cannot be placed in 3D: it is never joined.
    import dataclasses

    blind = [dets[0], dataclasses.replace(dets[1], points=np.zeros((0, 3), np.float32))]
    assert merge_by_color(blind, rgb, K, frame["depth"], threshold=0.01, gap=0.05) == blind
