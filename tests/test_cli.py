"""The command line as a user meets it: `detect`, `check`, and the errors for bad input."""

import json
import os
import subprocess
import sys
from pathlib import Path

import av
import cv2
import pytest

from edgeemo import LABELS
from edgeemo.core.resources import models_dir, sample_video

FIXTURES = Path(__file__).parent / "fixtures"


def edgeemo(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edgeemo.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=240, cwd=cwd)


def test_detect_json_on_images():
    result = edgeemo("detect", FIXTURES / "two_faces.jpg", FIXTURES / "no_face.png", "--json")
    assert result.returncode == 0, result.stderr
    two, none = [json.loads(line) for line in result.stdout.splitlines()]
    assert two["path"].endswith("two_faces.jpg") and two["pts"] == 0 and len(two["faces"]) == 2
    assert none["faces"] == []
    for face in two["faces"]:
        assert list(face["probs"]) == list(LABELS)
        assert round(sum(face["probs"].values()), 4) == 1.0  # rounded as the daemon's events are
        assert face["confidence"] == face["probs"][face["emotion"]]
        assert face["emotion"] == max(face["probs"], key=face["probs"].get)
        x, y, w, h = face["box"]
        assert 0 <= x < 1280 and 0 <= y < 360 and 60 < w < 400 and 60 < h < 400


def test_detect_on_the_sample_video_every_10th_frame_with_annotation(tmp_path):
    out = tmp_path / "annotated.mp4"
    result = edgeemo("detect", sample_video(), "--json", "--every", "10", "--annotate", out)
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    frames = [line for line in lines if "faces" in line]
    assert len(frames) == 43
    assert [f["pts"] for f in frames] == sorted(f["pts"] for f in frames) and frames[1]["pts"] == pytest.approx(0.334, abs=0.01)
    assert all(len(f["faces"]) == 1 for f in frames)
    # Every analysed frame is read fresh: the daemon's cadence (classifier.every_frames) would repeat
    # a reading taken 10 or 20 frames back, word for word.
    repeats = sum(a["faces"][0]["probs"] == b["faces"][0]["probs"] for a, b in zip(frames, frames[1:]))
    assert repeats == 0
    # Written as browsers play it: H.264 (4:2:0) with the sample's sound, on the source's clock.
    with av.open(str(out)) as written:
        video, sound = written.streams.video[0], written.streams.audio[0]
        assert (video.codec_context.name, video.codec_context.pix_fmt, sound.codec_context.name) == ("h264", "yuv420p", "aac")
        assert video.frames == 43 and float(written.duration / av.time_base) == pytest.approx(14.25, abs=0.1)
    # Then the sound: one record per utterance of the sample (neutral, angry, fearful, neutral), each
    # inside its segment, with voice, face and fused readings; fused reads at least 3 of 4 right.
    speech = [line for line in lines if "voice" in line]
    segments = [(0.0, 3.34), (3.34, 7.47), (7.47, 10.88), (10.88, 14.25)]
    assert [(s0 <= r["start"] < r["end"] <= s1) for r, (s0, s1) in zip(speech, segments)] == [True] * 4
    assert all(r["face"] and r["fused"] for r in speech)
    fused = [r["fused"]["emotion"] for r in speech]
    assert sum(a == b for a, b in zip(fused, ["neutral", "angry", "fear", "neutral"])) >= 3, fused


def test_detect_on_a_sound_file_prints_each_speech_segment(tmp_path):
    wav = tmp_path / "speech.wav"
    subprocess.run(["ffmpeg", "-loglevel", "error", "-i", str(sample_video()), "-t", "7.4", "-vn", "-ac", "1",
                    "-ar", "44100", str(wav)], check=True)
    result = edgeemo("detect", wav, "--json")
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(records) == 2  # the neutral and the angry utterance of actor 01
    assert all(r["face"] is None and r["fused"] is None for r in records)
    assert records[1]["voice"]["emotion"] == "angry" and 3.3 < records[1]["start"] < records[1]["end"] < 7.4


def test_detect_human_output_and_annotated_image(tmp_path):
    result = edgeemo("detect", FIXTURES / "angry_actor01.jpg", "--annotate", tmp_path / "out.jpg")
    assert result.returncode == 0, result.stderr
    assert "1 face(s)" in result.stdout and "%" in result.stdout
    assert cv2.imread(str(tmp_path / "out.jpg")).shape == (360, 640, 3)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "edgeemo.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("yaml_text, expected", [
    ("mqtt:\n  qso: 1\n", "mqtt.qso: unknown key; allowed here:"),
    ("detector:\n  threads: many\n", "detector.threads"),
    ("classifier:\n  model: /nonexistent/face.json\n", "cannot read model card /nonexistent/face.json"),
    ("detector:\n  model: missing-detector.onnx\n", "missing-detector.onnx not found"),
    ("sources:\n  - url: /nonexistent/video.mp4\n", "'/nonexistent/video.mp4': no such file"),
    ("device_id: [oops\n", "not valid YAML"),
    ("sources:\n  - url: sample\n    audio: /nonexistent/talk.wav\n",
     "sources.default.audio: '/nonexistent/talk.wav': no such file"),
    ("voice:\n  model: /nonexistent/voice.json\n", "cannot read model card /nonexistent/voice.json"),
    ("voice:\n  window_s: 2\n  hop_s: 3\n", "voice: Value error, need hop_s (3.0)"),
])
def test_run_with_bad_config_says_what_is_wrong(tmp_path, yaml_text, expected):
    source = [] if "sources:" in yaml_text else ["--source", "sample"]
    result = edgeemo("run", "--config", write(tmp_path, yaml_text), "--once", *source, cwd=tmp_path)
    assert result.returncode == 2
    assert expected in result.stderr
    assert "Traceback" not in result.stderr


def test_corrupt_model_file_is_named(tmp_path):
    broken = tmp_path / "yunet.onnx"
    broken.write_bytes((models_dir() / "yunet_s_dynamic.onnx").read_bytes()[:1000])
    result = edgeemo("run", "--config", write(tmp_path, f"detector:\n  model: {broken}\n"), "--once", "--source", "sample",
                     cwd=tmp_path)
    assert result.returncode == 2 and f"cannot load model {broken}" in result.stderr


def test_once_refuses_a_live_source(tmp_path):
    result = edgeemo("run", "--source", "/dev/video7", "--once", cwd=tmp_path)
    assert result.returncode == 2 and "live source" in result.stderr


def test_check_reports_each_part(mqtt_broker, tmp_path):
    journal = tmp_path / "state" / "journal.db"
    config = write(tmp_path, f"journal:\n  path: {journal}\n")
    ok = edgeemo("check", "--config", config, "--source", "sample", "--mqtt-url", mqtt_broker.url, "--metrics-port", "0",
                 "--web-port", "0")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "OK    dashboard: http://127.0.0.1:0/ is free" in ok.stdout
    assert f"OK    journal: {journal} will be created" in ok.stdout and not journal.parent.exists()  # nothing made
    assert "OK    models" in ok.stdout and "OK    mqtt: broker 127.0.0.1" in ok.stdout
    card = json.loads((models_dir() / "edgeemo-face-int8.json").read_text())  # the default, run as its card says
    shipped = card["metrics"]["fer2013_privatetest_acc_selective_flip"] * 100
    assert f"PrivateTest {shipped:.1f} % (mirror pass below margin {card['flip_margin']})" in ok.stdout
    assert "OK    voice model: voice model edgeemo-voice-int8" in ok.stdout
    assert "OK    sound of default: " in ok.stdout
    assert "all checks passed" in ok.stdout

    config = tmp_path / "mic.yaml"  # a microphone that is not there (or no pyaudio): named, not a crash
    config.write_text("sources:\n  - url: sample\n    audio: mic\nmicrophone:\n  device: no such mic\n")
    mic = edgeemo("check", "--config", config, "--metrics-port", "0")
    assert mic.returncode == 1 and "FAIL  sound of default: " in mic.stdout

    dead = edgeemo("check", "--mqtt-url", "mqtt://127.0.0.1:1", "--source", str(tmp_path / "none.mp4"))
    assert dead.returncode in (1, 2)
    assert "none.mp4" in dead.stdout + dead.stderr


def test_check_fails_on_unreachable_broker():
    result = edgeemo("check", "--mqtt-url", "mqtt://127.0.0.1:1", "--metrics-port", "0")
    assert result.returncode == 1
    assert "FAIL  mqtt: broker 127.0.0.1:1 not reachable" in result.stdout


@pytest.mark.parametrize("config", [None, Path(__file__).parents[1] / "config" / "edgeemo.yaml"])
def test_run_without_a_source_says_so_and_plays_nothing(tmp_path, config):
    """A forgotten source must not publish a stranger's face: the bundled demo is never played unasked."""
    env = os.environ | {"XDG_DATA_HOME": str(tmp_path)}
    args = [sys.executable, "-m", "edgeemo.cli", "run", "--metrics-port", "0"] + (["--config", str(config)] if config else [])
    result = subprocess.run(args, capture_output=True, text=True, timeout=120, cwd=tmp_path, env=env)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "no source to analyse" in lines[0] and "--source sample" in lines[0], result.stderr
    assert result.stdout == "" and not (tmp_path / "edgeemo").exists()  # no journal, no events


def test_check_without_a_source_fails_that_check(tmp_path):
    result = edgeemo("check", "--metrics-port", "0", cwd=tmp_path)
    assert result.returncode == 1 and "FAIL  source default: no source to analyse" in result.stdout


def test_detect_analyses_every_readable_input_and_names_each_bad_one(tmp_path):
    missing, broken = tmp_path / "missing.jpg", tmp_path / "broken.png"
    broken.write_bytes(b"not a png")
    result = edgeemo("detect", FIXTURES / "two_faces.jpg", missing, broken, FIXTURES / "no_face.png", "--json")
    assert result.returncode == 2
    assert [json.loads(line)["path"] for line in result.stdout.splitlines()] == [
        str(FIXTURES / "two_faces.jpg"), str(FIXTURES / "no_face.png")]
    assert "missing.jpg': no such file" in result.stderr and "broken.png: not a readable image" in result.stderr
    assert "2 of 4 input(s) could not be read" in result.stderr and "Traceback" not in result.stderr


def test_detect_into_head_ends_quietly(tmp_path):
    """`edgeemo detect ... | head -1`: the reader leaves early; no BrokenPipeError traceback."""
    many = " ".join([str(FIXTURES / "two_faces.jpg")] * 60)  # far more output than a pipe holds
    result = subprocess.run(f"{sys.executable} -m edgeemo.cli detect {many} | head -1; exit ${{PIPESTATUS[0]}}",
                            shell=True, executable="/bin/bash", capture_output=True, text=True, timeout=240)
    assert result.stdout.startswith(str(FIXTURES / "two_faces.jpg")) and len(result.stdout.splitlines()) == 1
    assert result.returncode == 0 and result.stderr == "", result.stderr


def test_openvino_backend_without_openvino_says_how_to_install_it(tmp_path):
    """openvino is an extra: a config that asks for it where it is not installed gets one line, exit 2."""
    config = write(tmp_path, "detector:\n  backend: openvino\n")
    without = ("import sys; sys.modules['openvino'] = None  # as if not installed\n"
               "from edgeemo.cli.main import main; sys.exit(main(sys.argv[1:]))")
    result = subprocess.run([sys.executable, "-c", without, "detect", str(FIXTURES / "no_face.png"), "--config", str(config)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "backend: openvino, which is not installed (pip install 'edgeemo[openvino]')" in result.stderr


def test_check_takes_a_bare_camera_index_and_audio_off(tmp_path):
    """`url: 0` and `audio: off` unquoted, as config/edgeemo.yaml says they may be written."""
    config = write(tmp_path, "sources:\n  - url: 0\n    audio: off\nvoice:\n  enabled: on\n")
    result = edgeemo("check", "--config", config, "--metrics-port", "0", "--web-port", "0", cwd=tmp_path)
    assert "OK    config: valid" in result.stdout, result.stdout + result.stderr
    assert "sound of default: no sound to analyse" in result.stdout   # audio: off, read as the word
    source = next(line for line in result.stdout.splitlines() if "source default: " in line)
    assert "camera" in source and "0" in source  # camera 0 (/dev/video0), there or not
