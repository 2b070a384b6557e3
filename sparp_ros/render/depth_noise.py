"""A stereo RGB-D depth noise model: what a real depth camera does to the renderer's exact depth.

Our renders carry perfect z-depth, but the robot's camera is an active/passive stereo sensor
(RealSense D4xx class): noise growing with distance, random dropouts, holes where one camera
cannot see what the other sees, no depth on black or blown-out surfaces, "flying" pixels smeared
between foreground and background at silhouettes, and depth that comes in disparity steps and is
stored as whole millimetres. Tests, benchmarks and the data engine use this model to check that
what works on clean renders still works on such depth.

Every parameter lives in one frozen :class:`DepthNoise` (``STEREO_DEFAULT`` is a typical sensor at
tabletop range; ``DepthNoise.none()`` switches everything off), and :func:`apply_depth_noise` is
deterministic given its ``rng``. numpy + cv2 only, so the data engine and tests can use it without
ROS or torch.

Order of the effects, and why:

1. non-finite and negative depth become 0 ("no depth"), as ``capture._known_depth`` does;
2. edges, silhouettes and image brightness are analysed on the *clean* input: a sensor fails
   because of the scene's geometry and appearance, not because of its own noise;
3. axial Gaussian noise, sigma(z) = ``sigma_base_m`` + ``sigma_quadratic`` * z²;
4. flying pixels at depth discontinuities (they replace the value, noise included: outliers);
5. disparity quantisation, then rounding to the stored resolution (1 mm, as the uint16 PNG);
6. holes last (random, edge, dark, specular), so a hole is exactly 0 whatever came before.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, fields

import cv2
import numpy as np

# Rec. 601 luma weights (RGB order, the capture format's images): brightness as a sensor sees it.
_LUMA = np.array([0.299, 0.587, 0.114], np.float32)


@dataclass(frozen=True)
class DepthNoise:
    """Parameters of the stereo depth noise model (distances in metres, luminance in 0..255).

    Defaults describe a RealSense-D435-like sensor at 0.3–1.5 m: ~1.4 mm noise at 0.5 m, ~3.3 mm
    at 1 m, a 50 mm baseline with 1/8-pixel disparity steps, and a few percent of dropouts.
    """

    enabled: bool = True
    """False: :func:`apply_depth_noise` only cleans the input (NaN/inf/negative → 0). Lets a
    config carry the parameters while switching the model off."""

    sigma_base_m: float = 0.0008
    """Axial (z) noise floor: matching noise of the sensor independent of range (~0.8 mm)."""

    sigma_quadratic: float = 0.0025
    """Axial noise growth, 1/m: stereo depth error grows with z² (a fixed disparity error maps to
    dz = z² / (f·b) · dd), so sigma(z) = sigma_base_m + sigma_quadratic · z² (2.5 mm at 1 m
    on top of the floor)."""

    hole_fraction: float = 0.03
    """Probability that any valid pixel loses its depth: failed matches that show up as scattered
    holes even on well-textured, flat surfaces."""

    edge_threshold_m: float = 0.01
    """A depth step between 8-neighbours larger than this is a discontinuity (occlusion edge).
    1 cm: smaller steps are surface slope, which stereo handles; larger ones cast occlusion
    shadows and create flying pixels."""

    edge_hole_width_px: int = 2
    """Width of the hole band on the *far* side of a discontinuity: the background next to a
    foreground edge is seen by only one of the two cameras, so it cannot be matched. The real
    shadow lies on one side (towards the second camera) and scales with the disparity jump; a
    fixed band on every side is the rig-independent simplification. 0 switches edge holes off.
    Silhouettes against our renders' empty background (depth 0) have no far surface to lose."""

    dark_threshold: float = 30.0
    """Luminance (0..255) below which a pixel counts as dark: black, IR-absorbing surfaces give
    neither texture nor projector pattern to match."""

    dark_dropout_probability: float = 0.5
    """Probability that a dark pixel loses its depth."""

    specular_threshold: float = 250.0
    """Luminance (0..255) at or above which a pixel counts as saturated: specular highlights look
    different from the two viewpoints (and blow out), so they do not match."""

    specular_dropout_probability: float = 0.5
    """Probability that a saturated pixel loses its depth."""

    flying_pixel_probability: float = 0.3
    """Probability that a pixel on the near side of a discontinuity takes a depth between the
    foreground and the background: the matching window straddles both surfaces ("flying
    pixels", the spray around silhouettes in real point clouds)."""

    flying_pixel_distance_m: float = 0.1
    """How far behind the object a flying silhouette pixel may go. Our renders have no background
    geometry (depth 0), so there is no background depth to interpolate towards: a silhouette pixel
    (valid, next to depth 0) instead moves to z + u · flying_pixel_distance_m, u ~ U(0, 1) —
    as if a background lay this far behind. At steps inside the object the real far depth is used:
    z + u · (z_far − z)."""

    baseline_m: float = 0.05
    """Stereo baseline b (D435: 50 mm). With the focal length f (pixels) it sets the disparity
    f·b/z, hence the quantisation step z² / (f·b·disparity_subpixel)."""

    disparity_subpixel: float = 8.0
    """Disparity steps per pixel (8: the matcher resolves 1/8 pixel). Depth is quantised as
    z = f·b / (round(f·b/z · s) / s). 0 switches disparity quantisation off."""

    depth_resolution_m: float = 0.001
    """Final rounding of depth, 1 mm: what the capture format's uint16 PNG (and a 16UC1 topic)
    stores, applied here so in-memory captures match saved ones. 0 switches it off."""

    def __post_init__(self) -> None:
        if not isinstance(self.enabled, (bool, np.bool_)):
            raise ValueError(f"DepthNoise.enabled must be a bool, got {self.enabled!r}")
        for f in fields(self):
            if f.name == "enabled":
                continue
            value = getattr(self, f.name)
            is_number = isinstance(value, (int, float, np.number))
            if isinstance(value, (bool, np.bool_)) or not is_number:
                raise ValueError(f"DepthNoise.{f.name} must be a number, got {value!r}")
            if not math.isfinite(float(value)) or value < 0:
                raise ValueError(f"DepthNoise.{f.name} must be finite and >= 0, got {value!r}")
        for name in ("hole_fraction", "dark_dropout_probability", "specular_dropout_probability",
                     "flying_pixel_probability"):
            if getattr(self, name) > 1:
                raise ValueError(f"DepthNoise.{name} is a probability in [0, 1], "
                                 f"got {getattr(self, name)!r}")
        for name in ("dark_threshold", "specular_threshold"):
            if getattr(self, name) > 255:
                raise ValueError(f"DepthNoise.{name} is a luminance in [0, 255], "
                                 f"got {getattr(self, name)!r}")
        if int(self.edge_hole_width_px) != self.edge_hole_width_px:
            raise ValueError(f"DepthNoise.edge_hole_width_px must be a whole number of pixels, "
                             f"got {self.edge_hole_width_px!r}")
        if self.edge_threshold_m == 0:
            raise ValueError("DepthNoise.edge_threshold_m must be > 0 (0 would make every pixel "
                             "an edge)")
        if self.baseline_m == 0:
            raise ValueError("DepthNoise.baseline_m must be > 0 (it divides the disparity)")

    @classmethod
    def none(cls) -> "DepthNoise":
        """The model switched off (``enabled=False``): depth passes through, only cleaned."""
        return cls(enabled=False)

    def sigma(self, z: np.ndarray | float) -> np.ndarray | float:
        """Axial noise standard deviation (metres) at depth ``z`` (metres)."""
        return self.sigma_base_m + self.sigma_quadratic * np.square(z)

    def quantisation_step(self, z: float, focal_px: float) -> float:
        """Depth step (metres) between neighbouring disparity levels at ``z``: z² / (f·b·s) to
        first order; 0 when disparity quantisation is off."""
        if self.disparity_subpixel == 0:
            return 0.0
        return z * z / (focal_px * self.baseline_m * self.disparity_subpixel)


STEREO_DEFAULT = DepthNoise()
"""A typical stereo RGB-D camera at tabletop range (the dataclass defaults)."""


def apply_depth_noise(depth: np.ndarray, image: np.ndarray | None, focal_px: float,
                      noise: DepthNoise, rng: np.random.Generator) -> np.ndarray:
    """``depth`` (HxW float metres, 0 = no depth) as the sensor described by ``noise`` would
    measure it: a new float32 array, 0 where a hole.

    ``image`` (HxW or HxWx3 uint8 RGB, same size) drives the dark and specular dropouts; None
    skips them. ``focal_px`` (the camera's fx) sets the disparity scale of the quantisation.
    NaN, ±inf and negative depths count as no depth. The random draws are full-image and in a
    fixed order, so the result depends only on ``rng``'s state, the shapes and the parameters.
    """
    # 1. Check and clean the inputs.
    depth = np.asarray(depth)
    if depth.ndim != 2:
        raise ValueError(f"depth must be HxW metres, got shape {depth.shape}")
    if not np.issubdtype(depth.dtype, np.floating):
        raise ValueError(f"depth must be float metres, got {depth.dtype} (uint16 millimetres: "
                         f"divide by 1000 first)")
    if not (isinstance(focal_px, (int, float, np.number)) and math.isfinite(focal_px)
            and focal_px > 0):
        raise ValueError(f"focal_px must be a finite number > 0, got {focal_px!r}")
    if image is not None:
        image = np.asarray(image)
        if image.dtype != np.uint8 or image.shape[:2] != depth.shape or image.ndim not in (2, 3) \
                or (image.ndim == 3 and image.shape[2] != 3):
            raise ValueError(f"image must be {depth.shape[0]}x{depth.shape[1]}(x3) uint8 like the "
                             f"depth, got {image.dtype} {image.shape}")
    z = depth.astype(np.float64)
    z[~np.isfinite(z) | (z < 0)] = 0.0
    if not noise.enabled:
        return z.astype(np.float32)
    valid = z > 0
    shape = z.shape

    # 2. Random draws, all full-image and always in this order (determinism, see docstring).
    gauss = rng.standard_normal(shape)
    u_hole, u_dark, u_spec, u_fly, u_fly_depth = rng.random((5, *shape))

    # 3. Geometry of the clean depth: discontinuities with their near and far sides.
    kernel = np.ones((3, 3), np.uint8)
    z_or_inf = np.where(valid, z, np.inf).astype(np.float32)
    nearest_nb = cv2.erode(z_or_inf, kernel, borderType=cv2.BORDER_REPLICATE).astype(np.float64)
    farthest_nb = cv2.dilate(z.astype(np.float32), kernel,
                             borderType=cv2.BORDER_REPLICATE).astype(np.float64)
    t = noise.edge_threshold_m
    far_side = valid & (z - nearest_nb > t)               # a nearer surface right next to it
    near_side = valid & (farthest_nb - z > t)             # a farther surface right next to it
    silhouette = valid & (cv2.erode(valid.astype(np.uint8), kernel,
                                    borderType=cv2.BORDER_REPLICATE) == 0)   # next to no depth

    # 4. Axial noise.
    out = z + gauss * noise.sigma(z)

    # 5. Flying pixels: between the surface and what lies behind it (see flying_pixel_distance_m).
    behind = np.where(silhouette, z + noise.flying_pixel_distance_m, farthest_nb)
    flying = (near_side | silhouette) & (u_fly < noise.flying_pixel_probability)
    out = np.where(flying, z + u_fly_depth * (behind - z), out)
    out[~valid | (out <= 0)] = 0.0                        # noise never creates depth

    # 6. Quantisation: disparity steps, then the stored resolution.
    has = out > 0
    if noise.disparity_subpixel > 0:
        fb = float(focal_px) * noise.baseline_m
        s = noise.disparity_subpixel
        levels = np.round(fb / np.where(has, out, 1.0) * s)
        # A depth beyond the farthest disparity level (level 0) is out of range: no depth.
        has &= levels > 0
        out = np.where(has, fb * s / np.maximum(levels, 1.0), 0.0)
    if noise.depth_resolution_m > 0:
        r = noise.depth_resolution_m
        out = np.round(out / r) * r
        has &= out > 0

    # 7. Holes.
    holes = ~has | (u_hole < noise.hole_fraction)
    w = int(noise.edge_hole_width_px)
    if w > 0 and far_side.any():
        # Far-side pixels within w of a nearer surface that is more than the threshold nearer.
        window = np.ones((2 * w + 1, 2 * w + 1), np.uint8)
        nearest_w = cv2.erode(z_or_inf, window, borderType=cv2.BORDER_REPLICATE)
        band = cv2.dilate(far_side.astype(np.uint8), window, borderType=cv2.BORDER_REPLICATE) > 0
        holes |= band & valid & (z - nearest_w > t)
    if image is not None:
        lum = image.astype(np.float32) if image.ndim == 2 else image.astype(np.float32) @ _LUMA
        holes |= (lum < noise.dark_threshold) & (u_dark < noise.dark_dropout_probability)
        holes |= (lum >= noise.specular_threshold) & (u_spec < noise.specular_dropout_probability)
    out[holes] = 0.0
    return out.astype(np.float32)
