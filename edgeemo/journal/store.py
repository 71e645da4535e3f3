"""The event journal: every event, on disk, before any sink sees it.

One SQLite file in WAL mode is at once the local log of detections, the MQTT outbox and the
dashboard's history. A row is one schema-v1 payload plus the columns its readers filter on; its
``seq`` is the payload's ``seq``, unique for the life of the file (AUTOINCREMENT never hands out a
number twice, even after the oldest rows are deleted).

Durability: each `append` is one transaction. A committed row survives the process being killed.
Commits do not wait for the disk (``synchronous=NORMAL``); `sync` (called every
``journal.sync_interval_s``) checkpoints the WAL, which flushes it, so a power cut loses at most the
events of that interval.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from edgeemo.config.schema import ConfigError, JournalConfig
from edgeemo.core.events import unix_time
from edgeemo.core.metrics import Metrics

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,  -- the payload's seq: per device, never reused
    ts REAL NOT NULL,                       -- Unix time of the payload's ts
    source TEXT NOT NULL,
    modality TEXT NOT NULL,                 -- face | voice | fused
    track INTEGER NOT NULL,
    type TEXT NOT NULL,                     -- start | change | update | end
    emotion TEXT NOT NULL,
    payload TEXT NOT NULL,                  -- the schema-v1 JSON, exactly as sent
    delivered_at REAL                       -- NULL until the MQTT sender has it acknowledged
);
CREATE INDEX IF NOT EXISTS events_ts ON events (ts);
CREATE INDEX IF NOT EXISTS events_track ON events (source, track);
CREATE INDEX IF NOT EXISTS events_undelivered ON events (seq) WHERE delivered_at IS NULL;
"""
PRUNE_CHUNK = 100  # rows per delete when over the bound: drop no more than needed


@dataclass(frozen=True, slots=True)
class Row:
    seq: int
    ts: float
    payload: str


def journal_path(cfg: JournalConfig) -> Path:
    """`journal.path`, else systemd's StateDirectory=, else the user's data directory (XDG)."""
    if cfg.path is not None:
        return Path(cfg.path).expanduser()
    state = os.environ.get("STATE_DIRECTORY")
    if state:
        return Path(state.split(":")[0]) / "journal.db"
    data = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(data) / "edgeemo" / "journal.db"


class Journal:
    """The SQLite store. Writes share one connection under a lock; each reading thread has its own."""

    def __init__(self, path: Path, cfg: JournalConfig, metrics: Metrics | None = None) -> None:
        self.path, self.cfg, self.metrics = path, cfg, metrics
        self._lock = threading.Lock()
        self._local = threading.local()
        self._readers: list[sqlite3.Connection] = []
        self._db = _connect(path, writer=True)
        self.last_seq, self.last_track = self._ids()

    @classmethod
    def open(cls, cfg: JournalConfig, metrics: Metrics | None = None, repair: bool = True) -> Journal:
        """Open or create the journal. One that cannot be opened or is corrupt is moved aside and a
        fresh one started (`repair`), so a bad file never becomes a restart loop."""
        path = journal_path(cfg)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"journal.path: cannot create the folder {path.parent}: {exc.strerror}") from None
        try:
            _create_private(path)
            _verify(path)
            return cls(path, cfg, metrics)
        except (OSError, sqlite3.DatabaseError) as exc:
            if not repair:
                raise ConfigError(f"journal {path} is unreadable: {exc}") from None
            problem = exc
        try:
            floor = _move_aside(path, problem)
            _create_private(path)
        except OSError as exc:
            raise ConfigError(f"journal {path} is unusable ({problem}) and cannot be moved aside: "
                              f"{exc.strerror}") from None
        journal = cls(path, cfg, metrics)
        journal.raise_seq_floor(floor)
        return journal

    def _ids(self) -> tuple[int, int]:
        row = self._db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'events'").fetchone()
        floor = self._meta("seq_floor")
        return max(row[0] if row else 0, floor), self._meta("last_track")

    def _meta(self, key: str) -> int:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return int(row[0]) if row else 0

    def raise_seq_floor(self, floor: int) -> None:
        """Continue `seq` above `floor` (a replaced journal's numbers must not come back)."""
        with self._lock, self._db:
            self._db.execute("INSERT OR REPLACE INTO meta VALUES ('seq_floor', ?)", (floor,))
        self.last_seq = max(self.last_seq, floor)

    # -- writing (the dispatcher's thread, under its lock)

    def append(self, payloads: list[dict], delivered: bool = False) -> None:
        """Commit payloads (their `seq` already set, increasing) in one transaction.

        `delivered`: no sender will deliver them (no MQTT configured), so they count as delivered.
        """
        if not payloads:
            return
        now = time.time()
        rows = [(p["seq"], unix_time(p["ts"]), p["source"], p["modality"], p["track"], p["type"], p["emotion"],
                 json.dumps(p, separators=(",", ":")), now if delivered else None) for p in payloads]
        last_track = max(self.last_track, *(p["track"] for p in payloads))
        with self._lock, self._db:
            self._db.executemany("INSERT INTO events VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
            if last_track > self.last_track:
                self._db.execute("INSERT OR REPLACE INTO meta VALUES ('last_track', ?)", (last_track,))
        self.last_seq = max(self.last_seq, payloads[-1]["seq"])
        self.last_track = last_track

    def mark_delivered(self, seqs: list[int]) -> None:
        if not seqs:
            return
        now = time.time()
        with self._lock, self._db:
            self._db.executemany("UPDATE events SET delivered_at = ? WHERE seq = ?", [(now, s) for s in seqs])
        if self.metrics is not None:
            for (ts,) in self._reader().execute(
                    f"SELECT ts FROM events WHERE seq IN ({','.join('?' * len(seqs))})", seqs):
                self.metrics.delivery_lag.observe(max(0.0, now - ts))

    # -- reading (any thread)

    def undelivered(self, after_seq: int, limit: int) -> list[Row]:
        """The oldest rows not yet delivered, above `after_seq`, in seq order."""
        return [Row(*r) for r in self._reader().execute(
            "SELECT seq, ts, payload FROM events WHERE delivered_at IS NULL AND seq > ? ORDER BY seq LIMIT ?",
            (after_seq, limit))]

    def count_undelivered(self) -> int:
        return self._reader().execute("SELECT count(*) FROM events WHERE delivered_at IS NULL").fetchone()[0]

    def query(self, since: float | None = None, until: float | None = None, source: str | None = None,
              modality: str | None = None, track: int | None = None, after_seq: int = 0,
              limit: int = 1000) -> list[dict]:
        """Schema-v1 payloads, oldest first; `since` <= ts < `until` in Unix seconds."""
        return [json.loads(text) for text in self.iter_payloads(since, until, source, modality, track,
                                                                 after_seq, limit)]

    def iter_payloads(self, since: float | None = None, until: float | None = None, source: str | None = None,
                      modality: str | None = None, track: int | None = None, after_seq: int = 0,
                      limit: int | None = None) -> Iterator[str]:
        """The JSON text of matching payloads, oldest first, read lazily (exports of any size)."""
        where, args = ["seq > ?"], [after_seq]
        for clause, value in (("ts >= ?", since), ("ts < ?", until), ("source = ?", source),
                              ("modality = ?", modality), ("track = ?", track)):
            if value is not None:
                where.append(clause)
                args.append(value)
        sql = f"SELECT payload FROM events WHERE {' AND '.join(where)} ORDER BY seq"
        if limit is not None:
            sql += " LIMIT ?"
            args.append(limit)
        for (text,) in self._reader().execute(sql, args):
            yield text

    def used_bytes(self) -> int:
        db = self._reader()
        pages = db.execute("PRAGMA page_count").fetchone()[0] - db.execute("PRAGMA freelist_count").fetchone()[0]
        return pages * db.execute("PRAGMA page_size").fetchone()[0]

    def _reader(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            db = self._local.db = _connect(self.path)
            with self._lock:
                self._readers.append(db)
        return db

    # -- upkeep (the upkeep thread)

    def sync(self) -> None:
        """Flush the WAL to disk: what a power cut can lose ends here.

        On this thread's own connection: a passive checkpoint never holds up the writer.
        """
        self._reader().execute("PRAGMA wal_checkpoint(PASSIVE)")

    def prune(self) -> int:
        """Apply retention and the size bound; returns how many undelivered events had to be dropped."""
        cutoff = time.time() - self.cfg.retention_days * 86400
        if self._reader().execute("SELECT 1 FROM events WHERE ts < ? LIMIT 1", (cutoff,)).fetchone():
            with self._lock, self._db:
                self._db.execute("DELETE FROM events WHERE delivered_at IS NOT NULL AND ts < ?", (cutoff,))
        dropped = 0
        while self.used_bytes() > self.cfg.max_bytes:
            if self._delete_oldest("delivered_at IS NOT NULL"):
                continue
            lost = self._delete_oldest("delivered_at IS NULL")
            if not lost:
                break
            dropped += lost
        if self._reader().execute("PRAGMA freelist_count").fetchone()[0]:
            with self._lock:
                self._db.executescript("PRAGMA incremental_vacuum;")  # execute() frees one page a call
        return dropped

    def _delete_oldest(self, condition: str) -> int:
        with self._lock, self._db:
            return self._db.execute(f"DELETE FROM events WHERE seq IN (SELECT seq FROM events WHERE {condition} "
                                    f"ORDER BY seq LIMIT {PRUNE_CHUNK})").rowcount

    def close(self) -> None:
        with self._lock:
            for db in self._readers:
                db.close()
            self._readers.clear()
            self._db.close()


def _create_private(path: Path) -> None:
    """Create the file readable by its owner only: it holds people's emotions."""
    fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o600)
    try:
        os.fchmod(fd, 0o600)
    finally:
        os.close(fd)


def _connect(path: Path, writer: bool = False) -> sqlite3.Connection:
    """A connection; the writer's also sets the file up (readers must never take the write lock)."""
    db = sqlite3.connect(path, check_same_thread=False, isolation_level="DEFERRED", timeout=10)
    if writer:
        db.execute("PRAGMA auto_vacuum = INCREMENTAL")  # takes effect on a new file only
        db.execute("PRAGMA journal_mode = WAL")
        db.execute("PRAGMA journal_size_limit = 4000000")
        with db:
            db.executescript(SCHEMA)
            db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    db.execute("PRAGMA synchronous = NORMAL")
    return db


def _verify(path: Path) -> None:
    """Raise sqlite3.DatabaseError when the file is not a sound journal."""
    db = sqlite3.connect(path)
    try:
        result = db.execute("PRAGMA quick_check").fetchone()[0]
        if result != "ok":
            raise sqlite3.DatabaseError(result)
        version = db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise sqlite3.DatabaseError(f"schema version {version} is newer than this edgeemo's {SCHEMA_VERSION}")
    finally:
        db.close()


def _move_aside(path: Path, exc: Exception) -> int:
    """Rename a corrupt journal (and its WAL) out of the way; returns the seq floor for the new one.

    Its last seq cannot be trusted, so the fresh journal numbers from the time in milliseconds:
    above any seq a journal at that path can have handed out, unless the clock went back.
    """
    stamp = time.strftime("%Y%m%dT%H%M%S")
    aside = path.with_name(f"{path.name}.corrupt-{stamp}")
    for suffix in ("", "-wal", "-shm"):
        part = Path(f"{path}{suffix}")
        if part.exists():
            part.rename(Path(f"{aside}{suffix}"))
    log.error("journal %s is unreadable (%s); moved it to %s and started a fresh journal", path, exc, aside)
    return int(time.time() * 1000)
