"""No secret in any output or file, passwords kept out of the YAML, and owner-only files.

The DEBUG run is the real daemon (`python -m edgeemo.cli run`) on a stream URL whose password comes
from a file, against the real TLS broker with the password from $EDGEEMO_MQTT_PASSWORD.
"""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import quote

import pytest

from edgeemo.config.load import load_config
from edgeemo.config.redact import redact
from edgeemo.config.schema import ConfigError, EventLogConfig, SourceConfig
from edgeemo.config.secrets import source_password
from edgeemo.sinks.eventlog import EventLog

from testkit.net import free_port

CAMERA_SECRET = "Cam-Secret-7781"


def secrets_in(text: str, *secrets: str) -> list[str]:
    return [s for s in secrets if s in text or quote(s, safe="") in text]


def test_a_debug_run_prints_and_writes_no_secret(tls_broker, tmp_path):
    password_file = tmp_path / "cam_password"
    password_file.write_text(CAMERA_SECRET + "\n")
    closed = free_port()  # nothing listens there: capture and audio retry, and log each retry
    config = tmp_path / "edgeemo.yaml"
    config.write_text(
        f"sources:\n  - name: cam\n    url: http://viewer@127.0.0.1:{closed}/live.mjpg\n"
        f"    password_file: {password_file}\n    reconnect_initial_s: 0.2\n    reconnect_max_s: 0.4\n"
        f"mqtt:\n  url: {tls_broker.url}\n  tls:\n    ca_file: {tls_broker.ca[0]}\n"
        f"event_log:\n  path: {tmp_path / 'events.jsonl'}\njournal:\n  path: {tmp_path / 'journal.db'}\n")
    env = os.environ | {"EDGEEMO_MQTT_PASSWORD": tls_broker.password}
    run = subprocess.Popen([sys.executable, "-m", "edgeemo.cli", "run", "--config", str(config), "--log-level",
                            "DEBUG", "--metrics-port", "0"], cwd=tmp_path, env=env, text=True,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        time.sleep(8)  # several reopen attempts of video and sound
    finally:
        run.send_signal(signal.SIGTERM)
        stdout, stderr = run.communicate(timeout=60)
    assert "MQTT: connected to 127.0.0.1" in stderr, stderr[-3000:]
    assert stderr.count(f"viewer:***@127.0.0.1:{closed}") >= 3, stderr[-3000:]  # the URL is logged, masked
    assert secrets_in(stdout + stderr, CAMERA_SECRET, tls_broker.password) == []
    written = [p for p in tmp_path.rglob("*") if p.is_file() and p not in (password_file, config)]
    assert tmp_path / "events.jsonl" in written
    for path in written:
        assert secrets_in(path.read_text(errors="replace"), CAMERA_SECRET, tls_broker.password) == [], path
    assert stat.S_IMODE((tmp_path / "events.jsonl").stat().st_mode) == 0o600


def test_redact_masks_every_url_password_in_a_text():
    text = "a rtsp://u:p4ss@cam/x and 'http://v:w%40rd@h:1/y' b"
    assert redact(text) == "a rtsp://u:***@cam/x and 'http://v:***@h:1/y' b"
    assert redact("rtsp://u@cam/x") == "rtsp://u@cam/x" and redact(3) == 3


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "edgeemo.yaml"
    path.write_text(text)
    return path


def test_a_source_password_goes_into_the_url_from_a_file_a_credential_or_the_environment(tmp_path, monkeypatch):
    (tmp_path / "pw").write_text("p@ss:w/rd\n")
    cfg = load_config(write(tmp_path, f"sources:\n  - name: door\n    url: rtsp://viewer@cam:554/s\n"
                                      f"    password_file: {tmp_path / 'pw'}\n"))
    assert cfg.sources[0].url == "rtsp://viewer:p%40ss%3Aw%2Frd@cam:554/s"
    monkeypatch.setenv("EDGEEMO_SOURCE_FRONT_DOOR_PASSWORD", "from-env")
    source = SourceConfig(name="front-door", url="rtsp://viewer@cam/s")
    assert source_password(source) == "from-env"
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "source_front-door_password").write_text("from-systemd\n")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    assert source_password(source) == "from-systemd"
    assert source_password(SourceConfig(name="front-door", url="rtsp://cam/s")) is None  # no user@: no password


@pytest.mark.parametrize("source, expected", [
    ("url: rtsp://viewer@cam/s\n    password_file: {missing}", "sources.default.password_file: cannot read {missing}"),
    ("url: rtsp://viewer@cam/s\n    password_file: {empty}", "sources.default.password_file: {empty} is empty"),
    ("url: rtsp://viewer:inline@cam/s\n    password_file: {empty}",
     "needs a url with a user name and no password (rtsp://user@host/...), got 'rtsp://viewer:***@cam/s'"),
    ("url: sample\n    password_file: {empty}", "sources.default.password_file: needs a url with a user name"),
])
def test_a_bad_source_password_file_is_named(tmp_path, source, expected):
    names = {"missing": tmp_path / "missing", "empty": tmp_path / "empty"}
    names["empty"].write_text("\n")
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, "sources:\n  - " + source.format(**names) + "\n"))
    assert expected.format(**names) in str(caught.value) and "inline" not in str(caught.value)


def test_the_event_log_and_its_rotations_are_owner_only(tmp_path):
    path = tmp_path / "events.jsonl"
    path.write_text("")
    path.chmod(0o644)  # an older, world-readable file is tightened too
    old = os.umask(0o022)
    try:
        log = EventLog(EventLogConfig(path=path, max_bytes=10_000, backups=2, stdout=False))
        for seq in range(400):
            log.write({"seq": seq, "emotion": "happy", "probs": {"happy": 0.9}})
        log.close()
    finally:
        os.umask(old)
    files = sorted(tmp_path.glob("events.jsonl*"))
    assert len(files) == 3  # the file and two rotations
    assert {stat.S_IMODE(p.stat().st_mode) for p in files} == {0o600}


def test_an_unwritable_event_log_is_a_config_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(ConfigError, match=f"event_log.path: cannot write {blocker / 'events.jsonl'}"):
        EventLog(EventLogConfig(path=blocker / "events.jsonl", stdout=False))
