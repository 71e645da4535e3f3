"""A full or read-only disk is not a corrupt journal: real file systems (a small tmpfs the test
mounts), the real daemon, a real Mosquitto and subscriber.

Mounting needs root; CI runs the suite as root. Where mount is refused the tests fail saying so:
a skipped test would hide the claim. The kernel refuses `mount -o remount,ro` while any file on it
is open for writing (the daemon's journal is), so the read-only tests make the disk read-only
before the daemon opens it and read-write again while it runs.
"""

from __future__ import annotations

import errno
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from edgeemo.config.schema import JournalConfig
from edgeemo.core.events import unix_time
from edgeemo.journal.store import Journal

from testkit.broker import Broker, Subscriber, mosquitto_binary
from testkit.net import free_port
from testkit.streams import StreamServer

REPO = Path(__file__).resolve().parents[1]


class SmallDisk:
    """A 1 MiB tmpfs: filled to the last byte, emptied again, remounted read-only and back."""

    def __init__(self, where: Path) -> None:
        self.where = where
        where.mkdir()
        mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m,mode=0700", "tmpfs", str(where)],
                                 capture_output=True, text=True)
        if mounted.returncode != 0:
            pytest.fail(f"these tests mount a small tmpfs and need root (CI runs as root): "
                        f"mount said {mounted.stderr.strip()!r}", pytrace=False)
        self.filler = where / "filler"

    def fill(self) -> None:
        """Write until the kernel says no space is left: every byte taken."""
        with self.filler.open("ab", buffering=0) as out:
            for size in (65536, 4096, 512, 1):
                try:
                    while True:
                        out.write(b"\0" * size)
                except OSError as exc:
                    assert exc.errno == errno.ENOSPC
        assert os.statvfs(self.where).f_bavail == 0

    def free(self) -> None:
        self.filler.unlink()

    def remount(self, mode: str) -> None:
        subprocess.run(["mount", "-o", f"remount,{mode}", str(self.where)], check=True, capture_output=True)

    def unmount(self) -> None:
        if subprocess.run(["umount", str(self.where)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(self.where)], capture_output=True)


@pytest.fixture
def disk(tmp_path) -> SmallDisk:
    small = SmallDisk(tmp_path / "disk")
    try:
        yield small
    finally:
        small.unmount()


def write_config(tmp_path: Path, disk: SmallDisk, device: str, broker: Broker, memory_bound: int = 10_000) -> Path:
    config = tmp_path / "edgeemo.yaml"
    config.write_text(f"device_id: {device}\nmqtt:\n  url: {broker.url}\n"
                      f"journal:\n  path: {disk.where / 'journal.db'}\n  memory_bound: {memory_bound}\n"
                      f"event_log:\n  path: {tmp_path / 'events.jsonl'}\n  stdout: false\n"
                      "web:\n  enabled: false\n")
    return config


def edgeemo(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edgeemo.cli", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=180, env={**os.environ, "PYTHONPATH": str(REPO)})


def run_once(config: Path, cwd: Path) -> subprocess.CompletedProcess:
    return edgeemo("run", "--config", str(config), "--source", "sample", "--once", "--metrics-port", "0", cwd=cwd)


def stored(journal_db: Path) -> list[dict]:
    journal = Journal.open(JournalConfig(path=journal_db), repair=False)
    try:
        return journal.query(limit=10**6)
    finally:
        journal.close()


def first_seen(sub: Subscriber) -> dict[int, dict]:
    """seq -> the event as first received; a seq that came back as a different event fails here."""
    seen: dict[int, dict] = {}
    for raw in sub.payloads():
        event = json.loads(raw)
        assert seen.setdefault(event["seq"], event) == event, f"seq {event['seq']} reused for another event"
    return seen


def deliver_all(sub: Subscriber, journal_db: Path, after: int = 0,
                timeout: float = 30) -> tuple[list[dict], dict[int, dict]]:
    """Wait until every journal row above seq `after` has arrived; returns the journal's rows and what came."""
    rows = stored(journal_db)
    want = {p["seq"] for p in rows if p["seq"] > after}
    sub.wait_for(lambda msgs: {json.loads(m[1])["seq"] for m in msgs} >= want, timeout=timeout)
    seen = first_seen(sub)
    assert [s for s in seen if s in want] == [p["seq"] for p in rows if p["seq"] in want]  # oldest first
    return rows, seen


def test_three_runs_a_full_disk_between_loses_nothing_and_reuses_no_seq(disk, tmp_path):
    broker = Broker(mosquitto_binary(), tmp_path)          # away for runs 1 and 2
    config = write_config(tmp_path, disk, "threeruns", broker)
    journal_db = disk.where / "journal.db"

    first = run_once(config, tmp_path)
    assert first.returncode == 0, first.stderr
    run1 = stored(journal_db)
    assert run1, "run 1 committed no event"

    disk.fill()
    second = run_once(config, tmp_path)
    assert second.returncode == 0, second.stderr
    assert "Traceback" not in second.stderr, second.stderr
    assert re.search(r"journal: (disk full|I/O error) on .* \(\d+ bytes free\); events are held in memory "
                     r"\(bound 10000\) and counted", second.stderr), second.stderr
    assert journal_db.stat().st_size > 0 and not list(disk.where.glob("journal.db.corrupt-*"))  # nothing moved
    assert stored(journal_db) == run1                       # untouched, readable on the full disk
    listed = edgeemo("events", "list", "--config", str(config), cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert [json.loads(line)["seq"] for line in listed.stdout.splitlines()] == [p["seq"] for p in run1]
    check = edgeemo("check", "--config", str(config), cwd=tmp_path)
    assert re.search(r"FAIL  journal: disk full on .* \(0 bytes free\)", check.stdout), check.stdout

    disk.free()
    broker.start()
    sub = Subscriber(broker, "edgeemo/threeruns/events")
    try:
        third = run_once(config, tmp_path)
        assert third.returncode == 0, third.stderr
        assert "Traceback" not in third.stderr
        rows, seen = deliver_all(sub, journal_db)
    finally:
        sub.close()
        broker.stop()
    lost = [p["seq"] for p in run1 if seen.get(p["seq"]) != p]
    run3 = rows[len(run1):]
    reused = [p["seq"] for p in run3 if p["seq"] <= run1[-1]["seq"]]
    assert lost == [] and reused == [] and run3
    assert run3[0]["seq"] == run1[-1]["seq"] + 1           # run 2's held events were never numbered
    assert not list(disk.where.glob("journal.db.corrupt-*"))


class LiveDaemon:
    """The daemon on a looping live stream, its log in a file the test polls."""

    def __init__(self, config: Path, source: str, cwd: Path) -> None:
        self.log = cwd / "daemon.log"
        with self.log.open("w") as err:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "edgeemo.cli", "run", "--config", str(config), "--source", source,
                 "--metrics-port", "0"], cwd=cwd, stdout=subprocess.DEVNULL, stderr=err,
                env={**os.environ, "PYTHONPATH": str(REPO)})
        self.metrics_url = self.wait_log(r"metrics on (http://\S+/metrics)")[1]

    def wait_log(self, pattern: str, timeout: float = 60) -> re.Match:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = re.search(pattern, self.log.read_text())
            if found:
                return found
            assert self.process.poll() is None, f"the daemon exited:\n{self.log.read_text()}"
            time.sleep(0.1)
        raise AssertionError(f"no {pattern!r} in the log within {timeout} s:\n{self.log.read_text()}")

    def metric(self, name: str) -> float:
        text = urllib.request.urlopen(self.metrics_url, timeout=5).read().decode()
        found = re.search(rf"^{re.escape(name)} (\S+)$", text, re.M)
        return float(found[1]) if found else 0.0

    def wait_metric(self, name: str, at_least: float, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while self.metric(name) < at_least:
            assert time.monotonic() < deadline, f"{name} stayed below {at_least} for {timeout} s"
            assert self.process.poll() is None, f"the daemon exited:\n{self.log.read_text()}"
            time.sleep(0.2)

    def stop(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(90)  # a clean stop flushes the journal and closes the stream reader

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


@pytest.fixture
def stream(tmp_path) -> StreamServer:
    server = StreamServer(free_port(), tmp_path / "ffmpeg.log")
    server.start()
    yield server
    server.close()


def test_disk_full_mid_run_then_freed_every_event_delivered_in_order_or_counted(disk, stream, tmp_path):
    broker = Broker(mosquitto_binary(), tmp_path)          # away while the disk is full
    config = write_config(tmp_path, disk, "fullmid", broker, memory_bound=2)
    journal_db = disk.where / "journal.db"
    daemon = LiveDaemon(config, stream.url, tmp_path)
    try:
        daemon.wait_metric("edgeemo_journal_undelivered_events", 1)
        disk.fill()
        full_at = time.time()
        daemon.wait_log(r"journal: disk full on .*; events are held in memory \(bound 2\) and counted")
        daemon.wait_metric('edgeemo_events_dropped_total{reason="storage"}', 1)   # more than the bound came
        assert daemon.metric("edgeemo_journal_writable") == 0
        disk.free()
        freed_at = time.time()
        recovered = daemon.wait_log(r"can be written again; committed the (\d+) event\(s\) held in memory "
                                    r"\((\d+) dropped while it could not\)")
        dropped = daemon.metric('edgeemo_events_dropped_total{reason="storage"}')
        broker.start()
        sub = Subscriber(broker, "edgeemo/fullmid/events")
        try:
            daemon.wait_metric("edgeemo_journal_writable", 1)
            rows, _ = deliver_all(sub, journal_db)
        finally:
            sub.close()
        assert daemon.stop() == 0
    finally:
        daemon.kill()
        broker.stop()
    log = daemon.log.read_text()
    assert "Traceback" not in log and not list(disk.where.glob("journal.db.corrupt-*"))
    seqs = [p["seq"] for p in rows]
    assert seqs == sorted(seqs) and seqs[0] == 1
    gaps = seqs[-1] - len(seqs)                             # a dropped event's seq stays a visible gap
    assert gaps == dropped == int(recovered[2]) > 0        # every event not delivered is counted
    held = [p for p in rows if full_at <= unix_time(p["ts"]) < freed_at]
    assert int(recovered[1]) == 2 and len(held) >= 2        # analysed while full, committed afterwards


def test_read_only_disk_then_read_write_mid_run_commits_the_held_events(disk, stream, tmp_path):
    broker = Broker(mosquitto_binary(), tmp_path)
    broker.start()
    config = write_config(tmp_path, disk, "readonly", broker)
    journal_db = disk.where / "journal.db"
    first = run_once(config, tmp_path)
    assert first.returncode == 0, first.stderr
    before = stored(journal_db)

    disk.remount("ro")
    listed = edgeemo("events", "list", "--config", str(config), cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert [json.loads(line)["seq"] for line in listed.stdout.splitlines()] == [p["seq"] for p in before]
    sub = Subscriber(broker, "edgeemo/readonly/events")
    daemon = LiveDaemon(config, stream.url, tmp_path)
    try:
        daemon.wait_log(r"journal: (read-only file system|cannot open the file) on .*; events are held in memory")
        daemon.wait_metric("edgeemo_journal_held_events", 1)
        assert sub.payloads() == []                         # nothing goes out that the journal does not have
        disk.remount("rw")
        daemon.wait_log(r"can be written again; committed the \d+ event\(s\) held in memory \(0 dropped")
        rows, seen = deliver_all(sub, journal_db, after=before[-1]["seq"])  # run 1 delivered its own
        assert daemon.stop() == 0
    finally:
        daemon.kill()
        sub.close()
        broker.stop()
    assert "Traceback" not in daemon.log.read_text()
    run2 = rows[len(before):]
    assert rows[:len(before)] == before and run2
    assert [p["seq"] for p in run2] == list(range(before[-1]["seq"] + 1, before[-1]["seq"] + 1 + len(run2)))


def test_a_lost_journal_continues_above_the_high_water_mark(tmp_path) -> None:
    """The mark beside the journal outlives it: a fresh file numbers above every seq handed out."""
    from test_journal import event, journal_cfg, write_events
    cfg = journal_cfg(tmp_path)
    assert [p["seq"] for p in write_events(cfg, [event(1), event(2)])] == [1, 2]   # a device's first journal
    mark = tmp_path / "journal.db.seq"
    assert int(mark.read_text()) >= 2 and oct(mark.stat().st_mode & 0o777) == "0o600"
    (tmp_path / "journal.db").unlink()
    again = write_events(cfg, [event(3)])
    assert again[0]["seq"] > max(int(mark.read_text()) - 1000, time.time() * 1000 - 60_000)
    assert again[0]["track"] == 3


def test_a_damaged_journal_is_moved_aside_and_its_readable_events_imported(tmp_path, caplog) -> None:
    from test_journal import event, journal_cfg, write_events
    cfg = journal_cfg(tmp_path)
    before = write_events(cfg, [event(n % 50 + 1) for n in range(400)])
    db = tmp_path / "journal.db"
    data = bytearray(db.read_bytes())
    page = 4096
    middle = len(data) // page // 2 * page
    data[middle:middle + page] = os.urandom(page)          # one page of rows is gone
    db.write_bytes(bytes(data))
    caplog.set_level("WARNING")
    journal = Journal.open(cfg)
    try:
        kept = journal.query(limit=10**6)
        undelivered = journal.count_undelivered()
    finally:
        journal.close()
    assert len(list(tmp_path.glob("journal.db.corrupt-*[0-9]"))) == 1
    by_seq = {p["seq"]: p for p in before}
    assert 0 < len(kept) < len(before) and all(by_seq[p["seq"]] == p for p in kept)
    assert undelivered == 0                                  # write_events' rows counted as delivered
    assert f"imported {len(kept)} readable event(s)" in caplog.text
