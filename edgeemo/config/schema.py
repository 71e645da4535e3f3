"""The daemon's one YAML file, parsed into typed, validated settings at start-up.

Unknown keys, wrong types and impossible values stop start-up with a message naming the key path
(``mqtt.qos``) and what is allowed, so a typo never silently falls back to a default.
Every key is documented in ``config/edgeemo.yaml``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal
from urllib.parse import urlparse

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

ID_PATTERN = r"^[a-zA-Z0-9_-]+$"
STREAM_SCHEMES = ("rtsp", "rtsps", "http", "https", "rtmp", "udp", "tcp")  # what sources.spec.parse_source opens as a stream


class ConfigError(Exception):
    """A configuration problem, worded for the person who wrote the file."""


class Section(BaseModel):
    # A bare number where a word is expected is that word (`url: 0` is camera "0", `name: 1` is "1").
    model_config = ConfigDict(extra="forbid", validate_assignment=True, coerce_numbers_to_str=True)


class SourceConfig(Section):
    name: str = Field("default", pattern=ID_PATTERN)
    url: str | None = None  # none: the daemon refuses to start (never a stranger's face by default)
    max_fps: float | None = Field(None, gt=0)
    reconnect_initial_s: float = Field(1.0, gt=0)
    reconnect_max_s: float = Field(2.0, gt=0)
    stall_timeout_s: float = Field(10.0, gt=0)
    # auto: the source's own sound (a video file's or stream's audio track, an audio file);
    # off; mic: the microphone of the `microphone` section; or a WAV/FLAC file or stream URL.
    audio: str = Field("auto", min_length=1)
    # The password of the url's user@, kept out of the YAML (see source_password).
    password_file: Path | None = None

    @field_validator("audio", mode="before")
    @classmethod
    def _audio_off(cls, audio: object) -> object:
        """`audio: false` (or a YAML 1.1 `no` that came through as a boolean) means off."""
        return "off" if audio is False else audio

    @field_validator("url")
    @classmethod
    def _stream_url(cls, url: str | None) -> str | None:
        """A stream URL without a host or with an impossible port would be retried forever."""
        if url is None:
            return url
        parsed = urlparse(url)
        if parsed.scheme not in STREAM_SCHEMES:
            return url
        if not parsed.hostname:
            raise ValueError(f"a stream URL needs a host ({parsed.scheme}://[user@]host[:port]/...)")
        try:
            port = parsed.port
        except ValueError:
            port = 0
        if port is not None and not 1 <= port <= 65535:
            raise ValueError("port must be a number from 1 to 65535")
        return url


class MotionConfig(Section):
    enabled: bool = True
    height: int = Field(100, ge=16, le=1080)
    alpha: float = Field(0.05, gt=0, le=1)
    threshold: int = Field(25, ge=1, le=255)
    min_area: float = Field(0.002, ge=0, le=1)
    lighting_fraction: float = Field(0.5, gt=0, le=1)
    every: int = Field(5, ge=1, le=100)


class DetectorConfig(Section):
    model: str = "yunet_s_dynamic.onnx"
    backend: Literal["onnxruntime", "openvino"] = "onnxruntime"
    threads: int = Field(1, ge=1, le=64)
    input_width: int = Field(320, ge=64, le=3840, multiple_of=32)
    score_threshold: float = Field(0.75, gt=0, lt=1)
    nms_threshold: float = Field(0.3, gt=0, lt=1)
    min_face_px: int = Field(24, ge=8)
    max_faces: int = Field(16, ge=1, le=256)
    full_frame_every: int = Field(10, ge=1, le=1000)
    region_margin: float = Field(0.3, ge=0.1, le=4)
    region_face_px: int = Field(40, ge=16, le=1024)
    locate_every: int = Field(3, ge=1, le=1000)
    motion: MotionConfig = MotionConfig()


class ClassifierConfig(Section):
    model: str = "edgeemo-face-int8.json"
    backend: Literal["onnxruntime", "openvino"] = "onnxruntime"
    threads: int = Field(1, ge=1, le=64)
    flip_margin: float | None = Field(None, ge=0, le=1)  # None: the model card's
    every_frames: int = Field(3, ge=1, le=1000)


class AnalysisConfig(Section):
    workers: int | None = Field(None, ge=1, le=256, description=(
        "Threads that analyse the video sources' frames; each source is analysed, in order, by one of "
        "them, the sources shared out round-robin. null: one per CPU this process may use (its CPU "
        "affinity), at most one per video source."))


class TrackerConfig(Section):
    iou_threshold: float = Field(0.3, gt=0, lt=1)
    min_hits: int = Field(3, ge=1)
    max_missed_s: float = Field(1.0, gt=0)
    smoothing_s: float = Field(0.5, ge=0)
    heartbeat_s: float = Field(2.0, gt=0)


class VoiceConfig(Section):
    enabled: bool = True
    model: str = "edgeemo-voice-int8.json"
    backend: Literal["onnxruntime", "openvino"] = "onnxruntime"
    threads: int = Field(1, ge=1, le=64)
    window_s: float = Field(3.0, ge=0.5, le=10)
    hop_s: float = Field(1.0, ge=0.1, le=10)
    min_window_s: float = Field(1.0, ge=0.3, le=10)
    vad_threshold_db: float = Field(10.0, gt=0, le=60)  # in the speech band, above the floor (voice.vad)
    min_speech_s: float = Field(1.0, gt=0, le=10)
    buffer_s: float = Field(10.0, ge=1, le=600)

    @model_validator(mode="after")
    def _windows_fit(self) -> VoiceConfig:
        if not self.hop_s <= self.window_s or not self.min_window_s <= self.window_s:
            raise ValueError(f"need hop_s ({self.hop_s}) and min_window_s ({self.min_window_s}) "
                             f"<= window_s ({self.window_s})")
        if self.buffer_s < self.window_s + self.hop_s:
            raise ValueError(f"buffer_s ({self.buffer_s}) must hold window_s + hop_s ({self.window_s + self.hop_s})")
        return self


class MicrophoneConfig(Section):
    device: str | int | None = None          # index, or part of the name; null: the system default
    sample_rate: int = Field(16000, ge=8000, le=192000)
    channels: int = Field(1, ge=1, le=32)
    buffer_frames: int = Field(1600, ge=64, le=65536)


class FusionConfig(Section):
    face_weight: float = Field(1.0, ge=0)
    voice_weight: float = Field(1.0, ge=0)

    @model_validator(mode="after")
    def _some_weight(self) -> FusionConfig:
        if self.face_weight + self.voice_weight == 0:
            raise ValueError("face_weight and voice_weight cannot both be 0")
        return self


class TlsConfig(Section):
    enabled: bool = False
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    insecure: bool = False


class MqttConfig(Section):
    url: str | None = None
    client_id: str | None = Field(None, pattern=ID_PATTERN)
    topic_prefix: str = Field("edgeemo", pattern=r"^[^#+\s]+$")
    qos: Literal[0, 1, 2] = 1
    keepalive_s: int = Field(30, ge=5, le=3600)
    password_file: Path | None = None
    password_env: str = "EDGEEMO_MQTT_PASSWORD"
    state_min_interval_s: float = Field(1.0, ge=0)
    discovery_prefix: str | None = Field("homeassistant", pattern=r"^[^#+\s]+$")  # null: no discovery
    tls: TlsConfig = TlsConfig()

    @field_validator("url")
    @classmethod
    def _mqtt_url(cls, url: str | None) -> str | None:
        if url is None:
            return url
        parsed = urlparse(url)
        if parsed.scheme not in ("mqtt", "mqtts") or not parsed.hostname:
            raise ValueError("must look like mqtt://[user@]host[:port] or mqtts://...")
        try:
            port = parsed.port
        except ValueError:  # not a number, or above 65535
            port = 0
        if port is not None and not 1 <= port <= 65535:
            raise ValueError("port must be a number from 1 to 65535")
        if parsed.password:
            raise ValueError("must not contain a password: use mqtt.password_file or $EDGEEMO_MQTT_PASSWORD")
        return url


class EventLogConfig(Section):
    enabled: bool = True                      # the file; the journal is the record either way
    path: Path | None = None
    max_bytes: int = Field(10_000_000, ge=10_000)
    backups: int = Field(5, ge=0)
    stdout: bool = True


class JournalConfig(Section):
    path: Path | None = None                  # null: $STATE_DIRECTORY/journal.db, else the user's data dir
    max_bytes: int = Field(100_000_000, ge=100_000)
    retention_days: float = Field(30.0, gt=0)  # delivered events older than this are deleted
    sync_interval_s: float = Field(1.0, gt=0, le=60)  # what a power cut can lose at most
    memory_bound: int = Field(10_000, ge=0, description="events held in memory while the disk cannot be written "
                              "(full, read-only, failing); beyond it the oldest are dropped and counted")


class MetricsConfig(Section):
    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = Field(9595, ge=0, le=65535)


class WebTlsConfig(Section):
    cert_file: Path | None = None
    key_file: Path | None = None


class RuleConfig(Section):
    name: str = Field(pattern=ID_PATTERN)
    emotion: Literal["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]
    min_share: float = Field(gt=0, le=1)
    window_s: float = Field(gt=0, le=86400)
    text: str = Field(min_length=1)
    modality: Literal["face", "voice", "fused"] = "face"


class WebAnalyzeConfig(Section):
    max_bytes: int = Field(50_000_000, ge=1000, description="the largest upload analysed; larger ones get 413")
    max_seconds: float = Field(120.0, gt=0, le=3600,
                               description="the longest video or sound analysed; longer ones get 422 (decoding "
                                           "stops at the limit, whatever the file's header claims)")
    queue: int = Field(2, ge=0, le=100,
                       description="uploads that may wait while one is analysed; one more gets 429")


class WebConfig(Section):
    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = Field(8600, ge=0, le=65535)
    tls: WebTlsConfig = WebTlsConfig()
    allow_plain_http: bool = False
    preview: bool = False                     # the current frame with boxes on the Live page: pixels leave
    users_path: Path | None = None            # null: users.db beside the journal
    analyze: WebAnalyzeConfig = WebAnalyzeConfig()
    rules: list[RuleConfig] = Field(default_factory=lambda: [RuleConfig(
        name="sad-a-while", emotion="sad", min_share=0.6, window_s=600,
        text="You have looked sad for a while: time for a break?")])

    @model_validator(mode="after")
    def _tls_off_loopback(self) -> WebConfig:
        if (self.tls.cert_file is None) != (self.tls.key_file is None):
            raise ValueError("tls needs both cert_file and key_file")
        if self.tls.cert_file is None and not self.allow_plain_http and not is_loopback(self.host):
            raise ValueError(f"host {self.host} is not a loopback address: set tls.cert_file and tls.key_file, "
                             "or allow_plain_http: true")
        names = [r.name for r in self.rules]
        if len(set(names)) != len(names):
            raise ValueError(f"rule names must be unique, got {names}")
        return self


NO_SOURCE = ("no source to analyse: set sources[].url in the config (a camera, stream or file) or pass "
             "--source; to try the bundled sample: edgeemo run --source sample")


def is_loopback(host: str) -> bool:
    return host == "localhost" or host.startswith("127.") or host == "::1"


class Config(Section):
    device_id: str = Field("edgeemo", pattern=ID_PATTERN)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    models_dir: Path | None = None
    sources: list[SourceConfig] = Field(default_factory=lambda: [SourceConfig()], min_length=1)
    detector: DetectorConfig = DetectorConfig()
    classifier: ClassifierConfig = ClassifierConfig()
    analysis: AnalysisConfig = AnalysisConfig()
    tracker: TrackerConfig = TrackerConfig()
    voice: VoiceConfig = VoiceConfig()
    microphone: MicrophoneConfig = MicrophoneConfig()
    fusion: FusionConfig = FusionConfig()
    mqtt: MqttConfig = MqttConfig()
    journal: JournalConfig = JournalConfig()
    event_log: EventLogConfig = EventLogConfig()
    metrics: MetricsConfig = MetricsConfig()
    web: WebConfig = WebConfig()

    @field_validator("sources")
    @classmethod
    def _unique_names(cls, sources: list[SourceConfig]) -> list[SourceConfig]:
        names = [s.name for s in sources]
        if len(set(names)) != len(names):
            raise ValueError(f"source names must be unique, got {names}")
        return sources


def sanitize_id(text: str) -> str:
    return re.sub(r"[^a-zA-Z0-9_-]", "_", text)
