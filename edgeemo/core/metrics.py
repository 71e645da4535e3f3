"""Prometheus metrics, named after prometheus.io practice: `edgeemo_` prefix, base units, `_total`.

Labels have small fixed sets of values (stage, source, type, emotion, modality, reason); never a track id.
Voice inference latency is `edgeemo_stage_duration_seconds{stage="voice"}` (features + model per window);
fused events are `edgeemo_events_total{modality="fused"}`.
Every series that can be known up front is pre-exported as zero so dashboards see it from the start.
"""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import (CollectorRegistry, Counter, Gauge, Histogram, Info, ProcessCollector,
                               disable_created_metrics, start_http_server)

from edgeemo import LABELS, __version__
from edgeemo.config.schema import ConfigError

# A `_created` timestamp beside every counter and histogram (148 series) is noise on a small device.
disable_created_metrics()

STAGES = ("capture", "detect", "classify", "track", "publish", "voice")
EVENT_TYPES = ("start", "change", "update", "end")
MODALITIES = ("face", "voice", "fused")
DELIVERY_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0, 60.0, 300.0, 3600.0, 86400.0)
LATENCY_BUCKETS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0)



@dataclass(frozen=True)
class SourceMetrics:
    """One source's children of the metrics the pipeline moves on every frame, looked up once."""

    frames_processed: Counter
    faces: Counter
    tracks_active: Gauge


class Metrics:
    """All of the daemon's metrics in one registry of their own (so tests can run several daemons)."""

    def __init__(self, sources: list[str], backend: str) -> None:
        self.registry = registry = CollectorRegistry()
        ProcessCollector(registry=registry)  # process_cpu_seconds_total & co., for the Grafana board's CPU
        self.frames = Counter("edgeemo_frames", "Frames read from a source", ["source"], registry=registry)
        self.frames_processed = Counter("edgeemo_frames_processed", "Frames that went through detection",
                                        ["source"], registry=registry)
        self.frames_dropped = Counter("edgeemo_frames_dropped", "Frames dropped before analysis",
                                      ["source", "reason"], registry=registry)
        self.fps = Gauge("edgeemo_processing_fps", "Frames processed per second over the last seconds",
                         ["source"], registry=registry)
        self.stage_seconds = Histogram("edgeemo_stage_duration_seconds", "Time spent per frame in a stage",
                                       ["stage"], buckets=LATENCY_BUCKETS, registry=registry)
        self.latency = Histogram("edgeemo_capture_to_publish_seconds",
                                 "From frame capture to its events leaving the publisher",
                                 buckets=LATENCY_BUCKETS, registry=registry)
        self.faces = Counter("edgeemo_faces", "Faces found in the frames analysed (two faces in one frame "
                             "count 2; a face in view on N frames counts N)", ["source"], registry=registry)
        self.events = Counter("edgeemo_events", "Events published", ["modality", "type", "emotion"],
                              registry=registry)
        self.tracks_active = Gauge("edgeemo_tracks_active", "Reported face tracks present now", ["source"],
                                   registry=registry)
        self.reconnects = Counter("edgeemo_camera_reconnects", "Source reopen attempts", ["source"],
                                  registry=registry)
        self.audio_reopens = Counter("edgeemo_audio_reopens", "Reopen attempts of a lost microphone or sound stream",
                                     ["source"], registry=registry)
        self.source_up = Gauge("edgeemo_source_up", "1 while a video source delivers frames (within its "
                               "stall_timeout_s)", ["source"], registry=registry)
        self.worker_restarts = Counter("edgeemo_worker_restarts", "Worker threads restarted after a crash",
                                       ["worker"], registry=registry)
        self.last_frame = Gauge("edgeemo_last_frame_timestamp_seconds", "Unix time of the last frame read",
                                ["source"], registry=registry)
        self.queue_depth = Gauge("edgeemo_queue_depth", "Items waiting in a stage queue", ["queue"],
                                 registry=registry)
        self.mqtt_connected = Gauge("edgeemo_mqtt_connected", "1 while connected to the MQTT broker",
                                    registry=registry)
        self.mqtt_errors = Counter("edgeemo_mqtt_publish_errors", "MQTT publishes that failed to queue",
                                   registry=registry)
        self.audio_samples = Counter("edgeemo_audio_samples", "Audio samples captured (16 kHz mono)", ["source"],
                                     registry=registry)
        self.audio_dropped = Counter("edgeemo_audio_samples_dropped",
                                     "Audio samples lost: backlog = analysis fell behind (ring overrun), "
                                     "device = the microphone's buffer overflowed", ["source", "reason"],
                                     registry=registry)
        self.speech_ratio = Gauge("edgeemo_speech_ratio", "Share of the last analysed audio window that was speech",
                                  ["source"], registry=registry)
        self.events_dropped = Counter("edgeemo_events_dropped", "Events lost before delivery: journal_full = "
                                      "the journal reached journal.max_bytes with undelivered events; storage = "
                                      "the disk would not take them and journal.memory_bound was reached",
                                      ["reason"], registry=registry)
        self.journal_undelivered = Gauge("edgeemo_journal_undelivered_events",
                                         "Events in the journal that MQTT has not delivered yet", registry=registry)
        self.journal_writable = Gauge("edgeemo_journal_writable", "1 while the journal can be written; 0: the disk "
                                      "is full, read-only or failing and events wait in memory", registry=registry)
        self.journal_held = Gauge("edgeemo_journal_held_events", "Events waiting in memory for the disk "
                                  "(at most journal.memory_bound)", registry=registry)
        self.journal_bytes = Gauge("edgeemo_journal_bytes", "Bytes the journal's rows take on disk",
                                   registry=registry)
        self.delivery_lag = Histogram("edgeemo_delivery_lag_seconds",
                                      "From an event's commit to the journal to its delivery to the broker",
                                      buckets=DELIVERY_BUCKETS, registry=registry)
        self.errors = Counter("edgeemo_errors", "Errors by where they happened", ["where"], registry=registry)
        # An Info metric: `# TYPE edgeemo_build info` in OpenMetrics, a gauge of 1 in the classic text format.
        self.build = Info("edgeemo_build", "Version and inference backend", registry=registry)
        self.build.info({"version": __version__, "backend": backend})
        self._pre_export(sources)

    def _pre_export(self, sources: list[str]) -> None:
        for source in sources:
            self.audio_samples.labels(source=source)
            self.speech_ratio.labels(source=source)
            for reason in ("backlog", "device"):
                self.audio_dropped.labels(source=source, reason=reason)
            for metric in (self.frames, self.frames_processed, self.faces, self.reconnects, self.audio_reopens,
                           self.source_up):
                metric.labels(source=source)
            for reason in ("backlog", "idle"):
                self.frames_dropped.labels(source=source, reason=reason)
            self.fps.labels(source=source)
            self.tracks_active.labels(source=source)
        for stage in STAGES:
            self.stage_seconds.labels(stage=stage)
        for modality in MODALITIES:
            for kind in EVENT_TYPES:
                for emotion in LABELS:
                    self.events.labels(modality=modality, type=kind, emotion=emotion)
        self.events_dropped.labels(reason="journal_full")
        self.events_dropped.labels(reason="storage")
        self.journal_writable.set(1)
        for where in ("capture", "pipeline", "publish", "journal", "event_log", "audio", "voice"):
            self.errors.labels(where=where)

    def source(self, name: str) -> SourceMetrics:
        return SourceMetrics(self.frames_processed.labels(source=name), self.faces.labels(source=name),
                             self.tracks_active.labels(source=name))

    def serve(self, host: str, port: int) -> int:
        """Start the /metrics HTTP endpoint; returns the bound port (useful with port 0)."""
        try:
            server, _thread = start_http_server(port, addr=host, registry=self.registry)
        except OSError as exc:  # a busy port or an unknown host: the user's to fix (exit 2)
            raise ConfigError(f"cannot serve metrics on {host}:{port}: {exc.strerror or exc} "
                              f"(metrics.host, metrics.port)") from None
        self._server = server
        return server.server_address[1]

    def close(self) -> None:
        server = getattr(self, "_server", None)
        if server is not None:
            server.shutdown()
            server.server_close()
