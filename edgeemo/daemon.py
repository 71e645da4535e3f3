"""The daemon's life: start every part, supervise it, and stop it without losing an event.

SIGTERM / SIGINT stop capture; the frames already read flow through (for up to PIPELINE_DRAIN_S),
remaining tracks get their `end` event, MQTT delivers what it can of the journal's backlog and says
`offline`; the rest stays in the journal for the next start. Under systemd, READY=1 goes out once the
pipeline runs, and WATCHDOG=1 only while frames keep flowing, so a stalled pipeline is restarted.
"""

from __future__ import annotations

import logging
import signal
import threading
import time

from edgeemo.config import Config, redact
from edgeemo.metrics import Metrics
from edgeemo.pipeline import Pipeline
from edgeemo.journal.setup import open_event_path
from edgeemo.sdnotify import SystemdNotifier
from edgeemo.web.server import daemon_dashboard

log = logging.getLogger(__name__)
TICK_S = 0.5
PIPELINE_DRAIN_S = 5.0  # plus the MQTT drain (journal.setup): inside the unit's TimeoutStopSec=


class Daemon:
    def __init__(self, cfg: Config, lossless: bool = False) -> None:
        self.cfg = cfg
        self.metrics = Metrics([s.name for s in cfg.sources], cfg.detector.backend)
        self.events = open_event_path(cfg, self.metrics)
        self.pipeline = Pipeline(cfg, self.metrics, self.events.dispatcher, lossless)
        self.web = daemon_dashboard(cfg, self.events, self.metrics) if cfg.web.enabled and not lossless else None
        self.notifier = SystemdNotifier()
        self.stop_requested = threading.Event()
        self.metrics_port: int | None = None

    def run(self) -> int:
        """Run until every source ends or a signal arrives; returns the exit code."""
        self._install_signal_handlers()
        self.start()
        self.supervise()
        return self.shutdown()

    def start(self) -> None:
        if self.cfg.metrics.enabled:
            self.metrics_port = self.metrics.serve(self.cfg.metrics.host, self.cfg.metrics.port)
            log.info("metrics on http://%s:%d/metrics", self.cfg.metrics.host, self.metrics_port)
        self.events.start()
        if self.web is not None:
            self.web.start()
        self.pipeline.start()
        self.notifier.ready()
        log.info("edgeemo running: device %s, sources %s", self.cfg.device_id,
                 ", ".join(f"{s.name}={redact(s.url)}" for s in self.cfg.sources))

    def supervise(self) -> None:
        """Keep metrics, systemd status and watchdog up to date until the sources end or a stop."""
        watchdog_every = self.notifier.watchdog_interval()
        last_ping = last_tick = time.monotonic()
        last_done = last_progress_count = 0
        last_progress = time.monotonic()
        while self.pipeline.alive() and not self.stop_requested.wait(TICK_S):
            now = time.monotonic()
            done, progress = self.pipeline.frames_done, self.pipeline.progress
            fps = (done - last_done) / max(now - last_tick, 1e-6)
            for source in self.cfg.sources:
                self.metrics.fps.labels(source=source.name).set(fps / len(self.cfg.sources))
            for name, q in self.pipeline.queues.items():
                self.metrics.queue_depth.labels(queue=name).set(q.qsize())
            if progress != last_progress_count:  # frames or audio windows analysed
                last_progress = now
            last_done, last_progress_count, last_tick = done, progress, now
            stalled = now - last_progress > max(s.stall_timeout_s for s in self.cfg.sources)
            if watchdog_every and not stalled and now - last_ping >= watchdog_every:
                self.notifier.watchdog()
                last_ping = now
            self.notifier.status(f"{fps:.1f} frames/s, {done} frames" + (", STALLED" if stalled else ""))

    def shutdown(self) -> int:
        self.notifier.stopping()
        self.pipeline.stop()
        drained = self.pipeline.join(timeout=PIPELINE_DRAIN_S)
        if not drained:
            log.error("pipeline did not drain within %.0f s; some frames were not analysed", PIPELINE_DRAIN_S)
        if self.web is not None:
            self.web.stop()
        self.events.stop()
        self.metrics.close()
        log.info("edgeemo stopped after %d frames", self.pipeline.frames_done)
        return 0 if drained else 1

    def _install_signal_handlers(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return

        def request_stop(signum: int, _frame: object) -> None:
            log.info("received %s, stopping", signal.Signals(signum).name)
            self.stop_requested.set()

        signal.signal(signal.SIGTERM, request_stop)
        signal.signal(signal.SIGINT, request_stop)
