"""Several objects in one capture folder: DESIGN.md §4's one extension of the format.

::

    capture/masks/<id>/000.png   uint8, object <id> > 127, one per frame (all 0: not in view)
    capture/gt.json              "objects": [{"id", "mesh", "object", "T_world_object"}, ...]

``<id>`` is a folder name (the renderer writes 1, 2, ...). ``T_world_object`` maps the object's
mesh frame into the frame of the cameras' ``T_world_camera`` (cameras.json), so a view's pose is
``inv(T_world_camera) @ T_world_object``. A single-object capture is unchanged (``masks/000.png``
and gt.json's ``frames``); ``load_capture`` keeps unknown gt.json keys in ``GroundTruth.extra``
and ignores folders inside ``masks/``, so an old reader sees a multi-object capture as a capture
of its gt.json's single object.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import cv2
import numpy as np

from .capture import CaptureError, GroundTruth

MASKS_DIR = "masks"


@dataclass
class ObjectTruth:
    """One entry of gt.json ``"objects"``."""

    id: str
    mesh: str | None = None
    name: str | None = None
    T_world_object: np.ndarray | None = None

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {"id": self.id}
        if self.mesh:
            d["mesh"] = self.mesh
        if self.name:
            d["object"] = self.name
        if self.T_world_object is not None:
            d["T_world_object"] = np.asarray(self.T_world_object, float).tolist()
        return d

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> "ObjectTruth":
        T = d.get("T_world_object")
        return cls(id=str(d["id"]), mesh=d.get("mesh"), name=d.get("object"),
                   T_world_object=None if T is None else np.asarray(T, float).reshape(4, 4))


def objects_from_gt(gt: GroundTruth | None) -> list[ObjectTruth]:
    """The objects of gt.json (``GroundTruth.extra["objects"]``); [] for a single-object capture.
    ``CaptureError`` when an entry has no id or a malformed pose."""
    if gt is None:
        return []
    out = []
    for i, d in enumerate(gt.extra.get("objects") or []):
        try:
            out.append(ObjectTruth.from_json(d))
        except (KeyError, TypeError, ValueError) as exc:
            raise CaptureError(f"gt.json objects[{i}]: malformed ({exc!r})") from exc
    return out


def object_mask_ids(root: str | Path) -> list[str]:
    """The ids with a ``masks/<id>/`` folder, sorted (numerically where they are numbers)."""
    d = Path(root) / MASKS_DIR
    if not d.is_dir():
        return []
    names = [p.name for p in d.iterdir() if p.is_dir()]
    return sorted(names, key=lambda s: (0, int(s), s) if s.isdigit() else (1, 0, s))


def load_object_masks(root: str | Path, frames: int) -> dict[str, list[np.ndarray | None]]:
    """``{id: [HxW bool or None per frame]}`` from ``masks/<id>/NNN.png`` (None: no file);
    ``CaptureError`` naming an unreadable file."""
    root = Path(root)
    out: dict[str, list[np.ndarray | None]] = {}
    for oid in object_mask_ids(root):
        masks: list[np.ndarray | None] = []
        for i in range(frames):
            path = root / MASKS_DIR / oid / f"{i:03d}.png"
            if not path.exists():
                masks.append(None)
                continue
            img = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
            if img is None:
                raise CaptureError(f"cannot read image {path}")
            masks.append(img > 127)
        out[oid] = masks
    return out


def save_object_masks(root: str | Path, masks: Mapping[str, Sequence[np.ndarray]]) -> None:
    """Write ``masks/<id>/NNN.png`` for every object and frame."""
    for oid, per_frame in masks.items():
        d = Path(root) / MASKS_DIR / str(oid)
        d.mkdir(parents=True, exist_ok=True)
        for i, m in enumerate(per_frame):
            cv2.imwrite(str(d / f"{i:03d}.png"), np.asarray(m, bool).astype(np.uint8) * 255)
