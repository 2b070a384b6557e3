"""Screened Poisson in a long-lived child process, so that a native crash there is an error, not
the end of the caller.

Why: the ROS node runs reconstructions in a worker thread while executor threads keep taking
30 Hz images, and a 10 000-frame soak run once died with SIGSEGV during a reconstruction (not
reproduced in 3 later runs). The prime suspect is open3d's OpenMP screened Poisson
(``mesh.poisson_mesh``) running off the main thread beside DDS and torch threads. Whatever the
root cause, the mesh is an optional stage and must never take a robot's node down: here it runs in
one child process, so a segfault, an abort or an out-of-memory kill there becomes a ``MeshError``
("the surface process died ...") while the pose is still published, and the next call starts a
fresh child.

The child is started with ``spawn`` (not ``fork``: the parent has DDS and torch threads, whose
locks a forked child would inherit held), lazily on first use or by ``warm_up``, and reused across
calls (spawning and importing open3d takes 1-3 s). Calls queue in that one process; each has a
timeout after which the child is killed. ROS-free.

Errors (all ``MeshError``, the mesh stage's boundary error): the child died (exit code and signal
in the message), the call timed out, or ``poisson_mesh`` itself refused the points (its message,
unchanged). Other exceptions raised in the child (a bug, a missing module) are re-raised as they
are, as they would be in process.
"""
from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeoutError
from concurrent.futures.process import BrokenProcessPool
from multiprocessing.connection import wait as wait_for_sentinels
from typing import Any, Callable

import numpy as np

from .mesh import FusedPoints, MeshError, poisson_mesh

DEFAULT_TIMEOUT_S = 60.0
"""Per call; the pipeline's Poisson surface (60 000 points, depth 7) takes 1-3 s on 2 CPUs."""
CLOSE_TIMEOUT_S = 5.0
"""``close`` lets a running call finish this long before it kills the child."""
EXIT_CODE_WAIT_S = 2.0
"""How long a dead child's exit code is waited for (the pool's manager thread reaps it)."""


def poisson_arrays(points: np.ndarray, colors: np.ndarray, view_centers: np.ndarray,
                   **kwargs: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``poisson_mesh`` with arrays in and out (what crosses the process boundary): fused points,
    their uint8 colours and view centres in; the mesh's vertices (Vx3 float), faces (Fx3 int) and
    vertex colours (Vx4 uint8 RGBA) out. ``kwargs`` go to ``poisson_mesh``."""
    from ..memory import release_freed_memory
    try:
        mesh = poisson_mesh(FusedPoints(points, colors, view_centers), **kwargs)
        return (np.asarray(mesh.vertices), np.asarray(mesh.faces),
                np.asarray(mesh.visual.vertex_colors))
    finally:
        release_freed_memory()      # the long-lived child gives freed heap back, as the node does


def _init_child() -> None:
    """Ctrl-C in a terminal reaches the whole process group: the parent decides when the child
    stops (``close``), so the child ignores SIGINT instead of dying with a traceback."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _warm_child() -> int:
    """Import what ``poisson_mesh`` needs (open3d is most of the start-up time); the child's pid."""
    import open3d  # noqa: F401
    import scipy.spatial  # noqa: F401
    import trimesh  # noqa: F401
    return os.getpid()


class SurfaceWorker:
    """One child process for ``poisson_mesh`` (see the module docstring).

    ``worker.poisson_mesh(fused, depth=7)`` is ``mesh.poisson_mesh(fused, depth=7)`` run in the
    child; ``run(fn, *args)`` runs any picklable module-level callable there (tests use it to
    crash the child). Thread-safe; ``close()`` (idempotent) or a ``with`` block stops the child.
    """

    def __init__(self, timeout_s: float = DEFAULT_TIMEOUT_S):
        if not timeout_s > 0:
            raise ValueError(f"timeout_s must be > 0, got {timeout_s}")
        self.timeout_s = float(timeout_s)
        self.restarts = 0                 # children replaced after a crash or a timeout
        self._lock = threading.Lock()     # guards _pool / _process
        self._pool: ProcessPoolExecutor | None = None
        self._process: multiprocessing.process.BaseProcess | None = None

    # -- public --------------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        """Whether a child process is up (started and not stopped or dead)."""
        with self._lock:
            return self._process is not None and self._process.exitcode is None

    def warm_up(self, wait: bool = True) -> Future | None:
        """Start the child and import open3d there, so the first mesh does not pay for it.
        ``wait=False`` returns at once (the import runs in the child; a call made meanwhile queues
        behind it) with the warm-up's future; its errors show again at the next call."""
        if not wait:
            return self._submit(_warm_child)[0]
        self.run(_warm_child)
        return None

    def poisson_mesh(self, fused: FusedPoints, timeout_s: float | None = None, **kwargs: Any):
        """``mesh.poisson_mesh(fused, **kwargs)`` in the child, as a ``trimesh.Trimesh`` with
        vertex colours. Raises ``MeshError`` (see the module docstring)."""
        import trimesh

        V, F, C = self.run(poisson_arrays, np.asarray(fused.points), np.asarray(fused.colors),
                           np.asarray(fused.view_centers), timeout_s=timeout_s, **kwargs)
        return trimesh.Trimesh(vertices=V, faces=F, vertex_colors=C, process=False)

    def run(self, fn: Callable[..., Any], *args: Any, timeout_s: float | None = None,
            **kwargs: Any) -> Any:
        """``fn(*args, **kwargs)`` in the child (``fn`` and its arguments must pickle: a
        module-level function). The child's ``MeshError`` and other exceptions are re-raised
        here; a dead child or one still busy after ``timeout_s`` (default ``self.timeout_s``)
        raises ``MeshError``, and the next call starts a fresh one."""
        timeout = self.timeout_s if timeout_s is None else float(timeout_s)
        future, pool, process = self._submit(fn, *args, **kwargs)
        try:
            return future.result(timeout=timeout)
        except BrokenProcessPool:
            code = _exit_code(process)
            self._discard(pool, process)
            raise MeshError(f"the surface process died (exit code {_describe(code)}); "
                            "the pose is unaffected") from None
        except FutureTimeoutError:
            self._discard(pool, process, kill=True)
            raise MeshError(f"the surface took longer than {timeout:g} s: its process was "
                            "stopped; the pose is unaffected") from None

    def close(self) -> None:
        """Stop the child: a running call gets ``CLOSE_TIMEOUT_S`` to finish, then it is killed.
        Safe to call twice; a later call starts a new child."""
        with self._lock:
            pool, process = self._pool, self._process
            self._pool = self._process = None
        if pool is None:
            return
        pool.shutdown(wait=False, cancel_futures=True)
        if process is not None and not wait_for_sentinels([process.sentinel], CLOSE_TIMEOUT_S):
            process.kill()          # still running: the sentinel is not ready, so not reaped yet

    def __enter__(self) -> "SurfaceWorker":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the pool ------------------------------------------------------------------------------
    def _submit(self, fn: Callable[..., Any], *args: Any, **kwargs: Any):
        """Submit to the child, starting one when there is none or the last one died between
        calls; (future, pool, process)."""
        with self._lock:
            for attempt in (0, 1):
                if self._pool is None:
                    self._pool = ProcessPoolExecutor(
                        max_workers=1, mp_context=multiprocessing.get_context("spawn"),
                        initializer=_init_child)
                    self._process = None
                try:
                    future = self._pool.submit(fn, *args, **kwargs)
                except BrokenProcessPool:       # died while idle (e.g. killed for memory)
                    if attempt:
                        raise
                    self._pool.shutdown(wait=False, cancel_futures=True)
                    self._pool = self._process = None
                    self.restarts += 1
                    continue
                if self._process is None:
                    # The pool spawns its one process in the first submit; keep it to read its
                    # exit code after a crash and to kill it after a timeout (no public API).
                    self._process = next(iter(getattr(self._pool, "_processes", {}).values()), None)
                return future, self._pool, self._process
        raise AssertionError("unreachable")

    def _discard(self, pool: ProcessPoolExecutor,
                 process: multiprocessing.process.BaseProcess | None, kill: bool = False) -> None:
        """Drop a broken or stuck child (killed with ``kill``); the next call starts a new one."""
        with self._lock:
            if self._pool is pool:
                self._pool = self._process = None
                self.restarts += 1
        if kill and process is not None and not wait_for_sentinels([process.sentinel], 0):
            process.kill()
        pool.shutdown(wait=False, cancel_futures=True)


def _exit_code(process: multiprocessing.process.BaseProcess | None) -> int | None:
    """The dead child's exit code (negative: the signal), once the pool has reaped it."""
    if process is None:
        return None
    deadline = time.monotonic() + EXIT_CODE_WAIT_S
    while process.exitcode is None and time.monotonic() < deadline:
        process.join(0.05)
    return process.exitcode


def _describe(code: int | None) -> str:
    if code is None:
        return "unknown"
    if code < 0:
        try:
            return f"{code}, {signal.Signals(-code).name}"
        except ValueError:
            return str(code)
    return str(code)


__all__ = ["DEFAULT_TIMEOUT_S", "SurfaceWorker", "poisson_arrays"]
