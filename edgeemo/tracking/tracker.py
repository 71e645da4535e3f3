"""Face tracks across frames: IoU matching, smoothed probabilities, and the events they produce.

A track is reported (`start`) only after `min_hits` detections, which kills one-frame false
positives, and ended (`end`) after `max_missed_s` without a match. Probabilities are averaged with
an exponential moving average whose time constant is `smoothing_s` of media time, so labels do not
flicker and behave the same at 10 or 60 frames/s. `change` fires when the smoothed dominant emotion
changes, `update` as a heartbeat every `heartbeat_s`.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np

from edgeemo import LABELS
from edgeemo.config.schema import TrackerConfig
from edgeemo.core.events import rounded_probs
from edgeemo.core.types import Faces, TrackEvent
from edgeemo.core.geometry import greedy_match, iou_matrix


@dataclass
class Track:
    id: int
    box: np.ndarray            # [4] x, y, w, h of the last match
    probs: np.ndarray          # [7] smoothed probabilities
    hits: int
    last_seen: float           # pts of the last match
    reported: bool = False
    emotion: int = -1          # dominant label index when last reported
    last_event: float = 0.0    # pts of the last event sent for this track
    captured_at: float = 0.0


def pixel_box(track: Track) -> tuple[int, int, int, int]:
    return tuple(np.rint(track.box).astype(int).tolist())  # one numpy call, not four scalar roundings


def face_state(track: Track, source: str) -> dict:
    """A face in view as the state topic and the dashboard's bars show it."""
    probs = dict(zip(LABELS, rounded_probs(track.probs)))
    label = LABELS[track.emotion]
    return {"track": track.id, "source": source, "emotion": label, "confidence": probs[label],
            "probs": probs, "box": list(pixel_box(track))}


def event_kind(reported: bool, dominant: int, emotion: int, since_event: float, heartbeat_s: float) -> str | None:
    """The rule every event stream follows (face tracks here, voice and fused streams in fusion.py):
    `start` when first reported, `change` when the dominant label changed, `update` as a heartbeat."""
    if not reported:
        return "start"
    if dominant != emotion:
        return "change"
    return "update" if since_event >= heartbeat_s else None


class FaceTracker:
    """Tracks of one source. Track ids come from a counter shared by all sources of a device."""

    def __init__(self, cfg: TrackerConfig, source: str, ids: itertools.count | None = None) -> None:
        self.cfg = cfg
        self.source = source
        self.ids = ids or itertools.count(1)
        self.tracks: list[Track] = []

    def update(self, faces: Faces, pts: float, captured_at: float = 0.0) -> list[TrackEvent]:
        assert faces.probs is not None, "classify faces before tracking them"
        boxes = np.array([t.box for t in self.tracks]).reshape(-1, 4)
        pairs = greedy_match(iou_matrix(boxes, faces.boxes), self.cfg.iou_threshold)
        matched_faces = {f for _, f in pairs}
        events: list[TrackEvent] = []
        for t, f in pairs:
            events += self._observe(self.tracks[t], faces.boxes[f], faces.probs[f], pts, captured_at)
        for f in range(len(faces)):
            if f not in matched_faces:
                track = Track(next(self.ids), faces.boxes[f].copy(), faces.probs[f].copy(), 0, pts)
                self.tracks.append(track)
                events += self._observe(track, faces.boxes[f], faces.probs[f], pts, captured_at, fresh=True)
        events += self.expire(pts)
        return events

    def _observe(self, track: Track, box: np.ndarray, probs: np.ndarray, pts: float, captured_at: float,
                 fresh: bool = False) -> list[TrackEvent]:
        if not fresh:
            dt = max(pts - track.last_seen, 0.0)
            alpha = 1.0 if self.cfg.smoothing_s == 0 else 1.0 - math.exp(-dt / self.cfg.smoothing_s)
            track.probs += alpha * (probs - track.probs)
        track.box = box.copy()
        track.hits += 1
        track.last_seen, track.captured_at = pts, captured_at
        if not track.reported and track.hits < self.cfg.min_hits:
            return []
        dominant = int(track.probs.argmax())
        kind = event_kind(track.reported, dominant, track.emotion, pts - track.last_event, self.cfg.heartbeat_s)
        if kind is None:
            return []
        track.reported = True
        track.emotion, track.last_event = dominant, pts
        return [self._event(kind, track, pts)]

    def expire(self, pts: float) -> list[TrackEvent]:
        """End the tracks not seen for more than `max_missed_s` before `pts` (also without a frame)."""
        lost = [t for t in self.tracks if pts - t.last_seen > self.cfg.max_missed_s]
        self.tracks = [t for t in self.tracks if t not in lost]
        return [self._event("end", t, t.last_seen) for t in lost if t.reported]

    def finish(self) -> list[TrackEvent]:
        """End every track where it was last seen (the source ended or the daemon stops)."""
        ended = [self._event("end", t, t.last_seen) for t in self.tracks if t.reported]
        self.tracks = []
        return ended

    def present(self) -> list[dict]:
        """Reported tracks visible now: their label (as last reported in an event) and smoothed bars."""
        return [face_state(t, self.source) for t in self.tracks if t.reported]

    def seen_at(self, pts: float) -> list[tuple[int, np.ndarray, tuple[int, int, int, int]]]:
        """(id, smoothed probs, box) of the reported tracks matched in the frame at ``pts`` (for fusion)."""
        return [(t.id, t.probs.copy(), pixel_box(t)) for t in self.tracks if t.reported and t.last_seen == pts]

    def _event(self, kind: str, track: Track, pts: float) -> TrackEvent:
        return TrackEvent(type=kind, track=track.id, source=self.source, pts=pts, probs=track.probs.copy(),
                          box=pixel_box(track), captured_at=track.captured_at)
