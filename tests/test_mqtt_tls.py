"""MQTT over TLS with a password, against a real mosquitto with a TLS listener and a password file.

Certificates are made with openssl per session (conftest.py). A wrong password, an unknown CA and a
wrong host name each give one clear line while paho keeps retrying; nothing crashes.
"""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from edgeemo.cli.check import check_broker
from edgeemo.config.schema import Config, ConfigError, MqttConfig, TlsConfig
from edgeemo.core.metrics import Metrics
from edgeemo.core.resources import sample_video
from edgeemo.sinks.mqtt.client import MqttPublisher

from testkit.broker import Subscriber, TlsBroker, mosquitto_binary

LOGGER = "edgeemo.sinks.mqtt.client"


def tls_config(broker: TlsBroker, ca: Path, **tls: object) -> MqttConfig:
    return MqttConfig(url=broker.url, keepalive_s=5, discovery_prefix=None,
                      tls=TlsConfig(enabled=True, ca_file=ca, **tls))


def publisher_for(cfg: MqttConfig) -> tuple[MqttPublisher, Metrics]:
    metrics = Metrics(["cam"], "onnxruntime")
    return MqttPublisher(cfg, f"t{uuid.uuid4().hex[:10]}", metrics), metrics


def failure_lines(caplog: pytest.LogCaptureFixture, text: str) -> tuple[list[str], list[str]]:
    """(lines at WARNING and above, DEBUG repeats) of our logger that contain `text`."""
    ours = [r for r in caplog.records if r.name == LOGGER and text in r.getMessage()]
    return ([r.getMessage() for r in ours if r.levelno >= logging.WARNING],
            [r.getMessage() for r in ours if r.levelno == logging.DEBUG])


def assert_one_line_and_retrying(publisher: MqttPublisher, metrics: Metrics, caplog, text: str) -> None:
    """Wait for three attempts (paho waits 1 s, then 2 s): one clear line, the rest at DEBUG, no crash."""
    publisher.start()
    try:
        deadline = time.monotonic() + 8
        while len(failure_lines(caplog, text)[1]) < 1 and time.monotonic() < deadline:
            time.sleep(0.1)
        loud, repeats = failure_lines(caplog, text)
        assert len(loud) == 1, [r.getMessage() for r in caplog.records if r.name == LOGGER]
        assert repeats, "paho stopped retrying"
        assert "\n" not in loud[0] and "Traceback" not in caplog.text
        assert publisher.client._thread is not None and publisher.client._thread.is_alive()
        assert metrics.registry.get_sample_value("edgeemo_mqtt_connected") == 0
    finally:
        publisher.close(timeout=0.5)


def test_the_daemon_delivers_events_over_tls_with_the_password(tls_broker, tmp_path):
    """The real daemon (`run --once` on 2 s of the sample) logs in over TLS with $EDGEEMO_MQTT_PASSWORD."""
    clip = tmp_path / "clip.mp4"
    subprocess.run(["ffmpeg", "-loglevel", "error", "-i", str(sample_video()), "-t", "2", "-c", "copy", str(clip)],
                   check=True, timeout=60)
    device = f"t{uuid.uuid4().hex[:10]}"
    config = tmp_path / "edgeemo.yaml"
    config.write_text(f"device_id: {device}\nvoice:\n  enabled: false\nmqtt:\n  url: {tls_broker.url}\n"
                      f"  discovery_prefix: null\n  tls:\n    ca_file: {tls_broker.ca[0]}\n"
                      f"journal:\n  path: {tmp_path / 'journal.db'}\n"
                      f"event_log:\n  path: {tmp_path / 'events.jsonl'}\n  stdout: false\n")
    sub = Subscriber(tls_broker, f"edgeemo/{device}/#", configure=tls_broker.configure)
    try:
        env = os.environ | {"EDGEEMO_MQTT_PASSWORD": tls_broker.password}
        run = subprocess.run([sys.executable, "-m", "edgeemo.cli", "run", "--once", "--config", str(config), "--source",
                              str(clip), "--metrics-port", "0"], capture_output=True, text=True, timeout=120, env=env)
        assert run.returncode == 0, run.stderr[-3000:]
        assert f"MQTT: connected to 127.0.0.1:{tls_broker.port}" in run.stderr
        got = sub.wait_for(lambda msgs: any(t.endswith("/events") and json.loads(p)["type"] == "end"
                                            for t, p, _ in msgs))
    finally:
        sub.close()
    events = [json.loads(p) for t, p, _ in got if t.endswith("/events")]
    assert [e["type"] for e in events][0] == "start" and all(e["device"] == device for e in events)
    assert (f"edgeemo/{device}/availability", b"offline") in [(t, p) for t, p, _ in got]
    assert tls_broker.password not in run.stdout + run.stderr


def test_wrong_password_is_one_clear_line_and_retried(tls_broker, monkeypatch, caplog):
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    monkeypatch.setenv("EDGEEMO_MQTT_PASSWORD", "not-the-password")
    publisher, metrics = publisher_for(tls_config(tls_broker, tls_broker.ca[0]))
    assert_one_line_and_retrying(publisher, metrics, caplog, "refused the login (bad user name or password)")
    assert "not-the-password" not in caplog.text


def test_unknown_ca_is_one_clear_line_and_retried(tls_broker, monkeypatch, caplog):
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    monkeypatch.setenv("EDGEEMO_MQTT_PASSWORD", tls_broker.password)
    publisher, metrics = publisher_for(tls_config(tls_broker, tls_broker.wrong_ca[0]))
    text = f"TLS: the broker's certificate is not signed by mqtt.tls.ca_file ({tls_broker.wrong_ca[0]})"
    assert_one_line_and_retrying(publisher, metrics, caplog, text)


def test_insecure_skips_only_the_host_name_check(tls_broker, monkeypatch, caplog):
    """tls.insecure is paho's tls_insecure_set: the certificate must still come from ca_file."""
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    monkeypatch.setenv("EDGEEMO_MQTT_PASSWORD", tls_broker.password)
    publisher, metrics = publisher_for(tls_config(tls_broker, tls_broker.wrong_ca[0], insecure=True))
    assert_one_line_and_retrying(publisher, metrics, caplog, "TLS: the broker's certificate is not signed by")


@pytest.fixture(scope="module")
def misnamed_broker(tmp_path_factory) -> TlsBroker:
    """A broker whose certificate (from the right CA) is made for another host name."""
    broker = TlsBroker(mosquitto_binary(), tmp_path_factory.mktemp("mosquitto-misnamed"), san="DNS:broker.invalid")
    broker.start()
    yield broker
    broker.stop()


def test_wrong_host_name_is_one_clear_line_and_retried(misnamed_broker, monkeypatch, caplog):
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    monkeypatch.setenv("EDGEEMO_MQTT_PASSWORD", misnamed_broker.password)
    publisher, metrics = publisher_for(tls_config(misnamed_broker, misnamed_broker.ca[0]))
    assert_one_line_and_retrying(publisher, metrics, caplog, "TLS: certificate does not match host 127.0.0.1")


def test_insecure_accepts_a_wrong_host_name(misnamed_broker, monkeypatch):
    monkeypatch.setenv("EDGEEMO_MQTT_PASSWORD", misnamed_broker.password)
    publisher, metrics = publisher_for(tls_config(misnamed_broker, misnamed_broker.ca[0], insecure=True))
    try:
        publisher.start()
        deadline = time.monotonic() + 5
        while metrics.registry.get_sample_value("edgeemo_mqtt_connected") != 1:
            assert time.monotonic() < deadline, "no connection with tls.insecure: true"
            time.sleep(0.05)
    finally:
        publisher.close(timeout=1)


@pytest.mark.parametrize("key, content, expected", [
    ("ca_file", None, "mqtt.tls.ca_file: cannot read {path}: No such file or directory"),
    ("ca_file", b"not a certificate\n", "mqtt.tls.ca_file: {path} is not a PEM certificate"),
    ("cert_file", None, "mqtt.tls.cert_file: cannot read {path}: No such file or directory"),
    ("cert_file", b"garbage\n", "mqtt.tls.cert_file/key_file: cannot load the client certificate {path}"),
])
def test_a_bad_tls_file_is_a_config_error_naming_it(tmp_path, key, content, expected):
    path = tmp_path / "file.pem"
    if content is not None:
        path.write_bytes(content)
    cfg = MqttConfig(url="mqtts://u@127.0.0.1:1", tls=TlsConfig(enabled=True, **{key: path}))
    with pytest.raises(ConfigError) as caught:
        MqttPublisher(cfg, "dev")
    assert expected.format(path=path) in str(caught.value)


# ------------------------------------------------------------------------ `edgeemo check` logs in

def check_config(broker: TlsBroker, ca: Path) -> Config:
    return Config(mqtt=tls_config(broker, ca))


def test_check_logs_in_over_tls_through_the_cli(tls_broker, tmp_path):
    config = tmp_path / "edgeemo.yaml"
    config.write_text(f"voice:\n  enabled: false\nmqtt:\n  url: {tls_broker.url}\n  tls:\n    ca_file: {tls_broker.ca[0]}\n")
    env = os.environ | {"EDGEEMO_MQTT_PASSWORD": tls_broker.password}
    result = subprocess.run([sys.executable, "-m", "edgeemo.cli", "check", "--config", str(config), "--source", "sample",
                             "--metrics-port", "0"],
                            capture_output=True, text=True, timeout=120, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"OK    mqtt: broker 127.0.0.1:{tls_broker.port}: TLS verified, logged in as edgeemo" in result.stdout
    assert tls_broker.password not in result.stdout + result.stderr


@pytest.mark.parametrize("password, ca, expected", [
    ("wrong", "ca", "refused the login (bad user name or password)"),
    ("right", "wrong_ca", "TLS: the broker's certificate is not signed by mqtt.tls.ca_file"),
])
def test_check_fails_on_a_wrong_password_or_ca(tls_broker, monkeypatch, password, ca, expected):
    monkeypatch.setenv("EDGEEMO_MQTT_PASSWORD", tls_broker.password if password == "right" else "wrong")
    with pytest.raises(RuntimeError, match=re.escape(expected)):
        check_broker(check_config(tls_broker, getattr(tls_broker, ca)[0]), timeout=3)


def test_check_fails_on_a_wrong_host_name(misnamed_broker, monkeypatch):
    monkeypatch.setenv("EDGEEMO_MQTT_PASSWORD", misnamed_broker.password)
    with pytest.raises(RuntimeError, match="TLS: certificate does not match host 127.0.0.1"):
        check_broker(check_config(misnamed_broker, misnamed_broker.ca[0]), timeout=3)


def test_check_names_a_missing_ca_file(tls_broker, tmp_path):
    with pytest.raises(ConfigError, match=re.escape(f"mqtt.tls.ca_file: cannot read {tmp_path / 'nope.pem'}")):
        check_broker(check_config(tls_broker, tmp_path / "nope.pem"), timeout=3)


def test_check_on_a_tls_port_without_tls_says_so(tls_broker):
    cfg = Config(mqtt=MqttConfig(url=f"mqtt://edgeemo@127.0.0.1:{tls_broker.port}"))
    with pytest.raises(RuntimeError, match=re.escape("gave no CONNACK within 2 s (a TLS port? then use mqtts://)")):
        check_broker(cfg, timeout=2)
