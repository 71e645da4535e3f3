"""Speech detection: each 30 ms frame's level against the source's noise floor over the last 30 s.

The threshold adapts to how the room's sound varies: steady noise (a fan, pink noise) has its
median level close to its floor, and speech stands out ``threshold_db`` above the floor. Sound that
rises and falls by itself (music, a crowd on a television) has its median well above its floor, so
the threshold is raised by that spread (up to ``MAX_RAISE_DB``): its loud moments are not speech,
a voice must stand out above them. In a quiet room someone talking for half a minute also spreads
the levels; the cap keeps them heard.
"""

from __future__ import annotations

from collections import deque

import numpy as np

from edgeemo.voice.features import frame_energy_db, speech_band, speech_frames

VAD_FRAME_S = 0.03
FLOOR_HISTORY_S = 30.0
FLOOR_PERCENTILE = 10.0
MAX_PAUSE_S = 0.4             # a longer pause ends an utterance
MAX_RAISE_DB = 14.0          # the most the median-to-floor spread raises the threshold
PAD_S = 0.1                   # added before and after an utterance: soft onsets and endings fall below the threshold


class SpeechDetector:
    """Share of a window that is speech, against a noise floor learnt from the source's recent sound."""

    def __init__(self, sample_rate: int, threshold_db: float) -> None:
        self.sample_rate, self.threshold_db = sample_rate, threshold_db
        speech_band(sample_rate)  # its filter (and scipy.signal) made now, not in the voice thread's first window
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
        floor, middle = np.percentile(np.concatenate(self._levels), [FLOOR_PERCENTILE, 50])
        threshold = self.threshold_db + min(float(middle - floor), MAX_RAISE_DB)
        speech = np.flatnonzero(speech_frames(levels, float(floor), threshold))
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
