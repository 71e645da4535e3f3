"""What the pipeline calls: numbers events, logs them, sends them to MQTT, counts them."""

from __future__ import annotations

import logging
import threading

from edgeemo.config import Config
from edgeemo.journal.payload import event_payload
from edgeemo.metrics import Metrics
from edgeemo.sinks.eventlog import EventLog
from edgeemo.sinks.mqtt import MqttPublisher
from edgeemo.types import TrackEvent

log = logging.getLogger(__name__)


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
