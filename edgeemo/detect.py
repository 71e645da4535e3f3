"""`edgeemo detect`: one-shot analysis of images and videos, printed for people or as JSON lines."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

from edgeemo import LABELS
from edgeemo.capture import FrameReader, list_images, parse_source
from edgeemo.classifier import ExpressionClassifier
from edgeemo.config import Config
from edgeemo.detector import FaceDetector
from edgeemo.modelcard import load_card
from edgeemo.pipeline import model_paths
from edgeemo.types import Faces


class Analyzer:
    """Detection and classification of single frames, without tracking."""

    def __init__(self, cfg: Config) -> None:
        detector_path, card_path = model_paths(cfg)
        self.detector = FaceDetector(cfg.detector, detector_path)
        self.classifier = ExpressionClassifier(cfg.classifier, load_card(card_path))

    def analyse(self, image: np.ndarray) -> Faces:
        faces = self.detector.detect(image)
        faces.probs = self.classifier.classify(image, faces)
        return faces


def face_records(faces: Faces) -> list[dict]:
    records = []
    for box, probs in zip(faces.boxes, faces.probs):
        best = int(probs.argmax())
        records.append({"box": [int(round(v)) for v in box], "emotion": LABELS[best],
                        "confidence": round(float(probs[best]), 4),
                        "probs": {label: round(float(p), 4) for label, p in zip(LABELS, probs)}})
    return records


def frames_of(reader: FrameReader, every: int) -> Iterator[tuple[np.ndarray, float]]:
    try:
        while (item := reader.read()) is not None:
            if (reader.index - 1) % every == 0:
                yield item
    finally:
        reader.close()


def draw(image: np.ndarray, faces: Faces) -> np.ndarray:
    out = image.copy()
    for record in face_records(faces):
        x, y, w, h = record["box"]
        cv2.rectangle(out, (x, y), (x + w, y + h), (0, 200, 0), 2)
        label = f"{record['emotion']} {record['confidence'] * 100:.0f}%"
        cv2.putText(out, label, (x, max(12, y - 6)), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (0, 200, 0), 2)
    return out


class Annotator:
    """Writes annotated copies: images as images, videos as mp4 at the source frame rate."""

    def __init__(self, out: Path | None, many: bool) -> None:
        self.out, self.many = out, many
        self.writer: cv2.VideoWriter | None = None

    def target(self, source: Path) -> Path:
        assert self.out is not None
        if self.many or self.out.is_dir():
            self.out.mkdir(parents=True, exist_ok=True)
            return self.out / source.name
        return self.out

    def add(self, source: Path, image: np.ndarray, faces: Faces, is_video: bool, fps: float) -> None:
        if self.out is None:
            return
        annotated = draw(image, faces)
        if not is_video:
            cv2.imwrite(str(self.target(source)), annotated)
            return
        if self.writer is None:
            target = self.target(source).with_suffix(".mp4")
            h, w = image.shape[:2]
            self.writer = cv2.VideoWriter(str(target), cv2.VideoWriter_fourcc(*"mp4v"), fps or 30.0, (w, h))
        self.writer.write(annotated)

    def finish(self) -> None:
        if self.writer is not None:
            self.writer.release()
            self.writer = None


def detect_main(cfg: Config, args: argparse.Namespace) -> int:
    paths = [p for path in args.paths for p in (list_images(path) if path.is_dir() else [path])]
    specs = [parse_source(str(path)) for path in paths]  # fail on a bad path before any work
    analyzer = Analyzer(cfg)
    annotator = Annotator(args.annotate, many=len(paths) > 1)
    for path, spec in zip(paths, specs):
        reader = FrameReader(spec)
        for image, pts in frames_of(reader, max(1, args.every)):
            faces = analyzer.analyse(image)
            emit(path, pts, faces, args.json)
            annotator.add(path, image, faces, spec.kind == "video", reader.fps)
        annotator.finish()
    return 0


def emit(path: Path, pts: float, faces: Faces, as_json: bool) -> None:
    records = face_records(faces)
    if as_json:
        sys.stdout.write(json.dumps({"path": str(path), "pts": round(pts, 3), "faces": records}) + "\n")
        return
    sys.stdout.write(f"{path} @ {pts:.2f}s: {len(records)} face(s)\n")
    for i, record in enumerate(records, 1):
        others = ", ".join(f"{label} {p * 100:.1f}%" for label, p in record["probs"].items())
        sys.stdout.write(f"  face {i} box {record['box']}: {record['emotion']} "
                         f"{record['confidence'] * 100:.1f}%  ({others})\n")
