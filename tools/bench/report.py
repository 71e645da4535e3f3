"""The benchmark suite of issue 15, and BENCHMARKS.md generated from its result files.

    python -m tools.bench.report --run [--repeat 3]    # measure (about 15 min), write bench/results/*.json, then the report
    python -m tools.bench.report                       # only regenerate BENCHMARKS.md from bench/results/*.json

Every figure in BENCHMARKS.md comes from a JSON file in bench/results/ (committed), written by a
run of this tool; the report states each file's date, machine and load average. The suite:

* vs_fer_sample, vs_fer_busy: `tools/bench/pipeline.py --vs-fer` (marginal cost per frame, both pipelines
  pinned to one CPU and one inference thread, faces only) on the sample and on the busy clip;
* file: file mode on the sample, both cores, the defaults against every frame analysed in full;
* live: live mode at the sample's 29.97 frames/s: faces only, with voice (the default), and the
  empty still room (tools/clips/entry.py --empty);
* cadence: the keyframe period, classification cadence and locate cadence swept on one CPU (how the
  defaults were chosen), and guard_l1: the accuracy guard with every followed face located every frame;
* file_l1, live_l1, vs_fer_sample_l1, vs_fer_busy_l1: the same targets with every followed face
  located on every frame (detector.locate_every 1), beside the defaults;
* regions: tools/bench/region_sweep.py, the size of a followed face in the model's input swept (how region_face_px was chosen);
* guard: tools/eval/accuracy_guard.py on the sample and the busy clip, with the entry clip's delays;
* journal_cost: file mode on the sample with the journal's commit and without it, side by side;
* journal_outage_30s, journal_outage_300s: tools/bench/outage.py, the broker away while events flow;
* analyze, analyze_flood: tools/bench/analyze.py, POST /api/analyze paced at 2/s and back to back
  while the sample plays live, and the live pipeline's drops with and without it;
* dashboard_latency, dashboard_feed_cpu: tools/bench/dashboard.py, event to bar on screen in headless
  Chromium, and what the open Live page costs the feed;
* face_model: file and live mode on the sample with the shipped face model and the one before it
  (issue 20), side by side in one run;
* cameras: tools/bench/cameras.py, frames offered vs analysed and CPU for 1 to 24 cameras, on all
  CPUs and on one (taskset -c 0), with bench/cameras.png drawn from it; cameras_split: 16 cameras in
  one daemon and in two;
* voice_cost: tools/bench/voice_cost.py, one voice window's cost now and as it was.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
RESULTS = REPO / "bench" / "results"
REPORT = REPO / "BENCHMARKS.md"
PLOT = REPO / "bench" / "cameras.png"   # drawn from bench/results/cameras.json by the report
SAMPLE = "samples/demo.mp4"
BUSY, ENTRY, EMPTY = "data/busy_1280x720.mp4", "data/entry_1280x720.mp4", "data/empty_640x360.mp4"
EVERY_FRAME = ["--full-frame-every", "1", "--classify-every", "1", "--motion", "off"]
OLD_FACE = "data/old-face/edgeemo-face-int8.json"  # the face model before issue 20, from git (prepare)
OLD_FACE_COMMIT = "c066eba"
BUSY_FRAMES = 300      # the busy clip's frames in the fer comparison (fer takes about 0.2 s per frame)
SWEEP_FRAMES = 150     # each clip's frames in the locate-cadence sweep


REGIONS_NOTE = """How the default was chosen: the model's input is padded to a multiple of 32 pixels and a
region is the face grown by `region_margin` on every side, so on both clips 48, 40 and 32 px all
run on a 64 px input (64 px runs on 96): 40 px costs what 32 px costs, with landmarks close to 48
px's, while at 32 px their error grows by more than half, and at 24 px (a 32 px input) the regions
lose faces on the busy clip that the full frame finds. Between 40 and 48 px, 40 px is the one whose
readings of the sample's four segments match every-frame analysis (`tests/test_daemon.py` checks 3
of 4 right, as every-frame analysis reads them; at 48 px the last segment's mean tips to surprise)."""


def tool(module: str) -> list[str]:
    """The command line that runs tools.<module> (from the repository root, as every command here is run)."""
    return [sys.executable, "-m", f"tools.{module}"]


def suite(repeat: int) -> dict[str, list[str]]:
    """Result name -> the command that writes it (run from the repository root)."""
    bench = tool("bench.pipeline")
    out = lambda name: ["--json", str(RESULTS / f"{name}.json")]  # noqa: E731
    r = ["--repeat", str(repeat)]
    return {
        "guard": [*tool("eval.accuracy_guard"), "--video", SAMPLE, BUSY, "--entry", ENTRY, *out("guard")],
        "vs_fer_sample": [*bench, "--vs-fer", "--video", SAMPLE, *r, *out("vs_fer_sample")],
        "vs_fer_busy": [*bench, "--vs-fer", "--video", BUSY, "--max-frames", str(BUSY_FRAMES), *r, *out("vs_fer_busy")],
        "file": [*bench, "--mode", "file", "--voice", "off", *r, *out("file")],
        "file_every_frame": [*bench, "--mode", "file", "--voice", "off", *EVERY_FRAME, *r, *out("file_every_frame")],
        "live": [*bench, "--mode", "live", "--video", SAMPLE, EMPTY, "--voice", "off", "on", *r, *out("live")],
        "cadence_k": [*bench, "--mode", "file", "--voice", "off", "--pin-cpus", "1",
                      "--full-frame-every", "1", "5", "10", "30", *r, *out("cadence_k")],
        "cadence_m": [*bench, "--mode", "file", "--voice", "off", "--pin-cpus", "1",
                      "--classify-every", "1", "3", "5", "10", *r, *out("cadence_m")],
        "cadence_l": [*bench, "--mode", "file", "--voice", "off", "--pin-cpus", "1", "--video", SAMPLE, BUSY,
                      "--max-frames", str(SWEEP_FRAMES), "--locate-every", "1", "2", "3", *r, *out("cadence_l")],
        "guard_l1": [*tool("eval.accuracy_guard"), "--video", SAMPLE, BUSY, "--set", "detector.locate_every=1",
                     *out("guard_l1")],
        # The same targets with every followed face located on every frame (L = 1), side by side
        "file_l1": [*bench, "--mode", "file", "--voice", "off", "--locate-every", "1", *r, *out("file_l1")],
        "live_l1": [*bench, "--mode", "live", "--video", SAMPLE, "--voice", "off", "on", "--locate-every", "1",
                    *r, *out("live_l1")],
        "vs_fer_sample_l1": [*bench, "--vs-fer", "--video", SAMPLE, "--locate-every", "1", *r, *out("vs_fer_sample_l1")],
        "vs_fer_busy_l1": [*bench, "--vs-fer", "--video", BUSY, "--max-frames", str(BUSY_FRAMES), "--locate-every", "1",
                           *r, *out("vs_fer_busy_l1")],
        "regions": [*tool("bench.region_sweep"), "--video", SAMPLE, BUSY, *out("regions")],
        "journal_cost": [*bench, "--mode", "file", "--journal", "on", "off", "--repeat", str(max(repeat, 5)),
                         *out("journal_cost")],
        "journal_outage_30s": [*tool("bench.outage"), "--outage-s", "30", "--warmup-s", "20",
                               "--out", str(RESULTS / "journal_outage_30s.json")],
        "journal_outage_300s": [*tool("bench.outage"), "--outage-s", "300", "--warmup-s", "40",
                                "--out", str(RESULTS / "journal_outage_300s.json")],
        "face_model": [*bench, "--classifier", OLD_FACE, "edgeemo-face-int8.json", "--mode", "file", "live",
                       "--video", SAMPLE, "--voice", "off", *r, *out("face_model")],
        "dashboard_latency": [*tool("bench.dashboard"), "latency", "--seconds", "15",
                              *out("dashboard_latency")],
        "dashboard_feed_cpu": [*tool("bench.dashboard"), "feed-cpu", "--seconds", "15",
                               *out("dashboard_feed_cpu")],
        "analyze": [*tool("bench.analyze"), "--rate", "2", *out("analyze")],
        "analyze_flood": [*tool("bench.analyze"), "--rate", "0", *out("analyze_flood")],
        "cameras": [*tool("bench.cameras"), *r, *out("cameras")],
        "cameras_split": [*tool("bench.cameras"), "--cameras", "16", "--cpus", "all", "--daemons", "1", "2",
                          *r, *out("cameras_split")],
        "voice_cost": [*tool("bench.voice_cost"), *r, *out("voice_cost")],
    }


def prepare() -> None:
    """The generated clips the suite needs (data/ is git-ignored)."""
    if not (REPO / BUSY).exists():
        subprocess.run([*tool("clips.busy")], check=True, cwd=REPO)
    if not (REPO / ENTRY).exists():
        subprocess.run([*tool("clips.entry")], check=True, cwd=REPO)
    if not (REPO / EMPTY).exists():
        subprocess.run([*tool("clips.entry"), "--empty"], check=True, cwd=REPO)
    old = REPO / OLD_FACE
    if not old.exists():  # the previous shipped face model, for the side-by-side run
        old.parent.mkdir(parents=True, exist_ok=True)
        for suffix in (".json", ".onnx"):
            blob = subprocess.run(["git", "show", f"{OLD_FACE_COMMIT}:models/edgeemo-face-int8{suffix}"], cwd=REPO,
                                  capture_output=True, check=True).stdout
            old.with_suffix(suffix).write_bytes(blob)


def git_commit() -> str | None:
    """The commit measured (with '+' when the working tree had changes), so a figure traces to its code."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True,
                              check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO,
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return head + ("+" if dirty else "")


def run_suite(repeat: int, only: list[str] | None) -> None:
    prepare()
    RESULTS.mkdir(parents=True, exist_ok=True)
    for name, cmd in suite(repeat).items():
        if only and name not in only:
            continue
        print(f"== {name}: {' '.join(cmd)}", file=sys.stderr, flush=True)
        started = time.time()
        proc = subprocess.run(cmd, cwd=REPO, check=False)
        if proc.returncode not in (0, 1):  # the guard exits 1 when it fails: that is a result too
            raise SystemExit(f"{name} failed with exit code {proc.returncode}")
        path = RESULTS / f"{name}.json"
        data = json.loads(path.read_text())
        meta = {"command": " ".join(Path(c).relative_to(REPO).as_posix() if c.startswith(str(REPO)) else c
                                    for c in cmd[1:]), "seconds": round(time.time() - started, 1),
                "date": time.strftime("%Y-%m-%d %H:%M:%S %z"), "commit": git_commit()}
        data = {"suite": meta, **(data if isinstance(data, dict) else {"results": data})}
        path.write_text(json.dumps(data, indent=1) + "\n")


# ------------------------------------------------------------------------------------------- report

def max_frames(data: dict | None) -> str:
    """'first N frames' or 'all frames': what a run was limited to, as its result file records it."""
    spec = (data or {}).get("spec") or ((data or {}).get("results") or [{}])[0].get("spec", {})
    return f"first {spec['max_frames']} frames" if spec.get("max_frames") else "all frames"


def load(name: str) -> dict | None:
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def f(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def source(name: str, data: dict | None) -> str:
    if data is None:
        return f"`bench/results/{name}.json`: not measured yet"
    meta, machine = data.get("suite", {}), data.get("machine", {})
    load_avg = machine.get("loadavg_at_start")
    commit = f", commit {meta['commit']}" if meta.get("commit") else ""
    return (f"`bench/results/{name}.json` ({meta.get('date', '?')}{commit}, `python {meta.get('command', '?')}`"
            + (f", 1-min load average at start {load_avg[0]}" if load_avg else "") + ")")


def results_by(data: dict | None, **match) -> dict | None:
    for r in (data or {}).get("results", []):
        spec = r.get("spec", {})
        if all(spec.get(k) == v or (k == "video" and Path(spec.get(k, "")).name == v) for k, v in match.items()):
            return r
    return None


def verdict(ok: bool | None) -> str:
    return "-" if ok is None else ("met" if ok else "**not met**")


def targets(d: dict[str, dict | None]) -> list[str]:
    vs_s, vs_b, file_, live = d["vs_fer_sample"], d["vs_fer_busy"], d["file"], d["live"]
    faces_live = results_by(live, video="demo.mp4", voice=False)
    voice_live = results_by(live, video="demo.mp4", voice=True)
    empty_live = results_by(live, video="empty_640x360.mp4", voice=True)
    file_r = (file_ or {}).get("results", [None])[0]
    guard = d["guard"] or {}
    rows = [
        ("one CPU, marginal cost per frame vs `fer`, sample: >= 10x", vs_s and vs_s["cpu_ratio"], 10,
         vs_s and f"{vs_s['cpu_ratio']}x CPU ({vs_s['fer_marginal']['cpu_ms']} vs {vs_s['ours_marginal']['cpu_ms']} ms), "
         f"wall {vs_s['wall_ratio']}x; faces/frame {vs_s['ours']['faces_per_frame']} vs {vs_s['fer']['faces_per_frame']} fer"),
        ("same, busy clip (4 faces): >= 20x", vs_b and vs_b["cpu_ratio"], 20,
         vs_b and f"{vs_b['cpu_ratio']}x CPU ({vs_b['fer_marginal']['cpu_ms']} vs {vs_b['ours_marginal']['cpu_ms']} ms), "
         f"wall {vs_b['wall_ratio']}x; faces/frame {vs_b['ours']['faces_per_frame']} vs {vs_b['fer']['faces_per_frame']} fer"),
        ("file mode, both cores, every frame analysed, sample: >= 300 frames/s", file_r and file_r["fps"], 300,
         file_r and f"{f(file_r['fps'])} frames/s ({file_r['frames_processed']}/{file_r['frames_captured']} frames)"),
    ]
    lines = ["| target | measured (medians) | verdict |", "|---|---|---|"]
    for name, value, goal, text in rows:
        lines.append(f"| {name} | {text or '-'} | {verdict(None if value is None else value >= goal)} |")
    for name, r, goal in (("live 30 frames/s, faces only: <= 0.15 core", faces_live, 0.15),
                          ("live, with voice (default): <= 0.20 core", voice_live, 0.20),
                          ("live, empty still room (voice on): <= 0.03 core", empty_live, 0.03)):
        text = r and f"{f(r['cpu_cores'], 3)} core ({f(r['cpu_s_per_frame'] * 1000, 2)} CPU ms/frame, {r['frames_processed']}/{r['frames_captured']} processed)"
        lines.append(f"| {name} | {text or '-'} | {verdict(None if r is None else r['cpu_cores'] <= goal)} |")
    g, e = guard.get("guard", []), guard.get("entry", [])
    lines.append(f"| accuracy guard (sample, busy clip): faces per frame, tracks, dominant emotions equal to every-frame "
                 f"| {', '.join(Path(r['video']).name + (' equal' if r['same'] else ' DIFFERENT') for r in g) or '-'} "
                 f"| {verdict(all(r['same'] for r in g) if g else None)} |")
    delays = ", ".join(f"max {r['max_delay']} frames (K = {r['full_frame_every']})" for r in e)
    lines.append(f"| a face entering is found within K frames | {delays or '-'} "
                 f"| {verdict(all(r['same'] for r in e) if e else None)} |")
    return lines


def vs_fer_section(name: str, data: dict | None) -> list[str]:
    lines = [f"Source: {source(name, data)}.", ""]
    if data is None:
        return lines
    lines += ["| pipeline | frames (long run) | marginal CPU ms/frame | marginal wall ms/frame | frames/s (long run) | faces/frame |",
              "|---|---|---|---|---|---|"]
    for label, key in (("edgeemo (defaults)", "ours"), ("fer 25.10.3 (Haar + TFLite)", "fer")):
        r, m = data[key], data[f"{key}_marginal"]
        lines.append(f"| {label} | {r['frames_processed']} | {f(m['cpu_ms'], 2)} | {f(m['wall_ms'], 2)} | {f(r['fps'])} "
                     f"| {f(r['faces_per_frame'], 2)} |")
    per_round = ", ".join(f"{r['cpu_ratio']}x" for r in data["rounds"])
    lines += ["", f"Marginal CPU cost per frame, fer / edgeemo: **{data['cpu_ratio']}x** (median of {data['repeat']} rounds: "
              f"{per_round}); wall {data['wall_ratio']}x; plain frames/s ratio of the long runs {data['fps_ratio']}x."]
    return lines


def run_rows(data: dict | None, columns: str) -> list[str]:
    lines = ["| video | K | M | L | motion | voice | frames/s | CPU ms/frame | cores | processed | faces/frame "
             "| detect ms p50/p99 | classify ms p50/p99 | capture→publish ms p50/p99 |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in (data or {}).get("results", []):
        s, st, lat = r["spec"], r["stages_ms"], r["capture_to_publish_ms"]
        lines.append(f"| {Path(s['video']).name} | {s.get('full_frame_every', '-')} | {s.get('classify_every', '-')} "
                     f"| {s.get('locate_every', 1)} "
                     f"| {'on' if s.get('motion', True) else 'off'} | {'on' if s.get('voice') else 'off'} | {f(r['fps'])} "
                     f"| {f(r['cpu_s_per_frame'] * 1000, 2)} | {f(r['cpu_cores'], 3)} | {r['frames_processed']}/{r['frames_captured']} "
                     f"| {f(r['faces_per_frame'], 2)} | {f(st['detect']['p50'], 2)}/{f(st['detect']['p99'], 2)} "
                     f"| {f(st['classify']['p50'], 2)}/{f(st['classify']['p99'], 2)} | {f(lat['p50'])}/{f(lat['p99'])} |")
    return lines


def guard_section(data: dict | None) -> list[str]:
    lines = [f"Source: {source('guard', data)}.", ""]
    if data is None:
        return lines
    lines += ["| video | frames | faces/frame scheduled / every frame | frames with another face count | tracks "
              "| segments with the same dominant emotion | emotion timeline agreement | keyframes (for motion) / region frames / idle |",
              "|---|---|---|---|---|---|---|---|"]
    for r in data.get("guard", []):
        dom_s, dom_e = r["dominant"]["scheduled"], r["dominant"]["every_frame"]
        same = sum(dom_s.get(k) == v for k, v in dom_e.items())
        c = r["counts"]
        lines.append(f"| {Path(r['video']).name} | {r['frames']} | {r['faces_per_frame'][0]} / {r['faces_per_frame'][1]} "
                     f"| {r['frames_with_other_face_count']} | {r['tracks'][0]} / {r['tracks'][1]} | {same} of {len(dom_e)} "
                     f"| {r.get('label_agreement', '-')} | {c['keyframes']} ({c['motion_keyframes']}) / {c['region_frames']} / {c['idle_frames']} |")
    for r in data.get("entry", []):
        lines += ["", f"Entry clip `{Path(r['video']).name}`: {len(r['entries'])} faces enter; frames from their first "
                  f"detection with every frame analysed in full to their first detection on the schedule, the clip "
                  f"read as a camera is (frames left undecoded while nobody is followed and nothing moves): "
                  f"{[d['delay'] for d in r['entries']]} (K = {r['full_frame_every']})."]
    return lines


def regions_section(data: dict | None) -> list[str]:
    if not data:
        return ["(no results yet: `python -m tools.bench.report --run --only regions`)"]
    lines = [f"Source: {source('regions', data)}. Each frame's faces against a full-frame detection of the same "
             "frame, classification every frame; detection CPU time in one thread.", "",
             "| video | region_face_px | model input on region frames | landmark error (eye distances) | largest "
             "probability difference per face, mean / p95 | frames with another face count | detect CPU ms/frame |",
             "|---|---|---|---|---|---|---|"]
    for result in data["sweep"]:
        for r in result["runs"]:
            lines.append(f"| {Path(result['video']).name} | {r['region_face_px']} | {r.get('region_input') or '-'} "
                         f"| {r['landmark_error_per_eye_distance']} "
                         f"| {r['max_prob_difference_mean']} / {r['max_prob_difference_p95']} "
                         f"| {r['frames_with_another_face_count']} | {r['detect_cpu_ms_per_frame']} |")
    return [*lines, "", REGIONS_NOTE]


STRICT_NOTE = """By default (L = 3) a followed face is located on the frames it is classified on,
one in three, and held where it was last found in between, so its landmarks are fresh wherever a
crop is cut from them. `detector.locate_every: 1` locates every followed face on every frame, the
strict reading of "every frame analysed by keyframes and regions"; these are the targets measured
that way, in runs of their own."""


def strict_section(d: dict[str, dict | None]) -> list[str]:
    """The speed targets at L = 3 (the defaults) and at L = 1, from their own result files."""
    def ratio(name: str) -> str:
        r = d[name]
        return f"{r['cpu_ratio']}x ({r['fer_marginal']['cpu_ms']} vs {r['ours_marginal']['cpu_ms']} ms)" if r else "-"

    def fps(name: str) -> str:
        r = ((d[name] or {}).get("results") or [None])[0]
        return f"{f(r['fps'])} frames/s" if r else "-"

    def cores(name: str, voice: bool) -> str:
        r = results_by(d[name], video="demo.mp4", voice=voice)
        return f"{f(r['cpu_cores'], 3)} core" if r else "-"

    rows = [("vs `fer`, sample (>= 10x)", ratio("vs_fer_sample"), ratio("vs_fer_sample_l1")),
            ("vs `fer`, busy clip (>= 20x)", ratio("vs_fer_busy"), ratio("vs_fer_busy_l1")),
            ("file mode, both cores (>= 300 frames/s)", fps("file"), fps("file_l1")),
            ("live, faces only (<= 0.15 core)", cores("live", False), cores("live_l1", False)),
            ("live, with voice (<= 0.20 core)", cores("live", True), cores("live_l1", True))]
    sources = "; ".join(source(n, d[n]) for n in ("vs_fer_sample_l1", "vs_fer_busy_l1", "file_l1", "live_l1"))
    return [STRICT_NOTE, "", f"Sources at L = 1: {sources}.", "",
            "| target | L = 3 (default) | L = 1 |", "|---|---|---|",
            *(f"| {name} | {ours} | {strict} |" for name, ours, strict in rows),
            "", "The empty room follows nobody, so L does not change it."]


def machine_section(d: dict[str, dict | None]) -> list[str]:
    any_data = next((v for v in d.values() if v and v.get("machine")), None)
    if any_data is None:
        return ["No results yet."]
    m = any_data["machine"]
    return [f"CPU {m.get('cpu')}, {m.get('nproc')} CPUs; Python {m.get('python')}, onnxruntime {m.get('onnxruntime')}, "
            f"OpenCV {m.get('opencv')}, numpy {m.get('numpy')}. Each result file records its own load average at the start."]


HEAD = """# Benchmarks

Generated by `python -m tools.bench.report` from the result files in `bench/results/` (do not edit
by hand: rerun the tool). Every figure below names the file it comes from; each file holds every
single run, the machine and the load average at its start.

## The command

One line measures everything (about 15 minutes on two cores; nothing else should run) and rewrites
the result files and this report:

```sh
python -m tools.bench.report --run --repeat 3
```

It builds the generated clips first when missing (data/ is git-ignored): `tools/clips/busy.py`
(the four RAVDESS clips tiled 2x2, 4 faces), `tools/clips/entry.py` (faces enter and leave a
still scene) and `tools/clips/entry.py --empty` (the still scene with nobody in it); the `fer`
comparison needs `tools/bench/setup_fer_venv.sh` once (.venv-fer/, fer 25.10.3 + TensorFlow 2.21).

## What the figures mean

* **K** (`detector.full_frame_every`): a full-frame detection every K frames, and at once on motion
  outside the faces followed; between keyframes YuNet runs only on a region around each face. K = 1,
  M = 1, motion off is every frame analysed in full, the behaviour before keyframes.
* **M** (`classifier.every_frames`): each face is classified every M frames (and when new).
* **marginal cost per frame**: (cost of the first N frames - cost of the first N/3) / (2N/3), per
  pipeline, each process pinned to one CPU with one inference thread, so start-up cancels out. CPU
  is process CPU time; wall is elapsed time, which other load on the machine inflates.
* **cores** (live mode): CPU-seconds per second while the daemon keeps up with a 29.97 frames/s source,
  from the first frame published to the last (start-up left out).
* **frames/s** (file mode): frames analysed per second of wall time, the pipeline as the limit.
* **faces/frame**: mean faces found per frame (the sample: 1; the busy clip: 4).
"""


CADENCE_NOTE = """How the defaults were chosen: the cost falls steeply from K = 1 to K = 5; from 5 to 30 the
runs differ by less than their spread (each lasts under two seconds), while K bounds how long an
entering face waits (K = 10: a third of a second at 30 frames/s): at the next keyframe without
motion gating, and with it while nobody is followed, since motion is then looked for once per K
frames (which sets the empty room's cost in section 3). The cost
falls from M = 1 to M = 3 and then stays within the run-to-run spread, while the agreement of the
emotion timeline with every-frame analysis falls as M grows; M = 3 gives the tracker's smoothing
(time constant tracker.smoothing_s = 0.5 s, 15 frames) five readings per time constant.
`tools/eval/accuracy_guard.py --set detector.full_frame_every=K classifier.every_frames=M` checks the
guard of section 5 at any other setting."""


LOCATE_NOTE = """How the default was chosen: a face due for classification (every M frames) is always
located on that frame, since its eye-aligned crop needs that frame's landmarks; in between it is
held where it was last found. L = M = 3 locates each face once per classification: the cost falls
from L = 1 to L = 3 on both clips (the busy clip's L = 2 and L = 3 runs are within their spread),
while faces per frame, tracks and dominant emotions stay equal to every-frame analysis and the
timeline agreement stays within 0.01 of L = 1's. A face whose region was searched in vain is
searched every frame until the next keyframe, as before; a larger L changes nothing while M = 3."""


def locate_guard(d: dict[str, dict | None]) -> list[str]:
    """The accuracy guard's emotion timeline agreement at L = 1 (guard_l1) and at the defaults (guard)."""
    lines = ["| L | video | faces/frame scheduled / every frame | tracks | dominant emotions | emotion timeline agreement |",
             "|---|---|---|---|---|---|"]
    for name, default in (("guard_l1", ""), ("guard", " (default)")):
        for r in (d[name] or {}).get("guard", []):
            lines.append(f"| {r.get('schedule', {}).get('locate_every', 1)}{default} | {Path(r['video']).name} | {r['faces_per_frame'][0]} / {r['faces_per_frame'][1]} "
                         f"| {r['tracks'][0]} / {r['tracks'][1]} | {'equal' if r['same'] else 'DIFFERENT'} "
                         f"| {r.get('label_agreement', '-')} |")
    return [f"Sources: {source('guard_l1', d['guard_l1'])}; {source('guard', d['guard'])}.", "", *lines]


def journal_section(d: dict[str, dict | None]) -> list[str]:
    """Issue 12: what the journal costs in file mode, and broker outages with events flowing."""
    cost = d["journal_cost"]
    on, off = results_by(cost, journal=True), results_by(cost, journal=False)
    lines = [f"Source: {source('journal_cost', cost)}.", ""]
    if on and off:
        lines += ["| journal | frames/s (median) | single runs | CPU ms/frame | publish ms p99 |", "|---|---|---|---|---|"]
        for name, r in (("on", on), ("off (commit skipped)", off)):
            runs = ", ".join(f(x["fps"]) for x in r.get("runs", []))
            lines.append(f"| {name} | {f(r['fps'])} | {runs} | {f(r['cpu_s_per_frame'] * 1000, 2)} "
                         f"| {f(r['stages_ms']['publish']['p99'], 2)} |")
        lines += ["", f"With the journal: {f(100 * on['fps'] / off['fps'], 1)} % of the frames/s without it."]
    lines += ["", "| outage | events committed while the broker was away | lost | first arrivals in seq order "
              "| repeats | RSS before / end of outage MiB | RSS growth MiB |", "|---|---|---|---|---|---|---|"]
    for name in ("journal_outage_30s", "journal_outage_300s"):
        o = d[name]
        if o is None:
            lines.append(f"| {name}: not measured yet | | | | | | |")
            continue
        lines.append(f"| {f(o['outage_s'], 0)} s | {o['events_committed_during_outage']} of {o['events_in_journal']} "
                     f"| {o['events_lost']} | {'yes' if o['first_arrivals_in_seq_order'] else '**no**'} "
                     f"| {o['repeats']} | {o['rss_mb_before_outage']} / {o['rss_mb_end_of_outage']} "
                     f"| {o['rss_growth_mb']} |")
    lines += ["", "Outage sources: " + "; ".join(source(n, d[n]) for n in ("journal_outage_30s", "journal_outage_300s"))
              + ". The daemon plays the sample looped at its own rate with `tracker.heartbeat_s: 0.2` (more events);"
              " a subscriber with a persistent QoS 1 session checks every event of the journal."]
    return lines


def dashboard_section(d: dict[str, dict | None]) -> list[str]:
    """Issue 14: event to bar on screen, and the Live page's cost to the daemon's feed."""
    lat, feed = d["dashboard_latency"], d["dashboard_feed_cpu"]
    lines = ["| figure | value | source |", "|---|---|---|"]
    if lat:
        lines.append(f"| event published to its bar drawn, {f(lat['rate'], 0)} events/s | p50 {lat['p50_ms']} ms, "
                     f"**p95 {lat['p95_ms']} ms**, max {lat['max_ms']} ms ({lat['events_drawn']} of "
                     f"{lat['events_sent']} drawn) | {source('dashboard_latency', lat)} |")
    if feed:
        lines.append(f"| the feed at 30 states/s, Live page closed / open | {feed['cores_page_closed']} / "
                     f"{feed['cores_page_open']} core: the open page costs **{feed['open_page_costs_cores']:+} core** "
                     f"| {source('dashboard_feed_cpu', feed)} |")
    return lines


def analyze_section(d: dict[str, dict | None]) -> list[str]:
    """Issue 23: POST /api/analyze on a 640x480 photo while the sample plays live, and the live drops."""
    lines = ["`edgeemo run --source sample` (played like a camera at 29.97 frames/s, dashboard on) in a subprocess; "
             "a 640x480 JPEG with one face posted to `/api/analyze` by a logged-in viewer in 10 s windows, "
             "interleaved with 10 s windows without uploads; the live pipeline's frames read and dropped "
             "(`backlog`) counted from `/metrics` over the same windows; the first upload (models loading) left "
             "out. Target: a median of 300 ms or less, and no more live drops than without uploads.", "",
             "| uploads | latency | live frames dropped, without / with uploads | source |", "|---|---|---|---|"]
    for name in ("analyze", "analyze_flood"):
        r = d[name]
        if r:
            pace = "back to back" if r["rate_per_s"] == "back to back" else f"{f(r['rate_per_s'], 0)} a second"
            a, b = r["live_without_uploads"], r["live_with_uploads"]
            lines.append(f"| {pace} ({r['uploads']}) | **median {r['median_ms']} ms**, p95 {r['p95_ms']} ms, max "
                         f"{r['max_ms']} ms (first {r['first_upload_ms']} ms) | {a['dropped']:.0f} of {a['read']:.0f} / "
                         f"{b['dropped']:.0f} of {b['read']:.0f} | {source(name, r)} |")
    return lines


def face_model_section(data: dict | None) -> list[str]:
    """The shipped face model against the one before it, in one run of the daemon (issue 20)."""
    lines = [f"Source: {source('face_model', data)}. The previous model is `models/edgeemo-face-int8` at "
             f"commit {OLD_FACE_COMMIT}; the same sample, faces only, both cores.", "",
             "| model | mode | frames/s | CPU ms/frame | cores | processed | faces/frame | classify ms p50/p99 |",
             "|---|---|---|---|---|---|---|---|"]
    for r in (data or {}).get("results", []):
        s, st = r["spec"], r["stages_ms"]
        model = "before (" + OLD_FACE_COMMIT + ")" if "old-face" in str(s.get("classifier")) else "**shipped**"
        lines.append(f"| {model} | {s['mode']} | {f(r['fps'])} | {f(r['cpu_s_per_frame'] * 1000, 2)} "
                     f"| {f(r['cpu_cores'], 3)} | {r['frames_processed']}/{r['frames_captured']} "
                     f"| {f(r['faces_per_frame'], 2)} | {f(st['classify']['p50'], 2)}/{f(st['classify']['p99'], 2)} |")
    return lines
CAMERAS_NOTE = """Each run is the real daemon (`python -m edgeemo run`) with N copies of the sample as
cameras, each played at its own 29.97 frames/s, faces only (voice, dashboard and MQTT off), read
through its own metrics page over a stretch after every camera's first analysed frame: **offered**
is the frames the cameras delivered (`edgeemo_frames_total`), **analysed** those that went through
detection and tracking, **dropped** those a camera replaced before its worker took them
(`edgeemo_frames_dropped_total{reason="backlog"}`); **cores** is the process's CPU time per second.
`analysis.workers` at its default: one worker per CPU the process may use, so two on all CPUs and
one under `taskset -c 0`. A device carries as many cameras as it analyses at or near 100 %; past
that, each camera's newest frames are analysed and the others dropped and counted, never queued."""


def cameras_section(data: dict | None) -> list[str]:
    """Issue 25: how many cameras a device carries, on all its CPUs and on one; a table and a plot."""
    if data is None:
        return ["Not measured yet: `python -m tools.bench.report --run --only cameras`."]
    from tools.bench.cameras import table

    results = data["results"]
    one = next((r for r in results if r["cpus"] == "all" and r["cameras"] == 1), None)
    sixteen = next((r for r in results if r["cpus"] == "all" and r["cameras"] == 16), None)
    rows = ["| target | measured (medians) | verdict |", "|---|---|---|"]
    if sixteen:
        rows.append(f"| 16 cameras at 30 frames/s, faces only: >= 99 % of offered frames analysed "
                    f"| {f(100 * sixteen['analysed_share'], 2)} % ({sixteen['analysed']}/{sixteen['offered']}), "
                    f"{f(sixteen['cores'], 3)} cores | {verdict(sixteen['analysed_share'] >= 0.99)} |")
    if one:
        rows.append(f"| 1 camera: <= 0.12 core | {f(one['cores'], 3)} core | {verdict(one['cores'] <= 0.12)} |")
    loads = [run["loadavg_at_start"][0] for r in results for run in r["runs"]]
    cpus = data.get("machine", {}).get("usable_cpus") or 1
    busy = [] if min(loads) < cpus else [
        "", f"**Other work shared the machine during every run** (1-min load average {min(loads)} to "
        f"{max(loads)} on {cpus} CPUs): the daemon got only part of the CPUs, so these figures understate "
        "what an idle device of this kind carries; rerun on a quiet machine before reading a capacity from them."]
    return [f"Source: {source('cameras', data)}.", "", CAMERAS_NOTE, "", *rows, "", table(results), "",
            f"![frames analysed and CPU against cameras]({PLOT.relative_to(REPO).as_posix()})", "",
            f"1-min load average at the start of each single run, in run order: {', '.join(map(str, loads))}.", *busy]


SPLIT_NOTE = """The same 16 cameras, once in one daemon (its two worker threads share one interpreter lock)
and once dealt to two daemons of 8 cameras with one worker each: two processes, no lock shared
between them, the best that worker processes could do on these two CPUs. Medians of the rounds, in
one run; each column's median is taken on its own."""


def split_section(data: dict | None) -> list[str]:
    """Issue 25: whether worker processes instead of threads would carry 16 cameras here."""
    if data is None:
        return []
    from tools.bench.cameras import table

    lines = ["### Threads against processes: 16 cameras", "", f"Source: {source('cameras_split', data)}.", "",
             SPLIT_NOTE, "", table(data["results"]), ""]
    for r in data["results"]:
        shares = ", ".join(f"{100 * run['analysed_share']:.1f} %" for run in r["runs"])
        loads = ", ".join(str(run["loadavg_at_start"][0]) for run in r["runs"])
        lines.append(f"- {r['daemons']} daemon{'s' if r['daemons'] > 1 else ''}: single runs {shares} analysed, "
                     f"{r['cores'] / r['cameras']:.3f} core per camera (median), 1-min load average at each "
                     f"run's start {loads}.")
    return lines


VOICE_COST_NOTE = """One 3 s window as the voice stage pays for it, on one CPU: speech detection, log-mel
features and the int8 model, windows following on through a stream of noise as a microphone's do
(`tools.eval.voice.cost_ms`). Each variant in a fresh interpreter, round-robin; medians of the rounds.
**now**: the VAD band-passes only each window's new second, its filter carried over, and freed memory
stays in the process (`edgeemo.core.memory`, as `edgeemo run` sets it); **whole-window VAD**: the
VAD filters all 3 s each time; **glibc defaults**: freed arrays go back to the OS and every window
faults their pages in again; **as before**: both, the voice stage before issue 24's change. Under
glibc's defaults, which freed blocks go back to the OS depends on the process's earlier allocations
(its threshold follows the largest block freed so far), so the two rows with the defaults need not
add up the way the work they do would suggest."""


def voice_cost_section(data: dict | None) -> list[str]:
    """Issue 24: the voice stage's cost per window against 2 ms, now and as it was."""
    if data is None:
        return ["Not measured yet: `python -m tools.bench.report --run --only voice_cost`."]
    from tools.bench.voice_cost import table

    now = data["results"]["now"]["median_ms"]
    return [f"Source: {source('voice_cost', data)}; card `{data['card']}`.", "", VOICE_COST_NOTE, "",
            "| target | measured (median) | verdict |", "|---|---|---|",
            f"| voice cost per window <= {data['acceptance_ms']:g} ms on one core | {now:.2f} ms "
            f"| {verdict(now <= data['acceptance_ms'])} |", "", table(data["results"])]


def report() -> str:
    names = ("vs_fer_sample", "vs_fer_busy", "file", "file_every_frame", "live", "cadence_k", "cadence_m", "cadence_l",
             "regions", "guard", "guard_l1", "file_l1", "live_l1", "vs_fer_sample_l1", "vs_fer_busy_l1",
             "journal_cost", "journal_outage_30s", "journal_outage_300s", "dashboard_latency", "dashboard_feed_cpu",
             "analyze", "analyze_flood", "face_model", "cameras", "cameras_split", "voice_cost")
    d = {name: load(name) for name in names}
    out = [HEAD, "## Machine", "", *machine_section(d), "", "## Against the targets of issue 15", "", *targets(d), "",
           "### The same targets with every followed face located on every frame", "", *strict_section(d), "",
           "## 1. edgeemo against `fer`, one CPU, one inference thread, faces only", "",
           "### Sample (samples/demo.mp4: the four RAVDESS AV clips joined, 640x360, 1 face)", "",
           *vs_fer_section("vs_fer_sample", d["vs_fer_sample"]), "",
           f"### Busy clip (data/busy_1280x720.mp4, 4 faces; {max_frames(d['vs_fer_busy'])})", "",
           *vs_fer_section("vs_fer_busy", d["vs_fer_busy"]), "",
           "## 2. File mode, both cores (sample), defaults against every frame in full", "",
           f"Sources: {source('file', d['file'])}; {source('file_every_frame', d['file_every_frame'])}.", "",
           *run_rows({"results": [*(d["file"] or {}).get("results", []), *(d["file_every_frame"] or {}).get("results", [])]}, ""), "",
           "## 3. Live mode at 29.97 frames/s: the sample, and an empty still room", "",
           f"Source: {source('live', d['live'])}.", "", *run_rows(d["live"], ""), "",
           "## 4. Choosing K, M and L: file mode, one CPU", "",
           f"Sources: {source('cadence_k', d['cadence_k'])}; {source('cadence_m', d['cadence_m'])}.", "",
           *run_rows({"results": [*(d["cadence_k"] or {}).get("results", []), *(d["cadence_m"] or {}).get("results", [])]}, ""),
           "", CADENCE_NOTE, "",
           "### How often a followed face is located between keyframes (`detector.locate_every`, L)", "",
           f"Source: {source('cadence_l', d['cadence_l'])}; {max_frames(d['cadence_l'])} of each clip.", "",
           *run_rows(d["cadence_l"], ""), "", *locate_guard(d), "", LOCATE_NOTE, "",
           "### The size of a followed face in the model's input (`detector.region_face_px`)", "",
           *regions_section(d["regions"]), "",
           "## 5. Accuracy guard: the schedule against every frame analysed in full", "",
           "`tools/eval/accuracy_guard.py` runs the daemon's own steps (FrameAnalysis + FaceTracker) twice per video; a "
           "segment is a stretch of samples/demo_labels.csv (the whole clip otherwise) in one tile of the picture "
           "(2x2 on the busy clip); the timeline agreement is the share of 0.1 s steps per tile where both hold the "
           "same emotion.", "", *guard_section(d["guard"]), "",
           "## 6. The event journal (issue 12): its cost, and broker outages", "", *journal_section(d), "",
           "## 7. The web dashboard (issue 14), headless Debian Chromium", "", *dashboard_section(d), "",
           "## 8. Analysing a file from the dashboard (issue 23) while the sample plays live", "", *analyze_section(d), "",
           "## 9. The distilled face model (issue 20) against the one before it", "",
           *face_model_section(d["face_model"]), "",
           "## 10. Cameras per device (issue 25): frames analysed and CPU against cameras", "",
           *cameras_section(d["cameras"]), "", *split_section(d["cameras_split"]), "",
           "## 11. The voice stage's cost per window (issue 24)", "", *voice_cost_section(d["voice_cost"]), ""]
    return "\n".join(out)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", action="store_true", help="run the suite first (rewrites bench/results/*.json)")
    p.add_argument("--only", nargs="+", metavar="NAME", help="run only these parts of the suite")
    p.add_argument("--repeat", type=int, default=3, help="runs (or rounds) per setting; medians")
    args = p.parse_args()
    if args.run:
        run_suite(args.repeat, args.only)
    REPORT.write_text(report())
    print(f"wrote {REPORT.relative_to(REPO)}")
    cameras = load("cameras")
    if cameras is not None:
        from tools.bench.cameras import plot

        plot(cameras["results"], PLOT)
        print(f"wrote {PLOT.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
