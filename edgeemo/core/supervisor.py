"""Supervision: a worker thread that crashes is logged, counted and started again after a back-off.

Every long-running part of the daemon (capture per source, detect, classify, track + publish, audio
capture, voice) is a `Supervised` thread. Its `work()` runs until the job is done (a file ended, the
daemon stopped); an exception out of it is a crash: the traceback goes to the log, it is counted in
`edgeemo_errors_total{where}` and `edgeemo_worker_restarts_total{worker}`, and `work()` is called
again after a capped, doubling wait. The wait starts over once the worker has run without a crash
for `healthy_s`. A worker that may give up (`give_up_after` crashes in a row) ends as `failed`; the
daemon then exits non-zero, so systemd's ``Restart=on-failure`` starts a fresh process. Live sources
never give up: a camera that is away for an hour must be read again when it is back.
"""

from __future__ import annotations

import logging
import threading
import time

from edgeemo.core.metrics import Metrics

log = logging.getLogger(__name__)
INITIAL_BACKOFF_S = 0.1
MAX_BACKOFF_S = 5.0
HEALTHY_S = 10.0


class Backoff:
    """A doubling wait, capped; `reset()` only after a long enough good run (`ran_well`)."""

    def __init__(self, initial_s: float, max_s: float, healthy_s: float = HEALTHY_S) -> None:
        self.initial_s, self.max_s, self.healthy_s = initial_s, max_s, healthy_s
        self.next_s = initial_s

    def wait_s(self) -> float:
        """The wait to take now; the one after it is twice as long, up to the cap."""
        wait, self.next_s = min(self.next_s, self.max_s), min(self.next_s * 2, self.max_s)
        return wait

    def ran(self, seconds: float) -> None:
        """A run that went well for `seconds`: long enough, and the next wait is short again."""
        if seconds >= self.healthy_s:
            self.next_s = self.initial_s


class Supervised(threading.Thread):
    """A daemon thread that calls `work()` until it returns, restarting it after each crash.

    Subclasses implement `work()` and, for clean-up that must run once at the very end, `finished()`.
    `stop` (an Event) cuts a back-off short; `failing` is true while the worker waits to restart.
    """

    give_up_after: int | None = None  # crashes in a row before the worker ends as failed; None: never
    where: str = "pipeline"           # the edgeemo_errors_total{where} a crash counts under

    def __init__(self, name: str, stop: threading.Event, metrics: Metrics | None) -> None:
        super().__init__(name=name, daemon=True)
        self.stop, self.metrics = stop, metrics
        self.backoff = Backoff(INITIAL_BACKOFF_S, MAX_BACKOFF_S)
        self.restarts = 0
        self.failing = False
        self.failed = False
        if metrics is not None:
            metrics.worker_restarts.labels(worker=name)  # pre-exported as 0

    def work(self) -> None:
        raise NotImplementedError

    def finished(self) -> None:
        """Runs once when the thread ends, however it ends."""

    def run(self) -> None:
        crashes = 0
        try:
            while True:
                started = time.monotonic()
                try:
                    self.work()
                    return
                except Exception:
                    self.backoff.ran(time.monotonic() - started)
                    crashes = 1 if time.monotonic() - started >= self.backoff.healthy_s else crashes + 1
                    if not self._restart_after_crash(crashes):
                        return
        finally:
            self.failing = False
            self.finished()

    def _restart_after_crash(self, crashes: int) -> bool:
        """Log the crash (we are inside its `except`), count it and the restart; False when the worker gives up."""
        if self.metrics is not None:
            self.metrics.errors.labels(where=self.where).inc()
        if self.give_up_after is not None and crashes >= self.give_up_after:
            log.exception("worker %s failed %d times in a row; giving up", self.name, crashes)
            self.failed = True
            return False
        self.restarts += 1
        if self.metrics is not None:
            self.metrics.worker_restarts.labels(worker=self.name).inc()
        wait = self.backoff.wait_s()
        log.exception("worker %s failed; restarting in %.1f s", self.name, wait)
        self.failing = True
        stopped = self.stop.wait(wait)
        self.failing = False
        return not stopped
