"""The node's parameters: defaults, descriptions, and which of them may change while it runs
(ROS-free, so the rules are tested without DDS).

Three kinds, by what a change would touch:

* **live** (``LIVE``): read where they are used (keyframe selection, stamp pairing, the next
  reconstruction, diagnostics) and applied at once;
* **input** (``INPUT``): shape the subscriptions (which topics, their types and QoS); the managed
  (lifecycle) node takes them while it is not active, at the next activation;
* **model** (``MODEL``): the model loaded at configuration; the managed node takes them while it is
  unconfigured (clean it up first), at the next configuration.

The plain node is configured and active for its whole life, so it refuses input and model changes
with a reason; values out of range are refused in every state (``check_value``). The numeric ones
carry their range (``RANGES``) into the node's ParameterDescriptors, so ``ros2 param describe``
shows it and rclpy refuses values outside it; a float parameter takes an integer (``coerce``:
``ros2 param set /sparp_node size_prior_m 1``).
"""
from __future__ import annotations

from typing import Any

from ..image_codec import MAX_IMAGE_SIDE
from ..keyframes import MAX_KEYFRAMES

NODE_NAME = "sparp_node"

# Every parameter: (default, description). config/sparp.yaml repeats them with comments; a test
# keeps the two equal.
PARAMETERS: dict[str, tuple[Any, str]] = {
    "backend": ("model", "NOCS backend: 'model' (the trained network, for real cameras) or "
                         "'oracle' / 'oracle_per_view' (ground truth from oracle_nocs: test "
                         "instruments for rendered input)"),
    "device": ("cpu", "torch device of the model backend: cpu, cuda, cuda:1"),
    "weights": ("", "model weights folder; empty = the weights shipped in the package"),
    "model_domain": ("nocs_self", "model backend: 'nocs_self' (per-view NOCS + azimuth search) or "
                                  "'nocs_ref' (SpaRP's tiled cross-view NOCS)"),
    "num_hypotheses": (1, "model backend: NOCS samples per view (mixture of experts; the one "
                          "whose pose explains most of its NOCS is kept)"),
    "model_threads": (1, "torch threads for the networks while a reconstruction runs; a fixed "
                         "number makes the result independent of the machine's cores; 0 = "
                         "torch's own choice"),
    "geometry_threads": (1, "open3d threads for the registration and fusion while a "
                            "reconstruction runs; 1 makes two runs on the same keyframes give "
                            "the same result; 0 = open3d's own choice (faster, not repeatable)"),
    "cell_size": (128, "pixels per view cell for the oracle backends (the model uses its own)"),
    "size_prior_m": (0.2, "bounding-box diagonal assumed when there is no depth (metres)"),
    "refine": (False, "refine every view's pose by robust ICP of its depth against the fused "
                      "surface (guarded: kept only when the fit improves within bounds)"),
    "align_with_camera_motion": (True, "per-view model: align the views by their camera poses "
                                       "(TF, world_frame) when every view has one, instead of the "
                                       "visibility search"),
    "correct_hand_eye": (False, "with camera poses from TF and depth: correct them by one "
                                "hand-eye transform shared by every view, found from the views' "
                                "measured surfaces (kept only when it brings them closer; "
                                "reported in the result); for a camera whose hand-eye "
                                "calibration is a few degrees off"),
    "min_table_agreement": (0.5, "RGB-D without TF: where two keyframes see the table around "
                                 "the object, a placement whose tables agree at least this much "
                                 "(normalised correlation of the table's print) decides their "
                                 "relative pose; 0 = the object's surfaces alone (a table that "
                                 "moves under the object: a turntable)"),
    "min_print_matches": (15, "RGB-D without TF: a placement of two keyframes that at least this "
                              "many matches of the object's print (SIFT keypoints with their "
                              "depth) agree with decides their relative pose where its surface "
                              "keeps out of the space the other keyframe saw empty; the print "
                              "measures the turn of a labelled bottle or a printed box; 0 = the "
                              "object's surfaces alone"),
    "light_turns": (True, "RGB-D without TF: a keyframe whose light (measured from its object's "
                          "shading) disagrees with the other keyframes' is turned about up to it "
                          "where its surface still keeps their free space and overlaps them; the "
                          "light measures the turn of a round, plain object; false = not (a light "
                          "that moves relative to the object: a turntable)"),
    "align_with_depth": (True, "per-view model: when every view has depth (use_depth), the search "
                               "that aligns the views tests their measured surfaces instead of "
                               "the predicted shapes; false = the predicted shapes"),
    "assume_upright": (True, "with camera poses from TF: the object's z axis is world_frame's +z "
                             "(REP 103; objects resting upright, as the model was trained), so "
                             "only its heading comes from the images; without TF, on RGB-D: "
                             "the normal of the support plane each view measures under the "
                             "object; false = tilt from the images"),
    "view_angles": (True, "per-view model: take each view's camera elevation and roll from the "
                          "view-angle network shipped beside the weights (view_angles/), which "
                          "judges them better than the NOCS model's own frame; false = PnP's"),
    "depth_networks": (True, "per-view model: for views with depth (use_depth), the small networks "
                             "that read it too (view_angles_depth/, pair_azimuth_depth/ beside the "
                             "weights); false = the image-only ones"),
    "pair_azimuth_weight": (0.3, "per-view model: weight of the pair-azimuth network (pair_azimuth/ "
                                 "beside the weights) in the azimuth search between views; 0 = "
                                 "the visibility score alone"),
    "pair_azimuth_weight_depth": (0.1, "per-view model: the same weight when the search tests the "
                                       "views' measured surfaces (align_with_depth)"),
    "mesh": (True, "build a mesh (Marker, shape_msgs/Mesh); false = pose only, faster"),
    "isolate_mesh": (True, "run the Poisson surface in a child process so a native crash there "
                           "cannot take the node down (the pose is still published)"),
    "max_keyframes": (MAX_KEYFRAMES, "keyframes kept, 1..6; the oldest is dropped when a new one "
                                     "comes"),
    "min_image_change": (0.04, "mean |difference| of a 32x32 grey thumbnail (0..1) to every "
                               "kept keyframe for a frame to count as a new view"),
    "min_sharpness": (1e-4, "variance of the Laplacian (grey 0..1 at 320 px width) below "
                            "which a frame is too blurry to keep"),
    "use_depth": (True, "wait for a depth image per frame (metric scale from depth)"),
    "use_mask": (True, "wait for an object mask per frame"),
    "segmentation": ("auto", "where the object masks come from: 'mask_topic' (the mask topic, one "
                             "object), 'depth' (objects standing on the support plane, from the "
                             "depth images), 'learned' (the foreground network, RGB only), "
                             "'prompt' (one object per point on prompt_point or box on "
                             "prompt_box); 'auto' = mask_topic with use_mask, else prompt when "
                             "prompts were received, else depth with use_depth, else learned"),
    "max_objects": (8, "with segmentation depth or learned: at most this many objects are "
                       "reconstructed per trigger, the most central first (1: the central "
                       "object alone)"),
    "learned_colour_refinement": (True, "with segmentation learned: sharpen the network's mask "
                                        "with the image's colours (GrabCut seeded by it; real "
                                        "photos median IoU 0.764 with it; ~125 ms more per "
                                        "640x480 keyframe); false = the network's mask alone"),
    "reliable_inputs": (True, "subscribe with reliable QoS (a lost image is sent again; "
                               "best-effort lost most played views here); false = sensor-data "
                               "(best-effort) QoS, needed for a camera that publishes best-effort, "
                               "which a reliable subscription does not match"),
    "sync_slop_s": (0.005, "stamps closer than this are the same capture instant (seconds)"),
    "sync_timeout_s": (3.0, "an instant still missing a part after this is dropped (seconds; a "
                            "reliable input waiting for a repair holds its later messages back "
                            "for 1-2 s on a loaded machine)"),
    "world_frame": ("", "TF frame in which each keyframe's camera pose T_world_camera is looked "
                        "up on /tf at the image stamp (e.g. 'base_link', 'world'): metric scale "
                        "from the camera motion without depth; empty = TF not used"),
    "tf_timeout_s": (0.1, "with world_frame: how long a frame waits for its camera pose on /tf "
                          "(seconds); after that it is kept without one"),
    "tf_implementation": ("auto", "with world_frame: which TF buffer reads /tf and /tf_static: "
                                  "'tf2_ros' (tf2_ros.Buffer and TransformListener; configuring "
                                  "fails when tf2_ros is not importable), 'builtin' (this "
                                  "package's TransformBuffer, for the pip-wheel install without "
                                  "tf2_ros); 'auto' = tf2_ros when importable, else builtin"),
    "object_id": ("sparp_object", "the object's name: its TF child frame (prefixed by the node's "
                                  "namespace: <ns>/<object_id>), the object_id of the result and "
                                  "the mesh file name"),
    "mesh_output_dir": ("", "if set, write <object_id>.glb here after each reconstruction"),
    "publish_in_world_frame": (False, "publish the pose, TF and marker in world_frame (through "
                                      "the keyframe's camera pose from TF) instead of the camera "
                                      "frame"),
    "mesh_marker": ("triangle_list", "how the mesh marker carries the mesh: 'triangle_list' (the "
                                     "triangles in the message) or 'mesh_resource' (a "
                                     "MESH_RESOURCE marker pointing at the file written to "
                                     "mesh_output_dir: small messages, RViz loads the file)"),
    "compressed_input": (False, "subscribe to sensor_msgs/CompressedImage (JPEG/PNG) on "
                                "<image>/compressed (image_transport naming) instead of the raw "
                                "image"),
    "max_image_side": (MAX_IMAGE_SIDE, "images larger than this (pixels per side) are dropped as "
                                       "corrupt"),
    "diagnostics_period_s": (1.0, "period of the diagnostic_msgs/DiagnosticArray on /diagnostics "
                                  "(seconds)"),
    "diagnostics_frame_timeout_s": (5.0, "diagnostics warn when an active node has received no "
                                         "image for this long (seconds)"),
}
MESH_MARKERS = ("triangle_list", "mesh_resource")
SEGMENTATIONS = ("auto", "mask_topic", "depth", "learned", "prompt")
TF_IMPLEMENTATIONS = ("auto", "tf2_ros", "builtin")
DEFAULTS: dict[str, Any] = {name: default for name, (default, _) in PARAMETERS.items()}
FLOATS = frozenset(name for name, default in DEFAULTS.items() if type(default) is float)
"""Float parameters: an integer value is taken as a float (``coerce``)."""

# Inclusive (low, high) of every numeric parameter: the ParameterDescriptor's FloatingPointRange or
# IntegerRange. Upper bounds are sanity limits, not tuning advice. check_value also refuses 0 for
# the _POSITIVE ones (a range cannot exclude its edge).
RANGES: dict[str, tuple[float, float]] = {
    "num_hypotheses": (1, 64),
    "model_threads": (0, 64),
    "geometry_threads": (0, 64),
    "min_table_agreement": (0.0, 1.0),
    "min_print_matches": (0, 1000),
    "cell_size": (8, 2048),
    "size_prior_m": (0.0, 10.0),
    "pair_azimuth_weight": (0.0, 10.0),
    "pair_azimuth_weight_depth": (0.0, 10.0),
    "max_keyframes": (1, MAX_KEYFRAMES),
    "max_objects": (1, 32),
    "min_image_change": (0.0, 1.0),
    "min_sharpness": (0.0, 100.0),
    "max_image_side": (1, 65535),
    "sync_slop_s": (0.0, 1.0),
    "sync_timeout_s": (0.0, 60.0),
    "tf_timeout_s": (0.0, 10.0),
    "diagnostics_period_s": (0.0, 3600.0),
    "diagnostics_frame_timeout_s": (0.0, 3600.0),
}
# What a descriptor says about the string parameters' values (additional_constraints).
CONSTRAINTS: dict[str, str] = {
    "backend": "one of: model, oracle, oracle_per_view",
    "model_domain": "one of: nocs_self, nocs_ref",
    "mesh_marker": "one of: " + ", ".join(MESH_MARKERS),
    "segmentation": "one of: " + ", ".join(SEGMENTATIONS),
    "tf_implementation": "one of: " + ", ".join(TF_IMPLEMENTATIONS),
}

MODEL = frozenset({"backend", "device", "weights", "model_domain", "num_hypotheses"})
INPUT = frozenset({"use_depth", "use_mask", "reliable_inputs", "compressed_input", "max_image_side",
                   "world_frame", "tf_implementation"})
LIVE = frozenset(PARAMETERS) - MODEL - INPUT

_POSITIVE = ("cell_size", "size_prior_m", "sync_timeout_s", "max_image_side", "num_hypotheses",
             "diagnostics_period_s", "diagnostics_frame_timeout_s")
_NON_NEGATIVE = ("min_image_change", "min_sharpness", "sync_slop_s", "tf_timeout_s")


def coerce(name: str, value: Any) -> Any:
    """``value`` as parameter ``name`` takes it: an integer for a float parameter becomes a float
    (YAML ``1``, ``ros2 param set ... 1``); anything else is returned as it is."""
    return float(value) if name in FLOATS and type(value) is int else value


def check_value(name: str, value: Any) -> str | None:
    """Why ``value`` is not a valid value of parameter ``name``; None when it is (or when the
    parameter is not ours)."""
    if name == "mesh_marker" and value not in MESH_MARKERS:
        return f"mesh_marker must be one of {MESH_MARKERS}, got {value!r}"
    if name == "segmentation" and value not in SEGMENTATIONS:
        return f"segmentation must be one of {SEGMENTATIONS}, got {value!r}"
    if name == "tf_implementation" and value not in TF_IMPLEMENTATIONS:
        return f"tf_implementation must be one of {TF_IMPLEMENTATIONS}, got {value!r}"
    if name in _POSITIVE and not value > 0:
        return f"{name} must be > 0, got {value}"
    if name in _NON_NEGATIVE and not value >= 0:
        return f"{name} must be >= 0, got {value}"
    if name in RANGES and not RANGES[name][0] <= value <= RANGES[name][1]:
        low, high = RANGES[name]
        return f"{name} must be in {low}..{high}, got {value}"
    return None


def object_frame(namespace: str, object_id: str) -> str:
    """The object's TF frame: ``object_id`` under the node's namespace, without the leading
    slash (tf2 frame ids have none): ``('/', 'mug') -> 'mug'``, ``('/arm1', 'mug') ->
    'arm1/mug'``, so two nodes side by side publish two frames."""
    prefix = namespace.strip("/")
    return f"{prefix}/{object_id}" if prefix else object_id


def refusal(name: str, value: Any, state: str, managed: bool) -> str | None:
    """Why setting ``name`` to ``value`` now is refused; None when it is accepted.

    ``state`` is the node's lifecycle state ('unconfigured', 'inactive' or 'active'; the plain
    node is always 'active'); ``managed`` says whether the node is the lifecycle node."""
    if name not in PARAMETERS:
        return None                        # e.g. use_sim_time: not ours to judge
    bad = check_value(name, value)
    if bad:
        return bad
    if name in MODEL and state != "unconfigured":
        return (f"{name} is read when the model is loaded: deactivate and clean up the node "
                "first (lifecycle), then configure again" if managed else
                f"{name} is read when the model is loaded, at start-up: restart the node, or run "
                "the lifecycle node (--lifecycle) and clean it up first")
    if name in INPUT and state == "active":
        return (f"{name} changes the subscriptions: deactivate the node first (lifecycle); it "
                "takes effect at the next activation" if managed else
                f"{name} changes the subscriptions, made at start-up: restart the node, or run the "
                "lifecycle node (--lifecycle) and deactivate it first")
    return None


def segmentation_method(params: dict[str, Any], prompts: int = 0) -> str:
    """Where this trigger's masks come from ('mask_topic', 'depth', 'learned' or 'prompt'): the
    ``segmentation`` parameter, its 'auto' resolved by what is subscribed and whether someone
    pointed at objects (``prompts`` received)."""
    method = params["segmentation"]
    if method != "auto":
        return method
    if params["use_mask"] or params["backend"].startswith("oracle"):
        return "mask_topic"                # the oracle's NOCS carries its own silhouette
    if prompts:
        return "prompt"
    return "depth" if params["use_depth"] else "learned"


def indexed_object_frame(namespace: str, object_id: str, index: int) -> str:
    """The TF frame of object ``index`` of a multi-object trigger: ``<ns>/<object_id>_<index>``."""
    return object_frame(namespace, f"{object_id}_{index}")
