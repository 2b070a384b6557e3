"""Camera-driver images from their raw fields to numpy: no ROS import, so bags read with
``rosbags`` and fuzz tests use it without message objects (``ros.messages`` wraps it for messages).

A raw ``sensor_msgs/Image`` is (``data``, ``width``, ``height``, ``encoding``, ``step``,
``is_bigendian``); a ``sensor_msgs/CompressedImage`` is (``data``, ``format``). ``data`` may be
anything with the buffer protocol (``bytes``, ``array.array('B')`` as rclpy gives it, a uint8
numpy array as rosbags gives it) or a list of ints.

Behaviour follows cv_bridge: ``step`` is the length of a row in bytes, row padding is skipped,
``is_bigendian`` is honoured for 16- and 32-bit data, and every failure is one error type,
:class:`ImageConversionError`, whose message names the field and the value it got. Nothing else
escapes these functions (``test/ros/test_messages_fuzz.py`` checks it).

Colour conversion to RGB (:func:`raw_to_rgb`): rgb8/bgr8/rgba8/bgra8 (alpha dropped), rgb16 &c.
and mono16/16UC1 scaled to 8 bits (``v / 257``, cv_bridge's full-range scaling), mono8/8UC1
replicated, 32FC1 as intensity in [0, 1], packed YUV 4:2:2 (``yuv422`` = ``uyvy`` = UYVY,
``yuv422_yuy2`` = ``yuyv`` = YUYV; even width) and 8-bit Bayer (demosaiced). Compressed images:
JPEG or PNG (image_transport's ``compressed`` transport), size read from the header before
decoding so that a forged header cannot allocate gigabytes.
"""
from __future__ import annotations

import struct
from typing import Any

import cv2
import numpy as np

MAX_IMAGE_SIDE = 8192
"""Largest width or height accepted (pixels): a bigger header is a corrupt message, not a camera."""

# Stored layouts: encoding -> (numpy dtype, channels). image_to_numpy returns these as stored.
ENCODINGS: dict[str, tuple[type, int]] = {
    "rgb8": (np.uint8, 3), "bgr8": (np.uint8, 3), "rgba8": (np.uint8, 4), "bgra8": (np.uint8, 4),
    "rgb16": (np.uint16, 3), "bgr16": (np.uint16, 3), "rgba16": (np.uint16, 4),
    "bgra16": (np.uint16, 4),
    "mono8": (np.uint8, 1), "8UC1": (np.uint8, 1), "8UC3": (np.uint8, 3), "8UC4": (np.uint8, 4),
    "mono16": (np.uint16, 1), "16UC1": (np.uint16, 1), "16UC3": (np.uint16, 3),
    "32FC1": (np.float32, 1),
    # packed 4:2:2, two bytes per pixel (U Y0 V Y1 / Y0 U Y1 V for every two pixels)
    "yuv422": (np.uint8, 2), "uyvy": (np.uint8, 2), "yuv422_yuy2": (np.uint8, 2),
    "yuyv": (np.uint8, 2),
    "bayer_rggb8": (np.uint8, 1), "bayer_bggr8": (np.uint8, 1), "bayer_gbrg8": (np.uint8, 1),
    "bayer_grbg8": (np.uint8, 1),
}
DEPTH_ENCODINGS = ("16UC1", "mono16", "32FC1")
"""16-bit depth is millimetres (REP 118), 32FC1 is metres."""
MASK_ENCODINGS = ("mono8", "8UC1")
MM_PER_M = 1000.0

# encoding -> how raw_to_rgb turns the stored array into RGB
_RGB_ORDER = {"rgb8": (0, 1, 2), "rgba8": (0, 1, 2), "8UC3": (0, 1, 2), "8UC4": (0, 1, 2),
              "bgr8": (2, 1, 0), "bgra8": (2, 1, 0), "rgb16": (0, 1, 2), "rgba16": (0, 1, 2),
              "bgr16": (2, 1, 0), "bgra16": (2, 1, 0)}
_MONO = ("mono8", "8UC1", "mono16", "16UC1", "32FC1")
_YUV422 = {"yuv422": cv2.COLOR_YUV2RGB_UYVY, "uyvy": cv2.COLOR_YUV2RGB_UYVY,
           "yuv422_yuy2": cv2.COLOR_YUV2RGB_YUYV, "yuyv": cv2.COLOR_YUV2RGB_YUYV}
# ROS names the 2x2 pattern from the top-left pixel, OpenCV from the second row (as cv_bridge maps).
_BAYER = {"bayer_rggb8": cv2.COLOR_BayerBG2RGB, "bayer_bggr8": cv2.COLOR_BayerRG2RGB,
          "bayer_gbrg8": cv2.COLOR_BayerGR2RGB, "bayer_grbg8": cv2.COLOR_BayerGB2RGB}
RGB_ENCODINGS = tuple(sorted(set(_RGB_ORDER) | set(_MONO) | set(_YUV422) | set(_BAYER)))
"""Encodings :func:`raw_to_rgb` turns into RGB (every encoding in ENCODINGS but 16UC3)."""
UINT16_TO_UINT8 = 257.0
"""65535 / 255: 16-bit intensities are scaled to 8 bits over the full range (as cv_bridge)."""

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_JPEG_SOI = b"\xff\xd8"
# JPEG start-of-frame markers (baseline, progressive, lossless, ...): not DHT (C4), JPG (C8), DAC (CC).
_JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
_JPEG_STANDALONE = {0x01, 0xD8} | set(range(0xD0, 0xD8))


class ImageConversionError(ValueError):
    """An image message cannot be converted (unsupported encoding or format, inconsistent
    ``step`` or size, truncated data, too large, undecodable). The message names the field and
    the value it got."""


# -- raw images ------------------------------------------------------------------------------------
def raw_to_numpy(data: Any, width: int, height: int, encoding: str, step: int,
                 is_bigendian: bool | int = False, max_side: int = MAX_IMAGE_SIDE) -> np.ndarray:
    """The pixels as an HxW (one channel) or HxWxC array of the encoding's dtype (see
    ``ENCODINGS``), native byte order, channels as stored (no colour conversion).

    Raises ImageConversionError for an unsupported encoding, a zero or negative size, a side over
    ``max_side``, a ``step`` shorter than one row, or ``data`` that is not exactly
    ``step * height`` bytes. Rows may be padded (``step`` > ``width`` × bytes per pixel).
    """
    encoding = str(encoding)
    if encoding not in ENCODINGS:
        raise ImageConversionError(f"unsupported image encoding {encoding!r}; "
                                   f"supported: {sorted(ENCODINGS)}")
    dtype, channels = ENCODINGS[encoding]
    w, h, step = _int("width", width), _int("height", height), _int("step", step)
    _check_size(w, h, max_side)
    dt = np.dtype(dtype).newbyteorder(">" if is_bigendian else "<")
    row_bytes = w * channels * dt.itemsize
    if step < row_bytes:
        raise ImageConversionError(f"step {step} is shorter than one row of {w} {encoding} "
                                   f"pixels ({row_bytes} bytes)")
    buf = _bytes(data)
    if buf.size != step * h:
        what = "truncated" if buf.size < step * h else "too long"
        raise ImageConversionError(f"image data {what}: {buf.size} bytes, expected step*height = "
                                   f"{step}*{h} = {step * h}")
    rows = np.ascontiguousarray(buf.reshape(h, step)[:, :row_bytes])
    arr = rows.view(dt).reshape((h, w, channels) if channels > 1 else (h, w))
    return arr.astype(dt.newbyteorder("="), copy=False)


def raw_to_rgb(data: Any, width: int, height: int, encoding: str, step: int,
               is_bigendian: bool | int = False, max_side: int = MAX_IMAGE_SIDE) -> np.ndarray:
    """HxWx3 uint8 RGB from any encoding in ``RGB_ENCODINGS`` (see the module docstring for how
    each is converted). Raises ImageConversionError as :func:`raw_to_numpy`, and for an encoding
    with no colour meaning (16UC3) or a YUV 4:2:2 image of odd width."""
    encoding = str(encoding)
    if encoding in ENCODINGS and encoding not in RGB_ENCODINGS:
        raise ImageConversionError(f"image encoding {encoding!r} has no colour meaning; "
                                   f"colour images: {list(RGB_ENCODINGS)}")
    arr = raw_to_numpy(data, width, height, encoding, step, is_bigendian, max_side)
    if encoding in _YUV422:
        if arr.shape[1] % 2:
            raise ImageConversionError(f"{encoding} packs two pixels in four bytes: width must be "
                                       f"even, got {arr.shape[1]}")
        return cv2.cvtColor(arr, _YUV422[encoding])
    if encoding in _BAYER:
        return cv2.cvtColor(arr, _BAYER[encoding])
    arr = _to_uint8(arr)
    if arr.ndim == 2:
        return np.repeat(arr[..., None], 3, axis=2)
    return np.ascontiguousarray(arr[..., list(_RGB_ORDER[encoding])])


def raw_to_depth(data: Any, width: int, height: int, encoding: str, step: int,
                 is_bigendian: bool | int = False, max_side: int = MAX_IMAGE_SIDE) -> np.ndarray:
    """HxW float32 depth in metres, 0 = unknown (16UC1/mono16 in mm, 32FC1 in m; NaN, inf and
    negative values → 0)."""
    if str(encoding) not in DEPTH_ENCODINGS:
        raise ImageConversionError(f"depth image must be one of {DEPTH_ENCODINGS}, "
                                   f"got {encoding!r}")
    arr = raw_to_numpy(data, width, height, encoding, step, is_bigendian, max_side)
    if arr.dtype == np.uint16:
        return arr.astype(np.float32) / MM_PER_M
    depth = arr.astype(np.float32, copy=True)
    depth[~np.isfinite(depth) | (depth < 0)] = 0.0
    return depth


def raw_to_mask(data: Any, width: int, height: int, encoding: str, step: int,
                is_bigendian: bool | int = False, max_side: int = MAX_IMAGE_SIDE) -> np.ndarray:
    """HxW bool object mask from a mono8/8UC1 image (object > 127)."""
    if str(encoding) not in MASK_ENCODINGS:
        raise ImageConversionError(f"mask image must be mono8 or 8UC1, got {encoding!r}")
    return raw_to_numpy(data, width, height, encoding, step, is_bigendian, max_side) > 127


# -- compressed images -----------------------------------------------------------------------------
def compressed_to_rgb(data: Any, format: str = "", max_side: int = MAX_IMAGE_SIDE) -> np.ndarray:
    """HxWx3 uint8 RGB from a ``sensor_msgs/CompressedImage`` (JPEG or PNG; ``format`` as
    image_transport writes it, e.g. ``"rgb8; jpeg compressed bgr8"``, or ``"jpeg"``).

    The codec is recognised from the data's signature; the image size is read from the header and
    checked against ``max_side`` before decoding. Raises ImageConversionError for
    ``compressedDepth``, another codec, a size over ``max_side``, or data that does not decode.
    """
    fmt = str(format)
    if "compresseddepth" in fmt.lower():
        raise ImageConversionError(f"CompressedImage format {fmt!r} is a compressed depth image, "
                                   "not a colour image")
    buf = _bytes(data)
    head = buf[:64].tobytes()
    if head.startswith(_PNG_SIGNATURE):
        size = _png_size(head)
    elif head.startswith(_JPEG_SOI):
        size = _jpeg_size(buf)
    else:
        raise ImageConversionError(f"CompressedImage (format {fmt!r}, {buf.size} bytes) is "
                                   "neither JPEG nor PNG")
    if size is None:
        raise ImageConversionError(f"CompressedImage (format {fmt!r}, {buf.size} bytes): no image "
                                   "size in its header (truncated or corrupt)")
    _check_size(size[0], size[1], max_side)
    try:
        bgr = cv2.imdecode(buf, cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
    except cv2.error as exc:
        raise ImageConversionError(f"CompressedImage (format {fmt!r}) does not decode: "
                                   f"{str(exc).strip().splitlines()[-1]}") from exc
    if bgr is None or bgr.ndim != 3 or bgr.shape[2] != 3 or bgr.shape[1::-1] != size:
        raise ImageConversionError(f"CompressedImage (format {fmt!r}, {buf.size} bytes) does not "
                                   "decode (truncated or corrupt)")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def _png_size(head: bytes) -> tuple[int, int] | None:
    """(width, height) from the IHDR chunk that must follow the signature."""
    if len(head) < 24 or head[12:16] != b"IHDR":
        return None
    return struct.unpack(">II", head[16:24])


def _jpeg_size(buf: np.ndarray) -> tuple[int, int] | None:
    """(width, height) from the first start-of-frame segment; None if there is none before the
    scan data or the segments run past the end."""
    data = buf.tobytes()
    i, n = 2, len(data)
    while i + 4 <= n:
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:                  # fill byte
            i += 1
            continue
        if marker in _JPEG_STANDALONE:
            i += 2
            continue
        if marker == 0xDA:                  # start of scan: no frame header came first
            return None
        length = (data[i + 2] << 8) | data[i + 3]
        if marker in _JPEG_SOF:
            if i + 9 > n or length < 7:
                return None
            height, width = struct.unpack(">HH", data[i + 5:i + 9])
            return width, height
        if length < 2:
            return None
        i += 2 + length
    return None


# -- helpers ---------------------------------------------------------------------------------------
def _int(name: str, value: Any) -> int:
    try:
        out = int(value)
    except (TypeError, ValueError, OverflowError) as exc:
        raise ImageConversionError(f"{name} must be an integer, got {value!r}") from exc
    if out < 0:
        raise ImageConversionError(f"{name} must not be negative, got {out}")
    return out


def _check_size(w: int, h: int, max_side: int) -> None:
    if w == 0 or h == 0:
        raise ImageConversionError(f"image has zero size ({w}x{h})")
    if w > max_side or h > max_side:
        raise ImageConversionError(f"image is {w}x{h}, larger than {max_side} pixels per side "
                                   "(max_image_side)")


def _bytes(data: Any) -> np.ndarray:
    """The message's data as a flat uint8 array (a view where the buffer allows)."""
    if isinstance(data, np.ndarray) and data.dtype == np.uint8:
        return data.reshape(-1)
    if isinstance(data, (bytes, bytearray, memoryview)) or hasattr(data, "typecode"):
        try:
            return np.frombuffer(data, dtype=np.uint8)
        except (TypeError, ValueError, BufferError):
            pass
    try:
        return np.asarray(data, dtype=np.uint8).reshape(-1)
    except (TypeError, ValueError, OverflowError) as exc:
        raise ImageConversionError(f"image data is not a byte buffer ({type(data).__name__})") from exc


def _to_uint8(arr: np.ndarray) -> np.ndarray:
    if arr.dtype == np.uint8:
        return arr
    if arr.dtype == np.uint16:
        return np.round(arr / UINT16_TO_UINT8).astype(np.uint8)
    # float intensity in [0, 1] (cv_bridge's convention); NaN and inf → 0
    f = np.nan_to_num(arr.astype(np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    return np.round(np.clip(f, 0.0, 1.0) * 255.0).astype(np.uint8)
