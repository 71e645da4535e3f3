"""The microphone path for real: a PulseAudio server, PortAudio, the daemon, a Mosquitto broker.

The sound server (testkit/audioserver.py) has a null sink whose monitor is the default source:
what the test plays into the sink with `paplay` is what the daemon's microphone hears. The
utterance is a RAVDESS one from the bundled sample video, so no ../shared is needed.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from edgeemo.config.load import load_config
from edgeemo.core.resources import sample_video
from edgeemo.service.daemon import Daemon
from edgeemo.sources.reader import live_pts
from testkit.audioserver import AudioServer
from testkit.wait import wait_until

WINDOW_S = 4.0   # long enough that a window holds the whole utterance (1.9 s) at some hop
HOP_S = 0.5
FEARFUL = (7.474, 10.878)  # segment 2 of samples/demo_labels.csv: actor 04, fearful


def edgeemo(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edgeemo.cli", *args], capture_output=True, text=True, timeout=240)


@pytest.fixture(scope="module")
def utterance(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One RAVDESS utterance from the sample, as the 16 kHz mono WAV the sink plays without resampling."""
    wav = tmp_path_factory.mktemp("utterance") / "fearful.wav"
    subprocess.run(["ffmpeg", "-v", "error", "-ss", str(FEARFUL[0]), "-to", str(FEARFUL[1]), "-i", str(sample_video()),
                    "-vn", "-ac", "1", "-ar", "16000", "-c:a", "pcm_s16le", str(wav)], check=True, timeout=60)
    return wav


@pytest.fixture(scope="module")
def detected(utterance: Path) -> dict:
    """What `edgeemo detect` reads in the same file: its one speech segment."""
    result = edgeemo("detect", "--json", str(utterance))
    assert result.returncode == 0, result.stderr
    segments = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(segments) == 1 and segments[0]["voice"]["emotion"] in ("fear", "sad", "angry", "surprise", "neutral",
                                                                      "happy", "disgust")
    return segments[0]


@pytest.fixture
def audio_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[AudioServer]:
    folder = tmp_path / "pulse"
    folder.mkdir()
    server = AudioServer(folder)
    for key, value in server.env.items():  # the daemon's PortAudio finds the server here
        monkeypatch.setenv(key, value)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def mic_daemon(audio_server, mqtt_broker, detected, utterance, tmp_path, monkeypatch) -> Iterator[Daemon]:
    """The real daemon on a sound-only source whose sound is the microphone (the system default input).

    min_speech_s a little under the utterance: only windows that hold all of it are read, as
    `detect` reads the whole segment (the daemon's readings of an utterance still being spoken
    are a different, partial view).
    """
    monkeypatch.chdir(tmp_path)
    length = detected["end"] - detected["start"]
    settings = {"device_id": "mic", "mqtt.url": mqtt_broker.url, "metrics.port": 0, "event_log.stdout": False,
                "event_log.path": str(tmp_path / "events.jsonl"), "sources.0.url": str(utterance),
                "sources.0.audio": "mic", "sources.0.reconnect_initial_s": 0.25, "sources.0.reconnect_max_s": 1.0,
                "voice.window_s": WINDOW_S, "voice.hop_s": HOP_S, "voice.min_speech_s": round(length - 0.3, 2)}
    daemon = Daemon(load_config(None, settings))
    daemon.start()
    thread = threading.Thread(target=daemon.supervise)
    thread.start()
    try:
        yield daemon
    finally:
        daemon.stop_requested.set()
        thread.join(10)
        assert daemon.shutdown() == 0


def heard(daemon: Daemon) -> float:
    return daemon.metrics.audio_samples.labels(source="default")._value.get()


def reopens(daemon: Daemon) -> float:
    return daemon.metrics.audio_reopens.labels(source="default")._value.get()


def say(server: AudioServer, utterance: Path, sub, seen: int) -> tuple[float, list[dict]]:
    """Play the utterance; the live pts it started at and the voice events of it (a stream, start to end)."""
    started = live_pts()
    player = server.play(utterance)
    assert player.wait(30) == 0, player.stderr.read()
    messages = sub.wait_for(lambda msgs: [json.loads(p)["type"] for _, p, _ in msgs[seen:]].count("end") >= 1,
                            timeout=20)
    return started, [json.loads(p) for _, p, _ in messages[seen:]]


def check_events(events: list[dict], started: float, detected: dict) -> None:
    """One voice stream, at the utterance's time (within a window), with the emotion detect gives."""
    assert [e["modality"] for e in events] == ["voice"] * len(events)
    assert events[0]["type"] == "start" and events[-1]["type"] == "end"
    assert {e["emotion"] for e in events} == {detected["voice"]["emotion"]}, (events, detected)
    spoken_end = started + detected["end"]
    assert abs(events[0]["pts"] - spoken_end) <= WINDOW_S, (events[0]["pts"], spoken_end)


def test_an_utterance_played_to_the_microphone_gives_the_voice_events_detect_gives(
        audio_server, mic_daemon, utterance, detected, subscribe):
    sub = subscribe("edgeemo/mic/events")
    wait_until(lambda: heard(mic_daemon) >= 16000, 20, "a second of sound from the microphone")
    started, events = say(audio_server, utterance, sub, 0)
    check_events(events, started, detected)


def test_a_killed_sound_server_is_reopened_and_voice_events_resume(audio_server, mic_daemon, utterance, detected,
                                                                    subscribe, caplog):
    caplog.set_level(logging.INFO)
    sub = subscribe("edgeemo/mic/events")
    wait_until(lambda: heard(mic_daemon) >= 16000, 20, "a second of sound from the microphone")
    before = reopens(mic_daemon)
    audio_server.kill()
    wait_until(lambda: reopens(mic_daemon) > before, 10, "the lost microphone to be reopened")
    audio_server.start()
    samples = heard(mic_daemon)
    wait_until(lambda: heard(mic_daemon) >= samples + 16000, 20, "sound after the server came back")
    started, events = say(audio_server, utterance, sub, len(sub.messages))
    check_events(events, started, detected)
    assert mic_daemon.pipeline.healthy() and mic_daemon.pipeline.failed is False
    assert not [r for r in caplog.records if r.exc_info], "a traceback was logged"
    assert any("microphone" in r.getMessage() and "lost" in r.getMessage() for r in caplog.records)


def test_check_lists_the_input_devices_and_the_one_picked(audio_server, tmp_path):
    config = tmp_path / "mic.yaml"
    config.write_text("sources:\n  - url: sample\n    audio: mic\nmicrophone:\n  device: pulse\n")
    result = edgeemo("check", "--config", str(config), "--metrics-port", "0")
    line = next(line for line in result.stdout.splitlines() if "sound of default" in line)
    assert line.startswith("OK") and "input devices: " in line and "'pulse'" in line, result.stdout
    assert "microphone.device 'pulse' picks" in line and line.rstrip().endswith("'pulse'")
    audio_server.kill()  # no server: the default input is gone, and check says so in a line
    result = edgeemo("check", "--config", str(config), "--metrics-port", "0")
    assert "FAIL  sound of default: microphone pulse" in result.stdout and "Traceback" not in result.stderr
