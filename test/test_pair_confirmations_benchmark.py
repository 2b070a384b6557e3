"""benchmarks/pair_confirmations.py: each registered pair counted by what confirmed it."""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import pair_confirmations  # noqa: E402


def test_a_pair_is_classed_by_what_confirmed_it():
    classed = pair_confirmations.pair_class
    assert classed(True, True, True, True) == "table"             # the table ranks first
    assert classed(False, False, True, False) == "print"          # even where untrusted
    assert classed(True, False, False, True) == "images"
    assert classed(False, False, False, True) == "untrusted"
    assert classed(True, False, False, False) == "surfaces"


def test_the_summary_counts_right_pairs_per_class():
    out = pair_confirmations.summary([("images", True), ("images", False), ("print", True)])
    assert out["images"] == {"pairs": 2, "right": 1}
    assert out["print"] == {"pairs": 1, "right": 1}
    assert out["table"] == {"pairs": 0, "right": 0}
