"""Capture: source parsing, latest-frame mailbox, lossless file reading, reconnects, bad media."""

import shutil
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from edgeemo.sources.capture import Capture
from edgeemo.sources.mailbox import Mailbox
from edgeemo.sources.reader import FrameReader
from edgeemo.sources.spec import SourceError, parse_source
from edgeemo.config.schema import SourceConfig
from edgeemo.core.metrics import Metrics
from edgeemo.core.resources import sample_video
from edgeemo.core.types import Frame

FIXTURES = Path(__file__).parent / "fixtures"


def frame(source: str, index: int) -> Frame:
    return Frame(np.zeros((2, 2, 3), np.uint8), source, index, index / 30, time.monotonic())


def sample_value(metrics: Metrics, name: str, **labels) -> float:
    return metrics.registry.get_sample_value(name, labels) or 0.0


def test_parse_source_kinds(tmp_path):
    assert parse_source("0").kind == "camera" and parse_source("0").target == 0
    assert parse_source("/dev/video2").kind == "camera"
    assert parse_source("rtsp://cam.local/stream").kind == "stream"
    assert parse_source("sample").target == str(sample_video())
    assert parse_source(str(FIXTURES / "no_face.png")).kind == "image"
    assert parse_source(str(FIXTURES)).kind == "folder"
    with pytest.raises(SourceError, match="no such file"):
        parse_source(str(tmp_path / "missing.mp4"))


def test_mailbox_keeps_the_newest_frame_and_counts_drops():
    metrics = Metrics(["a", "b"], "onnxruntime")
    box, stop = Mailbox(["a", "b"], metrics), threading.Event()
    for i in range(5):
        box.put(frame("a", i), lossless=False, stop=stop)
    box.put(frame("b", 0), lossless=False, stop=stop)
    got = [box.get(0.1), box.get(0.1)]
    assert sorted((f.source, f.index) for f in got) == [("a", 4), ("b", 0)]
    assert sample_value(metrics, "edgeemo_frames_dropped_total", source="a", reason="backlog") == 4
    assert box.get(0.05) is False  # nothing waiting, sources still open
    box.close("a"), box.close("b")
    assert box.get(0.05) is None


def test_lossless_mailbox_waits_instead_of_dropping():
    box, stop = Mailbox(["a"]), threading.Event()
    received = []

    def consume():
        while (f := box.get(1.0)) is not None:
            if f is not False:
                received.append(f.index)
                time.sleep(0.005)

    consumer = threading.Thread(target=consume)
    consumer.start()
    for i in range(50):
        box.put(frame("a", i), lossless=True, stop=stop)
    box.close("a")
    consumer.join(5)
    assert received == list(range(50))


def read_all(url: str, lossless: bool = True) -> list[Frame]:
    box, stop = Mailbox(["s"]), threading.Event()
    capture = Capture(SourceConfig(name="s", url=url), box, stop, None, lossless=lossless)
    capture.start()
    frames = []
    while (f := box.get(2.0)) is not None:
        if f is not False:
            frames.append(f)
    capture.join(5)
    return frames


def test_file_read_losslessly_with_media_pts():
    frames = read_all("sample")
    assert [f.index for f in frames] == list(range(427))
    pts = np.array([f.pts for f in frames])
    assert pts[0] == 0 and np.all(np.diff(pts) > 0)
    assert pts[-1] == pytest.approx(426 / 29.97, abs=0.01)


def test_folder_of_images_skips_unreadable_files(tmp_path):
    shutil.copy(FIXTURES / "no_face.png", tmp_path / "a.png")
    (tmp_path / "b.jpg").write_bytes(b"not a jpeg")
    shutil.copy(FIXTURES / "angry_actor01.jpg", tmp_path / "c.jpg")
    frames = read_all(str(tmp_path))
    assert [f.image.shape for f in frames] == [(240, 320, 3), (360, 640, 3)]


def test_truncated_video_ends_cleanly_with_the_frames_it_has(tmp_path):
    data = sample_video().read_bytes()
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(data[: len(data) // 3])
    frames = read_all(str(truncated))
    assert 0 < len(frames) < 427


def test_unreadable_video_is_a_source_error(tmp_path):
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"\x00" * 1000)
    with pytest.raises(SourceError, match="cannot open"):
        FrameReader(parse_source(str(junk)))


def test_missing_camera_is_retried_with_backoff_until_stopped():
    metrics = Metrics(["cam"], "onnxruntime")
    box, stop = Mailbox(["cam"], metrics), threading.Event()
    cfg = SourceConfig(name="cam", url="/dev/video99", reconnect_initial_s=0.05, reconnect_max_s=0.2)
    capture = Capture(cfg, box, stop, metrics)
    capture.start()
    time.sleep(1.0)
    stop.set()
    capture.join(5)
    assert not capture.is_alive()
    retries = sample_value(metrics, "edgeemo_camera_reconnects_total", source="cam")
    assert 3 <= retries <= 12  # 0.05, 0.1, 0.2, 0.2, ... s: backed off, not a busy loop


def missing_camera_index() -> int:
    return next(i for i in range(7, 64) if not Path(f"/dev/video{i}").exists())


def test_a_missing_camera_is_said_once_then_retried_quietly(tmp_path):
    """The daemon through the CLI on a camera index that does not exist: one line naming the device,
    retries counted but not logged, and none of OpenCV's own `[ WARN:0@...] cap_v4l.cpp` lines."""
    import os
    import re
    import signal
    import subprocess
    import sys
    import urllib.request

    index = missing_camera_index()
    config = tmp_path / "edgeemo.yaml"
    config.write_text(f"sources:\n  - url: {index}\n    reconnect_initial_s: 0.05\n    reconnect_max_s: 0.1\n")
    daemon = subprocess.Popen([sys.executable, "-m", "edgeemo.cli", "run", "--config", str(config), "--metrics-port", "0",
                               "--web-port", "0"], cwd=tmp_path, stderr=subprocess.PIPE, text=True,
                              env=os.environ | {"XDG_DATA_HOME": str(tmp_path)})
    lines = []
    try:
        while not (port := next((m.group(1) for line in lines if (m := re.search(r"metrics on http://[\d.]+:(\d+)", line))), None)):
            lines.append(daemon.stderr.readline())
            assert lines[-1], "".join(lines)
        url = f"http://127.0.0.1:{port}/metrics"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # until it has retried a good few times
            text = urllib.request.urlopen(url, timeout=5).read().decode()
            if float(re.search(r'edgeemo_camera_reconnects_total\{source="default"\} (\S+)', text).group(1)) >= 5:
                break
            time.sleep(0.2)
        daemon.send_signal(signal.SIGTERM)
        lines += daemon.communicate(timeout=30)[1].splitlines(keepends=True)
    finally:
        daemon.kill()
    log = "".join(lines)
    assert sum(f"camera /dev/video{index} does not exist" in line for line in lines) == 1, log
    assert "WARN:" not in log and "cap_v4l" not in log and "VIDEOIO" not in log, log


def test_a_stream_that_accepts_and_never_answers_times_out_in_plain_words(tmp_path):
    """A real TCP listener that accepts and says nothing: `check` gives up after stall_timeout_s and says so."""
    import socket
    import subprocess
    import sys

    with socket.socket() as server, socket.socket() as closed:
        server.bind(("127.0.0.1", 0))
        server.listen(8)  # the kernel accepts connections; nothing is ever sent back
        closed.bind(("127.0.0.1", 0))  # bound, not listening: connections are refused
        config = tmp_path / "edgeemo.yaml"
        config.write_text(f"sources:\n  - name: silent\n    url: http://127.0.0.1:{server.getsockname()[1]}/cam.ts\n"
                          f"    stall_timeout_s: 2\n  - name: refused\n    url: rtsp://127.0.0.1:{closed.getsockname()[1]}/s\n"
                          f"    stall_timeout_s: 2\n")
        result = subprocess.run([sys.executable, "-m", "edgeemo.cli", "check", "--config", str(config), "--metrics-port",
                                 "0", "--web-port", "0"], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert "FAIL  source silent: " in result.stdout and "cannot open: timed out after 2 s (no answer)" in result.stdout
    assert "FAIL  sound of silent: audio " in result.stdout and result.stdout.count("timed out after 2 s") == 2
    assert "FAIL  sound of refused: audio " in result.stdout and "connection refused" in result.stdout
    assert "[Errno" not in result.stdout + result.stderr and "Traceback" not in result.stderr
