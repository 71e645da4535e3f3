"""Voice analysis: speech detection on a source's sound and a voice-emotion reading per window.

While speech lasts, a window of ``window_s`` seconds ending at the newest sample is analysed every
``hop_s`` seconds (overlapping windows: a reading every second that uses 3 s of context). A window
is classified only if it holds speech: the VAD compares each 30 ms frame's level with the
source's noise floor, tracked over the last 30 s, so silence and steady noise are never classified.
Only the window's last utterance goes to the model (at least ``min_speech_s`` of it): on the
audio-visual clips, whole utterances read 4 of 4 right where the whole clips, silence included,
read 3 of 4 (while an utterance is still being spoken, its first readings see only part of it).
Readings go to the fuser, which turns them into `voice` and `fused` events.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgeemo import LABELS
from edgeemo.sources.audio import AudioRing
from edgeemo.config.schema import Config, VoiceConfig
from edgeemo.service.metrics import Metrics
from edgeemo.core.modelcard import read_card
from edgeemo.core.resources import models_dir, resolve_model
from edgeemo.core.inference import InferenceModel
from edgeemo.service.supervisor import Supervised
from edgeemo.core.types import VoiceWindow
from edgeemo.voice.features import AudioFrontEnd, frame_energy_db, speech_frames

log = logging.getLogger(__name__)
VAD_FRAME_S = 0.03
FLOOR_HISTORY_S = 30.0
FLOOR_PERCENTILE = 10.0
MAX_PAUSE_S = 0.4             # a longer pause ends an utterance
PAD_S = 0.1                   # added before and after an utterance: soft onsets and endings fall below the threshold


# --------------------------------------------------------------------------------------- model card

@dataclass(frozen=True)
class VoiceCard:
    name: str
    path: Path
    front_end: AudioFrontEnd
    fold: np.ndarray           # [model labels, 7]: model probabilities @ fold = LABELS probabilities
    output: str                # logits | probs


def load_voice_card(path: Path) -> VoiceCard:
    """Read and check a `voice-emotion` model card; errors name the card and the key."""
    return read_card(path, parse_voice_card)


def parse_voice_card(raw: dict, folder: Path) -> VoiceCard:
    if raw["task"] != "voice-emotion":
        raise ValueError(f"task must be 'voice-emotion', got {raw['task']!r}")
    if raw["output"] not in ("logits", "probs"):
        raise ValueError(f"output must be 'logits' or 'probs', got {raw['output']!r}")
    fold = fold_matrix(raw["labels"], raw["fold_to_face_labels"])
    return VoiceCard(raw["name"], folder / raw["file"], AudioFrontEnd.from_card(raw["audio"]), fold, raw["output"])


def fold_matrix(labels: list[str], fold: dict[str, str]) -> np.ndarray:
    """0/1 matrix that sums the model's classes into the seven published labels (calm -> neutral, ...)."""
    matrix = np.zeros((len(labels), len(LABELS)), np.float32)
    for i, label in enumerate(labels):
        target = fold.get(label)
        if target not in LABELS:
            raise ValueError(f"fold_to_face_labels must map {label!r} to one of {list(LABELS)}, got {target!r}")
        matrix[i, LABELS.index(target)] = 1.0
    return matrix


class VoiceClassifier:
    """Samples of one window -> probabilities over the seven labels."""

    def __init__(self, card: VoiceCard, backend: str = "onnxruntime", threads: int = 1) -> None:
        self.card = card
        self.front_end = card.front_end
        self.model = InferenceModel(card.path, backend, threads)

    @classmethod
    def from_config(cls, cfg: Config) -> VoiceClassifier:
        """The classifier of ``voice.model`` (a name in models_dir, or a path) on ``voice.backend``."""
        card = load_voice_card(resolve_model(cfg.voice.model, cfg.models_dir or models_dir()))
        return cls(card, cfg.voice.backend, cfg.voice.threads)

    def classify(self, samples: np.ndarray) -> np.ndarray:
        features = self.front_end.features(samples)[None]
        scores = self.model.run(features)[0][0].astype(np.float64)
        if self.card.output == "logits":
            scores = np.exp(scores - scores.max())
        probs = scores / scores.sum()
        return (probs @ self.card.fold).astype(np.float32)


# -------------------------------------------------------------------------------------------- VAD

class SpeechDetector:
    """Share of a window that is speech, against a noise floor learnt from the source's recent sound."""

    def __init__(self, sample_rate: int, threshold_db: float) -> None:
        self.sample_rate, self.threshold_db = sample_rate, threshold_db
        self._levels: deque[np.ndarray] = deque()  # frame levels of the recent new audio, per hop
        self._history_frames = 0

    def speech(self, window: np.ndarray, new_samples: int) -> tuple[float, slice]:
        """Share of the window that is speech, and the samples of its last utterance.

        Call once per window; ``new_samples`` at its end are new since the last call. The utterance
        is the last stretch of speech frames with no pause longer than ``MAX_PAUSE_S``, padded by
        ``PAD_S`` on each side.
        """
        levels = frame_energy_db(window, self.sample_rate, VAD_FRAME_S)
        if levels.size == 0:
            return 0.0, slice(0, 0)
        new_frames = min(levels.size, max(1, round(new_samples / (VAD_FRAME_S * self.sample_rate))))
        self._remember(levels[-new_frames:])
        floor = float(np.percentile(np.concatenate(self._levels), FLOOR_PERCENTILE))
        speech = np.flatnonzero(speech_frames(levels, floor, self.threshold_db))
        if speech.size == 0:
            return 0.0, slice(0, 0)
        pauses = np.flatnonzero(np.diff(speech) > MAX_PAUSE_S / VAD_FRAME_S)
        first = speech[pauses[-1] + 1] if pauses.size else speech[0]
        frame = round(VAD_FRAME_S * self.sample_rate)
        pad = round(PAD_S / VAD_FRAME_S)
        span = slice(max(0, (first - pad) * frame), min(len(window), (speech[-1] + 1 + pad) * frame))
        return speech.size / levels.size, span

    def _remember(self, levels: np.ndarray) -> None:
        self._levels.append(levels)
        self._history_frames += levels.size
        limit = FLOOR_HISTORY_S / VAD_FRAME_S
        while self._history_frames - self._levels[0].size >= limit:
            self._history_frames -= self._levels.popleft().size


# ---------------------------------------------------------------------------------------- the stage

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
        ratio, span = self.vad.speech(samples, min(self.hop, end - start))
        reading = None
        if span.stop - span.start >= self.min_speech:
            # The last utterance only: the model was trained on single utterances, and silence or
            # the end of the previous utterance dilutes the reading.
            probs = self.classifier.classify(samples[span])
            reading = VoiceWindow(self.source, self.ring.pts_at(start + span.start),
                                  self.ring.pts_at(start + span.stop), probs, ratio, self.ring.captured_at())
        if self.metrics:
            self.metrics.speech_ratio.labels(source=self.source).set(ratio)
            self.metrics.stage_seconds.labels(stage="voice").observe(time.perf_counter() - started)
        self.windows_done += 1
        self.on_window(self.source, reading, self.ring.pts_at(end))
