"""The pixels the analysis looks at, from a BGR image or from a decoder's YUV 4:2:0 frame (types.Yuv420).

A video file's frames stay in the decoder's YUV planes: converting a whole 1280x720 frame to BGR
costs more than finding and classifying the faces in it, while the analysis looks at a small
part of it: a scaled-down copy on keyframes, a region around each followed face, a small grey copy
for motion, grey face crops for the classifier. So each of these is made from the planes where it
is needed, at its own size, and BGR images (cameras, stills, tests) take the same calls.

Grey is luma: the planes' Y in video range (16-235) stretched to full range, as OpenCV's grey of
the decoded BGR image is.
"""

from __future__ import annotations

import cv2
import numpy as np

from edgeemo.core.types import Image, Yuv420

# Video-range luma to full-range grey, rounded and clipped like a BGR image's cvtColor grey.
FULL_RANGE = np.clip(np.round((np.arange(256) - 16) * 255 / 219), 0, 255).astype(np.uint8)


def to_bgr(image: Image) -> np.ndarray:
    """The whole picture as BGR (the preview; colour models)."""
    return image if isinstance(image, np.ndarray) else _i420_to_bgr(image.y, image.u, image.v)


def small_grey(image: Image, width: int, height: int) -> np.ndarray:
    """A grey copy at width x height, sampled linearly (motion): from the Y plane, or from the BGR
    image shrunk first, so only the small copy is converted."""
    if isinstance(image, np.ndarray):
        small = cv2.resize(image, (width, height), interpolation=cv2.INTER_LINEAR)
        return cv2.cvtColor(small, cv2.COLOR_BGR2GRAY)
    return FULL_RANGE[cv2.resize(image.y, (width, height), interpolation=cv2.INTER_LINEAR)]


def full_range(luma: np.ndarray) -> np.ndarray:
    """Pixels cut or warped from a Yuv420's Y plane as the grey of its BGR image."""
    return FULL_RANGE[luma]


def region(image: Image, x0: int, y0: int, x1: int, y1: int) -> tuple[Image, int, int]:
    """The part of the picture in [x0, x1) x [y0, y1), and where its top-left corner lies in the
    picture: for YUV 4:2:0 the corners move out to even pixels, where the half-size planes align."""
    if isinstance(image, np.ndarray):
        return image[y0:y1, x0:x1], x0, y0
    x0, y0 = x0 & ~1, y0 & ~1
    x1, y1 = min(image.y.shape[1], x1 + (x1 & 1)), min(image.y.shape[0], y1 + (y1 & 1))
    return Yuv420(image.y[y0:y1, x0:x1], image.u[y0 // 2:y1 // 2, x0 // 2:x1 // 2],
                  image.v[y0 // 2:y1 // 2, x0 // 2:x1 // 2]), x0, y0


def shrunk_bgr(image: Image, width: int, height: int) -> tuple[np.ndarray, float, float]:
    """`shrink(image, width, height)` as BGR: a YUV picture is shrunk plane by plane, then converted
    at the small size."""
    if isinstance(image, np.ndarray):
        return shrink(image, width, height)
    even_w, even_h = width + (width & 1), height + (height & 1)
    y, sx, sy = shrink(image.y, even_w, even_h)
    u, _, _ = shrink(image.u, even_w // 2, even_h // 2)
    v, _, _ = shrink(image.v, even_w // 2, even_h // 2)
    return _i420_to_bgr(y, u, v)[:height, :width], sx, sy


def shrink(image: np.ndarray, width: int, height: int) -> tuple[np.ndarray, float, float]:
    """`image` resized to width x height, and the x and y scale factors it applied.

    While it can halve, it averages 2x2 blocks (INTER_AREA at exactly one half, OpenCV's fast path;
    an odd last row or column is dropped); the rest is linear, which at a ratio above one half
    aliases little. The result equals INTER_AREA at power-of-two ratios (640 to 320, 1280 to 320)
    and costs far less than INTER_AREA at fractional ratios or on crops, where OpenCV has no fast path.
    """
    sx, sy = 1.0, 1.0
    while image.shape[1] >= 2 * width and image.shape[0] >= 2 * height:
        h, w = image.shape[0] // 2, image.shape[1] // 2
        image = cv2.resize(image[:2 * h, :2 * w], (w, h), interpolation=cv2.INTER_AREA)
        sx, sy = sx / 2, sy / 2
    if image.shape[:2] != (height, width):
        sx, sy = sx * width / image.shape[1], sy * height / image.shape[0]
        image = cv2.resize(image, (width, height), interpolation=cv2.INTER_LINEAR)
    return image, sx, sy


def _i420_to_bgr(y: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Planes (even height and width) into OpenCV's I420 layout, converted in one call."""
    h, w = y.shape
    buffer = np.empty((h * 3 // 2, w), np.uint8)
    flat = buffer.reshape(-1)
    buffer[:h] = y
    flat[h * w:h * w * 5 // 4] = u.reshape(-1)
    flat[h * w * 5 // 4:] = v.reshape(-1)
    return cv2.cvtColor(buffer, cv2.COLOR_YUV2BGR_I420)
