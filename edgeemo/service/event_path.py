"""Build the event path the daemon runs: the journal, its dispatcher, its sinks and its upkeep."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from edgeemo.config.schema import Config
from edgeemo.journal.writer import Dispatcher
from edgeemo.journal.store import Journal
from edgeemo.journal.upkeep import JournalUpkeep
from edgeemo.service.metrics import Metrics
from edgeemo.sinks.mqtt.sender import MqttSink
from edgeemo.sinks.eventlog import EventLog
from edgeemo.sinks.mqtt.client import MqttPublisher

log = logging.getLogger(__name__)
MQTT_DRAIN_S = 3.0  # at shutdown; with the pipeline's drain this stays well inside TimeoutStopSec=


@dataclass
class EventPath:
    journal: Journal
    dispatcher: Dispatcher
    upkeep: JournalUpkeep
    mqtt: MqttSink | None

    def start(self) -> None:
        self.upkeep.start()
        if self.mqtt is not None:
            self.mqtt.start()

    def stop(self) -> None:
        """Stop the sinks (MQTT delivers for up to MQTT_DRAIN_S), flush the journal, close it."""
        for sink in self.dispatcher.sinks:
            try:
                sink.stop()
            except Exception:  # one sink's failure must not keep the journal from its last flush
                log.exception("sink %s did not stop cleanly", type(sink).__name__)
        self.upkeep.shutdown()
        self.journal.close()


def open_event_path(cfg: Config, metrics: Metrics | None = None) -> EventPath:
    journal = Journal.open(cfg.journal, metrics)
    mqtt = MqttSink(journal, MqttPublisher(cfg.mqtt, cfg.device_id, metrics), MQTT_DRAIN_S) if cfg.mqtt.url else None
    dispatcher = Dispatcher(journal, cfg.device_id, metrics, delivered=mqtt is None)
    dispatcher.add_sink(EventLog(cfg.event_log, metrics))
    if mqtt is not None:
        dispatcher.add_sink(mqtt)
    return EventPath(journal, dispatcher, JournalUpkeep(journal, metrics), mqtt)
