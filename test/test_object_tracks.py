"""Object ids across triggers: kept by position (Hungarian, size-relative gate), fresh and
never reused until reset, limited to max_objects with a reason."""
from __future__ import annotations

import numpy as np
import pytest

from sparp_ros.object_tracks import ObjectTracker, ObservedObject, TrackParams


def _objs(*centres, size: float = 0.1) -> list[ObservedObject]:
    return [ObservedObject(np.array(c, float), size, data=k) for k, c in enumerate(centres)]


def test_ids_follow_the_objects_not_the_input_order() -> None:
    tracker = ObjectTracker()
    first = tracker.update(_objs([0, 0, 0.05], [0.3, 0, 0.05], [0, 0.3, 0.05]), "world")
    assert first.ids == [0, 1, 2] and all(a.new for a in first.assigned)
    # Same objects, other order, each moved by 1-2 cm (segmentation noise between triggers).
    second = tracker.update(_objs([0.01, 0.3, 0.05], [0, 0.01, 0.05], [0.31, 0.01, 0.05]), "world")
    assert second.ids == [2, 0, 1]
    assert not any(a.new for a in second.assigned)
    assert all(0.009 < a.moved_m < 0.015 for a in second.assigned)
    assert [a.data for a in second.assigned] == [0, 1, 2]      # the caller's payload comes back
    np.testing.assert_allclose(tracker.track(2).centre, [0.01, 0.3, 0.05])
    assert tracker.track(0).times_seen == 2 and tracker.track(0).first_trigger == 1


def test_hungarian_beats_greedy() -> None:
    # Tracks at x = 0 and 0.05, objects at 0.03 and 0.085, gate 4 cm. Greedy nearest-first gives
    # the object at 0.03 the track at 0.05 (2 cm) and leaves the other one 8.5 cm from the track
    # at 0, a fresh id; the optimal assignment keeps both ids (3 and 3.5 cm).
    tracker = ObjectTracker(TrackParams(gate_factor=0.0, min_gate_m=0.04))
    tracker.update(_objs([0.0, 0, 0], [0.05, 0, 0]), "world")
    up = tracker.update(_objs([0.03, 0, 0], [0.085, 0, 0]), "world")
    assert up.ids == [0, 1] and not any(a.new for a in up.assigned)


def test_gate_is_relative_to_size() -> None:
    tracker = ObjectTracker(TrackParams(gate_factor=0.5, min_gate_m=0.01))
    tracker.update([ObservedObject([0, 0, 0], 0.04), ObservedObject([1, 0, 0], 0.4)], "world")
    # Both move 6 cm: more than the small object's gate (0.03 m), less than the large one's.
    up = tracker.update([ObservedObject([0.06, 0, 0], 0.04), ObservedObject([1.06, 0, 0], 0.4)],
                        "world")
    assert [a.new for a in up.assigned] == [True, False]
    assert up.ids == [2, 1]
    assert up.unseen == [0]                       # the small one's old track is kept, unseen
    np.testing.assert_allclose(tracker.track(0).centre, [0, 0, 0])


def test_ids_are_never_reused_until_reset() -> None:
    tracker = ObjectTracker()
    tracker.update(_objs([0, 0, 0], [0.5, 0, 0]), "world")
    assert tracker.update(_objs([0.5, 0, 0]), "world").unseen == [0]
    up = tracker.update(_objs([2.0, 0, 0]), "world")           # a new object elsewhere
    assert up.ids == [2] and up.assigned[0].new
    pose = np.eye(4)
    pose[:3, 3] = [0, 0, 0.01]
    up = tracker.update([ObservedObject([0, 0, 0.01], 0.1, pose=pose)], "world")  # 0 came back
    assert up.ids == [0]
    np.testing.assert_allclose(tracker.track(0).pose, pose)
    tracker.reset()
    assert tracker.tracks == []
    assert tracker.update(_objs([2.0, 0, 0]), "world").ids == [0]


def test_other_frames_are_not_matched() -> None:
    tracker = ObjectTracker()
    tracker.update(_objs([0, 0, 0.6]), "camera_color_optical_frame")
    up = tracker.update(_objs([0, 0, 0.6]), "world")
    assert up.ids == [1] and up.assigned[0].new
    assert up.unseen == [0]
    assert tracker.update(_objs([0, 0, 0.6]), "camera_color_optical_frame").ids == [0]


def test_max_objects_keeps_the_centre_most_with_a_reason() -> None:
    # Camera frame (no TF): the optical axis is +z. Object 1 is nearest, object 2 is on the axis.
    objs = _objs([0.3, 0, 0.8], [0.15, 0.1, 0.4], [0, 0.01, 1.0], [-0.05, 0, 0.9])
    up = ObjectTracker(TrackParams(max_objects=2)).update(objs, "camera")
    assert [a.index for a in up.assigned] == [2, 3]
    assert [d.index for d in up.dropped] == [0, 1]
    assert all("max_objects=2" in d.reason and "image centre" in d.reason for d in up.dropped)
    near = ObjectTracker(TrackParams(max_objects=2, rank_by="camera")).update(objs, "camera")
    assert sorted(a.index for a in near.assigned) == [0, 1]
    assert "nearest the camera" in near.dropped[0].reason
    # In the world, the camera's pose ranks them: a camera at x = 1 looking along -x.
    T = np.eye(4)
    T[:3, :3] = np.array([[0, 0, -1], [0, 1, 0], [1, 0, 0]], float)
    T[:3, 3] = [1.0, 0, 0]
    world = ObjectTracker(TrackParams(max_objects=1)).update(
        _objs([0.0, 0.3, 0], [0.0, 0.0, 0], [0.5, 0.2, 0]), "world", T_frame_camera=T)
    assert [a.index for a in world.assigned] == [1]


def test_max_tracks_forgets_the_least_recently_seen() -> None:
    tracker = ObjectTracker(TrackParams(max_tracks=2))
    tracker.update(_objs([0, 0, 0]), "world")
    tracker.update(_objs([1, 0, 0]), "world")
    tracker.update(_objs([1, 0, 0], [2, 0, 0]), "world")
    assert [t.id for t in tracker.tracks] == [1, 2]
    assert tracker.update(_objs([0, 0, 0]), "world").ids == [3]     # 0 is forgotten, not reused


def test_empty_trigger_and_bad_inputs() -> None:
    tracker = ObjectTracker()
    tracker.update(_objs([0, 0, 0]), "world")
    up = tracker.update([], "world")
    assert up.assigned == [] and up.unseen == [0] and up.trigger == 2
    with pytest.raises(ValueError, match="frame_id is empty"):
        tracker.update([], "")
    with pytest.raises(ValueError, match="centre must be 3 finite"):
        ObservedObject([0, 0], 0.1)
    with pytest.raises(ValueError, match="size"):
        ObservedObject([0, 0, 0], float("nan"))
    with pytest.raises(ValueError, match="4x4"):
        ObservedObject([0, 0, 0], 0.1, pose=np.eye(3))
    with pytest.raises(TypeError, match="ObservedObject"):
        tracker.update([(0, 0, 0)], "world")
    with pytest.raises(ValueError, match="T_frame_camera"):
        tracker.update([], "world", T_frame_camera=np.eye(3))
    for bad in (dict(gate_factor=-1), dict(max_objects=-1), dict(rank_by="size"),
                dict(max_tracks=0), dict(gate_factor=0, min_gate_m=0)):
        with pytest.raises(ValueError, match="TrackParams"):
            TrackParams(**bad)
