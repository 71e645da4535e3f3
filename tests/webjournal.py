"""A small real SQLite journal with `Journal.query`'s signature, for the web tests until the lead's
edgeemo.journal.store is merged (then the tests switch to it and this file goes)."""

from __future__ import annotations

import json
import sqlite3
import threading
from datetime import datetime
from pathlib import Path

from edgeemo import LABELS
from edgeemo.journal.payload import iso_utc


def unix(ts: str) -> float:
    return datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()


class SqliteJournal:
    def __init__(self, path: Path) -> None:
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("CREATE TABLE IF NOT EXISTS events (seq INTEGER PRIMARY KEY, t REAL, source TEXT, "
                         "modality TEXT, track INTEGER, payload TEXT)")
        self._lock = threading.Lock()
        self.seq = 0

    def append(self, *payloads: dict) -> None:
        with self._lock, self._db:
            self._db.execute("BEGIN")
            self._db.executemany("INSERT INTO events VALUES (?, ?, ?, ?, ?, ?)", [
                (p["seq"], unix(p["ts"]), p["source"], p["modality"], p["track"], json.dumps(p)) for p in payloads])

    def query(self, since=None, until=None, source=None, modality=None, track=None, after_seq=0, limit=1000):
        sql, args = "SELECT payload FROM events WHERE seq > ?", [after_seq]
        for column, op, value in (("t", ">=", since), ("t", "<", until), ("source", "=", source),
                                  ("modality", "=", modality), ("track", "=", track)):
            if value is not None:
                sql += f" AND {column} {op} ?"
                args.append(value)
        with self._lock:
            rows = self._db.execute(sql + " ORDER BY seq LIMIT ?", [*args, limit]).fetchall()
        return [json.loads(r[0]) for r in rows]

    def close(self) -> None:
        self._db.close()


def make_event(seq: int, t: float, emotion: str = "happy", track: int = 1, modality: str = "face",
               source: str = "default", kind: str = "update") -> dict:
    probs = {label: 0.02 for label in LABELS}
    probs[emotion] = round(1 - 0.02 * (len(LABELS) - 1), 4)
    return {"v": 1, "seq": seq, "ts": iso_utc(t), "device": "edgeemo", "source": source, "pts": float(seq),
            "type": kind, "track": track, "modality": modality, "emotion": emotion, "confidence": probs[emotion],
            "probs": probs, "box": None if modality == "voice" else [10, 20, 100, 100]}
