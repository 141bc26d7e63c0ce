"""dibr_ros.perception: per-frame perception without ROS.

Segmentation (depth plane + clusters, colour, external labels) -> square crops -> one batched mesh
prediction -> metric placement in the camera optical frame -> surface point clouds.
"""

from .crops import Crop, make_crop, make_crops, square_box, stack_crops
from .pipeline import FrameResult, ObjectResult, PerceptionPipeline, PipelineConfig
from .placement import Placement, front_offset, place_mesh
from .pointcloud import merge_clouds, sample_surface
from .segmentation import Detection, segment_color, segment_depth, segment_labels

__all__ = [
    "Crop", "Detection", "FrameResult", "ObjectResult", "PerceptionPipeline", "PipelineConfig", "Placement",
    "front_offset", "make_crop", "make_crops", "merge_clouds", "place_mesh", "sample_surface", "segment_color",
    "segment_depth", "segment_labels", "square_box", "stack_crops",
]
