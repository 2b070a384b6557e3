"""benchmarks/print_pairs.py: the print's placements compared with the truth."""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import print_pairs  # noqa: E402


def test_the_summary_counts_placements_within_the_bound():
    s = print_pairs.summary([1.0, 3.0, 120.0, 14.9])
    assert s == {"pairs": 4, "within": 3, "median_deg": 8.95}
    assert print_pairs.summary([]) == {"pairs": 0, "within": 0, "median_deg": None}
