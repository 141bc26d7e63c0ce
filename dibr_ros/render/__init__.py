"""Differentiable DIB-R mesh rendering (Kaolin-compatible rasterizer plus camera/mesh/shading toolkit)."""

from dibr_ros.render.rasterize import dibr_rasterize as dibr_rasterize
from dibr_ros.render.reference import rasterize_reference as rasterize_reference

# --- toolkit exports ---
# isort: split
from dibr_ros.render.camera import OPENCV_TO_OPENGL as OPENCV_TO_OPENGL
from dibr_ros.render.camera import camera_from_spherical as camera_from_spherical
from dibr_ros.render.camera import camera_position_from_spherical as camera_position_from_spherical
from dibr_ros.render.camera import camera_to_world as camera_to_world
from dibr_ros.render.camera import fov_to_intrinsics as fov_to_intrinsics
from dibr_ros.render.camera import intrinsics_to_projection as intrinsics_to_projection
from dibr_ros.render.camera import look_at_rotation as look_at_rotation
from dibr_ros.render.camera import ndc_to_pixel as ndc_to_pixel
from dibr_ros.render.camera import perspective_projection as perspective_projection
from dibr_ros.render.camera import pixel_to_ndc as pixel_to_ndc
from dibr_ros.render.camera import project as project
from dibr_ros.render.camera import projection_to_intrinsics as projection_to_intrinsics
from dibr_ros.render.camera import unproject_pixels as unproject_pixels
from dibr_ros.render.camera import world_to_camera as world_to_camera
from dibr_ros.render.mesh import edge_face_adjacency as edge_face_adjacency
from dibr_ros.render.mesh import face_normals as face_normals
from dibr_ros.render.mesh import face_signed_volumes as face_signed_volumes
from dibr_ros.render.mesh import gather_faces as gather_faces
from dibr_ros.render.mesh import ico_sphere as ico_sphere
from dibr_ros.render.mesh import mesh_edges as mesh_edges
from dibr_ros.render.mesh import normalize_mesh as normalize_mesh
from dibr_ros.render.mesh import uniform_laplacian as uniform_laplacian
from dibr_ros.render.mesh import vertex_adjacency as vertex_adjacency
from dibr_ros.render.mesh import vertex_normals as vertex_normals
from dibr_ros.render.renderer import DEFAULT_FOVY as DEFAULT_FOVY
from dibr_ros.render.renderer import pixel_ndc_grid as pixel_ndc_grid
from dibr_ros.render.renderer import prepare_vertices as prepare_vertices
from dibr_ros.render.renderer import render_mesh as render_mesh
from dibr_ros.render.renderer import render_silhouette as render_silhouette
from dibr_ros.render.shading import SH9_CONSTANTS as SH9_CONSTANTS
from dibr_ros.render.shading import lambertian as lambertian
from dibr_ros.render.shading import phong as phong
from dibr_ros.render.shading import sh9_basis as sh9_basis
from dibr_ros.render.shading import sh9_shading as sh9_shading
from dibr_ros.render.texture import sample_texture as sample_texture
# --- end toolkit exports ---
