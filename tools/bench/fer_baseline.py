"""Time the `fer` package (PyPI fer 25.10.3) on a video, frame by frame, pinned to one thread.

    .venv-fer/bin/python -m tools.bench.fer_baseline --video samples/demo.mp4 [--max-frames N] [--json OUT]

Runs in its own environment (tools/bench/setup_fer_venv.sh makes .venv-fer/): fer needs TensorFlow, which
the project does not. `tools/bench/pipeline.py --vs-fer` calls it with the same video and frame limit as our
run, in a process restricted to one CPU.

fer as its README uses it: `FER()` with its defaults (OpenCV Haar cascade for faces, the quantised
TFLite expression model), `detect_emotions(frame)` on every decoded BGR frame. Pinned to one thread
wherever fer's stack has a thread pool: OMP / TF intra- and inter-op pools (environment, set before
TensorFlow loads, and tf.config.threading), cv2.setNumThreads(1) for the cascade, and the TFLite
interpreter, which fer creates without num_threads, is pre-built with num_threads=1 in fer's own
interpreter cache. The models run once on the first frame before the clock starts, as in ours.

Figures, named as in tools/bench/pipeline.py: fps (frames / wall time of decode + detect_emotions, the same
work our file mode does), cpu_s_per_frame (process CPU time), faces_per_frame, stages_ms.capture
(decode) and stages_ms.analyse (detect_emotions), peak RSS.
"""

from __future__ import annotations

import os

# Thread pools are sized when the libraries load, so this comes before importing TensorFlow / OpenCV.
for _name in ("OMP_NUM_THREADS", "TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS", "OPENBLAS_NUM_THREADS",
              "MKL_NUM_THREADS"):
    os.environ[_name] = "1"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import argparse  # noqa: E402
import json  # noqa: E402
import resource  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

from dataclasses import dataclass, field  # noqa: E402

import cv2  # noqa: E402
import fer  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from fer.fer import FER  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "samples" / "demo.mp4"
WARM_UP_RUNS = 3


@dataclass
class Samples:
    """Per-frame measurements: decode and detect_emotions seconds, faces found."""

    decode: list[float] = field(default_factory=list)
    analyse: list[float] = field(default_factory=list)
    faces: list[int] = field(default_factory=list)


def one_thread_fer() -> FER:
    """FER() with its defaults, every thread pool of its stack limited to one thread."""
    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    cv2.setNumThreads(1)
    model = Path(fer.__file__).parent / "data" / "emotion_model_quantized.tflite"
    interpreter = tf.lite.Interpreter(model_path=str(model), num_threads=1)
    interpreter.allocate_tensors()
    FER._tflite_interpreter_cache = interpreter  # FER() takes its interpreter from this cache
    return FER()


def percentiles(seconds: list[float]) -> dict[str, float | None]:
    """p50/p95/p99 and mean in milliseconds, as tools/bench/pipeline.py reports them."""
    if not seconds:
        return {"p50": None, "p95": None, "p99": None, "mean": None}
    ms = np.asarray(seconds) * 1000
    p50, p95, p99 = np.percentile(ms, [50, 95, 99])
    return {"p50": round(float(p50), 3), "p95": round(float(p95), 3), "p99": round(float(p99), 3),
            "mean": round(float(ms.mean()), 3)}


def warm_up(detector: FER, video: str) -> None:
    cap = cv2.VideoCapture(video)
    ok, frame = cap.read()
    cap.release()
    if not ok:
        raise SystemExit(f"cannot read a frame of {video}")
    for _ in range(WARM_UP_RUNS):
        detector.detect_emotions(frame)


def run(video: str, max_frames: int | None) -> dict:
    """Decode and analyse every frame (up to max_frames) in one thread; the figures of the run."""
    detector = one_thread_fer()
    warm_up(detector, video)
    cap = cv2.VideoCapture(video)
    samples = Samples()
    cpu0, wall0 = time.process_time(), time.perf_counter()
    while max_frames is None or len(samples.faces) < max_frames:
        t0 = time.perf_counter()
        ok, frame = cap.read()
        t1 = time.perf_counter()
        if not ok:
            break
        found = detector.detect_emotions(frame)
        samples.decode.append(t1 - t0)
        samples.analyse.append(time.perf_counter() - t1)
        samples.faces.append(len(found))
    cpu_s, wall_s = time.process_time() - cpu0, time.perf_counter() - wall0
    cap.release()
    return {"spec": {"video": video, "mode": "file", "threads": 1, "backend": "tflite", "classifier": "fer",
                     "max_frames": max_frames},
            "versions": {"fer": fer.__version__, "tensorflow": tf.__version__, "opencv": cv2.__version__},
            **summarise(samples, cpu_s, wall_s)}


def summarise(samples: Samples, cpu_s: float, wall_s: float) -> dict:
    """The figures, under the names tools/bench/pipeline.py uses for ours."""
    count = len(samples.faces)
    frames = max(count, 1)
    return {
        "frames_captured": count,
        "frames_processed": count,
        "share_processed": 1.0,
        "wall_s": round(wall_s, 4),
        "fps": round(count / wall_s, 2),
        "analysis_fps": round(count / max(sum(samples.analyse), 1e-9), 2),
        "cpu_s": round(cpu_s, 4),
        "cpu_s_per_frame": round(cpu_s / frames, 6),
        "cpu_cores": round(cpu_s / wall_s, 3),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "faces_per_frame": round(float(np.mean(samples.faces)), 3) if samples.faces else 0.0,
        "stages_ms": {"capture": percentiles(samples.decode), "analyse": percentiles(samples.analyse)},
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--video", default=str(SAMPLE))
    p.add_argument("--max-frames", type=int, help="stop after N frames")
    p.add_argument("--json", type=Path, metavar="OUT", help="write the figures here")
    args = p.parse_args()
    result = run(args.video, args.max_frames)
    print(f"fer: {result['frames_processed']} frames, {result['fps']:.1f} frames/s "
          f"(detect_emotions alone {result['analysis_fps']:.1f}/s), "
          f"{result['cpu_s_per_frame'] * 1000:.2f} CPU ms/frame, {result['faces_per_frame']:.2f} faces/frame")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
