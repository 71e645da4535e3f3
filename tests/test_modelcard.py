"""The model-card contract: what a valid card parses to, which mistakes it rejects, and the tensor math."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest

from edgeemo import LABELS
from edgeemo.core.modelcard import Crop, ModelCardError, colour_of, load_card, parse_card, to_tensor

GOOD = {
    "name": "test-face",
    "task": "face-expression",
    "file": "test-face.onnx",
    "labels": list(LABELS),
    "output": "logits",
    "input": {"name": "input", "layout": "NCHW", "size": [48, 48], "channels": 1, "color": "gray",
              "scale": 1 / 255, "mean": [0.5], "std": [0.25]},
    "crop": {"eye_center": [0.5, 0.38], "eye_distance": 0.37, "rotate": True},
    "metrics": {"fer2013_privatetest_acc": 0.7},
    "licence": "Apache-2.0",
}


def card_with(**changes: object) -> dict:
    """GOOD with dotted keys replaced (value None deletes the key)."""
    raw = copy.deepcopy(GOOD)
    for dotted, value in changes.items():
        *parents, key = dotted.split("__")
        node = raw
        for p in parents:
            node = node[p]
        if value is None:
            del node[key]
        else:
            node[key] = value
    return raw


def load_raw(tmp_path: Path, raw: dict):
    path = tmp_path / "card.json"
    path.write_text(json.dumps(raw))
    return load_card(path)


# ----------------------------------------------------------------------------- parsing

def test_good_card_parses(tmp_path: Path) -> None:
    card = load_raw(tmp_path, GOOD)
    assert card.name == "test-face"
    assert card.path == tmp_path / "test-face.onnx"
    assert card.labels == LABELS
    assert (card.size, card.channels, card.color, card.input_name) == ((48, 48), 1, "gray", "input")
    assert card.scale == pytest.approx(1 / 255)
    assert card.mean.dtype == np.float32 and card.mean.tolist() == [0.5]
    assert card.crop == Crop(eye_center=(0.5, 0.38), eye_distance=0.37, rotate=True)
    assert card.metrics["fer2013_privatetest_acc"] == 0.7


def test_optional_fields_default(tmp_path: Path) -> None:
    raw = card_with(output=None, metrics=None, input__layout=None, input__scale=None,
                    input__mean=None, input__std=None)
    card = load_raw(tmp_path, raw)
    assert card.output == "logits"
    assert card.scale == 1.0 and card.mean.tolist() == [0.0] and card.std.tolist() == [1.0]
    assert card.flip_margin == 0.0  # no mirror pass unless the card chose a margin
    assert load_raw(tmp_path, card_with(flip_margin=0.25)).flip_margin == 0.25
    assert card.temperature == 1.0 and card.logit_bias == 0.0  # uncalibrated: the plain softmax


def test_calibration_divides_by_the_temperature_and_adds_the_bias(tmp_path: Path) -> None:
    from edgeemo.vision.classifier import calibrated_probs, softmax

    logits = np.array([[2.0, 1.0, 0.0, 0.0, 0.0, 0.0, -1.0]], np.float32)
    scalar = load_raw(tmp_path, card_with(temperature=2.0))
    np.testing.assert_allclose(calibrated_probs(logits, scalar), softmax(logits / 2), rtol=1e-6)
    per_class = [1.0, 0.5, 2.0, 1.0, 1.0, 1.0, 4.0]
    bias = [0.0, 0.0, 0.0, 0.3, 0.0, 0.0, -0.2]
    vector = load_raw(tmp_path, card_with(temperature=per_class, logit_bias=bias))
    expected = softmax(logits / np.array(per_class, np.float32) + np.array(bias, np.float32))
    np.testing.assert_allclose(calibrated_probs(logits, vector), expected, rtol=1e-6)
    assert calibrated_probs(logits, vector)[0, 1] > calibrated_probs(logits, scalar)[0, 1]


def test_label_order_maps_model_outputs_to_edgeemo_labels(tmp_path: Path) -> None:
    permuted = ["neutral", "happy", "surprise", "sad", "angry", "disgust", "fear"]  # FER+ style order
    card = load_raw(tmp_path, card_with(labels=permuted))
    outputs = np.arange(7)[None]  # output j = index j
    reordered = outputs[:, card.label_order]
    assert [permuted[j] for j in reordered[0]] == list(LABELS)


@pytest.mark.parametrize("channels, color", [(1, "bgr"), (1, "rgb"), (3, "gray"), (3, "hsv"), (2, "gray")])
def test_colour_must_fit_channels(tmp_path: Path, channels: int, color: str) -> None:
    raw = card_with(input__channels=channels, input__color=color,
                    input__mean=[0.5] * channels, input__std=[0.25] * channels)
    with pytest.raises(ModelCardError, match=r"input\.channels=.* does not fit input\.color"):
        load_raw(tmp_path, raw)


@pytest.mark.parametrize("labels", [
    list(LABELS)[:6],                                  # one missing
    list(LABELS)[:6] + ["angry"],                      # duplicate
    list(LABELS)[:6] + ["contempt"],                   # foreign label
])
def test_labels_must_be_a_permutation(tmp_path: Path, labels: list[str]) -> None:
    with pytest.raises(ModelCardError, match="labels must be a permutation"):
        load_raw(tmp_path, card_with(labels=labels))


@pytest.mark.parametrize("change, message", [
    ({"output": "scores"}, "output must be 'logits' or 'probs'"),
    ({"input__layout": "NHWC"}, "input.layout must be NCHW"),
    ({"input__mean": [0.5, 0.5]}, "one value per channel"),
    ({"input__std": [0.0]}, "std > 0"),
    ({"input__size": [48]}, "input.size must be"),
    ({"flip_margin": 1.5}, "flip_margin must be between 0 and 1, got 1.5"),
    ({"temperature": 0}, "temperature must be above 0, got 0"),
    ({"temperature": [1.0, 2.0]}, "temperature must be a number or a list of 7 numbers"),
    ({"logit_bias": [0.1] * 6}, "logit_bias must be a number or a list of 7 numbers"),
    ({"temperature": "warm"}, "temperature"),
    ({"output": "probs", "temperature": 2.0}, "calibrate logits, but this card's output is probabilities"),
])
def test_bad_values_are_named(tmp_path: Path, change: dict, message: str) -> None:
    with pytest.raises(ModelCardError, match=message.replace(".", r"\.")):
        load_raw(tmp_path, card_with(**change))


@pytest.mark.parametrize("missing", ["name", "task", "file", "labels", "crop", "input", "input__name",
                                     "input__channels", "input__color", "input__size"])
def test_missing_key_is_named(tmp_path: Path, missing: str) -> None:
    with pytest.raises(ModelCardError) as err:
        load_raw(tmp_path, card_with(**{missing: None}))
    key = missing.replace("__", ".")  # nested keys are named by their path
    assert f"'{key}'" in str(err.value)
    assert "card.json" in str(err.value)  # the message also says which card


def test_unreadable_and_invalid_json(tmp_path: Path) -> None:
    with pytest.raises(ModelCardError, match="cannot read model card"):
        load_card(tmp_path / "nope.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ModelCardError, match="not valid JSON"):
        load_card(bad)


# ----------------------------------------------------------------------------- tensor math

def test_to_tensor_gray() -> None:
    card = parse_card(GOOD, Path("."))
    crops = np.array([[[0, 255], [51, 102]]], dtype=np.uint8)  # [1,2,2]
    x = to_tensor(card, crops)
    assert x.shape == (1, 1, 2, 2) and x.dtype == np.float32
    # (p / 255 - 0.5) / 0.25
    np.testing.assert_allclose(x[0, 0], [[-2.0, 2.0], [-1.2, -0.4]], atol=1e-6)


def colour_card(color: str) -> dict:
    return card_with(input__channels=3, input__color=color, input__scale=1.0,
                     input__mean=[10.0, 20.0, 30.0], input__std=[2.0, 4.0, 5.0])


@pytest.mark.parametrize("color", ["bgr", "rgb"])
def test_to_tensor_keeps_channel_order_and_normalises_per_channel(color: str) -> None:
    card = parse_card(colour_card(color), Path("."))
    crops = np.zeros((2, 3, 4, 3), dtype=np.uint8)
    crops[..., 0], crops[..., 1], crops[..., 2] = 20, 40, 80
    x = to_tensor(card, crops)
    assert x.shape == (2, 3, 3, 4) and x.dtype == np.float32
    np.testing.assert_allclose(x[:, 0], (20 - 10) / 2)
    np.testing.assert_allclose(x[:, 1], (40 - 20) / 4)
    np.testing.assert_allclose(x[:, 2], (80 - 30) / 5)


def test_colour_of_then_to_tensor_for_each_colour() -> None:
    """A BGR frame pixel (B=30, G=60, R=90) ends up in the channel order each card asks for."""
    frame = np.zeros((4, 4, 3), dtype=np.uint8)
    frame[...] = (30, 60, 90)
    rgb = parse_card(card_with(input__channels=3, input__color="rgb", input__mean=[0, 0, 0], input__std=[1, 1, 1]),
                     Path("."))
    bgr = parse_card(card_with(input__channels=3, input__color="bgr", input__mean=[0, 0, 0], input__std=[1, 1, 1]),
                     Path("."))
    gray = parse_card(GOOD, Path("."))
    np.testing.assert_allclose(to_tensor(rgb, colour_of(rgb, frame)[None])[0, :, 0, 0], np.array([90, 60, 30]) / 255,
                               atol=1e-6)
    np.testing.assert_allclose(to_tensor(bgr, colour_of(bgr, frame)[None])[0, :, 0, 0], np.array([30, 60, 90]) / 255,
                               atol=1e-6)
    g = colour_of(gray, frame)
    assert g.shape == (4, 4)
    assert abs(int(g[0, 0]) - round(0.114 * 30 + 0.587 * 60 + 0.299 * 90)) <= 1  # OpenCV's BGR2GRAY weights
