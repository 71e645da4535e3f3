"""Fusion: the pooling maths, and the voice / fused event streams built from voice readings and face tracks."""

import itertools
import json

import jsonschema
import numpy as np
import pytest

from edgeemo import LABELS
from edgeemo.config.schema import FusionConfig
from edgeemo.tracking.fusion import Fuser, fuse
from edgeemo.core.events import event_payload
from edgeemo.core.resources import event_schema
from edgeemo.core.types import VoiceWindow


def peaked(label: str, p: float) -> np.ndarray:
    probs = np.full(7, (1 - p) / 6, np.float32)
    probs[LABELS.index(label)] = p
    return probs


FLAT = np.full(7, 1 / 7, np.float32)


def test_two_readings_that_agree_reinforce_each_other():
    fused = fuse(peaked("angry", 0.6), peaked("angry", 0.7))
    assert fused.sum() == pytest.approx(1, abs=1e-6) and LABELS[int(fused.argmax())] == "angry"
    assert fused.max() > 0.7  # a product of agreeing experts is surer than either


def test_a_flat_reading_leaves_the_other_as_it_is_and_zero_weight_ignores_a_modality():
    face = peaked("sad", 0.6)
    assert np.allclose(fuse(face, FLAT), face, atol=1e-3)
    assert np.allclose(fuse(FLAT, face), face, atol=1e-3)
    assert np.allclose(fuse(face, peaked("angry", 0.9), voice_weight=0.0), face, atol=1e-3)


def test_the_surer_reading_wins_and_equal_ones_tie():
    assert LABELS[int(fuse(peaked("neutral", 0.3), peaked("angry", 0.9)).argmax())] == "angry"
    assert LABELS[int(fuse(peaked("neutral", 0.9), peaked("angry", 0.3)).argmax())] == "neutral"
    both = fuse(peaked("happy", 0.8), peaked("sad", 0.8))
    assert both[LABELS.index("happy")] == pytest.approx(both[LABELS.index("sad")], abs=1e-6)
    # Weights shift the balance: the same disagreement, the voice counted twice.
    assert LABELS[int(fuse(peaked("happy", 0.8), peaked("sad", 0.8), 1.0, 2.0).argmax())] == "sad"


def reading(start: float, end: float, label: str, p: float = 0.8) -> VoiceWindow:
    return VoiceWindow("cam", start, end, peaked(label, p), 0.5, 0.0)


def make_fuser(video: bool = True) -> Fuser:
    fuser = Fuser(FusionConfig(), heartbeat_s=2.0, ids=itertools.count(100), video_sources={"cam"} if video else set(),
                  wait_s=0.01)
    return fuser


def faces(fuser: Fuser, tracks: list[tuple[int, str]], start: float, end: float, fps: float = 10) -> None:
    for pts in np.arange(start, end, 1 / fps):
        fuser.observe_faces("cam", float(pts), [(t, peaked(label, 0.6), (10, 10, 50, 50)) for t, label in tracks])


def test_voice_and_fused_streams_start_change_update_and_end():
    fuser = make_fuser()
    faces(fuser, [(7, "neutral")], 0.0, 10.0)
    first = fuser.on_window("cam", reading(1.0, 3.0, "angry"), 3.0)
    assert [(e.modality, e.type, e.track) for e in first] == [("voice", "start", 100), ("fused", "start", 7)]
    voice, fused = first
    assert voice.box is None and voice.components is None and LABELS[int(voice.probs.argmax())] == "angry"
    assert fused.box == (10, 10, 50, 50) and set(fused.components) == {"face", "voice"}
    assert np.allclose(fused.probs, fuse(peaked("neutral", 0.6), peaked("angry", 0.8)))
    assert fuser.on_window("cam", reading(1.0, 4.0, "angry"), 4.0) == []           # same label, within heartbeat
    assert [e.type for e in fuser.on_window("cam", reading(1.0, 5.0, "angry"), 5.0)] == ["update", "update"]
    changed = fuser.on_window("cam", reading(3.0, 6.0, "sad", 0.95), 6.0)
    assert [(e.modality, e.type) for e in changed] == [("voice", "change"), ("fused", "change")]
    ended = fuser.on_window("cam", None, 7.0)                                          # speech stopped
    assert [(e.modality, e.type, e.track) for e in ended] == [("voice", "end", 100), ("fused", "end", 7)]
    assert LABELS[int(ended[0].probs.argmax())] == "sad"  # end reports the last reading
    # The next utterance is a new voice stream with a new id.
    assert [e.track for e in fuser.on_window("cam", reading(7.5, 9.0, "happy"), 9.0)] == [101, 7]


def test_no_fusion_with_two_faces_in_view_or_without_video():
    fuser = make_fuser()
    faces(fuser, [(1, "happy"), (2, "sad")], 0.0, 4.0)
    assert [e.modality for e in fuser.on_window("cam", reading(1.0, 3.0, "angry"), 3.0)] == ["voice"]
    audio_only = make_fuser(video=False)
    assert [e.modality for e in audio_only.on_window("cam", reading(1.0, 3.0, "angry"), 3.0)] == ["voice"]


def test_the_fused_face_is_the_one_seen_during_the_utterance():
    fuser = make_fuser()
    faces(fuser, [(1, "happy")], 0.0, 2.0)   # left before the utterance
    faces(fuser, [(2, "sad")], 2.0, 6.0)
    events = fuser.on_window("cam", reading(3.0, 5.0, "sad"), 5.0)
    assert [(e.modality, e.track) for e in events] == [("voice", 100), ("fused", 2)]
    # When the face leaves while the voice goes on, its fused stream ends and the voice stream stays.
    events = fuser.on_window("cam", reading(6.5, 8.0, "sad"), 8.0)
    assert [(e.modality, e.type, e.track) for e in events] == [("voice", "update", 100), ("fused", "end", 2)]


def test_fused_event_payloads_carry_their_components_and_fit_the_schema():
    fuser = make_fuser()
    faces(fuser, [(7, "neutral")], 0.0, 4.0)
    schema = json.loads(event_schema().read_text())
    for seq, event in enumerate(fuser.on_window("cam", reading(1.0, 3.0, "angry"), 3.0), 1):
        payload = event_payload(event, seq, "dev")
        jsonschema.validate(payload, schema)
        if event.modality == "fused":
            assert set(payload["components"]) == {"face", "voice"}
            assert payload["components"]["voice"]["angry"] == pytest.approx(0.8, abs=1e-3)
        else:
            assert "components" not in payload and payload["box"] is None
