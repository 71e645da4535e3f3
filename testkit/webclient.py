"""A real HTTP client for the dashboard tests (http.client), and the server fixture they share."""

from __future__ import annotations

import http.client
import json
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from edgeemo.config.load import load_config
from edgeemo.web.server import WebServer
from edgeemo import LABELS
from edgeemo.core.events import iso_utc
from edgeemo.core.resources import sample_video
from edgeemo.journal.store import Journal

ADMIN_PW = "correct horse battery"
VIEWER_PW = "viewer password 1"
RULES = [{"name": "happy-now", "emotion": "happy", "min_share": 0.5, "window_s": 2, "text": "Keep smiling",
          "modality": "face"}]


def first_password(folder: Path) -> str:
    """admin's password from a first start whose users.db is in `folder`: a 0600 file beside it."""
    path = folder / "admin-password"
    assert path.stat().st_mode & 0o777 == 0o600
    return path.read_text().strip()


@dataclass
class Reply:
    status: int
    headers: dict
    body: bytes

    def json(self):
        return json.loads(self.body)


@dataclass
class Client:
    port: int
    cookie: str | None = None
    csrf: str = ""
    address: str = "127.0.0.1"
    sent: list = field(default_factory=list)

    def request(self, method: str, path: str, body: object = None, headers: dict | None = None) -> Reply:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10, source_address=(self.address, 0))
        hdrs = dict(headers or {})
        if self.cookie:
            hdrs["Cookie"] = self.cookie
        data = None if body is None else json.dumps(body).encode()
        if data is not None:
            hdrs["Content-Type"] = "application/json"
        conn.request(method, path, data, hdrs)
        r = conn.getresponse()
        reply = Reply(r.status, {k.lower(): v for k, v in r.getheaders()}, r.read())
        conn.close()
        if "set-cookie" in reply.headers:
            self.cookie = reply.headers["set-cookie"].split(";")[0]
        return reply

    def login(self, user: str, password: str) -> Reply:
        reply = self.request("POST", "/api/login", {"username": user, "password": password})
        if reply.status == 200:
            self.csrf = reply.json()["csrf"]
        return reply

    def write(self, method: str, path: str, body: object = None) -> Reply:
        return self.request(method, path, body, {"X-CSRF-Token": self.csrf})

    def upload(self, data: bytes, name: str, content_type: str = "application/octet-stream",
               csrf: bool = True, field: str = "file") -> Reply:
        """POST /api/analyze with the file as multipart/form-data, as a browser's FormData sends it."""
        boundary = "----edgeemo" + uuid.uuid4().hex
        body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"{field}\"; filename=\"{name}\"\r\n"
                f"Content-Type: {content_type}\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
        headers = {"Content-Type": f"multipart/form-data; boundary={boundary}", "Cookie": self.cookie or ""}
        if csrf:
            headers["X-CSRF-Token"] = self.csrf
        conn.request("POST", "/api/analyze", body, headers)
        r = conn.getresponse()
        reply = Reply(r.status, {k.lower(): v for k, v in r.getheaders()}, r.read())
        conn.close()
        return reply


def make_event(seq: int, t: float, emotion: str = "happy", track: int = 1, modality: str = "face",
               source: str = "default", kind: str = "update") -> dict:
    probs = {label: 0.02 for label in LABELS}
    probs[emotion] = round(1 - 0.02 * (len(LABELS) - 1), 4)
    return {"v": 1, "seq": seq, "ts": iso_utc(t), "device": "edgeemo", "source": source, "pts": float(seq),
            "type": kind, "track": track, "modality": modality, "emotion": emotion, "confidence": probs[emotion],
            "probs": probs, "box": None if modality == "voice" else [10, 20, 100, 100]}


def start_server(tmp: Path, events: int = 0, t0: float | None = None, tick_s: float = 1.0,
                 alerts: list | None = None, overrides: dict | None = None) -> tuple[WebServer, Journal]:
    """The real server on the real journal (journal.db in `tmp`, users.db beside it), `events` in it."""
    cfg = load_config(None, {"web.port": 0, "journal.path": str(tmp / "journal.db"), "web.rules": RULES,
                             **(overrides or {})})
    journal = Journal.open(cfg.journal)
    start = time.time() - events if t0 is None else t0
    journal.append([make_event(seq, start + seq, ("happy", "sad", "neutral")[seq % 3], track=1 + seq % 2,
                                modality="voice" if seq % 5 == 0 else "face") for seq in range(1, events + 1)], delivered=True)
    server = WebServer(cfg, journal, publish_alert=(alerts.append if alerts is not None else None), tick_s=tick_s)
    server.users.add("admin", "admin", ADMIN_PW)
    server.users.add("viewer", "viewer", VIEWER_PW)
    server.start()
    return server, journal


class LiveStream:
    """GET /api/live read line by line on a thread; close() ends it."""

    def __init__(self, client: Client) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", client.port, timeout=10)
        self.conn.request("GET", "/api/live", headers={"Cookie": client.cookie or ""})
        self.response = self.conn.getresponse()
        self.lines: list[str] = []
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        try:
            while line := self.response.readline():
                self.lines.append(line.decode())
        except (OSError, ValueError, AttributeError, http.client.HTTPException):
            pass  # closed by close()

    def text(self) -> str:
        return "".join(self.lines)

    def count(self, kind: str) -> int:
        return sum(line == f"event: {kind}\n" for line in list(self.lines))

    def close(self) -> None:
        self.conn.sock.shutdown(2) if self.conn.sock else None
        self.conn.close()
        self.thread.join(5)


def sample_clip(folder: Path, seconds: float = 4) -> Path:
    """The sample's first seconds as an mp4 of its own: one face, and the first utterance (0-3.3 s)."""
    out = folder / "clip.mp4"
    subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-i", str(sample_video()), "-t", str(seconds), "-c:v", "libx264",
                    "-preset", "veryfast", "-c:a", "aac", str(out)], check=True)
    return out
