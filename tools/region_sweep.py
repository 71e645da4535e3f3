"""Choosing `detector.region_face_px`: how small a followed face may be in the model's input.

    python tools/region_sweep.py [--video samples/demo.mp4 data/busy_1280x720.mp4] [--px 64 48 40 32]
                                 [--frames 150] [--json OUT]

Between keyframes YuNet runs on a region around each followed face, shrunk so the face is at most
`region_face_px` pixels. Smaller is cheaper, but the landmarks, from which the classifier's
eye-aligned crop is cut, get coarser. For each setting this runs FrameAnalysis (keyframes every
`full_frame_every`, classification every frame) over the first frames of each video and compares
every frame's faces with a full-frame detection of the same frame: the landmark error relative to
the eye distance, the largest class-probability difference per face, and the detection CPU time per
frame (this thread, one inference thread). Faces are matched by position; frames where the two find
a different number of faces are counted apart.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO)]

from edgeemo.capture import FrameReader, parse_source  # noqa: E402
from edgeemo.config import Config, load_config  # noqa: E402
from edgeemo.types import Faces  # noqa: E402
from edgeemo.vision.analysis import FrameAnalysis  # noqa: E402


def read_frames(video: str, limit: int) -> list[np.ndarray]:
    reader, frames = FrameReader(parse_source(video)), []
    while len(frames) < limit and (item := reader.read()) is not None:
        frames.append(item[0])
    reader.close()
    return frames


def by_position(faces: Faces) -> np.ndarray:
    """Indices of the faces in reading order (rows of the picture, then left to right)."""
    return np.lexsort((faces.boxes[:, 0], np.round(faces.boxes[:, 1] / 100)))


def sweep_one(frames: list[np.ndarray], reference: list[tuple[Faces, np.ndarray]], px: int) -> dict:
    analysis = FrameAnalysis(load_config(None, {"classifier.every_frames": 1, "detector.region_face_px": px}))
    errors, diffs, differ, detect_s = [], [], 0, 0.0
    for frame, (ref, ref_probs) in zip(frames, reference):
        started = time.thread_time()
        faces = analysis.detect(frame, "sweep")
        detect_s += time.thread_time() - started
        probs = analysis.classifier.classify(frame, faces)
        if len(faces) != len(ref):
            differ += 1
            continue
        ours, theirs = by_position(faces), by_position(ref)
        eyes = np.linalg.norm(ref.landmarks[theirs, 0] - ref.landmarks[theirs, 1], axis=1)
        errors += list(np.linalg.norm(faces.landmarks[ours] - ref.landmarks[theirs], axis=2).mean(axis=1) / eyes)
        diffs += list(np.abs(probs[ours] - ref_probs[theirs]).max(axis=1))
    return {"region_face_px": px, "landmark_error_per_eye_distance": round(float(np.mean(errors)), 4),
            "max_prob_difference_mean": round(float(np.mean(diffs)), 4),
            "max_prob_difference_p95": round(float(np.percentile(diffs, 95)), 4),
            "frames_with_another_face_count": differ, "detect_cpu_ms_per_frame": round(detect_s / len(frames) * 1000, 3),
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
    p.add_argument("--px", nargs="+", type=int, default=[64, 48, 40, 32])
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
