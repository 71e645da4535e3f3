"""Capture: one thread per source, reading frames into a shared mailbox with one slot per source.

Live sources (cameras, streams, and files played at their own rate) overwrite their slot, so a
slow consumer always gets the newest frame and never builds a backlog; every overwritten frame is
counted as dropped. In `lossless` mode (``--once``) the reader waits for its slot instead, so every
frame of a file is analysed. Cameras and streams that fail or stall are reopened with back-off.
Video files are decoded with PyAV and their frames left in the decoder's YUV planes (VideoFile);
cameras, URLs without sound and stills are read with OpenCV, as BGR.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol
from urllib.parse import urlparse

import cv2
import numpy as np

from edgeemo.config.redact import redact
from edgeemo.config.schema import SourceConfig
from edgeemo.service.metrics import Metrics
from edgeemo.core.resources import sample_video
from edgeemo.service.supervisor import Backoff, Supervised
from edgeemo.core.types import Frame, Image, Yuv420

log = logging.getLogger(__name__)
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}
AUDIO_SUFFIXES = {".wav", ".flac", ".mp3", ".ogg", ".opus", ".m4a", ".aac"}
_LIVE_EPOCH = time.monotonic()
LOSSLESS_DEPTH = 8   # frames a lossless reader may decode ahead (see Mailbox)


def live_pts() -> float:
    """The pts of live cameras and microphones: one monotonic clock for the whole process.

    Shared so that a camera and a microphone of one source line up, and kept across reconnects.
    """
    return time.monotonic() - _LIVE_EPOCH


class FrameGate(Protocol):
    """Which frames of an idle source need looking at (vision.scheduler.DetectionScheduler)."""

    idle_every: int

    def needs(self, source: str, number: int) -> bool: ...


class SourceError(Exception):
    """A source that cannot be opened at all (missing file, unreadable video, bad URL)."""


@dataclass(frozen=True)
class SourceSpec:
    kind: str                  # camera | stream | video | image | folder | audio (sound only)
    target: str | int          # what cv2 opens (or the image path / folder)
    loop: bool = False         # played at its own rate, it starts again at its end (the sample)

    @property
    def live(self) -> bool:
        return self.kind in ("camera", "stream")


def parse_source(url: str) -> SourceSpec:
    """Tell what a source string means: `sample`, camera index, /dev/videoN, URL, file or folder."""
    if url == "sample":
        return SourceSpec("video", str(sample_video()), loop=True)  # like a camera, until stopped
    if url.isdigit():
        return SourceSpec("camera", int(url))
    if url.startswith("/dev/video"):
        return SourceSpec("camera", url)
    if urlparse(url).scheme in ("rtsp", "rtsps", "http", "https", "rtmp", "udp", "tcp"):
        return SourceSpec("stream", url)
    path = Path(url).expanduser()
    if path.is_dir():
        return SourceSpec("folder", str(path))
    if not path.is_file():
        raise SourceError(f"source {redact(url)!r}: no such file, folder, camera or URL")
    if path.suffix.lower() in IMAGE_SUFFIXES:
        return SourceSpec("image", str(path))
    if path.suffix.lower() in AUDIO_SUFFIXES:
        return SourceSpec("audio", str(path))
    return SourceSpec("video", str(path))


def open_media(target: str, timeout_s: float | None, what: str):
    """A PyAV container of a file or URL; the timeout bounds opening and every read, so a stalled
    stream ends instead of blocking. A failure is one SourceError naming it, credentials masked."""
    import av

    try:
        return av.open(target, timeout=timeout_s)
    except (av.FFmpegError, OSError) as exc:
        raise SourceError(redact(f"{what} {target}: cannot open: {exc}")) from None


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
        # One decoder thread: frame-parallel decoding costs more CPU per frame than it saves here.
        params = [] if spec.kind == "camera" else [cv2.CAP_PROP_N_THREADS, 1]
        if timeout_s is not None and spec.kind == "stream":  # a stalled server must not block a read forever
            msec = int(timeout_s * 1000)
            params += [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, msec, cv2.CAP_PROP_READ_TIMEOUT_MSEC, msec]
        self._cap = cv2.VideoCapture(spec.target, cv2.CAP_ANY, params)
        if not self._cap.isOpened():
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


def media_duration(path: str) -> float:
    """Seconds a media file lasts (its container's duration): the period of a looping source."""
    import av

    with av.open(path) as container:
        return (container.duration or 0) / av.time_base


def list_images(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    return sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


class Mailbox:
    """One slot per source; the analysis side takes frames round-robin across sources.

    A live source's slot holds one frame, the newest. A lossless reader fills its slot up to
    LOSSLESS_DEPTH frames and, once it is full, waits until the analysis has taken half of them: on
    one CPU the two threads then take turns in bursts of frames, not at every frame.
    """

    def __init__(self, sources: list[str], metrics: Metrics | None = None) -> None:
        self._slots: dict[str, deque[Frame]] = {name: deque() for name in sources}
        self._open = set(sources)
        self._cond = threading.Condition()
        self._metrics = metrics
        self._turn = 0

    def put(self, frame: Frame, lossless: bool, stop: threading.Event) -> None:
        with self._cond:
            slot = self._slots[frame.source]
            if lossless:
                if len(slot) >= LOSSLESS_DEPTH:
                    while len(slot) > LOSSLESS_DEPTH // 2 and not stop.is_set():
                        self._cond.wait(0.1)
            elif slot:
                slot.clear()
                if self._metrics:
                    self._metrics.frames_dropped.labels(source=frame.source, reason="backlog").inc()
            slot.append(frame)
            if len(slot) == 1:  # the analysis may be waiting for a frame
                self._cond.notify_all()

    def close(self, source: str) -> None:
        with self._cond:
            self._open.discard(source)
            self._cond.notify_all()

    def get(self, timeout: float = 0.5) -> Frame | None | bool:
        """The next frame; None when every source has ended and been drained; False on timeout."""
        names = list(self._slots)
        with self._cond:
            deadline = time.monotonic() + timeout
            while True:
                for k in range(len(names)):
                    name = names[(self._turn + k) % len(names)]
                    slot = self._slots[name]
                    if slot:
                        frame = slot.popleft()
                        self._turn = (self._turn + k + 1) % len(names)
                        if len(slot) == LOSSLESS_DEPTH // 2:  # a lossless reader may be waiting for room
                            self._cond.notify_all()
                        return frame
                if not self._open:
                    return None
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(remaining)


class Capture(Supervised):
    """Reads one source into the mailbox until it ends (files) or the daemon stops (live sources).

    A live source is reopened with back-off whenever it fails or stalls (no frame for
    `stall_timeout_s`); the back-off starts over only after frames flowed for a while, so a stream
    that opens and fails at once is retried ever more slowly, up to `reconnect_max_s`. A crash
    (an OpenCV or FFmpeg error) restarts the thread through its supervisor: a live source never
    ends. A file that crashes ends its source instead, since reading it again would repeat frames.
    """

    where = "capture"

    def __init__(self, cfg: SourceConfig, mailbox: Mailbox, stop: threading.Event, metrics: Metrics | None,
                 lossless: bool = False, gate: FrameGate | None = None) -> None:
        """`gate` says which frames need looking at while the source is idle; the others are skipped
        undecoded. Lossless reading looks at every frame."""
        super().__init__(f"capture-{cfg.name}", stop, metrics)
        self.cfg, self.mailbox = cfg, mailbox
        self.spec = parse_source(cfg.url)
        self.live = self.spec.live
        self.give_up_after = None if self.live else 1
        self.lossless = lossless and not self.spec.live
        self.paced = not lossless and self.spec.kind == "video"
        self.gate = None if self.lossless else gate
        self.frames_read = 0
        self.frames_seen = 0   # read or skipped
        self._skipping = False
        self.last_frame_at = time.monotonic()  # start-up counts as a frame: the grace before a stall

    def work(self) -> None:
        if self.spec.live:
            self._run_live()
        else:
            self._run_file()

    def finished(self) -> None:
        self.mailbox.close(self.cfg.name)

    def delivering(self, now: float) -> bool:
        """Frames arrived within the source's stall timeout (a file that ended is not delivering)."""
        return self.is_alive() and now - self.last_frame_at <= self.cfg.stall_timeout_s

    def _run_file(self) -> None:
        """Read the file to its end; a looping one (the sample, played) starts again, its pts going on."""
        started, offset = time.monotonic(), 0.0
        period = media_duration(str(self.spec.target)) if self.paced and self.spec.loop else 0.0
        while self._play_file(started, offset) and period > 0:
            offset += period
        log.info("source %s ended after %d frames", self.cfg.name, self.frames_read)

    def _play_file(self, started: float, offset: float) -> bool:
        """One pass over the file, its pts shifted by `offset`; True when it reached its end."""
        reader = FrameReader(self.spec)
        try:
            while not self.stop.is_set():
                item = self._timed_read(reader)
                if item is None:
                    return True
                image, pts = item
                if self.paced and image is not None:  # a skipped frame is not waited for: one wake-up for the run
                    delay = started + offset + pts - time.monotonic()
                    if delay > 0 and self.stop.wait(delay):
                        return False
                if image is not None:
                    self._deliver(image, offset + pts)
            return False
        finally:
            reader.close()

    def _run_live(self) -> None:
        """Read until stopped; reopen with back-off when the device or stream fails or stalls."""
        backoff = Backoff(self.cfg.reconnect_initial_s, self.cfg.reconnect_max_s)
        while not self.stop.is_set():
            try:
                reader = self.open_live()
            except SourceError as exc:
                if not self._reconnect_after(backoff, str(exc)):
                    return
                continue
            log.info("source %s opened (%s)", self.cfg.name, redact(self.spec.target))
            try:
                backoff.ran(self._read_live(reader))
            finally:
                reader.close()
            if not self._reconnect_after(backoff, f"source {self.cfg.name} stopped delivering frames"):
                return

    def open_live(self) -> FrameReader:
        return FrameReader(self.spec, timeout_s=self.cfg.stall_timeout_s)

    def _reconnect_after(self, backoff: Backoff, why: str) -> bool:
        """Count a reopen, wait the back-off; False when the daemon stops meanwhile."""
        if self.stop.is_set():
            return False
        wait = backoff.wait_s()
        log.warning("%s; reopening in %.1f s", why, wait)
        self._count_reconnect()
        return not self.stop.wait(wait)

    def _read_live(self, reader: FrameReader) -> float:
        """Deliver frames until the source fails or stalls; returns for how long frames flowed (s)."""
        min_interval = 1.0 / self.cfg.max_fps if self.cfg.max_fps else 0.0
        last = first = 0.0
        while not self.stop.is_set():
            item = self._timed_read(reader)  # gives up after stall_timeout_s on a stalled stream
            if item is None:
                break
            now = self.last_frame_at = time.monotonic()
            first = first or now
            if item[0] is None:  # skipped while idle
                continue
            if now - last < min_interval:
                if self.metrics:
                    self.metrics.frames_dropped.labels(source=self.cfg.name, reason="max_fps").inc()
                continue
            last = now
            self._deliver(*item)
        return time.monotonic() - first if first else 0.0

    def _timed_read(self, reader: FrameReader) -> tuple[Image | None, float] | None:
        """The next frame, its decode time counted as the `capture` stage (waiting for a camera included);
        (None, pts) for a frame skipped undecoded because the source is idle (see `needs`); None at the end."""
        frame, self.frames_seen = self.frames_seen, self.frames_seen + 1
        if self.gate is not None and not self.gate.needs(self.cfg.name, frame):
            return self._skip(reader)
        self._skipping = False
        started = time.perf_counter()
        item = reader.read()
        if item is not None and self.metrics:
            self.metrics.stage_seconds.labels(stage="capture").observe(time.perf_counter() - started)
        return item

    def _skip(self, reader: FrameReader) -> tuple[None, float] | None:
        """Leave the next frame undecoded. A live source's run of skipped frames is taken in one burst:
        the capture first sleeps until they are buffered (the device or socket holds them), then
        grabs them back to back, so an idle source wakes the CPU once per run, not once per frame."""
        if self.live and not self._skipping and reader.fps > 0:
            self.stop.wait((self.gate.idle_every - 1) / reader.fps)
        self._skipping = True
        pts = reader.skip()
        if pts is not None and self.metrics:
            self.metrics.frames_dropped.labels(source=self.cfg.name, reason="idle").inc()
        return None if pts is None else (None, pts)

    def _deliver(self, image: Image, pts: float) -> None:
        frame = Frame(image, self.cfg.name, self.frames_seen - 1, pts, time.monotonic())
        self.frames_read += 1
        self.last_frame_at = frame.captured_at
        if self.metrics:
            self.metrics.frames.labels(source=self.cfg.name).inc()
            self.metrics.last_frame.labels(source=self.cfg.name).set(time.time())
        self.mailbox.put(frame, self.lossless, self.stop)

    def _count_reconnect(self) -> None:
        if self.metrics:
            self.metrics.reconnects.labels(source=self.cfg.name).inc()
