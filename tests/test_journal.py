"""The event journal on a real SQLite file: identity, queries, bounds, corruption, `edgeemo events`."""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from edgeemo.config.schema import Config, ConfigError, EventLogConfig, JournalConfig, MqttConfig
from edgeemo.cli.events import parse_time
from edgeemo.journal.writer import EventWriter
from edgeemo.service.event_path import open_event_path
from edgeemo.journal.store import Journal, journal_path
from edgeemo.core.metrics import Metrics
from edgeemo.core.types import TrackEvent

from testkit.net import free_port

REPO = Path(__file__).resolve().parents[1]


def event(track: int = 1, kind: str = "start", source: str = "cam", modality: str = "face") -> TrackEvent:
    probs = np.full(7, 0.05, np.float32)
    probs[track % 7] = 0.7
    return TrackEvent(type=kind, track=track, source=source, pts=1.0, probs=probs,
                      box=None if modality == "voice" else (1, 2, 30, 40), modality=modality)


def journal_cfg(tmp_path: Path, **kw: object) -> JournalConfig:
    return JournalConfig(path=tmp_path / "journal.db", **kw)


def write_events(cfg: JournalConfig, events: list[TrackEvent]) -> list[dict]:
    journal = Journal.open(cfg)
    writer = EventWriter(journal, "dev")
    writer.handle(events)
    rows = journal.query(limit=10**6)
    journal.close()
    return rows


def test_seq_and_track_ids_continue_across_reopen(tmp_path) -> None:
    cfg = journal_cfg(tmp_path)
    first = write_events(cfg, [event(1), event(2), event(1, "end")])
    assert [p["seq"] for p in first] == [1, 2, 3]
    journal = Journal.open(cfg)
    writer = EventWriter(journal, "dev")
    assert writer.next_track_id == 3          # the pipeline's ids start above every id seen
    writer.handle([event(3)])
    assert [p["seq"] for p in journal.query()] == [1, 2, 3, 4]
    journal.close()


def test_seq_is_never_reused_after_the_oldest_rows_are_dropped(tmp_path) -> None:
    cfg = journal_cfg(tmp_path)
    write_events(cfg, [event(1), event(2)])
    journal = Journal.open(cfg)
    with journal._db:
        journal._db.execute("DELETE FROM events")  # as retention would
    journal.close()
    assert [p["seq"] for p in write_events(cfg, [event(3)])] == [3]


def test_queries_filter_by_time_source_modality_and_track(tmp_path) -> None:
    cfg = journal_cfg(tmp_path)
    write_events(cfg, [event(1, source="hall"), event(2, source="door"), event(5, modality="voice")])
    journal = Journal.open(cfg)
    try:
        assert [p["track"] for p in journal.query(source="door")] == [2]
        assert [p["track"] for p in journal.query(modality="voice")] == [5]
        assert [p["source"] for p in journal.query(track=1)] == ["hall"]
        assert [p["seq"] for p in journal.query(after_seq=1, limit=1)] == [2]
        assert journal.query(since=time.time() + 60) == []
        assert len(journal.query(since=time.time() - 60, until=time.time() + 1)) == 3
    finally:
        journal.close()


def test_journal_files_are_private(tmp_path) -> None:
    cfg = journal_cfg(tmp_path / "new" / "folder")
    journal = Journal.open(cfg)
    EventWriter(journal, "dev").handle([event()])
    for name in ("journal.db", "journal.db-wal"):
        path = tmp_path / "new" / "folder" / name
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, name
    journal.close()


def test_default_location_follows_systemd_then_xdg(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("STATE_DIRECTORY", f"{tmp_path}/state:/other")
    assert journal_path(JournalConfig()) == tmp_path / "state" / "journal.db"
    monkeypatch.delenv("STATE_DIRECTORY")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert journal_path(JournalConfig()) == tmp_path / "xdg" / "edgeemo" / "journal.db"


def test_corrupt_journal_is_moved_aside_and_seq_continues_above_it(tmp_path, caplog) -> None:
    cfg = journal_cfg(tmp_path)
    (tmp_path / "journal.db").write_bytes(os.urandom(8192))
    caplog.set_level(logging.ERROR)
    rows = write_events(cfg, [event()])
    aside = list(tmp_path.glob("journal.db.corrupt-*"))
    assert len(aside) == 1 and "moved it to" in caplog.text and str(aside[0]) in caplog.text
    assert rows[0]["seq"] > time.time() * 1000 - 60_000  # above any seq the lost file can have held


def test_a_journal_that_cannot_be_opened_is_moved_aside_too(tmp_path) -> None:
    (tmp_path / "journal.db").mkdir()  # not a file at all
    assert [p["seq"] for p in write_events(journal_cfg(tmp_path), [event()])][0] > 1
    assert (tmp_path / "journal.db").is_file() and len(list(tmp_path.glob("journal.db.corrupt-*"))) == 1


def test_a_journal_folder_that_cannot_exist_is_a_config_error(tmp_path) -> None:
    (tmp_path / "file").write_text("")
    with pytest.raises(ConfigError, match="journal.path: cannot create the folder"):
        Journal.open(JournalConfig(path=tmp_path / "file" / "journal.db"))


def test_a_reader_never_moves_the_daemons_journal_aside(tmp_path) -> None:
    (tmp_path / "journal.db").write_bytes(b"not a database" * 100)
    with pytest.raises(ConfigError, match="unreadable"):
        Journal.open(journal_cfg(tmp_path), repair=False)
    assert not list(tmp_path.glob("journal.db.corrupt-*"))


def test_retention_deletes_only_delivered_rows(tmp_path) -> None:
    journal = Journal.open(journal_cfg(tmp_path, retention_days=1))
    writer = EventWriter(journal, "dev", delivered=False)
    writer.handle([event(1), event(2), event(3)])
    journal.mark_delivered([1, 2])
    with journal._db:
        journal._db.execute("UPDATE events SET ts = ts - 2 * 86400 WHERE seq IN (1, 3)")
    assert journal.prune() == 0
    assert [p["seq"] for p in journal.query()] == [2, 3]  # 1: delivered and old; 3: old but undelivered
    journal.close()


def test_full_journal_during_an_outage_drops_the_oldest_and_counts_them(tmp_path, caplog) -> None:
    """A broker that never answers, events flowing: the bound holds and every drop is counted."""
    metrics = Metrics(["cam"], "onnxruntime")
    cfg = Config(device_id="full", mqtt=MqttConfig(url=f"mqtt://127.0.0.1:{free_port()}"),
                 journal=journal_cfg(tmp_path, max_bytes=100_000),
                 event_log=EventLogConfig(path=tmp_path / "events.jsonl", stdout=False))
    path = open_event_path(cfg, metrics)
    path.mqtt.start()  # the upkeep thread stays off: the test ticks it once, at the end
    caplog.set_level(logging.WARNING)
    for n in range(1, 601):
        path.writer.handle([event(n)])
    path.upkeep.tick()
    kept = path.journal.query(limit=10**6)
    assert path.journal.used_bytes() <= cfg.journal.max_bytes
    assert (tmp_path / "journal.db").stat().st_size <= cfg.journal.max_bytes  # the file shrinks too
    dropped = 600 - len(kept)
    assert dropped > 0 and kept[-1]["seq"] == 600                  # the newest stay
    assert [p["seq"] for p in kept] == list(range(dropped + 1, 601))  # the oldest went, in order
    assert metrics.registry.get_sample_value("edgeemo_events_dropped_total", {"reason": "journal_full"}) == dropped
    assert metrics.registry.get_sample_value("edgeemo_journal_undelivered_events") == len(kept)
    assert f"dropped the {dropped} oldest undelivered" in caplog.text
    path.stop()


def test_parse_time_takes_iso_and_ages() -> None:
    assert parse_time("10m", "--since", now=1000.0) == 400.0
    assert parse_time("2026-12-01T00:00:00Z", "--since") == 1796083200.0
    with pytest.raises(ConfigError, match="--until 'soon'"):
        parse_time("soon", "--until")


def edgeemo(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edgeemo.cli", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=60, env={**os.environ, "PYTHONPATH": str(REPO)})


def test_events_list_and_export_read_the_journal(tmp_path) -> None:
    cfg = journal_cfg(tmp_path)
    write_events(cfg, [event(1), event(2, source="door"), event(3, modality="voice")])
    config = tmp_path / "edgeemo.yaml"
    config.write_text(f"journal:\n  path: {cfg.path}\n")

    listed = edgeemo("events", "list", "--config", str(config), "--source", "door", cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert [json.loads(line)["track"] for line in listed.stdout.splitlines()] == [2]

    out = tmp_path / "export.csv"
    exported = edgeemo("events", "export", "--config", str(config), "--format", "csv", "--out", str(out),
                       "--since", "1h", cwd=tmp_path)
    assert exported.returncode == 0, exported.stderr
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    assert [int(r["seq"]) for r in rows] == [1, 2, 3] and rows[2]["box"] == "" and rows[2]["modality"] == "voice"
    assert stat.S_IMODE(out.stat().st_mode) == 0o600


@pytest.mark.parametrize("since, first", [([], 3), (["--since", "1h"], 1)])
def test_events_follow_prints_new_events_as_they_are_committed(tmp_path, since, first) -> None:
    """From the end of the journal (30 days of it would scroll by first), or from --since."""
    cfg = journal_cfg(tmp_path)
    write_events(cfg, [event(1), event(2)])
    config = tmp_path / "edgeemo.yaml"
    config.write_text(f"journal:\n  path: {cfg.path}\n")
    follower = subprocess.Popen([sys.executable, "-m", "edgeemo.cli", "events", "follow", "--config", str(config),
                                 *since], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        assert "following " in follower.stderr.readline()  # ready: it knows where the journal ends
        write_events(cfg, [event(3)])
        seqs = [json.loads(follower.stdout.readline())["seq"] for _ in range(4 - first)]
        assert seqs == list(range(first, 4))
    finally:
        follower.terminate()
        follower.wait(10)


@pytest.mark.parametrize("args, message", [
    (["events", "list"], "no journal at"),
    (["events", "list", "--since", "tomorrow"], "--since 'tomorrow'"),
])
def test_events_bad_input_is_one_line_and_exit_2(tmp_path, args, message) -> None:
    if "--since" in args:
        write_events(journal_cfg(tmp_path), [event()])
        args = [*args, "--config", str(tmp_path / "c.yaml")]
        (tmp_path / "c.yaml").write_text(f"journal:\n  path: {tmp_path / 'journal.db'}\n")
    result = edgeemo(*args, cwd=tmp_path)
    assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr
