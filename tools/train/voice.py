"""Train the voice-emotion net on RAVDESS speech, speaker-independently.

    python -m tools.train.voice --folds 0-5          # 6-fold CV -> runs/voice/cv_report.{json,md,png}
    python -m tools.train.voice --fold 2             # one fold: actors 09-12 held out
    python -m tools.train.voice --fold all           # shipped model: every actor except 01 and 04

Fold K holds out actors 4K+1 .. 4K+4 for test. ``--fold all`` trains on all actors except 01 and 04
(their voices are in the daemon's sample video) for the same fixed number of epochs as the CV runs:
no epoch or checkpoint is ever picked on test actors, the CV numbers are those of the last epoch.
Actors 01 and 04 are reported for the shipped model as a sanity check only.

The model is a small 1-D CNN over the [T, F] features of edgeemo.voice.features (F channels,
convolution over time), with mean+std pooling over time so that it takes any length: training
uses random 3 s crops, testing the whole clip. Augmentation: noisy / gain-changed copies of every
clip (features precomputed once and cached), speed (time stretch) and vocal-tract-length
(mel-axis stretch, log-mel only) perturbation, SpecAugment time/frequency masks.

Resumable: every epoch writes ``<run>/last.pt``; the same command continues from it, and finished
folds (``result.json``) are skipped. Curves: ``<run>/history.csv`` and ``curves.png``.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import itertools
import json
import math
import os
import random
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tools.common.datasets import REPO, data_root, load_ravdess
from tools.common.noise import room_copy

from edgeemo.voice.features import AudioFrontEnd, normalise

LABELS8 = ("neutral", "calm", "happy", "sad", "angry", "fearful", "disgust", "surprised")
FOLD_TO_FACE = {"neutral": "neutral", "calm": "neutral", "happy": "happy", "sad": "sad", "angry": "angry",
                "fearful": "fear", "disgust": "disgust", "surprised": "surprise"}
LABELS7 = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")  # edgeemo.LABELS
FOLD_MATRIX = np.array([[LABELS7.index(FOLD_TO_FACE[name]) == j for j in range(7)] for name in LABELS8], np.float64)
FOLDS = [tuple(range(4 * k + 1, 4 * k + 5)) for k in range(6)]
SHIPPED_EXCLUDED = (1, 4)
AUGMENTATION = "rooms-1"  # tools.common.noise.room_copy; bump when it changes so caches rebuild


# --- model ------------------------------------------------------------------------------------------


class Block(nn.Module):
    """Two k=3 convolutions over time with a residual connection, then max-pool by 2."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv1d(c_in, c_out, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm1d(c_out)
        self.conv2 = nn.Conv1d(c_out, c_out, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm1d(c_out)
        self.skip = nn.Identity() if c_in == c_out else nn.Sequential(
            nn.Conv1d(c_in, c_out, 1, bias=False), nn.BatchNorm1d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.bn1(self.conv1(x)))
        y = F.relu(self.bn2(self.conv2(y)) + self.skip(x))
        return F.max_pool1d(y, 2, ceil_mode=True)


class VoiceNet(nn.Module):
    """[N, T, F] features -> [N, classes] logits, any T >= 16 (3 s = 299 frames at 10 ms).

    Convolving over time with the F coefficients as channels (as keyword-spotting nets do) costs
    ~10x less than a 2-D CNN over the spectrogram; mean+std pooling over time makes the net take
    whole clips and fixed windows alike.
    """

    def __init__(self, n_features: int, n_classes: int = 8, widths: tuple[int, ...] = (64, 64, 96, 128),
                 dropout: float = 0.3) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv1d(n_features, widths[0], 5, stride=2, padding=2, bias=False),
                                  nn.BatchNorm1d(widths[0]), nn.ReLU())
        self.blocks = nn.Sequential(*[Block(a, b) for a, b in itertools.pairwise(widths)])
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(2 * widths[-1], n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.blocks(self.stem(x.transpose(1, 2)))
        mean = h.mean(dim=2)
        std = torch.sqrt(h.var(dim=2, unbiased=False) + 1e-5)
        return self.head(self.dropout(torch.cat([mean, std], dim=1)))


class Ensemble(nn.Module):
    """Several nets trained apart, their logits averaged: one graph for the daemon, one front end."""

    def __init__(self, members: list[VoiceNet]) -> None:
        super().__init__()
        self.members = nn.ModuleList(members)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([m(x) for m in self.members]).mean(dim=0)


def build_model(config: dict) -> VoiceNet | Ensemble:
    """The net a checkpoint's config describes: one VoiceNet, or an Ensemble of them ("members")."""
    if "members" in config:  # tools.train.voice_ensemble
        return Ensemble([build_model(member) for member in config["members"]])
    return VoiceNet(config["n_features"], len(config["labels"]), tuple(config["widths"]), config["dropout"])


def count_macs(model: VoiceNet | Ensemble, frames: int) -> int:
    """Multiply-accumulates of the convolutions and the head for one window of ``frames`` frames."""
    if isinstance(model, Ensemble):
        return sum(count_macs(m, frames) for m in model.members)
    macs, hooks = [0], []

    def conv_hook(module: nn.Conv1d, _inp: tuple, out: torch.Tensor) -> None:
        macs[0] += out.numel() * module.in_channels * module.kernel_size[0] // module.groups

    for m in model.modules():
        if isinstance(m, nn.Conv1d):
            hooks.append(m.register_forward_hook(conv_hook))
    model.eval()
    with torch.no_grad():
        model(torch.zeros(1, frames, model.stem[0].in_channels))
    for h in hooks:
        h.remove()
    return macs[0] + model.head.in_features * model.head.out_features


# --- data ---------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--fold", help="0..5 (hold out actors 4K+1..4K+4) or 'all' (the shipped model)")
    which.add_argument("--folds", help="run these folds in turn and write the CV report, e.g. 0-5")
    p.add_argument("--data", help="data directory (default: $EDGEEMO_DATA or ../shared/data)")
    p.add_argument("--out", type=Path, default=REPO / "runs" / "voice", help="runs folder (default runs/voice)")
    p.add_argument("--epochs", type=int, default=35)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--wd", type=float, default=0.05)
    p.add_argument("--label-smoothing", type=float, default=0.1)
    p.add_argument("--dropout", type=float, default=0.3)
    p.add_argument("--widths", default="64,64,96,128", help="channels of the stem and each block")
    p.add_argument("--window-s", type=float, default=3.0, help="training crop length")
    p.add_argument("--noise-copies", type=int, default=4, help="room copies per clip (noise, babble, tones, reverb, gain)")
    p.add_argument("--p-clean", type=float, default=0.3, help="share of training crops taken from the clean clip")
    p.add_argument("--features", choices=("logmel", "mfcc"), default="logmel")
    p.add_argument("--n-filters", type=int, default=40)
    p.add_argument("--n-mfcc", type=int, default=13)
    p.add_argument("--deltas", action="store_true", help="append delta and delta-delta")
    p.add_argument("--norm", choices=("utterance-cmvn", "utterance-cmn", "none"), default="utterance-cmvn")
    p.add_argument("--eval-every", type=int, default=5, help="test (and plot) every N epochs and at the end")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--vad-cut", action="store_true",
                   help="train and test on each clip's longest speech segment, found as `edgeemo detect` finds "
                        "them (at voice.vad_threshold_db), crops as long as the batch's shortest speech allows")
    p.add_argument("--p-cut", type=float, default=0.0,
                   help="share of training batches cut to the speech as --vad-cut cuts it, the rest whole-clip "
                        "crops; testing stays on whole clips (the cut speech's reading is reported beside it)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (small net: 1 is near best)")
    return p.parse_args(argv)


def front_end(args: argparse.Namespace) -> AudioFrontEnd:
    return AudioFrontEnd(kind=args.features, n_filters=args.n_filters, n_mfcc=args.n_mfcc,
                         use_deltas=args.deltas, normalisation=args.norm)


def babble_pools(data: dict) -> list[list[int]]:
    """Per actor, the clips whose voices may babble behind that actor's clips in training.

    The other actors of the same 4-actor CV group: whichever fold is trained, a training clip's
    babble then comes from training actors only (a group is held out whole). Actors 01 and 04 are
    never babble, so the shipped model has not heard their voices at all.
    """
    speakers = data["speakers"]
    pools = [[] for _ in range(25)]
    for actor in range(1, 25):
        group = FOLDS[(actor - 1) // 4]
        others = [a for a in group if a != actor and a not in SHIPPED_EXCLUDED]
        pools[actor] = np.flatnonzero(np.isin(speakers, others)).tolist()
    return pools


def feature_cache(data: dict, front: AudioFrontEnd, copies: int, folder: Path, seed: int = 1234) -> list[list]:
    """Raw features of every clip, clean (copy 0) and ``copies`` room copies (tools.common.noise.room_copy).

    Features are computed once per front-end setting instead of per epoch; the cache key is the
    front-end card, the copy count, the seed and the augmentation's version, so a changed setting
    rebuilds. Stored as float16 to keep the cache small. Returns ``feats[copy][clip] -> [T, F] float32``.
    """
    key = hashlib.sha256(json.dumps([front.to_card(), copies, seed, AUGMENTATION], sort_keys=True).encode()).hexdigest()[:12]
    path = folder / f"features-{key}.npz"
    offsets = data["offsets"]
    n = len(offsets) - 1
    if path.exists():
        cached = np.load(path)
        flat, starts = cached["feats"], cached["starts"]
    else:
        rng = np.random.default_rng(seed)
        clips = [data["audio"][offsets[i]:offsets[i + 1]].astype(np.float32) / 32768.0 for i in range(n)]
        pools = babble_pools(data)
        parts = []
        t0 = time.time()
        for copy in range(copies + 1):
            for i in range(n):
                clip = clips[i]
                if copy:
                    clip = room_copy(clip, [clips[k] for k in pools[data["speakers"][i]]], rng)
                parts.append(front.raw_features(clip).astype(np.float16))
            print(f"features: copy {copy} done, {time.time() - t0:.0f} s", flush=True)
        starts = np.concatenate([[0], np.cumsum([len(p) for p in parts])])
        flat = np.concatenate(parts)
        folder.mkdir(parents=True, exist_ok=True)
        np.savez(path.with_suffix(".tmp.npz"), feats=flat, starts=starts)
        path.with_suffix(".tmp.npz").replace(path)
        print(f"features: {len(parts)} clips x copies in {time.time() - t0:.1f} s -> {path}", flush=True)
    return [[torch.from_numpy(flat[starts[c * n + i]:starts[c * n + i + 1]].astype(np.float32)) for i in range(n)]
            for c in range(copies + 1)]


def speech_cut(data: dict, front: AudioFrontEnd, feats: list[list[torch.Tensor]]) -> list[list[torch.Tensor]]:
    """Every copy of every clip cut to the clean clip's longest speech segment, found as `edgeemo detect`
    finds it (edgeemo.voice.features.speech_segments at the default voice.vad_threshold_db). The room
    copies are sample-aligned with the clean clip, so one cut serves all of them."""
    from edgeemo.config.schema import VoiceConfig
    from edgeemo.voice.features import speech_segments

    offsets, sr = data["offsets"], front.sample_rate
    cuts = []
    for i in range(len(offsets) - 1):
        clip = data["audio"][offsets[i]:offsets[i + 1]].astype(np.float32) / 32768.0
        segments = speech_segments(clip, sr, threshold_db=VoiceConfig().vad_threshold_db)
        start, end = max(segments, key=lambda s: s[1] - s[0]) if segments else (0.0, len(clip) / sr)
        cuts.append(slice(int(start / front.hop_s), max(int(start / front.hop_s) + 1, round(end / front.hop_s))))
    lengths = np.array([c.stop - c.start for c in cuts]) * front.hop_s
    print(f"speech cut: {len(cuts)} clips, {lengths.mean():.2f} s on average ({lengths.min():.2f}-{lengths.max():.2f})",
          flush=True)
    return [[f[cut] for f, cut in zip(copy, cuts)] for copy in feats]


def split(speakers: np.ndarray, fold: str) -> tuple[np.ndarray, np.ndarray]:
    """Train and test clip indices of one fold ('0'..'5' or 'all')."""
    test_actors = SHIPPED_EXCLUDED if fold == "all" else FOLDS[int(fold)]
    test = np.isin(speakers, test_actors)
    return np.flatnonzero(~test), np.flatnonzero(test)


# --- augmentation ---------------------------------------------------------------------------------------


def crop_batch(feats: list[list[torch.Tensor]], idx: np.ndarray, frames: int, gen: torch.Generator,
               p_clean: float = 0.5) -> torch.Tensor:
    """Random crops [N, frames, F] of random copies (clean with probability ``p_clean``).

    Clips shorter than ``frames`` are edge-padded at a random side (they are short by a few frames).
    """
    out = []
    copies = len(feats)
    for i in idx:  # one iteration per clip in the batch
        copy = 0 if copies == 1 or torch.rand(1, generator=gen).item() < p_clean else \
            int(torch.randint(1, copies, (1,), generator=gen))
        f = feats[copy][i]
        t = len(f)
        if t >= frames:
            start = int(torch.randint(0, t - frames + 1, (1,), generator=gen))
            out.append(f[start:start + frames])
        else:
            left = int(torch.randint(0, frames - t + 1, (1,), generator=gen))
            out.append(F.pad(f.T.unsqueeze(0), (left, frames - t - left), mode="replicate")[0].T)
    return torch.stack(out)


def warp(x: torch.Tensor, frames: int, gen: torch.Generator, speed: float, vtlp: float,
         warp_freq: bool) -> torch.Tensor:
    """Speed (time axis scaled by 1 +- speed) and VTLP (mel axis by 1 +- vtlp) in one resampling.

    ``x`` [N, T0, F] crops, T0 >= frames * (1 + speed), become [N, frames, F]: output frame j reads
    input frame j * s, output band b reads input band b / a (both anchored at 0), bilinearly.
    """
    n, t0, f = x.shape
    s = 1 + (torch.rand(n, generator=gen) * 2 - 1) * speed          # > 1: faster speech
    a = 1 + (torch.rand(n, generator=gen) * 2 - 1) * (vtlp if warp_freq else 0.0)
    pos_t = torch.arange(frames, dtype=torch.float32).view(1, 1, frames) * s.view(n, 1, 1) / (t0 - 1)
    pos_f = torch.arange(f, dtype=torch.float32).view(1, f, 1) / a.view(n, 1, 1) / (f - 1)
    grid = torch.stack([(pos_t * 2 - 1).expand(n, f, frames), (pos_f * 2 - 1).expand(n, f, frames)], dim=3)
    y = F.grid_sample(x.transpose(1, 2).unsqueeze(1), grid, mode="bilinear", padding_mode="border",
                      align_corners=True)
    return y[:, 0].transpose(1, 2)


def torch_normalise(x: torch.Tensor, how: str) -> torch.Tensor:
    """edgeemo.voice.features.normalise for a batch [N, T, F]."""
    if how == "none":
        return x
    x = x - x.mean(dim=1, keepdim=True)
    return x if how == "utterance-cmn" else x / torch.sqrt(x.var(dim=1, unbiased=False, keepdim=True) + 1e-5)


def stripes(n: int, length: int, max_width: int, count: int, gen: torch.Generator) -> torch.Tensor:
    """[n, length] bool: ``count`` random stripes of width 0..max_width per example."""
    hit = torch.zeros(n, length, dtype=torch.bool)
    pos = torch.arange(length).view(1, length)
    for _ in range(count):
        width = torch.randint(0, max_width + 1, (n, 1), generator=gen)
        start = (torch.rand(n, 1, generator=gen) * (length - width + 1)).long()
        hit |= (pos >= start) & (pos < start + width)
    return hit


def spec_augment(x: torch.Tensor, gen: torch.Generator, time_masks: int = 2, max_t: int = 25,
                 freq_masks: int = 1, max_f: int = 5) -> torch.Tensor:
    """SpecAugment: zero (= the normalised mean) random time and feature stripes, per example."""
    n, t, f = x.shape
    drop = stripes(n, t, max_t, time_masks, gen).view(n, t, 1) | stripes(n, f, max_f, freq_masks, gen).view(n, 1, f)
    return x.masked_fill(drop, 0.0)


def training_batch(feats: list[list[torch.Tensor]], idx: np.ndarray, frames: int, gen: torch.Generator,
                   front: AudioFrontEnd, p_clean: float, speed: float = 0.1, vtlp: float = 0.1,
                   fit_shortest: bool = False) -> torch.Tensor:
    """Augmented, normalised crops [N, frames, F]; ``fit_shortest``: no longer than the batch's shortest
    clip allows (no padding), so speech cut from its silence is not padded back out."""
    if fit_shortest:
        shortest = min(len(feats[0][i]) for i in idx)
        frames = max(16, min(frames, int(shortest / (1 + speed)) - 1))
    x = crop_batch(feats, idx, math.ceil(frames * (1 + speed)) + 1, gen, p_clean)
    x = warp(x, frames, gen, speed, vtlp, warp_freq=front.kind == "logmel")
    return spec_augment(torch_normalise(x, front.normalisation), gen)


# --- evaluation -----------------------------------------------------------------------------------------


@torch.no_grad()
def predict_clips(model: nn.Module, feats: list[torch.Tensor], idx: np.ndarray, how: str) -> np.ndarray:
    """Logits [N, 8] of whole clips, one at a time (lengths differ; pooling makes any length fine)."""
    model.eval()
    return np.stack([model(torch.from_numpy(normalise(feats[i].numpy(), how))[None])[0].numpy() for i in idx])


def confusion(y_true: np.ndarray, y_pred: np.ndarray, n: int) -> np.ndarray:
    cm = np.zeros((n, n), np.int64)
    np.add.at(cm, (y_true, y_pred), 1)
    return cm


def macro_f1(cm: np.ndarray) -> float:
    tp = np.diag(cm).astype(float)
    denom = cm.sum(0) + cm.sum(1)
    f1 = np.where(denom > 0, 2 * tp / np.maximum(denom, 1), 0.0)
    return float(f1[cm.sum(1) > 0].mean())


def fold7(labels8: np.ndarray) -> np.ndarray:
    """RAVDESS label indices -> edgeemo.LABELS indices (calm -> neutral, fearful -> fear, ...)."""
    table = np.array([LABELS7.index(FOLD_TO_FACE[name]) for name in LABELS8])
    return table[labels8]


def metrics(logits: np.ndarray, y: np.ndarray) -> dict:
    pred = logits.argmax(1)
    cm8 = confusion(y, pred, 8)
    cm7 = confusion(fold7(y), fold7(pred), 7)
    return {"acc8": float(np.trace(cm8) / cm8.sum()), "acc7": float(np.trace(cm7) / cm7.sum()),
            "f1_8": macro_f1(cm8), "f1_7": macro_f1(cm7), "confusion8": cm8.tolist(), "confusion7": cm7.tolist()}


# --- training -------------------------------------------------------------------------------------------


def lr_at(step: int, total: int, warmup: int, base: float) -> float:
    if step < warmup:
        return base * (step + 1) / warmup
    return base * 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))


def model_config(args: argparse.Namespace, front: AudioFrontEnd) -> dict:
    return {"n_features": front.n_features, "labels": list(LABELS8), "widths": [int(w) for w in args.widths.split(",")],
            "dropout": args.dropout}


def was_tested(row: dict) -> bool:
    """History rows of untested epochs hold NaN (null once in result.json)."""
    return row["test_acc8"] is not None and not math.isnan(row["test_acc8"])


def save_curves(run: Path, history: list[dict], test_name: str) -> None:
    with open(run / "history.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(history[0]))
        writer.writeheader()
        writer.writerows(history)
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [h["epoch"] for h in history]
    tested = [h for h in history if was_tested(h)]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
    ax_loss.plot(epochs, [h["train_loss"] for h in history], label="train (augmented)")
    ax_loss.plot([h["epoch"] for h in tested], [h["test_loss"] for h in tested], "o-", label=test_name)
    ax_loss.set_xlabel("epoch"), ax_loss.set_ylabel("cross-entropy"), ax_loss.legend()
    ax_acc.plot(epochs, [h["train_acc"] for h in history], label="train (augmented)")
    ax_acc.plot([h["epoch"] for h in tested], [h["test_acc8"] for h in tested], "o-", label=f"{test_name}, 8 classes")
    ax_acc.plot([h["epoch"] for h in tested], [h["test_acc7"] for h in tested], "o-", label=f"{test_name}, 7 folded")
    ax_acc.set_xlabel("epoch"), ax_acc.set_ylabel("accuracy"), ax_acc.legend()
    fig.suptitle(run.name)
    fig.tight_layout()
    fig.savefig(run / "curves.png", dpi=100)
    plt.close(fig)


def train_fold(args: argparse.Namespace, fold: str, data: dict, feats: list[list[torch.Tensor]],
               cut: list[list[torch.Tensor]] | None = None) -> dict:
    """Train one fold (or 'all') to the last epoch; return its result (also ``<run>/result.json``).

    ``cut``: the clips cut to their speech (speech_cut), for the --p-cut share of the batches.
    """
    run = args.out / ("all" if fold == "all" else f"fold{fold}")
    run.mkdir(parents=True, exist_ok=True)
    if (run / "result.json").exists():
        result = json.loads((run / "result.json").read_text())
        if result["epochs"] == args.epochs:
            print(f"{run}: done already (acc8 {result['test']['acc8']:.4f})", flush=True)
            return result
    front = front_end(args)
    config = model_config(args, front)
    train_idx, test_idx = split(data["speakers"], fold)
    y = torch.from_numpy(data["labels"].astype(np.int64))
    test_name = "actors 01+04 (sanity only)" if fold == "all" else f"test actors {FOLDS[int(fold)]}"

    seed = args.seed + (100 if fold == "all" else int(fold))
    random.seed(seed), np.random.seed(seed), torch.manual_seed(seed)
    model = build_model(config)
    frames = front.frames(int(args.window_s * front.sample_rate))
    decay = [p for p in model.parameters() if p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.ndim <= 1]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": args.wd}, {"params": no_decay, "weight_decay": 0}],
                            lr=args.lr)
    gen = torch.Generator().manual_seed(seed)
    steps = len(train_idx) // args.batch
    total, warmup = args.epochs * steps, 2 * steps
    history: list[dict] = []
    start_epoch = 0
    state = {"config": config, "audio": front.to_card(), "args": {k: str(v) for k, v in vars(args).items()},
             "command": "python -m tools.train.voice " + " ".join(sys.argv[1:]),
             "fold": fold, "train_actors": sorted(set(data["speakers"][train_idx].tolist()))}
    if (run / "last.pt").exists():
        ckpt = torch.load(run / "last.pt", weights_only=False)
        if ckpt["config"] != config or ckpt["audio"] != state["audio"]:
            raise SystemExit(f"{run}/last.pt was trained with other settings: use another --out or delete it")
        model.load_state_dict(ckpt["model"]), opt.load_state_dict(ckpt["opt"])
        gen.set_state(ckpt["gen"]), torch.set_rng_state(ckpt["torch_rng"])
        history, start_epoch = ckpt["history"], ckpt["epoch"]
        print(f"resumed {run} at epoch {start_epoch}", flush=True)
    print(f"{run.name}: {len(train_idx)} train / {len(test_idx)} test clips, "
          f"{sum(p.numel() for p in model.parameters()) / 1e3:.0f} k parameters, "
          f"{count_macs(model, frames) / 1e6:.1f} M MACs per {args.window_s:g} s window", flush=True)

    for epoch in range(start_epoch, args.epochs):
        model.train()
        t0 = time.time()
        order = train_idx[torch.randperm(len(train_idx), generator=gen).numpy()]
        loss_sum = correct = seen = 0
        for i in range(steps):
            for group in opt.param_groups:
                group["lr"] = lr_at(epoch * steps + i, total, warmup, args.lr)
            idx = order[i * args.batch:(i + 1) * args.batch]
            on_cut = cut is not None and (args.vad_cut or torch.rand(1, generator=gen).item() < args.p_cut)
            x = training_batch(cut if on_cut else feats, idx, frames, gen, front, args.p_clean, fit_shortest=on_cut)
            target = y[idx]
            logits = model(x)
            loss = F.cross_entropy(logits, target, label_smoothing=args.label_smoothing)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            loss_sum += loss.item() * len(idx)
            correct += (logits.argmax(1) == target).sum().item()
            seen += len(idx)
        row = {"epoch": epoch + 1, "lr": opt.param_groups[0]["lr"], "train_loss": loss_sum / seen,
               "train_acc": correct / seen, "test_loss": math.nan, "test_acc8": math.nan, "test_acc7": math.nan,
               "test_f1_8": math.nan, "seconds": time.time() - t0}
        tested = (epoch + 1) % args.eval_every == 0 or epoch + 1 == args.epochs
        if tested:  # testing does not touch the training state: how often is only a matter of CPU time
            test_logits = predict_clips(model, feats[0], test_idx, front.normalisation)
            m = metrics(test_logits, data["labels"][test_idx])
            row |= {"test_loss": F.cross_entropy(torch.from_numpy(test_logits), y[test_idx]).item(),
                    "test_acc8": m["acc8"], "test_acc7": m["acc7"], "test_f1_8": m["f1_8"]}
        history.append(row)
        torch.save({**state, "model": model.state_dict(), "opt": opt.state_dict(), "gen": gen.get_state(),
                    "torch_rng": torch.get_rng_state(), "history": history, "epoch": epoch + 1}, run / "last.pt.tmp")
        (run / "last.pt.tmp").replace(run / "last.pt")
        line = f"{run.name} epoch {epoch + 1}/{args.epochs} train loss {row['train_loss']:.3f} acc {row['train_acc']:.3f}"
        if tested:
            save_curves(run, history, test_name)
            line += (f" | {test_name}: loss {row['test_loss']:.3f} acc8 {m['acc8']:.3f} acc7 {m['acc7']:.3f} "
                     f"F1 {m['f1_8']:.3f}")
        print(f"{line} | {row['seconds']:.1f} s", flush=True)

    test_logits = predict_clips(model, feats[0], test_idx, front.normalisation)
    m = metrics(test_logits, data["labels"][test_idx])
    m["logits"] = test_logits.round(4).tolist()
    m["labels"] = data["labels"][test_idx].tolist()
    result = {"fold": fold, "epochs": args.epochs, "test_actors": sorted(set(data["speakers"][test_idx].tolist())),
              "test_clips": test_idx.tolist(), "test": m, "history": history}
    if cut is not None and not args.vad_cut:  # what the net makes of the test clips' speech alone
        m_cut = metrics(predict_clips(model, cut[0], test_idx, front.normalisation), data["labels"][test_idx])
        result["test_cut_speech"] = {k: m_cut[k] for k in ("acc8", "acc7", "f1_8", "f1_7")}
        print(f"{run.name}: cut speech of the test clips acc8 {m_cut['acc8']:.3f} acc7 {m_cut['acc7']:.3f}", flush=True)
    torch.save({**state, "model": model.state_dict(), "epoch": args.epochs, "test": {k: m[k] for k in
                ("acc8", "acc7", "f1_8", "f1_7")}}, run / "final.pt")
    (run / "result.json").write_text(json.dumps(result).replace("NaN", "null"))
    return result


# --- CV report ------------------------------------------------------------------------------------------


def plot_confusion(cm: np.ndarray, labels: tuple[str, ...], path: Path, title: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rates = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(7, 6))
    ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    for i in range(len(labels)):
        for j in range(len(labels)):
            ax.text(j, i, f"{rates[i, j]:.2f}\n({cm[i, j]})", ha="center", va="center", fontsize=7,
                    color="white" if rates[i, j] > 0.5 else "black")
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right"), ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted"), ax.set_ylabel("true"), ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_mean_curve(results: list[dict], path: Path) -> dict[int, float]:
    """Test accuracy per epoch, each fold and the mean over folds at the epochs every fold was tested."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curves = [{h["epoch"]: h["test_acc8"] for h in r["history"] if was_tested(h)} for r in results]
    common = sorted(set.intersection(*(set(c) for c in curves)))
    mean = {e: float(np.mean([c[e] for c in curves])) for e in common}
    if not mean:
        return mean
    fig, ax = plt.subplots(figsize=(6, 4))
    for r, c in zip(results, curves):
        ax.plot(list(c), list(c.values()), alpha=0.35, label=f"fold {r['fold']}")
    ax.plot(common, [mean[e] for e in common], "ko-", lw=2, label="mean")
    ax.set_xlabel("epoch"), ax.set_ylabel("test accuracy, 8 classes"), ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return mean


def calibration_report(results: list[dict]) -> dict:
    """The folds' temperature, kept only where it lowers the ECE cross-fitted (each fold scored with a T
    fitted on the others), as tools.eval.voice_calibration decides it; nothing for a single fold."""
    from tools.eval.voice_calibration import cv_figures  # imported here: that module imports this one

    if len(results) < 2:
        return {}
    out = cv_figures([(np.array(r["test"]["logits"], np.float64), np.array(r["test"]["labels"], np.int64))
                      for r in results])
    print(f"temperature {out['temperature']:.3f} ({'kept' if out['temperature_kept'] else 'not kept'}): ECE 8 classes "
          f"{out['ece8_raw']:.3f} -> {out['ece8_calibrated']:.3f} cross-fitted, 7 folded {out['ece7_raw']:.3f} -> "
          f"{out['ece7_calibrated']:.3f}", flush=True)
    return out


def cv_report(out: Path, results: list[dict], epochs: int | str, command: str, audio: dict, config: dict) -> dict:
    """Mean and spread (sample std over folds) of the last-epoch numbers, summed confusion, curves."""
    keys = ("acc8", "acc7", "f1_8", "f1_7")
    table = [{"fold": r["fold"], "test_actors": r["test_actors"], **{k: r["test"][k] for k in keys}} for r in results]
    summary = {f"{k}_{s}": float(f(np.array([t[k] for t in table]))) for k in keys
               for s, f in (("mean", np.mean), ("std", lambda a: a.std(ddof=1) if len(a) > 1 else 0.0))}
    cm8 = np.sum([r["test"]["confusion8"] for r in results], axis=0)
    cm7 = np.sum([r["test"]["confusion7"] for r in results], axis=0)
    plot_confusion(cm8, LABELS8, out / "cv_confusion8.png",
                   f"RAVDESS speaker-independent {len(results)}-fold CV, 8 classes: acc "
                   f"{summary['acc8_mean']:.3f} ± {summary['acc8_std']:.3f}")
    plot_confusion(cm7, LABELS7, out / "cv_confusion7.png",
                   f"RAVDESS CV folded to edgeemo labels: acc {summary['acc7_mean']:.3f} ± {summary['acc7_std']:.3f}")
    mean_curve = plot_mean_curve(results, out / "cv_curves.png")
    summary |= calibration_report(results)
    report = {"folds": table, **summary, "epochs": epochs, "mean_curve_acc8": mean_curve,
              "confusion8": cm8.tolist(), "confusion7": cm7.tolist(), "labels8": list(LABELS8), "labels7": list(LABELS7),
              "std": "sample standard deviation over folds (ddof=1)", "selection": "last epoch, fixed schedule",
              "command": command, "audio": audio, "config": config}
    (out / "cv_report.json").write_text(json.dumps(report, indent=1))
    lines = ["| fold | test actors | acc 8 | acc 7 folded | macro-F1 8 | macro-F1 7 |", "|---|---|---|---|---|---|"]
    lines += [f"| {t['fold']} | {', '.join(f'{a:02d}' for a in t['test_actors'])} | {t['acc8']:.3f} | {t['acc7']:.3f} | "
              f"{t['f1_8']:.3f} | {t['f1_7']:.3f} |" for t in table]
    lines.append("| **mean ± std** | | " + " | ".join(f"**{summary[k + '_mean']:.3f} ± {summary[k + '_std']:.3f}**"
                                                     for k in keys) + " |")
    (out / "cv_report.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines), flush=True)
    if not mean_curve:  # an ensemble's folds: no curve of their own
        return report
    best = max(mean_curve, key=mean_curve.get)
    print(f"mean test curve: last epoch {mean_curve[max(mean_curve)]:.3f}, highest {mean_curve[best]:.3f} at epoch "
          f"{best} (for choosing --epochs of later runs; the report uses the last epoch)", flush=True)
    return report


def parse_folds(spec: str) -> list[str]:
    if "-" in spec:
        lo, hi = spec.split("-")
        return [str(k) for k in range(int(lo), int(hi) + 1)]
    return spec.split(",")


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if not 0 <= args.p_cut <= 1 or not 0 <= args.p_clean <= 1:
        raise SystemExit(f"--p-cut and --p-clean are shares from 0 to 1, got {args.p_cut:g} and {args.p_clean:g}")
    torch.set_num_threads(args.threads)
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    folds = parse_folds(args.folds) if args.folds else [args.fold]
    for fold in folds:
        if fold != "all" and fold not in {str(k) for k in range(6)}:
            raise SystemExit(f"fold must be 0..5 or all, got {fold!r}")
    data = load_ravdess(data_root(args.data))
    front = front_end(args)
    feats = feature_cache(data, front, args.noise_copies, args.out / "cache")
    cut = speech_cut(data, front, feats) if args.vad_cut or args.p_cut > 0 else None
    if args.vad_cut:
        feats = cut
    results = [train_fold(args, fold, data, feats, cut) for fold in folds]
    if args.folds:
        cv_report(args.out, results, args.epochs, "python -m tools.train.voice " + " ".join(sys.argv[1:]),
                  front.to_card(), model_config(args, front))


if __name__ == "__main__":
    main()
