"""Measure how fast the daemon heals: a stream's return, a frozen stream's tracks, SIGTERM.

    python -m tools.bench.selfheal [--rounds 5] [--sound] [--json OUT]

The real daemon reads the sample served by ffmpeg on loopback (testkit/streams.py) with the config
the fault tests use (stall_timeout_s 1.5 s, max_missed_s 0.5 s, max_fps 10, default back-off):

* return: the server is killed, stays away 1 to 6 s (the back-off grows meanwhile), is started
  again; seconds from its start to the next frame read;
* stall-to-end: the server is frozen (SIGSTOP) while a face is tracked; seconds from the last
  frame read to the face's `end` event (edgeemo_events_total{type="end"});
* SIGTERM: `edgeemo run` on the stream, flowing and frozen; seconds from the signal to its exit.

--sound reads the stream's sound too (one PyAV connection, StreamCapture) instead of OpenCV frames only.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import yaml

from testkit.net import free_port
from testkit.streams import StreamServer

from edgeemo.config.load import load_config
from edgeemo.service.daemon import Daemon

ROOT = Path(__file__).resolve().parents[2]

SETTINGS = {"sources.0.max_fps": 10, "sources.0.stall_timeout_s": 1.5, "tracker.max_missed_s": 0.5,
            "event_log.stdout": False, "metrics.enabled": False}


def wait(predicate, timeout: float = 30.0) -> float:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError
        time.sleep(0.01)
    return time.monotonic()


def ends(daemon: Daemon) -> float:
    return sum(s.value for m in daemon.metrics.events.collect() for s in m.samples
               if s.labels.get("type") == "end" and s.name.endswith("_total"))


def in_process(server: StreamServer, rounds: int, sound: bool, folder: Path) -> dict:
    settings = {**SETTINGS, "sources.0.url": server.url, "voice.enabled": sound,
                "event_log.path": str(folder / "events.jsonl")}
    daemon = Daemon(load_config(None, settings))
    daemon.start()
    supervisor = threading.Thread(target=daemon.supervise)
    supervisor.start()
    capture = daemon.pipeline.captures[0]
    returns, stalls = [], []
    try:
        for k in range(rounds):
            wait(lambda: capture.frames_read > 20)
            server.kill()
            time.sleep(1 + 5 * k / max(rounds - 1, 1))
            before = capture.frames_read
            server.start()
            returns.append(wait(lambda: capture.frames_read > before) - server.started_at)
        for _ in range(rounds):
            wait(lambda: daemon.pipeline.trackers["default"].present())  # a face is reported
            ended = ends(daemon)
            server.pause()
            at = wait(lambda: ends(daemon) > ended)
            stalls.append(at - capture.last_frame_at)
            server.resume()
    finally:
        daemon.stop_requested.set()
        supervisor.join()
        daemon.shutdown()
    return {"return_s": returns, "stall_to_end_s": stalls}


def sigterm(server: StreamServer, frozen: bool, sound: bool, folder: Path) -> float:
    config = folder / "edgeemo.yaml"
    config.write_text(yaml.safe_dump({"metrics": {"enabled": False}, "voice": {"enabled": sound},
                                      "event_log": {"stdout": False, "path": str(folder / "events.jsonl")},
                                      "sources": [{"url": server.url, "max_fps": 10, "stall_timeout_s": 1.5}]}))
    env = {**os.environ, "XDG_DATA_HOME": str(folder), "STATE_DIRECTORY": str(folder)}
    process = subprocess.Popen([sys.executable, "-m", "edgeemo.cli", "run", "--config", str(config)], cwd=folder,
                               env=env, stderr=subprocess.PIPE, text=True)
    try:
        for line in process.stderr:
            if "opened" in line:
                break
        time.sleep(2)
        if frozen:
            server.pause()
            time.sleep(0.5)
        sent = time.monotonic()
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=30)
        took = time.monotonic() - sent
        if process.returncode != 0:
            raise SystemExit(f"edgeemo run exited with {process.returncode} after SIGTERM")
        return took
    finally:
        process.kill()
        server.kill()
        server.start()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--sound", action="store_true")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        os.environ["XDG_DATA_HOME"] = tmp  # the daemon's journal, if any, stays in here
        os.environ.pop("STATE_DIRECTORY", None)
        server = StreamServer(free_port(), folder / "ffmpeg.log")
        try:
            result = in_process(server, args.rounds, args.sound, folder)
            result["sigterm_flowing_s"] = [sigterm(server, False, args.sound, folder) for _ in range(args.rounds)]
            result["sigterm_frozen_s"] = [sigterm(server, True, args.sound, folder) for _ in range(args.rounds)]
        finally:
            server.close()
    for name, values in result.items():
        print(f"{name:18s} max {max(values):.2f}  " + " ".join(f"{v:.2f}" for v in values))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
