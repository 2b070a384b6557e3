"""benchmarks/light_pairs.py: pairs of views' lights compared at the true poses."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import light_pairs  # noqa: E402

from sparp_ros.conventions import unit_direction  # noqa: E402


def test_pairs_give_the_angle_and_the_turn_between_their_lights():
    a = unit_direction(np.radians(10.0), np.radians(30.0))
    b = unit_direction(np.radians(40.0), np.radians(30.0))
    rows = light_pairs.pair_errors([a, None, b])
    assert len(rows) == 1
    i, j, angle, turn, off_axis = rows[0]
    assert (i, j) == (0, 2)
    assert turn == pytest.approx(-30.0)
    assert off_axis == pytest.approx(np.cos(np.radians(30.0)))
    assert 0 < angle < 30.0                      # off the equator, a turn moves the light less


def test_the_summary_counts_turns_within_the_tolerance_and_pairs_near_the_axis():
    rows = [(0, 1, 3.0, 5.0, 0.8), (0, 2, 9.0, -20.0, 0.6), (1, 2, 4.0, 40.0, 0.1)]
    s = light_pairs.summary(rows, min_horizontal=0.25, tolerance_deg=15.0)
    assert s == {"pairs": 2, "within": 1, "median_turn_deg": 12.5, "max_turn_deg": 20.0,
                 "near_axis": 1}
    assert light_pairs.summary([], 0.25, 15.0)["median_turn_deg"] is None
