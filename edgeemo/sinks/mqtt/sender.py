"""Store and forward: one sender delivers the journal to MQTT in `seq` order.

The backlog lives on disk, not in RAM: the sender hands paho at most `WINDOW` events at a time and
only while connected, and marks a row delivered once paho reports it sent (QoS 0) or acknowledged
(PUBACK, QoS 1; PUBCOMP, QoS 2). After a reconnect paho re-sends the events that were in flight;
nothing newer goes out until they are acknowledged, so no event overtakes an older one. After a
restart the sender starts from the oldest undelivered row, the previous run's included.
"""

from __future__ import annotations

import logging
import threading
import time

import paho.mqtt.client as mqtt

from edgeemo.journal.store import Journal
from edgeemo.core.metrics import Metrics
from edgeemo.core.supervisor import Supervised
from edgeemo.sinks.mqtt.client import WINDOW, MqttPublisher
from edgeemo.sinks.mqtt.state import StateBook

log = logging.getLogger(__name__)
POLL_S = 0.5  # the sender also wakes on every commit, connect, disconnect and acknowledgement


class JournalSender(Supervised):
    """Reads undelivered rows in seq order and publishes them; a row is done when paho says so.

    Supervised: a crash (a failing disk, say) restarts it; its in-flight list survives the restart.
    """

    where = "publish"

    def __init__(self, journal: Journal, mqtt_out: MqttPublisher, metrics: Metrics | None = None) -> None:
        super().__init__("mqtt-sender", threading.Event(), metrics)
        self.journal, self.mqtt = journal, mqtt_out
        self._inflight: list[tuple[int, mqtt.MQTTMessageInfo]] = []
        self._cursor = 0       # highest seq handed to paho
        self._epoch = -1       # the connection the in-flight events were sent on
        self._wake = threading.Event()
        mqtt_out.on_change = self._wake.set

    def wake(self) -> None:
        self._wake.set()

    def work(self) -> None:
        while not self.stop.is_set():
            self._wake.wait(POLL_S)
            self._wake.clear()
            self.step()

    def step(self) -> None:
        """Record acknowledgements, then send as much as the window allows."""
        self._collect_acks()
        if not self.mqtt.connected:
            return
        if self.mqtt.epoch != self._epoch:
            if self._inflight:  # paho re-sends these after the reconnect; nothing newer may overtake them
                return
            self._epoch = self.mqtt.epoch
        self._send_more()

    def _collect_acks(self) -> None:
        done = [seq for seq, info in self._inflight if info.is_published()]
        if done:
            self._inflight = [(seq, info) for seq, info in self._inflight if not info.is_published()]
            self.journal.mark_delivered(done)

    def _send_more(self) -> None:
        room = WINDOW - len(self._inflight)
        if room <= 0:
            return
        for row in self.journal.undelivered(self._cursor, room):
            info = self.mqtt.publish_event(row.payload)
            if info is None:  # paho refused it (its queue is full): the row waits in the journal
                return
            self._inflight.append((row.seq, info))
            self._cursor = row.seq

    def shutdown(self, timeout: float) -> int:
        """Stop the thread, then deliver what can be delivered before `timeout` s; returns what is left."""
        deadline = time.monotonic() + timeout
        self.stop.set()
        self._wake.set()
        if self.ident is not None:
            self.join(max(0.0, deadline - time.monotonic()))
        while time.monotonic() < deadline and self.mqtt.connected:
            self.step()
            if not self._inflight and not self.journal.undelivered(self._cursor, 1):
                break
            self._wake.wait(0.05)
            self._wake.clear()
        self._collect_acks()
        return self.journal.count_undelivered()


class MqttSink:
    """The MQTT sink: events through the journal sender, the faces in view as the retained state."""

    wants_state = True

    def __init__(self, journal: Journal, mqtt_out: MqttPublisher, drain_s: float) -> None:
        self.mqtt, self.drain_s = mqtt_out, drain_s
        self.sender = JournalSender(journal, mqtt_out, mqtt_out.metrics)
        self.book = StateBook(mqtt_out.sources)

    def start(self) -> None:
        self.mqtt.start()
        self.sender.start()

    def publish(self, events: list[dict]) -> None:
        self.sender.wake()
        if self.book.see_events(events):  # a voice or fused reading changed: the state says so
            self.mqtt.publish_state(self.book.faces, self.book.body())

    def state(self, faces: list[dict]) -> None:
        self.book.faces = faces
        self.mqtt.publish_state(faces, self.book.body())

    def stop(self) -> None:
        """Deliver the backlog for up to `drain_s` s; what is left stays in the journal for the next start."""
        left = self.sender.shutdown(self.drain_s)
        if left:
            log.warning("MQTT: %d event(s) not delivered at shutdown; they stay in the journal and go out "
                        "first at the next start", left)
        self.mqtt.close(timeout=1.0)
