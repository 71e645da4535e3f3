"""Model cards: the JSON beside each shipped model that says how to feed it.

The daemon and every tool take input size, colour, normalisation, labels and the face crop from
the card, so a retrained model with other preprocessing needs no code change.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import numpy as np

from edgeemo import LABELS

T = TypeVar("T")


class ModelCardError(Exception):
    pass


@dataclass(frozen=True)
class Crop:
    """Eye-aligned square crop: where the eye midpoint lands and how far apart the eyes are.

    Both as fractions of the output width/height, measured on the training faces
    (tools/export/measure_crop.py), so that daemon crops look like the training images.
    """

    eye_center: tuple[float, float]
    eye_distance: float
    rotate: bool = True


@dataclass(frozen=True)
class ModelCard:
    name: str
    task: str
    path: Path                     # the ONNX file, resolved next to the card
    labels: tuple[str, ...]
    output: str                    # "logits" | "probs"
    input_name: str
    size: tuple[int, int]          # H, W
    channels: int
    color: str                     # gray | bgr | rgb
    scale: float
    mean: np.ndarray
    std: np.ndarray
    crop: Crop
    flip_margin: float = 0.0       # mirror pass for faces this unsure (classifier.mirror_unsure)
    temperature: np.ndarray = field(default_factory=lambda: np.float32(1.0))  # logits / it (scalar or per class)
    logit_bias: np.ndarray = field(default_factory=lambda: np.float32(0.0))   # ... + it, before the softmax
    metrics: dict = field(default_factory=dict)
    raw: dict = field(default_factory=dict)

    @property
    def label_order(self) -> np.ndarray:
        """Index array that reorders model outputs into edgeemo.LABELS order."""
        return np.array([self.labels.index(label) for label in LABELS])


def load_card(path: Path) -> ModelCard:
    return read_card(path, parse_card)


def read_card(path: Path, parse: Callable[[dict, Path], T]) -> T:
    """Read a model card's JSON and ``parse(raw, folder)`` it; every error names the card (and the key)."""
    path = Path(path)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ModelCardError(f"cannot read model card {path}: {exc.strerror}") from None
    except json.JSONDecodeError as exc:
        raise ModelCardError(f"model card {path} is not valid JSON: {exc}") from None
    except UnicodeDecodeError:
        raise ModelCardError(f"model card {path} is not JSON text (not UTF-8): is it the card, not the model?") from None
    except RecursionError:
        raise ModelCardError(f"model card {path}: nested too deeply to be a model card") from None
    if not isinstance(raw, dict):
        raise ModelCardError(f"model card {path}: the top level must be a JSON object, got {type(raw).__name__}")
    try:
        return parse(raw, path.parent)
    except KeyError as exc:
        raise ModelCardError(f"model card {path}: missing key '{exc.args[0]}'") from None
    except (TypeError, ValueError, IndexError) as exc:
        raise ModelCardError(f"model card {path}: {exc}") from None


def parse_card(raw: dict, folder: Path) -> ModelCard:
    inp = raw["input"]
    labels = tuple(raw["labels"])
    if not isinstance(inp, dict):
        raise ValueError("input must be a mapping")
    for key in ("name", "channels", "color", "size"):
        if key not in inp:
            raise KeyError(f"input.{key}")
    if len(inp.get("size", ())) != 2:
        raise ValueError(f"input.size must be [H, W], got {inp.get('size')!r}")
    if not all(isinstance(n, int) and n >= 8 for n in inp["size"]):
        raise ValueError(f"input.size must be two whole numbers >= 8, got {inp['size']!r}")
    if raw.get("task") == "face-expression" and sorted(labels) != sorted(LABELS):
        raise ValueError(f"labels must be a permutation of {list(LABELS)}, got {list(labels)}")
    if raw.get("output", "logits") not in ("logits", "probs"):
        raise ValueError(f"output must be 'logits' or 'probs', got {raw['output']!r}")
    if inp.get("layout", "NCHW") != "NCHW":
        raise ValueError(f"input.layout must be NCHW, got {inp['layout']!r}")
    channels = int(inp["channels"])
    color = inp["color"]
    if (channels, color) not in ((1, "gray"), (3, "bgr"), (3, "rgb")):
        raise ValueError(f"input.channels={channels} does not fit input.color={color!r}")
    mean = np.asarray(inp.get("mean", [0.0] * channels), np.float32)
    std = np.asarray(inp.get("std", [1.0] * channels), np.float32)
    if mean.shape != (channels,) or std.shape != (channels,) or np.any(std <= 0):
        raise ValueError("input.mean and input.std need one value per channel, std > 0")
    crop = raw["crop"]
    check_crop(crop)
    flip_margin = float(raw.get("flip_margin", 0.0))
    if not 0 <= flip_margin <= 1:
        raise ValueError(f"flip_margin must be between 0 and 1, got {flip_margin}")
    temperature, logit_bias = calibration(raw, len(labels))
    if raw.get("output", "logits") != "logits" and ("temperature" in raw or "logit_bias" in raw):
        raise ValueError("temperature and logit_bias calibrate logits, but this card's output is probabilities")
    return ModelCard(
        name=raw["name"], task=raw["task"], path=folder / raw["file"], labels=labels,
        output=raw.get("output", "logits"), input_name=inp["name"],
        size=(int(inp["size"][0]), int(inp["size"][1])), channels=channels, color=color,
        scale=float(inp.get("scale", 1.0)), mean=mean, std=std,
        crop=Crop(eye_center=(float(crop["eye_center"][0]), float(crop["eye_center"][1])),
                  eye_distance=float(crop["eye_distance"]), rotate=bool(crop.get("rotate", True))),
        flip_margin=flip_margin, temperature=temperature, logit_bias=logit_bias, metrics=raw.get("metrics", {}), raw=raw,
    )


def calibration(raw: dict, classes: int) -> tuple[np.ndarray, np.ndarray]:
    """The card's calibration: logits / temperature + logit_bias before the softmax.

    A temperature is one number (temperature scaling) or one per output class, with a bias per
    class (vector scaling); both are fitted on held-out faces so the percentages mean what they say.
    """
    def numbers(key: str, default: float) -> np.ndarray:
        try:
            value = np.asarray(raw.get(key, default), np.float32)
        except (TypeError, ValueError):
            value = np.full(1, np.nan, np.float32)
        if value.shape not in ((), (classes,)) or not np.all(np.isfinite(value)):
            raise ValueError(f"{key} must be a number or a list of {classes} numbers (one per label), got {raw[key]!r}")
        return value

    temperature, bias = numbers("temperature", 1.0), numbers("logit_bias", 0.0)
    if np.any(temperature <= 0):
        raise ValueError(f"temperature must be above 0, got {raw['temperature']!r}")
    return temperature, bias


def check_crop(crop: dict) -> None:
    """The eye midpoint must land inside the crop and the eyes fit in it, or every face crop is wrong."""
    center = [float(v) for v in crop["eye_center"]]
    if len(center) != 2 or not all(0 < v < 1 for v in center):
        raise ValueError(f"crop.eye_center must lie inside the crop (0..1, 0..1), got {crop['eye_center']!r}")
    if not 0 < float(crop["eye_distance"]) < 1:
        raise ValueError(f"crop.eye_distance must be between 0 and 1 (of the crop width), got {crop['eye_distance']!r}")


def to_tensor(card: ModelCard, crops: np.ndarray) -> np.ndarray:
    """Crops in the card's colour ([N,H,W] gray or [N,H,W,3] BGR/RGB uint8) -> [N,C,H,W] float32.

    Computes `(pixels * scale - mean) / std` per channel, as the card contract says.
    """
    pixels = crops.astype(np.float32)
    pixels = pixels[:, None] if pixels.ndim == 3 else pixels.transpose(0, 3, 1, 2)
    gain = (card.scale / card.std).reshape(1, -1, 1, 1)
    offset = (-card.mean / card.std).reshape(1, -1, 1, 1)
    return pixels * gain + offset


def colour_of(card: ModelCard, frame_bgr: np.ndarray) -> np.ndarray:
    """The frame converted once to the colour the model wants, before crops are cut from it."""
    import cv2

    if card.color == "gray":
        return cv2.cvtColor(frame_bgr, cv2.COLOR_BGR2GRAY)
    if card.color == "rgb":
        return cv2.cvtColor(frame_bgr, cv2.COLOR_BGR2RGB)
    return frame_bgr
