"""`edgeemo check`: try every part the daemon needs and say in plain words what is wrong."""

from __future__ import annotations

import logging
import os
import socket
import sys
import threading
from collections.abc import Callable

import paho.mqtt.client as mqtt

from edgeemo.sources.audio import audio_target, describe_inputs, open_reader
from edgeemo.sources.reader import FrameReader
from edgeemo.sources.spec import for_the_daemon
from edgeemo.vision.classifier import ExpressionClassifier
from edgeemo.config.redact import redact
from edgeemo.config.schema import NO_SOURCE, Config, SourceConfig
from edgeemo.vision.detector import FaceDetector
from edgeemo.journal.health import check_journal
from edgeemo.core.modelcard import ModelCard, load_card
from edgeemo.sinks.mqtt.client import parse_broker_url
from edgeemo.sinks.mqtt.tls import apply_login, apply_tls, connect_error, refusal
from edgeemo.vision.analysis import model_paths
from edgeemo.voice.classifier import VoiceClassifier

log = logging.getLogger(__name__)


def check_models(cfg: Config) -> str:
    detector_path, card_path = model_paths(cfg)
    FaceDetector(cfg.detector, detector_path)
    card = load_card(card_path)
    classifier = ExpressionClassifier(cfg.classifier, card)
    return f"detector {detector_path.name}, classifier {card.name}{quoted_accuracy(card, classifier.flip_margin)}"


def quoted_accuracy(card: ModelCard, flip_margin: float) -> str:
    """The card's PrivateTest accuracy the way this config runs the model (one pass or with its mirror pass)."""
    one_pass = card.metrics.get("fer2013_privatetest_acc")
    selective = card.metrics.get("fer2013_privatetest_acc_selective_flip")
    if selective and flip_margin == card.flip_margin > 0:
        return f", FER-2013 PrivateTest {selective * 100:.1f} % (mirror pass below margin {flip_margin})"
    if one_pass and flip_margin == 0:
        return f", FER-2013 PrivateTest {one_pass * 100:.1f} % (one pass)"
    return ""


def check_voice_model(cfg: Config) -> str:
    if not cfg.voice.enabled:
        return "voice analysis disabled (voice.enabled: false)"
    return f"voice model {VoiceClassifier.from_config(cfg).card.name}"


def check_sound(source: SourceConfig, cfg: Config) -> str:
    target = audio_target(source) if cfg.voice.enabled and source.url is not None else None
    if target is None:
        return "no sound to analyse (voice disabled, audio: off, or a camera without audio: mic)"
    reader = open_reader(target, cfg.microphone, source.stall_timeout_s)
    try:
        first = next(iter(reader.chunks()), None)
    finally:
        reader.close()
    if first is None:
        raise RuntimeError(f"sound {redact(target)!r} opened but gave no samples")
    if target == "mic":
        return f"microphone read at 16 kHz mono; {describe_inputs(cfg.microphone)}"
    return f"{redact(target)}: sound decoded to 16 kHz mono"


def check_source(source: SourceConfig) -> str:
    if source.url is None:
        raise RuntimeError(NO_SOURCE)
    url, timeout_s = source.url, source.stall_timeout_s
    spec = for_the_daemon(source.name, url)
    if spec.kind == "audio":
        return f"sound only ({redact(spec.target)}): voice events, no faces"
    reader = FrameReader(spec, timeout_s=timeout_s)  # a stream that never answers: the daemon's stall_timeout_s
    try:
        item = reader.read()
    finally:
        reader.close()
    if item is None:
        raise RuntimeError(f"source {redact(url)!r} opened but gave no frame")
    h, w = item[0].shape[:2]
    return f"{spec.kind} {redact(spec.target)}: {w}x{h}" + (f" at {reader.fps:.2f} fps" if reader.fps else "")


def check_broker(cfg: Config, timeout: float = 5.0) -> str:
    """The TLS handshake and the MQTT login (CONNECT/CONNACK), then a clean disconnect: no message sent."""
    if cfg.mqtt.url is None:
        return "no broker configured: events go to the event log and stdout"
    broker = parse_broker_url(cfg.mqtt.url, cfg.mqtt.tls.enabled)
    client = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2,
                         client_id=f"edgeemo-check-{cfg.device_id}-{os.getpid()}")
    unused_password = apply_login(client, cfg.mqtt, broker.username)
    if broker.tls:
        apply_tls(client, cfg.mqtt.tls)
    answered = threading.Event()
    outcome: list = []
    client.on_connect = lambda _c, _u, _f, reason, _p: (outcome.append(reason), answered.set())
    client.connect_timeout = timeout
    try:
        client.connect(broker.host, broker.port, keepalive=max(5, int(timeout) + 5))
    except (OSError, ValueError) as exc:
        raise RuntimeError(connect_error(exc, broker.host, broker.port, cfg.mqtt.tls)) from None
    client.loop_start()
    try:
        if not answered.wait(timeout):
            hint = "" if broker.tls else " (a TLS port? then use mqtts://)"
            raise RuntimeError(f"broker {broker.host}:{broker.port} gave no CONNACK within {timeout:.0f} s{hint}")
        if outcome[0].is_failure:
            raise RuntimeError(refusal(outcome[0], broker.host, broker.port))
    finally:
        client.disconnect()
        client.loop_stop()
    who = f" as {broker.username}" if broker.username else " without a user name"
    note = " (a password was found but mqtt.url has no user@)" if unused_password else ""
    return f"broker {broker.host}:{broker.port}: {'TLS verified, ' if broker.tls else ''}logged in{who}{note}"


def check_port(host: str, port: int, keys: str) -> None:
    with socket.socket() as sock:
        try:
            sock.bind((host, port))
        except OSError as exc:
            raise RuntimeError(f"cannot bind {host}:{port}: {exc.strerror or exc} ({keys})") from None


def check_metrics_port(cfg: Config) -> str:
    if not cfg.metrics.enabled:
        return "metrics disabled"
    check_port(cfg.metrics.host, cfg.metrics.port, "metrics.host, metrics.port")
    return f"http://{cfg.metrics.host}:{cfg.metrics.port}/metrics is free"


def check_web_port(cfg: Config) -> str:
    if not cfg.web.enabled:
        return "dashboard disabled"
    check_port(cfg.web.host, cfg.web.port, "web.host, web.port")
    scheme = "https" if cfg.web.tls.cert_file else "http"
    return f"{scheme}://{cfg.web.host}:{cfg.web.port}/ is free"


def check_main(cfg: Config) -> int:
    checks: list[tuple[str, Callable[[], str]]] = [("config", lambda: "valid"), ("models", lambda: check_models(cfg))]
    checks.append(("voice model", lambda: check_voice_model(cfg)))
    for source in cfg.sources:
        checks.append((f"source {source.name}", lambda s=source: check_source(s)))
        checks.append((f"sound of {source.name}", lambda s=source: check_sound(s, cfg)))
    checks += [("mqtt", lambda: check_broker(cfg)), ("metrics", lambda: check_metrics_port(cfg)),
               ("dashboard", lambda: check_web_port(cfg)), ("journal", lambda: check_journal(cfg.journal))]
    failed = 0
    for name, run in checks:
        try:
            sys.stdout.write(f"OK    {name}: {run()}\n")
        except Exception as exc:  # every failure is reported, none stops the other checks
            failed += 1
            sys.stdout.write(f"FAIL  {name}: {redact(str(exc))}\n")
    sys.stdout.write("all checks passed\n" if not failed else f"{failed} check(s) failed\n")
    return 1 if failed else 0
