"""``~/detections`` (vision_msgs/Detection3DArray) when vision_msgs is importable, against a stand-in with the
documented message layout (there is no vision_msgs wheel); nothing changes without it."""

import os
import sys
import types

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")

from std_msgs.msg import Header  # noqa: E402

from dibr_ros.ros import conversions as conv  # noqa: E402


def _vision_msgs_standin():
    """vision_msgs.msg with the documented fields (vision_msgs 4.x): Detection3DArray(header, detections[]),
    Detection3D(header, results[], bbox, id), BoundingBox3D(center: Pose, size: Vector3),
    ObjectHypothesisWithPose(hypothesis: ObjectHypothesis(class_id, score), pose: PoseWithCovariance)."""
    from geometry_msgs.msg import Pose, PoseWithCovariance, Vector3

    class ObjectHypothesis:
        def __init__(self):
            self.class_id, self.score = "", 0.0

    class ObjectHypothesisWithPose:
        def __init__(self):
            self.hypothesis, self.pose = ObjectHypothesis(), PoseWithCovariance()

    class BoundingBox3D:
        def __init__(self):
            self.center, self.size = Pose(), Vector3()

    class Detection3D:
        def __init__(self):
            self.header, self.results, self.bbox, self.id = Header(), [], BoundingBox3D(), ""

    class Detection3DArray:
        def __init__(self):
            self.header, self.detections = Header(), []

    msg = types.ModuleType("vision_msgs.msg")
    for c in (ObjectHypothesis, ObjectHypothesisWithPose, BoundingBox3D, Detection3D, Detection3DArray):
        setattr(msg, c.__name__, c)
    pkg = types.ModuleType("vision_msgs")
    pkg.msg = msg
    return pkg, msg


def test_detection3d_array_boxes_ids_and_scores():
    _, vm = _vision_msgs_standin()
    h = Header(frame_id="cam")
    cube = np.array([[x, y, z] for x in (0.1, 0.3) for y in (-0.05, 0.05) for z in (0.6, 0.7)])
    out = conv.detection3d_array(vm, h, [(7, cube, 0.9), (3, cube + [0, 0, 0.5], 1.0)])
    assert out.header is h and [d.id for d in out.detections] == ["7", "3"]
    d = out.detections[0]
    c = d.bbox.center.position
    assert (c.x, c.y, c.z) == pytest.approx((0.2, 0.0, 0.65)) and d.bbox.center.orientation.w == 1.0
    assert (d.bbox.size.x, d.bbox.size.y, d.bbox.size.z) == pytest.approx((0.2, 0.1, 0.1))
    assert d.results[0].hypothesis.score == pytest.approx(0.9) and d.results[0].pose.pose.position.z == c.z
    assert out.detections[1].bbox.center.position.z == pytest.approx(1.15)


def test_node_publishes_detections_matching_the_mesh_ids_only_with_vision_msgs(tmp_path, monkeypatch):
    from rclpy.parameter import Parameter

    from dibr_ros.model.checkpoint import save_checkpoint
    from dibr_ros.model.predictor import Predictor
    from dibr_ros.perception.synthetic import tabletop_scene
    from dibr_ros.ros.perception_node import PerceptionNode

    pred = Predictor.from_config(seed=0)
    weights = str(tmp_path / "random.pt")
    save_checkpoint(weights, pred.network, pred.network.config, {"note": "random init for tests"})
    frame, objects, K, _ = tabletop_scene(n_objects=3, seed=3, width=320, height=240)
    ctx = rclpy.Context()
    rclpy.init(context=ctx, domain_id=1 + (os.getpid() * 43 + 11) % 100)
    params = [Parameter("device", value="cpu"), Parameter("weights", value=weights),
              Parameter("publish_debug_image", value=False)]
    nodes = []
    try:
        monkeypatch.setitem(sys.modules, "vision_msgs", None)  # not installed: import raises ImportError
        plain = PerceptionNode(context=ctx, parameter_overrides=params)
        nodes.append(plain)
        assert plain._pub_det is None and "detections" not in str(plain.get_publisher_names_and_types_by_node(
            plain.get_name(), plain.get_namespace()))

        pkg, vm = _vision_msgs_standin()
        monkeypatch.setitem(sys.modules, "vision_msgs", pkg)
        monkeypatch.setitem(sys.modules, "vision_msgs.msg", vm)
        sent = []
        real = PerceptionNode.create_publisher

        def create_publisher(self, typ, topic, qos, **kw):  # a stand-in type has no rosidl type support
            if typ is vm.Detection3DArray:
                assert topic == "~/detections"
                return types.SimpleNamespace(publish=sent.append)
            return real(self, typ, topic, qos, **kw)

        monkeypatch.setattr(PerceptionNode, "create_publisher", create_publisher)
        node = PerceptionNode(context=ctx, parameter_overrides=params)
        nodes.append(node)
        markers = []
        node._publish_meshes = lambda header, meshes, ids: markers.append(list(ids))
        result = node._pipeline.process(frame["rgb"], K, frame["depth"])
        h = Header(frame_id="cam_optical")
        node._publish(h, result)
        assert len(sent) == 1 and len(result.objects) >= 1
        dets = sent[0].detections
        assert sent[0].header is h and [d.id for d in dets] == [str(i) for i in markers[0]]
        for d, o in zip(dets, result.objects):  # the box holds the published mesh, in the camera frame
            c, s = d.bbox.center.position, d.bbox.size
            lo, hi = o.vertices.min(0), o.vertices.max(0)
            assert np.allclose([c.x, c.y, c.z], (lo + hi) / 2, atol=1e-6)
            assert np.allclose([s.x, s.y, s.z], hi - lo, atol=1e-6)
        truth = np.array([ob.center for ob in objects])
        centres = np.array([[d.bbox.center.position.x, d.bbox.center.position.y, d.bbox.center.position.z]
                            for d in dets])
        assert np.min(np.linalg.norm(truth[:, None] - centres[None], axis=2), axis=0).max() < 0.1
    finally:
        for n in nodes:
            n.close()
            n.destroy_node()
        rclpy.shutdown(context=ctx)
