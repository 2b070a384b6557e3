"""tf2_ros behind the node's TF interface, and the choice of TF implementation.

``tf_implementation`` (a node parameter) picks what reads ``/tf`` and ``/tf_static`` when
``world_frame`` is set: ``tf2_ros`` (tf2_ros's ``Buffer`` and ``TransformListener``, wrapped in
:class:`Tf2Buffer`), ``builtin`` (``tf_buffer.TransformBuffer`` filled by
``tf_listener.TransformListener``, for the pip-wheel install, which has no tf2_ros), or ``auto``
(the default): tf2_ros when ``import tf2_ros`` works, else builtin. :func:`choose_tf_implementation`
decides and says why; asking for ``tf2_ros`` where it is not importable is a
:class:`TfImplementationError` (a ValueError: configuring the node fails with the reason).

:class:`Tf2Buffer` answers in the terms of ``TransformBuffer`` — the methods the node uses
(``lookup``, ``can_transform``, ``wait_for``), times in seconds (None: the latest), a 4x4
``T_target_source`` (``messages.transform_to_matrix`` of tf2's ``TransformStamped``), and
TransformBuffer's errors: tf2's ``LookupException`` → ``FrameNotFoundError``,
``ConnectivityException`` → ``ConnectivityError``, ``ExtrapolationException`` →
``ExtrapolationError`` (``future`` when the time is after the newest data), any other
``TransformException`` → ``TransformError``. So the rest of the node does not know which runs.

Times: seconds ``t`` → ``rclpy.time.Time.from_msg(messages.seconds_to_stamp(t))``; None →
``rclpy.time.Time()`` (tf2's "latest"). A float holds a stamp of ~1.7e9 s only to ~0.24 µs,
while tf2 answers at its newest (or only) sample of an edge only at exactly that sample's stamp:
a camera pose published at the image stamp, looked up as soon as it arrives, would fail by a few
hundred nanoseconds. So a lookup at ``t`` first asks tf2 for the latest data and answers with it
when its stamp converts to the same float (or is at most ``tolerance_s`` older): what
``TransformBuffer``, which keys its samples by that float, answers. ``tolerance_s`` applies on
that side only (tf2 offers no query for the oldest data; the node passes none).
"""
from __future__ import annotations

import time as _time
from typing import Any

import numpy as np
from rclpy.duration import Duration
from rclpy.time import Time

from . import messages
from .params import TF_IMPLEMENTATIONS
from ..tf_buffer import (ConnectivityError, ExtrapolationError, FrameNotFoundError, TransformError,
                         TransformLookups)

POLL_S = 0.02
"""``wait_for`` asks again this often (tf2_ros's own ``can_transform`` sleeps as long)."""
NO_WAIT = Duration()
"""tf2's zero timeout: answer from what the buffer holds now."""


class TfImplementationError(ValueError):
    """``tf_implementation`` asks for what this install cannot run (tf2_ros not importable)."""


def tf2_ros_import_error() -> str | None:
    """None when ``import tf2_ros`` works; else why it does not."""
    try:
        import tf2_ros  # noqa: F401
    except Exception as exc:  # noqa: BLE001 - a broken install too: auto falls back, says why
        return f"{type(exc).__name__}: {exc}"
    return None


def choose_tf_implementation(requested: str, import_error: str | None) -> tuple[str, str]:
    """``('tf2_ros' | 'builtin', why)`` for ``tf_implementation=requested``; ``import_error`` is
    :func:`tf2_ros_import_error`'s answer. Raises :class:`TfImplementationError` for ``tf2_ros``
    when it is not importable (and for a value that is not one of TF_IMPLEMENTATIONS)."""
    if requested == "builtin":
        return "builtin", "tf_implementation=builtin"
    if requested == "tf2_ros":
        if import_error is not None:
            raise TfImplementationError(
                f"tf_implementation=tf2_ros but tf2_ros is not importable ({import_error}): "
                "source a ROS 2 install that has tf2_ros, or set tf_implementation to auto or "
                "builtin (this package's TF buffer)")
        return "tf2_ros", "tf_implementation=tf2_ros"
    if requested == "auto":
        if import_error is None:
            return "tf2_ros", "tf_implementation=auto and tf2_ros is importable"
        return "builtin", (f"tf_implementation=auto and tf2_ros is not importable ({import_error}; "
                           "the pip-wheel install has none)")
    raise TfImplementationError(f"tf_implementation must be one of {TF_IMPLEMENTATIONS}, "
                                f"got {requested!r}")


def _tf2_error_classes() -> tuple[tuple[type, type], ...]:
    """(tf2's exception, ours), most specific first; empty without tf2_ros."""
    try:
        import tf2_ros
    except Exception:  # noqa: BLE001 - nothing of tf2's can be raised then
        return ()
    return ((tf2_ros.LookupException, FrameNotFoundError),
            (tf2_ros.ConnectivityException, ConnectivityError),
            (tf2_ros.ExtrapolationException, ExtrapolationError),
            (tf2_ros.TransformException, TransformError))


def _frame(frame: str) -> str:
    """As ``TransformBuffer`` takes it: without leading or trailing slashes (tf2 refuses them)."""
    return str(frame).strip("/")


class Tf2Buffer(TransformLookups):
    """A ``tf2_ros.Buffer`` (``buffer``) that answers like ``tf_buffer.TransformBuffer`` (see the
    module docstring). ``listener`` (the ``tf2_ros.TransformListener`` filling it) is held here:
    tf2_ros's listener destroys its subscriptions when it is garbage-collected."""

    def __init__(self, buffer: Any, listener: Any = None):
        self.buffer = buffer
        self.listener = listener
        self._errors = _tf2_error_classes()

    def _lookup_msg(self, target: str, source: str, when: Time):
        """tf2's ``TransformStamped`` (target ← source) at ``when``; its errors as ours."""
        try:
            return self.buffer.lookup_transform(target, source, when, timeout=NO_WAIT)
        except Exception as exc:
            for tf2_class, ours in self._errors:
                if isinstance(exc, tf2_class):
                    if ours is ExtrapolationError:
                        raise ExtrapolationError(str(exc), future=True) from exc
                    raise ours(str(exc)) from exc
            raise

    def lookup(self, target: str, source: str, time: float | None = None,
               tolerance_s: float = 0.0) -> np.ndarray:
        """``T_target_source`` (4x4) at ``time`` (seconds; None = tf2's latest). Raises a
        ``TransformError``."""
        target, source = _frame(target), _frame(source)
        if time is None:
            return messages.transform_to_matrix(self._lookup_msg(target, source, Time()))
        time = float(time)
        newest = None
        try:
            latest = self._lookup_msg(target, source, Time())
        except TransformError:
            latest = None
        if latest is not None:
            newest = messages.stamp_to_seconds(latest.header.stamp)
            if newest == time or 0.0 <= time - newest <= tolerance_s:
                return messages.transform_to_matrix(latest)
        try:
            msg = self._lookup_msg(target, source, Time.from_msg(messages.seconds_to_stamp(time)))
        except ExtrapolationError as exc:
            raise ExtrapolationError(str(exc), future=newest is None or time > newest) from exc
        return messages.transform_to_matrix(msg)

    def _pause(self, seconds: float) -> None:
        _time.sleep(min(seconds, POLL_S))     # tf2's buffer has no "changed" signal to wait on


def create_tf2_buffer(node: Any) -> Tf2Buffer:
    """``tf2_ros.Buffer`` + ``tf2_ros.TransformListener(buffer, node)`` with the QoS of
    ``tf_listener`` (tf2_ros's defaults: ``/tf`` volatile, ``/tf_static`` transient local, depth
    100); the listener's subscriptions (``tf_sub``, ``tf_static_sub``, in its own reentrant
    group) run on the node's executor, no thread of their own. Raises ImportError without
    tf2_ros."""
    import tf2_ros

    from .tf_listener import TF_LISTENER_QOS, TF_STATIC_QOS

    buffer = tf2_ros.Buffer()
    listener = tf2_ros.TransformListener(buffer, node, spin_thread=False, qos=TF_LISTENER_QOS,
                                         static_qos=TF_STATIC_QOS)
    return Tf2Buffer(buffer, listener)


__all__ = ["Tf2Buffer", "TfImplementationError", "choose_tf_implementation", "create_tf2_buffer",
           "tf2_ros_import_error"]
