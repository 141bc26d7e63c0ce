"""Differentiable DIB-R mesh rendering (Kaolin-compatible rasterizer plus camera/mesh/shading toolkit)."""

from dibr_ros.render.rasterize import dibr_rasterize as dibr_rasterize
from dibr_ros.render.reference import rasterize_reference as rasterize_reference

# --- toolkit exports ---
# --- end toolkit exports ---
