"""benchmarks/pair_candidates.py: the rules that pick one of a pair's ICP candidates."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import pair_candidates  # noqa: E402

CANDIDATES = [dict(name="shape", score=0.80, image=0.20, turn_rad=np.pi),
              dict(name="close", score=0.75, image=0.95, turn_rad=0.1),
              dict(name="far", score=0.40, image=0.99, turn_rad=0.0)]


def test_the_score_alone_picks_the_best_shape():
    assert pair_candidates.chosen(CANDIDATES, 0.0, 0.0, None)["name"] == "shape"


def test_a_turn_penalty_or_an_image_weight_can_change_the_pick():
    assert pair_candidates.chosen(CANDIDATES, 1.0, 0.0, None)["name"] == "close"
    assert pair_candidates.chosen(CANDIDATES, 0.0, 0.5, None)["name"] == "close"
    assert pair_candidates.chosen(CANDIDATES, 0.0, 10.0, None)["name"] == "far"


def test_the_images_break_only_ties_within_the_given_margin():
    assert pair_candidates.chosen(CANDIDATES, 0.0, 0.0, 0.01)["name"] == "shape"
    assert pair_candidates.chosen(CANDIDATES, 0.0, 0.0, 0.1)["name"] == "close"
    assert pair_candidates.chosen(CANDIDATES, 0.0, 0.0, 0.5)["name"] == "far"
