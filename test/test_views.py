"""One pass of views: each cut is made once per size, matches a fresh crop of the frame, and a
view made from cuts refuses a size it was not given."""
from __future__ import annotations

import numpy as np
import pytest

from sparp_ros.camera import PinholeCamera
from sparp_ros.capture import Frame
from sparp_ros.segmentation import crop_image
from sparp_ros.views import prepare_view, stack_cuts, stack_depth_cuts, view_from_cuts


def _frame(seed: int = 0) -> Frame:
    rng = np.random.default_rng(seed)
    mask = np.zeros((120, 160), bool)
    mask[30:90, 50:120] = True
    depth = np.where(mask, 0.5 + 0.01 * rng.random((120, 160)), 0.0).astype(np.float32)
    camera = PinholeCamera(width=160, height=120, K=np.array([[150.0, 0, 79.5], [0, 150.0, 59.5],
                                                              [0, 0, 1]]))
    return Frame(image=rng.integers(0, 255, (120, 160, 3), dtype=np.uint8), camera=camera,
                 mask=mask, depth=depth)


def test_cuts_are_made_once_per_size_and_match_a_fresh_crop():
    view = prepare_view(0, _frame(), cell_size=32, margin=0.15)
    assert view.cell.image.shape == (32, 32, 3) and view.depth.shape == (32, 32)
    cell, depth = view                                   # unpacks as the geometry stages read it
    assert cell is view.cell and depth is view.depth
    assert view.cut(32)[0] is view.cell.image            # the model's size: the cell itself
    a, b = view.cut(64), view.cut(64)
    assert a is b                                        # made once
    np.testing.assert_array_equal(a[0], crop_image(view.frame.image, view.box, 64))
    d, f = view.depth_cut(64)
    np.testing.assert_array_equal(d, crop_image(view.frame.depth, view.box, 64, nearest=True))
    assert f == pytest.approx(150.0 * 64 / view.box.side)
    images, masks = stack_cuts([view, prepare_view(1, _frame(1), 32, 0.15)], 64)
    assert images.shape == (2, 64, 64, 3) and masks.dtype == bool and masks.any()
    depth, focal = stack_depth_cuts([view], 32)
    assert depth.shape == (1, 32, 32) and focal[0] == pytest.approx(view.cell.camera.K[0, 0])


def test_a_view_made_from_cuts_refuses_sizes_it_was_not_given():
    view = prepare_view(0, _frame(), cell_size=32, margin=0.15)
    made = view_from_cuts(3, view.cell, {64: view.cut(64)})
    assert made.cut(64)[0] is view.cut(64)[0]
    with pytest.raises(ValueError, match="view 3 was made from cuts"):
        made.cut(48)
    assert not made.depth_cut(32)[0].any()               # no depth: zeros at the model's size
