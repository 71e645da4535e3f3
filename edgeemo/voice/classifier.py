"""The voice-emotion model: its card (front end, label fold) and one reading of a stretch of speech."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgeemo import LABELS
from edgeemo.config.schema import Config
from edgeemo.core.inference import InferenceModel, fits
from edgeemo.core.modelcard import calibration, read_card
from edgeemo.core.resources import models_dir, resolve_model
from edgeemo.vision.classifier import calibrated_probs
from edgeemo.voice.features import AudioFrontEnd


@dataclass(frozen=True)
class VoiceCard:
    name: str
    path: Path
    front_end: AudioFrontEnd
    fold: np.ndarray           # [model labels, 7]: model probabilities @ fold = LABELS probabilities
    output: str                # logits | probs
    temperature: np.ndarray    # logits / temperature + logit_bias before the softmax, as on a face card
    logit_bias: np.ndarray     # (edgeemo.core.modelcard.calibration; fitted on held-out speakers)
    context_s: float = 0.0     # sound the model hears before and after the speech found (tools.eval.voice_context)


def load_voice_card(path: Path) -> VoiceCard:
    """Read and check a `voice-emotion` model card; errors name the card and the key."""
    return read_card(path, parse_voice_card)


def parse_voice_card(raw: dict, folder: Path) -> VoiceCard:
    if raw["task"] != "voice-emotion":
        raise ValueError(f"task must be 'voice-emotion', got {raw['task']!r}")
    if raw["output"] not in ("logits", "probs"):
        raise ValueError(f"output must be 'logits' or 'probs', got {raw['output']!r}")
    fold = fold_matrix(raw["labels"], raw["fold_to_face_labels"])
    temperature, logit_bias = calibration(raw, len(fold))
    if raw["output"] != "logits" and ("temperature" in raw or "logit_bias" in raw):
        raise ValueError("temperature and logit_bias need output 'logits'")
    context_s = raw.get("context_s", 0.0)  # at most half the 3 s window the model was trained on
    if not isinstance(context_s, (int, float)) or isinstance(context_s, bool) or not 0 <= context_s <= 1.5:
        raise ValueError(f"context_s must be seconds from 0 to 1.5, got {context_s!r}")
    return VoiceCard(raw["name"], folder / raw["file"], AudioFrontEnd.from_card(raw["audio"]), fold, raw["output"],
                     temperature, logit_bias, float(context_s))


def heard(speech: slice, context: int) -> slice:
    """The samples a model hears of ``speech``: ``context`` more on either side (cut short by the sound's
    own ends when the slice is applied). The context may reach into a neighbouring utterance closer
    than that."""
    return slice(max(0, speech.start - context), speech.stop + context)


def fold_matrix(labels: list[str], fold: dict[str, str]) -> np.ndarray:
    """0/1 matrix that sums the model's classes into the seven published labels (calm -> neutral, ...)."""
    matrix = np.zeros((len(labels), len(LABELS)), np.float32)
    for i, label in enumerate(labels):
        target = fold.get(label)
        if target not in LABELS:
            raise ValueError(f"fold_to_face_labels must map {label!r} to one of {list(LABELS)}, got {target!r}")
        matrix[i, LABELS.index(target)] = 1.0
    return matrix


class VoiceClassifier:
    """Samples of one window -> probabilities over the seven labels."""

    def __init__(self, card: VoiceCard, backend: str = "onnxruntime", threads: int = 1) -> None:
        self.card = card
        self.front_end = card.front_end
        self.model = InferenceModel(card.path, backend, threads)
        features = self.front_end.features(np.zeros(self.front_end.sample_rate, np.float32)).shape[-1]
        role = f"voice.model (card {card.name})"
        if len(self.model.output_names) != 1 or not fits(self.model.input_shape, (None, None, features)):
            raise self.model.refuse(role, f"does not take what its card says: [N, frames, {features}] audio "
                                          "features, one output")
        if not fits(self.model.output_shapes[0], (None, len(card.fold))):
            raise self.model.refuse(role, f"does not give the card's {len(card.fold)} classes")

    @classmethod
    def from_config(cls, cfg: Config) -> VoiceClassifier:
        """The classifier of ``voice.model`` (a name in models_dir, or a path) on ``voice.backend``."""
        card = load_voice_card(resolve_model(cfg.voice.model, cfg.models_dir or models_dir()))
        return cls(card, cfg.voice.backend, cfg.voice.threads)

    def classify_speech(self, sound: np.ndarray, speech: slice) -> np.ndarray:
        """The reading of the speech ``sound[speech]``, heard with the card's ``context_s`` of the sound
        around it where there is some: a net trained on whole clips, silence included, reads speech
        cut tight worse than speech with its edges."""
        return self.classify(sound[heard(speech, round(self.card.context_s * self.front_end.sample_rate))])

    def classify(self, samples: np.ndarray) -> np.ndarray:
        features = self.front_end.features(samples)[None]
        probs = calibrated_probs(self.model.run(features)[0].astype(np.float64), self.card)[0]
        probs = probs / probs.sum()  # a card of probabilities: summed to 1 as given
        return (probs @ self.card.fold).astype(np.float32)
