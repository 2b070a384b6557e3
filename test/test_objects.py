"""Which objects of a trigger are reconstructed, in which order, and how a refused one is kept
apart from the others (ROS-free; the DDS path is test/ros/test_node_objects.py)."""
from __future__ import annotations

import numpy as np

from sparp_ros.camera import PinholeCamera
from sparp_ros.capture import Frame
from sparp_ros.objects import object_frames, order_objects, reconstruct_objects
from sparp_ros.segment_depth import ObjectMasks

H, W = 60, 80


def _mask(cx: int, cy: int, r: int = 6) -> np.ndarray:
    yy, xx = np.mgrid[:H, :W]
    return (xx - cx) ** 2 + (yy - cy) ** 2 <= r * r


def _frames(n: int = 2) -> list[Frame]:
    camera = PinholeCamera(width=W, height=H, K=np.array([[70.0, 0, 39.5], [0, 70.0, 29.5], [0, 0, 1]]))
    return [Frame(image=np.zeros((H, W, 3), np.uint8), camera=camera) for _ in range(n)]


def test_most_central_first_small_ones_and_the_surplus_left_out_with_reasons():
    off = ObjectMasks(0, [_mask(10, 10), _mask(12, 10)], None)
    centre = ObjectMasks(1, [_mask(40, 30), None], None)
    tiny = ObjectMasks(2, [_mask(60, 40, r=2), None], None)
    later = ObjectMasks(3, [None, _mask(40, 30)], None)       # only the second view sees it
    kept, skipped = order_objects([off, centre, tiny, later], max_objects=2)
    assert [o.id for o in kept] == [1, 0]
    assert len(skipped) == 2
    assert "object 2: smaller than" in skipped[0] and "object 3: beyond max_objects=2" in skipped[1]


def test_each_object_gets_the_views_that_see_it_and_a_refusal_stays_its_own():
    frames = _frames(2)
    a = ObjectMasks(0, [_mask(40, 30), _mask(30, 30)], None)
    b = ObjectMasks(1, [None, _mask(60, 30)], None)
    own, views = object_frames(frames, b)
    assert views == [1] and own[0].mask is b.masks[1] and frames[1].mask is None
    calls, lines = [], []

    def pipeline(fs):
        calls.append(len(fs))
        raise ValueError("no view could be posed")

    results = reconstruct_objects(pipeline, frames, [a, b], log=lines.append)
    assert calls == [2, 1]
    assert [r.ok for r in results] == [False, False]
    assert results[0].error == "ValueError: no view could be posed" and results[1].views == [1]
    assert len(lines) == 2 and lines[0].startswith("object 0 (1/2): failed")
