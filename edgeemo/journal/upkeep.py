"""The journal's upkeep, once per `journal.sync_interval_s`: flush to disk, prune, update the gauges."""

from __future__ import annotations

import logging
import threading

from edgeemo.journal.store import Journal
from edgeemo.core.metrics import Metrics
from edgeemo.core.supervisor import Supervised

log = logging.getLogger(__name__)


class JournalUpkeep(Supervised):
    """Off the hot path: appends never wait for the disk or for a prune. Supervised like every worker."""

    where = "journal"

    def __init__(self, journal: Journal, metrics: Metrics | None = None) -> None:
        super().__init__("journal-upkeep", threading.Event(), metrics)
        self.journal = journal

    def work(self) -> None:
        while not self.stop.wait(self.journal.cfg.sync_interval_s):
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

    def shutdown(self) -> None:
        self.stop.set()
        if self.ident is not None:
            self.join(5)
        self.tick()  # the last sync before the journal closes
