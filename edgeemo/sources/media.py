"""PyAV: a file or stream opened with a bounded wait, and a video file's frames left in the decoder's planes."""

from __future__ import annotations

import logging
import time
from errno import ECONNREFUSED

import numpy as np

from edgeemo.config.redact import redact
from edgeemo.core.types import Image, Yuv420
from edgeemo.sources.spec import SourceError

log = logging.getLogger(__name__)


def open_media(target: str, timeout_s: float | None, what: str):
    """A PyAV container of a file or URL; the timeout bounds opening and every read, so a stalled
    stream ends instead of blocking. A failure is one SourceError naming it in plain words, credentials masked."""
    import av

    started = time.monotonic()
    try:
        return av.open(target, timeout=timeout_s)
    except (av.FFmpegError, OSError) as exc:
        why = plain_words(exc, timeout_s, time.monotonic() - started)
        raise SourceError(redact(f"{what} {target}: cannot open: {why}")) from None


def plain_words(exc: Exception, timeout_s: float | None, elapsed_s: float) -> str:
    """What went wrong, without FFmpeg's error numbers (`[Errno 111] ...`): a stream that accepted the
    connection and never answered has timed out, whatever FFmpeg calls the interruption."""
    if timeout_s is not None and elapsed_s >= 0.9 * timeout_s:
        return f"timed out after {timeout_s:g} s (no answer)"
    errno = getattr(exc, "errno", None)
    if errno == ECONNREFUSED:
        return "connection refused (nothing listens there)"
    text = getattr(exc, "strerror", None) or str(exc)
    return {"Invalid data found when processing input": "not a video or sound file it can read (invalid data)"}.get(
        text, text[:1].lower() + text[1:])


def open_video(target: str, timeout_s: float | None):
    """open_media, and its first video stream set to decode in one thread (frame-parallel decoding
    costs more CPU per frame than it saves here); a container without one is a SourceError."""
    container = open_media(target, timeout_s, "source")
    if not container.streams.video:
        container.close()
        raise SourceError(redact(f"source {target}: no video stream"))
    stream = container.streams.video[0]
    stream.codec_context.thread_count = 1
    return container, stream


class VideoFile:
    """A video file's frames decoded with PyAV and left in the decoder's planes (types.Yuv420): the
    analysis converts only the parts it looks at (vision.pixels). Frames in another layout, or of
    odd width or height, are converted to BGR whole."""

    def __init__(self, path: str) -> None:
        import av

        self._av = av
        self._container, stream = open_video(path, None)
        self._frames = self._container.decode(stream)
        # pts count from the video stream's start, as the sound's do (audio.FileAudioReader)
        self._start = float(stream.start_time * stream.time_base) if stream.start_time is not None else 0.0
        self.fps = float(stream.average_rate or 0.0)
        self.path = path

    def next(self) -> tuple[object, float | None] | None:
        """The next decoded frame and its pts (None when the file has none); None at the end or on bad data."""
        try:
            frame = next(self._frames, None)
        except self._av.FFmpegError as exc:
            log.warning("video %s stops here: %s", self.path, exc)
            return None
        return None if frame is None else (frame, None if frame.time is None else frame.time - self._start)

    @staticmethod
    def pixels(frame: object) -> Image:
        """The frame's planes as numpy views (no copy), or the frame converted to BGR."""
        w, h = frame.width, frame.height
        if frame.format.name != "yuv420p" or w % 2 or h % 2:
            return frame.to_ndarray(format="bgr24")
        return Yuv420(*(plane_view(p, rows, cols) for p, rows, cols in
                        zip(frame.planes, (h, h // 2, h // 2), (w, w // 2, w // 2))))

    def close(self) -> None:
        self._container.close()


def plane_view(plane: object, rows: int, cols: int) -> np.ndarray:
    """A decoded plane as a [rows, cols] uint8 view; it keeps the frame's buffer alive."""
    flat = np.frombuffer(plane, np.uint8, count=rows * plane.line_size)
    return flat.reshape(rows, plane.line_size)[:, :cols]


def media_duration(path: str) -> float:
    """Seconds a media file lasts (its container's duration): the period of a looping source."""
    import av

    with av.open(path) as container:
        return (container.duration or 0) / av.time_base
