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

import errno
import json
import logging
import os
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from edgeemo.config.schema import ConfigError, JournalConfig
from edgeemo.core.events import unix_time
from edgeemo.core.metrics import Metrics
from edgeemo.journal.storage import (HIGH_WATER_STEP, Trouble, connect_read_only, diagnose, free_bytes,
                                    read_high_water, write_high_water)

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
    """The SQLite store. Writes share one connection under a lock; each reading thread has its own.

    While the disk cannot be written (full, read-only, failing, folder gone) the writer is closed,
    `append` holds events in memory (at most `journal.memory_bound`; beyond that the oldest are
    dropped and counted) and `flush` (the upkeep, every `sync_interval_s`) tries again. Held events
    have no `seq` yet: they are numbered when committed, so no seq is ever handed out twice.
    """

    def __init__(self, path: Path, cfg: JournalConfig, metrics: Metrics | None = None,
                 read_only: bool = False) -> None:
        self.path, self.cfg, self.metrics, self.read_only = path, cfg, metrics, read_only
        self._lock = threading.RLock()
        self._local = threading.local()
        self._readers: list[sqlite3.Connection] = []
        self._generation = 0               # +1 whenever the writer reopens: readers follow it
        self._db: sqlite3.Connection | None = None
        self._verified = False
        self.held: deque[dict | None] = deque()  # None: an event that could not be built (a seq gap)
        self._gap = 0                      # held events dropped for the bound: their seqs stay a gap
        self._unmarked: list[int] = []     # delivered, but the disk would not take the mark yet
        self.problem: str | None = None    # why the journal cannot be written now; None: it can
        self.dropped = 0                   # events this run could not keep (counted in the metrics too)
        self.high_water = read_high_water(path)
        self.last_seq = self.last_track = 0

    @classmethod
    def open(cls, cfg: JournalConfig, metrics: Metrics | None = None, repair: bool = True) -> Journal:
        """Open or create the daemon's journal (`repair`), or open it read-only for a reader.

        The daemon's: a file that is not a database is moved aside, its readable rows imported and a
        fresh one started; a disk that cannot be written keeps the journal where it is and the daemon
        running, holding events in memory until it can.
        """
        path = journal_path(cfg)
        if not repair:
            return cls._reader_only(path, cfg)
        journal = cls(path, cfg, metrics)
        journal._start()
        return journal

    @classmethod
    def _reader_only(cls, path: Path, cfg: JournalConfig) -> Journal:
        journal = cls(path, cfg, read_only=True)
        try:
            db = journal._reader()
            result = db.execute("PRAGMA quick_check").fetchone()[0]
            if result != "ok":
                raise sqlite3.DatabaseError(result)
            journal.last_seq, journal.last_track = _ids(db)
        except sqlite3.Error as exc:
            journal.close()
            raise ConfigError(f"journal {path} is unreadable: {exc}") from None
        return journal

    def _start(self) -> None:
        existed = self.path.exists()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            if exc.errno not in (errno.ENOSPC, errno.EROFS, errno.EIO, errno.EDQUOT):
                raise ConfigError(f"journal.path: cannot create the folder {self.path.parent}: "
                                  f"{exc.strerror}") from None
            self._cannot_write(diagnose(exc))
            return
        try:
            self._open_writer(fresh_floor=existed)
            return
        except (OSError, sqlite3.Error) as exc:
            trouble = diagnose(exc)
        if not trouble.corrupt:
            self._cannot_write(trouble)
            self._peek()
            return
        try:
            aside = _move_aside(self.path, trouble.reason)
        except OSError as exc:
            self._cannot_write(diagnose(exc))
            return
        self._open_writer(fresh_floor=True)
        self._import(aside)

    def _peek(self) -> None:
        """The seq and track ids so far, read without writing (the disk will not take a write)."""
        try:
            db = connect_read_only(self.path)
            try:
                self.last_seq, self.last_track = _ids(db)
            finally:
                db.close()
        except sqlite3.Error:
            pass  # numbering waits for the writer: seqs are handed out only at commit

    def _open_writer(self, fresh_floor: bool = True) -> None:
        """(Re)open the writer. A journal without any seq yet starts above the high-water mark and the
        time in ms when the device has a history (`fresh_floor`, a mark, or seqs this run)."""
        self._close_writer()
        self._close_readers()  # SQLite shares a file's -shm within a process: one opened read-only poisons it
        self.path.parent.mkdir(parents=True, exist_ok=True)
        _create_private(self.path)
        if not self._verified:
            _verify(self.path)
        db = _connect(self.path, writer=True)
        try:
            own_seq, last_track = _ids(db)
            self._verified = True
            if own_seq == 0 and (fresh_floor or self.high_water or self.last_seq):
                own_seq = max(self.high_water, int(time.time() * 1000), self.last_seq)
                with db:
                    db.execute("INSERT OR REPLACE INTO meta VALUES ('seq_floor', ?)", (own_seq,))
            self.last_seq = max(own_seq, self.last_seq)
            self.last_track = max(last_track, self.last_track)
            self._reserve(self.last_seq)
        except BaseException:
            db.close()
            raise
        self._db = db

    def _close_readers(self) -> None:
        with self._lock:
            self._generation += 1
            for db in self._readers:
                db.close()
            self._readers.clear()

    def _close_writer(self) -> None:
        if self._db is not None:
            try:
                self._db.close()
            except sqlite3.Error:
                pass
            self._db = None

    def _reserve(self, seq: int) -> None:
        """Move the high-water mark ahead before `seq` goes out."""
        if seq > self.high_water:
            mark = seq + HIGH_WATER_STEP
            write_high_water(self.path, mark)
            self.high_water = mark

    def raise_seq_floor(self, floor: int) -> None:
        """Continue `seq` above `floor` (a replaced journal's numbers must not come back)."""
        with self._lock, self._writer():
            self._writer().execute("INSERT OR REPLACE INTO meta VALUES ('seq_floor', ?)", (floor,))
        self.last_seq = max(self.last_seq, floor)

    def _writer(self) -> sqlite3.Connection:
        if self._db is None:
            raise sqlite3.OperationalError(f"the journal cannot be written now ({self.problem})")
        return self._db

    def _import(self, aside: Path) -> None:
        """Take the readable rows of a moved-aside journal: its undelivered events go out first."""
        rows = salvage(aside)
        if not rows:
            log.error("journal: %s holds no readable event", aside)
            return
        with self._lock, self._writer() as db:
            db.executemany("INSERT OR IGNORE INTO events VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
            self.last_track = max(self.last_track, *(r[4] for r in rows))
            db.execute("INSERT OR REPLACE INTO meta VALUES ('last_track', ?)", (self.last_track,))
        undelivered = sum(1 for r in rows if r[8] is None)
        log.warning("journal: imported %d readable event(s) from %s (%d undelivered: they are delivered first)",
                    len(rows), aside, undelivered)

    # -- writing (the writer's thread, under its lock; the upkeep's for `flush`)

    def append(self, payloads: list[dict | None], delivered: bool = False) -> list[dict]:
        """Number and commit payloads (None: an event that could not be built; its seq stays a gap) in
        one transaction; returns what was committed, in seq order: these, after any held before them.

        `delivered`: no sender will deliver them (no MQTT configured), so they count as delivered.
        When the disk cannot be written, they are held in memory and [] is returned.
        """
        with self._lock:
            self.held.extend(payloads)
            if self.problem is not None:  # the upkeep retries; until then, hold
                self._bound()
                return []
            return self.flush(delivered)

    def flush(self, delivered: bool = False) -> list[dict]:
        """Commit the events held in memory, if the disk takes them now; returns what was committed."""
        with self._lock:
            if self.read_only or (not self.held and self.problem is None):
                return []
            try:
                if self._db is None:
                    self._open_writer()
                committed = self._insert(list(self.held), delivered)
            except Exception as exc:  # noqa: BLE001 - whatever it is, the events wait in memory, counted
                self._close_writer()
                self._cannot_write(diagnose(exc))
                self._bound()
                return []
            held = len(self.held)
            self.held.clear()
            self._gap = 0
            if self.problem is not None:
                log.warning("journal: %s can be written again; committed the %d event(s) held in memory "
                            "(%d dropped while it could not)", self.path, held, self.dropped)
                self.problem = None
            return committed

    def _insert(self, items: list[dict | None], delivered: bool) -> list[dict]:
        db = self._writer()
        seq = self.last_seq + self._gap
        now = time.time()
        rows, payloads = [], []
        for p in items:
            seq += 1
            if p is None:
                continue
            p["seq"] = seq
            payloads.append(p)
            rows.append((seq, unix_time(p["ts"]), p["source"], p["modality"], p["track"], p["type"], p["emotion"],
                         json.dumps(p, separators=(",", ":")), now if delivered else None))
        last_track = max(self.last_track, *(p["track"] for p in payloads)) if payloads else self.last_track
        self._reserve(seq)
        with db:
            db.executemany("INSERT INTO events VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
            if last_track > self.last_track:
                db.execute("INSERT OR REPLACE INTO meta VALUES ('last_track', ?)", (last_track,))
        self.last_seq, self.last_track = seq, last_track
        return payloads

    def _cannot_write(self, trouble: Trouble) -> None:
        """Say so once per kind of trouble; the events wait in memory."""
        if self.problem != trouble.reason:
            free = free_bytes(self.path)
            log.error("journal: %s on %s (%s bytes free); events are held in memory (bound %d) and counted",
                      trouble.reason, self.path.parent, "?" if free is None else free, self.cfg.memory_bound)
        self.problem = trouble.reason

    def _bound(self) -> None:
        """Beyond `journal.memory_bound`, drop the oldest held events, counted (their seqs stay a gap)."""
        while len(self.held) > self.cfg.memory_bound:
            if self.held.popleft() is not None:
                self._lost(1)
            self._gap += 1

    def _lost(self, count: int) -> None:
        if self.dropped == 0:
            log.warning("journal: more than %d event(s) waiting for the disk: dropping the oldest, counted in "
                        "edgeemo_events_dropped_total{reason=\"storage\"}", self.cfg.memory_bound)
        self.dropped += count
        if self.metrics is not None:
            self.metrics.events_dropped.labels(reason="storage").inc(count)

    def mark_delivered(self, seqs: list[int]) -> None:
        """Record deliveries; while the disk refuses, they are kept and recorded with the next ones."""
        pending = self._unmarked + seqs
        if not pending:
            return
        now = time.time()
        try:
            with self._lock, self._writer() as db:
                db.executemany("UPDATE events SET delivered_at = ? WHERE seq = ?", [(now, s) for s in pending])
        except (OSError, sqlite3.Error):
            self._unmarked = pending  # sent already; the sender's cursor is past them, nothing goes twice
            return
        self._unmarked = []
        if self.metrics is not None and seqs:
            for (ts,) in self._reader().execute(
                    f"SELECT ts FROM events WHERE seq IN ({','.join('?' * len(seqs))})", seqs):
                self.metrics.delivery_lag.observe(max(0.0, now - ts))

    def status(self) -> str:
        """One line for `STATUS=` and people: empty while all is well."""
        if self.problem is None and not self.dropped:
            return ""
        state = "writable again" if self.problem is None else self.problem
        return f"journal: {state}, {len(self.held)} event(s) held in memory, {self.dropped} dropped"

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
        """This thread's connection, reopened after the writer was (the file may be a new one)."""
        db = getattr(self._local, "db", None)
        if db is not None and self._local.generation == self._generation:
            return db
        if db is not None:
            with self._lock:
                if db in self._readers:
                    self._readers.remove(db)
            db.close()
        try:
            db = connect_read_only(self.path) if self.read_only else _connect(self.path)
            db.execute("SELECT count(*) FROM sqlite_master").fetchone()  # opens the -wal and -shm now
        except sqlite3.OperationalError:  # a read-only disk without a -shm: read the file as it is
            db = connect_read_only(self.path)
        self._local.db, self._local.generation = db, self._generation
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
        if self._db is None:  # the disk cannot be written: nothing to prune with
            return 0
        cutoff = time.time() - self.cfg.retention_days * 86400
        if self._reader().execute("SELECT 1 FROM events WHERE ts < ? LIMIT 1", (cutoff,)).fetchone():
            with self._lock, self._writer() as db:
                db.execute("DELETE FROM events WHERE delivered_at IS NOT NULL AND ts < ?", (cutoff,))
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
                self._writer().executescript("PRAGMA incremental_vacuum;")  # execute() frees one page a call
        return dropped

    def _delete_oldest(self, condition: str) -> int:
        with self._lock, self._writer() as db:
            return db.execute(f"DELETE FROM events WHERE seq IN (SELECT seq FROM events WHERE {condition} "
                                    f"ORDER BY seq LIMIT {PRUNE_CHUNK})").rowcount

    def close(self) -> None:
        """Commit what is held if the disk takes it now; what it will not take is lost, and said so."""
        with self._lock:
            self.flush()
            if self.held:
                lost = sum(1 for p in self.held if p is not None)
                log.error("journal: %d event(s) held in memory could not be written to %s (%s) and are lost",
                          lost, self.path, self.problem)
                self._lost(lost)
                self.held.clear()
            self._close_readers()
            self._close_writer()


def _ids(db: sqlite3.Connection) -> tuple[int, int]:
    """(last seq, last track id) as the file records them: the sequence or the floor set for a fresh file."""
    row = db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'events'").fetchone()
    meta = dict(db.execute("SELECT key, value FROM meta WHERE key IN ('seq_floor', 'last_track')").fetchall())
    return max(row[0] if row else 0, int(meta.get("seq_floor", 0))), int(meta.get("last_track", 0))


def salvage(path: Path) -> list[tuple]:
    """The rows of a damaged journal that can still be read: forwards, then backwards, up to the damage."""
    columns = "seq, ts, source, modality, track, type, emotion, payload, delivered_at"
    found: dict[int, tuple] = {}
    try:
        db = connect_read_only(path)
    except sqlite3.Error:
        return []
    try:
        for order in ("ASC", "DESC"):
            try:
                for row in db.execute(f"SELECT {columns} FROM events ORDER BY seq {order}"):
                    found.setdefault(row[0], row)
            except sqlite3.Error:
                continue  # the damage: read the other way up to it
    finally:
        db.close()
    return [found[seq] for seq in sorted(found)]


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


def _move_aside(path: Path, reason: str) -> Path:
    """Rename a corrupt journal (and its WAL) out of the way; returns where it went."""
    stamp = time.strftime("%Y%m%dT%H%M%S")
    aside = path.with_name(f"{path.name}.corrupt-{stamp}")
    for suffix in ("", "-wal", "-shm"):
        part = Path(f"{path}{suffix}")
        if part.exists():
            part.rename(Path(f"{aside}{suffix}"))
    log.error("journal %s is not a database (%s); moved it to %s and started a fresh journal", path, reason, aside)
    return aside
