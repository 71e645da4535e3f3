"""`edgeemo detect`: one-shot analysis of images, videos and sound files, for people or as JSON lines.

Images and video frames give one record per frame (the faces); the sound of a video or a sound file
one record per speech segment. The analysis itself is pipeline.fileanalysis.FileAnalyzer, the one the
dashboard's Analyse page calls, so a file gives the same readings here, there and through `edgeemo run`.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import cv2
import numpy as np

from edgeemo.config.redact import redact
from edgeemo.config.schema import Config
from edgeemo.core.types import Faces, Image
from edgeemo.pipeline.fileanalysis import FileAnalyzer, face_records
from edgeemo.sources.spec import IMAGE_SUFFIXES, SourceError, SourceSpec, list_images, parse_source
from edgeemo.vision.annotate import draw_faces
from edgeemo.vision.pixels import to_bgr
from edgeemo.cli.annotated_video import AnnotatedVideo

log = logging.getLogger(__name__)


def draw(image: Image, faces: Faces) -> np.ndarray:
    return draw_faces(image.copy() if isinstance(image, np.ndarray) else to_bgr(image), face_records(faces))


class Annotator:
    """Writes annotated copies: images as images, videos as H.264 MP4 with their sound (cli.annotated_video)."""

    def __init__(self, out: Path | None, many: bool) -> None:
        self.out, self.many = out, many
        self.writer: AnnotatedVideo | None = None

    def target(self, source: Path) -> Path:
        assert self.out is not None
        if self.many or self.out.is_dir():
            self.out.mkdir(parents=True, exist_ok=True)
            return self.out / source.name
        return self.out

    def add(self, source: Path, image: Image, faces: Faces, is_video: bool, fps: float, pts: float = 0.0) -> None:
        if self.out is None:
            return
        annotated = draw(image, faces)
        if not is_video:
            self.write_image(self.target(source), annotated)
            return
        if self.writer is None:
            self.writer = AnnotatedVideo(self.target(source).with_suffix(".mp4"), fps, source)
        self.writer.add(annotated, pts)

    @staticmethod
    def write_image(target: Path, annotated: np.ndarray) -> None:
        """One line, not an OpenCV traceback, when the target is no image file that can be written."""
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            written = cv2.imwrite(str(target), annotated)
        except (OSError, cv2.error):
            written = False
        if not written:
            raise SourceError(f"--annotate {target}: cannot write an image there "
                              "(name a file ending in .jpg or .png, or a folder)")

    def finish(self) -> None:
        if self.writer is not None:
            self.writer.finish()
            self.writer = None


def readable_inputs(given: list[Path]) -> tuple[list[Path], list[SourceSpec], int]:
    """The inputs detect can open (folders expanded), and how many it cannot, each named on one line."""
    paths, specs, bad = [], [], 0
    for path in expand(given):
        if isinstance(path, SourceError):
            log.error("%s", path)
            bad += 1
            continue
        try:
            spec = parse_source(str(path))
        except SourceError as exc:
            log.error("%s", exc)
            bad += 1
            continue
        if spec.live:
            log.error("%s: detect reads files; for a camera or stream use `edgeemo run --source ...`",
                      redact(str(path)))
            bad += 1
            continue
        paths.append(path)
        specs.append(spec)
    return paths, specs, bad


def detect_main(cfg: Config, args: argparse.Namespace) -> int:
    """Exit 0, or 2 when any input could not be read at all (each named on one line; the rest analysed)."""
    paths, specs, unreadable = readable_inputs(args.paths)
    total = len(paths) + unreadable
    files = FileAnalyzer(cfg)  # every analysed frame read fresh (fileanalysis.fresh_readings)
    annotator = Annotator(args.annotate, many=total > 1)
    for path, spec in zip(paths, specs):
        frames: list[tuple[float, Faces]] = []
        if spec.kind in ("image", "video"):
            for image, pts, faces in files.frames(path, spec.kind, args.every):
                frames.append((pts, faces))
                emit(path, pts, faces, args.json)
                annotator.add(path, image, faces, spec.kind == "video", files.fps, pts)
            annotator.finish()
            if not frames:
                if spec.kind == "video":
                    log.error("%s: no video frame could be read (not a video, or damaged)", path)
                unreadable += 1
                continue
        if spec.kind in ("audio", "video"):
            segments = files.segments(path, frames)
            if spec.kind == "audio" and segments is None:
                log.error("%s: no sound could be decoded (not a sound file, or damaged)", path)
                unreadable += 1
            for record in segments or []:
                emit_segment({"path": str(path)} | record, args.json)
    if unreadable:
        log.error("%d of %d input(s) could not be read", unreadable, total)
    return 2 if unreadable else 0


def expand(paths: list[Path]) -> list[Path | SourceError]:
    """Folders become their images; a folder without any is an error (in the list), not silence."""
    out: list[Path | SourceError] = []
    for path in paths:
        found = list_images(path) if path.is_dir() else [path]
        out += found or [SourceError(f"{path}: no images found (looked for {', '.join(sorted(IMAGE_SUFFIXES))})")]
    return out


def emit_segment(record: dict, as_json: bool) -> None:
    if as_json:
        sys.stdout.write(json.dumps(record) + "\n")
        return
    parts = [f"{name} {record[name]['emotion']} {record[name]['confidence'] * 100:.0f}%"
             for name in ("voice", "face", "fused") if record[name]]
    sys.stdout.write(f"{record['path']} {record['start']:.2f}-{record['end']:.2f}s speech: {' | '.join(parts)}\n")


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
