"""Frames of one source with their pts, whatever the source: OpenCV for cameras, URLs and stills, PyAV for video files."""

from __future__ import annotations

import logging
import os
import sys
import time
from collections import deque
from pathlib import Path

import cv2
import numpy as np

from edgeemo.config.redact import redact
from edgeemo.core.types import Image
from edgeemo.sources.media import VideoFile
from edgeemo.sources.spec import SourceError, SourceSpec, list_images

log = logging.getLogger(__name__)
_LIVE_EPOCH = time.monotonic()


def live_pts() -> float:
    """The pts of live cameras and microphones: one monotonic clock for the whole process.

    Shared so that a camera and a microphone of one source line up, and kept across reconnects.
    """
    return time.monotonic() - _LIVE_EPOCH



def quiet_native_logs() -> None:
    """Keep OpenCV's and FFmpeg's own lines (`[ WARN:0@...] cap_v4l.cpp ...`, `[tcp @ 0x...] ...`) out
    of the log: every failure they report reaches the log once, in our words. Before the first capture."""
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # AV_LOG_QUIET for OpenCV's FFmpeg
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
    import av.logging

    av.logging.set_level(None)  # PyAV's FFmpeg: no log callback, nothing printed


def check_camera_exists(target: str | int) -> None:
    """A V4L2 camera that is not there, said plainly (OpenCV only warns that it cannot open it)."""
    device = f"/dev/video{target}" if isinstance(target, int) else str(target)
    if sys.platform.startswith("linux") and device.startswith("/dev/") and not os.path.exists(device):
        raise SourceError(f"camera {device} does not exist (not plugged in? `ls /dev/video*` lists the cameras)")


class FrameReader:
    """Frames of one source with their pts; `read()` returns None at the end or on failure."""

    def __init__(self, spec: SourceSpec, timeout_s: float | None = None) -> None:
        """`timeout_s`: how long opening or reading a live source may block before it counts as failed."""
        self.spec = spec
        self.fps = 0.0
        self.index = 0
        self._images: deque[Path] = deque()
        self._cap: cv2.VideoCapture | None = None
        self._video: VideoFile | None = None
        if spec.kind in ("image", "folder"):
            self._images = deque(list_images(Path(str(spec.target))))
            if not self._images:
                raise SourceError(f"source {spec.target}: no images found")
            return
        if spec.kind == "video":
            self._video = VideoFile(str(spec.target))
            self.fps = self._video.fps
            return
        if spec.kind == "camera":
            check_camera_exists(spec.target)
        # One decoder thread: frame-parallel decoding costs more CPU per frame than it saves here.
        params = [] if spec.kind == "camera" else [cv2.CAP_PROP_N_THREADS, 1]
        if timeout_s is not None and spec.kind == "stream":  # a stalled server must not block a read forever
            msec = int(timeout_s * 1000)
            params += [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, msec, cv2.CAP_PROP_READ_TIMEOUT_MSEC, msec]
        started = time.monotonic()
        self._cap = cv2.VideoCapture(spec.target, cv2.CAP_ANY, params)
        if not self._cap.isOpened():
            if timeout_s is not None and spec.kind == "stream" and time.monotonic() - started >= 0.9 * timeout_s:
                raise SourceError(f"source {redact(spec.target)}: cannot open: timed out after {timeout_s:g} s (no answer)")
            raise SourceError(f"source {redact(spec.target)}: cannot open (not a video, or camera/stream not available)")
        self.fps = self._cap.get(cv2.CAP_PROP_FPS) or 0.0
        if self.fps > 1000:  # some webcams report nonsense
            self.fps = 0.0

    def read(self) -> tuple[Image, float] | None:
        if self._video is not None:
            item = self._video.next()
            return None if item is None else (self._video.pixels(item[0]), self._file_pts(item[1]))
        if self._cap is None:
            return self._read_image()
        ok, image = self._cap.read()
        if not ok or image is None:
            return None
        return image, self._next_pts()

    def skip(self) -> float | None:
        """Read the next frame without turning it into pixels; its pts, None at the end.

        A camera's MJPEG frame is then never decoded (OpenCV's grab), and a video's is decoded
        (later frames need it) but never made into an array.
        """
        if self._video is not None:
            item = self._video.next()
            return None if item is None else self._file_pts(item[1])
        if self._cap is None:
            return None if self._read_image() is None else 0.0
        return self._next_pts() if self._cap.grab() else None

    def _file_pts(self, pts: float | None) -> float:
        """The frame's pts as the file gives it, else counted from the frame rate; the next index."""
        pts = self.index / (self.fps or 30.0) if pts is None else pts
        self.index += 1
        return pts

    def _next_pts(self) -> float:
        """The pts of the frame OpenCV just read."""
        if self.spec.live:
            self.index += 1
            return live_pts()
        msec = self._cap.get(cv2.CAP_PROP_POS_MSEC)
        return self._file_pts(msec / 1000 if msec > 0 or self.index == 0 else None)

    def _read_image(self) -> tuple[np.ndarray, float] | None:
        while self._images:
            path = self._images.popleft()
            image = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if image is not None:
                self.index += 1
                return image, 0.0
            log.warning("skipping %s: not a readable image", path)
        return None

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
        if self._video is not None:
            self._video.close()
