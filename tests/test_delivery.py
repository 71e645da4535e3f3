"""Store and forward with real processes: a Mosquitto that is stopped and restarted, a daemon that is
killed, a subscriber with a persistent session. Nothing in the journal may fail to reach it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edgeemo.config.schema import JournalConfig
from edgeemo.core.events import unix_time
from edgeemo.journal.store import Journal
from edgeemo.core.resources import sample_video

from testkit.broker import Broker, Subscriber, mosquitto_binary

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def persistent_broker(tmp_path) -> Broker:
    broker = Broker(mosquitto_binary(), tmp_path, persistent=True)
    broker.start()
    yield broker
    broker.stop()


def daemon(broker: Broker, device: str, *extra: str, cwd: Path) -> subprocess.Popen:
    """The real daemon on the sample video played at its own rate (like a camera), events to the broker."""
    return subprocess.Popen([sys.executable, "-m", "edgeemo.cli", "run", "--source", str(sample_video()),
                             "--mqtt-url", broker.url, "--device-id", device, "--metrics-port", "0", *extra],
                            cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(REPO)})


def journal_payloads(journal_db: Path) -> list[dict]:
    journal = Journal.open(JournalConfig(path=journal_db), repair=False)
    try:
        return journal.query(limit=10**6)
    finally:
        journal.close()


def received(sub: Subscriber) -> list[dict]:
    return [json.loads(p) for p in sub.payloads()]


def first_seen_in_order(events: list[dict]) -> list[int]:
    """The seq of each event the first time it arrived (at-least-once: repeats are dropped by seq)."""
    seen: dict[int, None] = {}
    for e in events:
        seen.setdefault(e["seq"], None)
    return list(seen)


def wait_for_events(sub: Subscriber, count: int, timeout: float) -> None:
    sub.wait_for(lambda msgs: len(msgs) >= count, timeout=timeout)


def assert_everything_arrived(sub: Subscriber, journal_db: Path) -> list[dict]:
    stored = journal_payloads(journal_db)
    want = [p["seq"] for p in stored]
    sub.wait_for(lambda msgs: {json.loads(m[1])["seq"] for m in msgs} >= set(want), timeout=20)
    got = received(sub)
    assert first_seen_in_order(got) == want  # every event, oldest first, none overtaken
    by_seq = {p["seq"]: p for p in stored}
    assert all(e == by_seq[e["seq"]] for e in got)  # a repeat is the same event, never a reused seq
    return stored


def test_broker_outage_mid_run_loses_nothing_and_keeps_seq_order(persistent_broker, tmp_path, own_journal):
    sub = Subscriber(persistent_broker, "edgeemo/outage/events", persistent=True)  # reconnects by itself
    run = daemon(persistent_broker, "outage", cwd=tmp_path)
    try:
        wait_for_events(sub, 1, timeout=30)
        persistent_broker.stop()
        down = time.time()
        time.sleep(4)  # the sample goes on playing: its events wait in the journal
        persistent_broker.start()
        up = time.time()
        assert run.wait(60) == 0, run.stderr.read()
        stored = assert_everything_arrived(sub, own_journal)
    finally:
        run.kill()
        sub.close()
    assert [p["seq"] for p in stored] == list(range(1, len(stored) + 1))
    during = [p for p in stored if down <= unix_time(p["ts"]) < up]
    assert during, "no event was committed while the broker was down"


def test_sigkill_during_an_outage_then_restart_delivers_the_first_runs_events(persistent_broker, tmp_path,
                                                                              own_journal):
    sub = Subscriber(persistent_broker, "edgeemo/killed/events", persistent=True)
    first = daemon(persistent_broker, "killed", cwd=tmp_path)
    try:
        wait_for_events(sub, 1, timeout=30)
        persistent_broker.stop()
        time.sleep(3)
        first.send_signal(signal.SIGKILL)  # no drain, no goodbye: only what was committed survives
        first.wait(10)
    finally:
        first.kill()
    first_run = journal_payloads(own_journal)
    undelivered = [p["seq"] for p in first_run if p["seq"] > len(received(sub))]
    assert undelivered, "the outage should have left events undelivered"
    persistent_broker.start()

    second = subprocess.run([sys.executable, "-m", "edgeemo.cli", "run", "--source", "sample", "--once",
                             "--mqtt-url", persistent_broker.url, "--device-id", "killed", "--metrics-port", "0"],
                            cwd=tmp_path, capture_output=True, text=True, timeout=120,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    assert second.returncode == 0, second.stderr
    try:
        stored = assert_everything_arrived(sub, own_journal)
    finally:
        sub.close()
    second_run = stored[len(first_run):]
    assert second_run and second_run[0]["seq"] == first_run[-1]["seq"] + 1  # seq continues, none reused
    first_tracks = {p["track"] for p in first_run}
    assert min(p["track"] for p in second_run) > max(first_tracks)  # so do track and stream ids


def test_sigterm_while_the_broker_is_away_exits_quickly_and_keeps_the_backlog(tmp_path, own_journal):
    dead = Broker(mosquitto_binary(), tmp_path)  # a port nobody listens on
    run = daemon(dead, "away", cwd=tmp_path)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not (own_journal.exists() and journal_payloads(own_journal)):
            time.sleep(0.5)
        run.send_signal(signal.SIGTERM)
        asked = time.monotonic()
        assert run.wait(15) == 0, run.stderr.read()
        took = time.monotonic() - asked
    finally:
        run.kill()
    assert took < 10, f"shutdown took {took:.1f} s"  # inside TimeoutStopSec=20 with room to spare
    journal = Journal.open(JournalConfig(path=own_journal), repair=False)
    try:
        assert journal.count_undelivered() == len(journal.query(limit=10**6)) > 0  # all kept for the next start
    finally:
        journal.close()
