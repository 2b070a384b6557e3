"""Which node parameters may change at run time, and when (ROS-free: sparp_ros.ros.params)."""
from __future__ import annotations

import pytest

from sparp_ros.ros.params import (DEFAULTS, FLOATS, INPUT, LIVE, MODEL, PARAMETERS, RANGES,
                                   check_value, coerce, object_frame, refusal)


def test_every_parameter_is_of_exactly_one_kind_and_its_default_is_valid():
    assert LIVE | INPUT | MODEL == set(PARAMETERS)
    assert not (LIVE & INPUT or LIVE & MODEL or INPUT & MODEL)
    assert all(check_value(name, value) is None for name, value in DEFAULTS.items())


@pytest.mark.parametrize("name, value, reason", [
    ("max_keyframes", 0, "max_keyframes must be in 1..6, got 0"),
    ("max_keyframes", 7, "max_keyframes must be in 1..6, got 7"),
    ("size_prior_m", 0.0, "size_prior_m must be > 0, got 0.0"),
    ("min_image_change", -0.1, "min_image_change must be >= 0, got -0.1"),
    ("diagnostics_period_s", -1.0, "diagnostics_period_s must be > 0, got -1.0"),
    ("size_prior_m", 12.0, "size_prior_m must be in 0.0..10.0, got 12.0"),
])
def test_values_out_of_range_are_refused_in_every_state(name, value, reason):
    assert check_value(name, value) == reason
    for state in ("unconfigured", "inactive", "active"):
        assert refusal(name, value, state, managed=True) == reason


def test_the_plain_node_takes_live_changes_only():
    assert refusal("min_sharpness", 1e-3, "active", managed=False) is None
    assert "restart the node" in refusal("use_mask", False, "active", managed=False)
    assert "restart the node" in refusal("weights", "/w", "active", managed=False)


def test_the_lifecycle_node_takes_input_changes_while_inactive_and_model_ones_while_unconfigured():
    assert "deactivate the node first" in refusal("compressed_input", True, "active", managed=True)
    assert refusal("compressed_input", True, "inactive", managed=True) is None
    for state in ("active", "inactive"):
        assert "clean up the node first" in refusal("device", "cuda", state, managed=True)
    assert refusal("device", "cuda", "unconfigured", managed=True) is None


def test_parameters_that_are_not_ours_are_not_judged():
    assert refusal("use_sim_time", True, "active", managed=False) is None


def test_every_number_has_a_range_that_holds_its_default():
    numbers = {n for n, v in DEFAULTS.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    assert set(RANGES) == numbers
    assert all(RANGES[n][0] <= DEFAULTS[n] <= RANGES[n][1] for n in numbers)
    assert FLOATS == {n for n in numbers if isinstance(DEFAULTS[n], float)}


def test_a_float_parameter_takes_an_integer():
    assert coerce("size_prior_m", 1) == 1.0 and isinstance(coerce("size_prior_m", 1), float)
    assert coerce("max_keyframes", 3) == 3 and isinstance(coerce("max_keyframes", 3), int)
    assert coerce("refine", True) is True and coerce("size_prior_m", "x") == "x"
    assert coerce("use_sim_time", 1) == 1


def test_the_object_frame_carries_the_namespace():
    assert object_frame("/", "sparp_object") == "sparp_object"
    assert object_frame("/arm1", "mug") == "arm1/mug"
    assert object_frame("/robot/arm1", "mug") == "robot/arm1/mug"
