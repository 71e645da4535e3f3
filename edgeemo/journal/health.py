"""`edgeemo check`'s look at the journal: can its disk take writes, and is the file a database?"""

from __future__ import annotations

import os
import sqlite3

from edgeemo.config.schema import JournalConfig
from edgeemo.journal.storage import connect_read_only, diagnose, free_bytes, nearest_folder, read_only_fs
from edgeemo.journal.store import journal_path

LOW_FREE_BYTES = 256 * 1024  # below this SQLite cannot grow the journal by much


def check_journal(cfg: JournalConfig) -> str:
    """One line; raises RuntimeError with the problem in plain words."""
    path = journal_path(cfg)
    free = free_bytes(path)
    held = f"the daemon would hold events in memory (journal.memory_bound = {cfg.memory_bound}) until it can write"
    if read_only_fs(path):
        raise RuntimeError(f"read-only file system under {path.parent}: {held}")
    if free is not None and free < LOW_FREE_BYTES:
        raise RuntimeError(f"disk full on {path.parent} ({free} bytes free): {held}")
    if not path.exists():
        folder = nearest_folder(path)
        if not folder.is_dir() or not os.access(folder, os.W_OK | os.X_OK):
            raise RuntimeError(f"journal.path: cannot create {path}: {folder} is not a writable folder")
        return f"{path} will be created ({free} bytes free)"
    if not os.access(path, os.R_OK | os.W_OK):
        raise RuntimeError(f"journal.path: {path} is not writable by this user")
    try:
        db = connect_read_only(path)
        try:
            total, undelivered = db.execute(
                "SELECT count(*), count(*) - count(delivered_at) FROM events").fetchone()
        finally:
            db.close()
    except sqlite3.Error as exc:
        if diagnose(exc).corrupt:
            raise RuntimeError(f"{path} is not a database ({exc}): the daemon will move it aside and import "
                               "its readable events") from None
        raise RuntimeError(f"{path}: {diagnose(exc).reason}") from None
    return f"{path}: {total} events, {undelivered} undelivered, {free} bytes free"
