"""Tracker: IoU matching, hysteresis, smoothing and the events it emits."""

import itertools

import numpy as np
import pytest

from edgeemo import LABELS
from edgeemo.config.schema import TrackerConfig
from edgeemo.core.geometry import greedy_match, iou_matrix
from edgeemo.tracking.tracker import FaceTracker
from edgeemo.core.types import Faces


def one_hot(label: str, p: float = 0.9) -> np.ndarray:
    probs = np.full(7, (1 - p) / 6, np.float32)
    probs[LABELS.index(label)] = p
    return probs


def faces(*items: tuple[tuple[float, float, float, float], str]) -> Faces:
    boxes = np.array([box for box, _ in items], np.float32).reshape(-1, 4)
    result = Faces(boxes, np.zeros((len(items), 5, 2), np.float32), np.ones(len(items), np.float32))
    result.probs = np.array([one_hot(label) for _, label in items], np.float32).reshape(-1, 7)
    return result


def run(tracker: FaceTracker, frames: list[Faces], fps: float = 10.0) -> list:
    events = []
    for i, f in enumerate(frames):
        events += tracker.update(f, i / fps)
    return events


def test_iou_matrix_known_values():
    a = np.array([[0, 0, 10, 10]], np.float32)
    b = np.array([[0, 0, 10, 10], [5, 0, 10, 10], [20, 20, 5, 5]], np.float32)
    np.testing.assert_allclose(iou_matrix(a, b)[0], [1.0, 50 / 150, 0.0], rtol=1e-6)


def test_greedy_match_prefers_highest_iou_and_uses_each_once():
    iou = np.array([[0.9, 0.8], [0.85, 0.1]])
    assert sorted(greedy_match(iou, 0.3)) == [(0, 0)]  # track 1 best match (face 0) is taken; 0.1 < 0.3
    assert greedy_match(np.zeros((0, 2)), 0.3) == []


def test_track_starts_after_min_hits_and_ends_after_misses():
    tracker = FaceTracker(TrackerConfig(min_hits=3, max_missed_s=0.25, heartbeat_s=100), "cam")
    frames = [faces(((10, 10, 50, 50), "happy"))] * 5 + [faces()] * 5
    events = run(tracker, frames)
    assert [e.type for e in events] == ["start", "end"]
    start, end = events
    assert start.pts == pytest.approx(0.2)  # third hit at frame 2
    assert LABELS[int(start.probs.argmax())] == "happy"
    assert end.pts == pytest.approx(0.4)  # ended where it was last seen
    assert start.track == end.track == 1


def test_one_frame_false_positive_is_never_reported():
    tracker = FaceTracker(TrackerConfig(min_hits=2), "cam")
    events = run(tracker, [faces(((0, 0, 30, 30), "angry"))] + [faces()] * 20)
    assert events == []


def test_two_faces_keep_their_ids_while_moving():
    tracker = FaceTracker(TrackerConfig(min_hits=1, heartbeat_s=100), "cam")
    frames = [faces(((10 + 2 * i, 10, 40, 40), "happy"), ((200 - 2 * i, 10, 40, 40), "sad")) for i in range(10)]
    events = run(tracker, frames)
    assert [(e.type, e.track) for e in events] == [("start", 1), ("start", 2)]
    assert {t.id: LABELS[t.emotion] for t in tracker.tracks} == {1: "happy", 2: "sad"}


def test_smoothing_suppresses_flicker_and_follows_real_change():
    tracker = FaceTracker(TrackerConfig(min_hits=1, smoothing_s=0.5, heartbeat_s=100), "cam")
    box = (10, 10, 50, 50)
    flicker = [faces((box, "sad" if i == 5 else "happy")) for i in range(10)]  # one odd frame
    events = run(tracker, flicker, fps=30)
    assert [e.type for e in events] == ["start"]
    lasting = [faces((box, "sad"))] * 30  # a second of sadness
    events = [e for i, f in enumerate(lasting) for e in tracker.update(f, 1 + i / 30)]
    assert [(e.type, LABELS[int(e.probs.argmax())]) for e in events] == [("change", "sad")]


def test_heartbeat_updates_and_finish_ends_every_reported_track():
    ids = itertools.count(7)
    tracker = FaceTracker(TrackerConfig(min_hits=1, heartbeat_s=1.0), "cam", ids)
    events = run(tracker, [faces(((10, 10, 50, 50), "neutral"))] * 25)  # 2.4 s at 10 fps
    assert [e.type for e in events] == ["start", "update", "update"]
    [face] = tracker.present()
    assert (face["track"], face["source"], face["emotion"], face["box"]) == (7, "cam", "neutral", [10, 10, 50, 50])
    assert face["confidence"] == face["probs"]["neutral"] == max(face["probs"].values())
    ended = tracker.finish()
    assert [(e.type, e.track) for e in ended] == [("end", 7)] and tracker.tracks == []
