"""A live stream's frames and sound from one connection (PyAV), not two.

OpenCV reads only pictures, so a stream whose sound is analysed too would be opened twice, once by
OpenCV and once by PyAV: many IP cameras allow only a few clients, and the two connections drift
apart. This reader demuxes both from a single container: video frames come out of `read()` left in
the decoder's planes, as a video file's are (sources.media.VideoFile.pixels), and each decoded stretch of
sound goes to `on_sound` as 16 kHz mono float32 samples on the same live clock. Opening and every
read give up after `timeout_s`, so a frozen stream ends the read instead of blocking it.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable

import numpy as np

from edgeemo.sources.audio import SAMPLE_RATE, AudioRing
from edgeemo.sources.capture import Capture, FrameGate
from edgeemo.sources.mailbox import Mailbox
from edgeemo.sources.media import VideoFile, open_video
from edgeemo.sources.reader import live_pts
from edgeemo.config.redact import redact
from edgeemo.config.schema import SourceConfig
from edgeemo.core.metrics import Metrics
from edgeemo.core.types import Image

log = logging.getLogger(__name__)
SoundSink = Callable[[np.ndarray, float], None]   # samples, pts of the first one


class StreamReader:
    """The FrameReader of a live stream with sound; `read()` returns None when the stream fails."""

    def __init__(self, url: str, timeout_s: float, on_sound: SoundSink) -> None:
        import av

        self._av = av
        self._container, video = open_video(url, timeout_s)
        streams = [video, *self._container.streams.audio[:1]]
        self._packets = self._container.demux(*streams)
        self._resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
        self._frames: deque = deque()   # decoded av.VideoFrames, converted when read
        self.on_sound = on_sound
        self.url = url
        self.fps = float(video.average_rate or 0.0)
        self.index = 0
        self.has_sound = len(streams) > 1

    def read(self) -> tuple[Image, float] | None:
        """The next video frame (sound met on the way goes to `on_sound`); None at a failure or the end."""
        frame = self._next_frame()
        return None if frame is None else (VideoFile.pixels(frame), live_pts())

    def skip(self) -> float | None:
        """The next video frame decoded but never converted to BGR (the source is idle); its pts."""
        return None if self._next_frame() is None else live_pts()

    def _next_frame(self) -> object | None:
        try:
            while not self._frames:
                packet = next(self._packets, None)
                if packet is None:
                    return None
                self._decode(packet)
        except self._av.FFmpegError as exc:  # a timeout (frozen stream), a dropped connection, bad data
            log.debug("stream %s: %s", redact(self.url), redact(str(exc)))
            return None
        self.index += 1
        return self._frames.popleft()

    def _decode(self, packet: object) -> None:
        for frame in packet.decode():
            if isinstance(frame, self._av.AudioFrame):
                for out in self._resampler.resample(frame):
                    samples = out.to_ndarray().reshape(-1)
                    self.on_sound(samples, live_pts() - len(samples) / SAMPLE_RATE)
            else:
                self._frames.append(frame)

    def close(self) -> None:
        self._container.close()


class StreamCapture(Capture):
    """The capture of a live stream whose sound is analysed: frames to the mailbox, sound to `ring`.

    One thread and one connection per stream; reconnects, back-off and supervision are Capture's.
    """

    def __init__(self, cfg: SourceConfig, mailbox: Mailbox, stop: threading.Event, metrics: Metrics | None,
                 ring: AudioRing, gate: FrameGate | None = None) -> None:
        super().__init__(cfg, mailbox, stop, metrics, gate=gate)
        self.ring = ring

    def open_live(self) -> StreamReader:
        return StreamReader(str(self.spec.target), self.cfg.stall_timeout_s, self._hear)

    def _hear(self, samples: np.ndarray, pts: float) -> None:
        lost = self.ring.write(samples, pts)
        if self.metrics is not None:
            self.metrics.audio_samples.labels(source=self.cfg.name).inc(len(samples))
            if lost:
                self.metrics.audio_dropped.labels(source=self.cfg.name, reason="backlog").inc(lost)

    def finished(self) -> None:
        super().finished()
        self.ring.close()
