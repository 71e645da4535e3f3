"""Evaluate shipped face-expression models (ONNX + card) on FER-2013 and FER+, and time them.

    python tools/eval_face.py models/edgeemo-face.json models/edgeemo-face-int8.json --update-card
    python tools/eval_face.py models/edgeemo-face.json --limit 500 --runs 50      # quick look

Everything goes through the card: the FER faces are fed exactly as the daemon feeds its crops
(edgeemo.modelcard.to_tensor), so a wrong mean/std/colour in a card shows up here as lost accuracy.
Accuracy is measured with onnxruntime on one thread; latency with onnxruntime and OpenVINO, one
thread, batch 1 and 8. With two or more cards, each later card is compared with the first
(typically fp32 first, int8 second). ``--update-card`` writes the numbers into each card's
"metrics" and a JSON report plus a confusion-matrix PNG into ``--out`` (default: the card's folder);
without ``--update-card`` or ``--out`` nothing is written.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shlex
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from datasets import REPO, data_root, load_fer, load_ferplus_majority  # noqa: E402
from machine import cpu_name  # noqa: E402

from edgeemo import LABELS  # noqa: E402
from edgeemo.modelcard import ModelCard, load_card, to_tensor  # noqa: E402

SPLITS = ("PublicTest", "PrivateTest")


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


def softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def predict(session, card: ModelCard, gray: np.ndarray, flip: bool = False) -> np.ndarray:
    """Class probabilities [N,7] in edgeemo.LABELS order; with `flip`, averaged with the mirror image."""
    x = fer_tensors(card, gray)

    def probs(t: np.ndarray) -> np.ndarray:
        out = run_batches(session, card, t)
        return softmax(out) if card.output == "logits" else out

    p = probs(x)
    if flip:
        p = (p + probs(x[..., ::-1])) / 2
    return p[:, card.label_order]


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


def accuracy_report(session, card: ModelCard, sets: dict) -> tuple[dict, dict]:
    """Scores per set, plain and flip-averaged, plus the PrivateTest predictions (for comparing cards)."""
    report, preds = {}, {}
    for name, (images, labels) in sets.items():
        for flip in (False, True):
            pred = predict(session, card, images, flip).argmax(1)
            report[name + (" flip" if flip else "")] = scores(labels, pred)
            preds[name + (" flip" if flip else "")] = pred
        print(f"  {name}: acc {report[name]['acc']:.4f} flip {report[name + ' flip']['acc']:.4f} "
              f"macro-F1 {report[name]['macro_f1']:.4f} (n={len(labels)})", flush=True)
    return report, preds


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
    print("  latency per face (ms, 1 thread): " + ", ".join(f"{k} {v:.3f}" for k, v in out.items()), flush=True)
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
        "latency_ms_1thread": round(lat["onnxruntime_batch1"], 3),
        "latency_ms_1thread_batch8": round(lat["onnxruntime_batch8"], 3),
        "latency_ms_openvino_1thread": round(lat["openvino_batch1"], 3),
        "latency_ms_openvino_1thread_batch8": round(lat["openvino_batch8"], 3),
        "latency_cpu": cpu_name(),
        "latency_load_avg_1min": round(os.getloadavg()[0], 2),
        "onnx_sha256": sha256(card.path),
        "evaluated_with": command,
    }


def update_card(card_path: Path, metrics: dict) -> None:
    raw = json.loads(Path(card_path).read_text())
    raw["metrics"] = {**raw.get("metrics", {}), **metrics}
    write_json(card_path, raw)
    print(f"  wrote metrics into {card_path}")


def print_table(rows: list[tuple[ModelCard, dict, dict]]) -> None:
    """A Markdown table, ready to paste into models/<name>.md."""
    print("\n| model | PrivateTest | + flip | PublicTest | + flip | macro-F1 | FER+ | ORT b1 ms | ORT b8 ms/face "
          "| OV b1 ms | OV b8 ms/face |")
    print("|---" * 11 + "|")
    for card, acc, lat in rows:
        print(f"| {card.name} | {acc['PrivateTest']['acc']:.4f} | {acc['PrivateTest flip']['acc']:.4f} "
              f"| {acc['PublicTest']['acc']:.4f} | {acc['PublicTest flip']['acc']:.4f} "
              f"| {acc['PrivateTest']['macro_f1']:.4f} | {acc['FER+ Test']['acc']:.4f} "
              f"| {lat.get('onnxruntime_batch1', float('nan')):.3f} | {lat.get('onnxruntime_batch8', float('nan')):.3f} "
              f"| {lat.get('openvino_batch1', float('nan')):.3f} | {lat.get('openvino_batch8', float('nan')):.3f} |")


def print_differences(rows: list[tuple[ModelCard, dict, dict]], preds: list[dict]) -> None:
    """Each later card against the first: accuracy change in points and argmax agreement."""
    base_card, base_acc, _ = rows[0]
    for (card, acc, _), pred in zip(rows[1:], preds[1:]):
        print(f"\n{card.name} vs {base_card.name}:")
        for key in ("PrivateTest", "PrivateTest flip", "PublicTest", "FER+ Test"):
            delta = 100 * (acc[key]["acc"] - base_acc[key]["acc"])
            print(f"  {key:17s} {acc[key]['acc']:.4f} vs {base_acc[key]['acc']:.4f}: {delta:+.2f} points")
        same = float(np.mean(pred["PrivateTest"] == preds[0]["PrivateTest"]))
        print(f"  PrivateTest argmax agreement {same:.4f}")


# ----------------------------------------------------------------------------- main

def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("cards", nargs="+", type=Path, help="model card JSON files")
    p.add_argument("--data", help="data directory (default: $EDGEEMO_DATA or ../shared/data)")
    p.add_argument("--limit", type=int, help="evaluate a fixed random subset of N images per set (development)")
    p.add_argument("--runs", type=int, default=200, help="timed runs per latency figure (after 20 warm-up)")
    p.add_argument("--no-latency", action="store_true", help="skip the latency measurement")
    p.add_argument("--update-card", action="store_true", help="write metrics into the cards + report/PNG")
    p.add_argument("--out", type=Path, help="folder for the confusion PNG and the JSON report (default: the card's "
                   "folder, i.e. models/; the report is written with --update-card or --out)")
    return p.parse_args(argv)


def evaluate_card(card_path: Path, sets: dict, args: argparse.Namespace, command: str) -> tuple:
    card = load_card(card_path)
    print(f"{card.name}: {card.path.name}, input {card.channels}x{card.size[0]}x{card.size[1]} {card.color}",
          flush=True)
    session = ort_session(card.path)
    acc, preds = accuracy_report(session, card, sets)
    lat = {} if args.no_latency else latency_report(session, card, args.runs)
    if args.update_card or args.out:  # a look without either leaves the shipped plots alone
        out = args.out or card_path.parent
        out.mkdir(parents=True, exist_ok=True)
        png = out / f"{card.name}-confusion.png"
        save_confusion(png, card, acc["PrivateTest"])
        report = {"card": str(card_path), "onnx_sha256": sha256(card.path), "limit": args.limit,
                  "accuracy": acc, "latency_ms_per_face": lat, "cpu": cpu_name(), "command": command}
        write_json(out / f"{card.name}-eval.json", report)
        print(f"  wrote {png} and {out / (card.name + '-eval.json')}")
    if args.update_card:
        update_card(card_path, card_metrics(acc, lat, command, card))
    return (card, acc, lat), preds


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.update_card and (args.limit or args.no_latency):
        raise SystemExit("--update-card records full-set numbers and latency: drop --limit / --no-latency")
    argv_used = sys.argv[1:] if argv is None else argv
    script = os.path.relpath(Path(__file__).resolve(), REPO)
    command = shlex.join(["python", script, *argv_used])
    sets = load_eval_sets(data_root(args.data), args.limit)
    rows, preds = [], []
    for card_path in args.cards:
        row, pred = evaluate_card(card_path, sets, args, command)
        rows.append(row)
        preds.append(pred)
    print_table(rows)
    if len(rows) > 1:
        print_differences(rows, preds)


if __name__ == "__main__":
    main()
