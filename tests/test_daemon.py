"""End to end: the real daemon on the bundled sample, a real Mosquitto broker, the metrics endpoint."""

import csv
import json
import subprocess
import sys
import socket
import urllib.request
from pathlib import Path

import jsonschema
import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from edgeemo.config.load import load_config
from edgeemo.service.daemon import Daemon
from edgeemo.core.resources import event_schema, sample_video
from tools.eval.sample import segment_results

SAMPLE_FRAMES = 427
FIXTURES = Path(__file__).parent / "fixtures"
SEGMENT_LABELS = list(csv.DictReader(sample_video().with_name("demo_labels.csv").open()))
SEGMENTS = [(float(s["start_s"]), float(s["end_s"])) for s in SEGMENT_LABELS]


def edgeemo(*args: str, cwd: Path, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edgeemo.cli", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout)


def validator() -> jsonschema.Draft202012Validator:
    schema = json.loads(event_schema().read_text())
    return jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker())


def events_of(subscriber, device: str) -> list[dict]:
    return [json.loads(p) for p in subscriber.payloads(f"edgeemo/{device}/events")]


def test_run_once_on_sample_publishes_valid_events(mqtt_broker, subscribe, tmp_path):
    sub = subscribe("edgeemo/e2e/#")
    # Every state change goes out: at the default (at most one state a second) a --once run of
    # the sample can be over before a state with a face is due, and only the last one is kept.
    config = tmp_path / "edgeemo.yaml"
    config.write_text("mqtt:\n  state_min_interval_s: 0\n")
    # README's first command works while the service runs: a batch run serves no metrics and no
    # dashboard, so the default ports being taken (here by us, or by whatever already holds them) is no matter.
    held = [socket.socket() for _ in range(2)]
    for sock, port in zip(held, (9595, 8600)):
        try:
            sock.bind(("127.0.0.1", port))
            sock.listen()
        except OSError:
            pass  # taken already: the same situation
    try:
        result = edgeemo("run", "--config", str(config), "--source", "sample", "--once", "--mqtt-url", mqtt_broker.url,
                         "--device-id", "e2e", cwd=tmp_path)
    finally:
        for sock in held:
            sock.close()
    assert result.returncode == 0, result.stderr
    sub.wait_for(lambda msgs: any(p == b"offline" for _, p, _ in msgs))

    availability = sub.payloads("edgeemo/e2e/availability")
    assert availability[0] == b"online" and availability[-1] == b"offline"

    events = events_of(sub, "e2e")
    check = validator()
    for event in events:
        check.validate(event)
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert events[0]["type"] == "start" and events[-1]["type"] == "end"
    assert {e["source"] for e in events} == {"default"}
    for start, end in SEGMENTS:  # every face segment of the sample gets events
        assert any(start <= e["pts"] < end for e in events), f"no event in segment {start}-{end} s"

    # The shipped model reads the sample's segments (neutral, angry, fearful, neutral) right in 3 of 4.
    right = sum(row["correct"] for row in segment_results(events, SEGMENT_LABELS))
    assert right >= 3, segment_results(events, SEGMENT_LABELS)

    # The sample's sound: voice events (no box) for its utterances, fused with the one face in view.
    voice = [e for e in events if e["modality"] == "voice"]
    fused = [e for e in events if e["modality"] == "fused"]
    assert voice and fused and all(e["box"] is None for e in voice)
    assert all(set(e["components"]) == {"face", "voice"} for e in fused)
    assert {e["track"] for e in fused} <= {e["track"] for e in events if e["modality"] == "face"}
    for kind in (voice, fused):  # every stream that starts also ends
        assert sorted(e["track"] for e in kind if e["type"] == "start") == \
            sorted(e["track"] for e in kind if e["type"] == "end")
    fused_right = sum(row["correct"] for row in segment_results(events, SEGMENT_LABELS, "fused"))
    assert fused_right >= 3, segment_results(events, SEGMENT_LABELS, "fused")

    state = [json.loads(p) for p in sub.payloads("edgeemo/e2e/state")]
    assert any(s["faces"] for s in state) and state[-1]["faces"] == []

    # The local record holds the same events; stdout carried them too.
    logged = [json.loads(line) for line in (tmp_path / "edgeemo-events.jsonl").read_text().splitlines()]
    assert [e["seq"] for e in logged] == [e["seq"] for e in events]
    assert len(result.stdout.splitlines()) == len(events)


def read(registry) -> dict[tuple[str, tuple], float]:
    return parse(generate_latest(registry).decode())


def parse(text: str) -> dict[tuple[str, tuple], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_metrics_agree_with_the_events_seen(mqtt_broker, subscribe, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    sub = subscribe("edgeemo/metrics/#")
    cfg = load_config(None, {"device_id": "metrics", "sources.0.url": "sample", "mqtt.url": mqtt_broker.url, "metrics.port": 0,
                             "event_log.stdout": False})
    daemon = Daemon(cfg, lossless=True)
    daemon.start()
    daemon.supervise()  # returns when the sample has been read to its end and analysed
    assert daemon.metrics_port is None  # a batch run serves no metrics: read its registry instead
    metrics = read(daemon.metrics.registry)
    assert daemon.shutdown() == 0

    source = (("source", "default"),)
    assert metrics[("edgeemo_frames_total", source)] == SAMPLE_FRAMES
    assert metrics[("edgeemo_frames_processed_total", source)] == SAMPLE_FRAMES
    assert metrics[("edgeemo_frames_dropped_total", (("reason", "backlog"), ("source", "default")))] == 0
    assert metrics[("edgeemo_faces_total", source)] == SAMPLE_FRAMES  # one face in every frame
    stage_counts = {dict(k[1])["stage"]: v for k, v in metrics.items() if k[0] == "edgeemo_stage_duration_seconds_count"}
    windows = stage_counts.pop("voice")
    assert stage_counts == {"capture": SAMPLE_FRAMES, "detect": SAMPLE_FRAMES, "classify": SAMPLE_FRAMES,
                            "track": SAMPLE_FRAMES, "publish": SAMPLE_FRAMES}
    # The 14.25 s of sound, analysed every second from 1 s on; nothing lost in lossless mode.
    assert metrics[("edgeemo_audio_samples_total", source)] == pytest.approx(14.25 * 16000, rel=0.01)
    assert 13 <= windows <= 15
    assert metrics[("edgeemo_audio_samples_dropped_total", (("reason", "backlog"), ("source", "default")))] == 0
    assert 0 < metrics[("edgeemo_speech_ratio", source)] <= 1
    assert metrics[("edgeemo_build_info", tuple(sorted({"version": __import__("edgeemo").__version__,
                                                         "backend": "onnxruntime"}.items())))] == 1

    sub.wait_for(lambda msgs: any(p == b"offline" for _, p, _ in msgs))
    seen: dict[str, int] = {}
    for event in events_of(sub, "metrics"):
        seen[event["type"]] = seen.get(event["type"], 0) + 1
    scraped = {kind: sum(v for k, v in metrics.items() if k[0] == "edgeemo_events_total" and dict(k[1])["type"] == kind)
               for kind in ("start", "change", "update", "end")}
    # `end` events go out at shutdown, after the scrape; everything before matches one for one.
    assert {k: v for k, v in scraped.items() if k != "end"} == {k: seen.get(k, 0) for k in ("start", "change", "update")}
    assert scraped["start"] >= 1 and seen["end"] == seen["start"]


def test_sigterm_stops_cleanly_ends_tracks_and_says_offline(mqtt_broker, subscribe, tmp_path):
    import signal

    sub = subscribe("edgeemo/term/#")
    daemon = subprocess.Popen([sys.executable, "-m", "edgeemo.cli", "run", "--source", "sample", "--mqtt-url",
                               mqtt_broker.url, "--device-id", "term", "--metrics-port", "0"],
                              cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:  # a file without --once plays at its own rate, like a camera: stop it in the middle
        sub.wait_for(lambda msgs: any(b'"type":"start"' in p.replace(b" ", b"") for _, p, _ in msgs), timeout=60)
        daemon.send_signal(signal.SIGTERM)
        _, stderr = daemon.communicate(timeout=60)
    finally:
        daemon.kill()
    assert daemon.returncode == 0, stderr
    assert "received SIGTERM" in stderr
    sub.wait_for(lambda msgs: any(p == b"offline" for _, p, _ in msgs))
    events = events_of(sub, "term")
    assert events[-1]["type"] == "end" and events[-1]["pts"] < 14
    assert sub.payloads("edgeemo/term/availability")[-1] == b"offline"


def test_the_sample_played_loops_like_a_camera_until_stopped(tmp_path, own_journal):
    """`edgeemo run --source sample` without --once: the sample starts again at its end, face and
    sound on one clock that goes on (pts past its 14.2 s), until SIGTERM."""
    import signal
    import time

    from edgeemo.config.schema import JournalConfig
    from edgeemo.journal.store import Journal

    daemon = subprocess.Popen([sys.executable, "-m", "edgeemo.cli", "run", "--source", "sample", "--metrics-port", "0"],
                              cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)

    def events() -> list[dict]:
        if not own_journal.exists():
            return []
        journal = Journal.open(JournalConfig(path=own_journal), repair=False)
        try:
            return journal.query(limit=100_000)
        finally:
            journal.close()

    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and not any(e["modality"] == "voice" and e["pts"] > 16 for e in events()):
            time.sleep(1)
        assert daemon.poll() is None, "the daemon ended at the end of the sample"
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(30) == 0, daemon.stderr.read()
    finally:
        daemon.kill()
    second_pass = [e for e in events() if e["pts"] > 14.3]
    assert {e["modality"] for e in second_pass} >= {"face", "voice"}  # video and sound both loop


def test_faces_are_counted_one_by_one_and_metrics_carry_no_created_series(tmp_path, monkeypatch):
    """Two faces in one picture count 2 faces on 1 frame; no `_created` series; build info is an Info metric."""
    from edgeemo.core.metrics import Metrics

    monkeypatch.chdir(tmp_path)
    cfg = load_config(None, {"sources.0.url": str(FIXTURES / "two_faces.jpg"), "voice.enabled": False,
                             "journal.path": str(tmp_path / "j.db"), "event_log.stdout": False})
    daemon = Daemon(cfg, lossless=True)
    daemon.start()
    daemon.supervise()
    assert daemon.shutdown() == 0
    metrics = read(daemon.metrics.registry)
    source = (("source", "default"),)
    assert metrics[("edgeemo_frames_processed_total", source)] == 1
    assert metrics[("edgeemo_faces_total", source)] == 2

    served = Metrics(["default"], "onnxruntime")
    port = served.serve("127.0.0.1", 0)
    try:
        classic = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
        request = urllib.request.Request(f"http://127.0.0.1:{port}/metrics",
                                         headers={"Accept": "application/openmetrics-text; version=1.0.0"})
        openmetrics = urllib.request.urlopen(request, timeout=5).read().decode()
    finally:
        served.close()
    assert "edgeemo_faces_total" in classic and "_created" not in classic and "_created" not in openmetrics
    assert "# TYPE edgeemo_build info" in openmetrics and 'edgeemo_build_info{backend="onnxruntime"' in classic
