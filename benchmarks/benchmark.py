"""The accuracy / speed / memory benchmark behind ``make bench`` and ``benchmarks/RESULTS.md``.

    python benchmarks/benchmark.py all [--objects 25] [--sweep-objects 6]
    python benchmarks/benchmark.py report        # RESULTS.md and plots from the saved results

1. ``render``: fixed-seed captures of the shared objects (``$SPARP_SHARED/data/objects``): one
   6-view capture per object (seed = ``--seed`` + object index), and its first 1, 2 and 4 views as
   the 1-, 2- and 4-view captures, so adding views only adds information. The depth goes through
   the stereo sensor model (``--depth-noise stereo``, the default:
   ``sparp_ros.render.depth_noise.STEREO_DEFAULT``) or stays the renderer's exact depth
   (``--depth-noise none``); each kind has its own cache folder (``captures_stereo/``,
   ``captures/``), so clean and noisy captures never mix, and a cached capture rendered with other
   noise parameters is rendered again. Cached under ``--out`` (git-ignored); delete the folder to
   re-render.
2. ``eval``: every method on every view count, each (view count, method) in its own process so that
   its peak RSS (``getrusage``) is its own, after one untimed warm-up capture (imports, model
   loading; reported apart): ``limit`` (the measurement limit: the captures' depth fused with the
   true poses, ``sparp_ros.evaluation.limit``; evaluation only), ``oracle`` (ground-truth NOCS),
   ``model`` (the shipped model; with depth, poses by registering the measured surfaces, started
   by the azimuth search on the images and the depth, and the mesh by TSDF fusion of the depth),
   ``model+images`` (the search on the images alone, the model's shape), ``model+tf`` (views
   aligned by the captures' camera poses, as on a robot with TF) and ``pycolmap`` (SfM; not run on
   1 view).
3. ``sweep``: robustness of ``oracle`` and ``model`` on the 4-view captures of
   ``--sweep-objects`` objects (evenly spaced over the name-sorted list) under focal error,
   eroded / cut masks, occluders and motion blur
   (``sparp_ros.evaluation.perturb``).
4. ``report``: ``RESULTS.md`` and the PNG plots beside it, from the saved JSON only.

Only ``render`` caches (capture folders are reused); ``eval`` and ``sweep`` always recompute.
``run.json`` records each step's command, machine, load and duration; the report cites them.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("SPARP_SHARED", REPO.parent / "shared"))
OBJECTS = SHARED / "data" / "objects"
DEFAULT_OUT = REPO / "benchmarks" / "out" / "bench"
DEFAULT_RESULTS = REPO / "benchmarks" / "RESULTS.md"

VIEW_COUNTS = (1, 2, 4, 6)
METHODS = ("limit", "oracle", "model", "model+images", "model+tf", "pycolmap")
BASELINES = ("pycolmap",)
LIMIT = "limit"                                 # sparp_ros.evaluation.limit.LIMIT_METHOD
DEPTH_NOISE = ("stereo", "none")                # --depth-noise: STEREO_DEFAULT, or exact depth
SWEEP_BACKENDS = ("oracle", "model")
SWEEP_VIEWS = 4
SWEEP_LEVELS: dict[str, tuple[float, ...]] = {
    "focal": (0.95, 1.05),                      # factor on fx, fy given to the pipeline
    "erode": (0.10, 0.25),                      # fraction of mask pixels removed at the rim
    "cut": (0.10, 0.25),                        # fraction of mask pixels cut off by a line
    "occluder": (0.10, 0.25),                   # fraction hidden, occluder removed from the mask
    "occluder_in_mask": (0.10, 0.25),           # fraction hidden, mask unchanged
    "blur": (5, 15, 31),                        # motion-blur length in pixels
}
NEUTRAL_LEVEL = {"focal": 1.0, "blur": 0}       # where "clean" sits on each kind's axis (else 0)
STYLE = {"limit": dict(color="0.3", marker="*", ls=(0, (1, 1))),
         "oracle": dict(color="tab:blue", marker="o", ls="-"),
         "model": dict(color="tab:orange", marker="s", ls="-"),
         "model+images": dict(color="tab:purple", marker="v", ls="-."),
         "model+tf": dict(color="tab:green", marker="^", ls="--"),
         "pycolmap": dict(color="tab:red", marker="D", ls=":")}
"""One look per method in every plot (dashed / dotted so that coinciding lines stay visible)."""
STAGES = ("crop", "nocs", "pnp", "view_angles", "align", "scale", "refine", "measured", "mesh",
          "features", "matching", "mapping")
"""``Reconstruction.timings`` (``measured``: registration + TSDF fusion, with depth; ``mesh``: the
model's Poisson shape, only where it is built) and pycolmap's stages, in report order."""


# -- small helpers ---------------------------------------------------------------------------------
def _method_dir(method: str) -> str:
    return method.replace("+", "_")


def _rss_mib() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0   # KiB on Linux


def machine_info() -> dict[str, Any]:
    """CPU model and cores, memory, load, Python: what produced the numbers."""
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gib = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_gib = int(line.split()[1]) / 2 ** 20
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "memory_gib": mem_gib,
            "loadavg": list(os.getloadavg()), "host": platform.node(),
            "arch": platform.machine(), "python": platform.python_version(), "gpu": "none (CPU only)"}


def machine_line(info: dict[str, Any]) -> str:
    mem = f", {info['memory_gib']:.0f} GiB RAM" if info.get("memory_gib") else ""
    return (f"{info['cpu']}, {info['cores']} cores ({info['arch']}){mem}, no GPU, "
            f"Python {info['python']}")


def mesh_files(n: int) -> list[Path]:
    files = sorted(OBJECTS.glob("*.glb"))
    if not files:
        raise SystemExit(f"no .glb meshes in {OBJECTS} (set SPARP_SHARED)")
    return files[:n]


def capture_root(out: Path, depth_noise: str) -> Path:
    """The cache folder of one depth kind: ``captures/`` (exact depth, as before the noise model)
    or ``captures_<noise>/``, so that a cached capture is never taken for the other kind."""
    if depth_noise not in DEPTH_NOISE:
        raise ValueError(f"depth_noise must be one of {DEPTH_NOISE}, got {depth_noise!r}")
    return out / ("captures" if depth_noise == "none" else f"captures_{depth_noise}")


def capture_dir(out: Path, views: int, mesh: Path, seed: int, depth_noise: str = "stereo") -> Path:
    return capture_root(out, depth_noise) / f"v{views}" / f"{mesh.stem}_s{seed}"


def noise_model(depth_noise: str):
    """The ``DepthNoise`` given to ``render_capture`` (None: the renderer's exact depth)."""
    if depth_noise == "none":
        return None
    from sparp_ros.render.depth_noise import STEREO_DEFAULT
    return {"stereo": STEREO_DEFAULT}[depth_noise]


def noise_params(depth_noise: str) -> dict[str, Any] | None:
    """What ``render_capture`` writes to ``gt.json``'s ``depth_noise`` for this kind."""
    from dataclasses import asdict
    model = noise_model(depth_noise)
    return None if model is None else asdict(model)


def _gt_noise(capture: Path) -> dict[str, Any] | None:
    """The depth-noise parameters a cached capture was rendered with (None: exact depth)."""
    return json.loads((capture / "gt.json").read_text()).get("depth_noise")


# -- 1. captures -----------------------------------------------------------------------------------
def render_all(out: Path, meshes: Sequence[Path], views: Sequence[int], seed: int,
               depth_noise: str = "stereo") -> int:
    """The 6-view (``max(views)``) capture of each object, and its first n views for every n,
    with the depth of ``depth_noise``; returns how many captures were rendered (0: all cached).
    A cached capture whose recorded noise parameters are not the current ones is rendered again
    (and its n-view copies made again)."""
    from sparp_ros.capture import Capture, GroundTruth, load_capture, save_capture
    from sparp_ros.render import render_capture
    top = max(views)
    params, noise = noise_params(depth_noise), noise_model(depth_noise)
    rendered = 0
    for k, mesh in enumerate(meshes):
        s = seed + k
        full_dir = capture_dir(out, top, mesh, s, depth_noise)
        fresh = False
        if not (full_dir / "gt.json").exists() or _gt_noise(full_dir) != params:
            if full_dir.exists():
                shutil.rmtree(full_dir)
            t0 = time.perf_counter()
            render_capture(mesh, full_dir, views=top, seed=s, depth_noise=noise)
            rendered, fresh = rendered + 1, True
            print(f"rendered {full_dir.relative_to(out)} ({time.perf_counter() - t0:.1f} s)",
                  flush=True)
        full = None
        for n in views:
            d = capture_dir(out, n, mesh, s, depth_noise)
            if n == top or (not fresh and (d / "gt.json").exists() and _gt_noise(d) == params):
                continue
            if d.exists():
                shutil.rmtree(d)
            full = full or load_capture(full_dir)
            g = full.gt
            save_capture(Capture(full.frames[:n], GroundTruth(g.T_camera_object[:n], g.metric,
                                                              g.mesh, g.object, dict(g.extra))), d)
    return rendered


# -- 2. methods, one process each ------------------------------------------------------------------
def _child(args: list[str]) -> None:
    cmd = [sys.executable, str(Path(__file__).resolve()), *args]
    subprocess.run(cmd, check=True)


def warm_up(method: str, capture: Path) -> float:
    """Run the method once on ``capture``, untimed by the evaluation: imports, model loading and
    first-call costs are paid here (and reported apart), not charged to the first capture.
    The pipeline is cached per configuration, so ``run_eval`` reuses what this built."""
    from sparp_ros.capture import load_capture
    t0 = time.perf_counter()
    cap = load_capture(capture)
    if method == LIMIT:                         # evaluation only: not a pipeline backend
        from sparp_ros.evaluation.limit import measurement_limit
        measurement_limit(cap)
    elif method in BASELINES:
        import tempfile
        from sparp_ros.evaluation.colmap_baseline import run_pycolmap
        with tempfile.TemporaryDirectory(prefix="sparp_warmup_") as tmp:
            run_pycolmap(cap, tmp)
    else:
        from sparp_ros.evaluation.run import method_options
        from sparp_ros.pipeline import reconstruct_capture
        name, options = method_options(method)
        reconstruct_capture(cap, backend=name, device="cpu", **options)
    return time.perf_counter() - t0


def child_eval(method: str, out: Path, captures: list[Path], command: str,
               depth_noise: str | None = None) -> None:
    """``run_eval`` of one method in this (fresh) process, plus ``resources.json`` (with the
    depth kind of the captures and the noise parameters their ``gt.json`` records)."""
    from sparp_ros.evaluation.run import run_eval
    rss0 = _rss_mib()
    first = warm_up(method, captures[0])
    load0 = list(os.getloadavg())
    t0, c0 = time.perf_counter(), os.times()
    baseline = method if method in BASELINES else None
    run_eval(captures, out, backends=[] if baseline else [method], baseline=baseline,
             command=command)
    c1 = os.times()
    (out / "resources.json").write_text(json.dumps({
        "method": method, "captures": len(captures),
        "peak_rss_mib": _peak_rss_mib(), "rss_before_mib": rss0, "first_call_s": first,
        "wall_s": time.perf_counter() - t0, "cpu_s": (c1.user - c0.user) + (c1.system - c0.system),
        "loadavg_start": load0, "loadavg_end": list(os.getloadavg()),
        "depth_noise": depth_noise, "depth_noise_params": _gt_noise(captures[0]),
    }, indent=1))


def eval_all(out: Path, meshes: Sequence[Path], views: Sequence[int], methods: Sequence[str],
             seed: int, command: str, depth_noise: str = "stereo") -> None:
    for n in views:
        caps = [capture_dir(out, n, m, seed + k, depth_noise) for k, m in enumerate(meshes)]
        for method in methods:
            if method in BASELINES and n < 2:
                print(f"== {method}, {n} view: not run (SfM needs >= 2 views)", flush=True)
                continue
            dest = out / "eval" / f"v{n}" / _method_dir(method)
            if dest.exists():
                shutil.rmtree(dest)
            dest.mkdir(parents=True)
            print(f"== {method}, {n} view(s), {len(caps)} captures", flush=True)
            _child(["_eval", *map(str, caps), "--method", method, "--out", str(dest),
                    "--command", command, "--depth-noise", depth_noise])


# -- 3. robustness sweep ---------------------------------------------------------------------------
def sweep_conditions(kinds: Sequence[str] | None = None) -> list[tuple[str, float]]:
    """``("clean", 0)`` then every (kind, level)."""
    conds: list[tuple[str, float]] = [("clean", 0.0)]
    for kind, levels in SWEEP_LEVELS.items():
        if kinds is None or kind in kinds:
            conds += [(kind, float(v)) for v in levels]
    return conds


def condition_name(kind: str, level: float) -> str:
    return "clean" if kind == "clean" else f"{kind}_{level:g}"


def sweep_subset(meshes: Sequence[Path], n: int) -> list[tuple[int, Path]]:
    """``n`` objects evenly spaced over the name-sorted list, with their indices (which fix their
    capture seeds): more variety than the first ``n`` names."""
    if n >= len(meshes):
        return list(enumerate(meshes))
    idx = np.unique(np.round(np.linspace(0, len(meshes) - 1, n)).astype(int))
    return [(int(i), meshes[i]) for i in idx]


def make_sweep_captures(out: Path, objects: Sequence[tuple[int, Path]], seed: int,
                        conditions: Sequence[tuple[str, float]],
                        depth_noise: str = "stereo") -> dict[str, list[Path]]:
    """Perturbed copies of the 4-view captures (re-made every run: cheap, and never stale)."""
    from sparp_ros.capture import load_capture, save_capture
    from sparp_ros.evaluation.perturb import KINDS, perturb_capture
    root = out / "sweep" / "captures"
    if root.exists():
        shutil.rmtree(root)
    dirs: dict[str, list[Path]] = {}
    stats: dict[str, Any] = {}
    clean = [capture_dir(out, SWEEP_VIEWS, m, seed + k, depth_noise) for k, m in objects]
    loaded = [load_capture(d) for d in clean]
    for kind, level in conditions:
        name = condition_name(kind, level)
        if kind == "clean":
            dirs[name] = clean
            continue
        ki = KINDS.index(kind)
        dirs[name] = []
        infos = []
        for (k, _), cap, d in zip(objects, loaded, clean):
            pert, info = perturb_capture(cap, kind, level,
                                         seed=[seed, k, ki, int(round(level * 1000))])
            dest = root / name / d.name
            save_capture(pert, dest)
            dirs[name].append(dest)
            infos += info
        stats[name] = {"kind": kind, "level": level}
        for key in ("removed_fraction", "hidden_fraction"):
            vals = [i[key] for i in infos if key in i]
            if vals:
                stats[name][f"mean_{key}"] = float(np.mean(vals))
        print(f"sweep captures: {name} ({len(dirs[name])})", flush=True)
    (out / "sweep" / "conditions.json").write_text(json.dumps(
        {"conditions": [[k, v] for k, v in conditions], "objects": [m.stem for _, m in objects],
         "dirs": {k: [str(p) for p in v] for k, v in dirs.items()}, "stats": stats,
         "depth_noise": depth_noise}, indent=1))
    return dirs


def child_sweep(backend: str, out: Path, command: str) -> None:
    """Every sweep condition for one backend, in one process (the model loads once)."""
    from sparp_ros.evaluation.run import run_eval
    spec = json.loads((out / "sweep" / "conditions.json").read_text())
    for kind, level in spec["conditions"]:
        name = condition_name(kind, level)
        dest = out / "sweep" / "eval" / _method_dir(backend) / name
        dest.mkdir(parents=True, exist_ok=True)
        print(f"== sweep {backend} {name}", flush=True)
        run_eval([Path(p) for p in spec["dirs"][name]], dest, backends=[backend], baseline=None,
                 command=command)


def sweep_all(out: Path, objects: Sequence[tuple[int, Path]], seed: int,
              backends: Sequence[str], kinds: Sequence[str] | None, command: str,
              depth_noise: str = "stereo") -> None:
    make_sweep_captures(out, objects, seed, sweep_conditions(kinds), depth_noise)
    ev = out / "sweep" / "eval"
    if ev.exists():
        shutil.rmtree(ev)
    for backend in backends:
        _child(["_sweep", "--backend", backend, "--out", str(out), "--command", command])


# -- 4. report -------------------------------------------------------------------------------------
def _load(path: Path) -> Any:
    return json.loads(path.read_text()) if path.exists() else None


def collect(out: Path) -> dict[str, Any]:
    """Everything the report needs, from the saved JSON."""
    data: dict[str, Any] = {"run": _load(out / "run.json") or {}, "eval": {}, "sweep": {}}
    for vdir in sorted((out / "eval").glob("v*")):
        n = int(vdir.name[1:])
        for mdir in sorted(vdir.iterdir()):
            metrics = _load(mdir / "metrics.json")
            if not metrics:
                continue
            method = next(iter(metrics))
            data["eval"].setdefault(n, {})[method] = {
                "metrics": metrics[method], "per_capture": _load(mdir / "per_capture.json"),
                "resources": _load(mdir / "resources.json") or {}}
    spec = _load(out / "sweep" / "conditions.json")
    if spec:
        data["sweep_spec"] = spec
        for bdir in sorted((out / "sweep" / "eval").glob("*")):
            for cdir in sorted(bdir.iterdir()):
                metrics = _load(cdir / "metrics.json")
                if metrics:
                    method = next(iter(metrics))
                    data["sweep"].setdefault(method, {})[cdir.name] = metrics[method]
                    data.setdefault("sweep_pc", {}).setdefault(method, {})[cdir.name] = _load(
                        cdir / "per_capture.json")
    return data


def paired_deltas(clean: dict[str, Any] | None, cond: dict[str, Any] | None, method: str,
                  draws: int = 2000, seed: int = 0) -> dict[str, tuple[float, float, float]]:
    """Condition minus clean, on the same objects, with a paired bootstrap 95 % interval
    (captures resampled with replacement, the same draw for both): ``median_rotation_error_deg``
    (pooled pairs) and ``fscore`` (mean over captures). An interval that holds 0 means the
    perturbation's effect is not told apart from the objects' spread."""
    def by_object(pc):
        return {e["object"] or e["name"]: e["methods"][method]
                for e in (pc or {}).get("captures", []) if method in e["methods"]}
    a, b = by_object(clean), by_object(cond)
    names = sorted(set(a) & set(b))
    if len(names) < 2:
        return {}
    rot_a = [np.asarray(a[n].get("rotation_errors_deg") or [], float) for n in names]
    rot_b = [np.asarray(b[n].get("rotation_errors_deg") or [], float) for n in names]
    f_a = np.array([a[n]["mesh"]["fscore"] if a[n].get("mesh") else np.nan for n in names])
    f_b = np.array([b[n]["mesh"]["fscore"] if b[n].get("mesh") else np.nan for n in names])

    def stats(idx):
        pa, pb = np.concatenate([rot_a[i] for i in idx]), np.concatenate([rot_b[i] for i in idx])
        d_rot = float(np.median(pb) - np.median(pa)) if pa.size and pb.size else np.nan
        ok = np.isfinite(f_a[idx]) & np.isfinite(f_b[idx])
        d_f = float(np.mean(f_b[idx][ok] - f_a[idx][ok])) if ok.any() else np.nan
        return d_rot, d_f

    point = stats(np.arange(len(names)))
    rng = np.random.default_rng(seed)
    boot = np.array([stats(rng.integers(len(names), size=len(names))) for _ in range(draws)])
    out = {}
    for k, key in enumerate(("median_rotation_error_deg", "fscore")):
        col = boot[:, k][np.isfinite(boot[:, k])]
        if np.isfinite(point[k]) and col.size:
            lo, hi = np.percentile(col, [2.5, 97.5])
            out[key] = (point[k], float(lo), float(hi))
    return out


def _f(value: Any, spec: str = ".2f") -> str:
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return "–"
    return f"{value:{spec}}"


def stage_means(per_capture: dict[str, Any] | None, method: str) -> dict[str, float]:
    sums: dict[str, list[float]] = {}
    for entry in (per_capture or {}).get("captures", []):
        rec = entry["methods"].get(method) or {}
        for stage, t in (rec.get("timings") or {}).items():
            if stage != "total" and isinstance(t, (int, float)):
                sums.setdefault(stage, []).append(float(t))
    return {s: float(np.mean(v)) for s, v in sums.items()}


def present_stages(data: dict[str, Any]) -> list[str]:
    """The stages timed in any eval result: ``STAGES`` order, unknown ones after."""
    seen: set[str] = set()
    for n in data["eval"]:
        for method, e in data["eval"][n].items():
            seen |= set(stage_means(e.get("per_capture"), method))
    return [s for s in STAGES if s in seen] + sorted(seen - set(STAGES))


def _load_range(res: dict[str, Any]) -> str:
    """The 1-minute load average at the start → end of a method's run, or – when not recorded."""
    a, b = res.get("loadavg_start"), res.get("loadavg_end")
    return f"{a[0]:.1f} → {b[0]:.1f}" if a and b else "–"


def _method_order(methods: Sequence[str]) -> list[str]:
    return [m for m in METHODS if m in methods] + [m for m in methods if m not in METHODS]


def _footer(fig, text: str) -> None:
    fig.text(0.005, 0.005, text, fontsize=6.5, color="0.35", ha="left", va="bottom", wrap=True)


def plot_errors_vs_views(data: dict[str, Any], path: Path, footer: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    views = sorted(data["eval"])
    methods = _method_order({m for n in views for m in data["eval"][n]})
    panels = [("median_rotation_error_deg", "median relative rotation error (°, log; 0 at 0.01)",
               True),
              ("acc30", "Acc@30° (fraction of view pairs)", False),
              ("fscore", "F-score @ 5 % of the diagonal", False),
              ("fscore@5mm", "F-score @ 5 mm", False),
              ("scale_error", "scale error |s/s_true − 1| (median)", False),
              ("time_s", "seconds per capture (log)", True)]
    fig, axes = plt.subplots(2, 3, figsize=(14, 7.4), dpi=110)
    for ax, (key, label, log) in zip(axes.ravel(), panels):
        for method in methods:
            xs, ys = [], []
            for n in views:
                m = data["eval"][n].get(method, {}).get("metrics")
                if m and m.get(key) is not None and np.isfinite(m[key]):
                    xs.append(n)
                    ys.append(max(m[key], 0.01) if log else m[key])
            if xs:
                ax.plot(xs, ys, label=method, lw=1.6, zorder=3 if method == LIMIT else 2,
                        **STYLE.get(method, {}))
        ax.set_xticks(views)
        ax.set_xlabel("views per capture")
        ax.set_title(label, fontsize=10)
        if log:
            ax.set_yscale("log")
            if key == "median_rotation_error_deg":
                ax.set_ylim(0.01, 300)
            else:
                from matplotlib.ticker import FormatStrFormatter, LogLocator, NullFormatter
                ax.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
                ax.yaxis.set_major_formatter(FormatStrFormatter("%g"))
                ax.yaxis.set_minor_formatter(NullFormatter())
        ax.grid(alpha=0.3, which="both")
    axes[0, 0].legend(fontsize=8)
    n_obj = data["eval"][views[0]][methods[0]]["metrics"]["captures"]
    fig.suptitle(f"Error vs number of views ({n_obj} objects; rotation needs ≥ 2 views; "
                 "pycolmap: poses only; limit: true poses, rotation 0)", fontsize=11)
    fig.tight_layout(rect=(0, 0.04, 1, 0.97))
    _footer(fig, footer)
    fig.savefig(path)
    plt.close(fig)


def plot_stage_times(data: dict[str, Any], path: Path, footer: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    views = sorted(data["eval"])
    methods = _method_order({m for n in views for m in data["eval"][n]})
    width = 3.2 * len(methods) + 2.0                  # + the legend's column
    fig, axes = plt.subplots(1, len(methods), figsize=(width, 4.4), dpi=110, sharey=True)
    axes = np.atleast_1d(axes)
    stages = present_stages(data)
    colors = dict(zip(stages, plt.cm.tab20.colors))
    for ax, method in zip(axes, methods):
        bottoms = np.zeros(len(views))
        for stage in stages:
            vals = np.array([stage_means(data["eval"][n].get(method, {}).get("per_capture"),
                                         method).get(stage, 0.0) for n in views])
            if vals.any():
                ax.bar([str(n) for n in views], vals, bottom=bottoms, label=stage,
                       color=colors[stage])
                bottoms += vals
        whole = np.array([0.0 if bottoms[i] else float(
            (data["eval"][n].get(method) or {}).get("metrics", {}).get("time_s") or 0.0)
            for i, n in enumerate(views)])
        if whole.any():                         # no stage timings (limit): the whole call
            ax.bar([str(n) for n in views], whole, label="whole call (no stages)",
                   color="0.8", hatch="//", edgecolor="0.5")
        ax.set_title(method, fontsize=10)
        ax.set_xlabel("views")
        ax.grid(alpha=0.3, axis="y")
    axes[0].set_ylabel("mean seconds per capture")
    handles = {}
    for ax in axes:
        for h, label in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(label, h)
    fig.legend(list(handles.values()), list(handles), loc="center right", fontsize=8,
               title="stage", title_fontsize=8)
    fig.suptitle("Time per stage (stacked" + ("; pycolmap has no 1-view run" if 1 in views
                                              else "") + ")", fontsize=11)
    fig.tight_layout(rect=(0, 0.05, 1 - 2.0 / width, 0.95))
    _footer(fig, footer)
    fig.savefig(path)
    plt.close(fig)


def plot_sweep(data: dict[str, Any], path: Path, footer: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    kinds = [k for k in SWEEP_LEVELS if any(
        condition_name(k, v) in data["sweep"].get(b, {}) for b in data["sweep"]
        for v in SWEEP_LEVELS[k])]
    rows = [("median_rotation_error_deg", "median rot. err. (°, log)", True),
            ("fscore", "F-score @ 5 %", False), ("scale_error", "scale error", False)]
    fig, axes = plt.subplots(len(rows), len(kinds), figsize=(2.6 * len(kinds), 7.2), dpi=110,
                             squeeze=False)
    for c, kind in enumerate(kinds):
        levels = [NEUTRAL_LEVEL.get(kind, 0.0), *SWEEP_LEVELS[kind]]
        names = ["clean", *[condition_name(kind, v) for v in SWEEP_LEVELS[kind]]]
        for r, (key, label, log) in enumerate(rows):
            ax = axes[r, c]
            for backend in _method_order(list(data["sweep"])):
                conds = data["sweep"][backend]
                xs = [x for x, nm in zip(levels, names) if conds.get(nm, {}).get(key) is not None]
                ys = [conds[nm][key] for nm in names if conds.get(nm, {}).get(key) is not None]
                if log:
                    ys = [max(y, 0.01) for y in ys]
                order = np.argsort(xs)
                ax.plot(np.array(xs)[order], np.array(ys)[order], label=backend,
                        **STYLE.get(backend, {}))
            if log:
                ax.set_yscale("log")
            if r == 0:
                ax.set_title(kind, fontsize=10)
            if c == 0:
                ax.set_ylabel(label, fontsize=9)
            if r == len(rows) - 1:
                ax.set_xlabel({"focal": "focal factor", "blur": "blur length (px)"}.get(
                    kind, "fraction of the mask"), fontsize=8)
            ax.grid(alpha=0.3, which="both")
    axes[0, 0].legend(fontsize=7)
    fig.suptitle("Robustness sweep, 4-view captures", fontsize=11)
    fig.tight_layout(rect=(0, 0.04, 1, 0.96))
    _footer(fig, footer)
    fig.savefig(path)
    plt.close(fig)


METRIC_COLUMNS = ("| method | median rot. err. (°) | Acc@15° | Acc@30° | transl. err. (mm) | "
                  "scale err. | chamfer | F@1 % | F@2 % | F@5 % | F@5mm (P / R) | F@10mm | "
                  "measured | failures | time / capture (s) | peak RSS (MiB) |")
METRIC_CELLS = METRIC_COLUMNS.count("|") - 2
"""Cells after the method's name in a row of ``METRIC_COLUMNS``."""


def _metric_row(method: str, m: dict[str, Any], res: dict[str, Any], views: int) -> str:
    pose = views >= 2
    na = "n/a"
    t = m.get("translation_error_m")
    metric = method not in BASELINES
    cells = [method,
             _f(m["median_rotation_error_deg"]) if pose else na,
             _f(m["acc15"]) if pose else na, _f(m["acc30"]) if pose else na,
             (_f(None if t is None else 1000 * t, ".1f") if pose else na) if metric else na,
             _f(m.get("scale_error"), ".1%") if metric else na,
             _f(m.get("chamfer"), ".3f") if metric else na,
             _f(m.get("fscore@0.01"), ".3f") if metric else na,
             _f(m.get("fscore@0.02"), ".3f") if metric else na,
             _f(m.get("fscore"), ".3f") if metric else na,
             (f"{_f(m.get('fscore@5mm'), '.3f')} ({_f(m.get('precision@5mm'), '.2f')} / "
              f"{_f(m.get('recall@5mm'), '.2f')})") if metric else na,
             _f(m.get("fscore@10mm"), ".3f") if metric else na,
             _f(m.get("measured_fraction"), ".0%") if metric else na,
             f"{m['failures']}/{m['captures']}", _f(m.get("time_s"), ".2f"),
             _f(res.get("peak_rss_mib"), ".0f")]
    return "| " + " | ".join(cells) + " |"


def step_record(run: dict[str, Any], name: str) -> dict[str, Any] | None:
    """The provenance of one step (``render``, ``eval``, ``sweep``) from ``run.json``."""
    st = (run.get("steps") or {}).get(name)
    if st:
        return st
    if f"{name}_s" in run:                           # the first format: one record per run
        return {"command": run.get("command"), "machine": run.get("machine"),
                "elapsed_s": run[f"{name}_s"], "finished": None, "loadavg_end": None}
    return None


def method_commands(data: dict[str, Any]) -> dict[str, list[str]]:
    """The commands that produced the eval results, each with its methods (in report order): an
    eval step rerun for some methods leaves the other methods' results of an earlier run."""
    by_command: dict[str, list[str]] = {}
    for n in sorted(data["eval"]):
        for method, m in data["eval"][n].items():
            cmd = (m.get("per_capture") or {}).get("command") or "?"
            if method not in by_command.setdefault(cmd, []):
                by_command[cmd].append(method)
    return {cmd: _method_order(methods) for cmd, methods in by_command.items()}


def depth_kinds(data: dict[str, Any]) -> dict[str, list[str]]:
    """The captures' depth kind (``stereo``, ``none``) of every method's eval results, each with
    its methods in report order; results from before the noise model record none (``none``)."""
    kinds: dict[str, list[str]] = {}
    for n in sorted(data["eval"]):
        for method, e in data["eval"][n].items():
            kind = (e.get("resources") or {}).get("depth_noise") or "none"
            if method not in kinds.setdefault(kind, []):
                kinds[kind].append(method)
    return {k: _method_order(v) for k, v in kinds.items()}


def _noise_params_of(data: dict[str, Any]) -> dict[str, Any] | None:
    for n in sorted(data["eval"]):
        for e in data["eval"][n].values():
            params = (e.get("resources") or {}).get("depth_noise_params")
            if params:
                return params
    return None


def depth_text(kind: str, params: dict[str, Any] | None) -> str:
    """One sentence on the captures' depth: the noise model's recorded parameters, or exact."""
    if kind == "none":
        return ("**Depth: exact** (`--depth-noise none`): the renderer's z-depth, stored in whole "
                "millimetres — no sensor noise, holes or flying pixels.")
    p = params or noise_params(kind) or {}
    mm = lambda key: f"{1000 * p.get(key, float('nan')):g}"   # noqa: E731
    return (f"**Depth: stereo sensor noise on** (`--depth-noise {kind}`: `STEREO_DEFAULT` of "
            "`sparp_ros/render/depth_noise.py`, parameters as the captures' `gt.json` records "
            f"them): axial noise σ(z) = {mm('sigma_base_m')} mm + {mm('sigma_quadratic')} mm · "
            f"(z / 1 m)², disparity steps of 1/{p.get('disparity_subpixel', 0):g} px for a "
            f"{mm('baseline_m')} mm baseline, stored in {mm('depth_resolution_m')} mm; "
            f"{100 * p.get('hole_fraction', 0):g} % random holes, {p.get('edge_hole_width_px', 0)} "
            f"px holes beside depth steps over {mm('edge_threshold_m')} mm, flying pixels on "
            f"{100 * p.get('flying_pixel_probability', 0):g} % of the silhouette (up to "
            f"{mm('flying_pixel_distance_m')} mm behind), dark (luminance < "
            f"{p.get('dark_threshold', 0):g}) and saturated (≥ {p.get('specular_threshold', 0):g}) "
            f"pixels dropped with probability {p.get('dark_dropout_probability', 0):g} / "
            f"{p.get('specular_dropout_probability', 0):g}. Images, masks, NOCS and poses are "
            "those of the clean render of the same seed; the ground-truth mesh is exact.")


METHOD_NOTES = {
    "limit": "**limit**: the measurement limit, not a method — the captures' masked depth fused "
             "with the *true* poses by the pipeline's TSDF fusion at its voxel size "
             "(`sparp_ros/evaluation/limit.py`; it reads `gt.json`). Its rotation error is 0 by "
             "construction; its mesh columns say how good a posed mesh can be from this depth: "
             "what a method loses below it is pose error, what the limit itself lacks is what the "
             "sensor never saw or measured wrong.",
    "oracle": "**oracle**: ground-truth NOCS through our PnP / scale / mesh stages — a test "
              "instrument, the upper bound of the geometry, not a method.",
    "model": "**model**: the shipped tiny model (per-view NOCS), as on a robot with an RGB-D "
             "camera: the joint azimuth search on the images and the depth (`align_with_depth`) "
             "gives pose hypotheses that start the registration of the views' measured surfaces "
             "(`sparp_ros/geometry/measured.py`); the mesh is the TSDF fusion of the depth at the "
             "registered poses (the model's shape only where fusion fails).",
    "model+images": "**model+images**: the same NOCS, views aligned from the images alone (the "
                    "predicted shapes in the visibility tests, no registration, no fusion): the "
                    "mesh is the model's Poisson shape; the depth still gives the scale.",
    "model+tf": "**model+tf**: views aligned by the captures' camera poses (`T_world_camera`, as TF "
                "gives on a robot), the mesh fused from the depth at those poses. The relative "
                "rotations then *are* the camera motion (exact in these renders), so its rotation "
                "columns measure TF, not the model; its translation, scale and mesh columns are the "
                "interesting ones.",
    "pycolmap": "**pycolmap**: COLMAP SfM (SIFT, exhaustive matching, incremental mapping, "
                "intrinsics fixed). Poses only, in an arbitrary scale: translation, scale and mesh "
                "are n/a. It cannot run on one view.",
}
"""The report's line on each method (only the methods with results are listed)."""


def write_results(out: Path, results: Path, plots_dir: Path) -> Path:
    data = collect(out)
    run = data["run"]

    def provenance(name: str) -> tuple[str, str, str]:
        """(caption, figure footer, machine line) of a step."""
        st = step_record(run, name) or {}
        info = st.get("machine") or machine_info()
        cmd = st.get("command") or "python benchmarks/benchmark.py all"
        short = f"{info['cpu']}, {info['cores']} cores, no GPU"
        return (f"Produced by `{cmd}` on {short}.",
                "  |  ".join(filter(None, [cmd, machine_line(info), st.get("finished")])),
                machine_line(info))

    caption, footer, mline = provenance("eval")
    sweep_caption, sweep_footer, _ = provenance("sweep")
    plots_dir.mkdir(parents=True, exist_ok=True)
    rel = os.path.relpath(plots_dir, results.parent)
    pimg = (lambda name: name) if rel == "." else (lambda name: f"{rel}/{name}")
    L: list[str] = ["# Benchmark results", ""]
    L += ["Produced by `make bench` (= `bash benchmarks/run.sh`: the render rate, then "
          "`benchmarks/benchmark.py`, then the slow tests) on this machine:", "",
          f"- {mline}; a machine shared with other developers and a training job, so every "
          "time below is an upper bound — the load average (runnable processes per 2 cores) is "
          "given with each step and each method's run.", ""]
    if run.get("elapsed_s"):
        L += [f"`{run.get('command')}` took {run['elapsed_s'] / 60:.0f} min in all, finished "
              f"{run.get('finished')}.", ""]
    L += ["| step | command | depth | finished | minutes | load avg (1 min) start → end |",
          "|---|---|---|---|---:|---|"]
    for name in ("render", "eval", "sweep"):
        st = step_record(run, name)
        if not st:
            continue
        l0 = (st.get("machine") or {}).get("loadavg") or [None]
        l1 = st.get("loadavg_end") or [None]
        L.append(f"| {name} | `{st.get('command')}` | {st.get('depth_noise') or 'none'} | "
                 f"{st.get('finished') or '–'} | "
                 f"{_f(st.get('elapsed_s') and st['elapsed_s'] / 60, '.1f')} | "
                 f"{_f(l0[0], '.1f')} → {_f(l1[0], '.1f')} |")
    L.append("")
    eval_rec = (run.get("steps") or {}).get("eval")
    by_command = method_commands(data)
    if len(by_command) > 1:          # a later eval of some methods beside an earlier run's others
        L += ["The methods' results come from different runs on the same captures and settings: "
              + "; ".join(f"{', '.join(methods)} from `{cmd}`" for cmd, methods in by_command.items())
              + ". Each eval table's caption names the latest.", ""]
    elif eval_rec and run.get("command") and eval_rec.get("command") != run.get("command"):
        L += [f"The eval step is a later run of that step alone (`{eval_rec['command']}`, the same "
              "captures and settings), made to time every view count at a comparable load; the "
              f"full run's own eval step took {_f(run.get('eval_s') and run['eval_s'] / 60, '.0f')}"
              " min.", ""]
    kinds = depth_kinds(data)
    if len(kinds) > 1:
        L += ["**Mixed depth: these results are not comparable across methods** — "
              + "; ".join(f"{', '.join(ms)} on `--depth-noise {k}` captures"
                          for k, ms in kinds.items())
              + ". Run `eval` again for all methods with one `--depth-noise`.", ""]
    elif kinds:
        L += [depth_text(next(iter(kinds)), _noise_params_of(data)), ""]
    views_all = sorted(data["eval"])
    if views_all:
        methods_all = _method_order({m for n in views_all for m in data["eval"][n]})
        L += ["## Summary", "", f"*{caption}* Median relative rotation error (°) / Acc@30° / "
              "F-score at 5 % of the diagonal / F-score at 5 mm per method and number of views "
              "(details below).", "",
              "| method | " + " | ".join(f"{n} view{'s' if n > 1 else ''}" for n in views_all)
              + " |", "|---|" + "---|" * len(views_all)]
        for method in methods_all:
            cells = []
            for n in views_all:
                m = (data["eval"][n].get(method) or {}).get("metrics")
                if m is None:
                    cells.append("n/a (cannot run)")
                    continue
                r = m["median_rotation_error_deg"]
                rot = "n/a" if n < 2 else _f(r, ".2f" if r is not None and r < 1 else ".1f") + "°"
                acc = "n/a" if n < 2 else _f(m["acc30"], ".2f")
                cells.append(f"{rot} / {acc} / {_f(m.get('fscore'), '.2f')} / "
                             f"{_f(m.get('fscore@5mm'), '.2f')}")
            L.append(f"| {method} | " + " | ".join(cells) + " |")
        L += ["", ("limit's poses are the true ones (rotation 0 by construction): its mesh "
                   "columns are what the depth allows. " if LIMIT in methods_all else "")
              + "model+tf's rotation is the camera motion (TF), exact in renders; pycolmap "
              "makes no mesh (F-scores –).", ""]
    rate = out.parent / "render_rate.txt"
    L += ["## Render rate", ""]
    if rate.exists() and rate.read_text().strip():
        L += ["`python benchmarks/render_rate.py` (same run, same machine):", "", "```",
              rate.read_text().strip(), "```", "",
              "DESIGN.md §7 measured ~229 renders/s on a quiet machine of this kind; 202 renders/s "
              "were measured on a quiet machine of this kind (render_rate.py alone).", ""]
    else:
        L += ["Not measured in this run (`python benchmarks/render_rate.py`; 202 renders/s at "
              "320×320 on a quiet machine of this kind).", ""]
    views = sorted(data["eval"])
    if views:
        n_obj = max(m["metrics"]["captures"] for m in data["eval"][views[0]].values())
        L += ["## Captures and methods", "",
              f"{n_obj} shared objects (`$SPARP_SHARED/data/objects`, the first {n_obj} by "
              "name), one 6-view capture each rendered by `sparp_ros.render.render_capture` "
              f"with seed {run.get('seed', 0)} + object index (random camera 480–800 px wide, focal "
              "0.8–1.4 × width, azimuths ≥ 30° apart, elevations −20…50°, random lighting and "
              "background, metric depth"
              + ("" if not kinds else " through the stereo noise model" if set(kinds) == {"stereo"}
                 else ", exact" if set(kinds) == {"none"} else ", see above")
              + "); the n-view capture is its first n views, so adding views "
              "only adds information. Every method sees the same captures.", ""]
        L += [f"- {METHOD_NOTES[m]}" for m in _method_order(
            {m for n in views for m in data["eval"][n]}) if m in METHOD_NOTES]
        L += ["",
              "Metrics (`sparp_ros.evaluation`): rotation over all view pairs i<j of the relative "
              "rotation `R_ci_cj` (a missing pose counts 180°), so it needs ≥ 2 views and is n/a "
              "with 1; translation: median error of the relative translation of the pairs, in mm "
              "(metric from depth); scale err.: median over captures of |s/s_true − 1| of the "
              "object's size; chamfer (fraction of the true bounding-box diagonal) and F-score at "
              "1, 2 and 5 % of that diagonal compare our mesh with the true one in the reference "
              "camera, so they measure pose, scale and shape together; F@5mm (P / R) and F@10mm: "
              "the F-score at an absolute 5 and 10 mm (a gripper's tolerance does not scale with "
              "the object), with the precision (share of our surface within 5 mm of the truth: "
              "accuracy) and recall (share of the true surface within 5 mm of ours: completeness); "
              "measured: the share of our mesh's surface that comes from measured depth (the rest "
              "inferred by the model; – where the method does not say); failures: captures where "
              "the method posed fewer than min(2, views) views; time: mean wall time per capture "
              "of the method itself (not the metrics); peak RSS: maximum resident memory of the "
              "process that ran only this method over all captures of this view count "
              "(`getrusage`; ~80 MiB of it is Python + numpy + the evaluation code).", ""]
        L += ["## Pose and mesh per number of views", "",
              f"![error vs number of views]({pimg('errors_vs_views.png')})", "",
              f"*{caption}*", ""]
        for n in views:
            L += [f"### {n} view{'s' if n > 1 else ''}", "",
                  f"*{caption}*" + (" With 1 view there are no view pairs: rotation, Acc and "
                                    "translation are n/a; pycolmap cannot run." if n == 1 else ""),
                  "", METRIC_COLUMNS, "|---|" + "---:|" * METRIC_CELLS]
            for method in _method_order(list(data["eval"][n]) + (["pycolmap"] if n == 1 else [])):
                entry = data["eval"][n].get(method)
                if entry is None:
                    L.append(f"| {method} | " + " | ".join(["n/a"] * METRIC_CELLS) + " |")
                    continue
                L.append(_metric_row(method, entry["metrics"], entry["resources"], n))
            L.append("")
        # stage times
        stages = present_stages(data)
        L += ["## Time per stage", "", f"![time per stage]({pimg('stage_times.png')})", "",
              f"*{caption}* Mean seconds per capture; pipeline stages as "
              "`Reconstruction.timings` (`measured`: registration of the measured surfaces + TSDF "
              "fusion of the depth, with depth; `mesh`: the model's Poisson shape, built only where "
              "it is used — no depth, fusion failed, or completion on; blank: the stage did not "
              "run), pycolmap's as its own; limit has no stages (fusion at the true poses: its wall "
              "time); wall: the method's whole call; "
              "first call: the untimed warm-up run on the first capture in each process (imports, "
              "model loading), not included in the means; peak RSS: as above; load avg: the "
              "machine's 1-minute load "
              "average when the method's run started → ended (2 cores: above 2, processes queue "
              "for the CPU and wall times stretch accordingly).", "",
              "| views | method | " + " | ".join(stages)
              + " | wall | first call | peak RSS (MiB) | load avg |",
              "|---:|---|" + "---:|" * (len(stages) + 3) + "---|"]
        for n in views:
            for method in _method_order(list(data["eval"][n])):
                e = data["eval"][n][method]
                st = stage_means(e["per_capture"], method)
                L.append(f"| {n} | {method} | " + " | ".join(
                    _f(st.get(s), ".3f") if s in st else "" for s in stages)
                    + f" | {_f(e['metrics'].get('time_s'), '.3f')} | "
                    f"{_f(e['resources'].get('first_call_s'), '.1f')} | "
                    f"{_f(e['resources'].get('peak_rss_mib'), '.0f')} | "
                    f"{_load_range(e['resources'])} |")
        L.append("")
        spread = []
        for method in _method_order({m for n in views for m in data["eval"][n]}):
            med = {}
            for n in views:
                pc = (data["eval"][n].get(method) or {}).get("per_capture") or {}
                t = [float(e["methods"][method]["timings"]["nocs"]) for e in pc.get("captures", [])
                     if "nocs" in ((e["methods"].get(method) or {}).get("timings") or {})]
                if t:
                    med[n] = (float(np.median(t)), float(np.max(t)))
            if len(med) > 1 and max(v[0] for v in med.values()) > max(
                    0.3, 3 * min(v[0] for v in med.values())):
                spread.append(f"{method}: " + ", ".join(
                    f"{n} view{'s' if n > 1 else ''} median {a:.2f} s (max {b:.2f})"
                    for n, (a, b) in med.items()))
        if spread:
            L += ["**The `nocs` stage time is erratic** (" + "; ".join(spread) + "). Its work "
                  "does not depend on the number of views (one tiled 3×2-cell forward pass). The "
                  "likely cause is thread contention, not the model: a probe on 5 captures "
                  "(same machine, quiet) gave `nocs` 0.2–2.4 s with the defaults, 0.10–0.17 s "
                  "with the mesh stage off, and 0.17–0.27 s with the mesh stage on and "
                  "`OMP_WAIT_POLICY=PASSIVE` in the environment — open3d's OpenMP threads "
                  "(Poisson meshing then; with depth now registration and fusion) and torch's spin "
                  "against each other on 2 cores, and other jobs' processes share the cores (load "
                  "avg above). The tables measure the defaults, as a user runs them.", ""]
        # per object, the largest view count with 4 views preferred
        nv = 4 if 4 in views else views[-1]
        methods = _method_order(list(data["eval"][nv]))
        L += [f"## Per object, {nv} views: median relative rotation error (°) (posed views) · "
              "F@5 %", "", f"*{caption}*", "",
              "| object | " + " | ".join(methods) + " |", "|---|" + "---:|" * len(methods)]
        rows: dict[str, list[str]] = {}
        for method in methods:
            for entry in (data["eval"][nv][method]["per_capture"] or {}).get("captures", []):
                rec = entry["methods"][method]
                med = _f(rec.get("median_rotation_error_deg"), ".1f")
                cell = f"{med} ({rec['registered']}/{entry['views']})"
                if rec.get("mesh"):
                    cell += f" · {rec['mesh']['fscore']:.2f}"
                if rec.get("failed"):
                    cell += " **failed**"
                rows.setdefault(entry["object"] or entry["name"], {})[method] = cell
        for obj, cells in rows.items():
            L.append(f"| {obj} | " + " | ".join(cells.get(m, "–") for m in methods) + " |")
        L.append("")
    if data["sweep"]:
        spec = data["sweep_spec"]
        objs = spec["objects"]
        L += ["## Robustness sweep (4 views)", "",
              f"![robustness sweep]({pimg('sweep.png')})", "",
              f"*{sweep_caption}* {len(objs)} objects (evenly spaced over the name-sorted list, to "
              f"keep the sweep within the run's time: {', '.join(objs)}), their 4-view "
              f"captures (depth: `{spec.get('depth_noise') or 'none'}`); every view of a capture "
              "perturbed "
              "(own random draw per view, fixed seeds), the ground truth untouched "
              "(`sparp_ros/evaluation/perturb.py`):", "",
              "- **focal f**: images rendered with the true focal length, the pipeline given "
              "fx, fy × f (a miscalibrated camera; principal point unchanged).",
              "- **erode x**: the fraction x of mask pixels nearest the mask's boundary removed "
              "(a segmenter that misses the rim).",
              "- **cut x**: the fraction x of mask pixels on one side of a random straight line "
              "removed (a segmenter that misses a part).",
              "- **occluder x**: a random textured rectangle pasted over the object, hiding the "
              "fraction x of its pixels, and **removed from the mask** (a segmenter that sees it).",
              "- **occluder_in_mask x**: the same rectangle, the mask **left unchanged** (the "
              "occluder's pixels are fed to the pipeline as object). The oracle reads ground-truth "
              "NOCS under the mask, so this one cannot affect it; it is listed to show that.",
              "- **blur L**: linear motion blur, L pixels long at a random angle, on the image "
              "only (the mask stays sharp). The oracle does not read the image, so blur cannot "
              "affect it either.", "",
              "Δ columns: the condition minus clean on the same objects, with a paired bootstrap "
              "95 % interval (objects resampled with replacement, 2000 draws); ** marks an "
              "interval that excludes 0, i.e. an effect told apart from the objects' spread.", ""]
        stats = spec.get("stats", {})
        cols = ("| condition | median rot. err. (°) | Δ rot. vs clean [95 % CI] | Acc@15° | "
                "Acc@30° | transl. err. (mm) | scale err. | chamfer | F@2 % | F@5 % | "
                "Δ F@5 % vs clean [95 % CI] | failures | measured |")
        for backend in _method_order(list(data["sweep"])):
            conds = data["sweep"][backend]
            L += [f"### {backend}", "", cols, "|---|" + "---:|" * 12]
            pcs = data.get("sweep_pc", {}).get(backend, {})
            for kind, level in spec["conditions"]:
                name = condition_name(kind, level)
                m = conds.get(name)
                if m is None:
                    continue
                s = stats.get(name, {})
                measured = ""
                if "mean_hidden_fraction" in s:
                    measured = f"hidden {s['mean_hidden_fraction']:.1%}"
                elif "mean_removed_fraction" in s:
                    measured = f"removed {s['mean_removed_fraction']:.1%}"
                t = m.get("translation_error_m")
                d = {} if kind == "clean" else paired_deltas(pcs.get("clean"), pcs.get(name),
                                                             backend)

                def delta(key: str, spec: str) -> str:
                    if key not in d:
                        return ""
                    v, lo, hi = d[key]
                    sig = "" if lo <= 0 <= hi else " **"
                    return f"{v:+{spec}} [{lo:+{spec}}, {hi:+{spec}}]{sig}"

                L.append(f"| {name} | {_f(m['median_rotation_error_deg'])} | "
                         f"{delta('median_rotation_error_deg', '.1f')} | {_f(m['acc15'])} | "
                         f"{_f(m['acc30'])} | {_f(None if t is None else 1000 * t, '.1f')} | "
                         f"{_f(m.get('scale_error'), '.1%')} | {_f(m.get('chamfer'), '.3f')} | "
                         f"{_f(m.get('fscore@0.02'), '.3f')} | {_f(m.get('fscore'), '.3f')} | "
                         f"{delta('fscore', '.3f')} | {m['failures']}/{m['captures']} | "
                         f"{measured} |")
            L.append("")
    L += ["## Reproduce", "",
          "```", "make bench                  # = bash benchmarks/run.sh",
          "python benchmarks/benchmark.py report   # RESULTS.md and plots again from the saved JSON",
          "```", "",
          "Raw results (git-ignored): `benchmarks/out/bench/eval/v<N>/<method>/` "
          "(`metrics.json`, `per_capture.json` with every pair's error, `report.md`, "
          "`resources.json`) and `benchmarks/out/bench/sweep/`.", ""]
    if views:
        plot_errors_vs_views(data, plots_dir / "errors_vs_views.png", footer)
        plot_stage_times(data, plots_dir / "stage_times.png", footer)
    if data["sweep"]:
        plot_sweep(data, plots_dir / "sweep.png", sweep_footer)
    results.write_text("\n".join(L))
    return results


# -- command line ----------------------------------------------------------------------------------
def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("step", choices=("all", "render", "eval", "sweep", "report", "_eval", "_sweep"))
    p.add_argument("captures", nargs="*", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--objects", type=int, default=25, help="first N shared objects (default 25)")
    p.add_argument("--views", type=int, nargs="+", default=list(VIEW_COUNTS))
    p.add_argument("--methods", nargs="+", default=list(METHODS))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--depth-noise", choices=DEPTH_NOISE, default="stereo",
                   help="the captures' depth: the stereo sensor model (STEREO_DEFAULT of "
                        "sparp_ros.render.depth_noise; default) or the renderer's exact depth "
                        "(none); each has its own capture cache")
    p.add_argument("--sweep-objects", type=int, default=6,
                   help="N objects, evenly spaced by name, for the robustness sweep (0: none)")
    p.add_argument("--sweep-backends", nargs="+", default=list(SWEEP_BACKENDS))
    p.add_argument("--sweep-kinds", nargs="+", default=None, choices=list(SWEEP_LEVELS))
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    p.add_argument("--results", type=Path, default=DEFAULT_RESULTS,
                   help="the report; its plots are written beside it")
    p.add_argument("--method", help=argparse.SUPPRESS)
    p.add_argument("--backend", help=argparse.SUPPRESS)
    p.add_argument("--command", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    out = args.out.resolve()
    if args.step == "_eval":
        child_eval(args.method, out, args.captures, args.command, args.depth_noise)
        return 0
    if args.step == "_sweep":
        child_sweep(args.backend, out, args.command)
        return 0
    command = " ".join(shlex.quote(a) for a in ["python", "benchmarks/benchmark.py", *argv])
    meshes = mesh_files(args.objects)
    out.mkdir(parents=True, exist_ok=True)
    run: dict[str, Any] = _load(out / "run.json") or {}
    if args.step == "all":
        run = {}                                     # a full run replaces every step's record
    steps = run.setdefault("steps", {})

    def record(name: str, t0: float, info: dict[str, Any]) -> None:
        """What produced this step's results: command, machine and load, when, how long."""
        steps[name] = {"command": command, "machine": info, "elapsed_s": time.perf_counter() - t0,
                       "loadavg_end": list(os.getloadavg()), "depth_noise": args.depth_noise,
                       "finished": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}

    t_all = time.perf_counter()
    if args.step in ("all", "render", "eval", "sweep"):
        needed = sorted(set(args.views) | ({SWEEP_VIEWS} if args.sweep_objects else set()))
        t0, info = time.perf_counter(), machine_info()
        if (render_all(out, meshes, needed, args.seed, args.depth_noise) or "render" not in steps
                or steps["render"].get("depth_noise", "none") != args.depth_noise):
            record("render", t0, info)               # a cache hit keeps the real render's record
    if args.step in ("all", "eval"):
        if args.step == "all":
            for f in (out / "eval").glob("v*"):       # no stale view counts in the report
                if int(f.name[1:]) not in args.views:
                    shutil.rmtree(f)
        t0, info = time.perf_counter(), machine_info()
        eval_all(out, meshes, args.views, args.methods, args.seed, command, args.depth_noise)
        record("eval", t0, info)
    if args.step in ("all", "sweep"):
        t0, info = time.perf_counter(), machine_info()
        if args.sweep_objects:
            sweep_all(out, sweep_subset(meshes, args.sweep_objects), args.seed, args.sweep_backends,
                      args.sweep_kinds, command, args.depth_noise)
            record("sweep", t0, info)
        elif (out / "sweep").exists():
            shutil.rmtree(out / "sweep")
            steps.pop("sweep", None)
    if args.step != "report":
        run["seed"] = args.seed
        run["depth_noise"] = args.depth_noise        # of this step's captures; each step has its own
        run["depth_noise_params"] = noise_params(args.depth_noise)
        if args.step == "all":
            run.update(command=command, elapsed_s=time.perf_counter() - t_all,
                       finished=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()))
        (out / "run.json").write_text(json.dumps(run, indent=1))
    path = write_results(out, args.results.resolve(), args.results.resolve().parent)
    print(f"wrote {path}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
