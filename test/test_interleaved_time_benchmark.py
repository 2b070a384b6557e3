"""benchmarks/interleaved_time.py: another revision's registration swapped into the RGB-D stage."""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import interleaved_time  # noqa: E402


def test_a_revision_of_the_registration_is_swapped_in_and_back():
    import sparp_ros.geometry.measured as measured
    import sparp_ros.geometry.registration as current
    base = interleaved_time.load_revision("HEAD")
    assert base is not current and base.__name__ != current.__name__
    shipped = measured.place_unregistered
    assert shipped is current.place_unregistered
    with interleaved_time.registration_of(base) as names:
        assert "place_unregistered" in names and "register_views" in names
        assert measured.place_unregistered is base.place_unregistered
    assert measured.place_unregistered is shipped


def test_no_captures_is_said_not_crashed(tmp_path, capsys):
    assert interleaved_time.main([str(tmp_path), "--base", "HEAD"]) == 1
    assert "no captures" in capsys.readouterr().out
