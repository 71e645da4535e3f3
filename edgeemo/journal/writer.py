"""The one writer of events: commit them to the journal (which numbers them), then hand them to every sink.

Delivery is at-least-once: a sink may see an event again after a restart (the MQTT sender resends
what the broker had not acknowledged), and `seq` is the key that tells a repeat from a new event.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence

from edgeemo.core.events import event_payload
from edgeemo.core.types import TrackEvent
from edgeemo.journal.store import Journal
from edgeemo.core.metrics import Metrics
from edgeemo.sinks.base import Sink

log = logging.getLogger(__name__)


class EventWriter:
    """What the pipeline calls, from the track and voice threads alike; `sinks` is fixed at construction."""

    def __init__(self, journal: Journal, device: str, sinks: Sequence[Sink] = (), metrics: Metrics | None = None,
                 delivered: bool = True) -> None:
        self.journal, self.device, self.metrics = journal, device, metrics
        self.delivered = delivered   # True: no sender delivers from the journal, rows count as delivered
        self.sinks: tuple[Sink, ...] = tuple(sinks)
        self.wants_state = any(sink.wants_state for sink in self.sinks)  # else the faces in view need not be built
        self._lock = threading.Lock()

    @property
    def next_track_id(self) -> int:
        """Track and stream ids continue above the journal's, so none is ever reused."""
        return self.journal.last_track + 1

    def handle(self, events: list[TrackEvent], present: list[dict] | None = None) -> None:
        """Commit events in order, then give them (and, from the face side, the faces in view) to the sinks.

        The journal numbers them as it commits; while it cannot write, it holds them and the sinks
        get them once it can (`flush`): no sink ever sees an event the journal does not have.
        """
        with self._lock:
            payloads = self._payloads(events)
            self._count(payloads)
            committed = self.journal.append(payloads, delivered=self.delivered) if payloads else []
            self._publish(committed, present)

    def flush(self) -> None:
        """Commit what the journal holds in memory if the disk takes it now (the upkeep calls this)."""
        with self._lock:
            self._publish(self.journal.flush(self.delivered), None)

    def _publish(self, committed: list[dict], present: list[dict] | None) -> None:
        for sink in self.sinks:
            if committed:
                sink.publish(committed)
            if present is not None:
                sink.state(present)

    def _payloads(self, events: list[TrackEvent]) -> list[dict | None]:
        """Schema-v1 payloads without their seq yet; None for one that cannot be built (a seq gap)."""
        payloads: list[dict | None] = []
        for event in events:
            try:
                payloads.append(event_payload(event, 0, self.device))
            except Exception:  # one bad event must not stop the pipeline; its seq stays a visible gap
                log.exception("cannot publish event (%s, track %s)", event.type, event.track)
                self._count_error("publish")
                payloads.append(None)
        return payloads

    def _count(self, payloads: list[dict | None]) -> None:
        if self.metrics is not None:
            for p in payloads:
                if p is not None:
                    self.metrics.events.labels(modality=p["modality"], type=p["type"], emotion=p["emotion"]).inc()

    def _count_error(self, where: str) -> None:
        if self.metrics is not None:
            self.metrics.errors.labels(where=where).inc()
