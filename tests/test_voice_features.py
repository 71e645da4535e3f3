"""The voice front-end (edgeemo.voice.features), its VAD, and the shipped voice model if present.

Fast and self-contained: synthetic signals only, no ../shared data.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from edgeemo.voice.features import (
    VAR_FLOOR,
    AudioFrontEnd,
    frame_count,
    hz_to_mel,
    mel_to_hz,
    speech_mask,
    speech_segments,
)

SR = 16000
MODELS = Path(__file__).resolve().parents[1] / "models"


def tone(freq: float, seconds: float = 1.0, amplitude: float = 0.3) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def level(x: np.ndarray, dbfs: float) -> np.ndarray:
    """``x`` scaled to an RMS of ``dbfs`` dB re full scale."""
    return (x * (10 ** (dbfs / 20) / np.sqrt(np.mean(x ** 2)))).astype(np.float32)


def vowel(seconds: float, f0: float = 120.0) -> np.ndarray:
    """A voiced, vowel-like sound: harmonics of a gliding f0 shaped by formants at 700/1200/2600 Hz."""
    t = np.arange(int(seconds * SR)) / SR
    phase = 2 * np.pi * np.cumsum(f0 * (1 + 0.05 * np.sin(2 * np.pi * 3 * t))) / SR
    k = np.arange(1, int(4000 / f0))[:, None]
    envelope = sum(np.exp(-0.5 * ((k * f0 - fc) / 150) ** 2) for fc in (700, 1200, 2600)) + 0.02
    return (envelope * np.sin(k * phase)).sum(0).astype(np.float32)


def utterance(rng: np.random.Generator, noise_dbfs: float = -70.0) -> tuple[np.ndarray, list[tuple[float, float]]]:
    """0.5 s silence, then three 'words' (0.35 s vowel, 0.25 s pause), then silence; with a noise floor."""
    parts, truth, now = [np.zeros(int(0.5 * SR), np.float32)], [], 0.5
    for f0 in (110.0, 130.0, 120.0):
        word = level(vowel(0.35, f0), -20) * np.hanning(int(0.35 * SR)).astype(np.float32) ** 0.3
        parts += [word, np.zeros(int(0.25 * SR), np.float32)]
        truth.append((now, now + 0.35))
        now += 0.6
    parts.append(np.zeros(int(0.6 * SR), np.float32))
    x = np.concatenate(parts)
    return x + level(rng.standard_normal(len(x)), noise_dbfs), truth


# --- features ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [100, 400, 401, 560, 561, 16000, 48000, 47999])
def test_frame_count_follows_length_and_hop(n: int) -> None:
    front = AudioFrontEnd()
    expected = 1 if n <= 400 else 1 + math.ceil((n - 400) / 160)
    assert front.frames(n) == frame_count(n, 400, 160) == expected
    assert front.features(np.zeros(n, np.float32)).shape == (expected, 40)


def test_three_second_window_shape() -> None:
    front = AudioFrontEnd(kind="mfcc", n_mfcc=13, use_deltas=True)
    feats = front.features(tone(440, 3.0))
    assert feats.shape == (299, 39) and feats.dtype == np.float32 and front.n_features == 39


@pytest.mark.parametrize("freq", [300.0, 1000.0, 3000.0])
def test_tone_lands_in_its_mel_band(freq: float) -> None:
    front = AudioFrontEnd(normalisation="none", preemphasis=0.0)
    feats = front.features(tone(freq))
    assert np.isfinite(feats).all()
    centres = mel_to_hz(np.linspace(hz_to_mel(0), hz_to_mel(8000), 42)[1:-1])
    peak = np.argmax(feats.mean(0))
    assert abs(peak - np.argmin(abs(centres - freq))) <= 1
    # far away bands hold far less energy (log-power difference > 5 nats ~ 22 dB)
    assert feats.mean(0)[peak] - feats.mean(0)[(peak + 15) % 40] > 5


def test_mfcc_of_tone_is_finite_and_steady() -> None:
    front = AudioFrontEnd(kind="mfcc", normalisation="none")
    feats = front.features(tone(1000))
    assert feats.shape == (99, 13) and np.isfinite(feats).all()
    inner = feats[2:-2]  # away from the zero-padded last frame
    assert np.abs(inner - inner.mean(0)).max() < 0.1 * np.abs(inner).max()


def test_digital_silence_gives_finite_zeros() -> None:
    feats = AudioFrontEnd(use_deltas=True).features(np.zeros(SR, np.float32))
    assert np.isfinite(feats).all() and np.abs(feats).max() < 1e-6


@pytest.mark.parametrize("how", ["utterance-cmvn", "utterance-cmn"])
def test_window_normalisation(how: str) -> None:
    rng = np.random.default_rng(0)
    x = tone(500, 3.0) + 0.05 * rng.standard_normal(3 * SR).astype(np.float32)
    front = AudioFrontEnd(normalisation=how, use_deltas=True)
    feats = front.features(x)
    assert np.abs(feats.mean(0)).max() < 1e-4
    if how == "utterance-cmvn":  # unit variance, up to the variance floor (visible on steady bands)
        var = front.raw_features(x).astype(np.float64).var(0)
        np.testing.assert_allclose(feats.std(0), np.sqrt(var / (var + VAR_FLOOR)), atol=1e-4)
        assert np.allclose(feats.std(0)[var > 1e-2], 1.0, atol=1e-3)


def test_same_numbers_as_python_speech_features() -> None:
    import python_speech_features as psf
    rng = np.random.default_rng(1)
    x = (tone(440, 1.0) + 0.05 * rng.standard_normal(SR)).astype(np.float64)
    kw = {"samplerate": SR, "winlen": 0.025, "winstep": 0.01, "nfilt": 40, "nfft": 512, "preemph": 0.97,
          "winfunc": np.hamming}
    logmel = np.log(psf.fbank(x, **kw)[0])
    ours = AudioFrontEnd(normalisation="none").features(x)
    np.testing.assert_allclose(ours, logmel, atol=2e-3)
    mfcc = psf.mfcc(x, numcep=13, ceplifter=22, appendEnergy=True, **kw)
    d1 = psf.delta(mfcc, 2)
    expected = np.hstack([mfcc, d1, psf.delta(d1, 2)])
    ours = AudioFrontEnd(kind="mfcc", use_deltas=True, normalisation="none").features(x)
    np.testing.assert_allclose(ours, expected, atol=5e-3)


def test_card_round_trip_and_validation() -> None:
    front = AudioFrontEnd(kind="mfcc", n_mfcc=20, use_deltas=True, normalisation="utterance-cmn")
    card = json.loads(json.dumps(front.to_card()))
    assert AudioFrontEnd.from_card(card) == front and card["n_features"] == 60
    with pytest.raises(ValueError, match="unknown"):
        AudioFrontEnd.from_card(card | {"colour": "blue"})
    with pytest.raises(ValueError, match="n_features"):
        AudioFrontEnd.from_card(card | {"n_features": 40})
    with pytest.raises(ValueError):
        AudioFrontEnd(kind="cqt")
    with pytest.raises(ValueError):
        AudioFrontEnd(window_s=0.05)  # 800 samples do not fit n_fft 512


# --- voice activity ---------------------------------------------------------------------------------


def test_vad_finds_the_words_and_not_the_pauses() -> None:
    x, truth = utterance(np.random.default_rng(2))
    mask = speech_mask(x, SR, frame_s=0.03)
    centres = (np.arange(len(mask)) + 0.5) * 0.03
    in_word = np.zeros(len(mask), bool)
    for start, end in truth:
        in_word |= (centres > start + 0.03) & (centres < end - 0.03)
    assert mask[in_word].mean() > 0.9
    away = np.ones(len(mask), bool)
    for start, end in truth:
        away &= (centres < start - 0.06) | (centres > end + 0.06)
    assert not mask[away].any()
    segments = speech_segments(x, SR, max_gap_s=0.3)
    assert len(segments) == 1  # 0.25 s pauses are bridged
    assert segments[0][0] == pytest.approx(truth[0][0], abs=0.15)
    assert segments[0][1] == pytest.approx(truth[-1][1], abs=0.15)
    assert len(speech_segments(x, SR, max_gap_s=0.1)) == 3


@pytest.mark.parametrize("dbfs", [-50.0, -30.0, -10.0])
def test_steady_noise_is_not_speech(dbfs: float) -> None:
    rng = np.random.default_rng(3)
    white = level(rng.standard_normal(3 * SR), dbfs)
    hum = level(tone(50, 3.0) + tone(150, 3.0, 0.1), dbfs)
    for x in (white, hum, white + hum):
        assert not speech_mask(x, SR).any()
        assert speech_segments(x, SR) == []


def test_silence_is_not_speech() -> None:
    assert not speech_mask(np.zeros(3 * SR, np.float32), SR).any()
    assert speech_segments(np.zeros(3 * SR, np.float32), SR) == []


def test_speech_in_noise_and_with_a_tracked_floor() -> None:
    rng = np.random.default_rng(4)
    x, truth = utterance(rng, noise_dbfs=-35.0)  # words at -20 dBFS: ~15 dB above the noise
    segments = speech_segments(x, SR, threshold_db=8.0, max_gap_s=0.4)
    assert len(segments) == 1 and segments[0][0] == pytest.approx(truth[0][0], abs=0.2)
    # a window that is all noise, judged against a floor the caller tracked: still no speech
    noise_only = level(rng.standard_normal(3 * SR), -35.0)
    assert not speech_mask(noise_only, SR, noise_floor_db=-35.0).any()
    # the same window against a much lower floor (e.g. the room was quiet before): now it is loud
    assert speech_mask(noise_only, SR, noise_floor_db=-70.0).all()


# --- shipped model ------------------------------------------------------------------------------------


@pytest.mark.parametrize("card_name", ["edgeemo-voice.json", "edgeemo-voice-int8.json"])
def test_shipped_voice_model_runs_on_a_window(card_name: str) -> None:
    import onnxruntime as ort

    path = MODELS / card_name
    card = json.loads(path.read_text())
    assert card["task"] == "voice-emotion" and card["output"] == "logits"
    assert card["labels"] == ["neutral", "calm", "happy", "sad", "angry", "fearful", "disgust", "surprised"]
    assert set(card["fold_to_face_labels"]) == set(card["labels"])
    front = AudioFrontEnd.from_card(card["audio"])
    session = ort.InferenceSession(str(MODELS / card["file"]), providers=["CPUExecutionProvider"])
    window = int(card["input"]["window_s"] * front.sample_rate)
    rng = np.random.default_rng(5)
    for x in (np.zeros(window, np.float32), 0.1 * rng.standard_normal(window).astype(np.float32)):
        feats = front.features(x)[None]
        assert feats.shape == (1, card["input"]["frames"], card["input"]["features"])
        (logits,) = session.run(None, {card["input"]["name"]: feats})
        assert logits.shape == (1, 8) and np.isfinite(logits).all()


def test_the_daemon_starts_without_importing_scipy_signal():
    """scipy.signal is slow to import: only the voice stage's filter loads it, not every command."""
    import subprocess
    import sys

    code = "import sys, edgeemo.service.daemon, edgeemo.cli.main; print('scipy.signal' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == "False"
