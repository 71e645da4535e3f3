"""The model tools (export, quantize, evaluate, crop measurement) on a tiny untrained net and synthetic faces.

No real data is needed: images are smooth random 48x48 patterns, and the evaluation test builds a
miniature fer2013.npz / ferplus.npz in a temporary folder.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest


import torch

from tools.eval import face as eval_face
from tools.export import face as export_face
from tools.export import measure_crop
from tools.export import quantize_face
from tools.train.face_nets import EdgeNet, build

from edgeemo import LABELS
from edgeemo.core.modelcard import load_card

REPO = Path(__file__).resolve().parents[1]

torch.set_num_threads(1)


def synthetic_faces(n: int, seed: int = 0, size: int = 48) -> np.ndarray:
    """Smooth gray uint8 images (upscaled 6x6 noise): structured enough to give varied activations."""
    import cv2

    rng = np.random.default_rng(seed)
    small = rng.uniform(0, 255, (n, 6, 6)).astype(np.float32)
    return np.stack([np.clip(cv2.resize(s, (size, size), interpolation=cv2.INTER_CUBIC), 0, 255) for s in small]
                    ).astype(np.uint8)


def checkpoint(model: torch.nn.Module, arch: str = "edge") -> dict:
    """A checkpoint dict shaped like tools/train/face.py writes it."""
    return {"arch": arch, "labels": list(LABELS), "mean": 0.5, "std": 0.25, "size": 48,
            "args": {"arch": arch, "data": "/somewhere", "out": "runs/x", "epochs": 2, "lr": 0.05,
                     "label_smoothing": 0.1},
            "model": model.state_dict(), "epoch": 2, "val": {"val_acc": 0.25}}


def band_labels(faces: np.ndarray) -> np.ndarray:
    """A learnable toy task: which of 7 overlapping horizontal bands is brightest."""
    return np.stack([faces[:, 6 * i:6 * i + 12].mean((1, 2)) for i in range(7)], 1).argmax(1)


def fit_briefly(model: torch.nn.Module, steps: int = 40) -> torch.nn.Module:
    """About a second of training, so outputs vary with the input like a real model's.

    An untrained net predicts one class for everything, which would make any int8/fp32 agreement
    check pass trivially.
    """
    faces = synthetic_faces(128, seed=11)
    x = torch.from_numpy((faces[:, None] / 255.0 - 0.5).astype(np.float32) / 0.25)
    y = torch.from_numpy(band_labels(faces))
    opt = torch.optim.Adam(model.parameters(), 3e-3)
    model.train()
    for _ in range(steps):
        i = torch.randint(0, len(x), (32,))
        loss = torch.nn.functional.cross_entropy(model(x[i]), y[i])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[torch.nn.Module, Path]:
    """A width-4 EdgeNet trained for a moment on synthetic bands, exported once."""
    torch.manual_seed(1)
    model = fit_briefly(EdgeNet(width=4))
    out = tmp_path_factory.mktemp("models")
    card_path, diff = export_face.export(model, checkpoint(model), out, "tiny")
    assert diff < 1e-4
    return model, card_path


# ----------------------------------------------------------------------------- export

def test_export_writes_a_valid_card(tiny: tuple) -> None:
    _, card_path = tiny
    raw = json.loads(card_path.read_text())
    card = load_card(card_path)
    assert card.path.is_file() and raw["file"] == "tiny.onnx"
    assert card.labels == LABELS and card.output == "logits" and card.input_name == "input"
    assert (card.size, card.channels, card.color) == ((48, 48), 1, "gray")
    assert card.scale == pytest.approx(1 / 255)
    assert card.mean.tolist() == [0.5] and card.std.tolist() == [0.25]
    assert raw["licence"].startswith("Apache-2.0")
    cmd = raw["training"]["command"]
    assert cmd.startswith("python -m tools.train.face --arch edge") and "--label-smoothing 0.1" in cmd
    assert "/somewhere" not in cmd  # machine-specific data path left out


def test_onnx_matches_pytorch_on_card_preprocessed_faces(tiny: tuple) -> None:
    model, card_path = tiny
    card = load_card(card_path)
    x = eval_face.fer_tensors(card, synthetic_faces(5))
    ours = eval_face.run_batches(eval_face.ort_session(card.path), card, x)
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    assert ours.shape == (5, 7)
    np.testing.assert_allclose(ours, ref, atol=1e-4)


def test_onnx_input_has_dynamic_batch(tiny: tuple) -> None:
    import onnx

    _, card_path = tiny
    graph = onnx.load(str(card_path.with_suffix(".onnx"))).graph
    dims = graph.input[0].type.tensor_type.shape.dim
    assert graph.input[0].name == "input" and graph.output[0].name == "logits"
    assert dims[0].dim_param and [d.dim_value for d in dims[1:]] == [1, 48, 48]


def test_reexport_keeps_metrics_and_uses_measured_crop(tmp_path: Path) -> None:
    torch.manual_seed(1)
    model = EdgeNet(width=4).eval()
    ckpt = checkpoint(model)
    card_path, _ = export_face.export(model, ckpt, tmp_path, "m")
    raw = json.loads(card_path.read_text())
    assert raw["crop"]["eye_center"] == [0.5, 0.4]  # the defaults until measured
    raw["metrics"] = {"fer2013_privatetest_acc": 0.71}
    card_path.write_text(json.dumps(raw))
    crop = tmp_path / "crop.json"
    crop.write_text(json.dumps({"eye_center": [0.49912, 0.3775], "eye_distance": 0.37041, "detection_rate": 0.98}))
    export_face.export(model, ckpt, tmp_path, "m", crop)
    raw = json.loads(card_path.read_text())
    assert raw["metrics"] == {"fer2013_privatetest_acc": 0.71}
    assert raw["crop"]["eye_center"] == [0.4991, 0.3775] and raw["crop"]["eye_distance"] == 0.3704
    assert raw["crop"]["measured"]["detection_rate"] == 0.98
    assert load_card(card_path).crop.eye_distance == pytest.approx(0.3704)


def test_export_cli_from_a_checkpoint_file(tmp_path: Path) -> None:
    torch.manual_seed(2)
    model = build("edge")
    torch.save(checkpoint(model), tmp_path / "best.pt")
    export_face.main([str(tmp_path / "best.pt"), "--name", "cli", "--out", str(tmp_path / "models")])
    card = load_card(tmp_path / "models" / "cli.json")
    assert card.path.is_file()
    assert json.loads((tmp_path / "models" / "cli.json").read_text())["training"]["epoch"] == 2


# ----------------------------------------------------------------------------- quantization

def test_stratified_indices_follow_class_shares() -> None:
    labels = np.repeat(np.arange(7), [400, 40, 400, 700, 500, 300, 500])
    idx = quantize_face.stratified_indices(labels, 512, seed=0)
    assert len(idx) == 512 and len(np.unique(idx)) == 512
    counts = np.bincount(labels[idx], minlength=7)
    assert counts.min() >= 1
    np.testing.assert_allclose(counts / 512, np.bincount(labels) / len(labels), atol=0.01)


def test_calibration_reader_batches_and_rewinds() -> None:
    x = np.zeros((70, 1, 48, 48), np.float32)
    reader = quantize_face.calibration_reader("input", x, batch=32)
    sizes = []
    while (item := reader.get_next()) is not None:
        sizes.append(item["input"].shape[0])
    assert sizes == [32, 32, 6]
    reader.rewind()
    assert reader.get_next()["input"].shape == (32, 1, 48, 48)


@pytest.fixture(scope="module")
def tiny_int8(tiny: tuple) -> tuple[Path, Path, np.ndarray]:
    _, card_path = tiny
    card = load_card(card_path)
    calib = eval_face.fer_tensors(card, synthetic_faces(64, seed=3))
    int8 = card_path.parent / "tiny-int8.onnx"
    notes = quantize_face.quantize(card.path, int8, calib, card.input_name)
    assert notes["format"] == "QDQ" and notes["calibration_images"] == 64
    return card_path, int8, calib


def test_int8_mostly_agrees_with_fp32(tiny_int8: tuple) -> None:
    card_path, int8, calib = tiny_int8
    card = load_card(card_path)
    fp32_pred = quantize_face.argmax_of(card, card.path, calib)
    int8_pred = quantize_face.argmax_of(card, int8, calib)
    assert len(np.unique(fp32_pred)) >= 3  # otherwise agreement would mean nothing
    assert np.mean(fp32_pred == int8_pred) >= 0.8
    assert int8.stat().st_size < card.path.stat().st_size


def test_stem_stays_float_and_computes_the_same(tiny: tuple, tiny_int8: tuple, tmp_path: Path) -> None:
    import onnx

    _, card_path = tiny
    card = load_card(card_path)
    reordered = tmp_path / "stem.onnx"
    names = quantize_face.float_stem(card.path, reordered)
    assert len(names) == 3
    x = eval_face.fer_tensors(card, synthetic_faces(8, seed=5))
    before = eval_face.run_batches(eval_face.ort_session(card.path), card, x)
    after = eval_face.run_batches(eval_face.ort_session(reordered), card, x)
    np.testing.assert_allclose(after, before, atol=1e-5)  # pool before ReLU: the same function
    # In the int8 model the stem reads the float input directly; quantization starts after the pool.
    nodes = onnx.load(str(tiny_int8[1])).graph.node
    first = next(n for n in nodes if n.op_type == "Conv")
    assert first.input[0] == card.input_name
    pool = next(n for n in nodes if n.op_type == "MaxPool")
    assert [n.op_type for n in nodes if pool.output[0] in n.input] == ["Relu"]


def test_int8_runs_in_openvino(tiny_int8: tuple) -> None:
    card_path, int8, calib = tiny_int8
    card = load_card(card_path)
    ov = quantize_face.openvino_argmax(int8, calib[:16])
    assert ov.shape == (16,)
    assert np.mean(ov == quantize_face.argmax_of(card, int8, calib[:16])) >= 0.75


def test_int8_card_keeps_preprocessing(tiny_int8: tuple, tmp_path: Path) -> None:
    card_path, int8, _ = tiny_int8
    fp32 = json.loads(card_path.read_text())
    raw = quantize_face.int8_card({**fp32, "flip_margin": 0.15}, "tiny-int8", {"format": "QDQ"},
                                  existing={"metrics": {"x": 1}})
    assert "flip_margin" not in raw  # chosen per model by eval_face, never inherited from the fp32 card
    assert raw["file"] == "tiny-int8.onnx" and raw["quantization"] == {"format": "QDQ"}
    assert raw["input"] == fp32["input"] and raw["crop"] == fp32["crop"] and raw["metrics"] == {"x": 1}
    (card_path.parent / "tiny-int8.json").write_text(json.dumps(raw))
    assert load_card(card_path.parent / "tiny-int8.json").path == int8


# ----------------------------------------------------------------------------- evaluation

def test_scores_on_a_known_confusion() -> None:
    y_true = np.array([0, 0, 1, 1, 3, 3, 3, 6])
    y_pred = np.array([0, 1, 1, 1, 3, 3, 6, 6])
    s = eval_face.scores(y_true, y_pred)
    assert s["acc"] == pytest.approx(6 / 8)
    assert s["precision"]["angry"] == 1.0 and s["recall"]["angry"] == 0.5
    assert s["precision"]["disgust"] == pytest.approx(2 / 3, abs=1e-4) and s["recall"]["disgust"] == 1.0
    assert s["recall"]["happy"] == pytest.approx(2 / 3, abs=1e-4) and s["precision"]["neutral"] == 0.5
    f1 = {"angry": 2 / 3, "disgust": 0.8, "happy": 0.8, "neutral": 2 / 3}  # absent classes count as 0
    assert s["macro_f1"] == pytest.approx(sum(f1.values()) / 7)
    assert np.array(s["confusion"]).sum() == 8


def test_fer_crops_follow_the_card(tiny: tuple) -> None:
    card = load_card(tiny[1])
    faces = synthetic_faces(2)
    assert eval_face.fer_crops(card, faces) is faces  # same size and gray: untouched
    raw = json.loads(tiny[1].read_text())
    raw["input"].update(size=[64, 64], channels=3, color="bgr", mean=[0.5] * 3, std=[0.25] * 3)
    from edgeemo.core.modelcard import parse_card

    big = eval_face.fer_crops(parse_card(raw, tiny[1].parent), faces)
    assert big.shape == (2, 64, 64, 3) and np.all(big[..., 0] == big[..., 2])


def test_predict_reorders_permuted_labels_and_flip_averages(tiny: tuple, tmp_path: Path) -> None:
    from edgeemo.core.modelcard import parse_card

    _, card_path = tiny
    raw = json.loads(card_path.read_text())
    card = parse_card(raw, card_path.parent)
    session = eval_face.ort_session(card.path)
    faces = synthetic_faces(6)
    p = eval_face.predict(session, card, faces)
    np.testing.assert_allclose(p.sum(1), 1, atol=1e-5)
    # The same model described with a different label order must give the same answer per label name.
    perm = [6, 3, 5, 4, 0, 1, 2]
    relabelled = parse_card({**raw, "labels": [LABELS[i] for i in perm]}, card_path.parent)
    q = eval_face.predict(session, relabelled, faces)
    np.testing.assert_allclose(q[:, [LABELS.index(LABELS[i]) for i in perm]], p, atol=1e-6)
    # Flip averaging of every face = mean of the image and its mirror.
    mirror = eval_face.predict(session, card, faces[:, :, ::-1].copy())
    np.testing.assert_allclose(eval_face.predict(session, card, faces, 1.0), (p + mirror) / 2, atol=1e-6)
    # The report's shortcut (both passes for every face, then the rule) equals the daemon's function.
    plain, mirrored = eval_face.both_passes(session, card, faces)
    for margin in (0.0, float(np.median(p.max(1) - np.sort(p, 1)[:, -2])), 1.0):
        np.testing.assert_allclose(eval_face.with_mirror_pass(plain, mirrored, margin),
                                   eval_face.predict(session, card, faces, margin), atol=1e-6)


def fake_data(root: Path, per_split: int = 35) -> None:
    """A miniature fer2013.npz / ferplus.npz with the real files' arrays."""
    n = 3 * per_split
    usage = np.repeat(np.arange(3, dtype=np.uint8), per_split)
    labels = np.tile(np.arange(7, dtype=np.uint8), n // 7)
    (root / "fer2013").mkdir(parents=True)
    (root / "ferplus").mkdir()
    np.savez(root / "fer2013" / "fer2013.npz", images=synthetic_faces(n, seed=9), labels=labels, usage=usage)
    votes = np.zeros((n, 10), np.uint8)
    votes[np.arange(n), np.arange(n) % 8] = 6  # majority cycles through FER+ columns incl. contempt
    np.savez(root / "ferplus" / "ferplus.npz", fer2013_index=np.arange(n, dtype=np.int32), votes=votes)


def test_eval_cli_updates_cards_and_compares(tiny: tuple, tiny_int8: tuple, tmp_path: Path,
                                             capsys: pytest.CaptureFixture) -> None:
    card_path, int8, _ = tiny_int8
    int8_card = card_path.parent / "tiny-int8.json"
    raw = quantize_face.int8_card(json.loads(card_path.read_text()), "tiny-int8", {"format": "QDQ"}, None)
    int8_card.write_text(json.dumps(raw))
    fake_data(tmp_path / "data")
    eval_face.main([str(card_path), str(int8_card), "--data", str(tmp_path / "data"), "--runs", "3",
                    "--update-card", "--out", str(tmp_path / "report")])
    out = capsys.readouterr().out
    assert "tiny-int8 vs tiny" in out and "argmax agreement" in out
    metrics = load_card(card_path).metrics
    for key in ("fer2013_privatetest_acc", "fer2013_publictest_acc", "fer2013_privatetest_acc_flip",
                "fer2013_privatetest_macro_f1", "ferplus_test_acc", "latency_ms_1thread",
                "latency_ms_1thread_batch8", "latency_ms_openvino_1thread", "evaluated_with"):
        assert key in metrics, key
    assert 0 <= metrics["fer2013_privatetest_acc"] <= 1 and metrics["latency_ms_1thread"] > 0
    assert metrics["evaluated_with"].startswith("python -m tools.eval.face")
    assert (tmp_path / "report" / "tiny-confusion.png").stat().st_size > 1000
    report = json.loads((tmp_path / "report" / "tiny-int8-eval.json").read_text())
    assert report["accuracy"]["PrivateTest"]["n"] == 35
    assert "PrivateTest selective flip" not in report["accuracy"]  # these cards have no flip margin


def test_eval_selects_a_flip_margin_and_reports_selective_flip(tiny: tuple, tmp_path: Path,
                                                                capsys: pytest.CaptureFixture) -> None:
    _, card_path = tiny
    card_copy = tmp_path / "models" / "tiny.json"
    card_copy.parent.mkdir()
    card_copy.write_text(card_path.read_text())
    (card_copy.parent / "tiny.onnx").write_bytes(load_card(card_path).path.read_bytes())
    fake_data(tmp_path / "data")
    eval_face.main([str(card_copy), "--data", str(tmp_path / "data"), "--runs", "3", "--select-flip-margin",
                    "--calibrate", "vector", "--update-card"])
    out = capsys.readouterr().out
    assert "flip margin on PublicTest" in out and "<- chosen" in out and "vector scaling fitted" in out
    raw = json.loads(card_copy.read_text())
    assert len(raw["temperature"]) == 7 and len(raw["logit_bias"]) == 7  # the daemon applies what was fitted
    assert (card_copy.parent / "tiny-reliability.png").stat().st_size > 0
    assert 0 <= raw["metrics"]["fer2013_privatetest_ece"] <= 1
    report = json.loads((card_copy.parent / "tiny-eval.json").read_text())
    sweep = report["flip_margin_sweep_publictest"]
    target = report["accuracy"]["PublicTest flip"]["acc"]
    # The smallest margin within FLIP_TOLERANCE of mirroring every face, or 1.0 when none is.
    assert raw["flip_margin"] == next((r["flip_margin"] for r in sweep
                                       if r["acc"] >= target - eval_face.FLIP_TOLERANCE - 1e-9), 1.0)
    assert [r["mirrored"] for r in sweep] == sorted(r["mirrored"] for r in sweep)
    # A card with a margin of its own is also evaluated (and timed) the daemon's way.
    card_copy.write_text(json.dumps({**raw, "flip_margin": 0.5}))
    eval_face.main([str(card_copy), "--data", str(tmp_path / "data"), "--runs", "3", "--update-card"])
    metrics = json.loads(card_copy.read_text())["metrics"]
    card = load_card(card_copy)
    faces, _ = eval_face.load_fer(tmp_path / "data", "PrivateTest")
    plain = eval_face.predict(eval_face.ort_session(card.path), card, faces)
    from edgeemo.vision.classifier import top_two_margin

    share = np.mean(top_two_margin(plain) <= 0.5)
    assert metrics["fer2013_privatetest_mirrored_share"] == pytest.approx(share, abs=1e-4)
    assert metrics["latency_ms_1thread_selective_flip"] > 0 and metrics["latency_ms_1thread_one_pass_same_loop"] > 0
    private = np.arange(70, 105)  # PrivateTest rows of fake_data; FER+ majority "contempt" (column 7) is dropped
    assert report["accuracy"]["FER+ Test"]["n"] == np.sum(private % 8 != 7)


def test_calibration_recovers_a_known_temperature_and_bias() -> None:
    from edgeemo.vision.classifier import softmax

    rng = np.random.default_rng(0)
    true_logits = rng.normal(0, 2, (20000, 7))
    labels = (softmax(true_logits).cumsum(1) < rng.random((20000, 1))).sum(1)  # drawn from the true probabilities
    # A model twice as sure as it should be: its logits are the true ones times 2.
    temperature, bias = eval_face.fit_calibration(true_logits * 2, labels, "temperature")
    assert temperature == pytest.approx(2.0, rel=0.05) and bias == 0.0
    # One over-confident class, one under-confident, one favoured: vector scaling undoes each.
    scale, shift = np.array([1, 3, 1, 0.5, 1, 1, 1.0]), np.array([0, 0, 0, 0, 0.8, 0, 0])
    temperature, bias = eval_face.fit_calibration(true_logits * scale + shift, labels, "vector")
    np.testing.assert_allclose(temperature, scale, rtol=0.1)
    fixed = softmax((true_logits * scale + shift) / np.array(temperature) + np.array(bias))
    before, after = (eval_face.reliability(p, labels)["ece"] for p in (softmax(true_logits * scale + shift),
                                                                         fixed))
    assert after < 0.02 < before


def test_reliability_bins_confidence_against_accuracy() -> None:
    probs = np.array([[0.95, 0.05], [0.95, 0.05], [0.55, 0.45], [0.55, 0.45]])
    result = eval_face.reliability(probs, np.array([0, 1, 0, 0]), bins=10)
    # Bin 0.9-1.0: sure at 0.95, right half the time; bin 0.5-0.6: sure at 0.55, always right.
    assert result["count"][9] == 2 and result["accuracy"][9] == 0.5 and result["confidence"][9] == 0.95
    assert result["ece"] == pytest.approx(0.5 * 0.45 + 0.5 * 0.45)


def test_update_card_refuses_subsets(tiny: tuple) -> None:
    with pytest.raises(SystemExit, match="drop --limit"):
        eval_face.main([str(tiny[1]), "--limit", "10", "--update-card"])


# ----------------------------------------------------------------------------- crop measurement

def test_crop_geometry_from_known_eyes() -> None:
    # Upscaled 4x (192 px face) with a 64 px border: eyes at (64+72, 64+70) and (64+144, 64+74).
    eyes = np.array([[136.0, 134.0, 208.0, 138.0]])
    geo = measure_crop.geometry(eyes, width=192, pad=64)[0]
    assert geo[0] == pytest.approx(108 / 192) and geo[1] == pytest.approx(72 / 192)
    assert geo[2] == pytest.approx(np.hypot(72, 4) / 192)
    assert geo[3] == pytest.approx(np.degrees(np.arctan2(4, 72)))
    summary = measure_crop.summarise(np.vstack([geo, geo]), sampled=4, args={"seed": 0, "scale": 4, "pad": 64})
    assert summary["detection_rate"] == 0.5 and summary["eye_center"] == [round(108 / 192, 4), 0.375]


def test_crop_canvas_shape() -> None:
    canvas = measure_crop.to_canvas(synthetic_faces(1)[0], scale=4, pad=64)
    assert canvas.shape == (320, 320, 3) and canvas.dtype == np.uint8
    assert canvas[:64].max() == 0 and canvas[64:256, 64:256].max() > 0


def test_eval_without_update_or_out_writes_nothing(tiny: tuple, tmp_path: Path) -> None:
    """A quick look (say, latency on --limit 10) must not overwrite the shipped confusion plot."""
    _, card_path = tiny
    before = sorted(p.name for p in card_path.parent.iterdir())
    fake_data(tmp_path / "data")
    eval_face.main([str(card_path), "--data", str(tmp_path / "data"), "--no-latency", "--limit", "10"])
    assert sorted(p.name for p in card_path.parent.iterdir()) == before
