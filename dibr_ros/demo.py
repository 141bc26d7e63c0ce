"""``make demo``: simulated tabletop camera + perception node, results and a report in ``out/demo/``.

    python -m dibr_ros.demo --out out/demo [--frames 8] [--objects test|ood|files] [--seed 0]
    python -m dibr_ros.demo --elevation 15 --distance 0.8           # a low head camera
    python -m dibr_ros.demo --family lifted                         # a scene family of bench/e2e_bench.py

Starts ``sim_camera`` and ``perception_node`` as two processes talking over loopback DDS (this tool sets
``ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST`` and a ``ROS_DOMAIN_ID`` for itself and its children; the
installed nodes never force them), listens to their outputs for a fixed number of processed frames, then
writes per frame: the node's overlay (``overlay_NN.png``), predicted vs true meshes side by side
(``compare_NN.png``), the predicted meshes and completed clouds (``pred_mesh_NN.ply``,
``pred_cloud_NN.ply``, camera optical frame, metres), the true meshes (``gt_mesh_NN.ply``), and
``report.md`` (latency per stage from /diagnostics, reconstruction figures against ground truth).

This module runs the ROS processes and collects their messages (:class:`RosSession`, shared with
``bench/e2e_bench.py`` and ``bench/soak.py``); scoring and writing the report (metrics, images, PLY,
markdown) live in :mod:`dibr_ros.demo_report`.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass

import numpy as np

from dibr_ros.demo_report import (
    DemoError,
    _fmt,
    evaluate_objects,
    side_by_side,
    weld,
    write_cloud_ply,
    write_mesh_ply,
    write_report,
)
from dibr_ros.sim.families import FAMILIES

#: Camera topics run RELIABLE in the demo: best-effort Fast DDS loses most 640x480 frames on loopback.
NODE_NAME = "dibr_perception"
SIM_NAME = "sim_camera"
# --------------------------------------------------------------------------------------- geometry / metrics

def local_dds_profile() -> str | None:
    """config/fastdds_shm.xml of this checkout: shared memory large enough for full camera frames."""
    path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "config", "fastdds_shm.xml")
    return path if os.path.isfile(path) else None


def use_local_dds_profile(env) -> None:
    """Set FASTDDS_DEFAULT_PROFILES_FILE in ``env`` (a dict or os.environ) unless the user chose one."""
    profile = local_dds_profile()
    if profile:
        env.setdefault("FASTDDS_DEFAULT_PROFILES_FILE", profile)


def ros_env(domain_id: int) -> dict:
    """Environment for the demo's processes: loopback-only discovery, a private domain, and the
    shared-memory Fast DDS profile (full frames otherwise stall for seconds on lost UDP fragments)."""
    env = dict(os.environ)
    use_local_dds_profile(env)
    env["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    env.pop("ROS_LOCALHOST_ONLY", None)
    env["ROS_DOMAIN_ID"] = str(domain_id)
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = repo + os.pathsep + env.get("PYTHONPATH", "")
    env.setdefault("TORCH_EXTENSIONS_DIR", os.path.join(repo, ".torch_ext"))
    return env


def _ros_args(params: dict) -> list[str]:
    args = ["--ros-args"]
    for k, v in params.items():
        if isinstance(v, bool):
            v = "true" if v else "false"
        elif isinstance(v, str) and v == "":
            v = "''"  # rcl parses an override's value as YAML: an empty string must be quoted
        args += ["-p", f"{k}:={v}"]
    return args


@dataclass
class Collected:
    """One frame processed by the node, with everything the sim published for the same stamp."""

    stamp_ns: int
    rgb: np.ndarray
    depth: np.ndarray
    labels: np.ndarray
    K: np.ndarray
    gt: list[dict]  # name, label, vertices, faces, colors
    pred: list[dict]  # id, vertices, faces, colors, points, point_colors
    cloud: dict
    debug: np.ndarray | None
    arrival_s: float


class RosSession:
    """``sim_camera`` + ``perception_node`` as child processes, and an in-process listener.

    >>> with RosSession(out_dir, sim_params, node_params, domain_id=42) as s:
    ...     frames = s.collect(8, timeout_s=150)
    """

    def __init__(self, log_dir: str, sim_params: dict, node_params: dict, domain_id: int,
                 keep_sim_frames: int = 60, start_node: bool = True):
        self.log_dir, self.sim_params, self.node_params = log_dir, sim_params, node_params
        self.domain_id, self.keep = int(domain_id), keep_sim_frames
        self.start_node = start_node
        self.procs: dict[str, subprocess.Popen] = {}
        self.diag: dict[str, str] = {}
        self._sim: dict[int, dict] = {}
        self._out: dict[int, dict] = {}
        self.frames: list[Collected] = []
        self.sim_frames_seen = 0

    # -- processes
    def _spawn(self, name: str, module: str, params: dict) -> None:
        os.makedirs(self.log_dir, exist_ok=True)
        log = open(os.path.join(self.log_dir, f"{name}.log"), "w")
        cmd = [sys.executable, "-m", module, *_ros_args(params)]
        self.procs[name] = subprocess.Popen(cmd, env=ros_env(self.domain_id), stdout=log, stderr=subprocess.STDOUT,
                                            start_new_session=True)
        self.procs[name]._log_file = log  # type: ignore[attr-defined]

    def start(self) -> RosSession:
        use_local_dds_profile(os.environ)
        os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
        os.environ.pop("ROS_LOCALHOST_ONLY", None)
        os.environ["ROS_DOMAIN_ID"] = str(self.domain_id)
        if self.start_node:
            self._spawn("perception_node", "dibr_ros.ros.perception_node", self.node_params)
        self._spawn("sim_camera", "dibr_ros.ros.sim_camera", self.sim_params)
        self._start_listener()
        return self

    def check_children(self) -> None:
        for name, p in self.procs.items():
            if p.poll() is not None:
                raise DemoError(f"{name} exited with status {p.returncode} "
                                f"(log: {os.path.join(self.log_dir, name + '.log')})")

    def stop(self) -> None:
        """SIGINT the children, SIGKILL what is left after 10 s; close the listener."""
        for p in self.procs.values():
            if p.poll() is None:
                try:
                    os.killpg(p.pid, signal.SIGINT)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + 10.0
        for p in self.procs.values():
            try:
                p.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                p.wait()
            p._log_file.close()  # type: ignore[attr-defined]
        if getattr(self, "_node", None) is not None:
            import rclpy

            self._executor.shutdown()
            self._node.destroy_node()
            rclpy.shutdown(context=self._ctx)
            self._node = None

    def __enter__(self) -> RosSession:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- listener
    def _start_listener(self) -> None:
        import rclpy
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.qos import QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import CameraInfo, Image, PointCloud2
        from visualization_msgs.msg import MarkerArray

        self._ctx = rclpy.Context()
        rclpy.init(context=self._ctx, domain_id=self.domain_id)
        self._node = rclpy.create_node("dibr_demo_listener", context=self._ctx)
        self._executor = SingleThreadedExecutor(context=self._ctx)
        self._executor.add_node(self._node)
        rel = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE)
        sub = self._node.create_subscription
        sub(Image, "image", lambda m: self._sim_part(m.header, "image", m), rel)
        sub(Image, "depth", lambda m: self._sim_part(m.header, "depth", m), rel)
        sub(Image, "instance_mask", lambda m: self._sim_part(m.header, "mask", m), rel)
        sub(CameraInfo, "camera_info", lambda m: self._sim_part(m.header, "info", m), rel)
        sub(MarkerArray, f"/{SIM_NAME}/ground_truth",
            lambda m: self._sim_part(m.markers[0].header, "gt", m) if m.markers else None, rel)
        sub(MarkerArray, f"/{NODE_NAME}/meshes",
            lambda m: self._out_part(m.markers[0].header, "meshes", m) if m.markers else None, rel)
        sub(PointCloud2, f"/{NODE_NAME}/points", lambda m: self._out_part(m.header, "points", m), rel)
        sub(Image, f"/{NODE_NAME}/debug_image", lambda m: self._out_part(m.header, "debug", m), rel)
        sub(DiagnosticArray, "/diagnostics", self._on_diag, QoSProfile(depth=10))

    @staticmethod
    def _key(header) -> int:
        return int(header.stamp.sec) * 1_000_000_000 + int(header.stamp.nanosec)

    def _sim_part(self, header, part: str, msg) -> None:
        k = self._key(header)
        entry = self._sim.setdefault(k, {})
        if not entry:
            self.sim_frames_seen += 1
        entry[part] = msg
        while len(self._sim) > self.keep:
            self._sim.pop(min(self._sim))

    def _out_part(self, header, part: str, msg) -> None:
        self._out.setdefault(self._key(header), {})[part] = (msg, time.monotonic())

    def _on_diag(self, msg) -> None:
        for st in msg.status:
            if st.name.startswith(NODE_NAME):
                self.diag = {kv.key: kv.value for kv in st.values}
                self.diag["_level"] = str(int.from_bytes(st.level, "little") if isinstance(st.level, bytes)
                                          else int(st.level))
                self.diag["_message"] = st.message

    def _complete(self, need_debug: bool) -> None:
        from dibr_ros.ros.conversions import camera_info_to_K, cloud_to_numpy, image_to_numpy

        parts = ("meshes", "points", "debug") if need_debug else ("meshes", "points")
        for k in sorted(self._out):
            out = self._out[k]
            sim = self._sim.get(k)
            if not all(p in out for p in parts) or sim is None or len(sim) < 5:
                continue
            del self._out[k]
            gt = []
            for mk in sim["gt"].markers[1:]:
                v, f, cols = _marker_mesh(mk)
                gt.append(dict(name=mk.text or f"object_{mk.id}", label=mk.id + 1, vertices=v, faces=f, colors=cols))
            cloud = cloud_to_numpy(out["points"][0])
            pred = []
            for mk in out["meshes"][0].markers[1:]:
                v, f, cols = _marker_mesh(mk)
                sel = cloud["instance"] == mk.id if cloud.get("instance") is not None else slice(0, 0)
                pred.append(dict(id=mk.id, vertices=v, faces=f, colors=cols, points=cloud["xyz"][sel]))
            debug = image_to_numpy(out["debug"][0]) if "debug" in out else None
            self.frames.append(Collected(
                stamp_ns=k, rgb=image_to_numpy(sim["image"]), depth=image_to_numpy(sim["depth"]),
                labels=image_to_numpy(sim["mask"]).astype(np.int32), K=camera_info_to_K(sim["info"]),
                gt=gt, pred=pred, cloud=cloud, debug=debug, arrival_s=out["meshes"][1]))

    def spin(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self._executor.spin_once(timeout_sec=min(0.05, max(0.0, end - time.monotonic())))

    def collect(self, n_frames: int, timeout_s: float, need_debug: bool = True, progress=None) -> list[Collected]:
        """Spin until ``n_frames`` node outputs have been paired with their sim frames (or timeout)."""
        deadline = time.monotonic() + timeout_s
        while len(self.frames) < n_frames:
            if time.monotonic() > deadline:
                break
            self.check_children()
            self.spin(0.2)
            before = len(self.frames)
            self._complete(need_debug)
            if progress is not None and len(self.frames) > before:
                progress(len(self.frames))
        return self.frames


# -------------------------------------------------------------------------------------------------- main

def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m dibr_ros.demo", description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="out/demo", help="output directory (default out/demo)")
    ap.add_argument("--frames", type=int, default=8, help="processed frames to collect (default 8)")
    ap.add_argument("--objects", default=None,
                    help="test | ood | hh_test | ... | comma-separated URDF/mesh files (default test, or the family's)")
    ap.add_argument("--family", default=None, choices=sorted(FAMILIES),
                    help="scene family (dibr_ros.sim.families): objects, camera elevation and distance, a lifted "
                         "object, missing depth (no_depth), RGB only (rgb_only: the node gets no depth)")
    ap.add_argument("--elevation", type=float, default=None, help="camera elevation above the table (deg; "
                    "default 55, or the family's)")
    ap.add_argument("--distance", type=float, default=None, help="camera distance to the table centre (m; "
                    "default 0.55, or the middle of the family's range)")
    ap.add_argument("--transport", default="raw", choices=("raw", "compressed"),
                    help="how the node gets the camera: raw images, or image_transport's compressed (JPEG) and "
                         "compressedDepth (PNG) topics, as from a bag recorded compressed")
    ap.add_argument("--jpeg-quality", type=int, default=90, help="JPEG quality with --transport compressed")
    ap.add_argument("--table-plane", action="store_true",
                    help="give the node the table plane (its table_plane parameter, from the sim camera's pose), "
                         "as a robot knows its camera's mounting: RGB-only objects are then placed metric")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--max-objects", type=int, default=3)
    ap.add_argument("--rate", type=float, default=1.0, help="sim camera frames per second")
    ap.add_argument("--orbit", type=float, default=8.0, help="camera orbit (deg per s)")
    ap.add_argument("--width", type=int, default=640)
    ap.add_argument("--height", type=int, default=480)
    ap.add_argument("--device", default="cpu", help="perception_node device (cpu | auto | cuda)")
    ap.add_argument("--weights", default="", help="checkpoint (default: the shipped weights)")
    ap.add_argument("--renderer", default="auto", help="sim renderer: auto | egl | tiny")
    ap.add_argument("--domain-id", type=int, default=int(os.environ.get("ROS_DOMAIN_ID", "42") or 42))
    ap.add_argument("--timeout", type=float, default=150.0, help="seconds to wait for the frames")
    return ap


DEMO_ELEVATION_DEG, DEMO_DISTANCE_M = 55.0, 0.55  # sim_camera's defaults


def sim_table_plane(sim: dict) -> np.ndarray:
    """(a, b, c, d) of the table in the optical frame of the sim camera these parameters describe (the orbit
    turns about the table's vertical: the plane is the same in every frame)."""
    from dibr_ros.sim.scene import CameraConfig, camera_pose, table_plane_in_camera

    cam = CameraConfig(width=int(sim["width"]), height=int(sim["height"]),
                       elevation_deg=float(sim.get("elevation_deg", DEMO_ELEVATION_DEG)),
                       distance=float(sim.get("distance", DEMO_DISTANCE_M)))
    return table_plane_in_camera(camera_pose(cam)[1])


def family_sim_params(args) -> tuple[dict, bool]:
    """sim_camera parameters of the demo's options (a family's settings, explicit options first) and
    whether the node uses depth."""
    fam = FAMILIES[args.family] if args.family else None
    sim = dict(objects=args.objects or (fam.objects if fam else "test"), seed=args.seed,
               max_objects=args.max_objects, rate=args.rate, width=args.width, height=args.height,
               orbit_deg_per_s=args.orbit, renderer=args.renderer, reliability="reliable")
    elevation = args.elevation if args.elevation is not None else (fam.elevation_deg if fam else None)
    distance = args.distance if args.distance is not None else (sum(fam.distance) / 2 if fam else None)
    if elevation is not None:
        sim["elevation_deg"] = float(elevation)
    if distance is not None:
        sim["distance"] = float(distance)
    if args.table_plane:  # the pose is then passed explicitly: the plane below is the sim camera's
        sim.setdefault("elevation_deg", DEMO_ELEVATION_DEG)
        sim.setdefault("distance", DEMO_DISTANCE_M)
    if fam and fam.lift:
        sim["lift_min"], sim["lift_max"] = float(fam.lift[0]), float(fam.lift[1])
    if fam and fam.depth == "drop_one":
        sim["depth_condition"] = "drop_one"
    if args.transport == "compressed":
        sim["compressed"], sim["jpeg_quality"] = True, int(args.jpeg_quality)
    return sim, not (fam and fam.depth == "none")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    t0 = time.monotonic()
    if args.frames < 1:
        print("demo: --frames must be >= 1", file=sys.stderr)
        return 2
    out = os.path.abspath(args.out)
    os.makedirs(out, exist_ok=True)
    sim_params, use_depth = family_sim_params(args)
    node_params = dict(device=args.device, weights=args.weights, input_reliability="reliable",
                       use_depth=use_depth, diagnostic_period=1.0)
    if args.transport == "compressed":
        node_params.update(image_transport="compressed", depth_transport="compressedDepth")
    if args.table_plane:
        node_params["table_plane"] = [round(float(v), 6) for v in sim_table_plane(sim_params)]
    print(f"demo: sim_camera ({sim_params['objects']}, seed {args.seed}, family {args.family or 'none'}, "
          f"{args.transport}) + "
          f"perception_node ({args.device}), "
          f"ROS_DOMAIN_ID={args.domain_id}, loopback only; collecting {args.frames} frames ...", flush=True)
    session = RosSession(os.path.join(out, "logs"), sim_params, node_params, args.domain_id)

    def on_term(signum, _frame):
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, on_term)
    first = []
    try:
        with session:
            frames = session.collect(
                args.frames, args.timeout,
                progress=lambda n: (first.append(time.monotonic() - t0) if not first else None,
                                    print(f"demo: frame {n}/{args.frames} received", flush=True)))
            session.spin(1.2)  # one more /diagnostics period
        if not frames:
            raise DemoError(f"no frames received from perception_node within {args.timeout:.0f} s "
                            f"(sim frames seen: {session.sim_frames_seen}; logs in {session.log_dir})")
        if len(frames) < args.frames:
            print(f"demo: only {len(frames)}/{args.frames} frames within {args.timeout:.0f} s; writing those",
                  flush=True)
        evals = []
        for i, fr in enumerate(frames):
            import cv2

            if fr.debug is not None:
                cv2.imwrite(os.path.join(out, f"overlay_{i:02d}.png"), fr.debug[:, :, ::-1])
            pred_m = [(p["vertices"], p["faces"], p["colors"]) for p in fr.pred]
            gt_m = [(g["vertices"], g["faces"], g["colors"]) for g in fr.gt]
            cv2.imwrite(os.path.join(out, f"compare_{i:02d}.png"), side_by_side(fr.rgb, fr.K, pred_m, gt_m)[:, :, ::-1])
            write_mesh_ply(os.path.join(out, f"pred_mesh_{i:02d}.ply"), pred_m)
            write_mesh_ply(os.path.join(out, f"gt_mesh_{i:02d}.ply"), gt_m)
            write_cloud_ply(os.path.join(out, f"pred_cloud_{i:02d}.ply"), fr.cloud["xyz"], fr.cloud.get("rgb"))
            evals.append(evaluate_objects(fr.pred, fr.gt, fr.depth, fr.K, fr.labels, seed=i))
        wall = time.monotonic() - t0
        s = write_report(os.path.join(out, "report.md"), args, frames, evals, session.diag, wall,
                         first[0] if first else float("nan"))
    except DemoError as e:
        print(f"demo: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("demo: interrupted", file=sys.stderr)
        return 130
    wall = time.monotonic() - t0
    print(f"demo: node F@10mm {_fmt(s['cloud.f@10mm'])} (mesh {_fmt(s['mesh.f@10mm'])}) vs depth-only "
          f"{_fmt(s['depth.f@10mm'])}; recall@10mm {_fmt(s['cloud.r@10mm'])} vs {_fmt(s['depth.r@10mm'])}; "
          f"node total p50 {session.diag.get('latency_total_p50_ms', 'n/a')} ms")
    print(f"demo: done in {wall:.1f} s; results in {out}/ (report.md, overlay_00.png, compare_00.png, *.ply)")
    return 0


def _marker_mesh(mk) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A TRIANGLE_LIST marker back to a welded mesh: vertices (V,3), faces (F,3), per-vertex colours (V,3)."""
    pts = np.array([[p.x, p.y, p.z] for p in mk.points])
    v, f = weld(pts)
    cols = np.full((len(v), 3), 0.7, np.float32)  # markers without per-vertex colours show grey
    if len(mk.colors) == len(pts):
        cols[f.reshape(-1)] = np.array([[c.r, c.g, c.b] for c in mk.colors], np.float32)
    return v, f, cols


if __name__ == "__main__":
    sys.exit(main())
