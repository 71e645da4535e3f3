"""Voice analysis: the voice model card, speech detection on real speech, silence and noise, the stage."""

import json

import numpy as np
import pytest

from edgeemo import LABELS
from edgeemo.sources.audio import AudioRing, FileAudioReader
from edgeemo.config.schema import VoiceConfig
from edgeemo.core.modelcard import ModelCardError
from edgeemo.core.resources import models_dir, sample_video
from edgeemo.voice.classifier import VoiceClassifier, fold_matrix, load_voice_card
from edgeemo.voice.stage import VoiceStage
from edgeemo.voice.vad import SpeechDetector

SR = 16000


@pytest.fixture(scope="module")
def sample_sound() -> np.ndarray:
    """The sample's 14.25 s of sound: utterances at about 1.0-2.4, 4.0-6.6, 8.2-10.2 and 11.8-13.4 s."""
    reader = FileAudioReader(str(sample_video()))
    samples = np.concatenate([c for c, _ in reader.chunks()])
    reader.close()
    return samples


@pytest.fixture(scope="module")
def classifier() -> VoiceClassifier:
    return VoiceClassifier(load_voice_card(models_dir() / "edgeemo-voice-int8.json"))


def seconds(samples: np.ndarray, start: float, end: float) -> np.ndarray:
    return samples[round(start * SR):round(end * SR)]


# -------------------------------------------------------------------------------------- model card

def test_fold_matrix_sums_calm_into_neutral():
    labels = ["neutral", "calm", "happy", "sad", "angry", "fearful", "disgust", "surprised"]
    fold = {"neutral": "neutral", "calm": "neutral", "happy": "happy", "sad": "sad", "angry": "angry",
            "fearful": "fear", "disgust": "disgust", "surprised": "surprise"}
    probs = np.array([0.1, 0.3, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1], np.float32) @ fold_matrix(labels, fold)
    assert probs[LABELS.index("neutral")] == pytest.approx(0.4) and probs.sum() == pytest.approx(1)
    with pytest.raises(ValueError, match="'calm'"):
        fold_matrix(labels, fold | {"calm": "bored"})


def test_a_bad_voice_card_names_the_problem(tmp_path):
    card = json.loads((models_dir() / "edgeemo-voice-int8.json").read_text())
    path = tmp_path / "voice.json"
    path.write_text(json.dumps(card | {"task": "face-expression"}))
    with pytest.raises(ModelCardError, match="task must be 'voice-emotion'"):
        load_voice_card(path)
    path.write_text(json.dumps({k: v for k, v in card.items() if k != "audio"}))
    with pytest.raises(ModelCardError, match="missing key 'audio'"):
        load_voice_card(path)


def test_the_cards_temperature_divides_the_logits_before_the_softmax(tmp_path, sample_sound):
    card = json.loads((models_dir() / "edgeemo-voice-int8.json").read_text())
    path = tmp_path / "voice.json"
    path.write_text(json.dumps(card | {"temperature": 2.5, "file": str(models_dir() / card["file"])}))
    warm = VoiceClassifier(load_voice_card(path))
    speech = seconds(sample_sound, 4.0, 6.6)
    logits = warm.model.run(warm.front_end.features(speech)[None])[0][0].astype(np.float64)
    expected = np.exp(logits / 2.5 - (logits / 2.5).max())
    assert warm.classify(speech) == pytest.approx((expected / expected.sum()) @ warm.card.fold, abs=1e-5)
    raw = np.exp(logits - logits.max())
    assert warm.classify(speech).max() < ((raw / raw.sum()) @ warm.card.fold).max()  # flatter than T = 1
    bias = np.linspace(-1, 1, len(logits))  # vector scaling, read as on a face card
    per_class = np.linspace(0.5, 2.0, len(logits))
    path.write_text(json.dumps(card | {"temperature": per_class.tolist(), "logit_bias": bias.tolist(),
                                       "file": str(models_dir() / card["file"])}))
    scaled = logits / per_class + bias
    expected = np.exp(scaled - scaled.max())
    vector = VoiceClassifier(load_voice_card(path))
    assert vector.classify(speech) == pytest.approx((expected / expected.sum()) @ vector.card.fold, abs=1e-5)
    for bad, said in ((0, "temperature must be above 0"), (-1.0, "temperature must be above 0"),
                      ("hot", "temperature must be a number or a list of 8 numbers"),
                      ([1.0, 2.0], "temperature must be a number or a list of 8 numbers")):
        path.write_text(json.dumps(card | {"temperature": bad, "file": str(models_dir() / card["file"])}))
        with pytest.raises(ModelCardError, match=said):
            load_voice_card(path)


def test_the_cards_context_widens_what_the_model_hears_within_the_sound(tmp_path, sample_sound):
    """``context_s``: the speech and that much sound on either side, cut short where the sound ends;
    a card without it hears the speech alone, and a bad value is named."""
    card = json.loads((models_dir() / "edgeemo-voice-int8.json").read_text()) | {"file": str(models_dir() / "edgeemo-voice-int8.onnx")}
    card.pop("context_s", None)
    path = tmp_path / "voice.json"
    path.write_text(json.dumps(card))
    tight = VoiceClassifier(load_voice_card(path))
    path.write_text(json.dumps(card | {"context_s": 0.5}))
    wide = VoiceClassifier(load_voice_card(path))
    assert tight.card.context_s == 0.0 and wide.card.context_s == 0.5
    sound, speech = seconds(sample_sound, 3.0, 7.0), slice(SR, 3 * SR + SR // 2)  # the angry utterance
    assert tight.classify_speech(sound, speech) == pytest.approx(tight.classify(sound[speech]))
    assert wide.classify_speech(sound, speech) == pytest.approx(wide.classify(sound[SR // 2:4 * SR]))
    assert not np.allclose(wide.classify_speech(sound, speech), tight.classify_speech(sound, speech))
    edge = slice(SR // 4, 4 * SR - SR // 4)  # less than the context left on either side
    assert wide.classify_speech(sound, edge) == pytest.approx(wide.classify(sound))
    for bad in (-0.1, 2.0, "wide", True):
        path.write_text(json.dumps(card | {"context_s": bad}))
        with pytest.raises(ModelCardError, match="context_s must be seconds from 0 to 1.5"):
            load_voice_card(path)


def test_the_shipped_voice_model_reads_the_samples_angry_and_fearful_utterances(sample_sound, classifier):
    # Actors 01 and 04 were left out of the shipped model's training, so this is unseen speech.
    for (start, end), label in (((4.0, 6.6), "angry"), ((8.2, 10.2), "fear")):
        probs = classifier.classify(seconds(sample_sound, start, end))
        assert probs.shape == (7,) and probs.sum() == pytest.approx(1, abs=1e-5)
        assert LABELS[int(np.argmax(probs))] == label


# -------------------------------------------------------------------------------------------- VAD

def test_speech_detector_finds_the_last_utterance_and_ignores_silence_and_noise(sample_sound):
    rng = np.random.default_rng(0)
    vad = SpeechDetector(SR, threshold_db=12.0)
    assert vad.speech(np.zeros(3 * SR, np.float32), 3 * SR)[0] == 0.0            # digital silence
    for level in (0.001, 0.3):                                                   # steady noise, soft or loud
        noise = (level * rng.standard_normal(3 * SR)).astype(np.float32)
        assert SpeechDetector(SR, 12.0).speech(noise, 3 * SR)[0] < 0.02
    # A 6 s window holding the end of the first utterance and all of the second: the span is the second.
    vad = SpeechDetector(SR, 12.0)
    window = seconds(sample_sound, 1.5, 7.4)
    ratio, span = vad.speech(window, len(window))
    assert 0.2 < ratio < 0.8
    assert 1.5 + span.start / SR == pytest.approx(4.0, abs=0.25) and 1.5 + span.stop / SR == pytest.approx(6.6, abs=0.25)


def test_speech_in_steady_noise_is_still_found(sample_sound):
    rng = np.random.default_rng(1)
    speech = seconds(sample_sound, 3.4, 7.4)
    noisy = speech + (0.003 * rng.standard_normal(len(speech))).astype(np.float32)
    ratio, span = SpeechDetector(SR, 12.0).speech(noisy, len(noisy))
    assert ratio > 0.3 and (span.stop - span.start) / SR > 2.0


def hops(vad: SpeechDetector, sound: np.ndarray, window_s: float = 3.0, hop_s: float = 1.0) -> list[float]:
    """The span length in seconds of every window, as the voice stage asks: a window every hop."""
    window, hop = round(window_s * SR), round(hop_s * SR)
    spans = []
    for end in range(window, len(sound) + 1, hop):
        _, span = vad.speech(sound[max(0, end - window):end], end)
        spans.append((span.stop - span.start) / SR)
    return spans


def test_overlapping_windows_are_filtered_as_one_stream(sample_sound):
    """Each window's new samples only are band-passed, the filter carrying on from the last window:
    the levels are those of the whole sound filtered at once, for the growing first windows, the
    full ones, a window after one skipped (a stage restarted past a window that failed) and the
    short last hop. A window that does not overlap is filtered afresh, and so is the one after a
    sample that is not a number."""
    from scipy.signal import sosfilt

    from edgeemo.voice.features import frame_levels_db, speech_band

    whole = sosfilt(speech_band(SR), sample_sound).astype(np.float32)
    window, hop = 3 * SR, SR
    ends = [SR + SR // 2, 2 * SR + SR // 2, *range(3 * SR + SR // 2, 9 * SR, hop), 10 * SR + SR // 2,
            11 * SR + SR // 2, len(sample_sound)]  # min_window 1.5 s, growing; 9.5 s skipped; a short tail
    vad = SpeechDetector(SR, 12.0)
    for end in ends:
        vad.speech(sample_sound[max(0, end - window):end], end)
        np.testing.assert_allclose(frame_levels_db(vad._band, SR), frame_levels_db(whole[max(0, end - window):end], SR),
                                   atol=0.01)

    def fresh(sound: np.ndarray) -> np.ndarray:
        return sosfilt(speech_band(SR), sound).astype(np.float32)

    later = len(sample_sound) + 2 * window  # no overlap with the last window
    vad.speech(sample_sound[:window], later)
    np.testing.assert_allclose(vad._band, fresh(sample_sound[:window]), atol=1e-6)
    broken = sample_sound[hop:hop + window].copy()
    broken[-10] = np.nan
    vad.speech(broken, later + hop)
    vad.speech(sample_sound[2 * hop:2 * hop + window], later + 2 * hop)  # overlapping: its new second is heard
    assert np.isfinite(vad._band[-hop:]).all()


def test_music_alone_is_not_speech_but_a_voice_over_steady_noise_is():
    from tools.common.noise import tones

    rng = np.random.default_rng(5)
    music = tones(60 * SR, rng) * np.float32(0.03)  # notes rising and falling by tens of dB, for a minute
    assert max(hops(SpeechDetector(SR, VoiceConfig().vad_threshold_db), music)) < VoiceConfig().min_speech_s


def test_an_utterance_in_pink_noise_at_10_db_is_found(sample_sound):
    from tools.common.noise import coloured_noise, mix

    rng = np.random.default_rng(6)
    room = coloured_noise(40 * SR, 1.0, rng) * np.float32(0.03)  # 30 s of the room alone, then the utterance
    speech = seconds(sample_sound, 3.4, 7.4)
    noisy = mix(speech, room[30 * SR:30 * SR + len(speech)], 10.0)
    sound = np.concatenate([room[:30 * SR], noisy, room[30 * SR + len(speech):]])
    spans = hops(SpeechDetector(SR, VoiceConfig().vad_threshold_db), sound)
    assert max(spans[:27]) == 0.0                           # windows ending before the utterance: nothing
    assert max(spans[27:]) >= VoiceConfig().min_speech_s    # the utterance gives a reading


# ------------------------------------------------------------------------------------------ stage

def test_voice_stage_reads_only_windows_with_speech(sample_sound, classifier):
    ring = AudioRing(20.0)
    ring.write(sample_sound, pts=0.0)
    ring.close()
    readings = []
    stage = VoiceStage("s", ring, classifier, VoiceConfig(), lambda source, r, pts: readings.append((pts, r)), None)
    stage.run()
    ends = [pts for pts, _ in readings]
    # Every second from 1 s on; the last 0.25 s (under half a hop) adds nothing worth a window.
    assert ends == pytest.approx([float(t) for t in range(1, 15)])
    assert readings[0][1] is None             # 0-1 s: silence, then only a beginning of speech
    spoken = [r for _, r in readings if r is not None]
    assert len(spoken) >= 4 and all(r.end - r.start >= 1.0 and r.source == "s" for r in spoken)
    # Readings whose utterance lies inside the angry segment (3.3-7.5 s) end up angry.
    angry = [r for r in spoken if 3.34 <= r.start and r.end <= 7.47]
    assert angry and LABELS[int(np.argmax(angry[-1].probs))] == "angry"
    assert stage.windows_done == len(readings)
