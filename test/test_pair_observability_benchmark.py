"""benchmarks/pair_observability.py: views joined by the pairs their surfaces could register at
the truth, and each pair's class (measured, symmetric, across groups)."""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import pair_observability  # noqa: E402


def test_views_join_into_groups_through_chains_of_links():
    groups = pair_observability.trust_groups(5, [(0, 3), (3, 4), (1, 2)])
    assert groups == [{0, 3, 4}, {1, 2}]
    assert pair_observability.trust_groups(3, []) == [{0}, {1}, {2}]
    assert pair_observability.trust_groups(2, [(0, 1), (1, 0)]) == [{0, 1}]


def test_a_pair_is_measured_only_within_a_group_of_an_object_without_turn_symmetry():
    groups = [{0, 3}, {1, 2}]
    assert pair_observability.pair_class(0, 3, groups, symmetric=False) == "measured"
    assert pair_observability.pair_class(0, 3, groups, symmetric=True) == "symmetric"
    assert pair_observability.pair_class(0, 1, groups, symmetric=False) == "across"
    assert pair_observability.pair_class(2, 3, groups, symmetric=True) == "across"


def test_only_turns_beyond_the_failure_angle_count_as_a_symmetry():
    assert not pair_observability.turn_symmetric(())
    assert not pair_observability.turn_symmetric((5, 355))
    assert pair_observability.turn_symmetric((5, 180, 355))
    assert pair_observability.turn_symmetric(range(5, 360, 5))


def test_views_that_share_surface_are_measured_and_the_opposite_view_is_across(objects_dir):
    """Three views of the bull: two 40° apart share most of their surface (one group, a
    ``measured`` pair); the third, from the other side, shares too little with either even at
    the true pose, so both its pairs are ``across``. The bull has no turn symmetry."""
    from sparp_ros.geometry.measured import measured_views, registration_views
    from sparp_ros.geometry.registration import RegistrationParams
    from sparp_ros.render import render_capture
    capture = render_capture(objects_dir / "Schleich_Hereford_Bull.glb", views=3, seed=2,
                             azimuths_deg=[0.0, 40.0, 200.0], elevations_deg=[20.0, 25.0, 5.0])
    views = registration_views(capture.frames, measured_views(capture.frames))
    params = RegistrationParams(voxel=0.003, object_size=capture.gt.extra["canonical"]["diagonal"])
    groups, symmetric, classes = pair_observability.classify_pairs(capture, views, params)
    assert not symmetric
    assert groups == [{0, 1}, {2}]
    assert classes == {(0, 1): "measured", (0, 2): "across", (1, 2): "across"}
