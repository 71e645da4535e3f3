"""The journal's upkeep, once per `journal.sync_interval_s`: flush to disk, prune, update the gauges."""

from __future__ import annotations

import logging
import threading

from edgeemo.journal.store import Journal
from edgeemo.metrics import Metrics

log = logging.getLogger(__name__)


class JournalUpkeep(threading.Thread):
    """Off the hot path: appends never wait for the disk or for a prune."""

    def __init__(self, journal: Journal, metrics: Metrics | None = None) -> None:
        super().__init__(name="journal-upkeep", daemon=True)
        self.journal, self.metrics = journal, metrics
        self._stopping = threading.Event()

    def run(self) -> None:
        while not self._stopping.wait(self.journal.cfg.sync_interval_s):
            self.tick()

    def tick(self) -> None:
        dropped = self.journal.prune()
        self.journal.sync()
        if dropped:
            log.warning("journal %s is full (journal.max_bytes = %d): dropped the %d oldest undelivered "
                        "event(s)", self.journal.path, self.journal.cfg.max_bytes, dropped)
        if self.metrics is not None:
            self.metrics.events_dropped.labels(reason="journal_full").inc(dropped)
            self.metrics.journal_undelivered.set(self.journal.count_undelivered())
            self.metrics.journal_bytes.set(self.journal.used_bytes())

    def stop(self) -> None:
        self._stopping.set()
        if self.ident is not None:
            self.join(5)
        self.tick()  # the last sync before the journal closes
