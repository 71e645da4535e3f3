"""Train a face-expression net on FER-2013 Training, selecting on PublicTest.

    python -m tools.train.face --arch edge --epochs 60 --out runs/edge

Resumable: every epoch writes ``<out>/last.pt``; running the same command again continues from it.
The best PublicTest epoch is kept as ``<out>/best.pt``. Curves go to ``history.csv`` and ``curves.png``.
CPU by default, CUDA when present (bf16 autocast, augmentation on the GPU). PrivateTest is never
looked at here (tools/eval/face.py reports it).

Distillation: ``--targets`` trains against the teacher ensemble of ``<data>/teachers`` (eight large
nets' logits for every Training face and its mirror image, see tools/train/teachers.py) as well as
the labels: KL at ``--kd-temp`` weighted ``--kd-alpha``, the FER+ teachers mixed in at ``--ferplus-weight``.
``--budget-s S`` fits the epoch count to a time budget (at the second epoch's pace, saving
included), for a GPU lease of fixed length; the count used is stored in the checkpoint's args.
"""

from __future__ import annotations

import argparse
import csv
import itertools
import math
import random
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tools.common.datasets import FER_USAGE, LABELS, data_root, load_fer
from tools.train.face_nets import build, count_macs
from tools.train.teachers import TEACHERS_FILE
from tools.train.teachers import load_targets as load_teacher_targets

# The model card records these; tensor = (pixels / 255 - MEAN) / STD.
MEAN, STD = 0.5, 0.25


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--arch", default="edge")
    p.add_argument("--data", help="data directory (default: $EDGEEMO_DATA or ../shared/data)")
    p.add_argument("--out", type=Path, help="run directory (default: runs/<arch>)")
    p.add_argument("--epochs", type=int, default=60)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--wd", type=float, default=5e-4)
    p.add_argument("--label-smoothing", type=float, default=0.1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: all cores)")
    p.add_argument("--aug", choices=sorted(AUGMENT), default="strong",
                   help="augmentation strength: strong from scratch, light to fine-tune an underfit model")
    p.add_argument("--init", type=Path, help="start from this checkpoint's weights (fine-tuning), not at random")
    p.add_argument("--targets", type=Path, nargs="?", const=Path("DATA") / TEACHERS_FILE,
                   help="distil from the teacher ensemble's logits (default file: <data>/teachers/fer2013_teachers.npz)")
    p.add_argument("--ferplus-weight", type=float, default=0.2, help="weight of the FER+ teachers in the targets")
    p.add_argument("--kd-alpha", type=float, default=0.7, help="weight of the distillation term (1 - it: labels)")
    p.add_argument("--kd-temp", type=float, default=3.0, help="softening temperature of distillation")
    p.add_argument("--budget-s", type=float, help="cap the epochs so that training fits in this many seconds")
    return p.parse_args()


# Ranges of the random transforms: rotation (deg), scale, shift (fraction), contrast, brightness, erasing p.
AUGMENT = {
    "strong": {"rotate": 15, "scale": 0.15, "shift": 0.12, "contrast": 0.3, "brightness": 0.15, "erase": 0.5},
    "light": {"rotate": 10, "scale": 0.1, "shift": 0.08, "contrast": 0.2, "brightness": 0.1, "erase": 0.25},
}


def augment(batch_u8: torch.Tensor, gen: torch.Generator,
            strength: dict = AUGMENT["strong"]) -> tuple[torch.Tensor, torch.Tensor]:
    """Random flip, rotation, scale, shift, brightness/contrast and erasing, on a whole batch at once.

    Returns the batch and which of its faces were mirrored (their teachers' mirror view applies).
    """
    a = strength
    n, dev = batch_u8.shape[0], batch_u8.device
    x = batch_u8.float().unsqueeze(1) / 255.0

    def rand(*shape: int) -> torch.Tensor:
        return torch.rand(*shape, generator=gen, device=dev)

    def uniform(lo: float, hi: float) -> torch.Tensor:
        return rand(n) * (hi - lo) + lo

    angle = uniform(-a["rotate"], a["rotate"]) * math.pi / 180
    scale = uniform(1 - a["scale"], 1 + a["scale"])
    flip = torch.where(rand(n) < 0.5, -1.0, 1.0)
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack([
        torch.stack([cos * flip, -sin, uniform(-a["shift"], a["shift"])], 1),
        torch.stack([sin * flip, cos, uniform(-a["shift"], a["shift"])], 1),
    ], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)

    contrast = uniform(1 - a["contrast"], 1 + a["contrast"]).view(n, 1, 1, 1)
    brightness = uniform(-a["brightness"], a["brightness"]).view(n, 1, 1, 1)
    mean = x.mean(dim=(2, 3), keepdim=True)
    x = ((x - mean) * contrast + mean + brightness).clamp(0, 1)

    # Random erasing: one rectangle of 2-20 % of the area, filled with noise.
    h = w = x.shape[-1]
    area = uniform(0.02, 0.2) * h * w
    aspect = torch.exp(uniform(math.log(0.3), math.log(3.3)))
    eh = (area * aspect).sqrt().clamp(1, h - 1).long()
    ew = (area / aspect).sqrt().clamp(1, w - 1).long()
    top = (rand(n) * (h - eh)).long()
    left = (rand(n) * (w - ew)).long()
    rows = torch.arange(h, device=dev).view(1, h, 1)
    cols = torch.arange(w, device=dev).view(1, 1, w)
    box = ((rows >= top.view(n, 1, 1)) & (rows < (top + eh).view(n, 1, 1))
           & (cols >= left.view(n, 1, 1)) & (cols < (left + ew).view(n, 1, 1)))
    box &= (rand(n) < a["erase"]).view(n, 1, 1)
    x = torch.where(box.unsqueeze(1), rand(*x.shape), x)
    return (x - MEAN) / STD, flip < 0


def normalise(batch_u8: torch.Tensor) -> torch.Tensor:
    return (batch_u8.float().unsqueeze(1) / 255.0 - MEAN) / STD


def autocast(device: str) -> torch.autocast:
    """bf16 on CUDA (about twice the throughput, no loss scaling needed); plain fp32 on CPU."""
    return torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=device == "cuda")


@torch.no_grad()
def predict(model: torch.nn.Module, images: torch.Tensor, device: str,
            batch: int = 512) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits of uint8 faces [N,48,48] and of their mirror images, float32 on the CPU."""
    model.eval()
    logits, logits_flip = [], []
    for start in range(0, len(images), batch):
        x = normalise(images[start:start + batch].to(device))
        with autocast(device):
            logits.append(model(x).float().cpu())
            logits_flip.append(model(torch.flip(x, dims=[3])).float().cpu())
    return torch.cat(logits), torch.cat(logits_flip)


def evaluate(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor, device: str) -> dict:
    if len(images) == 0:  # PublicTest left behind (carry.py --no-public): every epoch counts as the best
        return {"val_loss": math.nan, "val_acc": math.inf, "val_acc_flip": math.nan}
    z, zf = predict(model, images, device)
    loss = F.cross_entropy(z, labels.long()).item()
    acc = (z.argmax(1) == labels).float().mean().item()
    acc_flip = ((z.softmax(1) + zf.softmax(1)).argmax(1) == labels).float().mean().item()
    return {"val_loss": loss, "val_acc": acc, "val_acc_flip": acc_flip}


def load_targets(path: Path, root: Path, temp: float, ferplus_weight: float, device: str) -> torch.Tensor:
    """The teacher ensemble's softened probabilities per Training face and view, [N, 2, classes]."""
    path = root / TEACHERS_FILE if path == Path("DATA") / TEACHERS_FILE else path
    if not path.is_file():
        raise SystemExit(f"{path} not found: --targets names the teachers' logits (see ../shared/data/teachers)")
    fer = np.load(root / "fer2013" / "fer2013.npz")
    training = fer["usage"] == FER_USAGE["Training"]
    rows = fer["rows"] if "rows" in fer.files else np.arange(len(training))  # a carried subset keeps its rows
    targets = load_teacher_targets(path, rows[training], temp, ferplus_weight)
    agreement = (targets.mean(1).argmax(1) == fer["labels"][training]).mean()
    print(f"targets {path}: T={temp}, FER+ weight {ferplus_weight}, Training agreement with labels {agreement:.4f}",
          flush=True)
    return torch.from_numpy(targets).to(device)


def distil_loss(student_logits: torch.Tensor, target: torch.Tensor, temp: float) -> torch.Tensor:
    """KL(teachers' mean softened probabilities || student's), scaled by temp^2 (Hinton et al.)."""
    log_student = student_logits.float().div(temp).log_softmax(1)
    return F.kl_div(log_student, target, reduction="batchmean") * temp * temp


def lr_at(step: int, total: int, warmup: int, base: float) -> float:
    if step < warmup:
        return base * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return base * 0.5 * (1 + math.cos(math.pi * progress))


def save_curves(out: Path, history: list[dict]) -> None:
    with open(out / "history.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(history[0]))
        writer.writeheader()
        writer.writerows(history)
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    epochs = [h["epoch"] for h in history]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
    ax_loss.plot(epochs, [h["train_loss"] for h in history], label="train")
    ax_loss.plot(epochs, [h["val_loss"] for h in history], label="PublicTest")
    ax_loss.set_xlabel("epoch"), ax_loss.set_ylabel("cross-entropy"), ax_loss.legend()
    ax_acc.plot(epochs, [h["train_acc"] for h in history], label="train (augmented)")
    ax_acc.plot(epochs, [h["val_acc"] for h in history], label="PublicTest")
    ax_acc.plot(epochs, [h["val_acc_flip"] for h in history], label="PublicTest, flip-averaged")
    ax_acc.set_xlabel("epoch"), ax_acc.set_ylabel("accuracy"), ax_acc.legend()
    fig.suptitle(out.name)
    fig.tight_layout()
    fig.savefig(out / "curves.png", dpi=100)
    plt.close(fig)


def save_atomic(obj: dict, path: Path) -> None:
    """Write then rename, so that a run killed mid-save (end of a lease, say) keeps its last good file."""
    torch.save(obj, path.with_suffix(".tmp"))
    path.with_suffix(".tmp").replace(path)


def fit_epochs(requested: int, left_s: float, epoch_s: float) -> int:
    """All epochs, when the two done and those that fit the time left at the second one's pace."""
    return max(2, min(requested, 2 + int(left_s / epoch_s)))


def main() -> None:
    args = parse_args()
    out = args.out or Path("runs") / args.arch
    out.mkdir(parents=True, exist_ok=True)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.backends.cudnn.benchmark = True
    root = data_root(args.data)
    # The whole training set lives on the training device: augmentation runs there too.
    train_x, train_y = (torch.from_numpy(a).to(device) for a in load_fer(root, "Training"))
    val_x, val_y = (torch.from_numpy(a) for a in load_fer(root, "PublicTest"))

    random.seed(args.seed), np.random.seed(args.seed), torch.manual_seed(args.seed)
    model = build(args.arch).to(device)
    if args.init:
        model.load_state_dict(torch.load(args.init, map_location=device, weights_only=False)["model"])
        print(f"initialised from {args.init}", flush=True)
    targets = load_targets(args.targets, root, args.kd_temp, args.ferplus_weight, device) if args.targets else None
    params = sum(p.numel() for p in model.parameters())
    print(f"{args.arch}: {params / 1e6:.3f} M parameters, {count_macs(model) / 1e6:.1f} M MACs per face, "
          f"device {device}, {torch.get_num_threads()} threads", flush=True)
    decay = [p for n, p in model.named_parameters() if p.ndim > 1]
    no_decay = [p for n, p in model.named_parameters() if p.ndim <= 1]
    opt = torch.optim.SGD([{"params": decay, "weight_decay": args.wd}, {"params": no_decay, "weight_decay": 0}],
                          lr=args.lr, momentum=0.9, nesterov=True)
    gen = torch.Generator(device=device).manual_seed(args.seed)
    steps_per_epoch = len(train_x) // args.batch
    warmup = steps_per_epoch
    history: list[dict] = []
    start_epoch, best = 0, -1.0
    fit_at = 2 if args.budget_s else None  # the epoch at whose start a budget sets the epoch count

    last = out / "last.pt"
    if last.exists():
        ckpt = torch.load(last, map_location=device, weights_only=False)
        model.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["opt"])
        if ckpt.get("device", "cpu") == device:
            gen.set_state(ckpt["gen"])
        else:
            gen.manual_seed(args.seed + ckpt["epoch"])  # augmentation stream of another device
        torch.set_rng_state(ckpt["torch_rng"])
        history, start_epoch, best = ckpt["history"], ckpt["epoch"], ckpt["best"]
        if args.budget_s and start_epoch > 2:  # the budget already set the schedule: keep it
            args.epochs, fit_at = ckpt["args"]["epochs"], None
        elif args.budget_s:  # fit to the time left, on this process's own second epoch
            fit_at = start_epoch + 2
        print(f"resumed from {last} at epoch {start_epoch}, best PublicTest {best:.4f}", flush=True)

    started = previous_start = time.time()
    for epoch in itertools.count(start_epoch):
        t0 = time.time()
        if epoch == fit_at:  # paced on the whole second epoch (saving included), past warm-up
            args.epochs = fit_epochs(args.epochs, args.budget_s - (t0 - started), t0 - previous_start)
            print(f"budget {args.budget_s:.0f} s at {t0 - previous_start:.1f} s per epoch: {args.epochs} epochs",
                  flush=True)
        if epoch >= args.epochs:
            break
        previous_start = t0
        model.train()
        total_steps = args.epochs * steps_per_epoch
        order = torch.randperm(len(train_x), generator=gen, device=device)
        loss_sum = torch.zeros((), device=device)
        correct = torch.zeros((), device=device, dtype=torch.long)
        seen = 0
        for i in range(steps_per_epoch):
            step = epoch * steps_per_epoch + i
            for group in opt.param_groups:
                group["lr"] = lr_at(step, total_steps, warmup, args.lr)
            idx = order[i * args.batch:(i + 1) * args.batch]
            x, flipped = augment(train_x[idx], gen, AUGMENT[args.aug])
            y = train_y[idx].long()
            with autocast(device):
                logits = model(x)
                loss = F.cross_entropy(logits.float(), y, label_smoothing=args.label_smoothing)
                if targets is not None:  # the mirrored faces learn from the teachers' mirror view
                    target = targets[idx, flipped.long()]
                    loss = (1 - args.kd_alpha) * loss + args.kd_alpha * distil_loss(logits, target, args.kd_temp)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            loss_sum += loss.detach() * len(y)
            correct += (logits.argmax(1) == y).sum()
            seen += len(y)
            if (i + 1) % 50 == 0 and device == "cpu":
                print(f"  epoch {epoch + 1} batch {i + 1}/{steps_per_epoch} loss {loss_sum.item() / seen:.4f} "
                      f"acc {correct.item() / seen:.4f} {seen / (time.time() - t0):.0f} img/s", flush=True)
        row = {"epoch": epoch + 1, "lr": opt.param_groups[0]["lr"], "train_loss": loss_sum.item() / seen,
               "train_acc": correct.item() / seen, **evaluate(model, val_x, val_y, device), "seconds": time.time() - t0}
        history.append(row)
        state = {"arch": args.arch, "labels": LABELS, "mean": MEAN, "std": STD, "size": 48,
                 "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
                 | {"out": str(out)}}
        if row["val_acc"] >= best:
            best = row["val_acc"]
            save_atomic({**state, "model": model.state_dict(), "epoch": epoch + 1, "val": row}, out / "best.pt")
        save_atomic({**state, "model": model.state_dict(), "opt": opt.state_dict(), "gen": gen.get_state(),
                     "device": device, "torch_rng": torch.get_rng_state(), "history": history,
                     "epoch": epoch + 1, "best": best}, last)
        if (epoch + 1) % 10 == 0 or epoch + 1 >= args.epochs:  # plotting costs more than a GPU epoch
            save_curves(out, history)
        print(f"epoch {epoch + 1}/{args.epochs} train loss {row['train_loss']:.4f} acc {row['train_acc']:.4f} | "
              f"PublicTest loss {row['val_loss']:.4f} acc {row['val_acc']:.4f} flip {row['val_acc_flip']:.4f} | "
              f"best {best:.4f} | {row['seconds']:.1f} s", flush=True)


if __name__ == "__main__":
    main()
