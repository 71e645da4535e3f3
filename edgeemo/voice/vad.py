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

from edgeemo.voice.features import frame_levels_db, speech_band, speech_frames

VAD_FRAME_S = 0.03
FLOOR_HISTORY_S = 30.0
FLOOR_PERCENTILE = 10.0
MAX_PAUSE_S = 0.4             # a longer pause ends an utterance
MAX_RAISE_DB = 14.0          # the most the median-to-floor spread raises the threshold
PAD_S = 0.1                   # added before and after an utterance: soft onsets and endings fall below the threshold


class SpeechDetector:
    """Share of a window that is speech, against a noise floor learnt from the source's recent sound."""

    def __init__(self, sample_rate: int, threshold_db: float) -> None:
        from scipy.signal import sosfilt  # imported here, with the filter, not by every command (features.speech_band)

        self.sample_rate, self.threshold_db = sample_rate, threshold_db
        self._sosfilt, self._sos = sosfilt, speech_band(sample_rate)
        self._levels: deque[np.ndarray] = deque()  # frame levels of the recent new audio, per hop
        self._history_frames = 0
        self._band = np.zeros(0, np.float32)        # the last window, band-passed
        self._state = np.zeros((len(self._sos), 2))  # the filter's state after the last window's end
        self._end: int | None = None                # where the last window ended in the source's sound

    def speech(self, window: np.ndarray, end: int) -> tuple[float, slice]:
        """Share of the window that is speech, and the samples of its last utterance.

        Call once per window; ``end`` is where the window ends in the source's sound (a sample
        count), so the samples new since the last call are known. The utterance is the last stretch
        of speech frames with no pause longer than ``MAX_PAUSE_S``, padded by ``PAD_S`` on each side.
        """
        new_samples = self._band_pass(window, end)
        levels = frame_levels_db(self._band, self.sample_rate, VAD_FRAME_S)
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

    def _band_pass(self, window: np.ndarray, end: int) -> int:
        """Band-pass the window into ``_band``; the number of its samples new since the last call.

        Windows overlap (a 3 s window every second): only the new samples are filtered, the filter
        carrying its state over from the last call, and the rest are kept from it. A window that does
        not overlap the last one (or ends before it) is filtered whole, from rest. After a sample that
        is not a number the filter starts again from rest: carried over, it would stay NaN for good.
        """
        new = end - self._end if self._end is not None else len(window)
        kept = len(window) - new
        state = self._state
        if not 0 <= kept <= len(self._band) or new <= 0:
            state, new, kept = np.zeros_like(self._state), len(window), 0
        fresh, state = self._sosfilt(self._sos, window[kept:], zi=state)
        band = np.concatenate([self._band[len(self._band) - kept:], fresh.astype(np.float32)])
        self._band, self._end = band, end
        self._state = state if np.isfinite(state).all() else np.zeros_like(state)
        return new

    def _remember(self, levels: np.ndarray) -> None:
        self._levels.append(levels)
        self._history_frames += levels.size
        limit = FLOOR_HISTORY_S / VAD_FRAME_S
        while self._history_frames - self._levels[0].size >= limit:
            self._history_frames -= self._levels.popleft().size
