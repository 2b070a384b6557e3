"""The node's process: command-line flags, which node to make, and spinning until Ctrl-C / SIGTERM
with an orderly stop (the ``sparp_node`` executable and ``sparp-ros node``).

Why apart from ``node``: the lifecycle node builds on the plain node's core, and choosing between
the two belongs to neither; here both are imported, so ``node`` and ``lifecycle_node`` do not
import each other.
"""
from __future__ import annotations

import argparse
import faulthandler
import signal
import sys
import threading
from typing import Any

import rclpy
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor, ShutdownException
from rclpy.node import Node

from .node import EXECUTOR_THREADS, NODE_NAME, SHUTDOWN_GRACE_S, SPIN_PERIOD_S, SparpNode, SparpNodeCore


def _ros_argv(argv: list[str]) -> list[str]:
    """``--params-file FILE`` before any ``--ros-args`` becomes ``--ros-args --params-file FILE``,
    so ``sparp-ros node --params-file config/sparp.yaml`` works without ``ros2 run``."""
    out: list[str] = []
    i = 0
    while i < len(argv):
        if argv[i] == "--ros-args":
            return out + argv[i:]
        if argv[i] == "--params-file" and i + 1 < len(argv):
            out += ["--ros-args", "--params-file", argv[i + 1], "--"]
            i += 2
            continue
        out.append(argv[i])
        i += 1
    return out


def _node_options(args: list[str]) -> argparse.Namespace:
    """The node's own command-line flags (those outside ``--ros-args``)."""
    from rclpy.utilities import remove_ros_args

    parser = argparse.ArgumentParser(prog=NODE_NAME, add_help=False)
    parser.add_argument("--lifecycle", action="store_true",
                        help="run the managed (lifecycle) node, which starts unconfigured")
    parser.add_argument("--autostart", action="store_true",
                        help="with --lifecycle: configure and activate at start-up")
    return parser.parse_known_args(remove_ros_args(args))[0]


def make_node(lifecycle: bool = False, autostart: bool = False, **kwargs: Any) -> Node:
    """The plain node, or the lifecycle node (configured and activated now with ``autostart``;
    if configuring fails it stays unconfigured and says why on /diagnostics)."""
    if not lifecycle:
        return SparpNode(**kwargs)
    from rclpy.lifecycle import TransitionCallbackReturn

    from .lifecycle_node import SparpLifecycleNode

    node = SparpLifecycleNode(**kwargs)
    if autostart and node.trigger_configure() == TransitionCallbackReturn.SUCCESS:
        node.trigger_activate()
    return node


def main(argv: list[str] | None = None) -> int:
    """Run the node until Ctrl-C, SIGTERM or an external shutdown (like the rclpy examples), then
    stop in order (``_spin``). ``--lifecycle`` runs the managed node (``--autostart``: configured
    and activated at once)."""
    from rclpy.exceptions import ParameterException
    from rclpy.signals import SignalHandlerOptions

    args = _ros_argv(list(sys.argv if argv is None else argv))
    options = _node_options(args)
    if hasattr(signal, "SIGUSR1"):     # `kill -USR1 <pid>`: every thread's stack on stderr, to see
        faulthandler.register(signal.SIGUSR1, all_threads=True)   # where a node hangs
    # rclpy's own signal handlers shut the context down at once, under a running reconstruction
    # (its answer and its log lines to /rosout then fail): Ctrl-C and SIGTERM raise
    # KeyboardInterrupt in this thread instead, and _spin stops the node in order.
    rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    node = None
    try:
        node = make_node(options.lifecycle, options.autostart)
        _spin(node)
    except KeyboardInterrupt:          # while the model loads
        pass
    except (ValueError, ParameterException) as exc:    # PipelineError, bad parameter values
        print(f"{NODE_NAME}: {exc}", file=sys.stderr)
        return 1
    finally:
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
    return 0


def _spin(node: SparpNodeCore) -> None:
    """Spin ``node`` on a MultiThreadedExecutor (in a thread) until Ctrl-C / SIGTERM arrives here
    or the context is shut down; then: refuse new reconstructions and let a running one answer its
    caller (``finish_reconstruction``; a second Ctrl-C skips that), stop spinning, and wait for the
    executor's threads, so nothing is scheduled on a stopped executor."""
    executor = MultiThreadedExecutor(num_threads=EXECUTOR_THREADS)
    executor.add_node(node)
    stop = threading.Event()
    spinner = threading.Thread(target=_spin_until, args=(executor, stop), name="spin", daemon=True)
    spinner.start()
    try:
        while spinner.is_alive():               # an external shutdown ends the spinning
            spinner.join(timeout=SPIN_PERIOD_S)
    except KeyboardInterrupt:
        try:
            node.finish_reconstruction(SHUTDOWN_GRACE_S)
        except KeyboardInterrupt:              # a second Ctrl-C: do not wait
            pass
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):   # the rest is short: let it end cleanly
            signal.signal(signum, signal.SIG_IGN)
        stop.set()
        spinner.join()
        executor.shutdown(timeout_sec=SHUTDOWN_GRACE_S)


def _spin_until(executor: MultiThreadedExecutor, stop: threading.Event) -> None:
    try:
        while not stop.is_set():
            executor.spin_once(timeout_sec=SPIN_PERIOD_S)
    except (ExternalShutdownException, ShutdownException):
        pass


if __name__ == "__main__":
    sys.exit(main())
