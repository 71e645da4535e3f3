"""What the disk under the journal is doing: a full or read-only disk is not a corrupt journal.

SQLite says which it is (``sqlite_errorcode``); so does the OS (``errno``). Only a file SQLite calls
malformed or not a database is moved aside; anything else means "cannot write now", and the
journal waits for the disk with the events in memory.

The high-water mark is a small file beside the journal: a seq no event has gone above. It is
written ahead (``HIGH_WATER_STEP`` at a time) and atomically, so a journal that has to start
afresh numbers above every seq the device has handed out, even when the clock went back.
"""

from __future__ import annotations

import errno
import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

HIGH_WATER_STEP = 1000   # seqs reserved per write of the mark: one fsync per so many events

CORRUPT_SQLITE = {sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB}
CANNOT_WRITE_SQLITE = {sqlite3.SQLITE_FULL: "disk full", sqlite3.SQLITE_READONLY: "read-only file system",
                       sqlite3.SQLITE_IOERR: "I/O error", sqlite3.SQLITE_CANTOPEN: "cannot open the file",
                       sqlite3.SQLITE_PERM: "permission denied", sqlite3.SQLITE_BUSY: "locked by another process",
                       sqlite3.SQLITE_LOCKED: "locked by another process"}
CANNOT_WRITE_ERRNO = {errno.ENOSPC: "disk full", errno.EDQUOT: "disk quota exceeded",
                      errno.EROFS: "read-only file system", errno.EIO: "I/O error", errno.ENOENT: "folder removed",
                      errno.EACCES: "permission denied", errno.EPERM: "permission denied"}


@dataclass(frozen=True, slots=True)
class Trouble:
    corrupt: bool   # True: not a database, move it aside; False: cannot write now, wait
    reason: str     # "disk full", "read-only file system", ... for people


def diagnose(exc: BaseException) -> Trouble:
    """Corrupt or only unwritable? Anything unknown counts as "cannot write now": nothing is moved aside."""
    if isinstance(exc, sqlite3.Error):
        code = getattr(exc, "sqlite_errorcode", None)
        if code is None:  # raised by edgeemo itself (quick_check said no, or a newer schema)
            return Trouble(isinstance(exc, sqlite3.DatabaseError) and not isinstance(exc, sqlite3.OperationalError),
                           str(exc))
        if code & 0xFF in CORRUPT_SQLITE:
            return Trouble(True, str(exc))
        if code == sqlite3.SQLITE_READONLY_DBMOVED:
            return Trouble(False, "journal file removed")
        return Trouble(False, CANNOT_WRITE_SQLITE.get(code & 0xFF, str(exc)))
    if isinstance(exc, OSError):
        if exc.errno in (errno.EISDIR, errno.ENOTDIR):  # a folder where the file should be
            return Trouble(True, exc.strerror or str(exc))
        return Trouble(False, CANNOT_WRITE_ERRNO.get(exc.errno, exc.strerror or str(exc)))
    return Trouble(False, f"{type(exc).__name__}: {exc}")


def nearest_folder(path: Path) -> Path:
    """The journal's folder, or the closest one above it that still exists (the folder may be gone)."""
    folder = path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return folder


def free_bytes(path: Path) -> int | None:
    try:
        st = os.statvfs(nearest_folder(path))
    except OSError:
        return None
    return st.f_bavail * st.f_frsize


def read_only_fs(path: Path) -> bool:
    try:
        return bool(os.statvfs(nearest_folder(path)).f_flag & os.ST_RDONLY)
    except OSError:
        return False


def high_water_path(journal: Path) -> Path:
    return journal.with_name(f"{journal.name}.seq")


def read_high_water(journal: Path) -> int:
    try:
        return int(high_water_path(journal).read_text().strip() or 0)
    except (OSError, ValueError):
        return 0


def write_high_water(journal: Path, value: int) -> None:
    """Temp file, fsync, rename, fsync the folder: the mark is the old one or the new one, never half."""
    target = high_water_path(journal)
    temp = target.with_name(f".{target.name}.tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, f"{value}\n".encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(temp, target)
    folder = os.open(target.parent, os.O_RDONLY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)


def connect_read_only(path: Path) -> sqlite3.Connection:
    """Read without writing a byte: `mode=ro`; where even the -wal/-shm cannot be created (a full or
    read-only disk), `immutable=1`, which reads the main file as it is."""
    last: sqlite3.Error | None = None
    for flags in ("mode=ro", "immutable=1"):
        db = sqlite3.connect(f"file:{quote(str(path))}?{flags}", uri=True, check_same_thread=False)
        try:
            db.execute("SELECT count(*) FROM sqlite_master").fetchone()
            return db
        except sqlite3.Error as exc:
            db.close()
            if diagnose(exc).corrupt:
                raise
            last = exc
    assert last is not None
    raise last
