"""Wavefront OBJ/MTL and URDF reading for pybullet_data objects, and mesh cleaning.

open3d's OBJ reader drops per-material diffuse colours (``Kd``) of multi-material files, so OBJ/MTL are
parsed here; open3d does the cleaning (duplicate vertices/faces, degenerate faces, winding).
"""

from __future__ import annotations

import logging
import os
import xml.etree.ElementTree as ET
from dataclasses import dataclass

import numpy as np

from dibr_ros.render.mesh import face_signed_volumes

log = logging.getLogger(__name__)


@dataclass
class UrdfVisual:
    """First visual mesh of a URDF: absolute mesh path, per-axis scale (3,), RGBA colour or None."""

    mesh_path: str
    scale: np.ndarray
    rgba: np.ndarray | None


def parse_urdf(path: str) -> UrdfVisual:
    """Read the first ``<visual><geometry><mesh>`` of a URDF (filename, scale) and its material colour."""
    root = ET.parse(path).getroot()
    for visual in root.iter("visual"):
        mesh = visual.find("geometry/mesh")
        if mesh is None:
            continue
        scale = np.array([float(s) for s in mesh.get("scale", "1 1 1").split()], dtype=np.float64)
        if scale.size == 1:
            scale = np.repeat(scale, 3)
        color = visual.find("material/color")
        rgba = None
        if color is not None and color.get("rgba"):
            rgba = np.array([float(s) for s in color.get("rgba").split()], dtype=np.float64)
        return UrdfVisual(os.path.join(os.path.dirname(path), mesh.get("filename")), scale, rgba)
    raise ValueError(f"{path}: no visual mesh")


def _parse_mtl(path: str) -> dict[str, dict]:
    mats: dict[str, dict] = {}
    cur = None
    with open(path, errors="replace") as f:
        for line in f:
            tok = line.split()
            if not tok:
                continue
            if tok[0] == "newmtl":
                cur = mats.setdefault(" ".join(tok[1:]), {})
            elif cur is not None and tok[0] == "Kd" and len(tok) >= 4:
                cur["Kd"] = np.array([float(t) for t in tok[1:4]])
            elif cur is not None and tok[0] == "map_Kd" and len(tok) >= 2:
                # Windows absolute paths in some files: keep the base name, resolved next to the MTL.
                name = tok[-1].replace("\\", "/")
                cand = [os.path.join(os.path.dirname(path), name),
                        os.path.join(os.path.dirname(path), os.path.basename(name))]
                cur["map_Kd"] = next((c for c in cand if os.path.isfile(c)), None)
    return mats


def _load_texture(path: str) -> np.ndarray | None:
    import cv2

    img = cv2.imread(path, cv2.IMREAD_COLOR)
    if img is None:
        return None
    return img[:, :, ::-1].astype(np.float32) / 255.0


_BARY = np.array([(i, j, 4 - i - j) for i in range(5) for j in range(5 - i)], dtype=np.float64) / 4.0


def read_obj(path: str, default_rgb=(0.8, 0.8, 0.8)) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Read an OBJ with its MTL into per-vertex colours.

    Polygons are fan-triangulated. A face's colour is its material's ``Kd`` or, when the material has a
    readable ``map_Kd``, ``Kd`` times the mean texture colour over the face's UV triangle; vertex colours
    are the average over the corners that use the vertex.

    Returns:
        vertices (V,3) float64, faces (F,3) int64, colors (V,3) float64 in [0,1].
    """
    verts, uvs, faces, corner_uv, face_mat = [], [], [], [], []
    mats: dict[str, dict] = {}
    mat = None
    with open(path, errors="replace") as f:
        for line in f:
            tok = line.split()
            if not tok:
                continue
            if tok[0] == "v":
                verts.append([float(t) for t in tok[1:4]])
            elif tok[0] == "vt":
                uvs.append([float(t) for t in tok[1:3]])
            elif tok[0] == "f":
                idx, tidx = [], []
                for t in tok[1:]:
                    parts = t.split("/")
                    vi = int(parts[0])
                    idx.append(vi - 1 if vi > 0 else len(verts) + vi)
                    ti = int(parts[1]) if len(parts) > 1 and parts[1] else 0
                    tidx.append((ti - 1 if ti > 0 else len(uvs) + ti) if ti else -1)
                for k in range(1, len(idx) - 1):
                    faces.append([idx[0], idx[k], idx[k + 1]])
                    corner_uv.append([tidx[0], tidx[k], tidx[k + 1]])
                    face_mat.append(mat)
            elif tok[0] == "mtllib":
                mpath = os.path.join(os.path.dirname(path), " ".join(tok[1:]))
                if os.path.isfile(mpath):
                    mats.update(_parse_mtl(mpath))
            elif tok[0] == "usemtl":
                mat = " ".join(tok[1:])
    if not verts or not faces:
        raise ValueError(f"{path}: no vertices or faces")
    v = np.asarray(verts, dtype=np.float64)
    fa = np.asarray(faces, dtype=np.int64)
    if fa.min() < 0 or fa.max() >= len(v):
        raise ValueError(f"{path}: face index out of range")
    uv = np.asarray(uvs, dtype=np.float64).reshape(-1, 2)
    cuv = np.asarray(corner_uv, dtype=np.int64)
    corner_rgb = np.tile(np.asarray(default_rgb, dtype=np.float64), (len(fa), 3, 1))
    textures: dict[str, np.ndarray | None] = {}
    for name in set(face_mat):
        m = mats.get(name) if name is not None else None
        if m is None:
            continue
        sel = np.array([fm == name for fm in face_mat])
        if "Kd" in m:
            corner_rgb[sel] = m["Kd"]
        tex_path = m.get("map_Kd")
        if tex_path is not None and len(uv):
            if tex_path not in textures:
                textures[tex_path] = _load_texture(tex_path)
            tex = textures[tex_path]
            ci = cuv[sel]
            if tex is not None and (ci >= 0).all():
                # Mean texture colour over each face's UV triangle (a 15-point barycentric lattice): per-vertex
                # colours cannot hold texture detail, and corner samples of a checker give streaks.
                t = np.einsum("sk,fkc->fsc", _BARY, uv[ci]) % 1.0
                h, w = tex.shape[:2]
                px = np.clip((t[..., 0] * (w - 1)).round().astype(np.int64), 0, w - 1)
                py = np.clip(((1.0 - t[..., 1]) * (h - 1)).round().astype(np.int64), 0, h - 1)
                corner_rgb[sel] = tex[py, px].mean(1)[:, None, :] * m.get("Kd", np.ones(3))
    acc = np.zeros((len(v), 3))
    cnt = np.zeros(len(v))
    np.add.at(acc, fa.reshape(-1), corner_rgb.reshape(-1, 3))
    np.add.at(cnt, fa.reshape(-1), 1.0)
    colors = np.where(cnt[:, None] > 0, acc / np.maximum(cnt, 1.0)[:, None], np.asarray(default_rgb))
    return v, fa, np.clip(colors, 0.0, 1.0)


def _component_signed_volumes(v: np.ndarray, f: np.ndarray, labels: np.ndarray, n: int) -> np.ndarray:
    return np.bincount(labels, weights=face_signed_volumes(v, f), minlength=n)


def clean_mesh(vertices: np.ndarray, faces: np.ndarray, colors: np.ndarray,
               merge_tol: float = 1e-6) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Merge duplicate vertices, drop degenerate/duplicate faces and unused vertices, orient consistently.

    Winding: open3d ``orient_triangles`` makes each connected part consistent, then every part with a
    negative signed volume is flipped so that closed parts face outwards (CCW seen from outside).
    ``merge_tol`` is relative to the bounding-box diagonal; merged vertices average their colours.

    Returns:
        vertices (V,3) float64, faces (F,3) int64, colors (V,3) float64.
    """
    import open3d as o3d

    m = o3d.geometry.TriangleMesh(o3d.utility.Vector3dVector(np.asarray(vertices, dtype=np.float64)),
                                  o3d.utility.Vector3iVector(np.asarray(faces, dtype=np.int32)))
    m.vertex_colors = o3d.utility.Vector3dVector(np.asarray(colors, dtype=np.float64))
    diag = float(np.linalg.norm(np.ptp(np.asarray(vertices), axis=0)))
    m = m.merge_close_vertices(merge_tol * max(diag, 1e-12))
    m.remove_duplicated_vertices()
    m.remove_degenerate_triangles()
    m.remove_duplicated_triangles()
    m.remove_unreferenced_vertices()
    v = np.asarray(m.vertices)
    f = np.asarray(m.triangles).astype(np.int64)
    # Zero-area but non-repeated-index faces survive remove_degenerate_triangles.
    area2 = np.linalg.norm(np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]]), axis=1)
    keep = area2 > 1e-12 * max(diag, 1e-12) ** 2
    if not keep.all():
        m.remove_triangles_by_mask(~keep)
        m.remove_unreferenced_vertices()
    if m.is_edge_manifold():
        m.orient_triangles()
    v = np.asarray(m.vertices).copy()
    f = np.asarray(m.triangles).astype(np.int64).copy()
    c = np.asarray(m.vertex_colors).copy()
    if len(f) == 0:
        raise ValueError("mesh has no faces left after cleaning")
    labels, _, _ = m.cluster_connected_triangles()
    labels = np.asarray(labels, dtype=np.int64)
    n = int(labels.max()) + 1
    vol = _component_signed_volumes(v - v.mean(0), f, labels, n)
    flip = vol[labels] < 0
    f[flip] = f[flip][:, ::-1]
    return v, f, c
