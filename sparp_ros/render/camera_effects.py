"""Camera effects: what a real camera does to a clean render (numpy + OpenCV only).

One frozen dataclass holds every parameter; ``apply_camera_effects`` applies them in the order a
camera does: white balance and exposure on the linear scene, vignetting of the lens, defocus or
motion blur, sensor noise (shot + read), then JPEG compression of the stored image. Each effect
fires with its own probability and draws its strength from its own range, so a training set sees
clean images too. Everything random comes from the ``rng`` given, so a seed reproduces an image.

``CameraEffects.off()`` turns every effect off (the image comes back unchanged).
"""
from __future__ import annotations

from dataclasses import dataclass, fields, replace

import cv2
import numpy as np

_SRGB_GAMMA = 2.2                     # approximate sRGB transfer (enough for augmentation)


@dataclass(frozen=True)
class CameraEffects:
    """Every camera-effect parameter: a probability per effect and the range of its strength.

    Ranges are ``(low, high)``, drawn uniformly per image. Gains act on linear intensity.
    """

    # White balance: per-channel gain (R and B; G stays 1), a wrong colour temperature.
    white_balance_prob: float = 0.7
    white_balance_range: tuple[float, float] = (0.8, 1.25)
    # Exposure: one gain for all channels (under/over exposure), then clipping.
    exposure_prob: float = 0.7
    exposure_range: tuple[float, float] = (0.6, 1.6)
    # Vignetting: brightness falls to (1 - strength) at the image corners, quadratically in radius.
    vignetting_prob: float = 0.5
    vignetting_range: tuple[float, float] = (0.1, 0.5)
    # Blur: Gaussian defocus (sigma in px) or a linear motion blur (length in px), one of them.
    blur_prob: float = 0.4
    defocus_sigma_range: tuple[float, float] = (0.3, 1.5)
    motion_prob: float = 0.3          # of the blurred images, this share gets motion blur
    motion_length_range: tuple[int, int] = (3, 9)
    # Sensor noise (on 0–255 values): Gaussian read noise of std ``noise_std`` plus shot noise
    # whose variance grows with intensity (``shot_noise`` × value).
    noise_prob: float = 0.8
    noise_std_range: tuple[float, float] = (1.0, 6.0)
    shot_noise_range: tuple[float, float] = (0.0, 0.15)
    # JPEG compression of the stored image (quality 0–100).
    jpeg_prob: float = 0.6
    jpeg_quality_range: tuple[int, int] = (40, 95)

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name.endswith("_prob"):
                if not 0.0 <= value <= 1.0:
                    raise ValueError(f"CameraEffects.{f.name} must be in [0, 1], got {value}")
            elif f.name.endswith("_range"):
                lo, hi = value
                if lo > hi or lo < 0:
                    raise ValueError(f"CameraEffects.{f.name} must be (low, high) with "
                                     f"0 <= low <= high, got {value}")
        if self.jpeg_quality_range[1] > 100:
            raise ValueError(f"CameraEffects.jpeg_quality_range must be within 0–100, got "
                             f"{self.jpeg_quality_range}")
        if self.motion_length_range[0] < 1:
            raise ValueError(f"CameraEffects.motion_length_range must start at >= 1 px, got "
                             f"{self.motion_length_range}")

    @classmethod
    def off(cls) -> "CameraEffects":
        """Every effect off: ``apply_camera_effects`` returns the image unchanged."""
        return cls(**{f.name: 0.0 for f in fields(cls) if f.name.endswith("_prob")})

    def only(self, *names: str) -> "CameraEffects":
        """These effects always on (``"noise"``, ``"jpeg"``, ``"blur"``, ...), every other off."""
        probs = {f.name for f in fields(self) if f.name.endswith("_prob")}
        unknown = [n for n in names if f"{n}_prob" not in probs]
        if unknown:
            raise ValueError(f"unknown effect(s) {unknown}; known: "
                             f"{sorted(p[:-5] for p in probs)}")
        return replace(self, **{p: (1.0 if p[:-5] in names else 0.0) for p in probs
                                if p != "motion_prob"})


def apply_camera_effects(rgb: np.ndarray, rng: np.random.Generator,
                         params: CameraEffects = CameraEffects()) -> np.ndarray:
    """A copy of ``rgb`` (uint8 HxWx3) as a real camera would have stored it (uint8 HxWx3)."""
    rgb = np.asarray(rgb)
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"rgb must be a uint8 HxWx3 image, got {rgb.dtype} {rgb.shape}")
    p = params
    fire = {name: rng.random() < getattr(p, f"{name}_prob")
            for name in ("white_balance", "exposure", "vignetting", "blur", "noise", "jpeg")}
    if not any(fire.values()):
        return rgb.copy()
    h, w = rgb.shape[:2]
    img = rgb.astype(np.float32)
    # 1. Light on the sensor: white balance, exposure, vignetting (linear intensity).
    if fire["white_balance"] or fire["exposure"] or fire["vignetting"]:
        lin = (img / 255.0) ** _SRGB_GAMMA
        gain = np.ones(3, np.float32)
        if fire["white_balance"]:
            gain[[0, 2]] = rng.uniform(*p.white_balance_range, size=2)
        if fire["exposure"]:
            gain *= rng.uniform(*p.exposure_range)
        lin = lin * gain
        if fire["vignetting"]:
            strength = rng.uniform(*p.vignetting_range)
            v, u = np.mgrid[0:h, 0:w].astype(np.float32)
            r2 = ((u - (w - 1) / 2) ** 2 + (v - (h - 1) / 2) ** 2) / (((w - 1) / 2) ** 2
                                                                     + ((h - 1) / 2) ** 2)
            lin = lin * (1.0 - strength * r2)[..., None]
        img = 255.0 * np.clip(lin, 0.0, 1.0) ** (1.0 / _SRGB_GAMMA)
    # 2. Optics and motion: defocus or motion blur.
    if fire["blur"]:
        if rng.random() < p.motion_prob:
            length = int(rng.integers(p.motion_length_range[0], p.motion_length_range[1] + 1))
            kernel = np.zeros((length, length), np.float32)
            kernel[length // 2, :] = 1.0 / length
            rot = cv2.getRotationMatrix2D(((length - 1) / 2, (length - 1) / 2),
                                          float(rng.uniform(0, 180)), 1.0)
            kernel = cv2.warpAffine(kernel, rot, (length, length))
            kernel /= max(float(kernel.sum()), 1e-6)
            img = cv2.filter2D(img, -1, kernel, borderType=cv2.BORDER_REFLECT)
        else:
            img = cv2.GaussianBlur(img, (0, 0), float(rng.uniform(*p.defocus_sigma_range)))
    # 3. Sensor noise: read noise + intensity-dependent shot noise.
    if fire["noise"]:
        std = rng.uniform(*p.noise_std_range)
        shot = rng.uniform(*p.shot_noise_range)
        sigma = np.sqrt(std ** 2 + shot * np.clip(img, 0.0, 255.0))
        img = img + sigma * rng.standard_normal(img.shape).astype(np.float32)
    out = np.clip(np.rint(img), 0, 255).astype(np.uint8)
    # 4. Storage: JPEG (OpenCV encodes BGR; the channel order does not matter for the round trip
    #    except through chroma subsampling, so convert).
    if fire["jpeg"]:
        quality = int(rng.integers(p.jpeg_quality_range[0], p.jpeg_quality_range[1] + 1))
        ok, buf = cv2.imencode(".jpg", cv2.cvtColor(out, cv2.COLOR_RGB2BGR),
                               [cv2.IMWRITE_JPEG_QUALITY, quality])
        if ok:
            out = cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    return out


__all__ = ["CameraEffects", "apply_camera_effects"]
