"""The voice stage: speech detection (voice.vad) on a source's sound and a reading (voice.classifier) per window.

While speech lasts, a window of ``window_s`` seconds ending at the newest sample is analysed every
``hop_s`` seconds (overlapping windows: a reading every second that uses 3 s of context). A window
is classified only if it holds speech: the VAD compares each 30 ms frame's level with the
source's noise floor, tracked over the last 30 s, so silence and steady noise are never classified.
Only the window's last utterance goes to the model (at least ``min_speech_s`` of it), with the
model card's ``context_s`` of sound around it, so the model hears the edges of the speech as it
heard them in training; that context can take in the end of an utterance closer than it (while an
utterance is still being spoken, its first readings see only part of it).
Readings go to the fuser, which turns them into `voice` and `fused` events.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import numpy as np

from edgeemo.sources.audio import AudioRing
from edgeemo.config.schema import VoiceConfig
from edgeemo.core.metrics import Metrics
from edgeemo.core.supervisor import Supervised
from edgeemo.core.types import VoiceWindow
from edgeemo.voice.classifier import VoiceClassifier
from edgeemo.voice.vad import SpeechDetector

log = logging.getLogger(__name__)


class VoiceStage(Supervised):
    """Windows of one source's ring -> VoiceWindow readings (or None for no speech) -> ``on_window``.

    Runs until the ring is closed (its capture ended or was stopped) and its last sound analysed.
    A crash restarts it (supervisor) at the window after the one that failed.
    """

    where = "voice"

    give_up_after = 5

    def __init__(self, source: str, ring: AudioRing, classifier: VoiceClassifier, cfg: VoiceConfig,
                 on_window: Callable[[str, VoiceWindow | None, float], None], metrics: Metrics | None,
                 abort: threading.Event | None = None) -> None:
        super().__init__(f"voice-{source}", abort or threading.Event(), metrics)
        self.source, self.ring, self.classifier, self.cfg = source, ring, classifier, cfg
        self.on_window, self.metrics = on_window, metrics
        sr = ring.sample_rate
        self.window, self.hop, self.min_window, self.min_speech = (
            round(s * sr) for s in (cfg.window_s, cfg.hop_s, cfg.min_window_s, cfg.min_speech_s))
        self.vad = SpeechDetector(sr, cfg.vad_threshold_db)
        self._buffer = np.zeros(self.window, np.float32)
        self.windows_done = 0
        self._end = self.min_window  # end of the next window (sample index): where a restart resumes

    def work(self) -> None:
        while (end := self._next_end(self._end)) is not None:
            self._end = end + self.hop  # a window that crashes is skipped, not retried for ever
            self._analyse(max(0, end - self.window), end)
            self.ring.release(max(0, end + self.hop - self.window))

    def finished(self) -> None:
        self.ring.release(self.ring.written + self.ring.capacity)  # never hold the writer back again

    def _next_end(self, end: int) -> int | None:
        """``end`` once that much sound is there; at the end of the sound, a last shorter hop (or None)."""
        while not self.ring.wait_for(end, timeout=0.5):
            if self.ring.closed:
                last = self.ring.written
                tail = last - (end - self.hop)
                return last if tail >= self.hop // 2 and last >= self.min_window else None
        return end

    def _analyse(self, start: int, end: int) -> None:
        started = time.perf_counter()
        samples = self.ring.read(start, end, self._buffer)
        ratio, span = self.vad.speech(samples, end)
        reading = None
        if span.stop - span.start >= self.min_speech:
            # The last utterance (and the card's context around it), not the whole window.
            probs = self.classifier.classify_speech(samples, span)
            reading = VoiceWindow(self.source, self.ring.pts_at(start + span.start),
                                  self.ring.pts_at(start + span.stop), probs, ratio, self.ring.captured_at())
        if self.metrics:
            self.metrics.speech_ratio.labels(source=self.source).set(ratio)
            self.metrics.stage_seconds.labels(stage="voice").observe(time.perf_counter() - started)
        self.windows_done += 1
        self.on_window(self.source, reading, self.ring.pts_at(end))
