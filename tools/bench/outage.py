"""Store and forward, measured: the real daemon, a real Mosquitto taken away for a while, events flowing.

Plays the sample looped (at its own rate, like a camera) through `edgeemo run`, with a short
heartbeat so events keep coming; after a warm-up the broker is stopped for `--outage-s`, then
started again. Reports the daemon's RSS over the outage (sampled from /proc), and whether every event
of the journal reached a subscriber with a persistent session, first arrivals in seq order.

    python -m tools.bench.outage --outage-s 30 --out bench/results/journal_outage_30s.json
    python -m tools.bench.outage --outage-s 300 --out bench/results/journal_outage_300s.json
"""

from __future__ import annotations

import argparse
import json
import os
import pwd
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt

from edgeemo.config.schema import JournalConfig
from edgeemo.core.events import unix_time
from edgeemo.journal.store import Journal
from edgeemo.core.resources import sample_video

REPO = Path(__file__).resolve().parents[2]

SAMPLE_S = 14.2


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Mosquitto:
    def __init__(self, folder: Path) -> None:
        self.port = free_port()
        self.conf = folder / "mosquitto.conf"
        self.conf.write_text(f"listener {self.port} 127.0.0.1\nallow_anonymous true\n"
                             f"persistence true\npersistence_location {folder}/\nuser {pwd.getpwuid(os.getuid()).pw_name}\n")
        self.binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        self.process = subprocess.Popen([self.binary, "-c", str(self.conf)], stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL)
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("mosquitto did not start")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(10)
            self.process = None


class Collector:
    """A persistent-session QoS 1 subscriber: keeps every event payload it receives."""

    def __init__(self, port: int, topic: str) -> None:
        self.seqs: list[int] = []
        self._lock = threading.Lock()
        self.client = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2,
                                  client_id="outage-collector", clean_session=False)
        self.client.reconnect_delay_set(1, 2)
        self.client.on_connect = lambda client, *_: client.subscribe(topic, qos=1)
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def _on_message(self, _client: object, _userdata: object, msg: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.seqs.append(json.loads(msg.payload)["seq"])

    def first_arrivals(self) -> list[int]:
        with self._lock:
            return list(dict.fromkeys(self.seqs))

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def looped_sample(folder: Path, seconds: float) -> Path:
    """The sample joined to itself often enough to play for `seconds` (a file, so no camera is needed)."""
    out = folder / "looped.mp4"
    loops = int(seconds / SAMPLE_S) + 1
    subprocess.run(["ffmpeg", "-v", "error", "-stream_loop", str(loops), "-i", str(sample_video()), "-c", "copy",
                    str(out)], check=True)
    return out


def sample_rss(pid: int, seconds: float, every: float = 2.0) -> list[float]:
    samples, end = [], time.monotonic() + seconds
    while time.monotonic() < end:
        samples.append(rss_mb(pid))
        time.sleep(every)
    return samples


def wait_delivered(collector: Collector, journal_db: Path, timeout: float) -> None:
    """Until the subscriber has every event the journal holds (or `timeout` s): the backlog is through."""
    deadline = time.monotonic() + timeout
    journal = Journal.open(JournalConfig(path=journal_db), repair=False)
    try:
        while time.monotonic() < deadline:
            stored = {e["seq"] for e in journal.query(limit=10**7)}
            if stored <= set(collector.first_arrivals()):
                return
            time.sleep(1)
    finally:
        journal.close()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--outage-s", type=float, default=300)
    p.add_argument("--warmup-s", type=float, default=40)
    p.add_argument("--heartbeat-s", type=float, default=0.2, help="tracker.heartbeat_s: more events per second")
    p.add_argument("--out", type=Path, help="result JSON")
    args = p.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="edgeemo-outage-"))
    video = looped_sample(folder, args.warmup_s + args.outage_s + 60)
    broker = Mosquitto(folder)
    broker.start()
    collector = Collector(broker.port, "edgeemo/outage/events")
    journal_db = folder / "journal.db"
    (folder / "edgeemo.yaml").write_text(
        f"device_id: outage\nsources: [{{url: {video}}}]\nmqtt: {{url: 'mqtt://127.0.0.1:{broker.port}'}}\n"
        f"journal: {{path: {journal_db}}}\ntracker: {{heartbeat_s: {args.heartbeat_s}}}\n"
        f"event_log: {{path: {folder / 'events.jsonl'}, stdout: false}}\nmetrics: {{port: 0}}\n")
    daemon = subprocess.Popen([sys.executable, "-m", "edgeemo.cli", "run", "--config", str(folder / "edgeemo.yaml")],
                              cwd=folder, stderr=(folder / "daemon.log").open("w"))
    try:
        print(f"warm-up {args.warmup_s:.0f} s with the broker up ...", flush=True)
        before = sample_rss(daemon.pid, args.warmup_s)[-3:]
        print(f"broker down for {args.outage_s:.0f} s ...", flush=True)
        broker.stop()
        down_at = time.time()
        during = sample_rss(daemon.pid, args.outage_s)
        broker.start()
        up_at = time.time()
        print("broker back; waiting for the backlog ...", flush=True)
        wait_delivered(collector, journal_db, timeout=60)
        daemon.terminate()
        daemon.wait(30)
    finally:
        daemon.kill()
    time.sleep(2)
    collector.close()
    broker.stop()
    journal = Journal.open(JournalConfig(path=journal_db), repair=False)
    stored = journal.query(limit=10**7)
    journal.close()
    stored_seqs = [e["seq"] for e in stored]
    arrivals = collector.first_arrivals()
    in_outage = sum(1 for e in stored if down_at <= unix_time(e["ts"]) < up_at)
    result = {
        "command": "python -m tools.bench.outage " + " ".join(sys.argv[1:]),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %z"),
        "outage_s": args.outage_s, "heartbeat_s": args.heartbeat_s,
        "events_in_journal": len(stored), "events_committed_during_outage": in_outage,
        "events_lost": len(set(stored_seqs) - set(arrivals)),
        "first_arrivals_in_seq_order": arrivals == sorted(arrivals) and arrivals[:len(stored_seqs)] == stored_seqs,
        "repeats": len(collector.seqs) - len(arrivals),
        "rss_mb_before_outage": round(statistics.median(before), 1),
        "rss_mb_end_of_outage": round(statistics.median(during[-3:]), 1),
        "rss_mb_max_during_outage": round(max(during), 1),
    }
    result["rss_growth_mb"] = round(result["rss_mb_end_of_outage"] - result["rss_mb_before_outage"], 1)
    print(json.dumps(result, indent=2))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    lost = sorted(set(stored_seqs) - set(arrivals))
    if lost:
        print(f"lost seq {lost[0]}..{lost[-1]}; the run's files are kept in {folder}", flush=True)
    else:
        shutil.rmtree(folder, ignore_errors=True)
    return 0 if result["events_lost"] == 0 and result["first_arrivals_in_seq_order"] else 1


if __name__ == "__main__":
    sys.exit(main())
