"""Where events leave the daemon: a rotating JSONL event log, stdout, and MQTT.

The payload format is ``edgeemo/event.schema.json`` (version 1). MQTT follows the conventions in
CONVENTIONS.md: a retained ``online``/``offline`` availability topic with a Last Will, events that are
not retained and carry a per-device ``seq`` (a gap means lost events), and a retained state topic
published only on change. Home Assistant finds the device by MQTT discovery (one retained device
config, sent again whenever Home Assistant announces itself on ``<discovery_prefix>/status``).
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
import time
from collections import deque
from datetime import datetime, timezone
from logging.handlers import RotatingFileHandler
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import unquote, urlparse

import numpy as np
import paho.mqtt.client as mqtt

from edgeemo import LABELS, __version__
from edgeemo.config import Config, EventLogConfig, MqttConfig, mqtt_password
from edgeemo.metrics import Metrics
from edgeemo.types import TrackEvent

log = logging.getLogger(__name__)
paho_log = logging.getLogger(f"{__name__}.paho")

SCHEMA_VERSION = 1
FIRST_CONNECT_WAIT_S = 2.0


# ---------------------------------------------------------------------------------------------- payload

def iso_utc(now: float | None = None) -> str:
    """Unix time as ISO-8601 UTC with milliseconds and a `Z`, the form the schema requires."""
    moment = datetime.fromtimestamp(time.time() if now is None else now, tz=timezone.utc)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def rounded_probs(probs: Any) -> list[float]:
    """Probabilities rounded to 4 decimals that still sum to 1: the largest absorbs the rounding error.

    Subscribers check `sum == 1`; plain rounding of 7 values can miss that by up to 3.5e-4.
    """
    p = np.nan_to_num(np.asarray(probs, dtype=np.float64).reshape(-1), nan=0.0).clip(0.0, None)
    if p.shape != (len(LABELS),):
        raise ValueError(f"expected {len(LABELS)} probabilities, got {p.shape[0]}")
    total = p.sum()
    p = p / total if total > 0 else np.full(len(LABELS), 1.0 / len(LABELS))
    out = [round(float(x), 4) for x in p]
    top = int(np.argmax(p))
    out[top] = round(1.0 - (sum(out) - out[top]), 4)
    return out


def event_payload(event: TrackEvent, seq: int, device: str, now: float | None = None) -> dict:
    """The schema-v1 dict for one event; `now` (Unix time) only to make tests deterministic."""
    probs = rounded_probs(event.probs)
    top = int(np.argmax(probs))
    payload = {
        "v": SCHEMA_VERSION,
        "seq": seq,
        "ts": iso_utc(now),
        "device": device,
        "source": event.source,
        "pts": round(max(0.0, float(event.pts)), 3),
        "type": event.type,
        "track": int(event.track),
        "modality": event.modality,
        "emotion": LABELS[top],
        "confidence": probs[top],
        "probs": dict(zip(LABELS, probs)),
        "box": None if event.box is None else [int(v) for v in event.box],
    }
    if event.components:
        payload["components"] = {name: dict(zip(LABELS, rounded_probs(p))) for name, p in event.components.items()}
    return payload


def _jsonable(value: Any) -> Any:
    """json.dumps fallback for numpy scalars and arrays that callers may leave in state dicts."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def to_json(payload: Any) -> str:
    """Compact JSON, one line (the event log is JSONL)."""
    return json.dumps(payload, separators=(",", ":"), default=_jsonable)


# -------------------------------------------------------------------------------------------- event log

def default_event_log_path() -> Path:
    """Under systemd's LogsDirectory= when the unit sets one, else the working directory."""
    logs = os.environ.get("LOGS_DIRECTORY")
    if logs:
        return Path(logs.split(":")[0]) / "events.jsonl"
    return Path("edgeemo-events.jsonl")


class _EventFileHandler(RotatingFileHandler):
    """RotatingFileHandler that counts write errors instead of printing a traceback per event."""

    def __init__(self, path: Path, cfg: EventLogConfig, metrics: Metrics | None) -> None:
        super().__init__(path, maxBytes=cfg.max_bytes, backupCount=cfg.backups, encoding="utf-8")
        self.setFormatter(logging.Formatter("%(message)s"))
        self._metrics = metrics

    def handleError(self, record: logging.LogRecord) -> None:
        if self._metrics is not None:
            self._metrics.errors.labels(where="event_log").inc()
        log.warning("cannot write the event log %s: %s", self.baseFilename, sys.exc_info()[1])


class EventLog:
    """Every event payload as one JSON line in a size-rotated file, and optionally on stdout.

    The file is the record that survives a broker outage; stdout is the CLI's output. The rotating
    handler is used directly (not through a logger) so events never mix with diagnostic logging.
    """

    def __init__(self, cfg: EventLogConfig, metrics: Metrics | None = None) -> None:
        self.path = Path(cfg.path) if cfg.path is not None else default_event_log_path()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._handler = _EventFileHandler(self.path, cfg, metrics)
        self._stdout = cfg.stdout
        self._metrics = metrics

    def write(self, payload: dict) -> None:
        line = to_json(payload)
        self._handler.handle(logging.makeLogRecord({"msg": line, "levelno": logging.INFO}))
        if self._stdout:
            self._print(line)

    def _print(self, line: str) -> None:
        try:
            sys.stdout.write(line + "\n")
            sys.stdout.flush()
        except (OSError, ValueError) as exc:  # a closed pipe (`edgeemo | head`) must not stop the daemon
            self._stdout = False
            log.warning("stdout is gone (%s); events go to %s only from now on", exc, self.path)

    def close(self) -> None:
        self._handler.close()


# ------------------------------------------------------------------------------------- Home Assistant

def discovery_payload(device: str, topics: dict[str, str]) -> dict:
    """Home Assistant device-based discovery: one device with two sensors read from the state topic.

    "Emotion" is the first face in view (an enum sensor, so HA offers the labels in automations),
    "Faces" how many are in view; both go unavailable with the availability topic.
    """
    return {
        "device": {"identifiers": [f"edgeemo_{device}"], "name": f"edgeemo {device}",
                   "manufacturer": "edgeemo", "model": "edgeemo", "sw_version": __version__},
        "origin": {"name": "edgeemo", "sw_version": __version__},
        "availability_topic": topics["availability"],
        "state_topic": topics["state"],
        "qos": 1,
        "components": {
            f"{device}_emotion": {
                "platform": "sensor", "name": "Emotion", "unique_id": f"edgeemo_{device}_emotion",
                "device_class": "enum", "options": [*LABELS, "none"], "icon": "mdi:emoticon-outline",
                "value_template": "{{ value_json.faces[0].emotion if value_json.faces else 'none' }}",
            },
            f"{device}_faces": {
                "platform": "sensor", "name": "Faces", "unique_id": f"edgeemo_{device}_faces",
                "state_class": "measurement", "icon": "mdi:account-group",
                "value_template": "{{ value_json.faces | length }}",
            },
        },
    }


# ------------------------------------------------------------------------------------------------- MQTT

class BrokerUrl(NamedTuple):
    host: str
    port: int
    username: str | None
    tls: bool


def parse_broker_url(url: str, tls_enabled: bool = False) -> BrokerUrl:
    """`mqtt://[user@]host[:port]`; `mqtts://` (or tls.enabled) turns TLS on and defaults to port 8883."""
    parsed = urlparse(url)
    tls = parsed.scheme == "mqtts" or tls_enabled
    port = parsed.port or (8883 if tls else 1883)
    username = unquote(parsed.username) if parsed.username else None
    return BrokerUrl(parsed.hostname or "", port, username, tls)


class MqttPublisher:
    """One MQTT connection that never blocks the pipeline and never loses a QoS>0 message.

    paho's network thread connects, reconnects (1 s doubling to 30 s) and keeps QoS>0 messages
    queued while the broker is away, then sends them after the reconnect.
    """

    def __init__(self, cfg: MqttConfig, device_id: str, metrics: Metrics | None = None) -> None:
        if not cfg.url:
            raise ValueError("MqttPublisher needs mqtt.url")
        self.cfg = cfg
        self.device = device_id
        self.metrics = metrics
        self.broker = parse_broker_url(cfg.url, cfg.tls.enabled)
        base = f"{cfg.topic_prefix}/{device_id}"
        self.topics = {"availability": f"{base}/availability", "events": f"{base}/events",
                       "state": f"{base}/state"}
        if cfg.discovery_prefix:
            self.topics |= {"discovery": f"{cfg.discovery_prefix}/device/{device_id}/config",
                            "ha_status": f"{cfg.discovery_prefix}/status"}
        self._outstanding: deque[mqtt.MQTTMessageInfo] = deque()  # QoS>0 messages not yet acknowledged
        self._lock = threading.Lock()
        self._state_sent: list[dict] | None = None  # the faces last published
        self._state_pending: list[dict] | None = None
        self._state_at = -float("inf")           # monotonic time of the last state publish
        self._started = False
        self._first_attempt = threading.Event()  # set once the first connection attempt has an outcome
        self._down_logged = False
        self.client_id = cfg.client_id or f"edgeemo-{device_id}"
        self.client = self._make_client(self.client_id)
        self._set_connected(False)

    def _make_client(self, client_id: str) -> mqtt.Client:
        client = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2, client_id=client_id)
        client.on_log = self._on_log
        client.suppress_exceptions = True  # a bug in a callback must not kill the network thread
        client.max_queued_messages_set(0)  # unlimited: nothing is dropped while the broker is away
        client.reconnect_delay_set(1, 30)
        password = mqtt_password(self.cfg)
        if self.broker.username:
            client.username_pw_set(self.broker.username, password)
        elif password:
            log.warning("an MQTT password was found but mqtt.url has no user@: connecting without credentials")
        if self.broker.tls:
            self._set_tls(client)
        # The will must be set before connecting: the broker stores it with the session.
        client.will_set(self.topics["availability"], "offline", qos=1, retain=True)
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        return client

    def _set_tls(self, client: mqtt.Client) -> None:
        tls = self.cfg.tls
        client.tls_set(ca_certs=str(tls.ca_file) if tls.ca_file else None,
                       certfile=str(tls.cert_file) if tls.cert_file else None,
                       keyfile=str(tls.key_file) if tls.key_file else None)
        if tls.insecure:
            client.tls_insecure_set(True)

    # -- connection life cycle (callbacks run on paho's network thread)

    def start(self) -> None:
        """Connect in the background: a dead broker delays nothing and raises nothing here."""
        log.info("MQTT: connecting to %s:%d as %s (TLS %s)", self.broker.host, self.broker.port,
                 self.client_id, "on" if self.broker.tls else "off")
        self.client.connect_async(self.broker.host, self.broker.port, keepalive=self.cfg.keepalive_s)
        self.client.loop_start()
        self._started = True
        # Wait (briefly) for the first attempt's outcome: events published while paho is still
        # connecting are queued and could be overtaken by the first event published after it.
        self._first_attempt.wait(FIRST_CONNECT_WAIT_S)

    def _on_connect(self, client: mqtt.Client, _userdata: Any, _flags: Any, reason: Any, _props: Any) -> None:
        if reason.is_failure:
            log.error("MQTT: broker %s:%d refused the connection: %s", self.broker.host, self.broker.port, reason)
            self._set_connected(False)
            self._first_attempt.set()
            return
        log.info("MQTT: connected to %s:%d", self.broker.host, self.broker.port)
        self._down_logged = False
        self._set_connected(True)
        self._first_attempt.set()
        # After every (re)connect: the will may have fired, or the broker may have lost its retained state.
        if "discovery" in self.topics:
            client.subscribe(self.topics["ha_status"], qos=1)
            self._publish_discovery()
        client.publish(self.topics["availability"], "online", qos=1, retain=True)

    def _on_message(self, _client: mqtt.Client, _userdata: Any, msg: mqtt.MQTTMessage) -> None:
        """Home Assistant came (back) online: it may have lost our config, so send it again."""
        if msg.topic == self.topics.get("ha_status") and msg.payload == b"online":
            log.info("MQTT: Home Assistant is online; sending discovery to %s", self.topics["discovery"])
            self._publish_discovery()

    def _publish_discovery(self) -> None:
        payload = to_json(discovery_payload(self.device, self.topics))
        self.client.publish(self.topics["discovery"], payload, qos=1, retain=True)

    def _on_connect_fail(self, _client: mqtt.Client, _userdata: Any) -> None:
        self._set_connected(False)
        self._first_attempt.set()
        level = logging.DEBUG if self._down_logged else logging.WARNING
        log.log(level, "MQTT: cannot reach %s:%d; retrying (every 1 s up to 30 s), messages are queued",
                self.broker.host, self.broker.port)
        self._down_logged = True

    def _on_disconnect(self, _client: mqtt.Client, _userdata: Any, _flags: Any, reason: Any, _props: Any) -> None:
        self._set_connected(False)
        if reason.is_failure:
            log.warning("MQTT: lost the connection to %s:%d: %s; reconnecting", self.broker.host,
                        self.broker.port, reason)
        else:
            log.info("MQTT: disconnected from %s:%d", self.broker.host, self.broker.port)

    def _on_log(self, _client: mqtt.Client, _userdata: Any, level: int, message: str) -> None:
        """paho's own messages go to DEBUG, except a crash in one of our callbacks.

        paho reports "Client is not connected" at error level on every reconnect attempt while the
        broker is away; _on_connect_fail already says that once, without the noise.
        """
        if level == mqtt.MQTT_LOG_ERR and message.startswith("Caught exception"):
            log.error("MQTT: %s", message)
        else:
            paho_log.debug("%s", message)

    def _set_connected(self, connected: bool) -> None:
        if self.metrics is not None:
            self.metrics.mqtt_connected.set(1 if connected else 0)

    # -- publishing

    def publish_event(self, payload: dict) -> None:
        self._send(self.topics["events"], to_json(payload), self.cfg.qos, retain=False)

    def publish_state(self, faces: list[dict]) -> None:
        """Retained `{"v","ts","device","faces"}`, only on change and at most once per state_min_interval_s.

        A change inside the interval is kept and goes out on a later call (or at close), so the
        retained state always ends up equal to the last list passed in.
        """
        if faces == self._state_sent:
            self._state_pending = None  # back to what subscribers already have
        else:
            self._state_pending = faces
        if time.monotonic() - self._state_at >= self.cfg.state_min_interval_s:
            self._flush_state()

    def _flush_state(self) -> None:
        if self._state_pending is None:
            return
        faces, self._state_pending = self._state_pending, None
        state = {"v": SCHEMA_VERSION, "ts": iso_utc(), "device": self.device, "faces": faces}
        self._send(self.topics["state"], to_json(state), qos=1, retain=True)
        self._state_sent = faces
        self._state_at = time.monotonic()

    def _send(self, topic: str, payload: str, qos: int, retain: bool) -> None:
        try:
            info = self.client.publish(topic, payload, qos=qos, retain=retain)
        except (ValueError, TypeError) as exc:
            self._count_error(f"{topic}: {exc}")
            return
        if info.rc == mqtt.MQTT_ERR_NO_CONN and qos > 0:
            # paho keeps QoS>0 messages queued and sends them after the reconnect; the rc only says the
            # first attempt found no connection. Clear it so wait_for_publish() waits instead of raising.
            info.rc = mqtt.MQTT_ERR_SUCCESS
        if info.rc == mqtt.MQTT_ERR_NO_CONN:  # QoS 0 while disconnected: dropped, as QoS 0 allows
            self._count_error(f"{topic}: not connected", logging.DEBUG)
        elif info.rc != mqtt.MQTT_ERR_SUCCESS:
            self._count_error(f"{topic}: {mqtt.error_string(info.rc)}")
        elif qos > 0:
            self._track(info)

    def _track(self, info: mqtt.MQTTMessageInfo) -> None:
        """Remember unacknowledged messages so close() can wait for them; forget acknowledged ones."""
        with self._lock:
            self._outstanding.append(info)
            while self._outstanding and self._outstanding[0].is_published():
                self._outstanding.popleft()

    def _count_error(self, what: str, level: int = logging.WARNING) -> None:
        log.log(level, "MQTT: could not queue a message for %s", what)
        if self.metrics is not None:
            self.metrics.mqtt_errors.inc()

    # -- shutdown

    def close(self, timeout: float = 5.0) -> None:
        """Publish the last state and `offline`, wait up to `timeout` s for delivery, disconnect."""
        self._flush_state()
        self._send(self.topics["availability"], "offline", qos=1, retain=True)
        if self._started:
            undelivered = self._wait_delivered(time.monotonic() + timeout)
            if undelivered:
                log.warning("MQTT: %d message(s) not delivered within %.1f s of shutdown", undelivered, timeout)
        self.client.disconnect()
        if self._started:
            self.client.loop_stop()
        self._started = False
        self._set_connected(False)

    def _wait_delivered(self, deadline: float) -> int:
        """Block until every queued QoS>0 message is acknowledged or the deadline passes; returns the rest."""
        with self._lock:
            pending = list(self._outstanding)
        for info in pending:
            info.wait_for_publish(max(0.0, deadline - time.monotonic()))
        with self._lock:
            self._outstanding = deque(info for info in self._outstanding if not info.is_published())
            return len(self._outstanding)


# -------------------------------------------------------------------------------------------- publisher

class Publisher:
    """What the pipeline calls: numbers events, logs them, sends them to MQTT, counts them."""

    def __init__(self, cfg: Config, metrics: Metrics | None = None) -> None:
        self.cfg = cfg
        self.metrics = metrics
        self.event_log = EventLog(cfg.event_log, metrics)
        self.mqtt = MqttPublisher(cfg.mqtt, cfg.device_id, metrics) if cfg.mqtt.url else None
        self._seq = 0  # per device and process; a reconnect never resets it, so gaps show lost events
        self._lock = threading.Lock()

    def start(self) -> None:
        if self.mqtt is not None:
            self.mqtt.start()
        log.info("events go to %s%s%s", self.event_log.path, ", stdout" if self.cfg.event_log.stdout else "",
                 f", MQTT {self.mqtt.topics['events']}" if self.mqtt else "")

    def handle(self, events: list[TrackEvent], present: list[dict] | None = None) -> None:
        """Publish events in order, then (from the face side) the faces visible now (the state topic)."""
        with self._lock:
            for event in events:
                self._seq += 1
                try:
                    self._publish(event_payload(event, self._seq, self.cfg.device_id))
                except Exception:  # one bad event must not stop the pipeline; its seq stays a visible gap
                    log.exception("cannot publish event seq %d (%s, track %s)", self._seq, event.type, event.track)
                    if self.metrics is not None:
                        self.metrics.errors.labels(where="publish").inc()
            if self.mqtt is not None and present is not None:
                self.mqtt.publish_state(present)

    def _publish(self, payload: dict) -> None:
        self.event_log.write(payload)
        if self.mqtt is not None:
            self.mqtt.publish_event(payload)
        if self.metrics is not None:
            self.metrics.events.labels(modality=payload["modality"], type=payload["type"],
                                       emotion=payload["emotion"]).inc()

    def close(self, timeout: float = 5.0) -> None:
        """Flush MQTT (waiting up to `timeout` s for the broker) and close the event log."""
        if self.mqtt is not None:
            self.mqtt.close(timeout)
        self.event_log.close()
