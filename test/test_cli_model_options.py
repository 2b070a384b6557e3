"""`sparp-ros reconstruct|eval` model options: what the command line gives reaches PipelineConfig
by name, and what it leaves out keeps the pipeline's defaults."""
from __future__ import annotations

import pytest

from sparp_ros.cli import _model_options, build_parser
from sparp_ros.pipeline import PipelineConfig


def test_options_left_out_keep_the_pipelines_defaults():
    args = build_parser().parse_args(["eval", "captures", "--out", "report"])
    assert _model_options(args) == {}


def test_registration_options_reach_the_pipeline_config_by_name():
    args = build_parser().parse_args(["reconstruct", "capture", "--out", "out", "--registration-min-image-agreement",
                                      "0", "--no-registration-search-all-round",
                                      "--no-registration-light-turns",
                                      "--registration-min-print-matches", "0"])
    options = _model_options(args)
    assert options == {"registration_min_image_agreement": 0.0,
                       "registration_search_all_round": False,
                       "registration_light_turns": False,
                       "registration_min_print_matches": 0}
    config = PipelineConfig(backend="model", **options)
    assert config.registration_search_all_round is False and config.registration_light_turns is False
    assert config.registration_min_print_matches == 0
    default = PipelineConfig(backend="model")
    assert default.registration_search_all_round is True and default.registration_light_turns is True
    assert default.registration_min_print_matches == 15


def test_the_table_agreement_reaches_the_pipeline_config_and_stays_within_0_and_1(capsys):
    args = build_parser().parse_args(["eval", "captures", "--out", "report",
                                      "--registration-min-table-agreement", "0"])
    assert _model_options(args) == {"registration_min_table_agreement": 0.0}
    assert PipelineConfig(backend="model").registration_min_table_agreement == 0.5
    for bad in ("1.5", "-0.1"):
        with pytest.raises(SystemExit):
            build_parser().parse_args(["eval", "captures", "--out", "report",
                                       "--registration-min-table-agreement", bad])
        assert "must be in [0, 1]" in capsys.readouterr().err


@pytest.mark.parametrize("option, field", [("--model-threads", "model_threads"),
                                           ("--geometry-threads", "geometry_threads")])
def test_thread_counts_reach_the_pipeline_config_and_must_not_be_negative(capsys, option, field):
    args = build_parser().parse_args(["eval", "captures", "--out", "report", option, "0"])
    assert _model_options(args) == {field: 0}
    assert getattr(PipelineConfig(backend="model"), field) == 1
    with pytest.raises(SystemExit):
        build_parser().parse_args(["eval", "captures", "--out", "report", option, "-1"])
    assert "must be >= 0" in capsys.readouterr().err
