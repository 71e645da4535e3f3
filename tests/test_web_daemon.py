"""The dashboard inside the real daemon on the bundled sample, with a real Mosquitto broker."""

from __future__ import annotations

import json
import time
from pathlib import Path

import jsonschema
import pytest

from edgeemo.config.load import load_config
from edgeemo.service.daemon import Daemon
from testkit.webclient import Client, first_password

ROOT = Path(__file__).resolve().parents[1]
PASSWORD = "daemon test password"


def daemon_config(tmp: Path, mqtt_url: str | None, device: str):
    return load_config(None, {
        "device_id": device, "sources.0.url": "sample", "mqtt.url": mqtt_url, "metrics.port": 0, "web.port": 0,
        "journal.path": str(tmp / "journal.db"), "event_log.path": str(tmp / "events.jsonl"),
        "event_log.stdout": False,
        "web.rules": [{"name": "calm", "emotion": "neutral", "min_share": 0.3, "window_s": 2,
                       "text": "All calm", "modality": "face"}]})


def until(predicate, timeout: float = 30.0, step: float = 0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    pytest.fail(f"timed out after {timeout} s waiting for {predicate}")


def test_dashboard_in_the_daemon_on_the_sample(mqtt_broker, subscribe, tmp_path, caplog):
    sub = subscribe("edgeemo/webd/alerts")
    caplog.set_level("INFO")
    daemon = Daemon(daemon_config(tmp_path, mqtt_broker.url, "webd"))
    daemon.start()
    try:
        assert daemon.web is not None and daemon.web.port
        log = caplog.text
        assert f"dashboard on http://127.0.0.1:{daemon.web.port}/" in log
        password = first_password(tmp_path)  # first start: admin, its password in a 0600 file, not the log
        assert password not in log and "admin-password" in log
        assert not (tmp_path / "users.db").stat().st_mode & 0o077
        c = Client(daemon.web.port)
        assert c.login("admin", password).status == 200
        faces = until(lambda: c.request("GET", "/api/state").json()["faces"])
        assert {"track", "source", "emotion", "confidence", "probs", "box"} <= set(faces[0])
        alert = json.loads(sub.wait_for(lambda msgs: len(msgs) >= 1, timeout=30)[0][1])
        jsonschema.validate(alert, json.loads((ROOT / "edgeemo" / "alert.schema.json").read_text()))
        assert alert["rule"] == "calm" and alert["device"] == "webd"
        until(lambda: len(daemon.events.journal.query(limit=5)) == 5)
        page = c.request("GET", "/api/events?limit=5").json()
        assert page["events"] == daemon.events.journal.query(limit=5) and page["next"] == page["events"][-1]["seq"]
        system = c.request("GET", "/api/system").json()
        assert system["sources"][0]["frames"] > 0 and system["mqtt"]["connected"] is True
        assert system["journal"]["writable"] is True and system["journal"]["held_in_memory"] == 0
    finally:
        daemon.stop_requested.set()
        daemon.shutdown()
    assert daemon.web._thread is None  # the web thread ended with the daemon


def test_a_taken_port_leaves_the_daemon_running_without_dashboard(tmp_path, caplog):
    import socket
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        cfg = daemon_config(tmp_path, None, "webp")
        cfg.web.port = taken.getsockname()[1]
        daemon = Daemon(cfg)
        daemon.start()
        try:
            assert "dashboard off: cannot listen" in caplog.text and daemon.pipeline.alive()
        finally:
            daemon.stop_requested.set()
            daemon.shutdown()


def test_frame_preview_only_when_turned_on(tmp_path, caplog):
    """web.preview off (the default): no route gives pixels. On: the newest frame of the real daemon,
    with its faces boxed, as a JPEG to a logged-in page only."""
    import cv2
    import numpy as np

    caplog.set_level("INFO")
    cfg = daemon_config(tmp_path, None, "prev")
    assert cfg.web.preview is False
    cfg.web.preview = True
    daemon = Daemon(cfg)
    daemon.start()
    try:
        password = first_password(tmp_path)
        assert Client(daemon.web.port).request("GET", "/api/preview.jpg").status == 401
        c = Client(daemon.web.port)
        c.login("admin", password)
        assert c.request("GET", "/api/me").json()["preview"] is True
        until(lambda: c.request("GET", "/api/state").json()["faces"])
        reply = c.request("GET", "/api/preview.jpg")
        assert reply.status == 200 and reply.headers["content-type"] == "image/jpeg"
        image = cv2.imdecode(np.frombuffer(reply.body, np.uint8), cv2.IMREAD_COLOR)
        assert image.shape == (360, 640, 3)
        boxed = (image[:, :, 1] > 200) & (image[:, :, 0] < 110) & (image[:, :, 2] < 110)
        assert boxed.sum() > 200  # the green box around the sample's face
    finally:
        daemon.stop_requested.set()
        daemon.shutdown()


def test_no_preview_by_default(tmp_path, caplog):
    caplog.set_level("INFO")
    daemon = Daemon(daemon_config(tmp_path, None, "noprev"))
    daemon.start()
    try:
        password = first_password(tmp_path)
        c = Client(daemon.web.port)
        c.login("admin", password)
        assert c.request("GET", "/api/me").json()["preview"] is False
        assert c.request("GET", "/api/preview.jpg").status == 404
        assert daemon.pipeline.frame_observers == []  # frames are not even handed over
    finally:
        daemon.stop_requested.set()
        daemon.shutdown()
