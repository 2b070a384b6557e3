"""Evaluate reconstruction backends and the pycolmap baseline on capture folders.

``run_eval`` runs every method on every capture with a ``gt.json`` and writes::

    out/metrics.json       one summary per method (the keys below, nothing else)
    out/per_capture.json   every error of every pair, mesh metrics, timings, failures
    out/report.md          the summary table with the command that produced it
    out/rotation_errors.png

A method that raises on a capture, or poses fewer than two of its views, *fails* that capture:
all its pairs count 180°, it is logged and counted, and the run goes on — a benchmark that stops
at the first hard object hides exactly the cases it exists to show.

``sparp-ros eval CAPTURE... --out OUT`` is the same from a shell (the one evaluation CLI, in
``sparp_ros.cli``).
"""
from __future__ import annotations

import json
import logging
import math
import shlex
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..capture import Capture, load_capture
from .limit import LIMIT_METHOD, measurement_limit
from ..conventions import CAMERA_MOTION_SUFFIX, IMAGES_ONLY_SUFFIX, METHOD_SUFFIXES
from .metrics import (mesh_metrics, mesh_summary_keys, relative_rotation_errors,
                      relative_translation_angle_errors, relative_translation_errors, scale_error,
                      summarize_rotation)
from .report import write_report

log = logging.getLogger(__name__)

BASELINES = ("pycolmap",)


def _finite_or_none(x: float) -> float | None:
    return float(x) if x is not None and math.isfinite(x) else None


def _pose_record(T_est: list[np.ndarray | None], capture: Capture, metric: bool) -> dict[str, Any]:
    """Pair errors of one method on one capture; translation only when ``metric``."""
    T_gt = capture.gt.T_camera_object
    rot = relative_rotation_errors(T_est, T_gt)
    rec: dict[str, Any] = {
        "registered": int(sum(T is not None for T in T_est)),
        "rotation_errors_deg": rot,
        "median_rotation_error_deg": summarize_rotation(rot)["median_rotation_error_deg"],
        "translation_angle_errors_deg": relative_translation_angle_errors(T_est, T_gt),
        "translation_errors_m": None,
        "translation_errors_rel": None,
    }
    if metric:
        # inf (missing pose) is not JSON: None there, and the summary charges it as inf again
        rec["translation_errors_m"] = [_finite_or_none(e) for e in
                                       relative_translation_errors(T_est, T_gt)]
        rec["translation_errors_rel"] = [_finite_or_none(e) for e in
                                         relative_translation_errors(T_est, T_gt, relative=True)]
    return rec


def _has_depth(capture: Capture) -> bool:
    return any(f.depth is not None and np.any(f.depth > 0) for f in capture.frames)


def _has_camera_motion(capture: Capture) -> bool:
    """At least two frames with a camera pose (TF), from which the pipeline can take the scale."""
    return sum(f.T_world_camera is not None for f in capture.frames) >= 2


def _scale_applies(capture: Capture) -> bool:
    """Metric ground truth and a metric source for the method (depth or camera motion): only then
    are translations and the scale compared (a size prior's scale says nothing about the method)."""
    return bool(capture.gt.metric) and (_has_depth(capture) or _has_camera_motion(capture))


def method_options(method: str) -> tuple[str, dict[str, bool]]:
    """``<backend>[+tf|+images]`` → (backend, PipelineConfig fields): without a suffix the views
    are aligned from the images and, where the capture has it, their depth, never from the camera
    poses (what relative-rotation metrics measure: the poses would give them for free); ``+tf``
    aligns them by the camera poses (a robot with TF); ``+images`` from the images alone (the
    azimuth search and the view-angle network do without the depth)."""
    name, plus, rest = method.partition("+")
    suffix = plus + rest
    if suffix and suffix not in METHOD_SUFFIXES:
        raise ValueError(f"unknown method {method!r}: a backend, optionally with one of the "
                         f"suffixes {', '.join(METHOD_SUFFIXES)}")
    options = {"align_with_camera_motion": suffix == CAMERA_MOTION_SUFFIX}
    if suffix == IMAGES_ONLY_SUFFIX:
        options["align_with_depth"] = False
        options["depth_networks"] = False
        options["measured_surface"] = False
    return name, options


def _run_backend(capture: Capture, backend: str, device: str,
                 model: dict[str, Any] | None = None, overview: Path | None = None,
                 mask_source: str | None = None) -> dict[str, Any]:
    """One backend of ``sparp_ros.pipeline`` on one capture; exceptions become a failed record.
    ``backend`` may end in ``+tf`` or ``+images`` (:func:`method_options`); ``model`` (PipelineConfig
    fields: ``weights``, ``model_domain``, ``inference_steps``, ``registration_colour_weight``,
    ``registration_min_image_agreement``)
    applies to the model backend.
    ``overview``: where to write the reconstruction's overview picture (``outputs.overview_image``:
    the frames with masks, posed outline and axes, the NOCS maps), the record names it."""
    n = len(capture.frames)
    metric = _scale_applies(capture)
    t0 = time.perf_counter()
    try:
        if backend == LIMIT_METHOD:
            recon = measurement_limit(capture)
        else:
            # imported here: the pipeline is optional for metric-only use and heavy to import
            from ..pipeline import reconstruct_capture
            name, options = method_options(backend)
            recon = reconstruct_capture(capture, backend=name, device=device, **options,
                                        **((model or {}) if name == "model" else {}))
    except Exception as exc:  # noqa: BLE001 -- a method failing a capture is a result, not a crash
        elapsed = time.perf_counter() - t0
        log.warning("%s failed on %s: %s", backend, capture.root, exc)
        log.debug("%s", traceback.format_exc())
        rec = _pose_record([None] * n, capture, metric)
        rec.update(failed=True, message=f"{type(exc).__name__}: {exc}", time_s=elapsed,
                   timings={}, mesh=None, scale_source=None,
                   scale={"scale_error": None, "method": "failed"} if metric else None)
        return rec
    elapsed = time.perf_counter() - t0
    T_est = [v.T_camera_object if v.ok and v.T_camera_object is not None else None
             for v in recon.views]
    if len(T_est) != n:
        rec = _pose_record([None] * n, capture, metric)
        rec.update(failed=True, message=f"returned {len(T_est)} views for {n} frames",
                   time_s=elapsed, timings=dict(recon.timings), mesh=None,
                   scale_source=recon.scale_source,
                   scale={"scale_error": None, "method": "failed"} if metric else None)
        return rec
    rec = _pose_record(T_est, capture, metric)
    # which pairs' poses a measurement confirmed (both views TF, registered or placed): how far
    # a consumer can trust a pose the result vouches for
    confirmed = [v.confirmed for v in recon.views]
    rec["pose_sources"] = [v.pose_source if v.ok else None for v in recon.views]
    rec["confirmed_pairs"] = [bool(confirmed[i] and confirmed[j])
                              for i in range(n) for j in range(i + 1, n)]
    try:
        mesh = mesh_metrics(recon, capture)
        mesh_message = ""
    except Exception as exc:  # noqa: BLE001 -- a broken mesh must not hide the pose results
        mesh, mesh_message = None, f"mesh metrics failed: {type(exc).__name__}: {exc}"
        log.warning("%s on %s: %s", backend, capture.root, mesh_message)
    messages = [v.message for v in recon.views if not v.ok and v.message]
    rec.update(failed=rec["registered"] < min(2, n),
               message="; ".join(filter(None, [*messages, mesh_message])),
               time_s=elapsed, timings={k: float(v) for k, v in recon.timings.items()},
               mesh=mesh, scale_source=recon.scale_source, confidence=float(recon.confidence),
               scale=scale_error(recon, capture) if metric else None)
    if overview is not None and (name := _write_overview(recon, capture, overview, mask_source)):
        rec["overview"] = name
    return rec


def _write_overview(recon, capture: Capture, path: Path, mask_source: str | None) -> str | None:
    """The overview picture at ``path``; its name relative to the report, or None (a warning)
    when it could not be drawn: a picture must not fail an evaluation."""
    import cv2

    from ..outputs import overview_image
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        image = overview_image(recon, capture.frames, mask_source)
        cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    except Exception as exc:  # noqa: BLE001
        log.warning("overview of %s failed: %s", capture.root, exc)
        return None
    return f"{path.parent.name}/{path.name}"


def segment_if_unmasked(capture: Capture) -> tuple[Capture, dict | None]:
    """A capture without masks (``masks/``) as the methods need it: the object nearest view 0's
    centre segmented (depth when every frame has depth, else the learned segmenter:
    ``segment_select.masks_if_needed``), the views that do not see it left out of the frames and
    of the ground truth alike. A capture with masks comes back as it is, with None. Raises
    SegmentationError when nothing can be segmented."""
    from dataclasses import replace

    from ..segment_select import masks_if_needed

    frames, info = masks_if_needed(capture.frames, what=str(capture.root or "capture"))
    if info is None:
        return capture, None
    views = info["views"]
    gt = capture.gt
    if gt is not None:
        gt = replace(gt, T_camera_object=[gt.T_camera_object[i] for i in views])
    return replace(capture, frames=frames, gt=gt), info


def _run_baseline(capture: Capture, baseline: str, workdir: Path | None) -> dict[str, Any]:
    """A classical baseline on one capture: poses only, never metric (SfM scale is arbitrary)."""
    if baseline != "pycolmap":
        raise ValueError(f"baseline must be one of {BASELINES} or None, got {baseline!r}")
    from .colmap_baseline import run_pycolmap
    n = len(capture.frames)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="sparp_colmap_") as tmp:
        result = run_pycolmap(capture, workdir if workdir is not None else tmp)
    elapsed = time.perf_counter() - t0
    rec = _pose_record(list(result), capture, metric=False)
    rec.update(failed=rec["registered"] < min(2, n), message=result.reason, time_s=elapsed,
               timings=dict(result.timings), mesh=None, scale_source=None, scale=None)
    return rec


def _summarize(records: list[dict[str, Any]]) -> dict[str, Any]:
    """The ``metrics.json`` entry of one method from its per-capture records (pairs pooled).

    Rotation: median, ``acc15``, ``acc30`` over all pairs; ``confirmed_pair_fraction``: the share
    of pairs whose both poses a measurement confirmed (``ViewPose.confirmed``), ``acc15_confirmed``
    the Acc@15 over those alone (``None`` without any; both over the records that carry pose
    sources: a baseline's do not); ``translation_error_m``: median over
    pairs; ``chamfer``, ``fscore`` (5 %), ``fscore@0.01``, ``fscore@0.02``, ``precision@0.01``,
    ``recall@0.01``, ``fscore@5mm`` / ``precision@5mm`` / ``recall@5mm`` (and ``@10mm``), the
    measured / inferred precisions and ``measured_fraction`` (``metrics.mesh_summary_keys``): each
    the mean over the captures whose mesh metrics have a value for it (a split precision only where
    the reconstruction flagged measured vertices and the class has samples), ``None`` when none
    has; ``scale_error``: median over captures of ``|s / s_true - 1|``
    (``metrics.scale_error``); translation and scale only where the capture is metric and has
    depth or camera poses."""
    rot = [e for r in records for e in r["rotation_errors_deg"]]
    summary: dict[str, Any] = dict(summarize_rotation(rot))
    # the pairs whose both poses a measurement confirmed, over the records that say (a baseline's
    # or a failed run's do not: None when none does)
    said = [r for r in records if r.get("confirmed_pairs") is not None]
    flags = [c for r in said for c in r["confirmed_pairs"]]
    confirmed = [e for r in said for e, c in zip(r["rotation_errors_deg"], r["confirmed_pairs"]) if c]
    summary["confirmed_pair_fraction"] = float(np.mean(flags)) if flags else None
    summary["acc15_confirmed"] = summarize_rotation(confirmed)["acc15"]
    trans = [math.inf if e is None else e for r in records
             if r.get("translation_errors_m") is not None for e in r["translation_errors_m"]]
    summary["translation_error_m"] = _finite_or_none(float(np.median(trans))) if trans else None
    meshes = [r["mesh"] for r in records if r.get("mesh")]
    for key in mesh_summary_keys():
        values = [m[key] for m in meshes if m.get(key) is not None]
        summary[key] = float(np.mean(values)) if values else None
    # a method that failed a capture where the scale applies is charged an infinite error
    scales = [math.inf if r["scale"]["scale_error"] is None else r["scale"]["scale_error"]
              for r in records if r.get("scale")]
    summary["scale_error"] = _finite_or_none(float(np.median(scales))) if scales else None
    summary["captures"] = len(records)
    summary["failures"] = int(sum(bool(r["failed"]) for r in records))
    summary["time_s"] = float(np.mean([r["time_s"] for r in records])) if records else None
    return summary


def current_command_line() -> str:
    """This process's command line as a user would retype it (``python -m pkg.mod`` for modules
    run with ``-m``, the bare name for console scripts), for the report."""
    argv0 = Path(sys.argv[0]) if sys.argv and sys.argv[0] else Path("python")
    package_dir = Path(__file__).resolve().parents[1]          # .../sparp_ros
    resolved = argv0.resolve()
    if argv0.suffix == ".py" and resolved.is_relative_to(package_dir):
        module = resolved.relative_to(package_dir.parent).with_suffix("")
        head = ["python", "-m", ".".join(module.parts)]
    else:
        head = [argv0.name]
    return " ".join(shlex.quote(str(a)) for a in [*head, *sys.argv[1:]])


def _progress(k: int, total: int, name: str, results: dict[str, dict[str, Any]]) -> str:
    parts = []
    for method, r in results.items():
        med = r.get("median_rotation_error_deg")
        state = "FAILED" if r["failed"] else f"{med:.1f}°" if med is not None else "n/a"
        parts.append(f"{method} {state} ({r['registered']} posed, {r['time_s']:.2f} s)")
    return f"[{k}/{total}] {name}: " + "; ".join(parts)


def run_eval(capture_dirs: Sequence[str | Path], out: str | Path,
             backends: Sequence[str] = ("oracle",), baseline: str | None = "pycolmap",
             device: str = "cpu", command: str | None = None,
             colmap_workdir: str | Path | None = None,
             model: dict[str, Any] | None = None, overviews: bool = True) -> dict[str, Any]:
    """Evaluate each backend and the baseline on each capture; returns the ``metrics.json`` dict.

    ``command`` is recorded in the report (default: this process's command line). Captures that do
    not load or have no ``gt.json`` are listed in ``per_capture.json`` under ``errors`` and skipped
    for every method. ``colmap_workdir`` keeps COLMAP's database and model per capture for
    inspection (default: a temporary folder). ``model``: options of the model backend
    (``weights`` folder, ``model_domain``, ``inference_steps``; default the shipped model's).
    ``overviews``: each backend's overview picture per capture in ``out/overviews/`` (the same
    picture as ``sparp-ros reconstruct`` and ``make demo`` write), linked from the report.
    """
    if baseline is not None and baseline not in BASELINES:
        raise ValueError(f"baseline must be one of {BASELINES} or None, got {baseline!r}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    methods = list(backends) + ([baseline] if baseline else [])
    if len(set(methods)) != len(methods):
        raise ValueError(f"method names must be unique, got {methods}")
    records: dict[str, list[dict[str, Any]]] = {m: [] for m in methods}
    per_capture: dict[str, Any] = {"captures": [], "errors": []}
    total = len(capture_dirs)
    for k, cdir in enumerate(capture_dirs, start=1):
        cdir = Path(cdir)
        try:
            capture = load_capture(cdir)
        except Exception as exc:  # noqa: BLE001 -- one unreadable capture must not stop the run
            per_capture["errors"].append({"capture": str(cdir), "message": f"{exc}"})
            print(f"[{k}/{total}] {cdir.name}: cannot load ({exc})", flush=True)
            continue
        if capture.gt is None:
            per_capture["errors"].append({"capture": str(cdir), "message": "no gt.json"})
            print(f"[{k}/{total}] {cdir.name}: skipped, no gt.json", flush=True)
            continue
        try:
            capture, segmentation = segment_if_unmasked(capture)
        except ValueError as exc:       # SegmentationError: no object, no plane, ...
            per_capture["errors"].append({"capture": str(cdir), "message": f"segmentation: {exc}"})
            print(f"[{k}/{total}] {cdir.name}: no masks and segmentation failed ({exc})", flush=True)
            continue
        results: dict[str, dict[str, Any]] = {}
        for backend in backends:
            picture = (out / "overviews" / f"{cdir.name}_{backend.replace('+', '_')}.png"
                       if overviews else None)
            results[backend] = _run_backend(capture, backend, device, model, picture,
                                            (segmentation or {}).get("method"))
        if baseline:
            wd = None if colmap_workdir is None else Path(colmap_workdir) / f"{k:03d}_{cdir.name}"
            results[baseline] = _run_baseline(capture, baseline, wd)
        for method, rec in results.items():
            records[method].append(rec)
        per_capture["captures"].append({"capture": str(cdir), "name": cdir.name,
                                        "object": capture.gt.object, "views": len(capture.frames),
                                        "metric": capture.gt.metric, "methods": results,
                                        "segmentation": segmentation})
        print(_progress(k, total, cdir.name, results), flush=True)
    metrics = {m: _summarize(records[m]) for m in methods}
    if command is None:
        command = current_command_line()
    per_capture["command"] = command
    (out / "metrics.json").write_text(json.dumps(metrics, indent=1))
    (out / "per_capture.json").write_text(json.dumps(per_capture, indent=1))
    write_report(metrics, per_capture, out, command)
    return metrics


def expand_capture_dirs(paths: Sequence[str | Path]) -> list[Path]:
    """Capture folders from the arguments: a folder with ``cameras.json``, or its sub-folders."""
    dirs: list[Path] = []
    for p in map(Path, paths):
        if (p / "cameras.json").is_file():
            dirs.append(p)
        elif p.is_dir():
            dirs.extend(sorted(d for d in p.iterdir() if (d / "cameras.json").is_file()))
    return dirs
