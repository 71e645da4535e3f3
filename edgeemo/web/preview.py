"""The Live page's frame preview: only when `web.preview` is on, since it is the one thing that lets
pixels leave the analysis. The pipeline hands over the newest frame by reference (no copy, no
encoding); a JPEG with boxes and labels is made only when a logged-in page asks for it."""

from __future__ import annotations

import threading

import cv2

from edgeemo.core.types import Image
from edgeemo.vision.annotate import draw_faces
from edgeemo.vision.pixels import to_bgr

MAX_WIDTH = 640
JPEG_QUALITY = 80


class FramePreview:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._image: Image | None = None
        self._faces: list[dict] = []

    def offer(self, image: Image, faces: list[dict]) -> None:
        """From the track stage, every frame: keep a reference to the newest frame and its faces."""
        with self._lock:
            self._image, self._faces = image, faces

    def jpeg(self) -> bytes | None:
        """The newest frame with each face's box and label, at most MAX_WIDTH wide; None before the first."""
        with self._lock:
            image, faces = self._image, self._faces
        if image is None:
            return None
        image = to_bgr(image)  # converted here, when someone looks, not for every frame
        scale = min(1.0, MAX_WIDTH / image.shape[1])
        shown = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA) if scale < 1 else image.copy()
        draw_faces(shown, faces, scale)
        ok, data = cv2.imencode(".jpg", shown, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
        return data.tobytes() if ok else None
