"""The System page's figures, read from the daemon's Prometheus registry (no second bookkeeping)."""

from __future__ import annotations

import json
import os
import time

from edgeemo import __version__
from edgeemo.config.schema import Config
from edgeemo.core.metrics import STAGES, Metrics
from edgeemo.core.resources import resolve_model
from edgeemo.web.feed import LiveFeed

_cpu = {"wall": time.monotonic(), "cpu": time.process_time()}


def cpu_cores() -> float:
    """The process's CPU use in cores since the previous call (the page polls every few seconds)."""
    wall, cpu = time.monotonic(), time.process_time()
    used = (cpu - _cpu["cpu"]) / max(wall - _cpu["wall"], 1e-6)
    _cpu.update(wall=wall, cpu=cpu)
    return round(used, 3)


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
    } for s in cfg.sources]
    report["stages_ms"] = {stage: mean_ms(value, stage) for stage in STAGES}
    report["queues"] = {sample.labels["queue"]: sample.value for family in metrics.registry.collect()
                        if family.name == "edgeemo_queue_depth" for sample in family.samples}
    report["mqtt"] |= {"connected": bool(value("edgeemo_mqtt_connected")),
                       "publish_errors": value("edgeemo_mqtt_publish_errors_total")}
    report["journal"] = {"writable": bool(value("edgeemo_journal_writable")),
                         "held_in_memory": value("edgeemo_journal_held_events"),
                         "dropped_storage": value("edgeemo_events_dropped_total", {"reason": "storage"}),
                         "undelivered": value("edgeemo_journal_undelivered_events")}
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
