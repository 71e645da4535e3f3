"""Measure where the eyes sit in FER-2013 training faces, for the model card's "crop".

    python -m tools.export.measure_crop --limit 2000 --out runs/crop.json
    python -m tools.export.face runs/edge/best.pt --crop runs/crop.json

The daemon cuts an eye-aligned square from each detected face (edgeemo.core.modelcard.Crop): it puts the
eye midpoint at `eye_center` and scales the face so the eyes are `eye_distance` of the width apart.
For the model to see daemon crops framed like its training images, those numbers must come from the
training images themselves, located by the same detector the daemon runs (YuNet), so any landmark
bias of the detector cancels out.

FER faces are 48x48 and fill the frame, which is small and tight for YuNet, so each one is upscaled
4x (INTER_CUBIC) and put in the middle of a zero border; the best-scoring face per image counts.
All numbers are medians over the detected faces, as fractions of the 48x48 image's width/height.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from tools.common.datasets import REPO, data_root, load_fer

DETECTOR = REPO / "models" / "yunet_s_dynamic.onnx"


def to_canvas(face: np.ndarray, scale: int, pad: int) -> np.ndarray:
    """A gray FER face upscaled `scale` times, as BGR, in the middle of a zero border `pad` wide.

    The border keeps the face away from the image edge (without it the detections shift about 1 %
    of the width); scale * 48 + 2 * pad is kept a multiple of 32, as YuNet prefers.
    """
    import cv2

    size = face.shape[1] * scale
    up = cv2.resize(face, (size, size), interpolation=cv2.INTER_CUBIC)
    bgr = cv2.cvtColor(up, cv2.COLOR_GRAY2BGR)
    return cv2.copyMakeBorder(bgr, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=(0, 0, 0))


def make_detector(path: Path, canvas: int):
    import cv2

    if not Path(path).is_file():
        raise SystemExit(f"face detector {path} not found")
    return cv2.FaceDetectorYN.create(str(path), "", (canvas, canvas), 0.5, 0.3, 10)


def eyes_of(detector, canvas: np.ndarray) -> np.ndarray | None:
    """[image-left eye x, y, image-right eye x, y] of the best-scoring face, or None.

    YuNet rows are [x, y, w, h, right eye x, y, left eye x, y, nose, mouth..., score]; the subject's
    right eye is the one on the image's left.
    """
    _, faces = detector.detect(canvas)
    if faces is None or len(faces) == 0:
        return None
    best = faces[faces[:, 14].argmax()]
    return best[4:8].astype(np.float64)


def geometry(eyes: np.ndarray, width: float, pad: float) -> np.ndarray:
    """Per face: eye-midpoint x, y and eye distance as fractions of the face width; eye-line angle in degrees."""
    left, right = eyes[:, 0:2] - pad, eyes[:, 2:4] - pad
    mid = (left + right) / 2 / width
    delta = right - left
    dist = np.hypot(delta[:, 0], delta[:, 1]) / width
    angle = np.degrees(np.arctan2(delta[:, 1], delta[:, 0]))
    return np.column_stack([mid, dist, angle])


def summarise(geo: np.ndarray, sampled: int, args: dict) -> dict:
    """Medians (what the card uses) plus quartiles (how much FER's registration varies)."""
    med = np.median(geo, axis=0)
    q25, q75 = np.percentile(geo, [25, 75], axis=0)
    names = ["eye_center_x", "eye_center_y", "eye_distance", "eye_angle_deg"]
    return {
        "eye_center": [round(float(med[0]), 4), round(float(med[1]), 4)],
        "eye_distance": round(float(med[2]), 4),
        "eye_angle_deg": round(float(med[3]), 2),
        "detection_rate": round(len(geo) / max(1, sampled), 4),
        "detected": int(len(geo)),
        "sampled": int(sampled),
        "quartiles": {n: [round(float(a), 4), round(float(b), 4)] for n, a, b in zip(names, q25, q75)},
        "method": (f"tools/export/measure_crop.py: FER-2013 Training, {sampled} random faces (seed {args['seed']}), "
                   f"x{args['scale']} INTER_CUBIC, {args['pad']} px zero border, YuNet yunet_s_dynamic.onnx "
                   "score >= 0.5, best face per image, medians"),
    }


def measure(images: np.ndarray, detector_path: Path = DETECTOR, scale: int = 4, pad: int = 64,
            seed: int = 0) -> dict:
    """Detect eyes on every image and summarise where they are."""
    canvas = images.shape[1] * scale + 2 * pad
    detector = make_detector(detector_path, canvas)
    found = []
    for i, face in enumerate(images):
        eyes = eyes_of(detector, to_canvas(face, scale, pad))
        if eyes is not None:
            found.append(eyes)
        if (i + 1) % 500 == 0:
            print(f"  {i + 1}/{len(images)} images, {len(found)} faces", flush=True)
    if not found:
        raise SystemExit("no face detected in any image")
    geo = geometry(np.array(found), images.shape[2] * scale, pad)
    return summarise(geo, len(images), {"seed": seed, "scale": scale, "pad": pad})


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", help="data directory (default: $EDGEEMO_DATA or ../shared/data)")
    p.add_argument("--limit", type=int, default=2000, help="random Training faces to measure (0: all)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--detector", type=Path, default=DETECTOR)
    p.add_argument("--scale", type=int, default=4, help="upscale factor before detection")
    p.add_argument("--pad", type=int, default=64, help="zero border around the upscaled face, px")
    p.add_argument("--out", type=Path, help="write the result as JSON here (default: print only)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    import cv2

    args = parse_args(argv)
    cv2.setNumThreads(1)
    images, _ = load_fer(data_root(args.data), "Training")
    if args.limit and args.limit < len(images):
        images = images[np.sort(np.random.default_rng(args.seed).choice(len(images), args.limit, replace=False))]
    print(f"measuring {len(images)} FER-2013 Training faces with {args.detector.name}", flush=True)
    result = measure(images, args.detector, args.scale, args.pad, args.seed)
    q = result["quartiles"]
    print(f"detected {result['detected']}/{result['sampled']} ({100 * result['detection_rate']:.1f} %)")
    print(f"eye_center   {result['eye_center']}  (IQR x {q['eye_center_x']}, y {q['eye_center_y']})")
    print(f"eye_distance {result['eye_distance']}  (IQR {q['eye_distance']}) of the width")
    print(f"eye angle    {result['eye_angle_deg']} deg  (IQR {q['eye_angle_deg']})")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
