"""Teachers' flip-averaged logits on FER-2013 Training, for offline distillation on CPU.

    python -m tools.train.soft_targets runs/gpu/vgg/best.pt runs/edge-gpu-ft3/best.pt --out runs/targets.npz

Online distillation runs every teacher on every augmented batch, which on two CPU cores makes a
VGG teacher nine times the cost of the edge student. Here each teacher sees each Training face
once (and its mirror image); ``train_face.py --targets`` then trains against them while the
student sees augmented faces. The teachers' PublicTest accuracy, alone and together, is printed
so that the ensemble is chosen on the selection split; PrivateTest is never looked at.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from tools.common.datasets import data_root, load_fer
from tools.train.face import load_teachers, predict, teacher_probs


def flip_logits(model: torch.nn.Module, images: np.ndarray, batch: int = 512) -> np.ndarray:
    """Mean of the logits of each face and of its mirror image, float32 [N, classes]."""
    device = next(model.parameters()).device.type
    chunk = 20 * batch  # a progress line per chunk: a VGG teacher takes minutes over Training on CPU
    out = []
    started = time.time()
    for start in range(0, len(images), chunk):
        z, z_flip = predict(model, torch.from_numpy(images[start:start + chunk]), device, batch)
        out.append(((z + z_flip) / 2).numpy())
        print(f"  {min(start + chunk, len(images))}/{len(images)} faces, {time.time() - started:.0f} s", flush=True)
    return np.concatenate(out).astype(np.float32)


def ensemble_accuracy(logits: np.ndarray, labels: np.ndarray, temp: float) -> float:
    """Accuracy of the mean softened probabilities over teachers (axis 0), as train_face uses them."""
    return float((teacher_probs(torch.from_numpy(logits), temp).argmax(-1).numpy() == labels).mean())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("teachers", type=Path, nargs="+", help="train_face checkpoints")
    p.add_argument("--data", help="data directory (default: $EDGEEMO_DATA or ../shared/data)")
    p.add_argument("--out", type=Path, required=True, help="npz with 'logits' [teachers, N, 7] and 'teachers'")
    p.add_argument("--temp", type=float, default=3.0, help="temperature for the printed ensemble accuracy")
    args = p.parse_args()
    root = data_root(args.data)
    train_x, _ = load_fer(root, "Training")
    val_x, val_y = load_fer(root, "PublicTest")

    train_logits, val_logits = [], []
    for path, model in zip(args.teachers, load_teachers(args.teachers, "cuda" if torch.cuda.is_available() else "cpu")):
        val_logits.append(flip_logits(model, val_x))
        print(f"{path}: PublicTest flip-averaged {(val_logits[-1].argmax(1) == val_y).mean():.4f}", flush=True)
        train_logits.append(flip_logits(model, train_x))
    val_stack = np.stack(val_logits)
    print(f"ensemble of {len(args.teachers)} at T={args.temp}: PublicTest "
          f"{ensemble_accuracy(val_stack, val_y, args.temp):.4f}", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.out, logits=np.stack(train_logits), val_logits=val_stack,
                        teachers=np.array([str(t) for t in args.teachers]))
    print(f"wrote {args.out}", flush=True)


if __name__ == "__main__":
    main()
