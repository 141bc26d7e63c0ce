"""dibr_ros.data: object library (pybullet_data meshes + primitives), multi-view renders, shards."""

from .library import (
    ObjectMesh,
    list_objects,
    load_object,
    load_split,
    load_split_arrays,
    pack_objects,
    primitive,
)
from .shards import ShardDataset, write_shards
from .views import MultiViewSampler, relative_cameras, render_batch

__all__ = ["MultiViewSampler", "ObjectMesh", "ShardDataset", "list_objects", "load_object", "load_split",
           "load_split_arrays", "pack_objects", "primitive", "relative_cameras", "render_batch", "write_shards"]
