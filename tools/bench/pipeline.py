"""Benchmark the real edgeemo pipeline on a video: throughput, CPU per frame, stage latency, memory.

    python -m tools.bench.pipeline [--video samples/demo.mp4] [--mode file|live] [--threads 1] [--backend onnxruntime]
                          [--classifier CARD] [--input-width 320] [--repeat 3] [--max-frames N]
                          [--mqtt-url mqtt://host:port | local] [--pin-cpus N] [--json OUT]
    python -m tools.bench.pipeline --matrix --repeat 3 --json data/bench/matrix.json
    python -m tools.bench.pipeline --vs-fer --repeat 3 --json data/bench/vs_fer.json

One run builds the real daemon (edgeemo.service.daemon.Daemon: capture thread, detect / classify / track /
publish stage threads, JSONL event log, and MQTT when --mqtt-url is given) from the default config
plus the options, and runs it to the end of the video:

* file mode: lossless, as `edgeemo run --once`: every frame analysed, as fast as the pipeline goes;
* live mode: the file paced at its own frame rate, newest frame wins, as a camera delivers it.

It reports frames processed per second, process CPU-seconds per processed frame, the share of
captured frames processed, per-stage durations p50/p95/p99 (capture = decoding one frame; the
pipeline stages are timed by wrapping each Stage's step, so the edgeemo code is unchanged),
capture-to-publish latency (Frame.captured_at to the end of its publish step), peak RSS, faces per
frame. Models are loaded and run once on the first frame before the clock starts, so the figures
are the steady state; loading time is reported apart (load_s).

Every option that names a setting takes several values (`--threads 1 2 --flip-margin 0 card 1`):
the runs are the product of all values. --matrix fills in every axis not given: threads 1 and 2,
onnxruntime and OpenVINO, the fp32 and (if present) int8 model cards, input widths 320 and 640, the
bundled sample and the busy 1280x720 clip (tools/clips/busy.py; built when missing). With more
than one run, --repeat > 1 or --pin-cpus, each run is a fresh subprocess (clean RSS, clean thread
pools, CPU affinity set before any thread exists) and the figures are medians over the repeats.

--vs-fer runs ours and the `fer` package (tools/bench/fer_baseline.py in .venv-fer, see tools/bench/setup_fer_venv.sh)
on the same frames, both pinned to one CPU and one inference thread, and prints the frames/s ratio;
our voice analysis is off there, as fer reads faces only (`--voice on off` measures what it costs).
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import logging
import os
import platform
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path

# edgeemo first, as in the daemon: its __init__ sizes numpy's thread pool before numpy loads
from edgeemo.sources.reader import FrameReader
from edgeemo.config.load import load_config
from edgeemo.config.schema import Config
from edgeemo.service.daemon import Daemon
from edgeemo.pipeline.pipeline import Pipeline, Stage, usable_cpus
from edgeemo.core.resources import models_dir, sample_video
from edgeemo.core.types import Work
from tools.common.machine import cpu_name

import cv2
import numpy as np
import onnxruntime
import openvino

REPO = Path(__file__).resolve().parents[2]

DEFAULTS = Config()  # the daemon's own defaults: what a user gets without a config file

BUSY_CLIP = REPO / "data" / "busy_1280x720.mp4"
FER_VENV = REPO / ".venv-fer"
STAGES = ("capture", "detect", "classify", "track", "publish")
WARM_UP_RUNS = 3


# ------------------------------------------------------------------------------------------- one run

@dataclass(frozen=True)
class RunSpec:
    """Everything that defines one benchmark run; JSON-able, so it can be handed to a subprocess."""

    video: str
    mode: str = "file"                       # file | live
    threads: int = 1                         # detector and classifier intra-op threads, cv2 threads
    backend: str = "onnxruntime"             # onnxruntime | openvino (both models)
    classifier: str = DEFAULTS.classifier.model  # model card: a name in models/ or a path
    input_width: int = 320
    flip_margin: float | None = DEFAULTS.classifier.flip_margin  # mirror pass for unsure faces; None: the card's
    voice: bool = DEFAULTS.voice.enabled     # analyse the video's sound too (voice and fused events)
    journal: bool = True                     # False: the journal's append is skipped (its cost, side by side)
    full_frame_every: int = DEFAULTS.detector.full_frame_every  # keyframe period K (1: full frame every frame)
    classify_every: int = DEFAULTS.classifier.every_frames     # classification cadence M per face
    locate_every: int = DEFAULTS.detector.locate_every         # a followed face's region searched every L frames
    motion: bool = DEFAULTS.detector.motion.enabled            # motion gating
    max_frames: int | None = None
    mqtt_url: str | None = None
    pin_cpus: int | None = None              # restrict the process to this many CPUs


class Recorder:
    """Collects per-frame durations of every stage, capture-to-publish latency and faces per frame.

    The pipeline's own histograms have coarse buckets; percentiles need the raw samples. Appending
    to a list is atomic under the GIL, so the stage threads need no lock.
    """

    def __init__(self) -> None:
        self.seconds: dict[str, list[float]] = {stage: [] for stage in STAGES}
        self.latency: list[float] = []
        self.faces: list[int] = []
        self.last_published = 0.0            # perf_counter() when the last frame left publish
        self.first_published = 0.0           # ... and the first
        self.cpu_at_first = self.cpu_at_last = 0.0   # process CPU time at those moments

    def wrap(self, stage: Stage) -> None:
        """Time each of the stage's steps (the Stage holds bound methods, so wrapping the pipeline's is not enough)."""
        stage.steps = [(name, self._timed(name, step), histogram) for name, step, histogram in stage.steps]

    def _timed(self, name: str, step: Callable[[Work], Work]) -> Callable[[Work], Work]:
        samples = self.seconds[name]

        def timed(work: Work) -> Work:
            started = time.perf_counter()
            work = step(work)
            done = time.perf_counter()
            samples.append(done - started)
            if name == "detect":
                self.faces.append(len(work.faces))
            elif name == "publish":
                self.latency.append(time.monotonic() - work.frame.captured_at)
                self.last_published, self.cpu_at_last = done, time.process_time()
                if not self.first_published:
                    self.first_published, self.cpu_at_first = done, self.cpu_at_last
            return work

        return timed

    @contextlib.contextmanager
    def reading(self, max_frames: int | None) -> Iterator[None]:
        """Time FrameReader.read (decoding) and stop every reader after `max_frames` frames."""
        original, original_skip = FrameReader.read, FrameReader.skip
        samples = self.seconds["capture"]

        def read(reader: FrameReader) -> tuple[np.ndarray, float] | None:
            if max_frames is not None and reader.index >= max_frames:
                return None
            started = time.perf_counter()
            item = original(reader)
            if item is not None:
                samples.append(time.perf_counter() - started)
            return item

        def skip(reader: FrameReader) -> float | None:
            return None if max_frames is not None and reader.index >= max_frames else original_skip(reader)

        FrameReader.read, FrameReader.skip = read, skip  # type: ignore[method-assign]
        try:
            yield
        finally:
            FrameReader.read, FrameReader.skip = original, original_skip  # type: ignore[method-assign]


def bench_config(spec: RunSpec, folder: Path) -> Config:
    """The default config with the run's settings; events go to a scratch log, never to stdout."""
    cfg = load_config(None, {
        "device_id": "bench", "metrics.enabled": False, "mqtt.url": spec.mqtt_url,
        "event_log.path": str(folder / "events.jsonl"), "event_log.stdout": False,
        "journal.path": str(folder / "journal.db"),
        "detector.backend": spec.backend, "detector.threads": spec.threads,
        "detector.input_width": spec.input_width,
        "classifier.backend": spec.backend, "classifier.threads": spec.threads,
        "classifier.model": spec.classifier, "classifier.flip_margin": spec.flip_margin,
        "voice.enabled": spec.voice, "detector.full_frame_every": spec.full_frame_every,
        "classifier.every_frames": spec.classify_every, "detector.motion.enabled": spec.motion,
        "detector.locate_every": spec.locate_every,
    })
    cfg.sources = [cfg.sources[0].model_copy(update={"name": "bench", "url": spec.video})]
    return cfg


def video_info(path: str) -> dict:
    cap = cv2.VideoCapture(path)
    info = {"path": path, "width": int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)),
            "height": int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)), "fps": round(cap.get(cv2.CAP_PROP_FPS), 3),
            "frames": int(cap.get(cv2.CAP_PROP_FRAME_COUNT))}
    cap.release()
    return info


def warm_up(pipeline: Pipeline, video: str) -> None:
    """Run both models on the first frame: first inferences allocate arenas and compile kernels."""
    cap = cv2.VideoCapture(video)
    ok, frame = cap.read()
    cap.release()
    if not ok:
        raise SystemExit(f"cannot read a frame of {video}")
    for analysis in pipeline.analyses:  # each worker's own sessions
        for _ in range(WARM_UP_RUNS):
            faces = analysis.detector.detect(frame)
            analysis.classifier.classify(frame, faces)


def run_once(spec: RunSpec) -> dict:
    """One run of the real daemon in this process; returns its figures (see summarise)."""
    recorder = Recorder()
    with tempfile.TemporaryDirectory() as tmp, recorder.reading(spec.max_frames):
        cfg = bench_config(spec, Path(tmp))
        loading = time.perf_counter()
        daemon = Daemon(cfg, lossless=spec.mode == "file")
        if not spec.journal:  # measure what the journal costs: the same run with its commit left out
            daemon.events.journal.append = lambda payloads, delivered=False: None  # type: ignore[method-assign]
        warm_up(daemon.pipeline, spec.video)
        load_s = time.perf_counter() - loading
        for stage in daemon.pipeline.stages:
            recorder.wrap(stage)
        cpu0, wall0 = time.process_time(), time.perf_counter()
        daemon.start()
        daemon.supervise()        # returns once every frame has gone through publish
        cpu_s = time.process_time() - cpu0
        captured = sum(c.frames_read for c in daemon.pipeline.captures)
        errors = daemon.metrics.registry.get_sample_value("edgeemo_errors_total", {"where": "pipeline"})
        exit_code = daemon.shutdown()
        events = len((Path(tmp) / "events.jsonl").read_text().splitlines())
    wall_s = max(recorder.last_published - wall0, 1e-9)
    if spec.mode == "live":  # the steady load: from the first frame published to the last (start-up left out)
        wall_s = max(recorder.last_published - recorder.first_published, 1e-9)
        cpu_s = recorder.cpu_at_last - recorder.cpu_at_first
    return summarise(spec, recorder, captured, daemon.pipeline.frames_done, cpu_s, wall_s) | {
        "load_s": round(load_s, 3), "events": events, "errors": int(errors or 0), "exit_code": exit_code}


def percentiles(seconds: list[float]) -> dict[str, float | None]:
    """p50/p95/p99 and mean in milliseconds (None when there are no samples)."""
    if not seconds:
        return {"p50": None, "p95": None, "p99": None, "mean": None}
    ms = np.asarray(seconds) * 1000
    p50, p95, p99 = np.percentile(ms, [50, 95, 99])
    return {"p50": round(float(p50), 3), "p95": round(float(p95), 3), "p99": round(float(p99), 3),
            "mean": round(float(ms.mean()), 3)}


def summarise(spec: RunSpec, recorder: Recorder, captured: int, processed: int, cpu_s: float,
              wall_s: float) -> dict:
    """The figures of one run. cpu_cores = CPU-seconds per wall second (in live mode: the load it puts on the box)."""
    frames = max(processed, 1)
    return {
        "spec": asdict(spec),
        "video": video_info(spec.video),
        "frames_captured": captured,
        "frames_processed": processed,
        "share_processed": round(processed / captured, 4) if captured else 0.0,
        "wall_s": round(wall_s, 4),
        "fps": round(processed / wall_s, 2),
        "cpu_s": round(cpu_s, 4),
        "cpu_s_per_frame": round(cpu_s / frames, 6),
        "cpu_cores": round(cpu_s / wall_s, 3),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "faces_per_frame": round(float(np.mean(recorder.faces)), 3) if recorder.faces else 0.0,
        "stages_ms": {stage: percentiles(recorder.seconds[stage]) for stage in STAGES},
        "capture_to_publish_ms": percentiles(recorder.latency),
    }


# ------------------------------------------------------------------------------- runs in subprocesses

def pinned(cpus: int | None) -> Callable[[], None] | None:
    """A preexec_fn that restricts the child to its first `cpus` CPUs before any thread starts."""
    if not cpus:
        return None
    chosen = sorted(os.sched_getaffinity(0))[:cpus]
    return lambda: os.sched_setaffinity(0, chosen)


def run_child(cmd: list[str], cpus: int | None) -> dict:
    """Run a command that writes one JSON result to the path given as its last argument."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "result.json"
        proc = subprocess.run([*cmd, str(out)], check=False, preexec_fn=pinned(cpus),  # noqa: PLW1509
                              capture_output=True, text=True)
        if proc.returncode != 0 or not out.exists():
            raise SystemExit(f"benchmark run failed ({' '.join(cmd)}):\n{proc.stderr[-3000:]}")
        return json.loads(out.read_text())


def run_isolated(spec: RunSpec, repeat: int) -> dict:
    """`repeat` runs, each in a fresh process; medians of every figure, the single runs kept under `runs`."""
    cmd = [sys.executable, "-m", "tools.bench.pipeline", "--worker", json.dumps(asdict(spec)), "--json"]
    runs = [run_child(cmd, spec.pin_cpus) for _ in range(repeat)]
    return median_record(runs) | {"repeat": repeat, "runs": runs}


def median_record(records: list[dict]) -> dict:
    """Field-by-field median of numbers (recursing into dicts); other values from the first record.

    Counts (all ints) take the lower median, a value that was really observed, so they stay ints.
    """
    first = records[0]
    merged: dict = {}
    for key, value in first.items():
        values = [r.get(key) for r in records]
        numbers = [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
        if isinstance(value, dict) and key != "spec":
            merged[key] = median_record(values)
        elif numbers and all(isinstance(v, int) for v in numbers):
            merged[key] = statistics.median_low(numbers)
        elif numbers:
            merged[key] = round(statistics.median(numbers), 6)
        else:
            merged[key] = value
    return merged


# --------------------------------------------------------------------------------------------- set-up

@contextlib.contextmanager
def local_broker() -> Iterator[str]:
    """A throw-away mosquitto on a free loopback port (for `--mqtt-url local`)."""
    binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    if not Path(binary).exists():
        raise SystemExit("--mqtt-url local needs mosquitto (apt-get install mosquitto)")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with tempfile.TemporaryDirectory() as tmp:
        conf = Path(tmp) / "mosquitto.conf"
        conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
        proc = subprocess.Popen([binary, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_listening(port, proc)
            yield f"mqtt://127.0.0.1:{port}"
        finally:
            proc.terminate()
            proc.wait(10)


def wait_listening(port: int, proc: subprocess.Popen, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"mosquitto exited with code {proc.returncode}")
        with contextlib.suppress(OSError):
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        time.sleep(0.05)
    raise SystemExit(f"mosquitto did not listen on port {port}")


def matrix_cards() -> list[str]:
    """The fp32 card, and the int8 card when tools/export/quantize_face.py has made one."""
    return [card for card in ("edgeemo-face.json", "edgeemo-face-int8.json") if (models_dir() / card).exists()]


def matrix_videos() -> list[str]:
    if not BUSY_CLIP.exists():
        from tools.clips.busy import make_busy_clip

        print(f"building {BUSY_CLIP} (tools/clips/busy.py)", file=sys.stderr)
        make_busy_clip(BUSY_CLIP)
    return [str(sample_video()), str(BUSY_CLIP)]


def expand(args: argparse.Namespace, mqtt_url: str | None) -> list[RunSpec]:
    """The product of every axis; --matrix fills in the axes left unset on the command line."""
    axes = {
        "video": args.video or (matrix_videos() if args.matrix else [str(sample_video())]),
        "mode": args.mode or ["file"],
        "threads": args.threads or ([1, 2] if args.matrix else [1]),
        "backend": args.backend or (["onnxruntime", "openvino"] if args.matrix else ["onnxruntime"]),
        "classifier": args.classifier or (matrix_cards() if args.matrix else [DEFAULTS.classifier.model]),
        "input_width": args.input_width or ([320, 640] if args.matrix else [320]),
        "flip_margin": args.flip_margin or [DEFAULTS.classifier.flip_margin],
        "voice": [choice == "on" for choice in args.voice] if args.voice else [DEFAULTS.voice.enabled],
        "journal": [choice == "on" for choice in args.journal] if args.journal else [True],
        "full_frame_every": args.full_frame_every or [DEFAULTS.detector.full_frame_every],
        "classify_every": args.classify_every or [DEFAULTS.classifier.every_frames],
        "locate_every": args.locate_every or [DEFAULTS.detector.locate_every],
        "motion": [choice == "on" for choice in args.motion] if args.motion else [DEFAULTS.detector.motion.enabled],
    }
    return [RunSpec(**dict(zip(axes, combo, strict=True)), max_frames=args.max_frames, mqtt_url=mqtt_url,
                    pin_cpus=args.pin_cpus) for combo in itertools.product(*axes.values())]


def machine_info() -> dict:
    """What the figures were measured on, including the load average: a busy box skews everything."""
    return {"cpu": cpu_name(), "nproc": os.cpu_count(), "usable_cpus": usable_cpus(),
            "loadavg_at_start": [round(x, 2) for x in os.getloadavg()], "python": platform.python_version(),
            "onnxruntime": onnxruntime.__version__, "openvino": openvino.__version__, "opencv": cv2.__version__,
            "numpy": np.__version__, "date": time.strftime("%Y-%m-%d %H:%M:%S %z")}


# ------------------------------------------------------------------------------------------- reporting

def fmt(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def trio(p: dict) -> str:
    return "/".join(fmt(p[k], 2) for k in ("p50", "p95", "p99"))


TABLE_HEAD = ("| video | mode | thr | backend | model | width | frames/s | CPU ms/frame | cores | processed "
              "| faces/frame | decode ms p50/95/99 | detect ms p50/95/99 | classify ms p50/95/99 "
              "| track ms p99 | publish ms p99 | capture→publish ms p50/p99 | RSS MiB |")


def table_row(r: dict) -> str:
    s, st, lat = r["spec"], r["stages_ms"], r["capture_to_publish_ms"]
    video = f"{Path(s['video']).name} ({r['video']['width']}x{r['video']['height']})"
    margin = s.get("flip_margin")
    model = Path(s["classifier"]).stem + (f" (flip margin {margin})" if margin is not None else "") + \
        (" + voice" if s.get("voice") else "") + ("" if s.get("journal", True) else ", no journal")
    cells = [video, s["mode"], str(s["threads"]), s["backend"], model, str(s["input_width"]),
             fmt(r["fps"]), fmt(r["cpu_s_per_frame"] * 1000, 2), fmt(r["cpu_cores"], 2),
             f"{r['frames_processed']}/{r['frames_captured']}", fmt(r["faces_per_frame"], 2),
             trio(st["capture"]), trio(st["detect"]), trio(st["classify"]), fmt(st["track"]["p99"], 2),
             fmt(st["publish"]["p99"], 2), f"{fmt(lat['p50'])}/{fmt(lat['p99'])}", fmt(r["peak_rss_mib"], 0)]
    return "| " + " | ".join(cells) + " |"


def markdown_table(results: list[dict]) -> str:
    rule = "|" + "---|" * (TABLE_HEAD.count("|") - 1)
    return "\n".join([TABLE_HEAD, rule, *map(table_row, results)])


# ---------------------------------------------------------------------------------------------- vs fer

def fer_once(video: str, max_frames: int | None) -> dict:
    """One run of tools/bench/fer_baseline.py in .venv-fer, pinned to one CPU and one thread."""
    python = FER_VENV / "bin" / "python"
    if not python.exists():
        raise SystemExit(f"{python} not found: run tools/bench/setup_fer_venv.sh first")
    cmd = [str(python), "-m", "tools.bench.fer_baseline", "--video", video]
    if max_frames:
        cmd += ["--max-frames", str(max_frames)]
    return run_child([*cmd, "--json"], 1)


def ours_once(spec: RunSpec) -> dict:
    cmd = [sys.executable, "-m", "tools.bench.pipeline", "--worker", json.dumps(asdict(spec)), "--json"]
    return run_child(cmd, spec.pin_cpus)


def marginal(short: dict, long: dict) -> dict:
    """Cost per frame of the frames the long run has beyond the short one: start-up cancels out."""
    frames = max(long["frames_processed"] - short["frames_processed"], 1)
    return {"frames": frames, "cpu_ms": round((long["cpu_s"] - short["cpu_s"]) / frames * 1000, 3),
            "wall_ms": round((long["wall_s"] - short["wall_s"]) / frames * 1000, 3)}


def ratio(a: float, b: float) -> float | None:
    """a / b, None where b is not positive (a marginal cost lost in the noise of a short run)."""
    return round(a / b, 2) if b > 0 else None


def vs_fer(args: argparse.Namespace, mqtt_url: str | None) -> dict:
    """Ours and fer on the same frames, each process on one CPU with one inference thread.

    Each round runs both pipelines twice, on the first `long` frames and on the first third of them,
    back to back (ours short, fer short, ours long, fer long); the ratio of their marginal costs per
    frame is taken per round, and the medians over rounds are reported.
    """
    video = (args.video or [str(sample_video())])[0]
    long = args.max_frames or video_info(video)["frames"]
    spec = RunSpec(video=video, mode="file", threads=1, backend=(args.backend or ["onnxruntime"])[0],
                   classifier=(args.classifier or [DEFAULTS.classifier.model])[0],
                   input_width=(args.input_width or [320])[0], max_frames=long, mqtt_url=mqtt_url, pin_cpus=1,
                   voice=False,  # fer reads faces only: the same work
                   full_frame_every=(args.full_frame_every or [DEFAULTS.detector.full_frame_every])[0],
                   classify_every=(args.classify_every or [DEFAULTS.classifier.every_frames])[0],
                   locate_every=(args.locate_every or [DEFAULTS.detector.locate_every])[0])
    rounds = []
    for i in range(args.repeat):
        print(f"[vs fer round {i + 1}/{args.repeat}] {video}", file=sys.stderr, flush=True)
        runs = {"ours_short": ours_once(replace(spec, max_frames=long // 3)), "fer_short": fer_once(video, long // 3),
                "ours": ours_once(spec), "fer": fer_once(video, long)}
        ours, fer = marginal(runs["ours_short"], runs["ours"]), marginal(runs["fer_short"], runs["fer"])
        rounds.append({"ours_marginal": ours, "fer_marginal": fer,
                       "cpu_ratio": ratio(fer["cpu_ms"], ours["cpu_ms"]),
                       "wall_ratio": ratio(fer["wall_ms"], ours["wall_ms"]),
                       "fps_ratio": round(runs["ours"]["fps"] / max(runs["fer"]["fps"], 1e-9), 2), "runs": runs})
    merged = median_record([{k: v for k, v in r.items() if k != "runs"} for r in rounds])
    return {"video": video_info(video), "spec": asdict(spec), **merged, "repeat": args.repeat,
            "ours": median_record([r["runs"]["ours"] for r in rounds]),
            "fer": median_record([r["runs"]["fer"] for r in rounds]), "rounds": rounds}


def vs_fer_table(result: dict) -> str:
    ours, fer = result["ours"], result["fer"]
    rows = [("edgeemo", ours, result["ours_marginal"]), ("fer 25.10.3 (Haar + TFLite)", fer, result["fer_marginal"])]
    lines = ["| pipeline | frames | marginal CPU ms/frame | marginal wall ms/frame | frames/s | faces/frame |",
             "|---|---|---|---|---|---|"]
    for name, r, m in rows:
        lines.append(f"| {name} | {r['frames_processed']} | {fmt(m['cpu_ms'], 2)} | {fmt(m['wall_ms'], 2)} "
                     f"| {fmt(r['fps'])} | {fmt(r['faces_per_frame'], 2)} |")
    lines.append(f"\nmarginal cost per frame, fer / edgeemo: CPU {result['cpu_ratio']}x, wall {result['wall_ratio']}x "
                 f"(medians of {result['repeat']} rounds)")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------ main

def flip_margin_arg(text: str) -> float | None:
    """'card' (the model card's margin, the daemon's default) or a number from 0 to 1."""
    if text == "card":
        return None
    value = float(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"flip margin must be 0-1 or 'card', got {text}")
    return value


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--video", nargs="+", help="video file(s) (default: the bundled sample)")
    p.add_argument("--mode", nargs="+", choices=["file", "live"], help="file: lossless, as fast as it goes; "
                   "live: paced at the file's frame rate like a camera (default: file)")
    p.add_argument("--threads", nargs="+", type=int, choices=[1, 2, 3, 4], help="inference + cv2 threads")
    p.add_argument("--backend", nargs="+", choices=["onnxruntime", "openvino"])
    p.add_argument("--classifier", nargs="+", metavar="CARD.json", help="model card (name in models/ or path)")
    p.add_argument("--input-width", nargs="+", type=int, help="YuNet input width (multiple of 32)")
    p.add_argument("--flip-margin", nargs="+", type=flip_margin_arg, metavar="M",
                   help="classifier.flip_margin, 0-1 or 'card' (default: the daemon's, the card's margin)")
    p.add_argument("--voice", nargs="+", choices=["on", "off"],
                   help="voice.enabled: the sound analysed too (default: the daemon's, on)")
    p.add_argument("--journal", nargs="+", choices=["on", "off"],
                   help="off: skip the journal's commit, to measure its cost side by side (default: on)")
    p.add_argument("--full-frame-every", nargs="+", type=int, metavar="K",
                   help="detector.full_frame_every: keyframe period (1: the whole frame every frame)")
    p.add_argument("--classify-every", nargs="+", type=int, metavar="M", help="classifier.every_frames")
    p.add_argument("--locate-every", nargs="+", type=int, metavar="L", help="detector.locate_every")
    p.add_argument("--motion", nargs="+", choices=["on", "off"], help="detector.motion.enabled")
    p.add_argument("--max-frames", type=int, help="stop reading after N frames")
    p.add_argument("--repeat", type=int, default=1, help="runs per setting, each in a fresh process; medians")
    p.add_argument("--mqtt-url", help="publish to this broker; 'local' starts a throw-away mosquitto")
    p.add_argument("--pin-cpus", type=int, metavar="N", help="restrict each run to N CPUs (taskset-like)")
    p.add_argument("--matrix", action="store_true", help="run the full matrix (axes not given on the command line)")
    p.add_argument("--vs-fer", action="store_true", help="compare with the fer package on one thread")
    p.add_argument("--json", type=Path, metavar="OUT", help="write every figure as JSON here")
    p.add_argument("--worker", metavar="SPEC", help=argparse.SUPPRESS)  # one run as a subprocess
    return p.parse_args(argv)


def write_json(path: Path | None, payload: dict) -> None:
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(payload, indent=1) + "\n")


def benchmark(args: argparse.Namespace, mqtt_url: str | None) -> int:
    if args.vs_fer:
        result = vs_fer(args, mqtt_url)
        print(vs_fer_table(result))
        write_json(args.json, {"machine": machine_info(), **result})
        return 0
    specs = expand(args, mqtt_url)
    isolated = len(specs) > 1 or args.repeat > 1 or args.pin_cpus
    if not isolated:
        results = [run_once(specs[0])]
    else:  # round-robin: drift of the machine's load hits every setting alike
        runs: list[list[dict]] = [[] for _ in specs]
        for round_ in range(1, args.repeat + 1):
            for i, spec in enumerate(specs):
                print(f"[round {round_}/{args.repeat}, {i + 1}/{len(specs)}] {json.dumps(asdict(spec))}",
                      file=sys.stderr, flush=True)
                runs[i] += run_isolated(spec, 1)["runs"]
        results = [median_record(r) | {"repeat": args.repeat, "runs": r} for r in runs]
    print(markdown_table(results))
    write_json(args.json, {"machine": machine_info(), "results": results})
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if args.worker:
        write_json(args.json, run_once(RunSpec(**json.loads(args.worker))))
        return 0
    if args.mqtt_url == "local":
        with local_broker() as url:
            return benchmark(args, url)
    return benchmark(args, args.mqtt_url)


if __name__ == "__main__":
    sys.exit(main())
