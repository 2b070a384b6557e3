"""Prompts for the ``prompt`` segmentation: points (``geometry_msgs/PointStamped``, RViz "Publish
Point") and boxes (``sensor_msgs/RegionOfInterest``) on two relative topics, kept until
``~/reset`` and turned into ``segment_prompt`` prompts at the trigger.

Which keyframe a prompt refers to:
- a point in ``world_frame`` (RViz publishes in its fixed frame): a world point, when the
  keyframes have camera poses from TF;
- a point in another frame: that frame's pose in ``world_frame`` looked up on TF now, so it becomes
  a world point; without TF, a point in the camera's own optical frame refers to the most recent
  keyframe;
- a box (RegionOfInterest has no header): pixels of the most recent keyframe when the trigger
  comes (publish it for the image the robot shows now).
Why kept until reset and not cleared by a trigger: a robot that moves and triggers again still
wants the objects it was shown.
"""
from __future__ import annotations

import threading
from typing import Any, Callable, Sequence

import numpy as np
from geometry_msgs.msg import PointStamped
from sensor_msgs.msg import RegionOfInterest

from ..capture import Frame
from ..segment_prompt import BoxPrompt, PointPrompt, Prompt

POINT_TOPIC, BOX_TOPIC = "prompt_point", "prompt_box"
MAX_PROMPTS = 32


class PromptInbox:
    """The prompts received so far (at most MAX_PROMPTS, the oldest dropped). ``lookup(target,
    source)`` gives ``T_target_source`` now from TF, or None."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._points: list[PointStamped] = []
        self._boxes: list[RegionOfInterest] = []

    def subscribe(self, node, qos, group) -> list[Any]:
        """The two subscriptions (relative names, remappable)."""
        return [node.create_subscription(PointStamped, POINT_TOPIC, self._on_point, qos,
                                         callback_group=group),
                node.create_subscription(RegionOfInterest, BOX_TOPIC, self._on_box, qos,
                                         callback_group=group)]

    def _on_point(self, msg: PointStamped) -> None:
        with self._lock:
            self._points = (self._points + [msg])[-MAX_PROMPTS:]

    def _on_box(self, msg: RegionOfInterest) -> None:
        with self._lock:
            self._boxes = (self._boxes + [msg])[-MAX_PROMPTS:]

    def __len__(self) -> int:
        with self._lock:
            return len(self._points) + len(self._boxes)

    def clear(self) -> int:
        with self._lock:
            n = len(self._points) + len(self._boxes)
            self._points, self._boxes = [], []
        return n

    def prompts(self, frames: Sequence[Frame], world_frame: str,
                lookup: Callable[[str, str], np.ndarray | None]) -> tuple[list[Prompt], list[str]]:
        """This trigger's prompts (points first, then boxes, each in arrival order) and one line
        per prompt that cannot be placed, with the reason."""
        with self._lock:
            points, boxes = list(self._points), list(self._boxes)
        latest = len(frames) - 1
        posed = all(f.T_world_camera is not None for f in frames)
        camera_frame = frames[latest].camera.frame_id
        out: list[Prompt] = []
        refused: list[str] = []
        for msg in points:
            p = np.array([msg.point.x, msg.point.y, msg.point.z], dtype=np.float64)
            frame_id = msg.header.frame_id.lstrip("/")
            if not np.all(np.isfinite(p)):
                refused.append(f"point in {frame_id!r} is not finite: {p.tolist()}")
            elif world_frame and posed and frame_id == world_frame:
                out.append(PointPrompt(tuple(p), in_world=True))
            elif world_frame and posed and (T := lookup(world_frame, frame_id)) is not None:
                out.append(PointPrompt(tuple(T[:3, :3] @ p + T[:3, 3]), in_world=True))
            elif frame_id == camera_frame:
                out.append(PointPrompt(tuple(p), view=latest))
            else:
                refused.append(f"point in {frame_id!r}: neither world_frame "
                               f"({world_frame or 'unset'}) with camera poses nor the camera "
                               f"frame {camera_frame!r}")
        out += [BoxPrompt.from_roi(b, view=latest) for b in boxes]
        return out, refused
