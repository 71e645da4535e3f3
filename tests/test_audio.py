"""Audio capture: the ring buffer, decoding sound files and video audio tracks in sync, failures."""

import importlib.util
import logging
import subprocess
import threading
from pathlib import Path

import numpy as np
import pytest

from edgeemo.sources.audio import AudioCapture, AudioRing, FileAudioReader, audio_target
from edgeemo.sources.reader import FrameReader
from edgeemo.sources.spec import parse_source
from edgeemo.config.schema import MicrophoneConfig, SourceConfig
from edgeemo.core.metrics import Metrics
from edgeemo.core.resources import sample_video
from edgeemo.vision.pixels import to_bgr


def ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-loglevel", "error", "-y", *args], check=True, timeout=60)


def decode(path: Path) -> tuple[np.ndarray, list[float]]:
    reader = FileAudioReader(str(path))
    chunks = list(reader.chunks())
    reader.close()
    return np.concatenate([c for c, _ in chunks]), [pts for _, pts in chunks]


# ------------------------------------------------------------------------------------------ ring

def test_ring_keeps_the_newest_samples_and_counts_what_it_overwrote():
    ring = AudioRing(1.0, sample_rate=10)  # 10 samples
    out = np.zeros(10, np.float32)
    assert ring.write(np.arange(6, dtype=np.float32), pts=0.0) == 0
    assert ring.write(np.arange(6, 12, dtype=np.float32), pts=0.6) == 2  # 12 > 10: 2 unread samples lost
    assert ring.overrun_samples == 2 and ring.written == 12
    assert ring.read(2, 12, out).tolist() == list(range(2, 12))  # wraps round the end of the buffer
    assert ring.read(0, 4, out).tolist() == [0, 0, 2, 3]         # what was overwritten reads as silence
    assert ring.pts_at(12) == pytest.approx(1.2) and ring.pts_at(6) == pytest.approx(0.6)


def test_lossless_ring_makes_the_writer_wait_for_the_reader():
    ring = AudioRing(1.0, sample_rate=10)
    ring.write(np.ones(8, np.float32), pts=0.0)
    writer = threading.Thread(target=ring.write, args=(np.ones(8, np.float32), 0.8, True))
    writer.start()
    writer.join(0.3)
    assert writer.is_alive() and ring.written == 8  # would overwrite unread samples: waits
    ring.release(8)
    writer.join(5)
    assert not writer.is_alive() and ring.written == 16 and ring.overrun_samples == 0


# ----------------------------------------------------------------------------------------- files

def test_video_audio_track_is_decoded_in_sync_with_the_frames(tmp_path):
    """A white frame and a beep both at 1.0 s, in a file whose streams start at 2 s (and AAC priming)."""
    clip = tmp_path / "sync.mp4"
    ffmpeg("-f", "lavfi", "-i", "color=c=black:s=64x64:r=25:d=3,drawbox=enable='between(t,1,1.039)':color=white:t=fill",
           "-f", "lavfi", "-i", "aevalsrc='if(between(t,1,1.5),0.5*sin(2*PI*1000*t),0)':s=48000:d=3",
           "-c:v", "libx264", "-c:a", "aac", "-shortest", "-output_ts_offset", "2", str(clip))
    reader = FrameReader(parse_source(str(clip)))
    flash = next(pts for image, pts in iter(reader.read, None) if to_bgr(image).mean() > 100)
    samples, pts = decode(clip)
    beep = pts[0] + np.flatnonzero(np.abs(samples) > 0.1)[0] / 16000
    assert flash == pytest.approx(1.0, abs=0.001)
    assert beep == pytest.approx(flash, abs=0.01)


def test_the_sample_sound_is_continuous_and_as_long_as_its_video():
    samples, pts = decode(sample_video())
    assert samples.dtype == np.float32 and np.abs(samples).max() <= 1.0
    assert len(samples) / 16000 == pytest.approx(14.25, abs=0.03)  # 427 frames at 29.97 fps
    # Chunk pts advance exactly by the samples delivered: no gaps, no drift.
    sizes = np.diff(pts) * 16000
    assert np.abs(sizes - [len(c) for c in np.split(samples, np.cumsum(sizes.round().astype(int)))[:-1]]).max() < 2


@pytest.mark.parametrize("suffix", [".wav", ".flac"])
def test_sound_files_are_resampled_to_16k_mono(tmp_path, suffix):
    path = tmp_path / f"tone{suffix}"
    ffmpeg("-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100:duration=2", "-ac", "2", str(path))
    samples, pts = decode(path)
    assert len(samples) == pytest.approx(32000, abs=50) and pts[0] == pytest.approx(0, abs=0.01)
    spectrum = np.abs(np.fft.rfft(samples))
    assert np.argmax(spectrum) * 16000 / len(samples) == pytest.approx(440, abs=3)
    assert parse_source(str(path)).kind == "audio"
    assert audio_target(SourceConfig(url=str(path))) == str(path)


def test_a_truncated_video_gives_the_sound_up_to_the_cut(tmp_path, caplog):
    data = sample_video().read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[:len(data) // 2])
    with caplog.at_level(logging.WARNING):
        samples, _ = decode(cut)
    assert 3 < len(samples) / 16000 < 12  # some sound, and it stopped early without an exception


# ---------------------------------------------------------------------------------------- capture

def test_capture_fills_the_ring_and_counts_samples_and_overruns(tmp_path):
    wav = tmp_path / "tone.wav"
    ffmpeg("-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000:duration=2", str(wav))
    metrics = Metrics(["s"], "onnxruntime")
    ring = AudioRing(1.0)  # nobody reads: everything beyond 1 s is an overrun
    capture = AudioCapture(SourceConfig(name="s", url=str(wav)), str(wav), MicrophoneConfig(), ring,
                           threading.Event(), metrics)
    capture.start()        # played at its own rate, like a live source: 2 s
    capture.join(20)
    assert ring.closed
    captured = metrics.audio_samples.labels(source="s")._value.get()
    assert captured == ring.written == pytest.approx(32000, abs=50)
    assert metrics.audio_dropped.labels(source="s", reason="backlog")._value.get() == ring.overrun_samples
    assert ring.overrun_samples == captured - ring.capacity


def test_without_pyaudio_the_source_is_vision_only_and_a_missing_microphone_is_looked_for(caplog):
    """No pyaudio: no microphone can ever come, said once. With pyaudio, a missing device is retried."""
    ring, stop, metrics = AudioRing(2.0), threading.Event(), Metrics(["cam"], "onnxruntime")
    source = SourceConfig(name="cam", url="0", audio="mic", reconnect_initial_s=0.1, reconnect_max_s=0.2)
    capture = AudioCapture(source, "mic", MicrophoneConfig(device="no such microphone"), ring, stop, metrics)
    with caplog.at_level(logging.WARNING):
        capture.start()
        capture.join(1.0)
    stop.set()
    capture.join(5)
    if importlib.util.find_spec("pyaudio") is None:
        assert ring.closed and "faces only" in caplog.text and caplog.text.count("no voice analysis") == 1
    else:
        assert metrics.audio_reopens.labels(source="cam")._value.get() >= 3
        said = [r for r in caplog.records if "no input device matches" in r.getMessage()]
        assert len(said) == 1  # said once, then looked for quietly
    assert not capture.is_alive()


def test_audio_target_follows_the_source():
    assert audio_target(SourceConfig(url="sample")) == str(sample_video())
    assert audio_target(SourceConfig(url="sample", audio="off")) is None
    assert audio_target(SourceConfig(url="0")) is None            # a camera has no sound of its own
    assert audio_target(SourceConfig(url="0", audio="mic")) == "mic"
