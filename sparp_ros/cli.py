"""`sparp-ros`: one entry point for every job.

    sparp-ros render --mesh OBJ.glb --out CAPTURE [--views N] [--seed S] [--width W --height H]
    sparp-ros reconstruct CAPTURE --out OUT [--backend oracle|model] [--device cpu|cuda]
    sparp-ros eval CAPTURE... --out REPORT [--backend oracle] [--baseline pycolmap|none]
    sparp-ros bag BAG --image-topic T --camera-info-topic T [--depth-topic T] [--mask-topic T]
                  [--world-frame F | --no-tf] --out CAPTURE [--max-views N]
                                                          keyframes of a rosbag2 (.db3/.mcap), with
                                                          camera poses from its /tf (bag.py)
    sparp-ros node [--params-file config/sparp.yaml] [--lifecycle [--autostart]]
                                                          the ROS 2 node without `ros2 launch`
    sparp-ros play CAPTURE                                publish a capture as camera topics
    sparp-ros demo                                        render, play, trigger, report (make demo)
    sparp-ros dataset --meshes DIR... --out DATA ...      training samples from meshes (training/dataset.py)
    sparp-ros train --config tiny --data DATA --out RUN   train the diffusion model (training/train.py)
    sparp-ros train-angles --data DATA... --out DIR       train the view-angle network (training/view_angles.py)
    sparp-ros train-pair-azimuth --data DATA... --out DIR the pair-azimuth network (training/pair_azimuth.py)
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from .conventions import METHOD_SUFFIXES
from .model.backend import BACKENDS

DEFAULT_BACKEND = "model"    # reconstruct: the network works on any images (accuracy: its MODEL_CARD)
EVAL_DEFAULT_BACKEND = "oracle"   # eval: the geometry's reference; name --backend model to add it


def _render(args: argparse.Namespace) -> int:
    from .render import render_capture
    from .render.depth_noise import STEREO_DEFAULT
    cap = render_capture(args.mesh, args.out, views=args.views, seed=args.seed,
                         width=args.width, height=args.height,
                         depth_noise=STEREO_DEFAULT if args.depth_noise == "stereo" else None)
    print(f"wrote {len(cap.frames)} views of {Path(args.mesh).name} to {args.out}")
    return 0


def _reconstruct(args: argparse.Namespace) -> int:
    from .capture import CaptureError, load_capture
    from .outputs import write_outputs
    from .pipeline import PipelineConfig, PipelineError, SparpPipeline
    from .segment_select import masks_if_needed
    from .segmentation import SegmentationError
    try:
        capture = load_capture(args.capture)
        frames, segmented = masks_if_needed(capture.frames, logging.getLogger("sparp_ros.cli"))
        pipeline = SparpPipeline(PipelineConfig(backend=args.backend, device=args.device,
                                                cell_size=args.cell_size, mesh=not args.no_mesh,
                                                **_model_options(args)))
        recon = pipeline(frames)
    except (CaptureError, PipelineError, SegmentationError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    paths = write_outputs(recon, args.out, frames=frames,
                          extra={"segmentation": segmented} if segmented else None)
    ref = recon.reference_view
    t = recon.views[ref].T_camera_object[:3, 3]
    print(f"backend={recon.backend} views ok={sum(v.ok for v in recon.views)}/{len(recon.views)} "
          f"scale={recon.scale:.4f} m ({recon.scale_source}) confidence={recon.confidence:.2f}")
    print(f"object in view {ref}'s camera: t=[{t[0]:.3f} {t[1]:.3f} {t[2]:.3f}] m")
    print("timings (s): " + " ".join(f"{k}={v:.3f}" for k, v in recon.timings.items()))
    print("wrote " + ", ".join(str(p) for p in paths.values()))
    return 0


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def _unit_interval(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be in [0, 1], got {value}")
    return value


def _model_options(args: argparse.Namespace) -> dict:
    """PipelineConfig fields of the model backend given on the command line (none: the shipped
    model with its own settings)."""
    options = {"weights": args.weights, "model_domain": args.model_domain,
               "inference_steps": args.inference_steps,
               "registration_colour_weight": args.registration_colour_weight,
               "registration_min_image_agreement": args.registration_min_image_agreement,
               "registration_min_table_agreement": args.registration_min_table_agreement,
               "registration_search_all_round": args.registration_search_all_round,
               "registration_light_turns": args.registration_light_turns,
               "registration_min_print_matches": args.registration_min_print_matches,
               "model_threads": args.model_threads,
               "geometry_threads": args.geometry_threads}
    return {k: v for k, v in options.items() if v is not None}


def _model_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--weights", help="model backend: a weights folder from `sparp-ros train` "
                                          "(RUN/final); default the shipped model")
    parser.add_argument("--model-domain", choices=["nocs_self", "nocs_ref"],
                        help="model backend: per-view (nocs_self, default) or tiled (nocs_ref) NOCS")
    parser.add_argument("--inference-steps", type=int, help="model backend: denoising steps "
                                                            "(default the model's)")
    parser.add_argument("--registration-colour-weight", type=float,
                        help="RGB-D without TF: weight of the colour difference in the "
                             "registration's choice (0: shape alone; default 5)")
    parser.add_argument("--registration-min-image-agreement", type=float,
                        help="RGB-D without TF: a registered pair whose images agree less than "
                             "this where its surfaces meet is not trusted (0: off; default 0.5)")
    parser.add_argument("--registration-min-table-agreement", type=_unit_interval,
                        help="RGB-D without TF: where two views see the table around the object, "
                             "a placement whose tables agree at least this much wins over the "
                             "others (0: off, the object's surfaces alone; default 0.5)")
    parser.add_argument("--registration-min-print-matches", type=_non_negative_int,
                        help="RGB-D without TF: a placement that at least this many matches of "
                             "the object's print agree with wins where its surface keeps the "
                             "other view's free space (0: off, the object's surfaces alone; "
                             "default 15)")
    parser.add_argument("--geometry-threads", type=_non_negative_int,
                        help="open3d's threads while the pipeline runs (default 1: two runs give "
                             "the same result; 0: open3d's own choice, faster, not repeatable)")
    parser.add_argument("--model-threads", type=_non_negative_int,
                        help="torch's threads while the pipeline runs (default 1: the result does "
                             "not depend on the machine's cores; 0: torch's own choice)")
    parser.add_argument("--no-registration-search-all-round", dest="registration_search_all_round",
                        action="store_const", const=False, default=None,
                        help="RGB-D without TF: leave views that nothing else placed at the "
                             "model's pose instead of searching all round the up axis (faster: "
                             "README \"A search all round\")")
    parser.add_argument("--no-registration-light-turns", dest="registration_light_turns",
                        action="store_const", const=False, default=None,
                        help="RGB-D without TF: do not turn views whose light (from their "
                             "object's shading) disagrees with the other views' (README \"The "
                             "light measures the turn\")")


def _eval(args: argparse.Namespace) -> int:
    from .evaluation import run_eval
    from .evaluation.run import expand_capture_dirs
    baseline = None if args.baseline in (None, "none") else args.baseline
    captures = expand_capture_dirs(args.captures)
    if not captures:
        print(f"error: no capture folders (with cameras.json) in {args.captures}", file=sys.stderr)
        return 2
    metrics = run_eval(captures, Path(args.out), backends=args.backend, baseline=baseline,
                       device=args.device, command="sparp-ros " + " ".join(sys.argv[1:]),
                       model=_model_options(args), overviews=not args.no_overviews)
    print(json.dumps(metrics, indent=1))
    return 0


def _bag(args: argparse.Namespace) -> int:
    from .ros.bag import BagTopics, bag_to_capture
    from .keyframes import KeyframeConfig
    topics = BagTopics(image=args.image_topic, camera_info=args.camera_info_topic,
                       depth=args.depth_topic, mask=args.mask_topic,
                       oracle_nocs=args.oracle_nocs_topic, tf=args.tf_topic,
                       tf_static=args.tf_static_topic)
    try:     # BagError is a CaptureError, i.e. a ValueError, as are bad KeyframeConfig values
        options = {"max_keyframes": args.max_views, "min_image_change": args.min_image_change,
                   "min_sharpness": args.min_sharpness}
        config = KeyframeConfig(**{k: v for k, v in options.items() if v is not None})
        result = bag_to_capture(args.bag, topics, args.out, config, slop_s=args.sync_slop,
                                world_frame=args.world_frame, use_tf=not args.no_tf)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {result.keyframes} keyframes to {args.out} ({result.images} images, "
          f"{result.instants} complete frames in {args.bag})")
    if result.world_frame:
        posed = sum(f.T_world_camera is not None for f in result.capture.frames)
        print(f"camera poses from TF in frame '{result.world_frame}': {posed}/{result.keyframes} "
              f"keyframes ({result.tf_failures} frames had none)")
    return 0


def _node(args: argparse.Namespace, rest: list[str]) -> int:
    from .ros.run import main as node_main
    argv = ["--lifecycle"] * args.lifecycle + ["--autostart"] * args.autostart
    if args.params_file:
        argv += ["--ros-args", "--params-file", args.params_file]
    return node_main(["sparp-ros"] + argv + list(rest)) or 0


def _play(args: argparse.Namespace, rest: list[str]) -> int:
    from .ros.player import main as play_main
    return play_main([args.capture] + list(rest)) or 0


def _demo(args: argparse.Namespace, rest: list[str]) -> int:
    from .ros.demo import main as demo_main
    return demo_main(list(rest)) or 0


def _dataset(args: argparse.Namespace, rest: list[str]) -> int:
    from .training.dataset import main as dataset_main
    return dataset_main(list(rest)) or 0


def _train(args: argparse.Namespace, rest: list[str]) -> int:
    from .training.train import main as train_main
    return train_main(list(rest)) or 0


def _train_angles(args: argparse.Namespace, rest: list[str]) -> int:
    from .training.view_angles import main as angles_main
    return angles_main(list(rest)) or 0


def _train_pair_azimuth(args: argparse.Namespace, rest: list[str]) -> int:
    from .training.pair_azimuth import main as pair_main
    return pair_main(list(rest)) or 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="sparp-ros", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)

    r = sub.add_parser("render", help="render a capture folder from a textured mesh")
    r.add_argument("--mesh", required=True)
    r.add_argument("--out", required=True)
    r.add_argument("--views", type=int, default=4)
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--width", type=int)
    r.add_argument("--height", type=int)
    r.add_argument("--depth-noise", choices=["none", "stereo"], default="none",
                   help="stereo: depth as a stereo RGB-D camera measures it "
                        "(render/depth_noise.py); default %(default)s, the exact rendered depth")

    c = sub.add_parser("reconstruct", help="pose + mesh from a capture folder")
    c.add_argument("capture")
    c.add_argument("--out", required=True)
    c.add_argument("--backend", default=DEFAULT_BACKEND, choices=list(BACKENDS))
    c.add_argument("--device", default="cpu")
    c.add_argument("--cell-size", type=int, default=128)
    c.add_argument("--no-mesh", action="store_true")
    _model_arguments(c)

    e = sub.add_parser("eval", help="evaluate against gt.json, with the pycolmap baseline")
    e.add_argument("captures", nargs="+")
    e.add_argument("--out", required=True)
    e.add_argument("--backend", action="append",
                   choices=list(BACKENDS) + [b + s for s in METHOD_SUFFIXES for b in BACKENDS]
                   + ["limit"],
                   help="repeatable; BACKEND+tf aligns the views by the captures' camera poses "
                        "(as on a robot with TF) instead of from the images (and depth, where "
                        "captured); BACKEND+images works from the images alone (no registration, "
                        "no fused depth); limit: the captures' depth fused with the true poses "
                        "(the measurement limit)")
    e.add_argument("--baseline", default="pycolmap", choices=["pycolmap", "none"])
    e.add_argument("--device", default="cpu")
    _model_arguments(e)
    e.add_argument("--no-overviews", action="store_true",
                   help="skip the overview picture per capture and method (OUT/overviews/)")

    b = sub.add_parser("bag", help="a capture folder from a rosbag2 (.db3/.mcap), keyframes "
                                   "picked as the node does")
    b.add_argument("bag", help="rosbag2 folder, or its .db3 / .mcap file")
    b.add_argument("--image-topic", required=True, help="sensor_msgs/Image, 8-bit colour or mono")
    b.add_argument("--camera-info-topic", required=True)
    b.add_argument("--depth-topic", help="16UC1 mm or 32FC1 m, paired by stamp")
    b.add_argument("--mask-topic", help="mono8, object > 127, paired by stamp")
    b.add_argument("--oracle-nocs-topic", help="16UC3 ground-truth NOCS (oracle backend, tests)")
    b.add_argument("--out", required=True)
    # Keyframe options default to the node's (keyframes.KeyframeConfig).
    b.add_argument("--max-views", type=int, help="keyframes kept, 1..6 (default 6)")
    b.add_argument("--min-image-change", type=float, help="as the node's parameter (default 0.04)")
    b.add_argument("--min-sharpness", type=float, help="as the node's parameter (default 1e-4)")
    b.add_argument("--sync-slop", type=float, default=0.005, help="seconds, as the node's")
    b.add_argument("--world-frame",
                   help="TF frame of the keyframes' camera poses, as the node's world_frame "
                        "(default: the root of the camera's TF tree); TF is read when the bag "
                        "has it")
    b.add_argument("--no-tf", action="store_true", help="ignore the bag's TF (no camera poses)")
    b.add_argument("--tf-topic", default="/tf", help="tf2_msgs/TFMessage (default %(default)s)")
    b.add_argument("--tf-static-topic", default="/tf_static", help="(default %(default)s)")

    n = sub.add_parser("node", help="run the ROS 2 node (wheels-only installs)")
    n.add_argument("--params-file")
    n.add_argument("--lifecycle", action="store_true",
                   help="the managed node: starts unconfigured, driven by ~/change_state")
    n.add_argument("--autostart", action="store_true",
                   help="with --lifecycle: configure and activate at start-up")
    sub.add_parser("play", help="publish a capture as ROS 2 camera topics").add_argument("capture")
    sub.add_parser("demo", help="the end-to-end demo over ROS 2 (make demo)")
    # These two own their options (see `sparp-ros dataset --help`, `sparp-ros train --help`).
    sub.add_parser("dataset", help="render training samples from meshes", add_help=False)
    sub.add_parser("train", help="train the diffusion model", add_help=False)
    sub.add_parser("train-angles", help="train the view-angle network (elevation, roll)", add_help=False)
    sub.add_parser("train-pair-azimuth", help="train the pair-azimuth network", add_help=False)
    return p


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args, rest = build_parser().parse_known_args(argv)
    if args.command == "eval" and not args.backend:
        args.backend = [EVAL_DEFAULT_BACKEND]
    passthrough = {"node": _node, "play": _play, "demo": _demo, "dataset": _dataset, "train": _train,
                   "train-angles": _train_angles, "train-pair-azimuth": _train_pair_azimuth}
    if args.command in passthrough:
        return passthrough[args.command](args, rest)
    if rest:
        build_parser().error(f"unrecognised arguments: {' '.join(rest)}")
    return {"render": _render, "reconstruct": _reconstruct, "eval": _eval,
            "bag": _bag}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
