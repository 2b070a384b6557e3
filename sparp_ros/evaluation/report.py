"""Human-readable outputs of an evaluation run: ``report.md`` and ``rotation_errors.png``.

Kept apart from ``run.py`` so that a report can be regenerated from saved ``metrics.json`` and
``per_capture.json`` without re-running any method.
"""
from __future__ import annotations

import os
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np

from .metrics import FAILED_ROTATION_DEG

PLOT_MIN_ERROR_DEG = 0.01
"""Errors below this are drawn at it (the log axis has no zero)."""


def _fmt(value: Any, spec: str = ".2f", suffix: str = "") -> str:
    if value is None:
        return "–"
    if isinstance(value, float) and not np.isfinite(value):
        return "–"
    return f"{value:{spec}}{suffix}"


def _pair(first: Any, second: Any, spec: str = ".3f") -> str:
    """``"a / b"`` for two scores side by side; "–" for a missing one."""
    return f"{_fmt(first, spec)} / {_fmt(second, spec)}"


def _fscore_with_pr(m: dict[str, Any], key: str) -> str:
    """``"F (P/R)"`` of one threshold: ``0.912 (0.950/0.877)``; "–" without an F-score."""
    f = m.get(f"fscore@{key}")
    if f is None:
        return "–"
    return (f"{_fmt(f, '.3f')} ({_fmt(m.get(f'precision@{key}'), '.2f')}/"
            f"{_fmt(m.get(f'recall@{key}'), '.2f')})")


def rotation_errors_by_method(per_capture: dict[str, Any]) -> dict[str, list[float]]:
    """All relative-rotation errors of each method, pooled over captures (failures at 180°)."""
    pooled: dict[str, list[float]] = {}
    for entry in per_capture.get("captures", []):
        for method, rec in entry.get("methods", {}).items():
            pooled.setdefault(method, []).extend(rec.get("rotation_errors_deg") or [])
    return pooled


def plot_rotation_cdf(per_capture: dict[str, Any], path: Path) -> Path:
    """CDF of the relative-rotation error per method, 0.01–180° on a log axis, 15°/30° marked.

    A CDF shows the whole distribution (how many pairs are nearly right, how many flipped), which
    a median and two accuracies hide; the log axis keeps sub-degree methods (oracle, SfM on dense
    views) apart from each other and from the 180° failures.
    """
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lo = PLOT_MIN_ERROR_DEG
    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=110)
    for method, errors in sorted(rotation_errors_by_method(per_capture).items()):
        if not errors:
            continue
        e = np.sort(np.clip(np.asarray(errors, dtype=float), lo, FAILED_ROTATION_DEG))
        frac = np.arange(1, len(e) + 1) / len(e)
        ax.step(np.concatenate([[lo], e, [FAILED_ROTATION_DEG]]),
                np.concatenate([[0.0], frac, [frac[-1]]]), where="post", lw=1.6,
                label=f"{method} (median {np.median(errors):.2f}°, {len(e)} pairs)")
    for thr in (15, 30):
        ax.axvline(thr, color="grey", lw=0.8, ls="--")
    ax.set_xscale("log")
    ax.set_xlim(lo, FAILED_ROTATION_DEG * 1.05)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("relative rotation error (deg, log); missing poses count as 180°")
    ax.set_ylabel("fraction of view pairs")
    ax.set_title("Relative rotation error, all view pairs")
    ax.grid(alpha=0.3, which="both")
    if ax.get_legend_handles_labels()[0]:           # none with single-view captures (no pairs)
        ax.legend(loc="center right", bbox_to_anchor=(0.94, 0.45), fontsize=8)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path)
    plt.close(fig)
    return path


def _stage_timings(per_capture: dict[str, Any]) -> dict[str, dict[str, float]]:
    """Mean seconds per stage and method, over the captures that reported the stage."""
    sums: dict[str, dict[str, list[float]]] = {}
    for entry in per_capture.get("captures", []):
        for method, rec in entry.get("methods", {}).items():
            for stage, t in (rec.get("timings") or {}).items():
                if isinstance(t, (int, float)):
                    sums.setdefault(method, {}).setdefault(stage, []).append(float(t))
    return {m: {s: float(np.mean(v)) for s, v in st.items()} for m, st in sums.items()}


def write_report(metrics: dict[str, Any], per_capture: dict[str, Any], out: Path,
                 command: str) -> Path:
    """Write ``out/report.md`` (summary table, stage timings, per-capture table) and the plot."""
    out = Path(out)
    plot = plot_rotation_cdf(per_capture, out / "rotation_errors.png")
    lines = [
        "# sparp_ros evaluation",
        "",
        "Produced by:",
        "",
        "```",
        command,
        "```",
        "",
        f"{time.strftime('%Y-%m-%d %H:%M:%S')} on {platform.node() or 'unknown host'} "
        f"({platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}).",
        "",
        "Relative rotation errors over all view pairs i<j of every capture (a missing pose = 180°); "
        "translation: median error of the relative translation in metres; scale err.: median over "
        "captures of the relative error of the metric scale (both only on metric captures with "
        "depth or camera poses; a failed capture counts as infinite); chamfer: relative to the "
        "true bounding-box diagonal; F-score at 5 %, F@2 % and F@1 % at 2 % and 1 % of it; "
        "F@5mm (P/R) and F@10mm at absolute thresholds of 5 and 10 mm, with the precision "
        "(accuracy: our surface near the truth) and recall (completeness: the truth covered) of "
        "the 5 mm one; time: mean wall time per capture.",
    ]
    split = any(m.get("measured_fraction") is not None for m in metrics.values())
    if split:
        lines[-1] += (" P meas. / inf.: precision of the mesh surface from measured depth / "
                      "inferred by the model, at 5 mm and at 1 % of the diagonal (recall has no "
                      "such split: it is about the true surface); measured: the fraction of our "
                      "surface that is measured.")
    header = ("| method | median rot. err. (°) | Acc@15° | Acc@30° | transl. err. (m) | scale err. | "
              "chamfer | F-score | F@2 % | F@1 % | F@5mm (P/R) | F@10mm |")
    if split:
        header += " P@5mm meas. / inf. | P@1 % meas. / inf. | measured |"
    header += " captures | failures | time (s) |"
    lines += ["", header,
              "|---|" + "---:|" * (header.count("|") - 2)]
    for method, m in metrics.items():
        row = (f"| {method} | {_fmt(m['median_rotation_error_deg'])} | {_fmt(m['acc15'])} | "
               f"{_fmt(m['acc30'])} | {_fmt(m['translation_error_m'], '.4f')} | "
               f"{_fmt(m.get('scale_error'), '.2%')} | "
               f"{_fmt(m['chamfer'], '.3f')} | {_fmt(m['fscore'], '.3f')} | "
               f"{_fmt(m.get('fscore@0.02'), '.3f')} | {_fmt(m.get('fscore@0.01'), '.3f')} | "
               f"{_fscore_with_pr(m, '5mm')} | {_fmt(m.get('fscore@10mm'), '.3f')} | ")
        if split:
            row += (f"{_pair(m.get('precision@5mm_measured'), m.get('precision@5mm_inferred'))} | "
                    f"{_pair(m.get('precision@0.01_measured'), m.get('precision@0.01_inferred'))}"
                    f" | {_fmt(m.get('measured_fraction'), '.0%')} | ")
        lines.append(row + f"{m['captures']} | {m['failures']} | {_fmt(m['time_s'], '.2f')} |")
    trusted = {method: m for method, m in metrics.items()
               if m.get("confirmed_pair_fraction") is not None}
    if trusted:
        # what a robot is given: which poses a measurement confirmed, how often they are right,
        # and the mesh placed by the published keyframe's pose (Reconstruction.published_view)
        lines += ["", "## Confirmed poses and the published mesh", "",
                  "Confirmed pairs: both views' poses from TF or confirmed by the measured depth "
                  "(registered or placed), their share and Acc@15° over them alone; published "
                  "F-score: F@5 % of the mesh placed by the published keyframe's pose, in its "
                  "camera.", "",
                  "| method | confirmed pairs | Acc@15° (confirmed) | published F-score |",
                  "|---|---:|---:|---:|"]
        for method, m in trusted.items():
            lines.append(f"| {method} | {_fmt(m['confirmed_pair_fraction'], '.0%')} | "
                         f"{_fmt(m.get('acc15_confirmed'))} | "
                         f"{_fmt(m.get('fscore_published'), '.3f')} |")
    stages = _stage_timings(per_capture)
    if stages:
        lines += ["", "## Mean time per stage (s)", ""]
        for method, st in stages.items():
            lines.append(f"- **{method}**: " + ", ".join(f"{s} {t:.3f}" for s, t in st.items()))
    methods = list(metrics)
    captures = per_capture.get("captures", [])
    if captures and methods:
        lines += ["", "## Per capture: median relative rotation error (°), registered views", "",
                  "| capture | views | " + " | ".join(methods) + " |",
                  "|---|---:|" + "---:|" * len(methods)]
        for entry in captures:
            cells = []
            for method in methods:
                rec = entry.get("methods", {}).get(method)
                if rec is None:
                    cells.append("–")
                    continue
                med = rec.get("median_rotation_error_deg")
                cell = f"{_fmt(med, '.1f')} ({rec.get('registered', 0)}/{entry['views']})"
                if rec.get("overview"):
                    cell += f" [overview]({rec['overview']})"
                cells.append(cell + (" **failed**" if rec.get("failed") else ""))
            lines.append(f"| {entry.get('name', entry['capture'])} | {entry['views']} | "
                         + " | ".join(cells) + " |")
    errors = per_capture.get("errors", [])
    if errors:
        lines += ["", "## Captures that could not be evaluated", ""]
        lines += [f"- `{e['capture']}`: {e['message']}" for e in errors]
    lines += ["", f"![relative rotation error CDF]({plot.name})", ""]
    path = out / "report.md"
    path.write_text("\n".join(lines))
    return path
