"""The daemon's life: start every part, supervise it, and stop it without losing an event.

SIGTERM / SIGINT stop capture; the frames already read flow through (for up to PIPELINE_DRAIN_S),
remaining tracks get their `end` event, MQTT delivers what it can of the journal's backlog and says
`offline`; the rest stays in the journal for the next start. Under systemd, READY=1 goes out once the
pipeline runs, and WATCHDOG=1 only while frames keep flowing, so a stalled pipeline is restarted.
"""

from __future__ import annotations

import gc
import logging
import os
import signal
import sys
import threading
import time

from edgeemo.config.redact import redact
from edgeemo.config.schema import Config
from edgeemo.core.memory import keep_freed_memory
from edgeemo.core.metrics import Metrics
from edgeemo.pipeline.pipeline import Pipeline
from edgeemo.service.event_path import open_event_path
from edgeemo.service.sdnotify import SystemdNotifier
from edgeemo.web.feed import LiveFeed
from edgeemo.web.server import WebServer

log = logging.getLogger(__name__)
TICK_S = 0.5
PIPELINE_DRAIN_S = 5.0  # plus the MQTT drain (service.event_path): inside the unit's TimeoutStopSec=


class Daemon:
    def __init__(self, cfg: Config, lossless: bool = False) -> None:
        keep_freed_memory()  # the analysis frees and makes the same arrays on every frame and voice window
        self.cfg = cfg
        self.lossless = lossless  # a batch run (--once): no metrics endpoint, no dashboard
        self.metrics = Metrics([s.name for s in cfg.sources], cfg.detector.backend)
        feed = LiveFeed() if cfg.web.enabled and not lossless else None  # the dashboard's sink
        self.events = open_event_path(cfg, self.metrics, feed)
        self.pipeline = Pipeline(cfg, self.metrics, self.events.writer, lossless)
        self.web = self._dashboard(feed) if feed is not None else None
        if self.web is not None and self.web.preview is not None:
            self.pipeline.frame_observers.append(self.web.preview.offer)
        self.notifier = SystemdNotifier()
        self.stop_requested = threading.Event()
        self.metrics_port: int | None = None

    def _dashboard(self, feed: LiveFeed) -> WebServer:
        """The dashboard reads the journal, shows `feed` (one of the event path's sinks), sends alerts over MQTT."""
        mqtt = self.events.mqtt.mqtt if self.events.mqtt is not None else None
        return WebServer(self.cfg, self.events.journal, feed, self.metrics, mqtt.publish_alert if mqtt else None)

    def run(self) -> int:
        """Run until every source ends or a signal arrives; returns the exit code."""
        self._install_signal_handlers()
        self.start()
        self.supervise()
        code = self.shutdown()
        if self.pipeline.left_behind():
            # A capture is still blocked inside FFmpeg (a frozen stream). The interpreter's teardown
            # would pull objects from under it and can crash the process at exit (SIGSEGV); all is
            # flushed and closed by now, so end the process here instead.
            logging.shutdown()
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
        # The process exits next: everything is flushed and closed, so spare the interpreter's final
        # garbage collection of the models and buffers (a large part of the stop budget on a small board).
        gc.freeze()
        return code

    def start(self) -> None:
        if self.cfg.metrics.enabled and not self.lossless:
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
        """Keep metrics, systemd status and watchdog up to date until the sources end, a stop, or a failure.

        The watchdog is fed only while every video source delivers frames, the frames get analysed,
        and no worker is crashing: a frozen camera or a dead stage gets the service restarted.
        """
        watchdog_every = self.notifier.watchdog_interval()
        last_ping = last_tick = last_progress = time.monotonic()
        last_done, last_by_source = 0, dict(self.pipeline.frames_by_source)
        stall_s = max(s.stall_timeout_s for s in self.cfg.sources)
        while self.pipeline.alive() and not self.pipeline.failed and not self.stop_requested.wait(TICK_S):
            now, done = time.monotonic(), self.pipeline.frames_done
            elapsed = max(now - last_tick, 1e-6)
            fps = (done - last_done) / elapsed
            if done != last_done:
                last_progress = now
            by_source = dict(self.pipeline.frames_by_source)
            for name, count in by_source.items():
                self.metrics.fps.labels(source=name).set((count - last_by_source[name]) / elapsed)
            last_done, last_by_source, last_tick = done, by_source, now
            for name, q in self.pipeline.queues.items():
                self.metrics.queue_depth.labels(queue=name).set(q.qsize())
            health = self.pipeline.health()
            for name, up in health.items():
                self.metrics.source_up.labels(source=name).set(int(up))
            analysing = now - last_progress <= stall_s
            if watchdog_every and analysing and self.pipeline.healthy() and now - last_ping >= watchdog_every:
                self.notifier.watchdog()
                last_ping = now
            self.notifier.status(status_line(fps, done, health, analysing, self.pipeline.restarts,
                                             self.events.journal.status()))
        if self.pipeline.failed:
            log.error("a pipeline stage keeps failing; exiting so that the service is restarted")

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


def status_line(fps: float, done: int, health: dict[str, bool], analysing: bool, restarts: int,
                journal: str = "") -> str:
    """`systemctl status` in one line: throughput, each video source up or down, worker restarts, and the
    journal when its disk cannot be written."""
    sources = ", ".join(f"{name} {'up' if up else 'DOWN'}" for name, up in health.items())
    return (f"{fps:.1f} frames/s, {done} frames" + (f"; sources: {sources}" if sources else "")
            + ("" if analysing else "; STALLED") + (f"; {restarts} worker restarts" if restarts else "")
            + (f"; {journal}" if journal else ""))
