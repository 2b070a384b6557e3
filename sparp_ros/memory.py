"""Give freed heap memory back to the operating system after a reconstruction.

A reconstruction allocates a few hundred MiB (crops, NOCS, point clouds, Poisson grids) in worker
threads. glibc keeps freed memory in per-thread arenas, so a node that reconstructs every few
seconds grew by ~1 GiB/h in the soak benchmark (benchmarks/soak.md) although Python itself did not
leak; ``malloc_trim(0)`` after each reconstruction kept it flat. Elsewhere (musl, macOS) this is a
no-op.
"""
from __future__ import annotations

import ctypes
import ctypes.util
from functools import lru_cache

__all__ = ["release_freed_memory"]


@lru_cache(maxsize=1)
def _malloc_trim():
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim = libc.malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim


def release_freed_memory() -> bool:
    """Return free heap pages to the OS; True when the C library did (glibc ``malloc_trim``)."""
    trim = _malloc_trim()
    return bool(trim(0)) if trim is not None else False
