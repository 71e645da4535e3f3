"""Face + voice: the `voice` and `fused` event streams of each source.

Every voice reading (one analysis window of speech) is published as a `voice` event stream of its
own, whether or not a face is in view, so a speaker off camera is still read. When exactly one face
track was seen during the window, the reading is also fused with that face's probabilities over
the same stretch of media time, and published as the `fused` stream of that track (same track id,
with both components). With two or more faces the voice cannot be attributed, so nothing is fused.

Fusion is log-linear pooling, a weighted product of the two distributions (p ~ face^wf * voice^wv,
with the configured weights, 1 and 1 by default): the combination of two independent experts. It is
confidence-aware by construction: a flat, unsure reading leaves the other unchanged, a confident one
(large log-odds) outweighs an unsure one, and two confident readings that agree reinforce each
other. Measured against the alternatives (the mean of the probabilities, the more confident side
alone, confidence-weighted pooling) on face + voice pairs and on the real audio-visual clips, it is
the most accurate: tools/eval/fusion.py and tools/eval/sample.py, figures in models/fusion.md.

Streams follow the face tracker's rules: `start` on the first reading, `change` when the dominant
label changes, `update` every heartbeat, `end` when speech stops (or the fused face is gone).
"""

from __future__ import annotations

import itertools
import math
import threading
from collections import deque
from dataclasses import dataclass

import numpy as np

from edgeemo.config.schema import FusionConfig
from edgeemo.tracking.tracker import event_kind
from edgeemo.core.types import TrackEvent, VoiceWindow

EPS = 1e-4
FACE_HISTORY_S = 15.0


def fuse(face: np.ndarray, voice: np.ndarray, face_weight: float = 1.0, voice_weight: float = 1.0) -> np.ndarray:
    """Log-linear pooling of two probability vectors: normalised face^face_weight * voice^voice_weight.

    EPS keeps a zero in one reading from vetoing a label the other is sure of.
    """
    log_p = (face_weight * np.log(np.asarray(face, np.float64) + EPS)
             + voice_weight * np.log(np.asarray(voice, np.float64) + EPS))
    p = np.exp(log_p - log_p.max())
    return (p / p.sum()).astype(np.float32)


@dataclass
class FaceSnapshot:
    """The reported face tracks of one analysed frame."""

    pts: float
    tracks: list[tuple[int, np.ndarray, tuple[int, int, int, int]]]  # (track id, smoothed probs, box)


@dataclass
class Stream:
    """One `voice` or `fused` event stream."""

    track: int
    emotion: int               # dominant label index when last reported
    last_event: float          # pts of the last event sent
    probs: np.ndarray          # the latest reading (what `end` reports)
    box: tuple | None
    components: dict | None


class Fuser:
    """Turns voice readings into events, with the face tracks seen in the same stretch of time.

    The track stage calls :meth:`observe_faces` for every frame; the voice stages call
    :meth:`on_window` (from their own threads) for every analysis window.
    """

    def __init__(self, cfg: FusionConfig, heartbeat_s: float, ids: itertools.count, video_sources: set[str],
                 wait_s: float = 1.0) -> None:
        self.cfg, self.heartbeat_s, self.ids, self.wait_s = cfg, heartbeat_s, ids, wait_s
        self._faces: dict[str, deque[FaceSnapshot]] = {s: deque() for s in video_sources}
        self._video_pts: dict[str, float] = {s: -math.inf for s in video_sources}
        self._video_done = False
        self._streams: dict[str, dict[tuple[str, int], Stream]] = {}
        self._cond = threading.Condition()

    # -- the face side (track stage thread)

    def observe_faces(self, source: str, pts: float, tracks: list[tuple[int, np.ndarray, tuple]]) -> None:
        with self._cond:
            history = self._faces.setdefault(source, deque())
            history.append(FaceSnapshot(pts, tracks))
            while history and history[0].pts < pts - FACE_HISTORY_S:
                history.popleft()
            self._video_pts[source] = pts
            self._cond.notify_all()

    def video_done(self) -> None:
        """No more frames will come (every video source ended): stop waiting for them."""
        with self._cond:
            self._video_done = True
            self._cond.notify_all()

    # -- the voice side (voice stage threads)

    def on_window(self, source: str, reading: VoiceWindow | None, pts: float) -> list[TrackEvent]:
        """Events for one analysis window; ``reading`` None means no speech in it (ends the streams)."""
        if reading is None:
            return self._end_streams(source, keep=set(), pts=pts)
        faces = self._faces_during(source, reading.start, reading.end)
        events: list[TrackEvent] = []
        streams = self._streams.setdefault(source, {})
        voice_key = next((key for key in streams if key[0] == "voice"), None) or ("voice", next(self.ids))
        events += self._emit(source, voice_key, reading, reading.probs, None, None)
        keys = {voice_key}
        if len(faces) == 1:
            (track, (face_probs, box)), = faces.items()
            fused = fuse(face_probs, reading.probs, self.cfg.face_weight, self.cfg.voice_weight)
            components = {"face": face_probs, "voice": reading.probs}
            events += self._emit(source, ("fused", track), reading, fused, box, components)
            keys.add(("fused", track))
        return events + self._end_streams(source, keep=keys, pts=reading.end)

    def finish(self, source: str, pts: float) -> list[TrackEvent]:
        """End the source's streams (its sound ended or the daemon stops)."""
        return self._end_streams(source, keep=set(), pts=pts)

    def _faces_during(self, source: str, start: float, end: float) -> dict[int, tuple[np.ndarray, tuple]]:
        """Mean probabilities and last box of every face track seen in [start, end] of media time."""
        with self._cond:
            if source not in self._video_pts:
                return {}
            self._cond.wait_for(lambda: self._video_pts[source] >= end or self._video_done, self.wait_s)
            seen: dict[int, list] = {}
            for snapshot in self._faces[source]:
                if start <= snapshot.pts <= end:
                    for track, probs, box in snapshot.tracks:
                        seen.setdefault(track, [[], box])[0].append(probs)
                        seen[track][1] = box
        return {track: (np.mean(probs, axis=0), box) for track, (probs, box) in seen.items()}

    def _emit(self, source: str, key: tuple[str, int], reading: VoiceWindow, probs: np.ndarray,
              box: tuple | None, components: dict | None) -> list[TrackEvent]:
        streams = self._streams.setdefault(source, {})
        probs = np.asarray(probs, np.float32)
        dominant = int(np.argmax(probs))
        stream = streams.get(key)
        if stream is None:
            kind = "start"
            stream = streams[key] = Stream(key[1], dominant, reading.end, probs, box, components)
        else:
            kind = event_kind(True, dominant, stream.emotion, reading.end - stream.last_event, self.heartbeat_s)
        stream.probs, stream.box, stream.components = probs, box, components
        if kind is None:
            return []
        stream.emotion, stream.last_event = dominant, reading.end
        return [TrackEvent(kind, key[1], source, reading.end, probs, box, key[0], reading.captured_at, components)]

    def _end_streams(self, source: str, keep: set, pts: float) -> list[TrackEvent]:
        streams = self._streams.get(source, {})
        ended = [key for key in streams if key not in keep]
        events = []
        for key in ended:
            stream = streams.pop(key)
            events.append(TrackEvent("end", stream.track, source, pts, stream.probs, stream.box, key[0],
                                     components=stream.components))
        return events
