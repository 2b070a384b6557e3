"""Matching things seen now to things known: the Hungarian assignment with a gate, and the
frame-by-frame linking of a capture's per-view detections into objects.

Why one module: depth segmentation, learned segmentation and the node's object tracker all match
by a cost with "cannot be the same" as a large value; each had its own copy of the loop.
"""
from __future__ import annotations

from typing import Callable, Sequence, TypeVar

import numpy as np
from scipy.optimize import linear_sum_assignment

Item = TypeVar("Item")


def gated_assignment(cost: np.ndarray, unmatched_cost: float) -> list[tuple[int, int]]:
    """The (row, column) pairs of the minimum-cost assignment (scipy's Hungarian solver) whose
    cost is below ``unmatched_cost``: a pair at or above it is no match, not a forced one."""
    cost = np.asarray(cost, dtype=np.float64)
    if cost.size == 0:
        return []
    return [(int(r), int(c)) for r, c in zip(*linear_sum_assignment(cost))
            if cost[r, c] < unmatched_cost]


def link_across_views(per_view: Sequence[Sequence[Item]],
                      cost: Callable[[dict[int, Item], Item], float],
                      unmatched_cost: float) -> list[dict[int, Item]]:
    """Tracks ``{view index: item}`` from each view's items, view by view: an item joins the
    track it matches (``cost(track, item)``, Hungarian, gated by ``unmatched_cost``) or starts a
    new one. Tracks are in the order they were started; within a view the items' order decides
    which starts first."""
    tracks: list[dict[int, Item]] = []
    for i, items in enumerate(per_view):
        matrix = np.array([[cost(t, o) for o in items] for t in tracks])
        taken = set()
        for r, c in gated_assignment(matrix, unmatched_cost):
            tracks[r][i] = items[c]
            taken.add(c)
        tracks += [{i: o} for c, o in enumerate(items) if c not in taken]
    return tracks


__all__ = ["gated_assignment", "link_across_views"]
