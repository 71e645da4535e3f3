"""Capture: one thread per source, reading frames (sources.reader) into the shared mailbox (sources.mailbox).

Live sources (cameras, streams, and files played at their own rate) overwrite their slot, so a
slow consumer always gets the newest frame and never builds a backlog; every overwritten frame is
counted as dropped. In `lossless` mode (``--once``) the reader waits for its slot instead, so every
frame of a file is analysed. Cameras and streams that fail or stall are reopened with back-off.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Protocol

from edgeemo.config.redact import redact
from edgeemo.config.schema import SourceConfig
from edgeemo.core.metrics import Metrics
from edgeemo.core.supervisor import Backoff, Supervised
from edgeemo.core.types import Frame, Image
from edgeemo.sources.mailbox import Mailbox
from edgeemo.sources.media import media_duration
from edgeemo.sources.reader import FrameReader
from edgeemo.sources.spec import SourceError, parse_source

log = logging.getLogger(__name__)
class FrameGate(Protocol):
    """Which frames of an idle source need looking at (vision.scheduler.DetectionScheduler)."""

    idle_every: int

    def needs(self, source: str, number: int) -> bool: ...


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
        self._last_problem: str | None = None  # the reopen reason last logged
        self.last_frame_at = time.monotonic()  # start-up counts as a frame: the grace before a stall
        # The children moved on every frame, looked up once: a lookup by label takes a lock and the GIL.
        self._counted = (metrics.stage_seconds.labels(stage="capture"), metrics.frames.labels(source=cfg.name),
                         metrics.last_frame.labels(source=cfg.name)) if metrics else None

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
            self._last_problem = None
            try:
                backoff.ran(self._read_live(reader))
            finally:
                reader.close()
            if not self._reconnect_after(backoff, f"source {self.cfg.name} stopped delivering frames"):
                return

    def open_live(self) -> FrameReader:
        return FrameReader(self.spec, timeout_s=self.cfg.stall_timeout_s)

    def _reconnect_after(self, backoff: Backoff, why: str) -> bool:
        """Count a reopen, wait the back-off; False when the daemon stops meanwhile. A reason is said
        once: the same one again (a camera still unplugged) is retried quietly (DEBUG)."""
        if self.stop.is_set():
            return False
        wait = backoff.wait_s()
        if why != self._last_problem:
            log.warning("%s; reopening in %.1f s (and quietly after that, until it works)", why, wait)
        else:
            log.debug("%s; reopening in %.1f s", why, wait)
        self._last_problem = why
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
        if item is not None and self._counted:
            self._counted[0].observe(time.perf_counter() - started)
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
        if self._counted:
            self._counted[1].inc()
            self._counted[2].set(time.time())
        self.mailbox.put(frame, self.lossless, self.stop)

    def _count_reconnect(self) -> None:
        if self.metrics:
            self.metrics.reconnects.labels(source=self.cfg.name).inc()
