"""Prompts as the node receives them: which keyframe a point or box refers to, and points that
cannot be placed (non-finite, unknown frame) refused with a reason instead of an exception."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("geometry_msgs.msg")
from geometry_msgs.msg import PointStamped  # noqa: E402
from sensor_msgs.msg import RegionOfInterest  # noqa: E402

from sparp_ros.camera import PinholeCamera  # noqa: E402
from sparp_ros.capture import Frame  # noqa: E402
from sparp_ros.ros.prompts import PromptInbox  # noqa: E402
from sparp_ros.segment_prompt import BoxPrompt, PointPrompt  # noqa: E402


def _frames(n: int = 2, posed: bool = True) -> list[Frame]:
    cam = PinholeCamera(width=64, height=48, K=np.array([[60.0, 0, 31.5], [0, 60.0, 23.5], [0, 0, 1]]),
                        frame_id="cam")
    return [Frame(image=np.zeros((48, 64, 3), np.uint8), camera=cam,
                  T_world_camera=np.eye(4) if posed else None) for _ in range(n)]


def _point(frame_id: str, xyz) -> PointStamped:
    msg = PointStamped()
    msg.header.frame_id = frame_id
    msg.point.x, msg.point.y, msg.point.z = (float(v) for v in xyz)
    return msg


def test_points_and_boxes_become_prompts_and_bad_points_are_refused_with_a_reason():
    inbox = PromptInbox()
    inbox._on_point(_point("world", (0.1, 0.2, 0.3)))
    inbox._on_point(_point("cam", (0.0, 0.0, 0.5)))
    inbox._on_point(_point("world", (np.nan, 0.0, 0.5)))
    inbox._on_point(_point("elsewhere", (0.0, 0.0, 0.5)))
    inbox._on_box(RegionOfInterest(x_offset=3, y_offset=4, width=10, height=12))
    assert len(inbox) == 5
    prompts, refused = inbox.prompts(_frames(), "world", lambda target, source: None)
    assert prompts[0] == PointPrompt((0.1, 0.2, 0.3), in_world=True)
    assert prompts[1] == PointPrompt((0.0, 0.0, 0.5), view=1)          # the latest keyframe
    assert prompts[2] == BoxPrompt(3, 4, 10, 12, view=1)
    assert len(prompts) == 3 and len(refused) == 2
    assert "not finite" in refused[0] and "'elsewhere'" in refused[1]
    assert inbox.clear() == 5 and len(inbox) == 0
