"""The daemon heals itself: supervised workers, live streams that die, freeze and come back, SIGTERM.

Real parts only: ffmpeg serves the sample on loopback (testkit/streams.py), the real daemon reads it
with its real capture code and publishes to a real Mosquitto; systemd is a real datagram socket.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import cv2
import pytest
import yaml

from testkit.net import free_port
from edgeemo.sources.audio import AudioCapture, AudioRing
from edgeemo.sources.capture import Capture
from edgeemo.sources.mailbox import Mailbox
from edgeemo.sources.spec import SourceError
from edgeemo.config.load import load_config
from edgeemo.config.schema import MicrophoneConfig, SourceConfig
from edgeemo.service.daemon import Daemon
from edgeemo.core.metrics import Metrics
from edgeemo.pipeline.pipeline import END, QueueInbox, Stage
from edgeemo.core.supervisor import Backoff, Supervised
from edgeemo.sources.stream import StreamCapture, StreamReader
from testkit.streams import StreamServer
from testkit.wait import wait_until

STALL_S = 1.5       # the sources' stall_timeout_s in these tests
MISSED_S = 0.5      # tracker.max_missed_s


def restarts(metrics: Metrics, worker: str) -> float:
    return metrics.worker_restarts.labels(worker=worker)._value.get()


# ------------------------------------------------------------------------------------ supervision

def test_backoff_doubles_to_its_cap_and_starts_over_only_after_a_good_run():
    backoff = Backoff(0.5, 2.0, healthy_s=10.0)
    assert [backoff.wait_s() for _ in range(5)] == [0.5, 1.0, 2.0, 2.0, 2.0]
    backoff.ran(3.0)              # opened, failed soon after: still backing off
    assert backoff.wait_s() == 2.0
    backoff.ran(10.0)             # delivered for a while: quick again
    assert backoff.wait_s() == 0.5


class FlakyStage(Stage):
    """A stage whose hand-off machinery breaks once, outside any step (a bug, not a bad frame)."""

    broke = False

    def process(self, work):
        if not self.broke:
            self.broke = True
            raise RuntimeError("injected failure")
        super().process(work)


def test_a_stage_that_raises_is_restarted_counted_and_goes_on(caplog):
    metrics, abort = Metrics([], "onnxruntime"), threading.Event()
    inbox, outbox = queue.Queue(), queue.Queue()
    stage = FlakyStage([("track", lambda work: work)], QueueInbox(inbox), outbox, metrics, abort)
    for item in ("lost", "a", "b"):
        inbox.put(item)
    inbox.put(END)
    with caplog.at_level(logging.ERROR):
        stage.start()
        stage.join(5)
    assert not stage.is_alive() and not stage.failed
    assert restarts(metrics, "track") == 1
    assert "worker track failed; restarting" in caplog.text and "RuntimeError: injected failure" in caplog.text
    assert [outbox.get_nowait() for _ in range(3)] == ["a", "b", END]  # the items after the crash flow on


class AlwaysBroken(Supervised):
    give_up_after = 3

    def work(self) -> None:
        raise OSError("broken for good")


def test_a_worker_that_keeps_crashing_gives_up_as_failed():
    metrics = Metrics([], "onnxruntime")
    worker = AlwaysBroken("broken", threading.Event(), metrics)
    worker.start()
    worker.join(5)
    assert worker.failed and restarts(metrics, "broken") == 2  # two restarts, then it gave up


# ----------------------------------------------------------------------------------- live stream

@pytest.fixture
def stream(tmp_path: Path) -> Iterator[StreamServer]:
    server = StreamServer(free_port(), tmp_path / "ffmpeg.log")
    try:
        yield server
    finally:
        server.close()


def live_overrides(url: str, broker_url: str, device: str, tmp_path: Path) -> dict:
    return {"device_id": device, "mqtt.url": broker_url, "metrics.port": 0, "event_log.stdout": False,
            "event_log.path": str(tmp_path / "events.jsonl"), "voice.enabled": False,
            "sources.0.url": url, "sources.0.max_fps": 10, "sources.0.stall_timeout_s": STALL_S,
            "sources.0.reconnect_initial_s": 0.25, "sources.0.reconnect_max_s": 2.0,
            "tracker.max_missed_s": MISSED_S}


@pytest.fixture
def notify_socket(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[tuple[float, str]]]:
    """systemd's side: every sd_notify datagram with its arrival time; a watchdog wanted every 0.5 s."""
    path = tmp_path / "notify"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(0.1)
    monkeypatch.setenv("NOTIFY_SOCKET", str(path))
    monkeypatch.setenv("WATCHDOG_USEC", "1000000")
    got: list[tuple[float, str]] = []
    done = threading.Event()

    def receive() -> None:
        while not done.is_set():
            try:
                got.append((time.monotonic(), sock.recv(4096).decode()))
            except socket.timeout:
                pass

    reader = threading.Thread(target=receive)
    reader.start()
    try:
        yield got
    finally:
        done.set()
        reader.join(5)
        sock.close()


@pytest.fixture
def live_daemon(stream, mqtt_broker, tmp_path, monkeypatch) -> Iterator[Callable[[str], Daemon]]:
    """Factory: a real daemon on the stream, supervising in a thread; stopped and shut down after."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))  # where a journal would go
    monkeypatch.delenv("STATE_DIRECTORY", raising=False)
    started: list[tuple[Daemon, threading.Thread]] = []

    def make(device: str, **overrides: object) -> Daemon:
        settings = {**live_overrides(stream.url, mqtt_broker.url, device, tmp_path), **overrides}
        daemon = Daemon(load_config(None, settings))
        daemon.start()
        thread = threading.Thread(target=daemon.supervise)
        thread.start()
        started.append((daemon, thread))
        return daemon

    yield make
    for daemon, thread in started:
        daemon.stop_requested.set()
        thread.join(10)
        assert daemon.shutdown() == 0


def frames_read(daemon: Daemon) -> int:
    return daemon.pipeline.captures[0].frames_read


def test_a_killed_stream_is_read_again_within_5_s_of_its_return(stream, live_daemon):
    daemon = live_daemon("revive")
    wait_until(lambda: frames_read(daemon) > 10, 20, "the first frames")
    stream.kill()
    time.sleep(6)                                 # long enough for the back-off to reach its cap
    reconnects = daemon.metrics.reconnects.labels(source="default")._value.get()
    assert 4 <= reconnects <= 8                   # 0.25, 0.5, 1, 2, 2 s: backed off, not a tight loop
    before = frames_read(daemon)
    stream.start()
    back = wait_until(lambda: frames_read(daemon) > before, 10, "frames after the restart")
    assert back - stream.started_at < 5.0
    assert daemon.pipeline.healthy() and daemon.pipeline.failed is False


class CrashOnce(Capture):
    """A capture that meets an error OpenCV could raise (not a SourceError) once, mid-stream."""

    crashed = False

    def _deliver(self, image, pts):
        if self.frames_read == 5 and not self.crashed:
            self.crashed = True
            raise cv2.error("injected decoder failure")
        super()._deliver(image, pts)


def test_a_capture_that_crashes_mid_stream_is_restarted_and_reads_on(stream):
    metrics, stop = Metrics(["cam"], "onnxruntime"), threading.Event()
    box = Mailbox(["cam"], metrics)
    capture = CrashOnce(SourceConfig(name="cam", url=stream.url, stall_timeout_s=STALL_S), box, stop, metrics)
    try:
        capture.start()
        wait_until(lambda: capture.frames_read > 20, 20, "frames after the crash")
        assert capture.crashed and capture.is_alive()
        assert restarts(metrics, "capture-cam") == 1
        assert metrics.errors.labels(where="capture")._value.get() == 1  # the crash is an error too
    finally:
        stop.set()
        capture.join(STALL_S + 2)
    assert not capture.is_alive()


def sound_samples(daemon: Daemon) -> float:
    return daemon.metrics.audio_samples.labels(source="default")._value.get()


def test_a_stream_with_sound_is_read_over_one_connection_and_both_come_back(stream, live_daemon):
    daemon = live_daemon("onelink", **{"voice.enabled": True})
    capture = daemon.pipeline.captures[0]
    assert isinstance(capture, StreamCapture) and daemon.pipeline.audio == []
    # The server takes a single client: frames and sound both flowing means one connection carries both.
    wait_until(lambda: frames_read(daemon) > 10 and sound_samples(daemon) > 16000, 20, "frames and sound")
    wait_until(lambda: daemon.pipeline.voices[0].windows_done > 0, 10, "a voice window analysed")
    stream.kill()
    wait_until(lambda: not capture.delivering(time.monotonic()), STALL_S + 2, "the source to be down")
    frames, sound = frames_read(daemon), sound_samples(daemon)
    stream.start()
    wait_until(lambda: frames_read(daemon) > frames and sound_samples(daemon) > sound, 10, "frames and sound again")
    assert time.monotonic() - stream.started_at < 5.0


@pytest.mark.parametrize("sound", [False, True], ids=["opencv", "pyav-with-sound"])
def test_a_frozen_stream_ends_its_tracks_empties_the_state_and_is_reopened(stream, live_daemon, subscribe,
                                                                           notify_socket, sound):
    sub = subscribe("edgeemo/frozen/#")
    daemon = live_daemon("frozen", **{"voice.enabled": sound})
    assert isinstance(daemon.pipeline.captures[0], StreamCapture) == sound
    sub.wait_for(lambda msgs: any(b'"start"' in p for t, p, _ in msgs if t.endswith("/events")), timeout=30)
    sub.wait_for(lambda msgs: any(json.loads(p)["faces"] for t, p, _ in msgs if t.endswith("/state")))
    assert any(m == "WATCHDOG=1" for _, m in notify_socket)
    capture = daemon.pipeline.captures[0]
    reconnects = daemon.metrics.reconnects.labels(source="default")._value.get()

    stream.pause()  # frames already in the socket buffers still arrive: time from the last one
    ended = sub.wait_for(lambda msgs: any(b'"end"' in p for t, p, _ in msgs if t.endswith("/events")),
                         timeout=MISSED_S + 2)
    ended_at = time.monotonic()
    assert ended_at - capture.last_frame_at <= MISSED_S + 1.0
    end = next(json.loads(p) for t, p, _ in ended if t.endswith("/events") and b'"end"' in p)
    sub.wait_for(lambda msgs: json.loads([p for t, p, _ in msgs if t.endswith("/state")][-1])["faces"] == [],
                 timeout=2.0)
    assert end["type"] == "end"

    # After stall_timeout_s the source counts as down: reopened, shown DOWN, and no watchdog ping.
    wait_until(lambda: daemon.metrics.reconnects.labels(source="default")._value.get() > reconnects,
               STALL_S + 2, "a reopen of the frozen stream")
    down_at = capture.last_frame_at + STALL_S + 0.6  # one supervision tick after the stall timeout
    time.sleep(max(0.0, down_at + 2.0 - time.monotonic()))
    assert daemon.metrics.source_up.labels(source="default")._value.get() == 0
    assert not [t for t, m in notify_socket if m == "WATCHDOG=1" and t > down_at]
    assert any("default DOWN" in m for t, m in notify_socket if t > down_at)

    stream.resume()                               # ffmpeg finds its reader gone and is served anew
    wait_until(lambda: any(m == "WATCHDOG=1" and t > stream.started_at for t, m in notify_socket), 10,
               "the watchdog once frames flow again")
    assert daemon.metrics.source_up.labels(source="default")._value.get() == 1


def test_live_sound_that_appears_late_or_drops_is_reopened_with_backoff_and_counted(tmp_path):
    """The reopen logic a microphone shares, on a real sound source that is missing, then lost."""
    metrics, stop, ring = Metrics(["mic"], "onnxruntime"), threading.Event(), AudioRing(10.0)
    server = StreamServer(free_port(), tmp_path / "ffmpeg.log", video=False, serve=False)
    source = SourceConfig(name="mic", url="0", audio=server.url, reconnect_initial_s=0.25, reconnect_max_s=1.0,
                          stall_timeout_s=STALL_S)
    capture = AudioCapture(source, server.url, MicrophoneConfig(), ring, stop, metrics)
    reopens = lambda: metrics.audio_reopens.labels(source="mic")._value.get()  # noqa: E731
    try:
        capture.start()
        time.sleep(2.0)                  # not there yet: 0.25, 0.5, 1 s ... not a busy loop
        assert 2 <= reopens() <= 5 and ring.written == 0 and capture.is_alive()
        server.start()                   # appears after start-up: picked up
        wait_until(lambda: ring.written > 16000, 10, "sound from the late source")
        assert time.monotonic() - server.started_at < 4.0
        before = reopens()
        server.kill()                    # lost while read
        wait_until(lambda: reopens() > before, STALL_S + 2, "a reopen of the lost source")
        written = ring.written
        server.start()
        wait_until(lambda: ring.written > written, 10, "sound after the source came back")
        assert time.monotonic() - server.started_at < 5.0
        assert capture.opened == 2 and not ring.closed
    finally:
        stop.set()
        capture.join(STALL_S + 2)
        server.close()
    assert not capture.is_alive() and ring.closed


@pytest.mark.parametrize("frozen", [False, True], ids=["flowing", "frozen"])
def test_sigterm_on_a_live_stream_exits_within_2_s_and_says_offline(stream, mqtt_broker, subscribe, tmp_path, frozen):
    """Also while a read blocks on a frozen stream: that capture is left behind after a short wait."""
    sub = subscribe("edgeemo/sigterm/#")
    config = tmp_path / "edgeemo.yaml"
    config.write_text(yaml.safe_dump({
        "device_id": "sigterm", "mqtt": {"url": mqtt_broker.url}, "metrics": {"port": 0},
        "event_log": {"stdout": False, "path": str(tmp_path / "events.jsonl")}, "tracker": {"max_missed_s": MISSED_S},
        "sources": [{"url": stream.url, "max_fps": 10, "stall_timeout_s": STALL_S}]}))  # with its sound
    env = {**os.environ, "XDG_DATA_HOME": str(tmp_path), "STATE_DIRECTORY": str(tmp_path)}
    daemon = subprocess.Popen([sys.executable, "-m", "edgeemo.cli", "run", "--config", str(config)], cwd=tmp_path,
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        sub.wait_for(lambda msgs: any(b'"start"' in p for t, p, _ in msgs if t.endswith("/events")), timeout=60)
        if frozen:
            stream.pause()
            time.sleep(0.3)
        sent = time.monotonic()
        daemon.send_signal(signal.SIGTERM)
        _, stderr = daemon.communicate(timeout=10)
        took = time.monotonic() - sent
    finally:
        daemon.kill()
    assert daemon.returncode == 0, stderr
    assert took <= 2.0, f"exit took {took:.2f} s"
    sub.wait_for(lambda msgs: any(p == b"offline" for _, p, _ in msgs))
    assert sub.payloads("edgeemo/sigterm/availability")[-1] == b"offline"
    events = [json.loads(p) for p in sub.payloads("edgeemo/sigterm/events")]
    assert events[-1]["type"] == "end"


class BrokenStage(Stage):
    """A classify stage broken for good: every frame makes it crash."""

    def process(self, work):
        raise RuntimeError("classify is broken")


def test_a_stage_that_keeps_crashing_makes_the_daemon_exit_1_for_systemd(stream, mqtt_broker, tmp_path,
                                                                         monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    daemon = Daemon(load_config(None, live_overrides(stream.url, mqtt_broker.url, "broken", tmp_path)))
    pipeline = daemon.pipeline
    live = pipeline.stages[0]          # live, one source: one analysis worker runs every step
    pipeline.stages[0] = BrokenStage([(name, step) for name, step, _ in live.steps], live.inbox, None,
                                     daemon.metrics, pipeline.abort, name=live.name)
    daemon.start()
    started = time.monotonic()
    daemon.supervise()                 # returns once the stage gave up: a live source alone never ends it
    assert time.monotonic() - started < 20
    worker = "analysis"
    assert pipeline.failed and restarts(daemon.metrics, worker) == BrokenStage.give_up_after - 1
    assert daemon.shutdown() == 1



def test_a_stream_that_cannot_be_opened_names_it_without_its_password():
    url = f"http://cam:s3cret@127.0.0.1:{free_port()}/cam.ts"   # nobody listens there
    with pytest.raises(SourceError) as error:
        StreamReader(url, 1.0, lambda samples, pts: None)
    assert "cannot open" in str(error.value) and "127.0.0.1" in str(error.value)
    assert "s3cret" not in str(error.value)
