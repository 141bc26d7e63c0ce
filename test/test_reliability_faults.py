"""CUDA out of memory while predicting: smaller batches, then the CPU, said once, same results (CPU only).

The fakes raise ``torch.cuda.OutOfMemoryError`` the way a CUDA predictor does; their meshes depend on each
crop alone, so any batching of the same crops must give exactly the same frame.
"""

import logging

import numpy as np
import pytest
import torch

from dibr_ros.model import Predictor
from dibr_ros.perception import synthetic as S
from dibr_ros.perception.pipeline import PerceptionPipeline

CONFIG = {"points_per_object": 200, "debug_image": False}
LOGGER = "dibr_ros.perception.pipeline"


@pytest.fixture(scope="module")
def scene():
    frame, objects, K, _ = S.tabletop_scene(5, seed=3, width=320, height=240)
    assert len(objects) == 5
    return frame, K


class CropPredictor(S.SpherePredictor):
    """Per-crop ico-spheres stretched by the crop's mean colour (so a reordered batch shows), on a "device".

    oom_above: batches larger than this raise CUDA OOM while on CUDA (None: never; 0: always).
    """

    def __init__(self, device="cuda:0", oom_above=None, message=None):
        super().__init__(level=2)
        self.device, self.oom_above, self.message = device, oom_above, message
        self.batches, self.moves = [], []

    def predict(self, rgb, mask):
        self.batches.append(len(rgb))
        if self.device.startswith("cuda") and self.oom_above is not None and len(rgb) > self.oom_above:
            if self.message:
                raise RuntimeError(self.message)
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        out = super().predict(rgb, mask)
        out.vertices *= 0.5 + out.colors
        return out

    def to(self, device):
        self.moves.append(device)
        return CropPredictor(device=device, oom_above=self.oom_above, message=self.message)


def _frames_equal(a, b):
    assert len(a.objects) == len(b.objects) == 5
    for oa, ob in zip(a.objects, b.objects):
        assert oa.detection.label == ob.detection.label
        for name in ("vertices", "colors", "points", "point_colors", "center"):
            np.testing.assert_array_equal(getattr(oa, name), getattr(ob, name))


def _oom_lines(lines):
    return [w for w in lines if "out of memory" in w]


def _run(pipe, scene):
    frame, K = scene
    return pipe.process(frame["rgb"], K, labels=frame["labels"])


def test_oom_halves_the_batch_and_keeps_the_limit(scene, caplog):
    reference = _run(PerceptionPipeline(CropPredictor(), CONFIG), scene)
    pred = CropPredictor(oom_above=2)
    pipe = PerceptionPipeline(pred, CONFIG)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        first = _run(pipe, scene)
        second = _run(pipe, scene)
    assert pred.batches == [5, 2, 2, 1] + [2, 2, 1]  # one failure, then the learned limit
    assert pipe.max_batch == 2 and pipe.predictor is pred and pred.moves == []
    _frames_equal(first, reference)
    _frames_equal(second, reference)
    lines = _oom_lines(first.warnings)
    assert len(lines) == 1 and "at most 2 per batch" in lines[0]
    assert _oom_lines(second.warnings) == []
    logged = [r for r in caplog.records if r.name == LOGGER]
    assert [r.getMessage() for r in logged] == lines and logged[0].levelno == logging.WARNING


def test_oom_at_batch_one_moves_to_the_cpu_for_good(scene, caplog):
    reference = _run(PerceptionPipeline(CropPredictor(), CONFIG), scene)
    pred = CropPredictor(oom_above=0)
    pipe = PerceptionPipeline(pred, CONFIG)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        frames = [_run(pipe, scene) for _ in range(3)]
    assert pred.batches == [5, 2, 1] and pred.moves == ["cpu"]
    cpu = pipe.predictor
    assert cpu is not pred and cpu.device == "cpu" and cpu.batches == [5, 5, 5] and pipe.max_batch is None
    for f in frames:
        _frames_equal(f, reference)
    lines = _oom_lines(frames[0].warnings)
    assert len(lines) == 1 and "CPU from now on" in lines[0]
    assert _oom_lines(frames[1].warnings) == _oom_lines(frames[2].warnings) == []
    assert [r.getMessage() for r in caplog.records if r.name == LOGGER] == lines
    assert pipe.overlay_renderer == "opencv"  # "auto" follows the predictor off the GPU


def test_out_of_memory_runtime_error_text_is_recognised(scene):
    pred = CropPredictor(oom_above=3, message="CUDA error: out of memory\nCUDA kernel errors might be ...")
    pipe = PerceptionPipeline(pred, CONFIG)
    _frames_equal(_run(pipe, scene), _run(PerceptionPipeline(CropPredictor(), CONFIG), scene))
    assert pred.batches == [5, 2, 2, 1] and pipe.max_batch == 2


def test_other_failures_propagate(scene):
    # Not an OOM: raised at once, nothing retried.
    pred = CropPredictor(oom_above=0, message="CUDA error: device-side assert triggered")
    with pytest.raises(RuntimeError, match="device-side assert"):
        _run(PerceptionPipeline(pred, CONFIG), scene)
    assert pred.batches == [5]
    # OOM on a predictor already on the CPU: halved down to one crop, then raised (no endless loop).
    pred = CropPredictor(oom_above=0)
    pred.device = "cpu"
    pred.predict = _always_oom(pred)
    with pytest.raises(torch.cuda.OutOfMemoryError):
        _run(PerceptionPipeline(pred, CONFIG), scene)
    assert pred.batches == [5, 2, 1]
    # OOM on CUDA with nothing that moves the predictor: a one-line reason.
    stuck = _Immovable()
    with pytest.raises(RuntimeError, match="cannot be moved to the CPU"):
        _run(PerceptionPipeline(stuck, CONFIG), scene)
    assert stuck.batches == [5, 2, 1]


def _always_oom(pred):
    def predict(rgb, mask):
        pred.batches.append(len(rgb))
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 1.00 GiB")
    return predict


class _Immovable:
    device, input_size = "cuda:0", 64

    def __init__(self):
        self.batches = []
        self.predict = _always_oom(self)


def test_model_predictor_gets_a_cpu_copy_and_the_original_is_untouched(scene):
    """A dibr_ros.model.Predictor that hits OOM on "CUDA" is rebuilt on the CPU from its own weights."""
    reference = _run(PerceptionPipeline(Predictor.from_config(seed=0), CONFIG), scene)
    pred = Predictor.from_config(seed=0)
    pred._device = "cuda:0"  # stands in for a CUDA predictor; its predict is replaced below
    pred.batches = []
    pred.predict = _always_oom(pred)
    params = {k: v.clone() for k, v in pred.network.state_dict().items()}
    pipe = PerceptionPipeline(pred, CONFIG)
    frame = _run(pipe, scene)
    assert pred.batches == [5, 2, 1]
    cpu = pipe.predictor
    assert isinstance(cpu, Predictor) and cpu.device == "cpu" and cpu.network is not pred.network
    assert cpu.meta == pred.meta and cpu.input_size == pred.input_size
    for k, v in pred.network.state_dict().items():  # the node may still hold the original
        torch.testing.assert_close(v, params[k], rtol=0, atol=0)
    assert len(frame.objects) == len(reference.objects) == 5
    for a, b in zip(frame.objects, reference.objects):
        np.testing.assert_allclose(a.vertices, b.vertices, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(a.colors, b.colors, rtol=1e-5, atol=1e-6)
    assert len(_oom_lines(frame.warnings)) == 1
