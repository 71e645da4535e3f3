"""The analysis pipeline: capture -> detect -> classify -> track + publish, a thread per stage.

Stages are joined by small bounded queues. The capture side never blocks (see capture.Mailbox);
behind it each stage blocks when the next one is busy, so memory stays bounded whatever the load,
and onnxruntime, which releases the GIL, runs detection of frame N+1 while frame N is classified.

Sound takes a side path per source: audio capture -> ring buffer -> voice stage, whose readings the
fuser combines with the face tracks that the track stage reports (fusion.py).
"""

from __future__ import annotations

import itertools
import logging
import queue
import threading
import time
from collections.abc import Callable
from pathlib import Path

from edgeemo.audio import AudioCapture, AudioRing, audio_target
from edgeemo.capture import Capture, FrameReader, Mailbox, SourceError, parse_source
from edgeemo.config import Config, SourceConfig
from edgeemo.fusion import Fuser
from edgeemo.metrics import Metrics
from edgeemo.journal.dispatch import Publisher
from edgeemo.tracker import FaceTracker
from edgeemo.types import VoiceWindow, Work
from edgeemo.vision.analysis import FrameAnalysis
from edgeemo.voice import VoiceClassifier, VoiceStage

log = logging.getLogger(__name__)
END = object()      # flows down the queues when every source has ended
QUEUE_SIZE = 4


class MailboxInbox:
    """The first stage's inbox: frames straight from the capture mailbox, END when all sources ended."""

    def __init__(self, mailbox: Mailbox) -> None:
        self.mailbox = mailbox

    def get(self) -> Work | object:
        while (frame := self.mailbox.get(timeout=0.5)) is False:
            pass
        return END if frame is None else Work(frame)


class Stage(threading.Thread):
    """Applies its steps in order to each item of `inbox`, hands the result to `outbox`, times each step.

    Cheap steps (track, publish) share a thread: every hand-off between threads costs a wake-up.
    """

    def __init__(self, steps: list[tuple[str, Callable[[Work], Work]]], inbox: queue.Queue | MailboxInbox,
                 outbox: queue.Queue | None, metrics: Metrics, on_end: Callable[[], None] | None = None) -> None:
        super().__init__(name="+".join(name for name, _ in steps), daemon=True)
        self.steps = [(name, step, metrics.stage_seconds.labels(stage=name)) for name, step in steps]
        self.inbox, self.outbox, self.metrics, self.on_end = inbox, outbox, metrics, on_end

    def run(self) -> None:
        while (work := self.inbox.get()) is not END:
            for name, step, seconds in self.steps:
                started = time.perf_counter()
                try:
                    work = step(work)
                except Exception:
                    log.exception("stage %s failed on frame %d of %s", name, work.frame.index, work.frame.source)
                    self.metrics.errors.labels(where="pipeline").inc()
                    break
                finally:
                    seconds.observe(time.perf_counter() - started)
            if self.outbox is not None:
                self.outbox.put(work)
        if self.outbox is not None:
            self.outbox.put(END)
        if self.on_end is not None:
            self.on_end()


class Pipeline:
    """Builds every stage from the config; `start()`, then `join()` or `stop()`."""

    def __init__(self, cfg: Config, metrics: Metrics, publisher: Publisher, lossless: bool = False) -> None:
        self.cfg, self.metrics, self.publisher = cfg, metrics, publisher
        self.analysis = FrameAnalysis(cfg)  # the same path as `edgeemo detect`
        self.detector, self.classifier = self.analysis.detector, self.analysis.classifier
        ids = itertools.count(1)
        self.trackers = {s.name: FaceTracker(cfg.tracker, s.name, ids) for s in cfg.sources}
        self.stop_event = threading.Event()
        video = [s for s in cfg.sources if parse_source(s.url).kind != "audio"]
        self.mailbox = Mailbox([s.name for s in video], metrics)
        self.captures = [Capture(s, self.mailbox, self.stop_event, metrics, lossless) for s in video]
        for capture in self.captures:
            if not capture.spec.live:
                FrameReader(capture.spec).close()  # a file that cannot be opened stops start-up
        self.fuser = Fuser(cfg.fusion, cfg.tracker.heartbeat_s, ids, {s.name for s in video},
                           wait_s=30.0 if lossless else 0.25)  # live: never fall behind the sound
        self.audio: list[AudioCapture] = []
        self.voices: list[VoiceStage] = []
        if cfg.voice.enabled:
            self._build_voice(lossless)
        self.queues = {"classify": queue.Queue(QUEUE_SIZE), "track": queue.Queue(QUEUE_SIZE)}
        self.stages = [
            Stage([("detect", self.detect)], MailboxInbox(self.mailbox), self.queues["classify"], metrics),
            Stage([("classify", self.classify)], self.queues["classify"], self.queues["track"], metrics),
            Stage([("track", self.track), ("publish", self.publish)], self.queues["track"], None, metrics,
                  on_end=self.fuser.video_done),
        ]
        self.frames_done = 0

    def _build_voice(self, lossless: bool) -> None:
        """An audio capture and a voice stage for every source with sound; one classifier for all."""
        targets = {s.name: audio_target(s) for s in self.cfg.sources}
        if not any(targets.values()):
            return
        classifier = VoiceClassifier.from_config(self.cfg)
        sample_rate = classifier.front_end.sample_rate
        for source in self.cfg.sources:
            target = targets[source.name]
            if target is None:
                continue
            check_audio_target(source, target)
            ring = AudioRing(self.cfg.voice.buffer_s, sample_rate)
            self.audio.append(AudioCapture(source, target, self.cfg.microphone, ring, self.stop_event,
                                           self.metrics, lossless))
            self.voices.append(VoiceStage(source.name, ring, classifier, self.cfg.voice, self.on_voice,
                                          self.metrics))

    def start(self) -> None:
        for thread in [*self.stages, *self.voices, *self.captures, *self.audio]:
            thread.start()

    def detect(self, work: Work) -> Work:
        work.faces = self.analysis.detect(work.frame.image, work.frame.source)
        return work

    def classify(self, work: Work) -> Work:
        work.faces.probs = self.analysis.classify(work.frame.image, work.faces, work.frame.source)
        return work

    def track(self, work: Work) -> Work:
        frame = work.frame
        tracker = self.trackers[frame.source]
        work.events = tracker.update(work.faces, frame.pts, frame.captured_at)
        work.present = [face for t in self.trackers.values() for face in t.present()]
        self.fuser.observe_faces(frame.source, frame.pts, tracker.seen_at(frame.pts))
        self.metrics.faces.labels(source=frame.source).inc(len(work.faces))
        self.metrics.tracks_active.labels(source=frame.source).set(sum(t.reported for t in tracker.tracks))
        return work

    def publish(self, work: Work) -> Work:
        self.publisher.handle(work.events, work.present)
        frame = work.frame
        self.metrics.latency.observe(time.monotonic() - frame.captured_at)
        self.metrics.frames_processed.labels(source=frame.source).inc()
        self.frames_done += 1
        return work

    def on_voice(self, source: str, reading: VoiceWindow | None, pts: float) -> None:
        """A voice stage's window: publish its voice and fused events (from the voice stage's thread)."""
        self.publisher.handle(self.fuser.on_window(source, reading, pts))

    @property
    def progress(self) -> int:
        """Frames and audio windows analysed so far: what the watchdog wants to see growing."""
        return self.frames_done + sum(v.windows_done for v in self.voices)

    def stop(self) -> None:
        """Stop reading; the frames already read still flow through to the publisher."""
        self.stop_event.set()

    def join(self, timeout: float | None = None) -> bool:
        """Wait for every stage to drain; then end the remaining tracks. True when fully drained."""
        deadline = None if timeout is None else time.monotonic() + timeout
        for thread in [*self.captures, *self.audio, *self.stages, *self.voices]:
            thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
        drained = not self.alive()
        if drained:
            ended = [e for tracker in self.trackers.values() for e in tracker.finish()]
            for voice in self.voices:
                ended += self.fuser.finish(voice.source, voice.ring.pts_at(voice.ring.written))
            self.publisher.handle(ended, [])
        return drained

    def alive(self) -> bool:
        return any(t.is_alive() for t in [*self.stages, *self.voices])


def check_audio_target(source: SourceConfig, target: str) -> None:
    """A named audio file that is not there stops start-up, like a missing video file."""
    if target != "mic" and "://" not in target and not Path(target).is_file():
        raise SourceError(f"sources.{source.name}.audio: {target!r}: no such file")
