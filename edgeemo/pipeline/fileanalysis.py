"""The analysis of one whole file (image, video or sound): `edgeemo detect` and the dashboard's
Analyse page (POST /api/analyze) both call FileAnalyzer, so a file gives the same readings either way.
It lives in pipeline/ because, like the live pipeline, it runs sources, vision, voice and fusion together.

Images and video frames are read by the daemon's own per-frame steps (vision.analysis.FrameAnalysis:
keyframes, regions), with its cadence off: every analysed frame is located and classified afresh.
The sound of a video or a sound file gives one record per speech segment (found by the VAD over the
whole file): the voice reading and, for a video, the mean face reading over the segment and the two
fused, when exactly one face was in view. Where the daemon reads overlapping windows of a live stream,
a file can be cut at its pauses.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

from edgeemo.config.schema import Config
from edgeemo.core.events import labelled
from edgeemo.core.types import Faces, Image
from edgeemo.sources.audio import AudioUnavailable, FileAudioReader
from edgeemo.sources.reader import FrameReader
from edgeemo.sources.spec import SourceSpec
from edgeemo.tracking.fusion import fuse
from edgeemo.vision.analysis import FrameAnalysis
from edgeemo.voice.classifier import VoiceClassifier
from edgeemo.voice.features import speech_segments

log = logging.getLogger(__name__)

Segment = tuple[float, float, np.ndarray]   # start_s, end_s, voice probabilities


class TooLong(Exception):
    """The file goes on past the analysis's limit (whatever its header says it lasts)."""

    def __init__(self, limit_s: float) -> None:
        super().__init__(f"the file lasts more than {limit_s:g} s")
        self.limit_s = limit_s


def check_length(seconds: float, limit_s: float | None) -> None:
    """Stop decoding at the limit: a header may claim a short duration, or none, for a long file."""
    if limit_s is not None and seconds > limit_s:
        raise TooLong(limit_s)


def face_records(faces: Faces) -> list[dict]:
    return [{"box": [int(round(v)) for v in box]} | labelled(probs) for box, probs in zip(faces.boxes, faces.probs)]


class VoiceAnalyzer:
    """Speech segments of a whole file, each read by the voice model."""

    def __init__(self, cfg: Config) -> None:
        self.classifier = VoiceClassifier.from_config(cfg)
        self.sample_rate = self.classifier.front_end.sample_rate
        self.threshold_db = cfg.voice.vad_threshold_db
        self.min_speech_s = cfg.voice.min_speech_s

    def segments(self, path: Path, limit_s: float | None = None) -> list[Segment] | None:
        """[(start_s, end_s, probs)] of every speech segment; [] for a file without sound, None when
        its sound decodes to nothing; TooLong when its sound goes on past `limit_s`."""
        try:
            reader = FileAudioReader(str(path))
        except AudioUnavailable as exc:
            log.warning("%s; faces only", exc)
            return []
        chunks, heard = [], 0
        try:
            for chunk in reader.chunks():
                chunks.append(chunk)
                heard += len(chunk[0])
                check_length(heard / self.sample_rate, limit_s)
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
                probs = self.classifier.classify_speech(samples, slice(round(start * sr), round(end * sr)))
                out.append((origin + start, origin + end, probs))
        return out


def segment_records(voice: list[Segment], frames: list[tuple[float, Faces]], cfg: Config) -> list[dict]:
    """One record per speech segment: voice, and with exactly one face in view, face and fused."""
    records = []
    for start, end, voice_probs in voice:
        inside = [faces for pts, faces in frames if start <= pts <= end and len(faces)]
        record = {"start": round(start, 3), "end": round(end, 3), "voice": labelled(voice_probs),
                  "face": None, "fused": None}
        if inside and all(len(faces) == 1 for faces in inside):
            face_probs = np.mean([faces.probs[0] for faces in inside], axis=0)
            record["face"] = labelled(face_probs)
            record["fused"] = labelled(fuse(face_probs, voice_probs, cfg.fusion.face_weight, cfg.fusion.voice_weight))
        records.append(record)
    return records


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


def fresh_readings(cfg: Config) -> Config:
    """The daemon's cadence off: every analysed frame gets its own classification and located faces
    (a reading carried over from a frame `--every N` frames back would be stale)."""
    return cfg.model_copy(update={"classifier": cfg.classifier.model_copy(update={"every_frames": 1}),
                                  "detector": cfg.detector.model_copy(update={"locate_every": 1})})


class FileAnalyzer:
    """Faces frame by frame, each read fresh, then the speech segments; the models load on first use."""

    def __init__(self, cfg: Config, limit_s: float | None = None) -> None:
        """`limit_s`: decoding stops with TooLong past this many seconds of picture or sound."""
        self.cfg = fresh_readings(cfg)
        self.limit_s = limit_s
        self._frames: FrameAnalysis | None = None
        self._voice: VoiceAnalyzer | None = None
        self.fps = 0.0   # the last video's frame rate (for an annotated copy)

    @property
    def frame_analysis(self) -> FrameAnalysis:
        if self._frames is None:
            self._frames = FrameAnalysis(self.cfg)
        return self._frames

    def frames(self, path: Path, kind: str, every: int = 1) -> Iterator[tuple[Image, float, Faces]]:
        """(image, pts, faces) of the image, or of every `every`th frame of the video; nothing when
        it cannot be read (an image's reason is logged here, a video's left to the caller)."""
        analysis, source = self.frame_analysis, str(path)
        if kind == "image":
            image = read_image(path)
            if image is not None:
                faces = analysis.analyse(image, source)  # the daemon's detect + classify steps
                analysis.forget(source)
                yield image, 0.0, faces
            return
        reader = FrameReader(SourceSpec("video", str(path)))
        self.fps, expected = reader.fps, frame_count(path)
        try:
            while (item := reader.read()) is not None:
                check_length(item[1], self.limit_s)
                if (reader.index - 1) % every == 0:
                    yield item[0], item[1], analysis.analyse(item[0], source)
        finally:
            reader.close()
            analysis.forget(source)
        if reader.index and expected > 0 and reader.index < expected - 1:
            log.warning("%s: the video ends after %d of %d frames (truncated or damaged); analysed as far as it goes",
                        path, reader.index, expected)

    def segments(self, path: Path, frames: list[tuple[float, Faces]]) -> list[dict] | None:
        """The speech segments' records ([] with voice off or no sound; None: the sound is unreadable)."""
        if not self.cfg.voice.enabled:
            return []
        if self._voice is None:
            self._voice = VoiceAnalyzer(self.cfg)
        voice = self._voice.segments(path, self.limit_s)
        return None if voice is None else segment_records(voice, frames, self.cfg)

    def analyse(self, path: Path, kind: str) -> dict | None:
        """Every reading of a file as the dashboard answers it; None when nothing of it could be read."""
        frames = [(pts, faces) for _, pts, faces in self.frames(path, kind)] if kind != "audio" else []
        if kind != "audio" and not frames:
            return None
        segments = self.segments(path, frames) if kind != "image" else []
        if segments is None:
            return None
        kinds = {"image": "image", "video": "video", "audio": "sound"}
        return {"kind": kinds[kind], "frames": [{"pts": round(pts, 3), "faces": face_records(faces)}
                                                 for pts, faces in frames], "segments": segments}
