"""Face expression: eye-aligned crops of every face in a frame, classified in one batch.

The crop puts the eyes where they sit in the training images (the card's `crop` section,
measured on FER-2013), so the model sees daemon faces the way it saw training faces.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import cv2
import numpy as np

from edgeemo.config.schema import ClassifierConfig
from edgeemo.core.modelcard import ModelCard, colour_of, to_tensor
from edgeemo.core.inference import InferenceModel, fits
from edgeemo.core.types import Faces, Image, Yuv420
from edgeemo.vision.pixels import full_range, to_bgr


def align_matrix(landmarks: np.ndarray, card: ModelCard) -> np.ndarray:
    """2x3 similarity transform taking one face's eyes to the card's eye positions."""
    h, w = card.size
    eye_a, eye_b = landmarks[0].astype(np.float64), landmarks[1].astype(np.float64)
    centre = (eye_a + eye_b) / 2
    dx, dy = eye_b - eye_a
    distance = max(math.hypot(dx, dy), 1e-3)
    angle = math.degrees(math.atan2(dy, dx)) if card.crop.rotate else 0.0
    scale = card.crop.eye_distance * w / distance
    matrix = cv2.getRotationMatrix2D((float(centre[0]), float(centre[1])), angle, scale)
    target = np.array([card.crop.eye_center[0] * w, card.crop.eye_center[1] * h])
    matrix[:, 2] += target - centre
    return matrix


def crop_faces(image: Image, faces: Faces, card: ModelCard) -> np.ndarray:
    """[N,H,W(,3)] uint8 crops, one per face, in the card's colour.

    Cropping comes first and the colour conversion runs on the small crops only (stacked into one
    image for a single cvtColor call), not on the whole frame. A grey model's crops from a YUV
    frame are cut from its Y plane.
    """
    if isinstance(image, Yuv420):
        if card.color != "gray":
            return crop_faces(to_bgr(image), faces, card)
        return full_range(crop_faces(image.y, faces, card))
    h, w = card.size
    crops = np.empty((len(faces), h, w) + image.shape[2:], np.uint8)
    for i, landmarks in enumerate(faces.landmarks):
        cv2.warpAffine(image, align_matrix(landmarks, card), (w, h), dst=crops[i],
                       flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    if crops.ndim == 3 or len(crops) == 0:
        return crops
    stacked = colour_of(card, crops.reshape(-1, w, 3))
    return stacked.reshape((len(faces), h, w) + stacked.shape[2:])


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    np.exp(z, out=z)
    return z / z.sum(axis=1, keepdims=True)


def calibrated_probs(outputs: np.ndarray, card: ModelCard) -> np.ndarray:
    """A model's outputs as probabilities that mean what they say: logits / temperature + bias, softmax.

    The card's calibration is fitted on held-out faces (tools/eval/face.py --calibrate), so that a
    face shown at 80 % is right about 80 % of the time.
    """
    if card.output != "logits":
        return np.array(outputs, np.float32)
    return softmax(outputs / card.temperature + card.logit_bias)


def top_two_margin(probs: np.ndarray) -> np.ndarray:
    """Per row, the best class probability minus the second best: how sure the model is."""
    top = np.partition(probs, -2, axis=1)
    return top[:, -1] - top[:, -2]


def unsure_faces(probs: np.ndarray, flip_margin: float) -> np.ndarray:
    """Boolean mask of the faces that get the mirror pass: top-two margin at most `flip_margin` (0: none)."""
    if flip_margin <= 0:
        return np.zeros(len(probs), bool)
    return top_two_margin(probs) <= flip_margin


def mirror_unsure(probs_of: Callable[[np.ndarray], np.ndarray], tensor: np.ndarray,
                  flip_margin: float) -> np.ndarray:
    """Class probabilities of `tensor` [N,C,H,W], averaged with the mirror image's where unsure.

    Averaging with the mirrored face helps where the model hesitates between two classes; a sure
    answer rarely changes. So only faces whose top-two margin is at most `flip_margin` get the
    second pass: 0 mirrors none, 1 every face. On FER-2013 the shipped model gains all that
    mirroring every face gains for part of the extra cost (figures in models/edgeemo-face.md).
    """
    probs = probs_of(tensor)
    unsure = np.flatnonzero(unsure_faces(probs, flip_margin))
    if len(unsure):
        probs[unsure] = (probs[unsure] + probs_of(np.ascontiguousarray(tensor[unsure, ..., ::-1]))) / 2
    return probs


def check_contract(model: InferenceModel, card: ModelCard) -> None:
    """The model is the one its card describes: input name and [N, channels, H, W], one output of the card's classes."""
    role = f"classifier.model (card {card.name})"
    if len(model.output_names) != 1:
        raise model.refuse(role, f"gives {len(model.output_names)} outputs where the card expects one of "
                                 f"{len(card.labels)} classes: is it the face detector?")
    wanted = (None, card.channels, *card.size)
    if not fits(model.input_shape, wanted) or model.input_name != card.input_name:
        raise model.refuse(role, f"does not take what its card says: input {card.input_name} [N, {card.channels}, "
                                 f"{card.size[0]}, {card.size[1]}] ({card.color})")
    if not fits(model.output_shapes[0], (None, len(card.labels))):
        raise model.refuse(role, f"does not give the card's {len(card.labels)} classes")


class ExpressionClassifier:
    def __init__(self, cfg: ClassifierConfig, card: ModelCard) -> None:
        self.card = card
        self.flip_margin = card.flip_margin if cfg.flip_margin is None else cfg.flip_margin
        self.model = InferenceModel(card.path, cfg.backend, cfg.threads)
        self._order = card.label_order
        check_contract(self.model, card)

    def classify(self, frame: Image, faces: Faces) -> np.ndarray:
        """[N,7] probabilities in edgeemo.LABELS order (mirror-averaged where unsure, see mirror_unsure)."""
        if len(faces) == 0:
            return np.zeros((0, len(self._order)), np.float32)
        crops = crop_faces(frame, faces, self.card)
        return self.classify_crops(crops)

    def classify_crops(self, crops: np.ndarray) -> np.ndarray:
        probs = mirror_unsure(self._probs, to_tensor(self.card, crops), self.flip_margin)
        return probs[:, self._order].astype(np.float32)

    def _probs(self, tensor: np.ndarray) -> np.ndarray:
        """Model outputs as probabilities, in the model's own label order."""
        out = self.model.run(np.ascontiguousarray(tensor))[0]
        return calibrated_probs(out, self.card)
