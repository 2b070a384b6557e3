"""`make demo`: the whole system once, over real DDS, on an object rendered from the shipped mesh.

1. Render a capture (RGB, depth, mask, ground-truth NOCS, true poses) of ``data/demo_object.glb``.
2. Start the SpaRP node, a capture player and a client in this process, one MultiThreadedExecutor,
   talking over Fast DDS on a localhost-only domain.
3. Play the capture as camera topics, call ``/sparp_node/reconstruct``, receive the PoseStamped.
4. Print the pose and its error against the ground truth; write mesh.glb, overview.png and
   result.json to ``out/demo/``.

The node runs the shipped **model** on RGB-D keyframes, the setting in which it meets the
issue's accuracy bar (sparp_ros/model/weights/tiny/MODEL_CARD.md: 13.8° median relative rotation
on the bar's captures; from images alone it does not). ``sparp-ros demo --backend oracle`` runs
the renderer's ground-truth NOCS (the ``oracle_nocs`` topic) instead: a check of the ROS plumbing
and the geometry (PnP, depth scale, mesh) without the learned model.
"""
from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

PACKAGE_MESH = Path(__file__).resolve().parents[1] / "data" / "demo_object.glb"
SHARED = Path(os.environ.get("SPARP_SHARED", Path(__file__).resolve().parents[3] / "shared"))
FALLBACK_MESH = SHARED / "data" / "objects" / "Nintendo_Mario_Action_Figure.glb"
"""The same object, from the shared meshes, for a checkout without the package data."""
DEFAULT_OUT = Path("out") / "demo"
KEYFRAME_TIMEOUT_S = 30.0
RECONSTRUCT_TIMEOUT_S = 300.0
RESULT_TIMEOUT_S = 10.0


def ground_truth_T_camera_object(capture, view: int, reference: int) -> np.ndarray:
    """The true pose of ``view`` in *our* object frame, whose x axis points at the camera of the
    ``reference`` keyframe (conventions): ``T_camera_object = T_camera_mesh @ T_mesh_object``."""
    from ..conventions import CanonicalFrame, camera_azimuth

    c = capture.gt.extra["canonical"]
    center = np.asarray(c["center"], float)
    frame = CanonicalFrame(center=center, diagonal=float(c["diagonal"]),
                           azimuth=camera_azimuth(capture.gt.T_camera_object[reference], center))
    return capture.gt.T_camera_object[view] @ frame.T_mesh_object


def posed_mesh_fscore(recon, capture, reference: int, threshold_m: float = 0.005) -> dict | None:
    """F-score (with precision and recall) at ``threshold_m`` of the node's mesh, placed by its
    pose of the reference keyframe, against the true mesh in that camera: what a planner gets.
    None without a mesh or ground truth mesh."""
    from ..conventions import transform_points
    from ..evaluation.metrics import chamfer_fscore, load_true_mesh, sample_points

    if recon is None or recon.mesh is None or capture.mesh_path() is None:
        return None
    ref = recon.reference_view
    if ref < 0:
        return None
    est = transform_points(recon.views[ref].T_camera_object, sample_points(recon.mesh, 50000, 1))
    true = transform_points(capture.gt.T_camera_object[reference],
                            sample_points(load_true_mesh(str(capture.mesh_path())), 50000, 0))
    _, fscore, precision, recall = chamfer_fscore(est, true, threshold_m)
    measured = 0.0 if recon.mesh_measured is None else float(np.mean(recon.mesh_measured))
    return {"fscore": fscore, "precision": precision, "recall": recall, "measured": measured}


def _wait(predicate, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(0.05)


def _ros_environment() -> str:
    """Keep the demo on this machine and off other runs' topics: localhost discovery and, unless
    the caller chose one, a random domain id (at most 101: above, DDS's UDP ports fall in Linux's
    ephemeral port range)."""
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    os.environ.setdefault("ROS_DOMAIN_ID", str(random.SystemRandom().randint(1, 101)))
    return os.environ["ROS_DOMAIN_ID"]


def run(mesh: Path, out_dir: Path, views: int, seed: int, backend: str) -> int:
    import rclpy
    from geometry_msgs.msg import PoseStamped
    from rclpy.executors import MultiThreadedExecutor
    from rclpy.parameter import Parameter
    from std_srvs.srv import Trigger

    from . import messages
    from ..conventions import rotation_angle_deg
    from .node import RESULT_QOS, SparpNode
    from .player import play
    from ..render import render_capture

    print(f"[1/4] rendering {views} views of {mesh.name} ...")
    tmp = tempfile.TemporaryDirectory(prefix="sparp_demo_")
    capture = render_capture(mesh, Path(tmp.name) / "capture", views=views, seed=seed)
    domain = _ros_environment()
    print(f"[2/4] starting sparp_node, the capture player and a client on ROS_DOMAIN_ID={domain} "
          f"(localhost only), backend={backend}")
    context = rclpy.Context()
    rclpy.init(context=context, domain_id=int(domain))
    executor = MultiThreadedExecutor(num_threads=4, context=context)
    nodes = []
    poses: list[PoseStamped] = []
    try:
        # The shipped input settings (reliable inputs, sync_timeout_s 3 s) and the player's
        # repeated views bring every view over (README, "Names, TF, inputs").
        node = SparpNode(context=context, parameter_overrides=[
            Parameter("backend", value=backend), Parameter("max_keyframes", value=views)])
        player = rclpy.create_node("sparp_demo_player", context=context)
        client = rclpy.create_node("sparp_demo_client", context=context)
        nodes = [node, player, client]
        client.create_subscription(PoseStamped, "/sparp/object_pose", poses.append, RESULT_QOS)
        reconstruct = client.create_client(Trigger, "/sparp_node/reconstruct")
        for n in nodes:
            executor.add_node(n)
        spinner = threading.Thread(target=executor.spin, daemon=True)
        spinner.start()

        print("[3/4] playing the capture as image, camera_info, depth, mask, oracle_nocs ...")
        published = play(capture.root, node=player, rate_hz=5.0)
        _wait(lambda: len(node.buffer) == views, KEYFRAME_TIMEOUT_S, f"{views} keyframes")
        print("[4/4] calling /sparp_node/reconstruct ...")
        _wait(reconstruct.service_is_ready, 10.0, "the reconstruct service")
        future = reconstruct.call_async(Trigger.Request())
        _wait(future.done, RECONSTRUCT_TIMEOUT_S, "the reconstruction")
        response = future.result()
        if not response.success:
            print(f"reconstruction failed: {response.message}", file=sys.stderr)
            return 1
        _wait(lambda: bool(poses), RESULT_TIMEOUT_S, "the PoseStamped on /sparp/object_pose")

        # Which capture view is the received pose in, and which is the reference keyframe?
        by_stamp = {(s.sec, s.nanosec): i for i, s in published}
        pose = poses[-1]
        view = by_stamp[(pose.header.stamp.sec, pose.header.stamp.nanosec)]
        first = node.buffer.items()[0][1]          # the reference keyframe's stamp
        reference = by_stamp[(first.sec, first.nanosec)]
        T_est = messages.pose_to_matrix(pose.pose)
        T_gt = ground_truth_T_camera_object(capture, view, reference)
        rot_err = rotation_angle_deg(T_est[:3, :3] @ T_gt[:3, :3].T)
        t_err = float(np.linalg.norm(T_est[:3, 3] - T_gt[:3, 3]))
        t = T_est[:3, 3]
        print(f"\nreceived /sparp/object_pose in frame '{pose.header.frame_id}' (view {view}): "
              f"t = [{t[0]:.3f}, {t[1]:.3f}, {t[2]:.3f}] m, q(xyzw) = "
              f"[{pose.pose.orientation.x:.3f}, {pose.pose.orientation.y:.3f}, "
              f"{pose.pose.orientation.z:.3f}, {pose.pose.orientation.w:.3f}]")
        distance = float(np.linalg.norm(T_gt[:3, 3]))
        print(f"error against ground truth: rotation {rot_err:.2f} deg, translation "
              f"{1000 * t_err:.1f} mm ({100 * t_err / distance:.2f} % of the distance)")
        fscore = posed_mesh_fscore(node.last_reconstruction, capture, reference)
        if fscore is not None:
            print(f"posed mesh against the true surface (view {reference}'s camera): F-score@5mm "
                  f"{fscore['fscore']:.3f} (precision {fscore['precision']:.3f}, recall "
                  f"{fscore['recall']:.3f}); {fscore['measured']:.0%} of the mesh measured")
        print(f"node: {response.message}")

        paths = _write(node.last_reconstruction, out_dir, [f for f, _ in node.buffer.items()])
        print("wrote " + ", ".join(f"{k}: {p}" for k, p in paths.items()))
        print(f"\nNOTE: backend '{backend}' "
              + ("used the renderer's ground-truth NOCS (the oracle_nocs topic) in place of the "
                 "model: the numbers above check the ROS plumbing and the geometry, not learned "
                 "accuracy." if backend == "oracle"
                 else "ran the shipped model on RGB-D keyframes (one object, one seed: its measured "
                      "accuracy over many is in sparp_ros/model/weights/tiny/MODEL_CARD.md)."))
        return 0
    except TimeoutError as exc:
        print(f"demo failed: {exc}", file=sys.stderr)
        return 1
    finally:
        executor.shutdown(timeout_sec=5.0)
        for n in nodes:
            n.destroy_node()
        context.try_shutdown()
        tmp.cleanup()


def _write(recon, out_dir: Path, frames=None) -> dict[str, Path]:
    """mesh.glb, overview.png, result.json with the CLI's writer (the same files as
    ``sparp-ros reconstruct``); ``frames``: the keyframes the node reconstructed from, for the
    full-resolution overview."""
    try:
        from ..outputs import write_outputs
    except ImportError:
        out_dir.mkdir(parents=True, exist_ok=True)
        paths = {}
        if recon.mesh is not None:
            paths["mesh"] = out_dir / "mesh.glb"
            recon.mesh.export(paths["mesh"])
        return paths
    return write_outputs(recon, out_dir, frames=frames)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="sparp-ros demo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mesh", type=Path, default=None,
                        help=f"mesh to render (default: the shipped {PACKAGE_MESH.name})")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder")
    parser.add_argument("--views", type=int, default=4, help="keyframes to render and use (1..6)")
    parser.add_argument("--seed", type=int, default=0, help="render seed (camera, poses, lights)")
    parser.add_argument("--backend", default="model",
                        help="NOCS backend of the node (oracle: the renderer's ground truth)")
    args = parser.parse_args(argv)
    mesh = args.mesh or (PACKAGE_MESH if PACKAGE_MESH.is_file() else FALLBACK_MESH)
    if not mesh.is_file():
        print(f"demo mesh not found: {mesh} (pass --mesh)", file=sys.stderr)
        return 2
    if not 1 <= args.views <= 6:
        print(f"--views must be 1..6, got {args.views}", file=sys.stderr)
        return 2
    return run(mesh, args.out, args.views, args.seed, args.backend)


if __name__ == "__main__":
    sys.exit(main())
