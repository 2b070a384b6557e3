"""The captures a diagnostic against the truth can use: each with depth, masks and true poses
on every frame (NOCS not loaded). Shared by ``light_pairs.py`` and ``print_pairs.py``."""
from __future__ import annotations

from collections.abc import Iterator, Sequence


def posed_rgbd_captures(paths: Sequence[str]) -> Iterator[tuple]:
    """(capture folder, capture) for every capture under ``paths`` that has depth and masks on
    every frame and true poses; the others are skipped with a line saying so."""
    from sparp_ros.capture import load_capture
    from sparp_ros.evaluation.run import expand_capture_dirs
    for root in expand_capture_dirs(paths):
        capture = load_capture(root, with_nocs=False)
        if capture.gt is None or any(f.depth is None or f.mask is None for f in capture.frames):
            print(f"{root.name}: skipped (needs depth, masks and true poses)")
            continue
        yield root, capture
