"""Dashboard accounts in SQLite: scrypt-hashed passwords, roles, and each user's rule preferences.

The standard library's scrypt (n=2**14, r=8, p=1, 16-byte salt) is a memory-hard KDF, so no extra
dependency is needed. The file holds password hashes: it is created mode 0600.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import secrets
import sqlite3
import threading
from pathlib import Path

from edgeemo.config.schema import Config
from edgeemo.journal.store import journal_path

log = logging.getLogger(__name__)
ROLES = ("admin", "viewer")
MIN_PASSWORD = 12
SCRYPT = {"n": 2**14, "r": 8, "p": 1, "maxmem": 64 * 1024 * 1024, "dklen": 32}
SCHEMA = """
CREATE TABLE IF NOT EXISTS users (name TEXT PRIMARY KEY, role TEXT NOT NULL, salt BLOB NOT NULL,
                                  hash BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS rule_prefs (user TEXT NOT NULL, rule TEXT NOT NULL, muted INTEGER NOT NULL,
                                       min_share REAL, window_s REAL, PRIMARY KEY (user, rule));
CREATE TABLE IF NOT EXISTS settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


class UserError(ValueError):
    """A bad name, role or password, worded for the person who typed it."""


def users_path(cfg: Config) -> Path:
    """`web.users_path`, else users.db in the journal's folder."""
    if cfg.web.users_path is not None:
        return cfg.web.users_path
    return journal_path(cfg.journal).parent / "users.db"


def hash_password(password: str, salt: bytes) -> bytes:
    return hashlib.scrypt(password.encode(), salt=salt, **SCRYPT)


class UserStore:
    """Thread-safe: the web server's threads and the CLI share one connection behind a lock."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        os.close(fd)
        os.chmod(self.path, 0o600)
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.executescript(SCHEMA)
        self._lock = threading.Lock()

    def close(self) -> None:
        self._db.close()

    @property
    def first_password_path(self) -> Path:
        """Where the first start leaves admin's password: a 0600 file beside the users, never the log."""
        return self.path.with_name("admin-password")

    def ensure_admin(self) -> str | None:
        """On first start (no user at all) create `admin` with a random password, write it to
        `first_password_path` (0600) and return it."""
        with self._lock:
            if self._db.execute("SELECT 1 FROM users LIMIT 1").fetchone():
                return None
        password = secrets.token_urlsafe(12)
        self.add("admin", "admin", password)
        fd = os.open(self.first_password_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.fchmod(fd, 0o600)  # a file left from an earlier install keeps its mode otherwise
        with os.fdopen(fd, "w") as out:
            out.write(password + "\n")
        return password

    def add(self, name: str, role: str, password: str) -> None:
        _check(name, role, password)
        salt = secrets.token_bytes(16)
        with self._lock:
            try:
                self._db.execute("INSERT INTO users VALUES (?, ?, ?, ?)", (name, role, salt, hash_password(password, salt)))
            except sqlite3.IntegrityError:
                raise UserError(f"user {name!r} exists already (change its password with `edgeemo user passwd`)") from None

    def set_password(self, name: str, password: str) -> None:
        _check(name, "viewer", password)
        salt = secrets.token_bytes(16)
        with self._lock:
            cur = self._db.execute("UPDATE users SET salt = ?, hash = ? WHERE name = ?",
                                   (salt, hash_password(password, salt), name))
        if cur.rowcount == 0:
            raise UserError(f"no user {name!r}")

    def verify(self, name: str, password: str) -> str | None:
        """The user's role when the password is right, else None (same work either way)."""
        with self._lock:
            row = self._db.execute("SELECT role, salt, hash FROM users WHERE name = ?", (name,)).fetchone()
        role, salt, stored = row if row else (None, b"\0" * 16, b"")
        ok = hmac.compare_digest(hash_password(password, salt), stored)
        return role if ok else None

    def delete(self, name: str) -> None:
        """Remove an account and its preferences; the last admin stays (else nobody could manage the rest)."""
        with self._lock, self._db:
            row = self._db.execute("SELECT role FROM users WHERE name = ?", (name,)).fetchone()
            if row is None:
                raise UserError(f"no user {name!r}")
            admins = self._db.execute("SELECT count(*) FROM users WHERE role = 'admin'").fetchone()[0]
            if row[0] == "admin" and admins == 1:
                raise UserError(f"{name!r} is the last admin: add another admin first")
            self._db.execute("DELETE FROM rule_prefs WHERE user = ?", (name,))
            self._db.execute("DELETE FROM users WHERE name = ?", (name,))

    def list(self) -> list[dict]:
        with self._lock:
            rows = self._db.execute("SELECT name, role FROM users ORDER BY name").fetchall()
        return [{"name": n, "role": r} for n, r in rows]

    def prefs(self, user: str) -> dict[str, dict]:
        """{rule: {"muted", "min_share", "window_s"}}: one user's overrides (None = the YAML's value)."""
        with self._lock:
            rows = self._db.execute("SELECT rule, muted, min_share, window_s FROM rule_prefs WHERE user = ?",
                                    (user,)).fetchall()
        return {r: {"muted": bool(m), "min_share": s, "window_s": w} for r, m, s, w in rows}

    def all_prefs(self) -> dict[str, dict[str, dict]]:
        with self._lock:
            users = [n for (n,) in self._db.execute("SELECT DISTINCT user FROM rule_prefs")]
        return {u: self.prefs(u) for u in users}

    def set_pref(self, user: str, rule: str, muted: bool, min_share: float | None, window_s: float | None) -> None:
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO rule_prefs VALUES (?, ?, ?, ?, ?)",
                             (user, rule, int(muted), min_share, window_s))

    def setting(self, key: str) -> str | None:
        with self._lock:
            row = self._db.execute("SELECT value FROM settings WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def set_setting(self, key: str, value: str) -> None:
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO settings VALUES (?, ?)", (key, value))


def _check(name: str, role: str, password: str) -> None:
    if not name or len(name) > 64 or not all(c.isalnum() or c in "_-." for c in name):
        raise UserError(f"user name {name!r}: use 1-64 letters, digits, '_', '-' or '.'")
    if role not in ROLES:
        raise UserError(f"role {role!r}: must be one of {', '.join(ROLES)}")
    if len(password) < MIN_PASSWORD:
        raise UserError(f"password too short: at least {MIN_PASSWORD} characters")
