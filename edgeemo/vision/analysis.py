"""The one per-frame analysis path: scheduled detection, then classification at its cadence.

The daemon's detect and classify stages and `edgeemo detect` call the same object, so a file gives
the same faces and readings whichever way it is analysed. A face is classified when the scheduler
says it is due (new, or `classifier.every_frames` frames since its last reading); in between its
last reading stands, and the tracker's smoothing (time constant `tracker.smoothing_s`) bridges.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from edgeemo import LABELS
from edgeemo.vision.classifier import ExpressionClassifier
from edgeemo.config.schema import Config
from edgeemo.vision.detector import FaceDetector
from edgeemo.core.modelcard import load_card
from edgeemo.core.resources import models_dir, resolve_model
from edgeemo.core.types import Faces, Image
from edgeemo.vision.scheduler import DetectionScheduler


def model_paths(cfg: Config) -> tuple[Path, Path]:
    folder = cfg.models_dir or models_dir()
    return resolve_model(cfg.detector.model, folder), resolve_model(cfg.classifier.model, folder)


class FrameAnalysis:
    """Detection (one thread) and classification (may be another) of the frames of any number of sources."""

    def __init__(self, cfg: Config) -> None:
        # OpenCV's own pool as wide as the detector's: on frames this small, waking a pool of one
        # worker per core for each resize or blur costs more CPU than it saves (process-wide).
        cv2.setNumThreads(cfg.detector.threads)
        detector_path, card_path = model_paths(cfg)
        self.detector = FaceDetector(cfg.detector, detector_path)
        self.classifier = ExpressionClassifier(cfg.classifier, load_card(card_path))
        self.scheduler = DetectionScheduler(self.detector, cfg.detector, cfg.classifier.every_frames)
        self._readings: dict[str, dict[int, np.ndarray]] = {}   # classify side: face id -> last probs

    def detect(self, image: Image, source: str, number: int | None = None) -> Faces:
        return self.scheduler.detect(image, source, number)

    def classify(self, image: Image, faces: Faces, source: str) -> np.ndarray:
        """[N,7] probabilities: fresh for the faces due, the last reading for the others."""
        if faces.ids is None:
            return self.classifier.classify(image, faces)
        last = self._readings.get(source, {})
        need = [i for i in range(len(faces)) if faces.due[i] or int(faces.ids[i]) not in last]
        probs = np.empty((len(faces), len(LABELS)), np.float32)
        if need:
            probs[need] = self.classifier.classify(image, faces[need])
        for i in range(len(faces)):
            if i not in need:
                probs[i] = last[int(faces.ids[i])]
        self._readings[source] = {int(face_id): p for face_id, p in zip(faces.ids, probs)}
        return probs

    def analyse(self, image: Image, source: str, number: int | None = None) -> Faces:
        faces = self.detect(image, source, number)
        faces.probs = self.classify(image, faces, source)
        return faces

    def forget(self, source: str) -> None:
        """Start the source afresh (the next file of `edgeemo detect`)."""
        self.scheduler.forget(source)
        self._readings.pop(source, None)
