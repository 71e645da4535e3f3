"""The analysis pipeline: capture -> detect -> classify -> track + publish.

A capture thread per source; live, the sources are shared out among `analysis.workers` worker
threads (one per usable CPU by default), each running the four steps on its own sources' frames,
in order; a lossless file run (--once) gives the steps three threads joined by small bounded
queues (see Pipeline._build_stages). The capture side never blocks (see sources.mailbox): a worker
that cannot keep up gets its sources' newest frames, the others counted as dropped; behind it each
stage blocks when the next one is busy, so memory stays bounded whatever the load.

Sound takes a side path per source: audio capture -> ring buffer -> voice stage (a thread per source
with sound, analysing its windows in order; it sleeps between windows, one a second, and its model
runs without the GIL, so the OS spreads these threads over the CPUs as it does the workers), whose
readings the fuser combines with the face tracks that the track stage reports (fusion.py).
"""

from __future__ import annotations

import functools
import itertools
import logging
import os
import queue
import threading
import time
from collections.abc import Callable

import numpy as np

from edgeemo.sources.audio import AudioCapture, AudioRing, audio_target, check_audio_target, has_sound, is_file
from edgeemo.sources.capture import Capture
from edgeemo.sources.mailbox import Mailbox
from edgeemo.sources.reader import FrameReader, live_pts
from edgeemo.sources.spec import SourceSpec, parse_source
from edgeemo.config.schema import Config
from edgeemo.tracking.fusion import Fuser
from edgeemo.core.metrics import Metrics
from edgeemo.journal.writer import EventWriter
from edgeemo.core.supervisor import Supervised
from edgeemo.sources.stream import StreamCapture
from edgeemo.tracking.tracker import FaceTracker
from edgeemo.core.types import VoiceWindow, Work
from edgeemo.vision.analysis import FrameAnalysis
from edgeemo.voice.classifier import VoiceClassifier
from edgeemo.voice.stage import VoiceStage

log = logging.getLogger(__name__)
END = object()      # flows down the queues when every source has ended
QUEUE_SIZE = 4
TICK_S = 0.25         # how often a stage runs its tick (time-based track expiry), frames or not
PUT_WAIT_S = 0.5      # a blocked hand-off re-checks for an aborted pipeline this often
CAPTURE_JOIN_S = 0.5  # at stop: how long a live capture still blocked in a read is waited for


class MailboxInbox:
    """The first stage's inbox: frames straight from the capture mailbox, END when all sources ended."""

    def __init__(self, mailbox: Mailbox) -> None:
        self.mailbox = mailbox

    def get(self, timeout: float) -> Work | object | None:
        """The next item; None when none came within `timeout`."""
        frame = self.mailbox.get(timeout=timeout)
        if frame is False:
            return None
        return END if frame is None else Work(frame)


class QueueInbox:
    """A stage queue read with a timeout, so the stage can tick while nothing arrives."""

    def __init__(self, q: queue.Queue) -> None:
        self.queue = q

    def get(self, timeout: float) -> Work | object | None:
        try:
            return self.queue.get(timeout=timeout)
        except queue.Empty:
            return None


def hand_off(outbox: queue.Queue, item: object, abort: threading.Event) -> bool:
    """Put `item` into a full queue as soon as there is room; False when the pipeline was aborted.

    Never waits forever: a consumer that died for good aborts the pipeline, and the put gives up.
    """
    while not abort.is_set():
        try:
            outbox.put(item, timeout=PUT_WAIT_S)
            return True
        except queue.Full:
            continue
    return False


class Stage(Supervised):
    """Applies its steps in order to each item of `inbox`, hands the result to `outbox`, times each step.

    Cheap steps (track, publish) share a thread: every hand-off between threads costs a wake-up.
    A step that fails drops its frame; anything else that fails restarts the stage (supervisor),
    and a stage that keeps failing aborts the pipeline. `tick` runs every TICK_S, frames or not.
    """

    give_up_after = 5

    def __init__(self, steps: list[tuple[str, Callable[[Work], Work]]], inbox: QueueInbox | MailboxInbox,
                 outbox: queue.Queue | None, metrics: Metrics, abort: threading.Event,
                 on_end: Callable[[], None] | None = None, tick: Callable[[], None] | None = None,
                 name: str | None = None) -> None:
        super().__init__(name or "+".join(step for step, _ in steps), abort, metrics)
        self.steps = [(name, step, metrics.stage_seconds.labels(stage=name)) for name, step in steps]
        self.inbox, self.outbox, self.abort, self.on_end, self.tick = inbox, outbox, abort, on_end, tick
        self._last_tick = time.monotonic()

    def work(self) -> None:
        while (work := self.inbox.get(TICK_S)) is not END:
            self._tick()
            if work is not None:
                self.process(work)

    def process(self, work: Work) -> None:
        for name, step, seconds in self.steps:
            started = time.perf_counter()
            try:
                work = step(work)
            except Exception:
                log.exception("stage %s failed on frame %d of %s", name, work.frame.index, work.frame.source)
                self.metrics.errors.labels(where="pipeline").inc()
                return
            finally:
                seconds.observe(time.perf_counter() - started)
        if self.outbox is not None:
            hand_off(self.outbox, work, self.abort)

    def _tick(self) -> None:
        now = time.monotonic()
        if self.tick is not None and now - self._last_tick >= TICK_S:
            self._last_tick = now
            self.tick()

    def finished(self) -> None:
        """Pass the end on (also when this stage gave up, so the stages behind it end too)."""
        if self.outbox is not None:
            hand_off(self.outbox, END, self.abort)
        if self.on_end is not None:
            self.on_end()


class Pipeline:
    """Builds every stage from the config; `start()`, then `join()` or `stop()`."""

    def __init__(self, cfg: Config, metrics: Metrics, publisher: EventWriter, lossless: bool = False) -> None:
        self.cfg, self.metrics, self.publisher = cfg, metrics, publisher
        ids = itertools.count(publisher.next_track_id)  # ids continue across restarts, never reused
        self.trackers = {s.name: FaceTracker(cfg.tracker, s.name, ids) for s in cfg.sources}
        self.stop_event = threading.Event()
        self.abort = threading.Event()  # a worker gave up: stop waiting on each other, the daemon exits 1
        video = [s for s in cfg.sources if parse_source(s.url).kind != "audio"]
        shares = share_out([s.name for s in video], 1 if lossless else worker_count(cfg, len(video)))
        # One analysis per worker: its own model sessions and buffers, so workers never wait on each
        # other (the same path as `edgeemo detect`).
        self.analyses = [FrameAnalysis(cfg) for _ in shares]
        self.analysis = self.analyses[0]
        self.detector, self.classifier = self.analysis.detector, self.analysis.classifier
        self.mailboxes = [Mailbox(share, metrics) for share in shares]
        self.owner = {name: k for k, share in enumerate(shares) for name in share}  # source -> its worker
        self.captures = [Capture(s, self.mailbox_of(s.name), self.stop_event, metrics, lossless,
                                 self.analysis_of(s.name).scheduler)  # an idle source's capture skips frames undecoded
                         for s in video]
        for capture in self.captures:
            if not capture.spec.live:
                FrameReader(capture.spec).close()  # a file that cannot be opened stops start-up
        self.fuser = Fuser(cfg.fusion, cfg.tracker.heartbeat_s, ids, {s.name for s in video},
                           wait_s=30.0 if lossless else 0.25)  # live: never fall behind the sound
        self.audio: list[AudioCapture] = []
        self.voices: list[VoiceStage] = []
        if cfg.voice.enabled:
            self._build_voice(lossless)
        self.queues: dict[str, queue.Queue] = {}
        self.stages = self._build_stages(lossless)
        self.frames_by_source = {s.name: 0 for s in video}  # each written by its source's worker only
        self.source_metrics = {s.name: metrics.source(s.name) for s in cfg.sources}
        self.frame_observers: list[Callable[[np.ndarray, list[dict]], None]] = []

    def mailbox_of(self, source: str) -> Mailbox:
        return self.mailboxes[self.owner[source]]

    def analysis_of(self, source: str) -> FrameAnalysis:
        return self.analyses[self.owner[source]]

    def _build_stages(self, lossless: bool) -> list[Stage]:
        """Live: a worker thread per share of the sources, each running all four steps on its
        sources' frames in order. One thread per share rather than a thread per step: a camera's
        frame rate leaves the analysis time to spare, and each hand-off between threads is a
        wake-up, which at 30 frames/s costs more CPU than the overlap saves; the workers themselves
        run side by side on the CPUs, as onnxruntime and OpenCV release the GIL.

        Lossless (a file with --once) on more than one CPU: three threads, so detection of one
        frame overlaps the classification of the one before; throughput is the aim."""
        track = [("track", self.track), ("publish", self.publish)]
        if not lossless or usable_cpus() < 2:
            ends = Countdown(len(self.mailboxes), self.fuser.video_done)
            return [Stage([("detect", self.detect), ("classify", self.classify), *track], MailboxInbox(mailbox),
                          None, self.metrics, self.abort, on_end=ends.one_done,
                          tick=functools.partial(self.expire_idle, set(mailbox.sources)),
                          name="analysis" if len(self.mailboxes) == 1 else f"analysis-{k}")
                    for k, mailbox in enumerate(self.mailboxes)]
        last = {"on_end": self.fuser.video_done, "tick": functools.partial(self.expire_idle, set(self.owner))}
        inbox = MailboxInbox(self.mailboxes[0])
        self.queues = {"classify": queue.Queue(QUEUE_SIZE), "track": queue.Queue(QUEUE_SIZE)}
        return [
            Stage([("detect", self.detect)], inbox, self.queues["classify"], self.metrics, self.abort),
            Stage([("classify", self.classify)], QueueInbox(self.queues["classify"]), self.queues["track"],
                  self.metrics, self.abort),
            Stage(track, QueueInbox(self.queues["track"]), None, self.metrics, self.abort, **last),
        ]

    def _build_voice(self, lossless: bool) -> None:
        """An audio capture and a voice stage for every source with sound; one classifier for all.

        A live stream's own sound is read by its video capture, from the same connection (StreamCapture).
        A file without sound is told apart here, at start-up, and gets no voice threads.
        """
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
            if is_file(target) and not has_sound(target):
                log.warning("source %s: no voice analysis (%s has no audio track); faces only", source.name, target)
                continue
            ring = AudioRing(self.cfg.voice.buffer_s, sample_rate)
            if parse_source(source.url) == SourceSpec("stream", target):  # its own sound: one connection
                k = next(k for k, c in enumerate(self.captures) if c.cfg.name == source.name)
                self.captures[k] = StreamCapture(source, self.mailbox_of(source.name), self.stop_event,
                                                 self.metrics, ring, self.analysis_of(source.name).scheduler)
            else:
                self.audio.append(AudioCapture(source, target, self.cfg.microphone, ring, self.stop_event,
                                               self.metrics, lossless))
            self.voices.append(VoiceStage(source.name, ring, classifier, self.cfg.voice, self.on_voice,
                                          self.metrics, self.abort))

    def start(self) -> None:
        for thread in [*self.stages, *self.voices, *self.captures, *self.audio]:
            thread.start()

    def detect(self, work: Work) -> Work:
        frame = work.frame
        work.faces = self.analysis_of(frame.source).detect(frame.image, frame.source, frame.index)
        return work

    def classify(self, work: Work) -> Work:
        frame = work.frame
        work.faces.probs = self.analysis_of(frame.source).classify(frame.image, work.faces, frame.source)
        return work

    def track(self, work: Work) -> Work:
        frame = work.frame
        tracker = self.trackers[frame.source]
        work.events = tracker.update(work.faces, frame.pts, frame.captured_at)
        if self.publisher.wants_state or self.frame_observers:  # else nobody reads them
            work.present = [face for t in self.trackers.values() for face in t.present()]
        self.fuser.observe_faces(frame.source, frame.pts, tracker.seen_at(frame.pts))
        counters = self.source_metrics[frame.source]
        counters.faces.inc(len(work.faces))
        counters.tracks_active.set(sum(t.reported for t in tracker.tracks))
        return work

    def publish(self, work: Work) -> Work:
        self.publisher.handle(work.events, work.present)
        frame = work.frame
        for offer in self.frame_observers:  # the dashboard's preview, when web.preview is on
            offer(frame.image, [face for face in work.present if face["source"] == frame.source])
        self.metrics.latency.observe(time.monotonic() - frame.captured_at)
        self.source_metrics[frame.source].frames_processed.inc()
        self.frames_by_source[frame.source] += 1
        return work

    def expire_idle(self, sources: set[str]) -> None:
        """End the tracks of live `sources` that sent no frame for `max_missed_s` (a frozen camera).

        Runs in the thread of the worker that owns `sources`, so it never races `track`; its events
        and the faces still in view take the same path as a frame's, so the retained state empties
        without a frame (and a state change held back by `state_min_interval_s` still goes out).
        """
        now = time.monotonic()
        idle = [c.cfg.name for c in self.captures if c.cfg.name in sources and c.live
                and now - c.last_frame_at > self.cfg.tracker.max_missed_s]
        if not idle:
            return
        now_pts = live_pts()
        events = [e for name in idle for e in self.trackers[name].expire(now_pts)]
        self.publisher.handle(events, [face for t in self.trackers.values() for face in t.present()])
        for name in idle:
            self.source_metrics[name].tracks_active.set(sum(t.reported for t in self.trackers[name].tracks))

    def on_voice(self, source: str, reading: VoiceWindow | None, pts: float) -> None:
        """A voice stage's window: publish its voice and fused events (from the voice stage's thread)."""
        self.publisher.handle(self.fuser.on_window(source, reading, pts))

    @property
    def frames_done(self) -> int:
        """Frames analysed so far, all sources."""
        return sum(self.frames_by_source.values())

    @property
    def progress(self) -> int:
        """Frames and audio windows analysed so far: what the watchdog wants to see growing."""
        return self.frames_done + sum(v.windows_done for v in self.voices)

    def stop(self) -> None:
        """Stop reading; the frames already read still flow through to the publisher."""
        self.stop_event.set()

    def join(self, timeout: float | None = None) -> bool:
        """Wait for every stage to drain; then end the remaining tracks. True when fully drained.

        A live capture still blocked in a read after CAPTURE_JOIN_S is left behind (its thread is a
        daemon thread and its next frame is not wanted): its source is closed so the stages drain.
        """
        deadline = None if timeout is None else time.monotonic() + timeout

        def left() -> float | None:
            return None if deadline is None else max(0.0, deadline - time.monotonic())

        for capture in [*self.captures, *self.audio]:
            capture.join(CAPTURE_JOIN_S if capture.live else left())
        for capture in self.captures:
            self.mailbox_of(capture.cfg.name).close(capture.cfg.name)
        for voice in self.voices:
            voice.ring.close()
        for thread in [*self.stages, *self.voices]:
            thread.join(left())
        if self.alive():
            return False
        ended = [e for tracker in self.trackers.values() for e in tracker.finish()]
        for voice in self.voices:
            ended += self.fuser.finish(voice.source, voice.ring.pts_at(voice.ring.written))
        self.publisher.handle(ended, [])
        return not self.failed

    def left_behind(self) -> list[str]:
        """Captures still blocked in a read after join() gave up waiting for them."""
        return [c.name for c in [*self.captures, *self.audio] if c.is_alive()]

    def alive(self) -> bool:
        return any(t.is_alive() for t in [*self.stages, *self.voices])

    @property
    def workers(self) -> list[Supervised]:
        return [*self.captures, *self.stages, *self.audio, *self.voices]

    @property
    def failed(self) -> bool:
        """A stage gave up after crashing again and again: the daemon cannot go on (exit non-zero).

        (Live captures never give up; a file whose capture crashes just ends early.)
        """
        if any(w.failed for w in [*self.stages, *self.voices]):
            self.abort.set()
        return self.abort.is_set()

    @property
    def restarts(self) -> int:
        return sum(w.restarts for w in self.workers)

    def health(self) -> dict[str, bool]:
        """Per video source: delivering frames within its stall_timeout_s (a file that ended is no fault)."""
        now = time.monotonic()
        return {c.cfg.name: c.delivering(now) for c in self.captures if c.live or c.is_alive()}

    def healthy(self) -> bool:
        """What the watchdog wants: every video source delivers and no worker is crashing or failed."""
        return all(self.health().values()) and not any(w.failing or w.failed for w in self.workers)


class Countdown:
    """Calls `then` once, when `one_done` has been called `count` times (from any threads)."""

    def __init__(self, count: int, then: Callable[[], None]) -> None:
        self._left, self._then, self._lock = count, then, threading.Lock()

    def one_done(self) -> None:
        with self._lock:
            self._left -= 1
            last = self._left == 0
        if last:
            self._then()


def worker_count(cfg: Config, sources: int) -> int:
    """analysis.workers, by default one per usable CPU; never more than the video sources (at least one)."""
    return max(1, min(cfg.analysis.workers or usable_cpus(), sources))


def share_out(sources: list[str], workers: int) -> list[list[str]]:
    """The sources dealt round-robin to `workers` shares: source k to worker k % workers."""
    return [sources[k::workers] for k in range(workers)]


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity where the OS has one, else all)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1

