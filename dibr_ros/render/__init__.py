"""Differentiable DIB-R mesh rendering (Kaolin-compatible rasterizer plus camera/mesh/shading toolkit)."""

# --- toolkit exports ---
# --- end toolkit exports ---
