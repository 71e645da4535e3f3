"""The MQTT connection, following CONVENTIONS.md.

A retained ``online``/``offline`` availability topic with a Last Will, events that are not retained
and carry a per-device ``seq``, and a retained state topic published only on change. Home Assistant
finds the device by MQTT discovery (one retained device config, sent again whenever Home Assistant
announces itself on ``<discovery_prefix>/status``).
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any, NamedTuple
from urllib.parse import unquote, urlparse

import paho.mqtt.client as mqtt

from edgeemo.config.schema import MqttConfig
from edgeemo.core.events import SCHEMA_VERSION, iso_utc, to_json
from edgeemo.core.metrics import Metrics
from edgeemo.sinks.mqtt.discovery import discovery_payload
from edgeemo.sinks.mqtt.tls import apply_login, apply_tls, connect_error, refusal

log = logging.getLogger(__name__)
paho_log = logging.getLogger(f"{__name__}.paho")

FIRST_CONNECT_WAIT_S = 2.0
RECONNECT_MAX_S = 5      # a broker that is back is found within this: a retry is one cheap TCP connect
WINDOW = 20                # events in flight at once (paho's default max_inflight)
QUEUE_LIMIT = WINDOW + 16  # paho's whole outgoing queue: events plus availability, state, discovery
STATE_KEYS = ("track", "source", "emotion")  # what the retained state holds of each face


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
    """One MQTT connection that never blocks the pipeline, with bounded memory however long the broker is away.

    paho's network thread connects and reconnects (1 s doubling to RECONNECT_MAX_S). Events come from the
    journal sender (sinks.delivery), which publishes only while connected; the retained state is
    published while connected and again after every reconnect.
    """

    def __init__(self, cfg: MqttConfig, device_id: str, metrics: Metrics | None = None,
                 sources: list[str] | tuple[str, ...] = ()) -> None:
        """`sources`: the names of the sources, for their Home Assistant sensors."""
        if not cfg.url:
            raise ValueError("MqttPublisher needs mqtt.url")
        self.cfg = cfg
        self.device = device_id
        self.sources = list(sources)
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
        self._state_sent: dict | None = None     # the state last published (without v, ts, device)
        self._state_pending: dict | None = None
        self._state_at = -float("inf")           # monotonic time of the last state publish
        self._started = False
        self.connected = False
        self.epoch = 0                           # +1 per successful connect: the sender's reconnect signal
        self.on_change: Callable[[], None] | None = None  # connect, disconnect or an acknowledgement
        self._first_attempt = threading.Event()  # set once the first connection attempt has an outcome
        self._down_logged = False
        self.client_id = cfg.client_id or f"edgeemo-{device_id}"
        self.client = self._make_client(self.client_id)
        self._set_connected(False)

    def _make_client(self, client_id: str) -> mqtt.Client:
        client = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2, client_id=client_id)
        client.on_log = self._on_log
        client.suppress_exceptions = True  # a bug in a callback must not kill the network thread
        client.max_inflight_messages_set(WINDOW)
        client.max_queued_messages_set(QUEUE_LIMIT)  # the backlog waits in the journal, not in RAM
        client.reconnect_delay_set(1, RECONNECT_MAX_S)
        if apply_login(client, self.cfg, self.broker.username):
            log.warning("an MQTT password was found but mqtt.url has no user@: connecting without credentials")
        if self.broker.tls:
            self._set_tls(client)
        # The will must be set before connecting: the broker stores it with the session.
        client.will_set(self.topics["availability"], "offline", qos=1, retain=True)
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_publish = lambda *_: self._changed()
        return client

    def _set_tls(self, client: mqtt.Client) -> None:
        """A missing or broken TLS file is a ConfigError naming the key (exit 2 at start-up)."""
        apply_tls(client, self.cfg.tls)

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
            message = refusal(reason, self.broker.host, self.broker.port)
            # One line per new reason; paho retries (1 s doubling to RECONNECT_MAX_S), repeats go to DEBUG.
            log.log(logging.DEBUG if self._down_logged == message else logging.ERROR, "MQTT: %s; retrying", message)
            self._down_logged = message
            self._set_connected(False)
            self._first_attempt.set()
            return
        log.info("MQTT: connected to %s:%d", self.broker.host, self.broker.port)
        self._down_logged = False
        self.epoch += 1
        self._set_connected(True)
        # After every (re)connect: the will may have fired, or the broker may have lost its retained state.
        if "discovery" in self.topics:
            client.subscribe(self.topics["ha_status"], qos=1)
            self._publish_discovery()
        client.publish(self.topics["availability"], "online", qos=1, retain=True)
        with self._lock:  # the broker may have lost the retained state: send the current one again
            self._state_pending = self._state_sent if self._state_pending is None else self._state_pending
            self._state_at = -float("inf")
        self._flush_state()
        self._first_attempt.set()
        self._changed()

    def _on_message(self, _client: mqtt.Client, _userdata: Any, msg: mqtt.MQTTMessage) -> None:
        """Home Assistant came (back) online: it may have lost our config, so send it again."""
        if msg.topic == self.topics.get("ha_status") and msg.payload == b"online":
            log.info("MQTT: Home Assistant is online; sending discovery to %s", self.topics["discovery"])
            self._publish_discovery()

    def _publish_discovery(self) -> None:
        payload = to_json(discovery_payload(self.device, self.topics, self.sources))
        self.client.publish(self.topics["discovery"], payload, qos=1, retain=True)

    def _on_connect_fail(self, _client: mqtt.Client, _userdata: Any) -> None:
        """paho calls this inside its `except OSError` around the connect: sys.exc_info() says why."""
        self._set_connected(False)
        self._first_attempt.set()
        message = connect_error(sys.exc_info()[1], self.broker.host, self.broker.port, self.cfg.tls)
        # _down_logged holds the last failure logged: each new reason once, its repeats at DEBUG.
        tls_problem = message.startswith("TLS")
        level = logging.DEBUG if self._down_logged == message else logging.ERROR if tls_problem else logging.WARNING
        log.log(level, "MQTT: %s; retrying (every 1 s up to %d s), events wait in the journal", message,
                RECONNECT_MAX_S)
        self._down_logged = message

    def _on_disconnect(self, _client: mqtt.Client, _userdata: Any, _flags: Any, reason: Any, _props: Any) -> None:
        self._set_connected(False)
        if reason.is_failure and self._down_logged:  # a refused login closes the socket: already said
            log.debug("MQTT: disconnected from %s:%d: %s", self.broker.host, self.broker.port, reason)
        elif reason.is_failure:
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
        self.connected = connected
        if not connected:
            self._changed()
        if self.metrics is not None:
            self.metrics.mqtt_connected.set(1 if connected else 0)

    # -- publishing

    def _changed(self) -> None:
        if self.on_change is not None:
            self.on_change()

    def publish_event(self, payload_json: str) -> mqtt.MQTTMessageInfo | None:
        """Hand one journaled event to paho; None when paho would not take it (it stays in the journal)."""
        info = self.client.publish(self.topics["events"], payload_json, qos=self.cfg.qos, retain=False)
        if info.rc == mqtt.MQTT_ERR_NO_CONN and self.cfg.qos > 0:
            info.rc = mqtt.MQTT_ERR_SUCCESS  # paho keeps it and sends it after the reconnect
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            self._count_error(f"{self.topics['events']}: {mqtt.error_string(info.rc)}", logging.DEBUG)
            return None
        return info

    def publish_alert(self, alert: dict) -> None:
        """A fired suggestion rule (edgeemo/alert.schema.json) on <prefix>/<device>/alerts, QoS 1."""
        self._send(f"{self.cfg.topic_prefix}/{self.device}/alerts", to_json(alert), qos=1, retain=False)

    def publish_state(self, faces: list[dict], more: dict | None = None) -> None:
        """Retained `{"v","ts","device","faces", **more}`, only on change and at most once per state_min_interval_s.

        Each face keeps its track, source and emotion (the bars change every frame; the label only
        with an event). A change inside the interval, or while disconnected, is kept and goes out
        later (at the latest at the reconnect or at close), so the retained state always ends up
        equal to the last list passed in.
        """
        state = {"faces": [{key: face[key] for key in STATE_KEYS if key in face} for face in faces], **(more or {})}
        with self._lock:
            self._state_pending = None if state == self._state_sent else state
            due = time.monotonic() - self._state_at >= self.cfg.state_min_interval_s
        if due:
            self._flush_state()

    def _flush_state(self) -> None:
        with self._lock:
            if self._state_pending is None or not self.connected:
                return
            body, self._state_pending = self._state_pending, None
            self._state_sent, self._state_at = body, time.monotonic()
        state = {"v": SCHEMA_VERSION, "ts": iso_utc(), "device": self.device, **body}
        self._send(self.topics["state"], to_json(state), qos=1, retain=True)

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
