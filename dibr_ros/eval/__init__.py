"""dibr_ros.eval: reconstruction metrics, baselines and the evaluation protocol.

Imports stay light: open3d/scipy/cv2 load inside the functions that need them.
"""

from .metrics import inside_mesh, mesh_metrics, silhouette_iou

__all__ = ["inside_mesh", "mesh_metrics", "silhouette_iou"]
