"""Build the event path the daemon runs: the journal, its writer, every sink, and the journal's upkeep.

The one place where sinks are chosen: the JSONL log and stdout always, MQTT when mqtt.url is set, the
dashboard's live feed when the daemon serves a dashboard. Nothing adds itself to the list later.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from edgeemo.config.schema import Config
from edgeemo.journal.store import Journal
from edgeemo.journal.upkeep import JournalUpkeep
from edgeemo.journal.writer import EventWriter
from edgeemo.core.metrics import Metrics
from edgeemo.sinks.base import Sink
from edgeemo.sinks.eventlog import EventLog
from edgeemo.sinks.mqtt.client import MqttPublisher
from edgeemo.sinks.mqtt.sender import MqttSink

log = logging.getLogger(__name__)
MQTT_DRAIN_S = 3.0  # at shutdown; with the pipeline's drain this stays well inside TimeoutStopSec=


@dataclass
class EventPath:
    journal: Journal
    writer: EventWriter
    upkeep: JournalUpkeep
    mqtt: MqttSink | None

    def start(self) -> None:
        self.upkeep.start()
        if self.mqtt is not None:
            self.mqtt.start()

    def stop(self) -> None:
        """Stop the sinks (MQTT delivers for up to MQTT_DRAIN_S), flush the journal, close it."""
        self.writer.flush()  # what waited for the disk, if it takes it now, while the sinks still run
        for sink in self.writer.sinks:
            try:
                sink.stop()
            except Exception:  # one sink's failure must not keep the journal from its last flush
                log.exception("sink %s did not stop cleanly", type(sink).__name__)
        self.upkeep.shutdown()
        self.journal.close()


def open_event_path(cfg: Config, metrics: Metrics | None = None, feed: Sink | None = None) -> EventPath:
    """`feed`: the dashboard's live feed, when the daemon serves one."""
    journal = Journal.open(cfg.journal, metrics)
    mqtt = MqttSink(journal, MqttPublisher(cfg.mqtt, cfg.device_id, metrics, [s.name for s in cfg.sources]),
                    MQTT_DRAIN_S) if cfg.mqtt.url else None
    sinks: list[Sink] = [EventLog(cfg.event_log, metrics), *(s for s in (mqtt, feed) if s is not None)]
    writer = EventWriter(journal, cfg.device_id, sinks, metrics, delivered=mqtt is None)
    return EventPath(journal, writer, JournalUpkeep(journal, metrics, writer.flush), mqtt)
