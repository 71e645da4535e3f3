"""Evaluate shipped face-expression models (ONNX + card) on FER-2013 and FER+, and time them.

    python -m tools.eval.face models/edgeemo-face.json models/edgeemo-face-int8.json --update-card
    python -m tools.eval.face models/edgeemo-face-int8.json --select-flip-margin --update-card
    python -m tools.eval.face models/edgeemo-face.json --limit 500 --runs 50      # quick look

Everything goes through the card: the FER faces are fed exactly as the daemon feeds its crops
(edgeemo.core.modelcard.to_tensor), so a wrong mean/std/colour in a card shows up here as lost accuracy.
Accuracy is measured with onnxruntime on one thread; latency with onnxruntime and OpenVINO, one
thread, batch 1 and 8. Every figure comes three ways: one pass, every face averaged with its
mirror image ("flip"), and, for a card with a "flip_margin" (the daemon's default), only the
faces the model is unsure of mirrored ("selective flip", edgeemo.vision.classifier.mirror_unsure), timed
on real faces because its cost depends on them. ``--select-flip-margin`` chooses that margin on
PublicTest: the cheapest one as accurate there as mirroring every face. With two or more cards,
each later card is compared with the first (typically fp32 first, int8 second), and latency is
measured card after card in rounds, so that the machine's drift cannot favour one of them. ``--update-card`` writes the numbers into each card's
"metrics" and a JSON report plus a confusion-matrix PNG into ``--out`` (default: the card's folder);
without ``--update-card`` or ``--out`` nothing is written.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import shlex
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np
from tools.common.calibration import fit_calibration, plot_reliability, reliability
from tools.common.datasets import data_root, load_fer, load_ferplus_majority
from tools.common.machine import cpu_name

from edgeemo import LABELS
from edgeemo.vision.classifier import calibrated_probs, mirror_unsure, unsure_faces
from edgeemo.core.modelcard import ModelCard, load_card, to_tensor

SPLITS = ("PublicTest", "PrivateTest")
LATENCY_ROUNDS = 5  # latency is measured card after card in this many rounds
LATENCY_FACES = 1000  # real PrivateTest faces timed for the selective flip figures
SELECTIVE = " selective flip"
# How far below mirroring every face the chosen margin may stay: 0.1 points, 4 of PublicTest's 3589
# faces, less than the sweep's own ups and downs from one margin to the next, and each mirrored face
# costs a second pass.
FLIP_TOLERANCE = 0.001  # report suffix: mirrored where unsure, at the card's flip_margin


# ----------------------------------------------------------------------------- shared helpers
# quantize_face.py and export_face.py import these, so every tool feeds models the same way.

def ort_session(path: Path, threads: int = 1):
    """An onnxruntime CPU session pinned to `threads` threads, as on the edge box."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.log_severity_level = 3
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def fer_crops(card: ModelCard, gray: np.ndarray) -> np.ndarray:
    """FER faces ([N,48,48] gray uint8) as crops in the card's size and colour.

    FER images already are face crops, so only the size and the channel count may need changing.
    """
    import cv2

    h, w = card.size
    if gray.shape[1:] != (h, w):
        shrink = h < gray.shape[1]
        interp = cv2.INTER_AREA if shrink else cv2.INTER_LINEAR
        gray = np.stack([cv2.resize(im, (w, h), interpolation=interp) for im in gray])
    if card.channels == 3:  # gray -> BGR or RGB: three equal channels either way
        gray = np.repeat(gray[..., None], 3, axis=-1)
    return gray


def fer_tensors(card: ModelCard, gray: np.ndarray) -> np.ndarray:
    """FER faces -> the model's input tensor [N,C,H,W], through the card only."""
    return to_tensor(card, fer_crops(card, gray))


def run_batches(session, card: ModelCard, x: np.ndarray, batch: int = 256) -> np.ndarray:
    """Raw model outputs for a tensor of any length, in the card's label order."""
    outs = [session.run(None, {card.input_name: np.ascontiguousarray(x[i:i + batch])})[0]
            for i in range(0, len(x), batch)]
    return np.concatenate(outs)


def model_probs(session, card: ModelCard, batch: int = 256) -> Callable[[np.ndarray], np.ndarray]:
    """tensor -> class probabilities in the model's own label order, `batch` faces per run."""
    def probs(x: np.ndarray) -> np.ndarray:
        return calibrated_probs(run_batches(session, card, x, batch), card)

    return probs


def predict(session, card: ModelCard, gray: np.ndarray, flip_margin: float = 0.0) -> np.ndarray:
    """Class probabilities [N,7] in edgeemo.LABELS order.

    Faces whose top-two margin is at most `flip_margin` are averaged with their mirror image, by
    the daemon's own function (edgeemo.vision.classifier.mirror_unsure): 0 mirrors none, 1 every face.
    """
    x = fer_tensors(card, gray)
    return mirror_unsure(model_probs(session, card), x, flip_margin)[:, card.label_order]


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def write_json(path: Path, data: dict) -> None:
    Path(path).write_text(json.dumps(data, indent=2) + "\n")


# ----------------------------------------------------------------------------- accuracy

def scores(y_true: np.ndarray, y_pred: np.ndarray) -> dict:
    """Accuracy, macro-F1, per-class precision/recall and the confusion matrix (rows = truth)."""
    k = len(LABELS)
    cm = np.bincount(y_true.astype(np.int64) * k + y_pred, minlength=k * k).reshape(k, k)
    tp = np.diag(cm).astype(np.float64)
    precision = np.divide(tp, cm.sum(0), out=np.zeros(k), where=cm.sum(0) > 0)
    recall = np.divide(tp, cm.sum(1), out=np.zeros(k), where=cm.sum(1) > 0)
    f1 = np.divide(2 * precision * recall, precision + recall, out=np.zeros(k), where=precision + recall > 0)
    return {
        "n": int(len(y_true)), "acc": float(tp.sum() / max(1, len(y_true))), "macro_f1": float(f1.mean()),
        "precision": dict(zip(LABELS, precision.round(4).tolist())),
        "recall": dict(zip(LABELS, recall.round(4).tolist())),
        "confusion": cm.tolist(),
    }


def subset(images: np.ndarray, labels: np.ndarray, limit: int | None, seed: int = 0):
    """A fixed random subset (same for every card) so quick runs stay comparable."""
    if not limit or limit >= len(labels):
        return images, labels
    keep = np.sort(np.random.default_rng(seed).choice(len(labels), limit, replace=False))
    return images[keep], labels[keep]


def load_eval_sets(root: Path, limit: int | None) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    sets = {split: subset(*load_fer(root, split), limit) for split in SPLITS}
    sets["FER+ Test"] = subset(*load_ferplus_majority(root), limit)
    return sets


def inference_modes(card: ModelCard) -> dict[str, float]:
    """Report suffix -> flip margin: one pass, every face mirrored, and the card's own margin if it has one."""
    modes = {"": 0.0, " flip": 1.0}
    if 0 < card.flip_margin < 1:
        modes[SELECTIVE] = card.flip_margin
    return modes


def both_passes(session, card: ModelCard, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities [N,7] in edgeemo.LABELS order of each face and of its mirror image."""
    x = fer_tensors(card, images)
    probs = model_probs(session, card)
    return probs(x)[:, card.label_order], probs(np.ascontiguousarray(x[..., ::-1]))[:, card.label_order]


def with_mirror_pass(plain: np.ndarray, mirrored: np.ndarray, margin: float) -> np.ndarray:
    """What edgeemo.vision.classifier.mirror_unsure gives at `margin`, from both passes of every face.

    The same rule (unsure_faces), so the accuracy of every margin comes from one pair of passes.
    """
    return np.where(unsure_faces(plain, margin)[:, None], (plain + mirrored) / 2, plain)


def accuracy_report(card: ModelCard, sets: dict, passes: dict) -> tuple[dict, dict]:
    """Scores per set and inference mode, plus the predictions (for comparing cards).

    `passes` maps each set's name to its both_passes().
    """
    report, preds = {}, {}
    for name, (_, labels) in sets.items():
        plain, mirrored = passes[name]
        for suffix, margin in inference_modes(card).items():
            pred = with_mirror_pass(plain, mirrored, margin).argmax(1)
            report[name + suffix] = scores(labels, pred)
            report[name + suffix]["calibration"] = reliability(with_mirror_pass(plain, mirrored, margin), labels)
            preds[name + suffix] = pred
            if suffix == SELECTIVE:
                report[name + suffix]["mirrored"] = float(np.mean(unsure_faces(plain, margin)))
        extra = (f" selective flip {report[name + SELECTIVE]['acc']:.4f} "
                 f"({100 * report[name + SELECTIVE]['mirrored']:.0f} % mirrored)" if name + SELECTIVE in report else "")
        print(f"  {name}: acc {report[name]['acc']:.4f} flip {report[name + ' flip']['acc']:.4f}{extra} "
              f"macro-F1 {report[name]['macro_f1']:.4f} ECE {report[name]['calibration']['ece']:.4f} "
              f"(n={len(labels)})", flush=True)
    return report, preds


def select_flip_margin(plain: np.ndarray, mirrored: np.ndarray, labels: np.ndarray) -> tuple[float, list]:
    """The cheapest flip margin about as accurate as mirroring every face, on these (PublicTest) faces.

    Tries 0.05, 0.10, ... 0.95 and keeps the smallest whose accuracy is within FLIP_TOLERANCE of
    mirroring every face (1.0 if none is); returns it with the sweep (margin, share mirrored, accuracy).
    """
    target = float(np.mean(with_mirror_pass(plain, mirrored, 1.0).argmax(1) == labels)) - FLIP_TOLERANCE
    sweep = []
    for margin in np.round(np.arange(0.05, 0.96, 0.05), 2):
        acc = float(np.mean(with_mirror_pass(plain, mirrored, margin).argmax(1) == labels))
        sweep.append({"flip_margin": float(margin), "mirrored": float(np.mean(unsure_faces(plain, margin))),
                      "acc": acc})
    chosen = next((row["flip_margin"] for row in sweep if row["acc"] >= target - 1e-9), 1.0)
    print(f"  flip margin on PublicTest (n={len(labels)}; every face mirrored: {target + FLIP_TOLERANCE:.4f}):")
    for row in sweep:
        mark = "  <- chosen" if row["flip_margin"] == chosen else ""
        print(f"    {row['flip_margin']:.2f}: {100 * row['mirrored']:5.1f} % mirrored, acc {row['acc']:.4f}{mark}")
    return chosen, sweep


# ----------------------------------------------------------------------------- latency

def median_ms(infer: Callable[[np.ndarray], object], x: np.ndarray, runs: int, warmup: int = 20) -> float:
    """Median wall time of one call, in ms."""
    for _ in range(warmup):
        infer(x)
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        infer(x)
        times.append(time.perf_counter() - t0)
    return float(np.median(times) * 1e3)


def openvino_infer(card: ModelCard, batch: int) -> Callable[[np.ndarray], object]:
    """An OpenVINO CPU request for a fixed batch size, one thread, latency hint."""
    import openvino as ov

    core = ov.Core()
    model = core.read_model(str(card.path))
    model.reshape({model.inputs[0].get_any_name(): [batch, card.channels, *card.size]})
    compiled = core.compile_model(model, "CPU", {"INFERENCE_NUM_THREADS": 1, "PERFORMANCE_HINT": "LATENCY"})
    request = compiled.create_infer_request()
    return lambda x: request.infer({0: x})


def latency_report(session, card: ModelCard, runs: int) -> dict:
    """Per-face latency in ms (batch time / batch size) for onnxruntime and OpenVINO at batch 1 and 8."""
    rng = np.random.default_rng(0)
    out = {}
    for batch in (1, 8):
        x = rng.standard_normal((batch, card.channels, *card.size)).astype(np.float32)
        ort_ms = median_ms(lambda t: session.run(None, {card.input_name: t}), x, runs)
        ov_ms = median_ms(openvino_infer(card, batch), x, runs)
        out[f"onnxruntime_batch{batch}"] = ort_ms / batch
        out[f"openvino_batch{batch}"] = ov_ms / batch
    return out


def selective_latency(session, card: ModelCard, faces: np.ndarray, repeats: int = 5) -> dict:
    """Per-face ms of the daemon's classification with its mirror pass (onnxruntime, one thread).

    The second pass runs only for unsure faces, so the cost depends on the faces: this times
    edgeemo.vision.classifier.mirror_unsure (model, softmax, margin, mirror pass) over real FER faces in
    batches of 1 and 8, total time / faces, median of `repeats` sweeps. Beside it the same loop
    with no mirror pass, timed on the same batch right before, so machine noise hits both alike.
    """
    x = fer_tensors(card, faces)
    probs_of = model_probs(session, card)

    def sweep(batch: int) -> np.ndarray:
        """Per face [one pass, selective flip] x [wall s, process CPU s] over all faces, each batch timed both ways.

        Process CPU time (one inference thread) is what the face costs the device; wall time
        also counts whatever else ran on the machine meanwhile.
        """
        total = np.zeros((2, 2))
        chunks = [np.ascontiguousarray(x[i:i + batch]) for i in range(0, len(x) - batch + 1, batch)]
        for chunk in chunks:
            for mode, margin in enumerate((0.0, card.flip_margin)):
                t0, c0 = time.perf_counter(), time.process_time()
                mirror_unsure(probs_of, chunk, margin)
                total[mode] += time.perf_counter() - t0, time.process_time() - c0
        return total / (len(chunks) * batch)

    sweep(8)  # warm-up
    out = {}
    for batch in (1, 8):
        (one_pass, one_pass_cpu), (selective, selective_cpu) = np.median(
            [sweep(batch) for _ in range(repeats)], axis=0) * 1e3
        out |= {f"onnxruntime_batch{batch}_one_pass": float(one_pass),
                f"onnxruntime_batch{batch}_selective_flip": float(selective),
                f"onnxruntime_batch{batch}_one_pass_cpu": float(one_pass_cpu),
                f"onnxruntime_batch{batch}_selective_flip_cpu": float(selective_cpu)}
    print("  per face on real faces, with softmax (ms, 1 thread): "
          + ", ".join(f"{k} {v:.3f}" for k, v in out.items()), flush=True)
    return out


# ----------------------------------------------------------------------------- outputs

def save_confusion(path: Path, card: ModelCard, result: dict, split: str = "PrivateTest") -> None:
    """Row-normalised confusion matrix (each row = one true label, sums to 1)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cm = np.array(result["confusion"], dtype=np.float64)
    norm = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(6.4, 5.6))
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    for i in range(len(LABELS)):
        for j in range(len(LABELS)):
            ax.text(j, i, f"{norm[i, j]:.2f}", ha="center", va="center", fontsize=8,
                    color="white" if norm[i, j] > 0.5 else "black")
    ax.set_xticks(range(len(LABELS)), LABELS, rotation=45, ha="right")
    ax.set_yticks(range(len(LABELS)), LABELS)
    ax.set_xlabel("predicted"), ax.set_ylabel("true")
    ax.set_title(f"{card.name}: FER-2013 {split}, acc {result['acc']:.3f} (n={result['n']})")
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def save_reliability(path: Path, card: ModelCard, acc: dict) -> None:
    """Reliability diagram on PrivateTest as the daemon runs the card: accuracy against confidence per bin."""
    key = "PrivateTest" + (SELECTIVE if "PrivateTest" + SELECTIVE in acc else "")
    cal = acc[key]["calibration"]
    title = f"{card.name} (calibrated), FER-2013 {key}\nECE {cal['ece']:.4f} over {cal['bins']} bins"
    plot_reliability(path, cal, title, "faces")


def card_metrics(acc: dict, lat: dict, command: str, card: ModelCard) -> dict:
    """The flat "metrics" block of the card contract."""
    r4 = lambda v: round(v, 4)  # noqa: E731
    return {
        "fer2013_privatetest_acc": r4(acc["PrivateTest"]["acc"]),
        "fer2013_privatetest_acc_flip": r4(acc["PrivateTest flip"]["acc"]),
        "fer2013_publictest_acc": r4(acc["PublicTest"]["acc"]),
        "fer2013_publictest_acc_flip": r4(acc["PublicTest flip"]["acc"]),
        "fer2013_privatetest_macro_f1": r4(acc["PrivateTest"]["macro_f1"]),
        "fer2013_privatetest_macro_f1_flip": r4(acc["PrivateTest flip"]["macro_f1"]),
        "ferplus_test_acc": r4(acc["FER+ Test"]["acc"]),
        "ferplus_test_acc_flip": r4(acc["FER+ Test flip"]["acc"]),
        "fer2013_privatetest_ece": r4(acc["PrivateTest"]["calibration"]["ece"]),
        "fer2013_publictest_ece": r4(acc["PublicTest"]["calibration"]["ece"]),
        "latency_ms_1thread": round(lat["onnxruntime_batch1"], 3),
        "latency_ms_1thread_batch8": round(lat["onnxruntime_batch8"], 3),
        "latency_ms_openvino_1thread": round(lat["openvino_batch1"], 3),
        "latency_ms_openvino_1thread_batch8": round(lat["openvino_batch8"], 3),
        **selective_metrics(acc, lat, card),
        "latency_cpu": cpu_name(),
        "latency_load_avg_1min": round(os.getloadavg()[0], 2),
        "onnx_sha256": sha256(card.path),
        "evaluated_with": command,
    }


def selective_metrics(acc: dict, lat: dict, card: ModelCard) -> dict:
    """The card's figures with its own flip margin (the daemon's default), if it has one."""
    if "PrivateTest" + SELECTIVE not in acc:
        return {}
    r4 = lambda v: round(v, 4)  # noqa: E731
    return {
        "fer2013_privatetest_acc_selective_flip": r4(acc["PrivateTest" + SELECTIVE]["acc"]),
        "fer2013_publictest_acc_selective_flip": r4(acc["PublicTest" + SELECTIVE]["acc"]),
        "ferplus_test_acc_selective_flip": r4(acc["FER+ Test" + SELECTIVE]["acc"]),
        "fer2013_privatetest_macro_f1_selective_flip": r4(acc["PrivateTest" + SELECTIVE]["macro_f1"]),
        "fer2013_privatetest_ece_selective_flip": r4(acc["PrivateTest" + SELECTIVE]["calibration"]["ece"]),
        "fer2013_privatetest_mirrored_share": r4(acc["PrivateTest" + SELECTIVE]["mirrored"]),
        "latency_ms_1thread_selective_flip": round(lat["onnxruntime_batch1_selective_flip"], 3),
        "latency_ms_1thread_batch8_selective_flip": round(lat["onnxruntime_batch8_selective_flip"], 3),
        "latency_ms_1thread_one_pass_same_loop": round(lat["onnxruntime_batch1_one_pass"], 3),
        "cpu_ms_1thread_selective_flip": round(lat["onnxruntime_batch1_selective_flip_cpu"], 3),
        "cpu_ms_1thread_batch8_selective_flip": round(lat["onnxruntime_batch8_selective_flip_cpu"], 3),
        "cpu_ms_1thread_one_pass_same_loop": round(lat["onnxruntime_batch1_one_pass_cpu"], 3),
    }


def update_card(card_path: Path, metrics: dict, flip_margin: float | None = None,
                calibration: dict | None = None) -> None:
    """Merge `metrics` into the card; a newly chosen flip margin or calibration goes beside them, at the top level."""
    raw = json.loads(Path(card_path).read_text())
    raw["metrics"] = {**raw.get("metrics", {}), **metrics}
    if flip_margin is not None:
        raw["flip_margin"] = flip_margin
    raw |= calibration or {}
    write_json(card_path, raw)
    print(f"  wrote metrics into {card_path}")


def print_table(rows: list[tuple[ModelCard, dict, dict]]) -> None:
    """A Markdown table, ready to paste into models/<name>.md."""
    def cell(d: dict, key: str, field: str = "acc", digits: int = 4) -> str:
        value = d.get(key, {}).get(field) if field else d.get(key)
        return "-" if value is None else f"{value:.{digits}f}"

    print("\n| model | PrivateTest | + flip | + selective flip | PublicTest | + flip | + selective flip | macro-F1 "
          "| FER+ | ORT b1 ms | ORT b8 ms/face | selective flip b1 / b8 ms/face | OV b1 ms | OV b8 ms/face |")
    print("|---" * 14 + "|")
    for card, acc, lat in rows:
        cells = [card.name, cell(acc, "PrivateTest"), cell(acc, "PrivateTest flip"), cell(acc, "PrivateTest" + SELECTIVE),
                 cell(acc, "PublicTest"), cell(acc, "PublicTest flip"), cell(acc, "PublicTest" + SELECTIVE),
                 cell(acc, "PrivateTest", "macro_f1"), cell(acc, "FER+ Test"),
                 cell(lat, "onnxruntime_batch1", None, 3), cell(lat, "onnxruntime_batch8", None, 3),
                 f"{cell(lat, 'onnxruntime_batch1_selective_flip', None, 3)} / "
                 f"{cell(lat, 'onnxruntime_batch8_selective_flip', None, 3)}",
                 cell(lat, "openvino_batch1", None, 3), cell(lat, "openvino_batch8", None, 3)]
        print("| " + " | ".join(cells) + " |")


def print_differences(rows: list[tuple[ModelCard, dict, dict]], preds: list[dict]) -> None:
    """Each later card against the first: accuracy change in points and argmax agreement."""
    base_card, base_acc, _ = rows[0]
    for (card, acc, _), pred in zip(rows[1:], preds[1:]):
        print(f"\n{card.name} vs {base_card.name}:")
        for key in ("PrivateTest", "PrivateTest flip", "PrivateTest" + SELECTIVE, "PublicTest", "FER+ Test"):
            if key in acc and key in base_acc:
                delta = 100 * (acc[key]["acc"] - base_acc[key]["acc"])
                print(f"  {key:28s} {acc[key]['acc']:.4f} vs {base_acc[key]['acc']:.4f}: {delta:+.2f} points")
        same = float(np.mean(pred["PrivateTest"] == preds[0]["PrivateTest"]))
        print(f"  PrivateTest argmax agreement {same:.4f}")


# ----------------------------------------------------------------------------- main

def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("cards", nargs="+", type=Path, help="model card JSON files")
    p.add_argument("--data", help="data directory (default: $EDGEEMO_DATA or ../shared/data)")
    p.add_argument("--limit", type=int, help="evaluate a fixed random subset of N images per set (development)")
    p.add_argument("--runs", type=int, default=200,
                   help=f"timed runs per latency figure, split over {LATENCY_ROUNDS} rounds (each after 20 warm-up)")
    p.add_argument("--no-latency", action="store_true", help="skip the latency measurement")
    p.add_argument("--select-flip-margin", action="store_true",
                   help="choose each card's flip_margin on PublicTest (see select_flip_margin); "
                        "with --update-card it is written into the card")
    p.add_argument("--calibrate", choices=("temperature", "vector"),
                   help="fit each card's calibration on PublicTest (see fit_calibration), before any flip margin is "
                        "chosen; with --update-card it is written into the card")
    p.add_argument("--update-card", action="store_true", help="write metrics into the cards + report/PNG")
    p.add_argument("--out", type=Path, help="folder for the confusion PNG and the JSON report (default: the card's "
                   "folder, i.e. models/; the report is written with --update-card or --out)")
    return p.parse_args(argv)


@dataclasses.dataclass
class Evaluation:
    """One card's results, filled in phases: accuracy, then latency (interleaved across cards)."""

    card_path: Path
    card: ModelCard
    session: object
    acc: dict
    preds: dict
    sweep: list | None
    fitted: bool = False
    lat: dict = dataclasses.field(default_factory=dict)


def evaluate_accuracy(card_path: Path, sets: dict, args: argparse.Namespace) -> Evaluation:
    card = load_card(card_path)
    print(f"{card.name}: {card.path.name}, input {card.channels}x{card.size[0]}x{card.size[1]} {card.color}",
          flush=True)
    session = ort_session(card.path)
    if args.calibrate and card.output == "logits":
        images, labels = sets["PublicTest"]
        logits = run_batches(session, card, fer_tensors(card, images))
        temperature, bias = fit_calibration(logits, card.label_order[labels], args.calibrate)
        print(f"  {args.calibrate} scaling fitted on PublicTest: temperature {temperature}, logit bias {bias}", flush=True)
        card = dataclasses.replace(card, temperature=np.float32(temperature), logit_bias=np.float32(bias),
                                   raw=card.raw | {"temperature": temperature, "logit_bias": bias})
    passes = {name: both_passes(session, card, images) for name, (images, _) in sets.items()}
    sweep = None
    if args.select_flip_margin:
        margin, sweep = select_flip_margin(*passes["PublicTest"], sets["PublicTest"][1])
        card = dataclasses.replace(card, flip_margin=margin)
    acc, preds = accuracy_report(card, sets, passes)
    return Evaluation(card_path, card, session, acc, preds, sweep, bool(args.calibrate))


def measure_latency(evals: list[Evaluation], sets: dict, runs: int, rounds: int = LATENCY_ROUNDS) -> None:
    """Latency of every card, in `rounds` interleaved rounds (median per figure across rounds).

    The machine's speed drifts from minute to minute; measuring card after card in turn, rather
    than one card and then the next, lets that drift hit every card alike, so their ratio holds.
    """
    rows: list[list[dict]] = [[] for _ in evals]
    for r in range(rounds):
        print(f"  latency round {r + 1}/{rounds}", flush=True)
        for row, ev in zip(rows, evals):
            row.append(latency_report(ev.session, ev.card, max(1, runs // rounds)))
    for row, ev in zip(rows, evals):
        ev.lat = {key: float(np.median([r[key] for r in row])) for key in row[0]}
        print(f"  {ev.card.name}, median of {rounds} rounds (ms per face): "
              + ", ".join(f"{k} {v:.3f}" for k, v in ev.lat.items()), flush=True)
        if SELECTIVE in inference_modes(ev.card):
            ev.lat |= selective_latency(ev.session, ev.card, sets["PrivateTest"][0][:LATENCY_FACES])


def write_outputs(ev: Evaluation, args: argparse.Namespace, command: str) -> None:
    """The confusion PNG and JSON report (with --out or --update-card) and the card's metrics (--update-card)."""
    card = ev.card
    if args.update_card or args.out:  # a look without either leaves the shipped plots alone
        out = args.out or ev.card_path.parent
        out.mkdir(parents=True, exist_ok=True)
        png = out / f"{card.name}-confusion.png"
        save_confusion(png, card, ev.acc["PrivateTest"])
        save_reliability(out / f"{card.name}-reliability.png", card, ev.acc)
        report = {"card": str(ev.card_path), "onnx_sha256": sha256(card.path), "limit": args.limit,
                  "flip_margin": card.flip_margin, "flip_margin_sweep_publictest": ev.sweep,
                  "accuracy": ev.acc, "latency_ms_per_face": ev.lat, "cpu": cpu_name(), "command": command}
        write_json(out / f"{card.name}-eval.json", report)
        print(f"  wrote {png} and {out / (card.name + '-eval.json')}")
    if args.update_card:
        update_card(ev.card_path, card_metrics(ev.acc, ev.lat, command, card),
                    card.flip_margin if ev.sweep else None,
                    {k: card.raw[k] for k in ("temperature", "logit_bias")} if ev.fitted else None)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.update_card and (args.limit or args.no_latency):
        raise SystemExit("--update-card records full-set numbers and latency: drop --limit / --no-latency")
    argv_used = sys.argv[1:] if argv is None else argv
    command = shlex.join(["python", "-m", "tools.eval.face", *argv_used])
    sets = load_eval_sets(data_root(args.data), args.limit)
    evals = [evaluate_accuracy(card_path, sets, args) for card_path in args.cards]
    if not args.no_latency:
        measure_latency(evals, sets, args.runs)
    for ev in evals:
        write_outputs(ev, args, command)
    rows = [(ev.card, ev.acc, ev.lat) for ev in evals]
    print_table(rows)
    if len(rows) > 1:
        print_differences(rows, [ev.preds for ev in evals])


if __name__ == "__main__":
    main()
