"""The journal's upkeep, once per `journal.sync_interval_s`: commit what waits in memory for the disk,
flush to disk, prune, update the gauges. A disk that refuses is logged once, never a crash loop."""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Callable

from edgeemo.journal.storage import diagnose
from edgeemo.journal.store import Journal
from edgeemo.core.metrics import Metrics
from edgeemo.core.supervisor import Supervised

log = logging.getLogger(__name__)


class JournalUpkeep(Supervised):
    """Off the hot path: appends never wait for the disk or for a prune. Supervised like every worker."""

    where = "journal"

    def __init__(self, journal: Journal, metrics: Metrics | None = None,
                 flush: Callable[[], None] | None = None) -> None:
        super().__init__("journal-upkeep", threading.Event(), metrics)
        self.journal, self.flush = journal, flush  # flush: the writer's, so the sinks get what it commits
        self._trouble: str | None = None

    def work(self) -> None:
        while not self.stop.wait(self.journal.cfg.sync_interval_s):
            self.tick()

    def tick(self, flush: bool = True) -> None:
        if flush and self.flush is not None:
            self.flush()
        try:
            self._keep()
        except (OSError, sqlite3.Error) as exc:  # the disk: the journal holds events in memory meanwhile
            reason = diagnose(exc).reason
            if reason != self._trouble:
                log.warning("journal upkeep on %s: %s; trying again every %.0f s", self.journal.path, reason,
                            self.journal.cfg.sync_interval_s)
            self._trouble = reason
        else:
            self._trouble = None
        if self.metrics is not None:
            self.metrics.journal_held.set(len(self.journal.held))
            self.metrics.journal_writable.set(int(self.journal.problem is None))

    def _keep(self) -> None:
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
        self.tick(flush=False)  # the last sync before the journal closes (the sinks have stopped)
