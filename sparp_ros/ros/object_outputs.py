"""The node's outputs for every object of a trigger: stable ids (``object_tracks``), one TF frame
per object (``<ns>/<object_id>_<id>`` on /tf_static), a MarkerArray of every mesh with a text
label, and one ``sparp_ros_msgs/ObjectReconstructionArray``.

Why apart from ``node``: the node stays the wiring of inputs, services and parameters; what a
multi-object result becomes on the wire is this module's one job. The single-object outputs
(``object_pose``, ``mesh_marker``, ``mesh``, ``reconstruction``, the ``object_id`` frame) keep
carrying one object, the most central, so a consumer of one object sees no change.
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np
from geometry_msgs.msg import Point, Vector3
from std_msgs.msg import ColorRGBA
from visualization_msgs.msg import Marker, MarkerArray

from . import messages
from ..object_tracks import ObjectTracker, ObservedObject, TrackParams, TrackUpdate
from ..objects import ObjectResult

OBJECTS_TOPIC = "sparp/objects"
OBJECTS_MARKER_TOPIC = "sparp/objects/markers"
MARKER_NS, LABEL_NS = "sparp_objects", "sparp_object_labels"
LABEL_HEIGHT_M = 0.03
LABEL_GAP_M = 0.02
"""The label floats this far above the object's top."""


class ObjectOutputs:
    """Publishes a trigger's objects. ``publisher(msg_type, topic, qos)`` makes a (latched)
    publisher; ``tf`` is the node's ``StaticTransformSender`` (None: no TF); ``frame_of(id)`` names an
    object's TF frame; ``output_frame(frame)`` gives ``(frame_id, T_fixed_camera | None)`` of a
    keyframe, as for the single-object outputs."""

    def __init__(self, publisher: Callable, qos: Any, tf, frame_of: Callable[[int], str],
                 output_frame: Callable, logger, tracks: TrackParams | None = None):
        self.tracker = ObjectTracker(tracks or TrackParams())
        self.marker_pub = publisher(MarkerArray, OBJECTS_MARKER_TOPIC, qos)
        self.array_pub = self._array_publisher(publisher, qos, logger)
        self._tf = tf
        self._frame_of, self._output_frame = frame_of, output_frame
        self._frames_sent: set[str] = set()

    @staticmethod
    def _array_publisher(publisher: Callable, qos: Any, logger):
        try:
            from sparp_ros_msgs.msg import ObjectReconstructionArray
        except ImportError:
            logger.warning("sparp_ros_msgs has no ObjectReconstructionArray (run "
                           f"scripts/build_interfaces.sh): {OBJECTS_TOPIC} is not published")
            return None
        return publisher(ObjectReconstructionArray, OBJECTS_TOPIC, qos)

    def track(self, results: Sequence[ObjectResult], frames: Sequence[Any]) -> TrackUpdate:
        """Give the reconstructed objects their ids: matched by position in the world frame when
        every keyframe has a camera pose from TF, else in the camera frame of each object's first
        posed view (ids then stay only while the camera does not move between triggers)."""
        ok = [r for r in results if r.ok and r.centre is not None]
        in_world = bool(ok) and all(r.centre_in_world for r in ok)
        frame_id = "world" if in_world else (frames[0].camera.frame_id or "camera")
        observed = [ObservedObject(r.centre, r.size_m, data=r) for r in ok]
        return self.tracker.update(observed, frame_id)

    def publish(self, update: TrackUpdate, items: Sequence[tuple[Any, Any]]) -> list[str]:
        """Publish every assigned object: TF, marker and label, and the array message; returns
        the TF frames published. ``items`` are the trigger's (frame, stamp) pairs."""
        markers = [messages.delete_all_marker(ns=MARKER_NS), messages.delete_all_marker(ns=LABEL_NS)]
        recons, published = [], []
        header_frame, header_stamp = None, None
        for a in update.assigned:
            result: ObjectResult = a.data
            recon = result.reconstruction
            own = [items[i] for i in result.views]
            view = messages.published_view(recon)
            frame, stamp = own[view]
            frame_id, T_fixed_camera = self._output_frame(frame)
            header_frame, header_stamp = frame_id, stamp
            child = self._frame_of(a.id)
            T = recon.views[view].T_camera_object
            if T_fixed_camera is not None:
                T = T_fixed_camera @ T
            if self._tf is not None:
                self._tf.send(messages.reconstruction_to_transform_stamped(
                    recon, frame_id, stamp, child, view, T_fixed_camera))
                self._frames_sent.add(child)
            if recon.mesh is not None:
                markers.append(messages.mesh_to_marker(recon.mesh, T, frame_id, stamp,
                                                       ns=MARKER_NS, marker_id=a.id))
            markers.append(label_marker(child, T, recon, frame_id, stamp, a.id))
            if self.array_pub is not None:
                recons.append(messages.reconstruction_to_msg(
                    recon, frame_id, stamp, child, view=view,
                    view_frame_ids=[f.camera.frame_id for f, _ in own],
                    view_stamps=[s for _, s in own]))
            published.append(child)
        self.marker_pub.publish(MarkerArray(markers=markers))
        if self.array_pub is not None:
            msg = self.array_pub.msg_type(objects=recons)
            if header_frame is not None:
                msg.header = messages.header(header_frame, header_stamp)
            self.array_pub.publish(msg)
        return published

    def reset(self) -> int:
        """Forget every object (``~/reset``): ids start again from 0, the markers are deleted and
        the object frames leave /tf_static. Returns how many objects were forgotten."""
        n = len(self.tracker.tracks)
        self.tracker.reset()
        self.marker_pub.publish(MarkerArray(markers=[messages.delete_all_marker(ns=MARKER_NS),
                                                     messages.delete_all_marker(ns=LABEL_NS)]))
        if self._tf is not None and self._frames_sent:
            self._tf.remove(sorted(self._frames_sent))
        self._frames_sent.clear()
        return n


def label_marker(text: str, T_frame_object: np.ndarray, recon, frame_id: str, stamp,
                 marker_id: int) -> Marker:
    """A TEXT_VIEW_FACING marker with the object's frame name above its top (the mesh's highest
    point, or half its size above its origin without a mesh)."""
    top = recon.scale / 2.0
    if recon.mesh is not None and len(recon.mesh.vertices):
        top = float(np.max(np.asarray(recon.mesh.vertices)[:, 2]))
    position = T_frame_object[:3, :3] @ np.array([0.0, 0.0, top + LABEL_GAP_M]) + T_frame_object[:3, 3]
    marker = Marker(header=messages.header(frame_id, stamp), ns=LABEL_NS, id=int(marker_id),
                    type=Marker.TEXT_VIEW_FACING, action=Marker.ADD, text=text,
                    scale=Vector3(x=0.0, y=0.0, z=LABEL_HEIGHT_M),
                    color=ColorRGBA(r=1.0, g=1.0, b=1.0, a=1.0))
    marker.pose.position = Point(x=float(position[0]), y=float(position[1]), z=float(position[2]))
    marker.pose.orientation.w = 1.0
    return marker
