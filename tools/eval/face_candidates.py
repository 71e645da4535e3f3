"""The distilled students side by side, on PublicTest only: what chose the shipped architecture.

    python -m tools.eval.face_candidates runs/gpu-kd/*/best.pt --out models/edgeemo-face-candidates.json

For each checkpoint: FER-2013 PublicTest accuracy (one pass and mirror-averaged), agreement with
the FER+ crowd majority on the same faces, parameters, multiply-adds, and the int8 model's time per
face on one thread (exported and quantized as tools/export ships it, timed in interleaved rounds so
the machine's drift hits every candidate alike). Beside them, the teacher ensemble's frontier: its
PublicTest accuracy against its FER+ agreement as the FER+ teachers' weight goes from 0 to 1, the
trade-off every student inherits. PrivateTest is never read here.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from tools.common.datasets import FER_USAGE, data_root, load_fer
from tools.common.machine import cpu_name
from tools.eval.face import fer_tensors, ort_session
from tools.export import quantize_face
from tools.export.face import export, load_checkpoint
from tools.train.face import predict
from tools.train.face_nets import count_macs
from tools.train.teachers import TEACHERS_FILE, ensemble_probs
from edgeemo.core.modelcard import load_card

FERPLUS_TO_OURS = np.array([6, 3, 5, 4, 0, 1, 2])  # FER+ vote column -> our label (contempt and beyond dropped)


def ferplus_majority(root: Path, usage: str) -> np.ndarray:
    """Per face of the split, the FER+ crowd majority as our label, or -1 (contempt, unknown, not a face, dropped)."""
    fer = np.load(root / "fer2013" / "fer2013.npz")
    fp = np.load(root / "ferplus" / "ferplus.npz")
    votes = fp["votes"].astype(np.int64)
    majority = votes.argmax(1)
    keep = (majority < 7) & (votes.max(1) > 0)
    label = np.full(len(fer["usage"]), -1)
    label[fp["fer2013_index"][keep]] = FERPLUS_TO_OURS[majority[keep]]
    return label[fer["usage"] == FER_USAGE[usage]]


def agreement(pred: np.ndarray, majority: np.ndarray) -> float:
    known = majority >= 0
    return float(np.mean(pred[known] == majority[known]))


def accuracy_row(path: Path, images: np.ndarray, labels: np.ndarray, majority: np.ndarray) -> dict:
    model, ckpt = load_checkpoint(path)
    z, z_flip = predict(model, torch.from_numpy(images), "cpu")
    plain, flip = z.softmax(1).numpy(), ((z.softmax(1) + z_flip.softmax(1)) / 2).numpy()
    args = ckpt.get("args", {})
    return {"run": path.parent.name, "arch": ckpt["arch"], "ferplus_weight": args.get("ferplus_weight"),
            "epochs": ckpt.get("epoch"), "parameters": sum(p.numel() for p in model.parameters()),
            "macs": count_macs(model), "publictest_acc": float(np.mean(plain.argmax(1) == labels)),
            "publictest_acc_flip": float(np.mean(flip.argmax(1) == labels)),
            "publictest_ferplus_agreement_flip": agreement(flip.argmax(1), majority)}


def int8_latency(paths: list[Path], data: str, faces: np.ndarray, rounds: int, runs: int) -> list[float]:
    """Median ms per face, batch 1, one thread, of each checkpoint's int8 model, in interleaved rounds."""
    with tempfile.TemporaryDirectory() as tmp:
        sessions = []
        for i, path in enumerate(paths):
            model, ckpt = load_checkpoint(path)
            card_path, _ = export(model, ckpt, Path(tmp), f"c{i}")
            quantize_face.main([str(card_path), "--data", data, "--check", "16"])
            card = load_card(Path(tmp) / f"c{i}-int8.json")
            sessions.append((ort_session(card.path), card.input_name, fer_tensors(card, faces)))
        times: list[list[float]] = [[] for _ in paths]
        for _ in range(rounds):
            for row, (session, name, x) in zip(times, sessions):
                for j in range(runs):
                    t0 = time.perf_counter()
                    session.run(None, {name: x[j % len(x)][None]})
                    row.append(time.perf_counter() - t0)
    return [round(float(np.median(row)) * 1e3, 3) for row in times]


def teacher_frontier(root: Path, labels: np.ndarray, majority: np.ndarray) -> list[dict]:
    """The teachers' PublicTest accuracy and FER+ agreement (image + mirror) for FER+ weights 0, 0.1, ... 1."""
    fer = np.load(root / "fer2013" / "fer2013.npz")
    rows = np.flatnonzero(fer["usage"] == FER_USAGE["PublicTest"])
    with np.load(root / TEACHERS_FILE) as npz:
        where = {int(r): i for i, r in enumerate(npz["fer2013_index"])}
        take = np.array([where[int(r)] for r in rows])
        fer_logits, ferplus_logits = npz["fer_logits"][take], npz["ferplus_logits"][take]
    frontier = []
    for weight in np.round(np.linspace(0, 1, 11), 1):
        pred = ensemble_probs(fer_logits, ferplus_logits, 1.0, float(weight)).mean(1).argmax(1)
        frontier.append({"ferplus_weight": float(weight), "publictest_acc": float(np.mean(pred == labels)),
                         "publictest_ferplus_agreement": agreement(pred, majority)})
    return frontier


def plot(path: Path, rows: list[dict], frontier: list[dict]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 5))
    ax.plot([f["publictest_ferplus_agreement"] for f in frontier], [f["publictest_acc"] for f in frontier], "-o",
            color="grey", label="teacher ensemble, FER+ weight 0 ... 1")
    for f in frontier[::2]:
        ax.annotate(f"{f['ferplus_weight']:.1f}", (f["publictest_ferplus_agreement"], f["publictest_acc"]),
                    textcoords="offset points", xytext=(4, 4), fontsize=8, color="grey")
    markers = {"edge": "o", "edge28": "s", "edge_deep": "^", "edge32": "D"}
    for r in rows:
        ax.plot(r["publictest_ferplus_agreement_flip"], r["publictest_acc_flip"], markers.get(r["arch"], "x"),
                linestyle="none", label=f"{r['run']} ({r['int8_ms_per_face_1thread']:.2f} ms int8)")
    ax.set_xlabel("agreement with the FER+ crowd majority (PublicTest)")
    ax.set_ylabel("FER-2013 accuracy (PublicTest, mirror-averaged)")
    ax.set_title("Students and the teachers' trade-off between FER-2013 labels and FER+ votes")
    ax.grid(alpha=0.3), ax.legend(loc="lower left", fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoints", nargs="+", type=Path, help="best.pt files of the candidate runs")
    p.add_argument("--data", help="data directory (default: $EDGEEMO_DATA or ../shared/data)")
    p.add_argument("--out", type=Path, required=True, help="result JSON; the plot goes beside it (.png)")
    p.add_argument("--rounds", type=int, default=5, help="latency rounds (each candidate timed once per round)")
    p.add_argument("--runs", type=int, default=200, help="timed runs per candidate and round")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    root = data_root(args.data)
    images, labels = load_fer(root, "PublicTest")
    majority = ferplus_majority(root, "PublicTest")
    rows = [accuracy_row(path, images, labels, majority) for path in args.checkpoints]
    for row, ms in zip(rows, int8_latency(args.checkpoints, str(root), images[:200], args.rounds, args.runs)):
        row["int8_ms_per_face_1thread"] = ms
    frontier = teacher_frontier(root, labels, majority)
    result = {"command": "python -m tools.eval.face_candidates " + " ".join(map(str, args.checkpoints))
              + f" --out {args.out}", "cpu": cpu_name(), "load_avg_1min": round(os.getloadavg()[0], 2),
              "candidates": rows, "teacher_frontier": frontier}
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    plot(args.out.with_suffix(".png"), rows, frontier)
    for r in rows:
        print(f"{r['run']:26s} {r['arch']:10s} {r['parameters'] / 1e6:.2f} M {r['macs'] / 1e6:5.1f} M MACs  "
              f"PublicTest {r['publictest_acc']:.4f} flip {r['publictest_acc_flip']:.4f}  "
              f"FER+ {r['publictest_ferplus_agreement_flip']:.4f}  int8 {r['int8_ms_per_face_1thread']:.3f} ms")
    print(f"wrote {args.out} and {args.out.with_suffix('.png')}")


if __name__ == "__main__":
    main()
