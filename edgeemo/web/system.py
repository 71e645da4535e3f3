"""The System page's figures, read from the daemon's Prometheus registry (no second bookkeeping),
and the last hour of them: a ring of samples taken every SAMPLE_S by one supervised thread, so the
page can draw charts without a time-series database."""

from __future__ import annotations

import json
import os
import threading
import time
from collections import deque
from collections.abc import Callable

from edgeemo import __version__
from edgeemo.config.schema import Config
from edgeemo.core.metrics import STAGES, Metrics
from edgeemo.core.resources import resolve_model
from edgeemo.core.supervisor import Supervised
from edgeemo.web.feed import LiveFeed

SAMPLE_S = 5.0
HOUR_SAMPLES = int(3600 / SAMPLE_S)

_cpu = {"wall": time.monotonic(), "cpu": time.process_time()}


def cpu_cores() -> float:
    """The process's CPU use in cores since the previous call (the page polls every few seconds)."""
    wall, cpu = time.monotonic(), time.process_time()
    used = (cpu - _cpu["cpu"]) / max(wall - _cpu["wall"], 1e-6)
    _cpu.update(wall=wall, cpu=cpu)
    return round(used, 3)


class SystemHistory(Supervised):
    """Samples the registry every `every_s` into a ring of the last hour; `series()` is what the page charts."""

    def __init__(self, cfg: Config, metrics: Callable[[], Metrics | None], every_s: float = SAMPLE_S) -> None:
        super().__init__("system-history", threading.Event(), None)
        self.sources = [s.name for s in cfg.sources]
        self.metrics, self.every_s = metrics, every_s
        self.ring: deque[dict] = deque(maxlen=int(3600 / every_s))
        self._last: dict = {"wall": time.monotonic(), "cpu": time.process_time(), "sums": {}}
        self._lock = threading.Lock()

    def work(self) -> None:
        while True:
            self.sample()
            if self.stop.wait(self.every_s):
                return

    def sample(self) -> None:
        with self._lock:
            self._sample()

    def _sample(self) -> None:
        wall, cpu = time.monotonic(), time.process_time()
        last, sums = self._last, {}
        point: dict = {"t": round(time.time(), 1), "cpu": round((cpu - last["cpu"]) / max(wall - last["wall"], 1e-6), 3)}
        metrics = self.metrics()
        if metrics is not None:
            value = metrics.registry.get_sample_value
            point["fps"] = {s: value("edgeemo_processing_fps", {"source": s}) for s in self.sources}
            point["backlog"] = value("edgeemo_journal_undelivered_events")
            for stage in STAGES:
                sums[stage] = histogram(value, "edgeemo_stage_duration_seconds", {"stage": stage})
            sums["lag"] = histogram(value, "edgeemo_delivery_lag_seconds", {})
            means = {k: interval_mean_ms(v, last["sums"].get(k)) for k, v in sums.items()}
            point["stages_ms"] = {stage: means[stage] for stage in STAGES}
            point["lag_ms"] = means["lag"]
        self._last = {"wall": wall, "cpu": cpu, "sums": sums}
        self.ring.append(point)

    def series(self) -> dict:
        """The ring as columns: t, cpu, backlog, lag_ms, fps[source], stages_ms[stage] (None: no data then)."""
        points = list(self.ring)
        column = lambda key, sub=None: [p.get(key) if sub is None else (p.get(key) or {}).get(sub) for p in points]  # noqa: E731
        return {"every_s": self.every_s, "t": column("t"), "cpu": column("cpu"), "backlog": column("backlog"),
                "lag_ms": column("lag_ms"), "fps": {s: column("fps", s) for s in self.sources},
                "stages_ms": {stage: column("stages_ms", stage) for stage in STAGES}}

    def close(self) -> None:
        self.stop.set()
        if self.is_alive():
            self.join(5)


def histogram(value, name: str, labels: dict) -> tuple[float, float]:
    return (value(f"{name}_sum", labels) or 0.0, value(f"{name}_count", labels) or 0.0)


def interval_mean_ms(now: tuple[float, float], before: tuple[float, float] | None) -> float | None:
    """The mean in ms of what a histogram observed since the previous sample; None when nothing came."""
    total, count = now[0] - (before or (0, 0))[0], now[1] - (before or (0, 0))[1]
    return round(1000 * total / count, 2) if count > 0 else None


def system_report(cfg: Config, metrics: Metrics | None, feed: LiveFeed) -> dict:
    report = {"version": __version__, "device": cfg.device_id, "cpu_cores": cpu_cores(), "cpu_count": os.cpu_count(),
              "models": models(cfg), "live_clients": feed.listeners, "mqtt": {"enabled": cfg.mqtt.url is not None}}
    if metrics is None:
        return report
    value = metrics.registry.get_sample_value
    now = time.time()
    report["sources"] = [{
        "name": s.name, "url": s.url,
        "fps": value("edgeemo_processing_fps", {"source": s.name}),
        "frames": value("edgeemo_frames_total", {"source": s.name}),
        "dropped": value("edgeemo_frames_dropped_total", {"source": s.name, "reason": "backlog"}),
        "reconnects": value("edgeemo_camera_reconnects_total", {"source": s.name}),
        "tracks": value("edgeemo_tracks_active", {"source": s.name}),
        "last_frame_age_s": age(value("edgeemo_last_frame_timestamp_seconds", {"source": s.name}), now),
        "up": value("edgeemo_source_up", {"source": s.name}) == 1,
    } for s in cfg.sources]
    report["journal"] = {"undelivered": value("edgeemo_journal_undelivered_events"),
                         "bytes": value("edgeemo_journal_bytes"),
                         "writable": bool(value("edgeemo_journal_writable")),
                         "held_in_memory": value("edgeemo_journal_held_events"),
                         "dropped_storage": value("edgeemo_events_dropped_total", {"reason": "storage"})}
    report["stages_ms"] = {stage: mean_ms(value, stage) for stage in STAGES}
    report["queues"] = {sample.labels["queue"]: sample.value for family in metrics.registry.collect()
                        if family.name == "edgeemo_queue_depth" for sample in family.samples}
    report["mqtt"] |= {"connected": bool(value("edgeemo_mqtt_connected")),
                       "publish_errors": value("edgeemo_mqtt_publish_errors_total")}
    return report


def mean_ms(value, stage: str) -> float | None:
    count = value("edgeemo_stage_duration_seconds_count", {"stage": stage}) or 0
    total = value("edgeemo_stage_duration_seconds_sum", {"stage": stage}) or 0
    return round(1000 * total / count, 2) if count else None


def age(stamp: float | None, now: float) -> float | None:
    return round(now - stamp, 1) if stamp else None


def models(cfg: Config) -> dict[str, str]:
    """Each model as configured, with the model card's name where there is a card."""
    out = {"detector": cfg.detector.model}
    for key, name in (("face", cfg.classifier.model), ("voice", cfg.voice.model)):
        try:
            card = json.loads(resolve_model(name, cfg.models_dir).read_text())
            out[key] = f"{name} ({card.get('name', '?')})"
        except (OSError, ValueError):
            out[key] = name
    return out
