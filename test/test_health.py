"""The node's /diagnostics levels and keys (ROS-free: sparp_ros.health)."""
from __future__ import annotations

from sparp_ros.health import ERROR, OK, WARN, HealthMonitor, HealthSnapshot


def _snapshot(**kw) -> HealthSnapshot:
    base = dict(state="active", backend="model", device="cuda", model_loaded=True, keyframes=2,
                max_keyframes=6, images_received=10, dropped={"image": 0, "camera_info": 0},
                seconds_since_image=0.1, seconds_active=30.0)
    return HealthSnapshot(**{**base, **kw})


def test_a_model_that_failed_to_load_is_an_error_with_the_reason():
    h = HealthMonitor().assess(_snapshot(state="unconfigured", model_loaded=False,
                                         load_error="corrupt or unreadable safetensors file x"))
    assert h.level == ERROR and h.message == "model failed to load: corrupt or unreadable safetensors file x"
    assert ("load_error", "corrupt or unreadable safetensors file x") in h.values
    assert ("model_loaded", "false") in h.values


def test_inactive_and_unconfigured_are_ok_and_say_they_take_no_frames():
    for state in ("unconfigured", "inactive"):
        h = HealthMonitor(frame_timeout_s=1.0).assess(_snapshot(state=state, seconds_since_image=99.0))
        assert h.level == OK and h.message == f"{state}: not taking frames"


def test_rising_drops_warn_once_with_the_last_reason():
    monitor = HealthMonitor()
    assert monitor.assess(_snapshot()).level == OK
    h = monitor.assess(_snapshot(dropped={"image": 2, "frame": 1}, last_drop="image: truncated"))
    assert h.level == WARN and h.message == "3 dropped since the last report (last: image: truncated)"
    values = dict(h.values)
    assert values["dropped.image"] == "2" and values["dropped.frame"] == "1"
    assert values["dropped_total"] == "3" and values["last_drop_reason"] == "image: truncated"
    assert monitor.assess(_snapshot(dropped={"image": 2, "frame": 1})).level == OK


def test_no_images_for_the_timeout_warns():
    monitor = HealthMonitor(frame_timeout_s=5.0)
    h = monitor.assess(_snapshot(seconds_since_image=6.0))
    assert h.level == WARN and h.message == "no image for 6.0 s"
    h = monitor.assess(_snapshot(seconds_since_image=None, seconds_active=7.0))
    assert h.level == WARN and h.message == "no image since activation 7.0 s ago"
    h = monitor.assess(_snapshot(seconds_since_image=None, seconds_active=1.0, busy=True))
    assert h.level == OK and h.message == "taking frames: 2/6 keyframes, reconstructing"


def test_every_key_is_reported():
    values = dict(HealthMonitor().assess(_snapshot(last_latency_s=1.23456, last_result="ok: pose")).values)
    assert values["last_reconstruction_latency_s"] == "1.235" and values["last_reconstruction"] == "ok: pose"
    assert {"state", "backend", "device", "busy", "keyframes", "max_keyframes", "images_received",
            "seconds_since_last_image"} <= set(values)


def test_input_timing_percentiles_over_a_bounded_window():
    from sparp_ros.health import InputTiming

    timing = InputTiming(window=100)
    assert timing.summary() == {}
    for ms in range(1, 201):                      # 1..200 ms; the window keeps 101..200
        timing.add("callback", ms / 1000)
    timing.add("image_latency", 0.012)
    summary = timing.summary()
    count, p50, p99, worst = summary["callback"]
    assert count == 200 and worst == 200.0
    assert p50 == 150.5 and 198.0 <= p99 <= 200.0
    assert summary["image_latency"] == (1, 12.0, 12.0, 12.0)
    values = dict(HealthMonitor().assess(_snapshot(timing=summary)).values)
    assert values["callback_count"] == "200" and values["callback_ms.p50"] == "150.50"
    assert values["image_latency_ms.max"] == "12.00" and "image_latency_ms.p99" in values
