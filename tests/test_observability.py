"""The Grafana board and the Prometheus alert rules in config/ name only metrics a real daemon exports."""

from __future__ import annotations

import json
import re
import urllib.request
from pathlib import Path

import yaml
from prometheus_client.parser import text_string_to_metric_families

from edgeemo.config.load import load_config
from edgeemo.service.daemon import Daemon

ROOT = Path(__file__).resolve().parents[1]
BOARD = ROOT / "config" / "grafana" / "edgeemo.json"
ALERTS = ROOT / "config" / "prometheus" / "edgeemo-alerts.yml"
NAME = re.compile(r"\b((?:edgeemo|process)_[a-z0-9_]+)\b")


def board_queries() -> list[str]:
    board = json.loads(BOARD.read_text())
    exprs = [t["expr"] for p in board["panels"] for t in p["targets"]]
    exprs += [v["definition"] for v in board["templating"]["list"] if v["type"] == "query"]
    return exprs


def alert_rules() -> list[dict]:
    return [rule for group in yaml.safe_load(ALERTS.read_text())["groups"] for rule in group["rules"]]


def exported(tmp_path: Path) -> set[str]:
    """The sample names of a real daemon's /metrics (edgeemo run on the sample, scraped over HTTP)."""
    cfg = load_config(None, {"sources.0.url": "sample", "metrics.port": 0, "web.enabled": False, "event_log.stdout": False,
                             "journal.path": str(tmp_path / "journal.db"), "event_log.path": str(tmp_path / "e.jsonl")})
    daemon = Daemon(cfg)
    daemon.start()
    try:
        text = urllib.request.urlopen(f"http://127.0.0.1:{daemon.metrics_port}/metrics", timeout=10).read().decode()
    finally:
        daemon.stop_requested.set()
        daemon.shutdown()
    return {s.name for family in text_string_to_metric_families(text) for s in family.samples}


def test_every_metric_the_board_and_the_alerts_name_is_exported(tmp_path):
    names = exported(tmp_path)
    used = {m for expr in board_queries() + [r["expr"] for r in alert_rules()] for m in NAME.findall(expr)}
    assert len(used) >= 15
    assert used <= names, f"not exported by the daemon: {sorted(used - names)}"


def test_the_board_is_provisionable_and_covers_the_pipeline():
    board = json.loads(BOARD.read_text())
    assert board["uid"] == "edgeemo" and board["panels"]
    ids = [p["id"] for p in board["panels"]]
    assert len(set(ids)) == len(ids)
    for p in board["panels"]:  # every query goes to the data source the user picks ($datasource)
        assert p["datasource"]["uid"] == "${datasource}" and p["targets"], p["title"]
        assert {"x", "y", "w", "h"} <= p["gridPos"].keys() and p["gridPos"]["x"] + p["gridPos"]["w"] <= 24
    joined = " ".join(board_queries())
    for metric in ("edgeemo_frames_processed_total", "edgeemo_frames_dropped_total", "edgeemo_stage_duration_seconds_bucket",
                   "process_cpu_seconds_total", "edgeemo_tracks_active", "edgeemo_events_total",
                   "edgeemo_journal_undelivered_events", "edgeemo_journal_held_events", "edgeemo_delivery_lag_seconds_bucket",
                   "edgeemo_source_up"):
        assert metric in joined, metric
    provider = yaml.safe_load((ROOT / "config" / "grafana" / "provisioning" / "dashboards" / "edgeemo.yaml").read_text())
    assert provider["apiVersion"] == 1 and provider["providers"][0]["type"] == "file"


def test_the_alert_rules():
    rules = {r["alert"]: r for r in alert_rules()}
    assert set(rules) == {"EdgeemoSourceDown", "EdgeemoNoFramesAnalysed", "EdgeemoJournalBacklogGrowing",
                          "EdgeemoJournalNotWritable", "EdgeemoMqttDisconnected"}
    for rule in rules.values():
        assert re.fullmatch(r"\d+[smh]", rule["for"]) and rule["labels"]["severity"] in ("warning", "critical")
        assert rule["annotations"]["summary"] and rule["expr"].count("(") == rule["expr"].count(")")
