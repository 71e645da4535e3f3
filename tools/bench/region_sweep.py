"""Choosing `detector.region_face_px`: how small a followed face may be in the model's input.

    python -m tools.bench.region_sweep [--video samples/demo.mp4 data/busy_1280x720.mp4] [--px 64 48 40 32 24]
                                 [--frames 150] [--json OUT]

Between keyframes YuNet runs on a region around each followed face, shrunk so the face is at most
`region_face_px` pixels. Smaller is cheaper, but the landmarks, from which the classifier's
eye-aligned crop is cut, get coarser. For each setting this runs FrameAnalysis (keyframes every
`full_frame_every`, classification every frame) over the first frames of each video and compares
every frame's faces with a full-frame detection of the same frame: the landmark error relative to
the eye distance, the largest class-probability difference per face, and the detection CPU time per
frame (this thread, one inference thread). Faces are paired by the tracker's greedy IoU matching;
frames where the two find a different number of faces are counted apart.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np


from edgeemo.sources.reader import FrameReader
from edgeemo.sources.spec import parse_source
from edgeemo.config.load import load_config
from edgeemo.config.schema import Config
from edgeemo.core.geometry import greedy_match, iou_matrix
from edgeemo.core.types import Faces
from edgeemo.vision.analysis import FrameAnalysis

REPO = Path(__file__).resolve().parents[2]


def read_frames(video: str, limit: int) -> list[np.ndarray]:
    reader, frames = FrameReader(parse_source(video)), []
    while len(frames) < limit and (item := reader.read()) is not None:
        frames.append(item[0])
    reader.close()
    return frames


def matched(faces: Faces, reference: Faces) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the pairs of faces that overlap most (the tracker's greedy IoU matching)."""
    pairs = greedy_match(iou_matrix(reference.boxes, faces.boxes), 0.3)
    return np.array([f for _, f in pairs], np.int64), np.array([r for r, _ in pairs], np.int64)


def sweep_one(frames: list[np.ndarray], reference: list[tuple[Faces, np.ndarray]], px: int) -> dict:
    analysis = FrameAnalysis(load_config(None, {"classifier.every_frames": 1, "detector.region_face_px": px}))
    errors, diffs, differ, detect_s = [], [], 0, 0.0
    inputs: Counter[str] = Counter()   # the model's input sizes (height x width) on region frames
    detector, shapes = analysis.detector, []
    run, detect_regions = detector.model.run, detector.detect_regions

    def recorded_run(blob: np.ndarray) -> list[np.ndarray]:
        shapes.append(blob.shape)
        return run(blob)

    def regions(frame: np.ndarray, boxes: list, scale: float | None = None) -> Faces:
        faces = detect_regions(frame, boxes, scale)
        inputs[f"{shapes[-1][2]}x{shapes[-1][3]}"] += 1
        return faces

    detector.model.run, detector.detect_regions = recorded_run, regions
    for frame, (ref, ref_probs) in zip(frames, reference):
        started = time.thread_time()
        faces = analysis.detect(frame, "sweep")
        detect_s += time.thread_time() - started
        probs = analysis.classifier.classify(frame, faces)
        ours, theirs = matched(faces, ref)
        if len(faces) != len(ref) or len(ours) != len(ref):
            differ += 1
            continue
        eyes = np.linalg.norm(ref.landmarks[theirs, 0] - ref.landmarks[theirs, 1], axis=1)
        errors += list(np.linalg.norm(faces.landmarks[ours] - ref.landmarks[theirs], axis=2).mean(axis=1) / eyes)
        diffs += list(np.abs(probs[ours] - ref_probs[theirs]).max(axis=1))
    return {"region_face_px": px, "landmark_error_per_eye_distance": round(float(np.mean(errors)), 4),
            "max_prob_difference_mean": round(float(np.mean(diffs)), 4),
            "max_prob_difference_p95": round(float(np.percentile(diffs, 95)), 4),
            "frames_with_another_face_count": differ, "region_input": inputs.most_common(1)[0][0] if inputs else None, "detect_cpu_ms_per_frame": round(detect_s / len(frames) * 1000, 3),
            "counts": vars(analysis.scheduler.counts)}


def sweep(video: str, settings: list[int], limit: int) -> dict:
    frames = read_frames(video, limit)
    full = FrameAnalysis(Config())
    reference = []
    for frame in frames:
        faces = full.detector.detect(frame)
        reference.append((faces, full.classifier.classify(frame, faces)))
    sweep_one(frames, reference, settings[0])  # warm-up: the first inference at each input size plans
    runs = []
    for px in settings:
        print(f"[region sweep] {video}: region_face_px {px}", file=sys.stderr, flush=True)
        runs.append(sweep_one(frames, reference, px))
    return {"video": video, "frames": len(frames), "runs": runs}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--video", nargs="+", default=["samples/demo.mp4", "data/busy_1280x720.mp4"])
    p.add_argument("--px", nargs="+", type=int, default=[64, 48, 40, 32, 24])
    p.add_argument("--frames", type=int, default=150)
    p.add_argument("--json", type=Path)
    args = p.parse_args()
    results = [sweep(video, args.px, args.frames) for video in args.video]
    for result in results:
        for run in result["runs"]:
            print(f"{Path(result['video']).name} px {run['region_face_px']}: landmark error "
                  f"{run['landmark_error_per_eye_distance']} eye distances, max |dp| mean {run['max_prob_difference_mean']}"
                  f" p95 {run['max_prob_difference_p95']}, detect {run['detect_cpu_ms_per_frame']} ms/frame")
    if args.json:
        args.json.write_text(json.dumps({"sweep": results}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
