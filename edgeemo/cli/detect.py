"""`edgeemo detect`: one-shot analysis of images, videos and sound files, for people or as JSON lines.

Images and video frames give one record per frame (the faces), found by the daemon's own analysis
steps (vision.analysis.FrameAnalysis: keyframes, regions, motion gating, classification cadence),
so a file gives the same faces and readings here as through `edgeemo run`. The sound of a video or a sound file
gives one record per speech segment (found by the VAD over the whole file): the voice reading and,
for a video, the mean face reading over the segment and the two fused, when exactly one face was in
view. Where the daemon reads overlapping windows of a live stream, a file can be cut at its pauses.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

from edgeemo.sources.audio import AudioUnavailable, FileAudioReader
from edgeemo.sources.reader import FrameReader
from edgeemo.sources.spec import IMAGE_SUFFIXES, SourceError, SourceSpec, list_images, parse_source
from edgeemo.config.redact import redact
from edgeemo.config.schema import Config
from edgeemo.tracking.fusion import fuse
from edgeemo.core.events import labelled
from edgeemo.core.types import Faces, Image
from edgeemo.voice.classifier import VoiceClassifier
from edgeemo.vision.analysis import FrameAnalysis
from edgeemo.vision.annotate import draw_faces
from edgeemo.vision.pixels import to_bgr
from edgeemo.voice.features import speech_segments

log = logging.getLogger(__name__)


def face_records(faces: Faces) -> list[dict]:
    return [{"box": [int(round(v)) for v in box]} | labelled(probs) for box, probs in zip(faces.boxes, faces.probs)]


class VoiceAnalyzer:
    """Speech segments of a whole file, each read by the voice model."""

    def __init__(self, cfg: Config) -> None:
        self.classifier = VoiceClassifier.from_config(cfg)
        self.sample_rate = self.classifier.front_end.sample_rate
        self.threshold_db = cfg.voice.vad_threshold_db
        self.min_speech_s = cfg.voice.min_speech_s

    def segments(self, path: Path) -> list[tuple[float, float, np.ndarray]] | None:
        """[(start_s, end_s, probs)] of every speech segment; [] for a file without sound, None when
        its sound decodes to nothing."""
        try:
            reader = FileAudioReader(str(path))
        except AudioUnavailable as exc:
            log.warning("%s; faces only", exc)
            return []
        try:
            chunks = list(reader.chunks())
        finally:
            reader.close()
        if not chunks:
            return None
        samples = np.concatenate([c for c, _ in chunks])
        origin = chunks[0][1]  # pts of the first sample, on the video clock
        sr = self.sample_rate
        out = []
        for start, end in speech_segments(samples, sr, threshold_db=self.threshold_db):
            if end - start >= self.min_speech_s:
                probs = self.classifier.classify(samples[round(start * sr):round(end * sr)])
                out.append((origin + start, origin + end, probs))
        return out


def segment_records(path: Path, voice: list[tuple[float, float, np.ndarray]],
                    frames: list[tuple[float, Faces]], cfg: Config) -> list[dict]:
    """One record per speech segment: voice, and with exactly one face in view, face and fused."""
    records = []
    for start, end, voice_probs in voice:
        inside = [faces for pts, faces in frames if start <= pts <= end and len(faces)]
        record = {"path": str(path), "start": round(start, 3), "end": round(end, 3), "voice": labelled(voice_probs),
                  "face": None, "fused": None}
        if inside and all(len(faces) == 1 for faces in inside):
            face_probs = np.mean([faces.probs[0] for faces in inside], axis=0)
            record["face"] = labelled(face_probs)
            record["fused"] = labelled(fuse(face_probs, voice_probs, cfg.fusion.face_weight, cfg.fusion.voice_weight))
        records.append(record)
    return records


def frames_of(reader: FrameReader, every: int) -> Iterator[tuple[Image, float]]:
    try:
        while (item := reader.read()) is not None:
            if (reader.index - 1) % every == 0:
                yield item
    finally:
        reader.close()


def draw(image: Image, faces: Faces) -> np.ndarray:
    return draw_faces(image.copy() if isinstance(image, np.ndarray) else to_bgr(image), face_records(faces))


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

    def add(self, source: Path, image: Image, faces: Faces, is_video: bool, fps: float) -> None:
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
    """Exit 0, or 2 when any input could not be read at all (each named on one line; the rest analysed)."""
    paths = expand(args.paths)
    specs = [parse_source(str(path)) for path in paths]  # fail on a bad path before any work
    for path, spec in zip(paths, specs):
        if spec.live:
            raise SourceError(f"{redact(str(path))}: detect reads files; for a camera or stream use "
                              "`edgeemo run --source ...`")
    analyzer = FrameAnalysis(cfg) if any(spec.kind != "audio" for spec in specs) else None
    has_sound = cfg.voice.enabled and any(spec.kind in ("audio", "video") for spec in specs)
    voice = VoiceAnalyzer(cfg) if has_sound else None
    annotator = Annotator(args.annotate, many=len(paths) > 1)
    unreadable = 0
    for path, spec in zip(paths, specs):
        frames: list[tuple[float, Faces]] = []
        if spec.kind == "image":
            image = read_image(path)
            if image is None:
                unreadable += 1
                continue
            faces = analyzer.analyse(image, str(path))  # the daemon's detect + classify steps
            analyzer.forget(str(path))
            emit(path, 0.0, faces, args.json)
            annotator.add(path, image, faces, False, 0.0)
        elif spec.kind == "video":
            frames = analyse_video(path, spec, analyzer, annotator, args)
            if not frames:
                log.error("%s: no video frame could be read (not a video, or damaged)", path)
                unreadable += 1
                continue
        if voice is not None and spec.kind in ("audio", "video"):
            segments = voice.segments(path)
            if spec.kind == "audio" and segments is None:
                log.error("%s: no sound could be decoded (not a sound file, or damaged)", path)
                unreadable += 1
            for record in segment_records(path, segments or [], frames, cfg):
                emit_segment(record, args.json)
    if unreadable:
        log.error("%d of %d input(s) could not be read", unreadable, len(paths))
    return 2 if unreadable else 0


def expand(paths: list[Path]) -> list[Path]:
    """Folders become their images; a folder without any is an error, not silence."""
    out = []
    for path in paths:
        found = list_images(path) if path.is_dir() else [path]
        if not found:
            raise SourceError(f"{path}: no images found (looked for {', '.join(sorted(IMAGE_SUFFIXES))})")
        out += found
    return out


def read_image(path: Path) -> np.ndarray | None:
    """The image, or None with one line naming it (empty, not an image, damaged, or too large)."""
    try:
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    except cv2.error:  # some decoders raise instead of returning None (a huge BMP header)
        image = None
    if image is None:
        log.error("%s: not a readable image (empty, damaged, too large, or not an image)", path)
    return image


def frame_count(path: Path) -> int:
    """The frame count the container's header claims (0 when it says nothing)."""
    cap = cv2.VideoCapture(str(path))
    try:
        return max(0, int(cap.get(cv2.CAP_PROP_FRAME_COUNT)))
    finally:
        cap.release()


def analyse_video(path: Path, spec: SourceSpec, analyzer: FrameAnalysis, annotator: Annotator,
                  args: argparse.Namespace) -> list[tuple[float, Faces]]:
    """Every Nth frame analysed; a video that ends early is analysed as far as it goes, with a warning."""
    reader = FrameReader(spec)
    expected = frame_count(path)
    frames = []
    for image, pts in frames_of(reader, args.every):
        faces = analyzer.analyse(image, str(path))  # the daemon's detect + classify steps
        frames.append((pts, faces))
        emit(path, pts, faces, args.json)
        annotator.add(path, image, faces, True, reader.fps)
    annotator.finish()
    analyzer.forget(str(path))
    if frames and expected > 0 and reader.index < expected - 1:
        log.warning("%s: the video ends after %d of %d frames (truncated or damaged); analysed as far as it goes",
                    path, reader.index, expected)
    return frames


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
