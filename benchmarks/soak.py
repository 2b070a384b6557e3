"""Soak test of the node: a 30 Hz camera for ≥ 10 000 frames with reconstructions on request.

Why: a robot runs the node for hours. This checks, over real Fast DDS with the node in its own
process (as ``sparp-ros node`` runs it), that memory stays flat, every ``~/reconstruct`` request
is answered, and how many camera frames the node takes in and how late.

What it does:

1. Render ``--views`` views (default 12, azimuth every 30°) of one object at 640×480 once
   (``sparp_ros.render``; the shipped demo object by default) and build their messages: rgb8
   image, CameraInfo, mono8 mask and the 16UC3 ground-truth NOCS the ``oracle`` backend reads.
2. Start the node (``python -m sparp_ros.cli node``; oracle backend, mask, no depth, mesh on)
   on a private localhost-only ROS domain.
3. Publish ``--frames`` frames at ``--rate`` Hz with sensor-data QoS (as a camera driver does),
   holding each view for ``--hold`` frames and then moving to the next; every frame's image
   gets a small brightness change (±2 levels), so a held view is "too similar" to keep and each
   new view is a new keyframe: the keyframe buffer churns (oldest dropped) for the whole run.
4. Every ``--trigger-period`` seconds call ``/sparp_node/reconstruct`` (std_srvs/Trigger). A
   request is sent only after the previous one was answered (a reconstruction that outlasts the
   period delays the next request instead of getting "busy"); one with no answer after
   ``--response-timeout`` counts as unanswered.
5. Sample the node's VmRSS (``/proc/<pid>/status``) and CPU time every second, and record every
   ``/diagnostics`` report (images received, drops, and the node's input timing: the image
   latency = start of the image callback on the node's clock minus the header stamp, which the
   publisher sets just before publishing; and the time spent in each input callback).
6. Stop the node with SIGINT (it must exit cleanly), then write ``OUT/soak.json``,
   ``OUT/rss.csv``, the plot ``--png`` and the report ``--md``. The node runs with Python's
   faulthandler, so a crash leaves its traceback in ``OUT/node.log``; if the node dies, publishing
   stops and the report says when.

    AMENT_PREFIX_PATH=$PWD/.venv .venv/bin/python benchmarks/soak.py [--frames 10000] [--rate 30]
        [--trigger-period 5] [--mesh OBJ.glb] [--out benchmarks/out/soak]
        [--md benchmarks/soak.md] [--png benchmarks/soak_rss.png]

A benchmark, not a test: ``SOAK=1 benchmarks/run.sh`` runs it.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

DEFAULT_MESH = REPO / "sparp_ros" / "data" / "demo_object.glb"
WIDTH, HEIGHT = 640, 480
BRIGHTNESS_JITTER = 2
"""± grey levels added to every frame: a changed image, far below ``min_image_change``."""
NODE_NAME = "sparp_node"
STARTUP_TIMEOUT_S = 180.0
SHUTDOWN_TIMEOUT_S = 20.0
SAMPLE_PERIOD_S = 1.0
WARMUP_S = 60.0
"""RSS growth is measured from here on (imports, first reconstruction and GL context are done)."""
FINAL_REPORT_WAIT_S = 3.0
FINDINGS = "## Findings"


def render_views(mesh: Path, views: int, seed: int):
    """``views`` renders of ``mesh`` at 640x480, azimuths evenly spread, elevations alternating."""
    from sparp_ros.render import render_capture

    azimuths = [i * 360.0 / views for i in range(views)]
    elevations = [10.0 if i % 2 == 0 else 35.0 for i in range(views)]
    return render_capture(mesh, None, views=views, seed=seed, width=WIDTH, height=HEIGHT,
                          azimuths_deg=azimuths, elevations_deg=elevations)


class Sampler(threading.Thread):
    """Every SAMPLE_PERIOD_S: the node's VmRSS (MiB) and CPU seconds (user + system)."""

    def __init__(self, pid: int, t0: float):
        super().__init__(daemon=True)
        self.pid, self.t0 = pid, t0
        self.samples: list[tuple[float, float, float]] = []      # (t, rss MiB, cpu s)
        self.child_samples: list[tuple[float, float]] = []       # (t, RSS MiB of its children)
        self.stop = threading.Event()
        self._ticks = os.sysconf("SC_CLK_TCK")

    def read(self) -> tuple[float, float] | None:
        try:
            status = Path(f"/proc/{self.pid}/status").read_text()
            stat = Path(f"/proc/{self.pid}/stat").read_text()
        except OSError:
            return None
        rss = [line for line in status.splitlines() if line.startswith("VmRSS:")]
        if not rss:                                 # a zombie: the node has exited
            return None
        rss_kb = int(rss[0].split()[1])
        fields = stat[stat.rindex(")") + 2:].split()
        cpu = (int(fields[11]) + int(fields[12])) / self._ticks     # utime + stime
        return rss_kb / 1024.0, cpu

    def children_rss(self) -> float:
        """Summed VmRSS (MiB) of the node's child processes (the mesh process, isolate_mesh)."""
        total_kb = 0
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                text = stat.read_text()
                if int(text[text.rindex(")") + 2:].split()[1]) != self.pid:     # ppid
                    continue
                status = (stat.parent / "status").read_text()
                total_kb += int(next(line for line in status.splitlines()
                                     if line.startswith("VmRSS:")).split()[1])
            except (OSError, ValueError, StopIteration):
                continue
        return total_kb / 1024.0

    def run(self) -> None:
        while not self.stop.is_set():
            value = self.read()
            if value is not None:
                t = time.monotonic() - self.t0
                self.samples.append((t, *value))
                self.child_samples.append((t, self.children_rss()))
            self.stop.wait(SAMPLE_PERIOD_S)


def start_node(env: dict[str, str], log_path: Path, reliable: bool) -> subprocess.Popen:
    params = {"backend": "oracle", "use_depth": "false", "use_mask": "true", "mesh": "true",
              "diagnostics_period_s": "1.0", "reliable_inputs": str(reliable).lower()}
    cmd = [sys.executable, "-m", "sparp_ros.cli", "node", "--ros-args"]
    for k, v in params.items():
        cmd += ["-p", f"{k}:={v}"]
    log = open(log_path, "w")
    return subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)


def stop_node(proc: subprocess.Popen) -> int | None:
    """SIGINT (as Ctrl-C), then SIGKILL after SHUTDOWN_TIMEOUT_S; the exit code, None if killed."""
    if proc.poll() is not None:
        return proc.returncode
    proc.send_signal(signal.SIGINT)
    try:
        return proc.wait(SHUTDOWN_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        return None


def run(args: argparse.Namespace) -> dict:
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import qos_profile_sensor_data

    from sparp_ros.ros.node import RELIABLE_INPUT_QOS
    from diagnostic_msgs.msg import DiagnosticArray
    from sensor_msgs.msg import CameraInfo, Image
    from std_srvs.srv import Trigger

    from sparp_ros.ros import messages

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    print(f"rendering {args.views} views of {args.mesh.name} at {WIDTH}x{HEIGHT} ...", flush=True)
    capture = render_views(args.mesh, args.views, args.seed)
    frame_id = capture.frames[0].camera.frame_id
    views = []
    for f in capture.frames:
        views.append({"image": f.image, "camera_info": messages.camera_to_camera_info(f.camera),
                      "mask": messages.mask_to_image(f.mask, frame_id),
                      "oracle_nocs": messages.nocs_to_image(f.nocs, f.mask, frame_id)})
    frame_bytes = sum(v.nbytes for v in (capture.frames[0].image, capture.frames[0].mask)) \
        + len(views[0]["oracle_nocs"].data)

    domain = random.SystemRandom().randint(100, 230)
    env = {**os.environ, "ROS_DOMAIN_ID": str(domain), "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST",
           "AMENT_PREFIX_PATH": os.environ.get("AMENT_PREFIX_PATH", str(REPO / ".venv")),
           "PYTHONNOUSERSITE": "1", "PYTHONFAULTHANDLER": "1",
           **dict(kv.split("=", 1) for kv in args.node_env)}
    os.environ.update({k: env[k] for k in ("ROS_DOMAIN_ID", "ROS_AUTOMATIC_DISCOVERY_RANGE")})
    t0 = time.monotonic()
    proc = start_node(env, out / "node.log", args.reliable)
    sampler = Sampler(proc.pid, t0)
    sampler.start()

    context = rclpy.Context()
    rclpy.init(context=context, domain_id=domain)
    node = rclpy.create_node("sparp_soak", context=context)
    qos = RELIABLE_INPUT_QOS if args.reliable else qos_profile_sensor_data
    pubs = {p: node.create_publisher(CameraInfo if p == "camera_info" else Image, p, qos)
            for p in ("camera_info", "mask", "oracle_nocs", "image")}
    diagnostics: list[dict] = []
    prefix = f"/{NODE_NAME}: "

    def on_diagnostics(msg: DiagnosticArray) -> None:
        for s in msg.status:
            if s.name.startswith(prefix):
                level = int.from_bytes(s.level, "little") if isinstance(s.level, bytes) else s.level
                diagnostics.append({"t": time.monotonic() - t0, "level": int(level),
                                    "message": s.message, **{kv.key: kv.value for kv in s.values}})

    node.create_subscription(DiagnosticArray, "/diagnostics", on_diagnostics, 50)
    client = node.create_client(Trigger, f"/{NODE_NAME}/reconstruct")
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    spinner.start()

    triggers: list[dict] = []
    sent = 0
    died_at = None
    result: dict = {}
    try:
        # 1. Wait for the node: its service and a subscriber on every input.
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while not (client.service_is_ready()
                   and all(p.get_subscription_count() > 0 for p in pubs.values())):
            if proc.poll() is not None:
                raise RuntimeError(f"the node exited with {proc.returncode} "
                                   f"(see {out / 'node.log'})")
            if time.monotonic() > deadline:
                raise RuntimeError(f"the node was not ready after {STARTUP_TIMEOUT_S:.0f} s")
            time.sleep(0.1)
        time.sleep(1.0)
        ready_at = time.monotonic() - t0
        print(f"node ready after {ready_at:.1f} s (pid {proc.pid}, domain {domain}); publishing "
              f"{args.frames} frames at {args.rate} Hz", flush=True)

        # 2. Publish at the rate; trigger every period, one request at a time.
        rng = np.random.default_rng(args.seed)
        period = 1.0 / args.rate
        start = time.monotonic()
        next_trigger = start + args.trigger_period
        pending: dict | None = None
        late = []
        for i in range(args.frames):
            target = start + i * period
            now = time.monotonic()
            if now < target:
                time.sleep(target - now)
            late.append(time.monotonic() - target)
            v = views[(i // args.hold) % len(views)]
            stamp = node.get_clock().now().to_msg()
            v["camera_info"].header.stamp = stamp
            v["mask"].header.stamp = stamp
            v["oracle_nocs"].header.stamp = stamp
            delta = int(rng.integers(-BRIGHTNESS_JITTER, BRIGHTNESS_JITTER + 1))
            image = np.clip(v["image"].astype(np.int16) + delta, 0, 255).astype(np.uint8)
            pubs["camera_info"].publish(v["camera_info"])
            pubs["mask"].publish(v["mask"])
            pubs["oracle_nocs"].publish(v["oracle_nocs"])
            pubs["image"].publish(messages.numpy_to_image(image, "rgb8", frame_id, stamp))
            sent += 1
            now = time.monotonic()
            pending = _poll(pending, triggers, now, args.response_timeout, t0)
            if pending is None and now >= next_trigger:
                pending = {"sent_at": now, "frame": i,
                           "future": client.call_async(Trigger.Request())}
                next_trigger = max(next_trigger + args.trigger_period,
                                   now + 0.5 * args.trigger_period)
            if (i + 1) % int(args.rate) == 0 and proc.poll() is not None:
                died_at = time.monotonic() - t0
                print(f"the node exited with {proc.returncode} after {died_at:.0f} s "
                      f"(frame {i + 1}); see {out / 'node.log'}", flush=True)
                if pending is not None:
                    triggers.append({"t": pending["sent_at"] - t0, "frame": pending["frame"],
                                     "latency_s": None, "success": None,
                                     "message": "no answer (the node died)"})
                    pending = None
                break
            if (i + 1) % (10 * int(args.rate)) == 0:
                rss = sampler.samples[-1][1] if sampler.samples else float("nan")
                ok = sum(t["success"] is True for t in triggers)
                print(f"  {i + 1}/{args.frames} frames, {time.monotonic() - start:.0f} s, node RSS "
                      f"{rss:.0f} MiB, triggers answered {len(triggers)} ({ok} ok)", flush=True)
        publish_s = time.monotonic() - start
        # 3. The last request, then a final diagnostics report.
        while pending is not None:
            time.sleep(0.05)
            pending = _poll(pending, triggers, time.monotonic(), args.response_timeout, t0)
        time.sleep(FINAL_REPORT_WAIT_S)
        final = diagnostics[-1] if diagnostics else {}
        result = summarise(args, sampler, triggers, diagnostics, final, sent, publish_s, late,
                           ready_at, frame_bytes)
        result["stop_t"] = time.monotonic() - t0
        result["node_died_at_s"] = died_at
    finally:
        executor.shutdown(timeout_sec=5.0)
        node.destroy_node()
        context.try_shutdown()
        exit_code = stop_node(proc)
        sampler.stop.set()
        sampler.join()
    result["node_exit_code"] = exit_code
    result["rss_samples"] = sampler.samples
    stop_t = result.get("stop_t", float("inf"))          # after SIGINT the child is gone
    child = np.array([c for t, c in sampler.child_samples if t <= stop_t] or [0.0])
    result["child_rss_mib"] = {"max": float(child.max()), "end": float(child[-1])}
    result["child_rss_samples"] = sampler.child_samples
    result["diagnostics_series"] = [{k: d.get(k) for k in (
        "t", "images_received", "image_latency_ms.p50", "image_latency_ms.p99",
        "callback_ms.p50", "callback_ms.p99", "dropped_total")} for d in diagnostics]
    return result


def _poll(pending: dict | None, triggers: list[dict], now: float, timeout_s: float,
          t0: float) -> dict | None:
    """Record the answer of the pending request (or its time-out); None when nothing is pending."""
    if pending is None:
        return None
    future = pending["future"]
    if future.done():
        response = future.result()
        triggers.append({"t": pending["sent_at"] - t0, "frame": pending["frame"],
                         "latency_s": now - pending["sent_at"], "success": bool(response.success),
                         "message": response.message})
        return None
    if now - pending["sent_at"] > timeout_s:
        triggers.append({"t": pending["sent_at"] - t0, "frame": pending["frame"],
                         "latency_s": None, "success": None, "message": "no answer"})
        return None
    return pending


def _float(d: dict, key: str) -> float | None:
    try:
        return float(d[key])
    except (KeyError, TypeError, ValueError):
        return None


def summarise(args, sampler: Sampler, triggers, diagnostics, final, sent, publish_s, late,
              ready_at, frame_bytes) -> dict:
    samples = np.array(sampler.samples) if sampler.samples else np.zeros((0, 3))
    after = samples[samples[:, 0] >= ready_at] if len(samples) else samples
    warm = after[after[:, 0] >= ready_at + WARMUP_S] if len(after) else after
    slope = None
    if len(warm) > 10:
        slope = float(np.polyfit(warm[:, 0], warm[:, 1], 1)[0]) * 3600.0      # MiB per hour
    cpu = None
    if len(after) > 1:
        cpu = float((after[-1, 2] - after[0, 2]) / (after[-1, 0] - after[0, 0]))
    answered = [t for t in triggers if t["success"] is not None]
    latencies = [t["latency_s"] for t in answered]
    messages: dict[str, int] = {}
    for t in triggers:
        if not t["success"]:
            key = t["message"].split(":")[0]
            messages[key] = messages.get(key, 0) + 1
    return {
        "frames_sent": sent, "publish_s": publish_s, "rate_hz_target": args.rate,
        "rate_hz_achieved": sent / publish_s if publish_s > 0 else None,
        "publisher_late_ms_p99": float(np.percentile(late, 99) * 1e3) if late else None,
        "frame_mbytes": frame_bytes / 2**20,
        "images_received": int(final.get("images_received", 0) or 0),
        "dropped": {k: int(v) for k, v in final.items() if k.startswith("dropped.")},
        "image_latency_ms": {q: _float(final, f"image_latency_ms.{q}")
                             for q in ("p50", "p99", "max")},
        "image_latency_count": int(final.get("image_latency_count", 0) or 0),
        "callback_ms": {q: _float(final, f"callback_ms.{q}") for q in ("p50", "p99", "max")},
        "callback_count": int(final.get("callback_count", 0) or 0),
        "triggers_sent": len(triggers), "triggers_answered": len(answered),
        "triggers_ok": sum(t["success"] is True for t in triggers),
        "triggers_failed": sum(t["success"] is False for t in triggers),
        "triggers_unanswered": sum(t["success"] is None for t in triggers),
        "trigger_failures_by_reason": messages,
        "trigger_latency_s": ({"p50": float(np.median(latencies)), "max": float(np.max(latencies))}
                              if latencies else None),
        "rss_mib": ({"at_ready": float(after[0, 1]),
                     "after_warmup": float(warm[0, 1]) if len(warm) else None,
                     "end": float(after[-1, 1]), "max": float(after[:, 1].max()),
                     "slope_after_warmup_mib_per_h": slope} if len(after) else None),
        "node_cpu_cores": cpu, "node_ready_s": ready_at,
        "diagnostics_reports": len(diagnostics),
        "diagnostics_levels": {str(k): sum(d["level"] == k for d in diagnostics)
                               for k in (0, 1, 2)},
        "triggers": triggers,
    }


def machine() -> str:
    cpu = ""
    try:
        cpu = next(line.split(":", 1)[1].strip()
                   for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return (f"{platform.node()}: {os.cpu_count()} CPUs ({cpu or platform.machine()}), "
            f"Python {platform.python_version()}, load average at start {os.getloadavg()[0]:.1f}")


def plot(result: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s = np.array(result["rss_samples"])
    c = np.array(result.get("child_rss_samples") or [(0.0, 0.0)])
    fig, (ax, ax2) = plt.subplots(2, 1, figsize=(7, 4.6), sharex=True, dpi=100,
                                  gridspec_kw={"height_ratios": [3, 2]})
    ax.plot(s[:, 0] / 60, s[:, 1], lw=1.2, color="tab:blue", label="node VmRSS")
    if c[:, 1].any():
        ax.plot(c[:, 0] / 60, c[:, 1], lw=1.0, color="tab:orange", label="mesh child VmRSS")
    ok = [t["t"] / 60 for t in result["triggers"] if t["success"]]
    bad = [t["t"] / 60 for t in result["triggers"] if not t["success"]]
    y = max(s[:, 1].max(), c[:, 1].max()) * 1.02
    ax.plot(ok, [y] * len(ok), "|", color="tab:green", ms=8, label="~/reconstruct ok")
    if bad:
        ax.plot(bad, [y] * len(bad), "|", color="tab:red", ms=8, label="~/reconstruct failed")
    if "stop_t" in result:
        ax.axvline(result["stop_t"] / 60, color="grey", ls="--", lw=0.8)
        ax.text(result["stop_t"] / 60, 0.05 * y, "SIGINT ", color="grey", fontsize=7, ha="right")
    ax.set_ylabel("RSS (MiB)")
    ax.set_ylim(0, y * 1.08)
    ax.legend(loc="lower right", fontsize=8)
    ax.set_title(f"soak: {result['frames_sent']} frames at {result['rate_hz_achieved']:.1f} Hz "
                 f"(640x480 rgb8 + mask + NOCS)", fontsize=10)
    ax.grid(alpha=0.3)
    d = [x for x in result["diagnostics_series"] if x.get("image_latency_ms.p50")]
    if d:
        t = np.array([x["t"] for x in d]) / 60
        ax2.plot(t, [float(x["image_latency_ms.p50"]) for x in d], lw=1, label="image latency p50")
        ax2.plot(t, [float(x["image_latency_ms.p99"]) for x in d], lw=1, label="image latency p99")
        ax2.plot(t, [float(x["callback_ms.p99"]) for x in d], lw=1, label="input callback p99")
        ax2.set_yscale("log")
        ax2.legend(loc="lower right", fontsize=7, ncol=3)
    ax2.set_ylabel("ms (last ≤10k msgs)")
    ax2.set_xlabel("minutes since the node started")
    ax2.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def report(result: dict, args: argparse.Namespace, command: str, machine_line: str) -> str:
    r, rss, lat, cb = result, result["rss_mib"] or {}, result["image_latency_ms"], result["callback_ms"]
    a = r.get("args") or {"views": args.views, "hold": args.hold, "mesh": args.mesh.name,
                          "reliable": args.reliable, "node_env": args.node_env}
    qos = "reliable QoS (reliable_inputs)" if a["reliable"] else "best-effort sensor-data QoS (reliable_inputs: false)"
    env = f", node environment {' '.join(a['node_env'])}" if a["node_env"] else ""

    def f(x, fmt="{:.1f}"):
        return "–" if x is None else fmt.format(x)

    dropped = ", ".join(f"{k[8:]} {v}" for k, v in sorted(r["dropped"].items())) or "none"
    died = ("" if r.get("node_died_at_s") is None else
            f"\n**The node died** {r['node_died_at_s']:.0f} s after it started (exit code "
            f"{r['node_exit_code']}); publishing stopped there and the node's numbers are from its "
            "last /diagnostics report before that.\n")
    failures = ", ".join(f"{k}: {v}" for k, v in r["trigger_failures_by_reason"].items()) or "none"
    return f"""# Soak benchmark

Produced by:

```
{command}
```

{r.get('date') or datetime.datetime.now().strftime('%Y-%m-%d %H:%M')} on {machine_line}; load average at the end
{r.get('load_end', os.getloadavg()[0]):.1f}. The node ran in its own process (`python -m sparp_ros.cli node`, oracle
backend, mask, no depth, mesh on, {qos}{env}); the publisher and the service client
in this script's process, over Fast DDS on a localhost-only domain. {a['views']} rendered views of
`{a['mesh']}` cycled, {a['hold']} frames each, every image with a ±{BRIGHTNESS_JITTER}-level
brightness change; one frame = {r['frame_mbytes']:.1f} MiB (rgb8 + mono8 mask + 16UC3 NOCS +
CameraInfo).
{died}
| | |
|---|---|
| frames sent | {r['frames_sent']} in {r['publish_s']:.0f} s: **{f(r['rate_hz_achieved'])} Hz** achieved (target {r['rate_hz_target']:g} Hz; publisher late p99 {f(r['publisher_late_ms_p99'])} ms) |
| images received by the node | **{r['images_received']}** ({100 * r['images_received'] / max(1, r['frames_sent']):.1f} %) |
| messages/frames dropped as unusable | {dropped} |
| `~/reconstruct` requests | {r['triggers_sent']} sent, **{r['triggers_answered']} answered** ({r['triggers_ok']} ok, {r['triggers_failed']} failed: {failures}), {r['triggers_unanswered']} unanswered |
| request → answer | median {f((r['trigger_latency_s'] or {}).get('p50'), '{:.2f}')} s, max {f((r['trigger_latency_s'] or {}).get('max'), '{:.2f}')} s |
| node RSS (VmRSS) | ready {f(rss.get('at_ready'), '{:.0f}')} MiB, after {WARMUP_S:.0f} s warm-up {f(rss.get('after_warmup'), '{:.0f}')} MiB, end **{f(rss.get('end'), '{:.0f}')} MiB**, max {f(rss.get('max'), '{:.0f}')} MiB; trend after warm-up {f(rss.get('slope_after_warmup_mib_per_h'), '{:+.1f}')} MiB/h |
| image latency (header stamp → image callback start, node clock) | p50 **{f(lat['p50'])} ms**, p99 **{f(lat['p99'])} ms**, max {f(lat['max'])} ms (last {min(r['image_latency_count'], 10000)} of {r['image_latency_count']} images) |
| time in an input callback (image, mask, NOCS, CameraInfo: convert, pair, keyframe offer) | p50 {f(cb['p50'], '{:.2f}')} ms, p99 {f(cb['p99'], '{:.2f}')} ms, max {f(cb['max'])} ms (last {min(r['callback_count'], 10000)} of {r['callback_count']}) |
| node CPU | {f(r['node_cpu_cores'], '{:.2f}')} cores on average |
| child processes' RSS (the mesh process, `isolate_mesh`) | end {f((r.get('child_rss_mib') or {}).get('end'), '{:.0f}')} MiB, max {f((r.get('child_rss_mib') or {}).get('max'), '{:.0f}')} MiB (shared libraries counted in both) |
| node shutdown (SIGINT) | exit code {r['node_exit_code']} |
| /diagnostics reports | {r['diagnostics_reports']} (OK {r['diagnostics_levels']['0']}, WARN {r['diagnostics_levels']['1']}, ERROR {r['diagnostics_levels']['2']}) |

![node RSS over time](soak_rss.png)

The latency and callback numbers are the node's own (`/diagnostics` keys `image_latency_ms.*`,
`callback_ms.*`, over its last ≤ 10 000 messages, from the final report). The image latency
includes the transport, the wait in the node's executor queue and the publisher's time between
stamping and publishing the image (it publishes CameraInfo, mask and NOCS first).
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=10_000)
    parser.add_argument("--rate", type=float, default=30.0, help="Hz")
    parser.add_argument("--trigger-period", type=float, default=5.0, help="seconds between requests")
    parser.add_argument("--response-timeout", type=float, default=120.0)
    parser.add_argument("--reliable", action="store_true",
                        help="reliable QoS on both sides (the node's reliable_inputs) instead of "
                             "sensor-data (best-effort) QoS")
    parser.add_argument("--node-env", action="append", default=[], metavar="KEY=VALUE",
                        help="extra environment of the node process (e.g. MALLOC_ARENA_MAX=2)")
    parser.add_argument("--report-only", action="store_true",
                        help="rewrite --md and --png from OUT/soak.json without running")
    parser.add_argument("--views", type=int, default=12)
    parser.add_argument("--hold", type=int, default=15, help="frames per view before the next")
    parser.add_argument("--mesh", type=Path, default=DEFAULT_MESH)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "out" / "soak")
    parser.add_argument("--md", type=Path, default=REPO / "benchmarks" / "soak.md")
    parser.add_argument("--png", type=Path, default=REPO / "benchmarks" / "soak_rss.png")
    args = parser.parse_args()
    if args.report_only:
        result = json.loads((args.out / "soak.json").read_text())
        command, machine_line = result["command"], result["machine"]
    else:
        command = ("AMENT_PREFIX_PATH=$PWD/.venv .venv/bin/python benchmarks/soak.py "
                   + " ".join(sys.argv[1:]))
        machine_line = machine()
        result = run(args)
        result["command"], result["machine"] = command, machine_line
        result["args"] = {"views": args.views, "hold": args.hold, "mesh": args.mesh.name,
                          "reliable": args.reliable, "node_env": args.node_env}
        result["date"] = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
        result["load_end"] = os.getloadavg()[0]
        (args.out / "soak.json").write_text(json.dumps(result, indent=1))
        with open(args.out / "rss.csv", "w") as fh:
            fh.write("t_s,rss_mib,cpu_s\n")
            fh.writelines(f"{t:.2f},{r:.1f},{c:.2f}\n" for t, r, c in result["rss_samples"])
    plot(result, args.png)
    notes = ""                  # a hand-written "## Findings" section is kept across runs
    if args.md.is_file() and FINDINGS in (old := args.md.read_text()):
        notes = "\n" + old[old.index(FINDINGS):]
    args.md.write_text(report(result, args, command, machine_line) + notes)
    summary = {k: v for k, v in result.items()
               if k not in ("rss_samples", "child_rss_samples", "diagnostics_series", "triggers")}
    print(json.dumps(summary, indent=1))
    ok = (result["triggers_unanswered"] == 0 and result["triggers_answered"] > 0
          and result["node_exit_code"] == 0)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
