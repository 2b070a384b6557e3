"""The gated Hungarian assignment and the linking of per-view items into tracks."""
from __future__ import annotations

import numpy as np

from sparp_ros.assignment import gated_assignment, link_across_views

NO = 1e6


def test_gated_assignment_takes_the_cheapest_pairs_and_drops_the_gated() -> None:
    cost = np.array([[1.0, 5.0, NO],
                     [2.0, 1.5, NO]])
    # row 0 -> col 0 (1.0) and row 1 -> col 1 (1.5) beat row 0 -> col 1 + row 1 -> col 0 (7.0)
    assert gated_assignment(cost, NO) == [(0, 0), (1, 1)]
    assert gated_assignment(np.array([[NO, NO]]), NO) == []          # no forced match
    assert gated_assignment(np.zeros((0, 3)), NO) == []


def test_items_join_their_track_or_start_a_new_one() -> None:
    """Numbers as items, the same object when within 0.5: 10 and 20 seen in view 0; view 1 sees
    20.2, 35 and 10.1 (a new object 35); view 2 sees only 34.8."""
    def cost(track: dict[int, float], item: float) -> float:
        last = track[max(track)]
        return abs(last - item) if abs(last - item) < 0.5 else NO

    tracks = link_across_views([[10.0, 20.0], [20.2, 35.0, 10.1], [34.8]], cost, NO)
    assert tracks == [{0: 10.0, 1: 10.1}, {0: 20.0, 1: 20.2}, {1: 35.0, 2: 34.8}]
    assert link_across_views([[], []], cost, NO) == []
