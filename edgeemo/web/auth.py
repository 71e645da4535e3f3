"""Sessions, the login rate limit, and the middleware that guards every route but the login.

A session is a random token kept server-side with an expiry; the browser holds it in an HttpOnly,
SameSite=Strict cookie. Requests that change state must echo the session's CSRF token in the
`X-CSRF-Token` header. Without a session, /api answers 401 and pages redirect to /login.
"""

from __future__ import annotations

import hmac
import json
import secrets
import threading
import time
from collections import defaultdict, deque
from dataclasses import dataclass

COOKIE = "edgeemo_session"
SESSION_S = 12 * 3600
PUBLIC = frozenset({"/login", "/api/login", "/static/style.css", "/static/login.js", "/static/favicon.svg"})
SAFE_METHODS = frozenset({"GET", "HEAD"})


@dataclass
class Session:
    user: str
    role: str
    csrf: str
    expires: float


class Sessions:
    """Tokens -> sessions in memory: a daemon restart logs everyone out, which is fine on one device."""

    def __init__(self, lifetime_s: float = SESSION_S) -> None:
        self.lifetime_s = lifetime_s
        self._sessions: dict[str, Session] = {}
        self._lock = threading.Lock()

    def create(self, user: str, role: str) -> tuple[str, Session]:
        token = secrets.token_urlsafe(32)
        session = Session(user, role, secrets.token_urlsafe(32), time.monotonic() + self.lifetime_s)
        with self._lock:
            now = time.monotonic()
            self._sessions = {t: s for t, s in self._sessions.items() if s.expires > now}
            self._sessions[token] = session
        return token, session

    def get(self, token: str | None) -> Session | None:
        if not token:
            return None
        with self._lock:
            session = self._sessions.get(token)
            if session is None or session.expires <= time.monotonic():
                self._sessions.pop(token, None)
                return None
            session.expires = time.monotonic() + self.lifetime_s  # sliding expiry
            return session

    def drop(self, token: str | None) -> None:
        with self._lock:
            self._sessions.pop(token or "", None)


class LoginLimiter:
    """At most `failures` wrong logins per `window_s` per client address; then 429 until they age out."""

    def __init__(self, failures: int = 5, window_s: float = 60.0) -> None:
        self.failures, self.window_s = failures, window_s
        self._seen: dict[str, deque[float]] = defaultdict(deque)
        self._lock = threading.Lock()

    def blocked(self, address: str) -> float:
        """Seconds until `address` may try again (0: now)."""
        with self._lock:
            times = self._seen[address]
            now = time.monotonic()
            while times and times[0] <= now - self.window_s:
                times.popleft()
            return times[0] + self.window_s - now if len(times) >= self.failures else 0.0

    def fail(self, address: str) -> None:
        with self._lock:
            self._seen[address].append(time.monotonic())


class AuthMiddleware:
    """Pure ASGI (streams SSE untouched): attach the session to scope["state"] or refuse."""

    def __init__(self, app, sessions: Sessions) -> None:
        self.app, self.sessions = app, sessions

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or scope["path"] in PUBLIC:
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        session = self.sessions.get(cookie(headers.get("cookie", ""), COOKIE))
        if session is None:
            if scope["path"].startswith("/api/"):
                await respond(send, 401, {"error": "log in first"})
            else:
                await respond(send, 303, None, [(b"location", b"/login")])
            return
        if scope["method"] not in SAFE_METHODS and not hmac.compare_digest(
                headers.get("x-csrf-token", ""), session.csrf):
            await respond(send, 403, {"error": "missing or wrong X-CSRF-Token header"})
            return
        scope.setdefault("state", {})["session"] = session
        await self.app(scope, receive, send)


def cookie(header: str, name: str) -> str | None:
    for part in header.split(";"):
        key, _, value = part.strip().partition("=")
        if key == name:
            return value
    return None


async def respond(send, status: int, body: dict | None, headers: list | None = None) -> None:
    data = b"" if body is None else json.dumps(body).encode()
    hdrs = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())] + (headers or [])
    await send({"type": "http.response.start", "status": status, "headers": hdrs})
    await send({"type": "http.response.body", "body": data})
