"""The event sinks (MQTT, JSONL log) against a real mosquitto and real paho clients (see conftest.py)."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
from jsonschema import Draft202012Validator, FormatChecker

from edgeemo import LABELS
from edgeemo.config.schema import Config, EventLogConfig, JournalConfig, MqttConfig
from edgeemo.core.metrics import Metrics
from edgeemo.service.event_path import EventPath, open_event_path
from edgeemo.core.events import event_payload
from edgeemo.sinks.eventlog import EventLog
from edgeemo.sinks.mqtt.client import MqttPublisher, parse_broker_url
from edgeemo.core.resources import event_schema
from edgeemo.core.types import TrackEvent

from testkit.net import free_port
from testkit.wait import wait_until

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def device() -> str:
    """A device id of its own per test, so retained messages of other tests never interfere."""
    return f"t{uuid.uuid4().hex[:10]}"


@pytest.fixture
def metrics() -> Metrics:
    return Metrics(["cam"], "onnxruntime")


@pytest.fixture
def validator() -> Draft202012Validator:
    schema = json.loads(event_schema().read_text())
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema, format_checker=FormatChecker())


def make_event(kind: str = "start", track: int = 1, top: int = 3) -> TrackEvent:
    probs = np.full(7, 0.05, np.float32)
    probs[top] = 0.7
    return TrackEvent(type=kind, track=track, source="cam", pts=1.25, probs=probs,
                      box=(np.int64(-3), np.int32(20), 64, 70))


def make_config(device: str, tmp_path: Path, url: str | None = None, **mqtt: object) -> Config:
    return Config(device_id=device, mqtt=MqttConfig(url=url, keepalive_s=5, **mqtt),
                  journal=JournalConfig(path=tmp_path / "journal.db"),
                  event_log=EventLogConfig(path=tmp_path / "events.jsonl", stdout=False))


class Publisher:
    """The daemon's event path as the tests drive it: handle events, then stop."""

    def __init__(self, cfg: Config, metrics: Metrics | None = None) -> None:
        self.path: EventPath = open_event_path(cfg, metrics)
        self.mqtt = self.path.mqtt

    def start(self) -> None:
        self.path.start()

    def handle(self, events: list[TrackEvent], present: list[dict] | None = None) -> None:
        self.path.writer.handle(events, present)

    def close(self) -> None:
        self.path.stop()


def connected(metrics: Metrics) -> float:
    return metrics.registry.get_sample_value("edgeemo_mqtt_connected")


def seqs(payloads: list[bytes]) -> list[int]:
    return [json.loads(p)["seq"] for p in payloads]


# ----------------------------------------------------------------------------------------- (a) payload

def test_payload_matches_schema(validator: Draft202012Validator) -> None:
    payload = event_payload(make_event(), seq=1, device="dev-1", now=1795794037.1234)
    validator.validate(payload)
    assert payload["ts"] == "2026-11-27T15:40:37.123Z"
    assert payload["emotion"] == "happy" and payload["confidence"] == payload["probs"]["happy"]
    assert list(payload["probs"]) == list(LABELS)
    assert abs(sum(payload["probs"].values()) - 1) < 1e-3
    assert payload["box"] == [-3, 20, 64, 70] and all(type(v) is int for v in payload["box"])
    json.dumps(payload)  # plain Python types only


def test_probs_are_rounded_and_still_sum_to_one() -> None:
    event = make_event()
    event.probs = np.array([1, 1, 1, 1, 1, 1, 1], np.float32) / 7 * 0.9  # not normalised, 1/7 does not round
    probs = event_payload(event, 1, "d")["probs"]
    assert all(round(v, 4) == v for v in probs.values())
    assert abs(sum(probs.values()) - 1) < 1e-3


@pytest.mark.parametrize("change", [
    {"emotion": "bored"},
    {"seq": 0},
    {"ts": "2026-11-27 15:40:37"},
    {"ts": "2026-11-27T15:40:37.123+01:00"},
    {"device": "dev 1"},
    {"confidence": 1.5},
    {"box": [1, 2, -3, 4]},
    {"box": [1, 2, 3]},
    {"extra": True},
    {"probs": {label: 1 / 7 for label in LABELS[:-1]}},
])
def test_schema_rejects_a_wrong_field(validator: Draft202012Validator, change: dict) -> None:
    payload = event_payload(make_event(), 1, "dev-1") | change
    assert list(validator.iter_errors(payload)), f"accepted {change}"


def test_schema_labels_are_the_package_labels() -> None:
    schema = json.loads(event_schema().read_text())
    assert schema["$defs"]["label"]["enum"] == list(LABELS)
    assert list(schema["$defs"]["probs"]["properties"]) == list(LABELS)
    assert schema["properties"]["probs"]["$ref"] == "#/$defs/probs"


def test_broker_url_parsing() -> None:
    assert parse_broker_url("mqtt://broker") == ("broker", 1883, None, False)
    assert parse_broker_url("mqtts://ed%40ge@broker") == ("broker", 8883, "ed@ge", True)
    assert parse_broker_url("mqtt://u@broker:1884", tls_enabled=True) == ("broker", 1884, "u", True)


# ------------------------------------------------------------------------------------------- (b) seq

def test_seq_increases_by_one_across_calls(mqtt_broker, subscribe, device, metrics, tmp_path,
                                           validator) -> None:
    sub = subscribe(f"edgeemo/{device}/events")
    publisher = Publisher(make_config(device, tmp_path, mqtt_broker.url), metrics)
    publisher.start()
    publisher.handle([make_event("start", 1), make_event("start", 2)], [])
    publisher.handle([], [])
    publisher.handle([make_event("change", 1, top=4)], [])
    sub.wait_for(lambda msgs: len(msgs) == 3)
    publisher.close()

    received = [json.loads(p) for p in sub.payloads()]
    assert [p["seq"] for p in received] == [1, 2, 3]
    assert all(not retain for _, _, retain in sub.messages)
    for payload in received:
        validator.validate(payload)
    logged = [json.loads(line) for line in (tmp_path / "events.jsonl").read_text().splitlines()]
    assert logged == received
    assert metrics.registry.get_sample_value(
        "edgeemo_events_total", {"modality": "face", "type": "start", "emotion": "happy"}) == 2
    assert metrics.registry.get_sample_value(
        "edgeemo_events_total", {"modality": "face", "type": "change", "emotion": "sad"}) == 1


# ----------------------------------------------------------------------------------- (c) availability

def test_online_after_start_and_retained_offline_after_close(mqtt_broker, subscribe, device, metrics,
                                                             tmp_path) -> None:
    topic = f"edgeemo/{device}/availability"
    publisher = MqttPublisher(make_config(device, tmp_path, mqtt_broker.url).mqtt, device, metrics)
    publisher.start()
    wait_until(lambda: connected(metrics) == 1)
    subscribe(topic).wait_for(lambda msgs: (topic, b"online", False) in msgs or (topic, b"online", True) in msgs)
    subscribe(topic).wait_for(lambda msgs: msgs == [(topic, b"online", True)])  # retained

    publisher.close()
    assert connected(metrics) == 0
    subscribe(topic).wait_for(lambda msgs: msgs == [(topic, b"offline", True)])


def test_home_assistant_discovery_on_connect_and_when_home_assistant_comes_online(
        mqtt_broker, subscribe, device, metrics, tmp_path) -> None:
    prefix = f"ha-{device}"  # a discovery prefix of its own: other tests' retained configs stay out
    topic = f"{prefix}/device/{device}/config"
    sub = subscribe(topic)
    publisher = Publisher(make_config(device, tmp_path, mqtt_broker.url, discovery_prefix=prefix), metrics)
    publisher.start()
    sub.wait_for(lambda msgs: len(msgs) == 1)
    config = json.loads(sub.payloads()[0])
    assert config["availability_topic"] == f"edgeemo/{device}/availability"
    assert config["state_topic"] == f"edgeemo/{device}/state"
    sensors = config["components"]
    assert {c["platform"] for c in sensors.values()} == {"sensor"}
    emotion = sensors[f"{device}_emotion"]
    assert emotion["options"] == [*LABELS, "none"] and emotion["unique_id"] == f"edgeemo_{device}_emotion"
    assert all(key.replace("_", "").replace("-", "").isalnum() for key in sensors)  # HA's id charset

    # Home Assistant restarts and announces itself: the config is sent again.
    announcer = subscribe(f"{prefix}/status")
    announcer.client.publish(f"{prefix}/status", "online", qos=1).wait_for_publish(5)
    sub.wait_for(lambda msgs: len(msgs) == 2)
    publisher.handle([], [{"track": 1, "source": "cam", "emotion": "happy"}])
    publisher.close()
    # Retained: a Home Assistant that connects later still finds the device.
    subscribe(topic).wait_for(lambda msgs: len(msgs) == 1 and msgs[0][2] and json.loads(msgs[0][1]) == config)


def test_no_discovery_when_the_prefix_is_null(device, tmp_path) -> None:
    publisher = MqttPublisher(make_config(device, tmp_path, "mqtt://localhost", discovery_prefix=None).mqtt, device)
    assert set(publisher.topics) == {"availability", "events", "state"}


def test_password_is_never_logged(mqtt_broker, device, tmp_path, monkeypatch, caplog) -> None:
    monkeypatch.setenv("EDGEEMO_MQTT_PASSWORD", "s3cret-pw")
    caplog.set_level(logging.DEBUG)
    url = mqtt_broker.url.replace("mqtt://", "mqtt://edge@")
    metrics = Metrics(["cam"], "onnxruntime")
    publisher = MqttPublisher(make_config(device, tmp_path, url).mqtt, device, metrics)
    publisher.start()
    wait_until(lambda: connected(metrics) == 1)  # anonymous broker accepts any credentials
    publisher.close()
    assert "s3cret-pw" not in caplog.text
    assert "connected to" in caplog.text


# ------------------------------------------------------------------------------------------ (d) will

PUBLISHER_SCRIPT = """
import sys, time
from edgeemo.config.schema import MqttConfig
from edgeemo.sinks.mqtt.client import MqttPublisher
MqttPublisher(MqttConfig(url=sys.argv[1], keepalive_s=5), sys.argv[2], None).start()
time.sleep(60)
"""


def test_last_will_offline_when_the_process_dies(mqtt_broker, subscribe, device) -> None:
    topic = f"edgeemo/{device}/availability"
    sub = subscribe(topic)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    child = subprocess.Popen([sys.executable, "-c", PUBLISHER_SCRIPT, mqtt_broker.url, device], env=env)
    try:
        sub.wait_for(lambda msgs: (topic, b"online", False) in msgs, timeout=15)  # imports are slow here
    finally:
        child.send_signal(signal.SIGKILL)  # no DISCONNECT, no explicit offline: only the will can say it
        child.wait()
    sub.wait_for(lambda msgs: msgs[-1][1] == b"offline", timeout=3)
    subscribe(topic).wait_for(lambda msgs: msgs == [(topic, b"offline", True)])


# ---------------------------------------------------------------------------------- (e) broker restart

def test_events_published_while_the_broker_is_down_arrive_after_restart(mqtt_broker, subscribe, device,
                                                                         metrics, tmp_path) -> None:
    publisher = Publisher(make_config(device, tmp_path, mqtt_broker.url), metrics)
    publisher.start()
    wait_until(lambda: connected(metrics) == 1)
    try:
        mqtt_broker.stop()
        wait_until(lambda: connected(metrics) == 0)
        for track in (1, 2, 3):
            publisher.handle([make_event("start", track)], [])
    finally:
        mqtt_broker.start()
    # paho's first retry comes 1 s after the loss, long after this subscription is in place
    sub = subscribe(f"edgeemo/{device}/events")
    sub.wait_for(lambda msgs: len(msgs) >= 3, timeout=10)
    wait_until(lambda: connected(metrics) == 1)
    publisher.close()
    assert seqs(sub.payloads()) == [1, 2, 3]


# ------------------------------------------------------------------------------------------- (f) state

def test_state_is_retained_rate_limited_and_the_last_change_is_kept(mqtt_broker, subscribe, device,
                                                                    metrics, tmp_path) -> None:
    topic = f"edgeemo/{device}/state"
    cfg = make_config(device, tmp_path, mqtt_broker.url, state_min_interval_s=0.3)
    publisher = MqttPublisher(cfg.mqtt, device, metrics)
    sub = subscribe(topic)
    publisher.start()
    a, b, c = [{"track": 1, "emotion": "happy"}], [{"track": 1, "emotion": "sad", "confidence": np.float32(0.5)}], []

    def faces() -> list:
        return [json.loads(p)["faces"] for p in sub.payloads()]

    publisher.publish_state(a)       # first: goes out at once
    publisher.publish_state(b)       # inside the interval: held back
    publisher.publish_state(b)
    sub.wait_for(lambda msgs: len(msgs) >= 1)
    time.sleep(0.15)
    assert faces() == [a]

    time.sleep(0.2)
    publisher.publish_state(b)       # interval over: the held change goes out
    sub.wait_for(lambda msgs: len(msgs) >= 2)
    time.sleep(0.35)
    publisher.publish_state(b)       # unchanged: nothing
    publisher.publish_state(c)       # new change, published: interval over since b
    sub.wait_for(lambda msgs: len(msgs) >= 3)
    publisher.publish_state(a)       # inside the interval and then the process stops...
    publisher.close()                # ...close() still publishes it
    sub.wait_for(lambda msgs: len(msgs) >= 4)
    assert faces() == [a, [{"track": 1, "emotion": "sad"}], c, a]  # the bars' confidence stays out

    retained = subscribe(topic).wait_for(lambda msgs: len(msgs) >= 1)
    assert len(retained) == 1 and retained[0][2] is True
    state = json.loads(retained[0][1])
    assert set(state) == {"v", "ts", "device", "faces"}
    assert (state["v"], state["device"], state["faces"]) == (1, device, a)


# --------------------------------------------------------------------------------------- (g) event log

def test_event_log_one_line_per_event_and_rotation(tmp_path) -> None:
    cfg = EventLogConfig(path=tmp_path / "logs" / "events.jsonl", max_bytes=10_000, backups=3, stdout=False)
    event_log = EventLog(cfg)
    line_bytes = len(json.dumps(event_payload(make_event(), 100, "dev"), separators=(",", ":"))) + 1
    count = 2 * cfg.max_bytes // line_bytes + 5  # fills a bit over two files
    for seq in range(1, count + 1):
        event_log.write(event_payload(make_event(), seq, "dev"))
    event_log.close()

    files = [cfg.path.with_name(f"events.jsonl.{n}") for n in (2, 1)] + [cfg.path]
    assert all(f.exists() for f in files) and not cfg.path.with_name("events.jsonl.3").exists()
    assert all(f.stat().st_size <= cfg.max_bytes for f in files)
    lines = [line for f in files for line in f.read_text().splitlines()]
    assert [json.loads(line)["seq"] for line in lines] == list(range(1, count + 1))


def test_event_log_stdout_and_default_path(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("LOGS_DIRECTORY", str(tmp_path / "systemd-logs"))
    event_log = EventLog(EventLogConfig(stdout=True))
    event_log.write(event_payload(make_event(), 7, "dev"))
    event_log.close()
    assert event_log.path == tmp_path / "systemd-logs" / "events.jsonl"
    assert json.loads(capsys.readouterr().out)["seq"] == 7
    assert json.loads(event_log.path.read_text())["seq"] == 7

    monkeypatch.delenv("LOGS_DIRECTORY")
    monkeypatch.chdir(tmp_path)
    assert EventLog(EventLogConfig(stdout=False)).path.resolve() == tmp_path / "edgeemo-events.jsonl"


# ----------------------------------------------------------------------------------------- (h) no broker

def test_dead_broker_neither_blocks_nor_raises(device, metrics, tmp_path) -> None:
    publisher = Publisher(make_config(device, tmp_path, f"mqtt://127.0.0.1:{free_port()}"), metrics)
    started = time.monotonic()
    publisher.start()
    publisher.handle([make_event()], [{"track": 1}])
    assert time.monotonic() - started < 0.5
    time.sleep(0.3)
    assert connected(metrics) == 0
    started = time.monotonic()
    publisher.close()
    assert time.monotonic() - started < 3
    assert connected(metrics) == 0
    assert len((tmp_path / "events.jsonl").read_text().splitlines()) == 1


def test_without_a_broker_only_the_event_log_is_used(device, metrics, tmp_path, capsys) -> None:
    cfg = make_config(device, tmp_path)
    cfg.event_log.stdout = True
    publisher = Publisher(cfg, metrics)
    publisher.start()
    publisher.handle([make_event(), make_event("end")], [])
    publisher.close()
    assert publisher.mqtt is None
    assert seqs(capsys.readouterr().out.encode().splitlines()) == [1, 2]
    assert len((tmp_path / "events.jsonl").read_text().splitlines()) == 2


def test_a_bad_event_is_counted_and_leaves_a_seq_gap(device, metrics, tmp_path) -> None:
    publisher = Publisher(make_config(device, tmp_path), metrics)
    bad = make_event()
    bad.probs = np.ones(3, np.float32)  # wrong length
    publisher.handle([make_event(), bad, make_event("end")], [])
    publisher.close()
    assert metrics.registry.get_sample_value("edgeemo_errors_total", {"where": "publish"}) == 1
    assert seqs((tmp_path / "events.jsonl").read_bytes().splitlines()) == [1, 3]


def test_event_log_file_is_optional(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    event_log = EventLog(EventLogConfig(enabled=False, stdout=True))
    event_log.write(event_payload(make_event(), 3, "dev"))
    event_log.close()
    assert json.loads(capsys.readouterr().out)["seq"] == 3
    assert list(tmp_path.iterdir()) == []  # no file: the journal is the record


# Home Assistant's device-based MQTT discovery (homeassistant/device/<id>/config), written from its
# documentation (mqtt integration, "Device discovery payload"): a device with identifiers or
# connections, an origin with a name, components keyed by object ids in [a-zA-Z0-9_-], each with a
# platform and a unique_id; options shared by every component (state_topic, availability_topic,
# qos) may sit at the top level. For sensors, HA refuses device_class enum without options, options
# without device_class enum, and a unit or state_class on an enum sensor.
HA_ID = r"^[a-zA-Z0-9_-]+$"
HA_SENSOR = {
    "type": "object",
    "required": ["platform", "unique_id"],
    "properties": {
        "platform": {"const": "sensor"}, "name": {"type": ["string", "null"]}, "unique_id": {"type": "string"},
        "object_id": {"type": "string", "pattern": HA_ID}, "state_topic": {"type": "string"},
        "value_template": {"type": "string"}, "device_class": {"type": "string"},
        "state_class": {"enum": ["measurement", "total", "total_increasing"]},
        "unit_of_measurement": {"type": "string"}, "options": {"type": "array", "items": {"type": "string"}},
        "icon": {"type": "string", "pattern": "^mdi:"}, "suggested_display_precision": {"type": "integer", "minimum": 0},
        "entity_category": {"enum": ["config", "diagnostic"]}, "enabled_by_default": {"type": "boolean"},
        "qos": {"enum": [0, 1, 2]}, "availability_topic": {"type": "string"}, "expire_after": {"type": "integer"},
        "force_update": {"type": "boolean"}, "json_attributes_topic": {"type": "string"},
        "json_attributes_template": {"type": "string"},
    },
    "additionalProperties": False,
    "allOf": [
        {"if": {"required": ["device_class"], "properties": {"device_class": {"const": "enum"}}},
         "then": {"required": ["options"], "not": {"anyOf": [{"required": ["state_class"]},
                                                            {"required": ["unit_of_measurement"]}]}},
         "else": {"not": {"required": ["options"]}}},
    ],
}
HA_DEVICE_DISCOVERY = {
    "type": "object",
    "required": ["device", "origin", "components"],
    "properties": {
        "device": {"type": "object", "anyOf": [{"required": ["identifiers"]}, {"required": ["connections"]}],
                   "properties": {"identifiers": {"type": ["array", "string"]}, "name": {"type": "string"},
                                  "manufacturer": {"type": "string"}, "model": {"type": "string"},
                                  "sw_version": {"type": "string"}, "hw_version": {"type": "string"},
                                  "connections": {"type": "array"}, "configuration_url": {"type": "string"}},
                   "additionalProperties": False},
        "origin": {"type": "object", "required": ["name"], "additionalProperties": False,
                   "properties": {"name": {"type": "string"}, "sw_version": {"type": "string"},
                                  "support_url": {"type": "string"}}},
        "components": {"type": "object", "minProperties": 1, "propertyNames": {"pattern": HA_ID},
                       "additionalProperties": HA_SENSOR},
        "state_topic": {"type": "string"}, "availability_topic": {"type": "string"}, "qos": {"enum": [0, 1, 2]},
    },
    "additionalProperties": False,
}


def test_home_assistant_sensors_per_source_and_per_emotion_read_the_retained_state(
        mqtt_broker, subscribe, device, metrics, tmp_path) -> None:
    """Discovery through the real broker passes HA's schema; each sensor's template, rendered with Jinja
    as Home Assistant renders it, reads the right value from the retained state."""
    import jinja2

    prefix = f"ha-{device}"
    cfg = make_config(device, tmp_path, mqtt_broker.url, discovery_prefix=prefix, state_min_interval_s=0)
    cfg.sources = [cfg.sources[0].model_copy(update={"name": "cam", "url": "sample"})]
    config_sub, state_sub = subscribe(f"{prefix}/device/{device}/config"), subscribe(f"edgeemo/{device}/state")
    publisher = Publisher(cfg, metrics)
    publisher.start()
    config_sub.wait_for(lambda msgs: len(msgs) == 1)
    config = json.loads(config_sub.payloads()[0])
    Draft202012Validator(HA_DEVICE_DISCOVERY).validate(config)
    unique_ids = [c["unique_id"] for c in config["components"].values()]
    assert len(set(unique_ids)) == len(unique_ids)

    voice = TrackEvent(type="start", track=7, source="cam", pts=1.0, probs=np.array([.1, 0, 0, .2, .6, 0, .1]),
                       box=None, modality="voice")
    fused = TrackEvent(type="start", track=1, source="cam", pts=1.0, probs=np.array([0, 0, 0, .8, .1, 0, .1]),
                       box=None, modality="fused", components={"face": np.full(7, 1 / 7), "voice": voice.probs})
    faces = [{"track": 1, "source": "cam", "emotion": "happy"}, {"track": 2, "source": "cam", "emotion": "sad"}]
    publisher.handle([voice, fused], None)
    publisher.handle([], faces)
    state_sub.wait_for(lambda msgs: any(json.loads(p)["faces"] == faces for _, p, _ in msgs))
    state = json.loads(subscribe(f"edgeemo/{device}/state").wait_for(lambda msgs: len(msgs) == 1)[0][1])  # retained

    env = jinja2.Environment()
    read = {key: env.from_string(c["value_template"]).render(value_json=state)
            for key, c in config["components"].items()}
    assert read[f"{device}_emotion"] == "happy" and read[f"{device}_faces"] == "2"
    assert read[f"{device}_cam_voice_emotion"] == "sad" and read[f"{device}_cam_voice_confidence"] == "60.0"
    assert read[f"{device}_cam_fused_emotion"] == "happy" and read[f"{device}_cam_fused_confidence"] == "80.0"
    assert read[f"{device}_share_happy"] == read[f"{device}_share_sad"] == "50.0"
    assert {read[f"{device}_share_{label}"] for label in LABELS if label not in ("happy", "sad")} == {"0.0"}
    for key, component in config["components"].items():  # an enum sensor's reading is one of its options
        if component.get("device_class") == "enum":
            assert read[key] in component["options"], key

    # Nobody speaks any more: the readings go back to none (and the share to 0 when nobody is in view).
    ends = [TrackEvent(type="end", track=e.track, source="cam", pts=2.0, probs=e.probs, box=None,
                       modality=e.modality, components=e.components) for e in (voice, fused)]
    publisher.handle(ends, [])
    publisher.close()
    state = json.loads(state_sub.wait_for(lambda msgs: json.loads(msgs[-1][1])["faces"] == [] and
                                          json.loads(msgs[-1][1])["sources"]["cam"]["voice"] is None)[-1][1])
    assert state["sources"] == {"cam": {"voice": None, "fused": None}} and set(state["share"].values()) == {0.0}
    assert env.from_string(config["components"][f"{device}_cam_voice_emotion"]["value_template"]).render(
        value_json=state) == "none"
