"""benchmarks/table_pairs.py: each registered pair counted by what the table said of it."""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import table_pairs  # noqa: E402


def test_a_pair_is_classed_by_its_tables():
    assert table_pairs.pair_class(False, False) == "no tables"
    assert table_pairs.pair_class(True, False) == "not confirmed"
    assert table_pairs.pair_class(True, True) == "confirmed"


def test_the_summary_counts_right_and_trusted_pairs_per_class():
    rows = [("confirmed", True, True), ("confirmed", False, True), ("confirmed", True, False),
            ("no tables", False, False)]
    out = table_pairs.summary(rows)
    assert out["confirmed"] == {"pairs": 3, "right": 2, "trusted": 2, "trusted_right": 1}
    assert out["no tables"] == {"pairs": 1, "right": 0, "trusted": 0, "trusted_right": 0}
    assert out["not confirmed"]["pairs"] == 0
