"""The node's health for ``/diagnostics`` (ROS-free: a snapshot in, a level, message and key/value
list out; ``ros.messages.health_to_diagnostics`` makes the message).

Levels (diagnostic_msgs/DiagnosticStatus):

* ERROR: the model failed to load at the last configuration (the managed node stays
  unconfigured; the message is the reason);
* WARN (only while active): messages or frames were dropped since the last report (drops rising;
  the last reason is named), or no image has arrived for ``frame_timeout_s`` (since activation
  when none has);
* OK otherwise; an unconfigured or inactive node is OK and says it is not taking frames.

Input timing (:class:`InputTiming`, filled by the node's subscription callbacks): the image
latency (callback start on the node's clock minus the image's header stamp: transport, queueing
in the executor, and the sender's own delay) and the time spent in every input callback
(conversion, pairing, keyframe offer), as p50 / p99 / max in milliseconds over the last
``TIMING_WINDOW`` messages.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field

import numpy as np

TIMING_WINDOW = 10_000
"""Messages the timing percentiles cover (5.5 min of a 30 Hz camera; 80 kB per series)."""

OK, WARN, ERROR = 0, 1, 2
"""diagnostic_msgs/DiagnosticStatus levels."""


@dataclass
class HealthSnapshot:
    """What the node knows about itself at one instant."""

    state: str                              # unconfigured | inactive | active
    backend: str
    device: str
    model_loaded: bool
    load_error: str = ""                   # why the last configuration failed; "" = it did not
    busy: bool = False                      # a reconstruction is running
    keyframes: int = 0
    max_keyframes: int = 0
    images_received: int = 0
    dropped: dict[str, int] = field(default_factory=dict)   # per input part, "frame", "unpaired"
    last_drop: str = ""
    seconds_since_image: float | None = None   # None: no image since activation
    seconds_active: float = 0.0
    last_latency_s: float | None = None        # wall time of the last pipeline run
    last_result: str = ""                      # its answer
    timing: dict[str, tuple[int, float, float, float]] = field(default_factory=dict)
    """``InputTiming.summary()``: series -> (count, p50, p99, max), milliseconds."""


class _Window:
    """The last ``size`` values of a series (a ring buffer) and the total count."""

    def __init__(self, size: int):
        self.values = np.zeros(size, np.float64)
        self.count = 0

    def add(self, value: float) -> None:
        self.values[self.count % len(self.values)] = value
        self.count += 1

    def summary(self) -> tuple[int, float, float, float]:
        """(count, p50, p99, max) of the window, in the values' unit times 1000."""
        window = self.values[:min(self.count, len(self.values))] * 1e3
        p50, p99 = np.percentile(window, (50, 99))
        return self.count, float(p50), float(p99), float(window.max())


class InputTiming:
    """Timing of the node's input callbacks, for /diagnostics (thread-safe, constant memory):
    ``image_latency`` (seconds from the header stamp to the start of the image callback) and
    ``callback`` (seconds spent in any input callback)."""

    SERIES = ("image_latency", "callback")

    def __init__(self, window: int = TIMING_WINDOW):
        self._series = {name: _Window(window) for name in self.SERIES}
        self._lock = threading.Lock()

    def add(self, name: str, seconds: float) -> None:
        with self._lock:
            self._series[name].add(seconds)

    def summary(self) -> dict[str, tuple[int, float, float, float]]:
        """series -> (count, p50_ms, p99_ms, max_ms) over the window; series with no data left
        out."""
        with self._lock:
            return {name: w.summary() for name, w in self._series.items() if w.count}


@dataclass
class Health:
    level: int
    message: str
    values: list[tuple[str, str]]


class HealthMonitor:
    """Turns snapshots into ``Health``; remembers the drop count of the previous report, so a
    WARN for drops lasts one report after the drops stop."""

    def __init__(self, frame_timeout_s: float = 5.0):
        self.frame_timeout_s = frame_timeout_s
        self._dropped_before = 0

    def assess(self, s: HealthSnapshot) -> Health:
        dropped = sum(s.dropped.values())
        new_drops, self._dropped_before = dropped - self._dropped_before, dropped
        level, message = OK, f"{s.state}: not taking frames"
        if s.load_error and s.state == "unconfigured":
            level, message = ERROR, f"model failed to load: {s.load_error}"
        elif s.state == "active":
            warnings = []
            if new_drops > 0:
                warnings.append(f"{new_drops} dropped since the last report (last: {s.last_drop})")
            quiet = s.seconds_active if s.seconds_since_image is None else s.seconds_since_image
            if quiet >= self.frame_timeout_s:
                warnings.append(f"no image for {quiet:.1f} s" if s.seconds_since_image is not None
                                else f"no image since activation {quiet:.1f} s ago")
            level = WARN if warnings else OK
            message = "; ".join(warnings) or (f"taking frames: {s.keyframes}/{s.max_keyframes} "
                                              "keyframes" + (", reconstructing" if s.busy else ""))
        return Health(level, message, _values(s, dropped))


def _values(s: HealthSnapshot, dropped: int) -> list[tuple[str, str]]:
    def num(x: float | None) -> str:
        return "" if x is None else f"{x:.3f}"

    values = [("state", s.state), ("backend", s.backend), ("device", s.device),
              ("model_loaded", str(s.model_loaded).lower()), ("busy", str(s.busy).lower()),
              ("keyframes", str(s.keyframes)), ("max_keyframes", str(s.max_keyframes)),
              ("images_received", str(s.images_received)), ("dropped_total", str(dropped))]
    values += [(f"dropped.{part}", str(n)) for part, n in sorted(s.dropped.items())]
    values += [("last_drop_reason", s.last_drop),
               ("seconds_since_last_image", num(s.seconds_since_image)),
               ("last_reconstruction_latency_s", num(s.last_latency_s)),
               ("last_reconstruction", s.last_result)]
    for name, (count, p50, p99, worst) in sorted(s.timing.items()):
        values += [(f"{name}_count", str(count)), (f"{name}_ms.p50", f"{p50:.2f}"),
                   (f"{name}_ms.p99", f"{p99:.2f}"), (f"{name}_ms.max", f"{worst:.2f}")]
    if s.load_error:
        values.append(("load_error", s.load_error))
    return values
