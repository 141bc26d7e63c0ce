"""The DIB-R predictor: network, losses, checkpoint I/O and the inference API (DESIGN section 4).

    from dibr_ros.model import Predictor
    meshes = Predictor.load().predict(rgb, mask)   # rgb (N, h, w, 3) uint8, mask (N, h, w) bool

Training: ``python -m dibr_ros.model.train --help``.
"""

from dibr_ros.model.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from dibr_ros.model.network import DEFAULT_CONFIG, DIBRNet
from dibr_ros.model.predictor import PredictedMeshes, Predictor

__all__ = [
    "DEFAULT_CONFIG",
    "CheckpointError",
    "DIBRNet",
    "PredictedMeshes",
    "Predictor",
    "load_checkpoint",
    "save_checkpoint",
]
