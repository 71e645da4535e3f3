"""Smoke runs of tools/bench/pipeline.py on the first frames of the bundled sample: the JSON it writes is sound.

No timing thresholds: figures depend on the machine; only their shape and consistency are checked.
Each run is a subprocess because the tool patches FrameReader.read while it measures.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tools.bench import pipeline as bench

REPO = Path(__file__).resolve().parents[1]

FRAMES = 30
STAGES = ("capture", "detect", "classify", "track", "publish")


def run_bench(tmp_path: Path, *args: str) -> dict:
    out = tmp_path / "bench.json"
    cmd = [sys.executable, "-m", "tools.bench.pipeline", "--max-frames", str(FRAMES), "--json", str(out), *args]
    # run elsewhere (its files land in tmp_path), so the checkout goes on PYTHONPATH for `-m tools...`
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, check=False, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("| video |"), proc.stdout  # the Markdown table
    report = json.loads(out.read_text())
    assert report["machine"]["nproc"] >= 1 and report["machine"]["cpu"]
    assert len(report["results"]) == 1
    return report["results"][0]


def assert_ordered(p: dict) -> None:
    assert p["p50"] is not None and 0 <= p["p50"] <= p["p95"] <= p["p99"], p


def assert_consistent(result: dict) -> None:
    assert result["fps"] > 0 and result["cpu_s"] > 0 and result["cpu_s_per_frame"] > 0
    assert result["peak_rss_mib"] > 0 and result["faces_per_frame"] >= 0
    assert result["exit_code"] == 0 and result["errors"] == 0
    for stage in STAGES:
        assert_ordered(result["stages_ms"][stage])
    assert_ordered(result["capture_to_publish_ms"])
    assert result["video"]["width"] == 640 and result["video"]["height"] == 360


def test_file_mode_analyses_every_frame(tmp_path):
    result = run_bench(tmp_path, "--mode", "file")
    assert result["spec"]["mode"] == "file" and result["spec"]["max_frames"] == FRAMES
    assert result["frames_captured"] == result["frames_processed"] == FRAMES
    assert result["share_processed"] == 1.0
    assert result["faces_per_frame"] > 0  # the sample shows one face throughout
    assert_consistent(result)


def test_live_mode_with_a_real_broker(tmp_path, mqtt_broker):
    result = run_bench(tmp_path, "--mode", "live", "--mqtt-url", mqtt_broker.url)
    assert result["spec"]["mode"] == "live" and result["spec"]["mqtt_url"] == mqtt_broker.url
    assert 0 < result["frames_processed"] <= result["frames_captured"] <= FRAMES
    assert 0 < result["share_processed"] <= 1
    assert result["cpu_cores"] > 0
    assert_consistent(result)


def test_median_of_repeats_keeps_counts_whole():
    runs = [{"fps": 10.0, "frames_processed": 30, "spec": {"threads": 1}, "stages_ms": {"detect": {"p50": 1.0}}},
            {"fps": 30.0, "frames_processed": 29, "spec": {"threads": 1}, "stages_ms": {"detect": {"p50": 3.0}}},
            {"fps": 20.0, "frames_processed": 30, "spec": {"threads": 1}, "stages_ms": {"detect": {"p50": 2.0}}}]
    merged = bench.median_record(runs)
    assert merged["fps"] == 20.0 and merged["frames_processed"] == 30
    assert merged["stages_ms"]["detect"]["p50"] == 2.0 and merged["spec"] == {"threads": 1}


def test_matrix_axes(monkeypatch):
    monkeypatch.setattr(bench, "matrix_videos", lambda: ["a.mp4", "b.mp4"])
    monkeypatch.setattr(bench, "matrix_cards", lambda: ["edgeemo-face.json", "edgeemo-face-int8.json"])
    specs = bench.expand(bench.parse_args(["--matrix"]), None)
    assert len(specs) == 2 * 2 * 2 * 2 * 2  # videos x threads x backends x cards x widths
    assert {s.mode for s in specs} == {"file"}
    only = bench.expand(bench.parse_args(["--matrix", "--threads", "1", "--video", "a.mp4"]), None)
    assert len(only) == 2 * 2 * 2 and {s.threads for s in only} == {1}


def test_cameras_dealt_to_daemons_are_all_measured():
    """--daemons 2: two real daemons, each with its share of the cameras, their counters added up."""
    from tools.bench import cameras

    result = cameras.run_once(3, "all", warmup_s=0.5, seconds=1.5, workers=None, daemons=2)
    assert result["cameras"] == 3 and len(result["analysed_per_daemon"]) == 2
    assert all(n > 0 for n in result["analysed_per_daemon"])  # both daemons analysed their share
    assert result["offered"] > 0 and 0 < result["analysed"] <= result["offered"] + 3  # a frame in hand at each reading
    assert result["cores"] > 0
    assert "| daemons |" in cameras.table([result]) and "| 2 |" in cameras.table([result])


def test_benchmarks_md_is_generated_from_the_committed_results():
    """BENCHMARKS.md is what tools/bench/report.py makes of bench/results/*.json, nothing edited by hand."""
    from tools.bench import report as bench_report

    text = bench_report.report()
    for name in ("vs_fer_sample", "vs_fer_busy", "file", "live", "guard", "cadence_k", "cadence_m"):
        assert f"bench/results/{name}.json` (" in text, name  # every part has its result file
    assert (REPO / "BENCHMARKS.md").read_text() == text
