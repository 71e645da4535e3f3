"""Keyframes, regions and motion gating (edgeemo.vision) on real frames of the bundled sample.

The accuracy guard itself (tools/eval/accuracy_guard.py) runs here on the sample: the scheduled
analysis must find what every-frame analysis finds.
"""

import subprocess

import cv2
import numpy as np
import pytest

from edgeemo.config.load import load_config
from edgeemo.config.schema import Config, DetectorConfig
from edgeemo.vision.detector import FaceDetector
from edgeemo.core.resources import models_dir, sample_video
from edgeemo.vision.analysis import FrameAnalysis
from edgeemo.vision.motion import MotionDetector
from edgeemo.vision.pixels import shrink
from edgeemo.vision.scheduler import DetectionScheduler
from tools.eval.accuracy_guard import compare

YUNET = models_dir() / "yunet_s_dynamic.onnx"


@pytest.fixture(scope="module")
def frames() -> list[np.ndarray]:
    capture = cv2.VideoCapture(str(sample_video()))
    out = []
    while len(out) < 60 and (item := capture.read())[0]:
        out.append(item[1])
    return out


@pytest.fixture(scope="module")
def detector() -> FaceDetector:
    return FaceDetector(DetectorConfig(), YUNET)


def empty_room(frame: np.ndarray) -> np.ndarray:
    """The frame's top-left corner (wall, no face) stretched over the whole frame."""
    return cv2.resize(frame[:60, :60], (frame.shape[1], frame.shape[0]))


def scheduler(detector: FaceDetector, **settings) -> DetectionScheduler:
    return DetectionScheduler(detector, DetectorConfig(**settings), classify_every=3)


def test_guard_holds_on_the_sample():
    result = compare(str(sample_video()), {})
    assert result["frames"] == 427 and result["faces_per_frame"] == [1.0, 1.0]
    assert result["tracks"][0] == result["tracks"][1] and len(result["dominant"]["every_frame"]) == 4
    assert result["same"], result
    assert result["counts"]["region_frames"] > 300  # most frames were not full-frame passes


def test_shrink_equals_area_average_at_one_half(frames):
    ours, sx, sy = shrink(frames[0], 320, 180)
    assert (sx, sy) == (0.5, 0.5)
    assert np.array_equal(ours, cv2.resize(frames[0], (320, 180), interpolation=cv2.INTER_AREA))


def test_regions_find_the_face_where_the_full_frame_does(detector, frames):
    full = detector.detect(frames[30])
    x, y, w, h = full.boxes[0]
    found = detector.detect_regions(frames[30], [(int(x - w / 3), max(0, int(y - h / 3)), int(x + w * 4 / 3),
                                                  min(360, int(y + h * 4 / 3)))])
    assert len(found) == 1
    assert np.abs(found.landmarks - full.landmarks).max() < 0.05 * w  # eyes where the full frame puts them


def test_between_keyframes_only_regions_run(detector, frames):
    sched = scheduler(detector, full_frame_every=10)
    found = [sched.detect(frame) for frame in frames[:30]]
    assert [len(f) for f in found] == [1] * 30
    assert sched.counts.keyframes >= 3 and sched.counts.region_frames >= 15
    assert len({int(f.ids[0]) for f in found}) == 1                        # one face, one id throughout
    assert [bool(f.due[0]) for f in found[:7]] == [True, False, False, True, False, False, True]  # every 3rd


def test_a_followed_face_is_located_when_due_and_held_in_between(detector, frames, monkeypatch):
    """locate_every L: a face's region is searched L frames after it was last found, and whenever
    it is due for classification (its crop needs that frame's landmarks, M = 3 here); in between
    it is reported where it was last found, with its id, and is not due."""
    searched_on: list[int] = []
    number = [0]
    detect_regions = FaceDetector.detect_regions
    monkeypatch.setattr(FaceDetector, "detect_regions", lambda self, image, regions, scale=None:
                        searched_on.append(number[0]) or detect_regions(self, image, regions, scale))
    for locate_every, expected in ((1, list(range(1, 10))), (2, [2, 3, 5, 6, 8, 9]), (3, [3, 6, 9]), (5, [3, 6, 9])):
        sched = scheduler(detector, full_frame_every=10, locate_every=locate_every, motion={"enabled": False})
        searched_on.clear()
        found = []
        for number[0], frame in enumerate(frames[:10]):   # frame 0 is the keyframe
            found.append(sched.detect(frame))
        assert searched_on == expected, locate_every
        assert [len(f) for f in found] == [1] * 10 and len({int(f.ids[0]) for f in found}) == 1
        assert [bool(f.due[0]) for f in found[:7]] == [True, False, False, True, False, False, True]
        for i in set(range(1, 10)) - set(expected):
            assert np.array_equal(found[i].boxes[0], found[i - 1].boxes[0])  # held where last found
            assert np.array_equal(found[i].landmarks[0], found[i - 1].landmarks[0])


def test_a_face_found_in_a_neighbours_region_is_that_neighbour_not_a_new_face(detector):
    """Two followed faces side by side, only A's region searched this frame (B is held): a face
    found there that is B updates B; it is not reported twice under a new id."""
    from edgeemo.core.types import Faces
    from edgeemo.vision.scheduler import Followed, SourceState

    sched = scheduler(detector, full_frame_every=10, locate_every=3)
    box_a, box_b = np.array([100, 100, 80, 80], np.float32), np.array([190, 100, 80, 80], np.float32)
    marks = np.zeros((5, 2), np.float32)
    a = Followed(1, box_a, marks, 0.9, classified_at=0, located_at=0)
    b = Followed(2, box_b, marks, 0.9, classified_at=0, located_at=0)
    state = SourceState(followed=[a, b])
    found = Faces(np.array([box_b + 2]), marks[None], np.array([0.9], np.float32))  # B, seen from A's region
    faces = sched._follow(state, found, 1, keyframe=False, searched={1})
    assert sorted(faces.ids.tolist()) == [2] and len(faces) == 1                  # B once; A missed
    assert {f.id: f.missed for f in state.followed} == {2: 0, 1: 1}


def test_every_frame_setting_is_full_frame_detection(detector, frames):
    sched = scheduler(detector, full_frame_every=1)
    for frame in frames[:10]:
        sched.detect(frame)
    assert sched.counts.keyframes == 10 and sched.counts.region_frames == 0


def test_empty_still_room_runs_no_detection(detector, frames):
    room = empty_room(frames[0])
    sched = scheduler(detector)
    noisy = [np.clip(room.astype(np.int16) + np.random.default_rng(i).integers(-3, 4, room.shape), 0, 255)
             .astype(np.uint8) for i in range(40)]           # sensor noise, no motion
    assert all(len(sched.detect(frame)) == 0 for frame in noisy)
    assert sched.counts.keyframes == 1 and sched.counts.idle_frames == 39


def test_an_idle_source_needs_only_the_frames_motion_is_looked_for_on(detector, frames):
    """While nobody is followed, motion is looked for once per keyframe period (here 4), not once
    per motion.every (2): a face that walks in is still found within the period."""
    room = empty_room(frames[0])
    sched = scheduler(detector, full_frame_every=4, motion={"every": 2})
    assert all(sched.needs("cam", n) for n in range(8))        # nothing seen yet: every frame
    sched.detect(room, "cam", 0)                                # the first frame is a keyframe
    assert all(sched.needs("cam", n) for n in range(8))
    sched.detect(room, "cam", 4)                                # idle now
    assert [n for n in range(12) if sched.needs("cam", n)] == [0, 4, 8]
    assert all(sched.needs("other", n) for n in range(8))      # per source
    assert len(sched.detect(frames[0], "cam", 6)) == 0          # motion is not looked for on frame 6
    assert len(sched.detect(frames[0], "cam", 8)) == 1          # it is on 8: someone walked in
    assert all(sched.needs("cam", n) for n in range(8))        # every frame again


def test_motion_is_looked_for_on_one_frame_in_every_while_a_face_is_followed(detector, frames, monkeypatch):
    sched = scheduler(detector, motion={"every": 3})
    looked, update = [], MotionDetector.update
    monkeypatch.setattr(MotionDetector, "update", lambda self, image: looked.append(number) or update(self, image))
    for number, frame in enumerate(frames[:12]):
        assert len(sched.detect(frame, "cam", number)) == 1
    assert looked == [0, 3, 6, 9]


def test_a_played_still_video_is_analysed_one_frame_in_the_keyframe_period(tmp_path):
    """The real daemon on a still video played at its own rate: the capture skips frames undecoded."""
    from edgeemo.service.daemon import Daemon

    video = tmp_path / "still.mp4"
    subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-f", "lavfi", "-i", "color=c=gray:s=320x180:r=25:d=2",
                    "-pix_fmt", "yuv420p", str(video)], check=True, timeout=60)
    cfg = load_config(None, {"voice.enabled": False, "web.enabled": False, "metrics.enabled": False,
                             "event_log.path": str(tmp_path / "events.jsonl"), "journal.path": str(tmp_path / "j.db"),
                             "detector.full_frame_every": 10})
    cfg.sources = [cfg.sources[0].model_copy(update={"name": "still", "url": str(video)})]
    daemon = Daemon(cfg)                                        # not lossless: played like a camera
    daemon.start()
    daemon.supervise()
    assert daemon.shutdown() == 0
    registry = daemon.metrics.registry
    skipped = registry.get_sample_value("edgeemo_frames_dropped_total", {"source": "still", "reason": "idle"})
    analysed = registry.get_sample_value("edgeemo_frames_processed_total", {"source": "still"})
    assert skipped + analysed == 50
    assert 5 <= analysed <= 7                                   # the first two frames, then one in ten


def test_lighting_jump_recalibrates_instead_of_detecting(detector, frames):
    room = empty_room(frames[0])
    sched = scheduler(detector, full_frame_every=5)     # nobody followed: motion looked for on 0, 5, ...
    for _ in range(5):
        sched.detect(room)
    darker = cv2.convertScaleAbs(room, alpha=0.5)  # the lamp goes off
    for _ in range(5):
        sched.detect(darker)
    assert sched.counts.keyframes == 1
    assert sched.states["default"].motion.lighting_jumps == 1


def test_a_face_that_walks_in_is_found_on_the_next_frame_motion_is_looked_for_on(detector, frames):
    sched = scheduler(detector, full_frame_every=10)    # nobody followed: motion looked for on 0, 10, ...
    room = empty_room(frames[0])
    for _ in range(9):                                  # frames 0-8
        sched.detect(room)
    assert len(sched.detect(frames[0])) == 0            # 9: not looked at
    assert len(sched.detect(frames[0])) == 1 and sched.counts.motion_keyframes == 1   # 10


def test_motion_off_finds_an_entering_face_at_the_next_keyframe(detector, frames):
    sched = scheduler(detector, full_frame_every=5, motion={"enabled": False})
    room = empty_room(frames[0])
    counts = [len(sched.detect(room if i < 7 else frames[0])) for i in range(12)]
    assert counts == [0] * 10 + [1] * 2  # keyframes at 0, 5, 10


def test_motion_detector_sees_a_moving_square():
    motion = MotionDetector(DetectorConfig().motion)
    still = np.full((360, 640, 3), 120, np.uint8)
    motion.update(still)
    assert not motion.moved(motion.update(still))
    moved = still.copy()
    moved[100:160, 300:360] = 250
    mask = motion.update(moved)
    assert motion.moved(mask) and not motion.moved(mask, [(280, 80, 380, 180)])


def test_classification_holds_the_last_reading_between_due_frames(frames):
    analysis = FrameAnalysis(load_config(None, {"classifier.every_frames": 4}))
    readings = [analysis.analyse(frame, "cam").probs[0].copy() for frame in frames[:8]]
    assert np.array_equal(readings[1], readings[0]) and np.array_equal(readings[3], readings[0])
    assert not np.array_equal(readings[4], readings[0])
    fresh = FrameAnalysis(Config())  # a full-frame pass reads the same emotion from its own landmarks
    full = fresh.classifier.classify(frames[4], fresh.detector.detect(frames[4]))[0]
    assert full.argmax() == readings[4].argmax() and np.abs(full - readings[4]).max() < 0.1
