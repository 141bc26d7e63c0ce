"""Procedural household objects: the shapes robots grasp, generated in code (no downloads).

Kinds (:data:`HOUSEHOLD_KINDS`): surfaces of revolution (bottle with shoulder, neck and cap; can; cup; mug
with a handle; bowl; jar with lid; vase), boxes of household proportions (cereal box, milk carton with a
gable top), fruit-like shapes (round: apple/orange; elongated: banana, cucumber) and flat tools (spatula,
knife, remote). Each kind draws its proportions, metric size (ranges of real objects) and colours from a
numpy Generator; :func:`household` builds one mesh, upright (z up, base at the smallest z), in metres.

Every mesh is closed: each connected part is an edge-manifold, consistently outward-wound triangle mesh
(open vessels have a wall thickness, handles are capped tubes). Library names are ``hh_<kind>_NNN``; NNN
fixes the seed (so a name is a fixed mesh) and the split (:func:`household_split`).
"""

from __future__ import annotations

import zlib

import numpy as np

__all__ = ["HOUSEHOLD_KINDS", "HOUSEHOLD_PER_KIND", "SIZE_RANGES_M", "household", "household_split",
           "household_by_name", "lathe", "tube", "convex_hull"]

HOUSEHOLD_KINDS = ("bottle", "can", "cup", "mug", "bowl", "jar", "vase", "cereal_box", "milk_carton",
                   "fruit_round", "fruit_long", "spatula", "knife", "remote")
#: Objects per kind; NNN < 48 -> "hh_train", 48-53 -> "hh_val", 54-59 -> "hh_test".
HOUSEHOLD_PER_KIND = 60
_SPLIT_EDGES = (48, 54)

#: kind -> (min, max) of the largest dimension in metres (what the generators draw from).
SIZE_RANGES_M: dict[str, tuple[float, float]] = {
    "bottle": (0.18, 0.32), "can": (0.10, 0.17), "cup": (0.07, 0.12), "mug": (0.09, 0.13),
    "bowl": (0.12, 0.22), "jar": (0.08, 0.16), "vase": (0.15, 0.30), "cereal_box": (0.22, 0.34),
    "milk_carton": (0.18, 0.26), "fruit_round": (0.06, 0.10), "fruit_long": (0.12, 0.24),
    "spatula": (0.25, 0.34), "knife": (0.18, 0.32), "remote": (0.14, 0.22),
}


def household_split(index: int) -> str:
    """Split of household object number ``index`` (0 <= index < HOUSEHOLD_PER_KIND)."""
    if not 0 <= index < HOUSEHOLD_PER_KIND:
        raise ValueError(f"household index must be in [0, {HOUSEHOLD_PER_KIND}), got {index}")
    return "hh_train" if index < _SPLIT_EDGES[0] else "hh_val" if index < _SPLIT_EDGES[1] else "hh_test"


# --- mesh builders --------------------------------------------------------------------------------------
def lathe(profile: np.ndarray, segments: int = 32, colors: np.ndarray | None = None):
    """Closed surface of revolution about z.

    profile (P, 2) of (radius, z), P >= 3, from the bottom pole to the top pole: radius 0 at both ends and
    > 0 in between (the curve may go up and come back down, e.g. a vessel's outer then inner wall).
    colors (P, 3) per profile point (optional). Returns vertices (2 + (P-2) * segments, 3), faces (F, 3)
    int64 wound outward when the profile runs counter-clockwise in the (r, z) half plane, colours (V, 3).
    """
    p = np.asarray(profile, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] != 2 or len(p) < 3 or p[0, 0] != 0 or p[-1, 0] != 0 or (p[1:-1, 0] <= 0).any():
        raise ValueError("profile must be (P>=3, 2) (radius, z) with radius 0 exactly at both ends only")
    rings = p[1:-1]
    n, m = len(rings), int(segments)
    a = 2 * np.pi * np.arange(m) / m
    ring_v = np.stack([rings[:, :1] * np.cos(a), rings[:, :1] * np.sin(a),
                       np.broadcast_to(rings[:, 1:], (n, m))], -1).reshape(-1, 3)
    verts = np.concatenate([[[0.0, 0.0, p[0, 1]]], ring_v, [[0.0, 0.0, p[-1, 1]]]])
    top = len(verts) - 1
    j = np.arange(m)
    jn = (j + 1) % m
    faces = [np.stack([np.zeros(m, np.int64), 1 + jn, 1 + j], 1)]  # bottom fan
    for i in range(n - 1):
        r0, r1 = 1 + i * m, 1 + (i + 1) * m
        faces += [np.stack([r0 + j, r0 + jn, r1 + jn], 1), np.stack([r0 + j, r1 + jn, r1 + j], 1)]
    last = 1 + (n - 1) * m
    faces.append(np.stack([np.full(m, top), last + j, last + jn], 1))  # top fan
    if colors is None:
        cols = np.full((len(verts), 3), 0.7)
    else:
        c = np.asarray(colors, dtype=np.float64)
        cols = np.concatenate([c[:1], np.repeat(c[1:-1], m, 0), c[-1:]])
    return verts, np.concatenate(faces).astype(np.int64), cols


def tube(path: np.ndarray, radii: np.ndarray, segments: int = 12, color=(0.7, 0.7, 0.7)):
    """Closed tube along a 3D polyline: circular sections of ``radii`` (N,), a pole vertex at each end.

    path (N, 3), N >= 2 (its end points become the poles, so radii[0] and radii[-1] are ignored: use
    small end steps for a flat-looking cap). Returns vertices, faces (outward), colours.
    """
    path = np.asarray(path, dtype=np.float64)
    t = np.gradient(path, axis=0)
    t /= np.linalg.norm(t, axis=1, keepdims=True)
    ref = np.array([0.0, 0.0, 1.0]) if abs(t[0, 2]) < 0.9 else np.array([1.0, 0.0, 0.0])
    n1 = np.cross(t, ref)
    n1 /= np.linalg.norm(n1, axis=1, keepdims=True)
    n2 = np.cross(t, n1)
    # A lathe in the tube's local frame: profile (radius, s) with poles at the path ends.
    a = 2 * np.pi * np.arange(segments) / segments
    inner = path[1:-1]
    ring = (inner[:, None] + np.asarray(radii)[1:-1, None, None]
            * (np.cos(a)[None, :, None] * n1[1:-1, None] + np.sin(a)[None, :, None] * n2[1:-1, None]))
    prof = np.zeros((len(path), 2))
    prof[1:-1, 0] = 1.0
    prof[:, 1] = np.arange(len(path))
    _, faces, _ = lathe(prof, segments)
    verts = np.concatenate([path[:1], ring.reshape(-1, 3), path[-1:]])
    # lathe winds outward for a (cos, sin, z) frame; (n1, n2, t) is right-handed as well
    return verts, faces, np.broadcast_to(np.asarray(color, float), verts.shape).copy()


def convex_hull(points: np.ndarray, color=(0.7, 0.7, 0.7), subdivide: int = 2):
    """Closed outward-wound convex hull of points (scipy/qhull), midpoint-subdivided ``subdivide`` times
    (open3d; 4x the faces each) so that colours can vary over a face -> vertices, faces, colours."""
    from scipy.spatial import ConvexHull

    pts = np.asarray(points, dtype=np.float64)
    hull = ConvexHull(pts)
    used = np.unique(hull.simplices)
    remap = np.full(len(pts), -1)
    remap[used] = np.arange(len(used))
    faces = remap[hull.simplices]
    v = pts[used]
    # qhull's simplices are not consistently oriented: flip those whose normal points inwards
    centre = v.mean(0)
    fv = v[faces]
    nrm = np.cross(fv[:, 1] - fv[:, 0], fv[:, 2] - fv[:, 0])
    flip = (nrm * (fv.mean(1) - centre)).sum(1) < 0
    faces[flip] = faces[flip][:, ::-1]
    if subdivide:
        import open3d as o3d

        m = o3d.geometry.TriangleMesh(o3d.utility.Vector3dVector(v), o3d.utility.Vector3iVector(faces))
        m = m.subdivide_midpoint(number_of_iterations=int(subdivide))
        v, faces = np.asarray(m.vertices).copy(), np.asarray(m.triangles).astype(np.int64)
    return v, faces.astype(np.int64), np.broadcast_to(np.asarray(color, float), v.shape).copy()


def _box_points(sx, sy, sz, n: int = 2, z0: float = 0.0):
    """Surface grid points of an axis-aligned box of size (sx, sy, sz) (n per edge), base at z0."""
    g = np.linspace(-0.5, 0.5, n)
    pts = []
    for axis in range(3):
        for side in (-0.5, 0.5):
            u, w = np.meshgrid(g, g)
            p = np.zeros((u.size, 3))
            p[:, axis] = side
            p[:, (axis + 1) % 3], p[:, (axis + 2) % 3] = u.ravel(), w.ravel()
            pts.append(p)
    p = np.unique(np.concatenate(pts).round(9), axis=0) * [sx, sy, sz]
    p[:, 2] += sz / 2 + z0
    return p


def _merge(*parts):
    """Concatenate (vertices, faces, colours) parts into one mesh (parts stay separate components)."""
    vs, fs, cs, off = [], [], [], 0
    for v, f, c in parts:
        vs.append(v)
        fs.append(f + off)
        cs.append(c)
        off += len(v)
    return np.concatenate(vs), np.concatenate(fs), np.concatenate(cs)


# --- colours ----------------------------------------------------------------------------------------------
_PALETTE = {
    "glass": [(0.35, 0.55, 0.35), (0.45, 0.3, 0.15), (0.75, 0.8, 0.8), (0.2, 0.35, 0.6)],
    "plastic": [(0.9, 0.9, 0.9), (0.85, 0.1, 0.1), (0.1, 0.4, 0.85), (0.95, 0.8, 0.1), (0.1, 0.6, 0.3),
                (0.95, 0.5, 0.1), (0.6, 0.2, 0.7), (0.15, 0.15, 0.15)],
    "ceramic": [(0.95, 0.95, 0.92), (0.85, 0.2, 0.2), (0.2, 0.3, 0.7), (0.3, 0.6, 0.4), (0.95, 0.85, 0.55),
                (0.2, 0.2, 0.2), (0.6, 0.75, 0.85)],
    "metal": [(0.75, 0.75, 0.78), (0.6, 0.6, 0.62)],
    "fruit_round": [(0.8, 0.1, 0.1), (0.55, 0.75, 0.2), (0.95, 0.55, 0.1), (0.95, 0.85, 0.2)],
    "fruit_long": [(0.95, 0.85, 0.25), (0.2, 0.45, 0.15), (0.35, 0.15, 0.4)],
    "wood": [(0.6, 0.45, 0.3), (0.45, 0.3, 0.2)],
}


def _pick(rng: np.random.Generator, name: str, jitter: float = 0.06) -> np.ndarray:
    pal = _PALETTE[name]
    c = np.asarray(pal[int(rng.integers(len(pal)))], float)
    return np.clip(c + rng.uniform(-jitter, jitter, 3), 0.02, 1.0)


def _by_height(profile: np.ndarray, bands: list[tuple[float, np.ndarray]], default: np.ndarray) -> np.ndarray:
    """Per-profile-point colour: the first band (z_max, colour) with z <= z_max, else ``default``."""
    out = np.empty((len(profile), 3))
    for i, z in enumerate(profile[:, 1]):
        out[i] = next((c for zmax, c in bands if z <= zmax), default)
    return out


# --- kinds --------------------------------------------------------------------------------------------------
def _bottle(rng):
    h = rng.uniform(*SIZE_RANGES_M["bottle"])
    r = h * rng.uniform(0.12, 0.2)
    rn = r * rng.uniform(0.3, 0.45)  # neck
    zs, zn = h * rng.uniform(0.55, 0.72), h * rng.uniform(0.78, 0.86)  # shoulder start, neck start
    prof = [(0, 0), (r * 0.92, 0), (r, 0.01 * h), (r, zs)]
    for t in np.linspace(0.2, 1.0, 4):  # rounded shoulder
        prof.append((rn + (r - rn) * np.cos(t * np.pi / 2), zs + (zn - zs) * np.sin(t * np.pi / 2)))
    cap = rn * 1.1
    prof += [(rn, h * 0.93), (cap, h * 0.93), (cap, h), (0, h)]
    p = np.asarray(prof)
    body, capc = _pick(rng, "glass" if rng.random() < 0.5 else "plastic"), _pick(rng, "plastic")
    label = _pick(rng, "plastic")
    cols = _by_height(p, [(0.08 * h, body), (0.45 * h, label), (0.925 * h, body)], capc)
    return lathe(p, 32, cols)


def _can(rng):
    h = rng.uniform(*SIZE_RANGES_M["can"])
    r = rng.uniform(0.026, 0.045) if h < 0.13 else rng.uniform(0.028, 0.034)
    rim = 0.004
    p = np.asarray([(0, 0.003), (r - rim, 0.0), (r, 0.006), (r, h - 0.008), (r - rim, h), (r - 2 * rim, h - 0.002),
                    (0, h - 0.002)])
    metal, label = _pick(rng, "metal"), _pick(rng, "plastic")
    cols = _by_height(p, [(0.007, metal), (h - 0.009, label)], metal)
    return lathe(p, 32, cols)


def _vessel(rng, h, r_top, r_bot, wall, bottom, n_curve=6, belly=0.0):
    """Open vessel profile (outer wall up, rim, inner wall down): (P, 2)."""
    t = np.linspace(0, 1, n_curve)
    r_out = r_bot + (r_top - r_bot) * t + belly * np.sin(np.pi * t) * r_top
    z = h * t
    outer = np.stack([r_out, z], 1)
    inner = np.stack([np.maximum(r_out - wall, wall), np.maximum(z, bottom)], 1)[::-1]
    inner[-1, 1] = bottom
    prof = np.concatenate([[(0, 0)], outer, inner[:-1], [inner[-1]], [(0, bottom)]])
    # the inner wall's lowest point sits on the inner bottom; drop duplicates from the clamp
    keep = np.ones(len(prof), bool)
    keep[1:] = np.abs(np.diff(prof, axis=0)).sum(1) > 1e-9
    return prof[keep]


def _cup(rng, handle: bool = False):
    kind = "mug" if handle else "cup"
    h = rng.uniform(*SIZE_RANGES_M[kind])
    r_top = h * (rng.uniform(0.38, 0.5) if handle else rng.uniform(0.35, 0.5))
    r_bot = r_top * (rng.uniform(0.85, 1.0) if handle else rng.uniform(0.6, 0.85))
    wall = rng.uniform(0.003, 0.006)
    p = _vessel(rng, h, r_top, r_bot, wall, bottom=rng.uniform(0.006, 0.012))
    col = _pick(rng, "ceramic" if handle else ("plastic" if rng.random() < 0.5 else "ceramic"))
    body = lathe(p, 32, np.broadcast_to(col, (len(p), 3)))
    if not handle:
        return body
    # C-shaped handle: a capped tube from the upper to the lower wall, its ends buried in the wall
    z_hi, z_lo = h * rng.uniform(0.75, 0.85), h * rng.uniform(0.2, 0.3)
    reach = h * rng.uniform(0.25, 0.35)
    th = np.linspace(0, np.pi, 10)
    zc, zr = 0.5 * (z_hi + z_lo), 0.5 * (z_hi - z_lo)
    r_at = lambda z: r_bot + (r_top - r_bot) * z / h  # noqa: E731
    x = r_at(zc) - wall + (reach + wall) * np.sin(th)
    path = np.stack([x, np.zeros_like(x), zc + zr * np.cos(th)], 1)
    rad = np.full(len(path), h * rng.uniform(0.045, 0.065))
    return _merge(body, tube(path, rad, 10, col))


def _bowl(rng):
    d = rng.uniform(*SIZE_RANGES_M["bowl"])
    r_top = d / 2
    h = d * rng.uniform(0.3, 0.45)
    p = _vessel(rng, h, r_top, r_top * rng.uniform(0.35, 0.55), rng.uniform(0.004, 0.007),
                bottom=rng.uniform(0.006, 0.01), n_curve=8, belly=rng.uniform(0.0, 0.12))
    return lathe(p, 36, np.broadcast_to(_pick(rng, "ceramic"), (len(p), 3)))


def _jar(rng):
    h = rng.uniform(*SIZE_RANGES_M["jar"])
    r = h * rng.uniform(0.3, 0.5)
    rl = r * rng.uniform(0.8, 0.95)
    zl = h * rng.uniform(0.8, 0.88)
    p = np.asarray([(0, 0), (r * 0.95, 0), (r, 0.01 * h), (r, zl * 0.9), (rl * 0.95, zl), (rl, zl), (rl, h * 0.98),
                    (rl * 0.95, h), (0, h)])
    cols = _by_height(p, [(zl - 1e-6, _pick(rng, "glass"))], _pick(rng, "metal" if rng.random() < 0.5 else "plastic"))
    return lathe(p, 32, cols)


def _vase(rng):
    h = rng.uniform(*SIZE_RANGES_M["vase"])
    r = h * rng.uniform(0.15, 0.28)
    t = np.linspace(0, 1, 10)
    k1, k2 = rng.uniform(0.25, 0.55), rng.uniform(0.35, 0.7)
    belly = 0.55 + 0.45 * np.sin(np.pi * np.clip(t / (k1 + 0.35), 0, 1)) ** 1.2
    r_out = r * belly * (1 - k2 * t ** 2) + 0.35 * r * t ** 3  # belly, waist, flared lip
    outer = np.stack([r_out, h * t], 1)
    wall = 0.005
    inner = np.stack([np.maximum(r_out[::-1][:3] - wall, 0.003), h * t[::-1][:3]], 1)
    bottom = h * t[-3]
    p = np.concatenate([[(0, 0)], outer, inner, [(0, bottom)]])
    return lathe(p, 32, np.broadcast_to(_pick(rng, "ceramic"), (len(p), 3)))


def _cereal_box(rng):
    h = rng.uniform(*SIZE_RANGES_M["cereal_box"])
    w, d = h * rng.uniform(0.6, 0.78), h * rng.uniform(0.2, 0.3)
    v, f, _ = convex_hull(_box_points(w, d, h))
    front, side = _pick(rng, "plastic"), _pick(rng, "plastic")
    c = np.where((np.abs(v[:, 1]) > 0.49 * d)[:, None], front, side)
    band = (v[:, 2] > 0.6 * h) & (v[:, 2] < 0.85 * h)  # a title band across the front
    c[band] = 0.5 * c[band] + 0.5
    return v, f, c


def _milk_carton(rng):
    h = rng.uniform(*SIZE_RANGES_M["milk_carton"])
    w = h * rng.uniform(0.3, 0.4)
    body = h * rng.uniform(0.75, 0.82)
    pts = _box_points(w, w, body)
    ridge = np.stack([np.linspace(-w / 2, w / 2, 5), np.zeros(5), np.full(5, h * 0.97)], 1)
    v, f, _ = convex_hull(np.concatenate([pts, ridge]))
    # the sealed fin on the ridge: a thin box on top (its own closed part)
    fin = convex_hull(_box_points(w, 0.004, h * 0.03, z0=h * 0.97 - 0.001))
    main_c, top_c = np.asarray([0.96, 0.96, 0.94]), _pick(rng, "plastic")
    c = np.where((v[:, 2] > 0.45 * body)[:, None] & (v[:, 2] < body + 1e-6)[:, None] & (
        np.abs(v[:, 0]) > 0.49 * w)[:, None], top_c, main_c)
    c[v[:, 2] > body + 1e-6] = top_c
    return _merge((v, f, c), (fin[0], fin[1], np.broadcast_to(top_c, fin[0].shape).copy()))


def _fruit_round(rng):
    d = rng.uniform(*SIZE_RANGES_M["fruit_round"])
    r = d / 2
    t = np.linspace(0, np.pi, 14)[1:-1]
    flat = rng.uniform(0.8, 1.0)  # apples are wider than tall
    dip = rng.uniform(0.0, 0.15)  # stem and calyx dimples
    rr = r * np.sin(t) * (1 + rng.uniform(-0.05, 0.1) * np.cos(t))
    zz = r * flat * (1 - np.cos(t))
    z_top = 2 * r * flat - dip * r
    p = np.concatenate([[(0, dip * r)], np.stack([rr, zz], 1), [(0, z_top)]])
    col = _pick(rng, "fruit_round")
    return lathe(p, 28, np.broadcast_to(col, (len(p), 3)))


def _fruit_long(rng):
    length = rng.uniform(*SIZE_RANGES_M["fruit_long"])
    r = length * rng.uniform(0.09, 0.16)
    bend = rng.uniform(0.0, 0.5)  # 0: cucumber/eggplant, larger: banana
    s = np.linspace(0, 1, 16)
    ang = (s - 0.5) * bend * np.pi
    rad_curve = length / max(bend * np.pi, 1e-3)
    if bend > 0.05:
        path = np.stack([rad_curve * np.sin(ang), np.zeros_like(s), rad_curve * (1 - np.cos(ang))], 1)
    else:
        path = np.stack([length * (s - 0.5), np.zeros_like(s), np.zeros_like(s)], 1)
    radii = r * np.sin(np.pi * np.clip(s, 0.02, 0.98)) ** 0.6
    v, f, _ = tube(path, radii, 14)
    v[:, 2] -= v[:, 2].min()
    col = _pick(rng, "fruit_long")
    c = np.broadcast_to(col, v.shape).copy()
    c[:1] = c[-1:] = col * 0.35  # dark tips
    return v, f, c


def _spatula(rng):
    length = rng.uniform(*SIZE_RANGES_M["spatula"])
    hl = length * rng.uniform(0.55, 0.65)
    hw, ht = rng.uniform(0.018, 0.028), rng.uniform(0.01, 0.016)
    bw, bt = rng.uniform(0.06, 0.09), rng.uniform(0.003, 0.005)
    handle = convex_hull(_box_points(hl, hw, ht) + [-(length - hl) / 2 - 0.01, 0, 0])
    blade = convex_hull(_box_points(length - hl + 0.02, bw, bt) + [hl / 2, 0, 0])
    return _merge((handle[0], handle[1], np.broadcast_to(_pick(rng, "wood" if rng.random() < 0.5 else "plastic"),
                                                         handle[0].shape).copy()),
                  (blade[0], blade[1], np.broadcast_to(_pick(rng, "plastic"), blade[0].shape).copy()))


def _knife(rng):
    length = rng.uniform(*SIZE_RANGES_M["knife"])
    hl = length * rng.uniform(0.38, 0.45)
    hw, ht = rng.uniform(0.018, 0.025), rng.uniform(0.012, 0.018)
    bl, bw, bt = length - hl, rng.uniform(0.02, 0.045), 0.002
    handle = convex_hull(_box_points(hl, ht, hw) + [-bl / 2, 0, 0])
    x = np.linspace(0, bl, 6)
    top = bw * (1 - (x / bl) ** 3)  # the edge curves up to the tip
    tip = np.concatenate([np.stack([x, s * np.full_like(x, bt / 2), z], 1)
                          for s in (-1, 1) for z in (np.zeros_like(x), top)])
    blade = convex_hull(tip + [hl / 2 - bl / 2 - 0.005, 0, hw / 2 - bw / 2])
    hcol = _pick(rng, "wood" if rng.random() < 0.5 else "plastic")
    return _merge((handle[0], handle[1], np.broadcast_to(hcol, handle[0].shape).copy()),
                  (blade[0], blade[1], np.broadcast_to(_pick(rng, "metal"), blade[0].shape).copy()))


def _remote(rng):
    length = rng.uniform(*SIZE_RANGES_M["remote"])
    w, t = length * rng.uniform(0.22, 0.3), rng.uniform(0.015, 0.025)
    # rounded slab: the hull of a box with bevelled edges
    pts = _box_points(length, w, t)
    corner = (np.abs(pts[:, 1]) > 0.49 * w) & (pts[:, 2] > 0.99 * t)
    pts[corner, 1] *= 0.85
    v, f, _ = convex_hull(pts)
    c = np.broadcast_to(_pick(rng, "plastic" if rng.random() < 0.3 else "ceramic") * 0.4, v.shape).copy()
    return v, f, c


_BUILDERS = {"bottle": _bottle, "can": _can, "cup": _cup, "mug": lambda g: _cup(g, True), "bowl": _bowl,
             "jar": _jar, "vase": _vase, "cereal_box": _cereal_box, "milk_carton": _milk_carton,
             "fruit_round": _fruit_round, "fruit_long": _fruit_long, "spatula": _spatula, "knife": _knife,
             "remote": _remote}


def household(kind: str, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One household object of ``kind`` -> vertices (V, 3) metres (z up, resting on z = 0), faces (F, 3)
    int64 outward, colours (V, 3) albedo in [0, 1]."""
    if kind not in _BUILDERS:
        raise ValueError(f"household kind must be one of {HOUSEHOLD_KINDS}, got {kind!r}")
    if not isinstance(rng, np.random.Generator):
        raise TypeError("rng must be a numpy.random.Generator")
    v, f, c = _BUILDERS[kind](rng)
    v = np.asarray(v, np.float64)
    v[:, 2] -= v[:, 2].min()
    return v, np.asarray(f, np.int64), np.clip(np.asarray(c, np.float64), 0.0, 1.0)


def parse_name(name: str) -> tuple[str, int]:
    """``hh_<kind>_NNN`` -> (kind, NNN); ValueError otherwise."""
    if name.startswith("hh_"):
        kind, _, idx = name[3:].rpartition("_")
        if kind in _BUILDERS and len(idx) == 3 and idx.isdigit() and int(idx) < HOUSEHOLD_PER_KIND:
            return kind, int(idx)
    raise ValueError(f"not a household object name: {name!r}")


def household_by_name(name: str):
    """The fixed mesh of ``hh_<kind>_NNN`` (seeded by the name) -> (vertices m, faces, colours)."""
    kind, idx = parse_name(name)
    return household(kind, np.random.default_rng(zlib.crc32(f"household:{kind}:{idx}".encode())))


def household_names(split: str) -> list[str]:
    """Names of a household split ("hh_train", "hh_val", "hh_test"), sorted by kind then number."""
    return [f"hh_{k}_{i:03d}" for k in HOUSEHOLD_KINDS for i in range(HOUSEHOLD_PER_KIND)
            if household_split(i) == split]
