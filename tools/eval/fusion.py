"""Which fusion rule? Compare them on many face + voice pairs of the same emotion.

    python -m tools.eval.fusion [--data DIR] [--voice-runs runs/voice60] [--pairings 20] [--json runs/fusion_rules.json]

No public data set has both a FER-style face and a RAVDESS-style voice of the same moment for many
people (the four audio-visual clips are too few to choose a rule on), so this pairs them the usual
way for late fusion: every RAVDESS clip's *speaker-independent* voice reading (from the cross-validation
fold that held its actor out, `train_voice.py --folds 0-5`) is paired with a random FER-2013
**PublicTest** face of the same label (validation split: choosing a rule is selection, so PrivateTest
stays untouched), read by the shipped face model. Each rule fuses the two readings; accuracy is the
share of pairs whose fused label is right, averaged over `--pairings` random pairings.
The pairs are independent given the label, as a face and a voice are not quite, so this measures
how well a rule combines two noisy, differently calibrated experts, not the exact gain on real video.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
from tools.common.datasets import REPO, data_root, load_fer, load_ravdess
from tools.eval.face import ort_session, predict
from tools.train.voice import FOLDS, build_model, fold7

from edgeemo import LABELS
from edgeemo.tracking.fusion import EPS, fuse
from edgeemo.core.modelcard import load_card
from edgeemo.voice.features import AudioFrontEnd


def confidence(probs: np.ndarray) -> float:
    """1 - entropy / log(K): 1 for a certain distribution, 0 for a flat one."""
    p = np.clip(probs, EPS, 1.0) / np.clip(probs, EPS, 1.0).sum()
    return float(1.0 + (p * np.log(p)).sum() / np.log(len(p)))


def entropy_weighted(face: np.ndarray, voice: np.ndarray) -> np.ndarray:
    """Log-linear with each side's weight further multiplied by its confidence."""
    cf, cv = confidence(face), confidence(voice)
    return fuse(face, voice, cf, cv) if cf + cv > 0 else fuse(face, voice)


def more_confident(face: np.ndarray, voice: np.ndarray) -> np.ndarray:
    return face if confidence(face) >= confidence(voice) else voice


RULES = {
    "face only": lambda f, v: f,
    "voice only": lambda f, v: v,
    "mean of probabilities": lambda f, v: (f + v) / 2,
    "more confident side only": more_confident,
    "log-linear, face 0.3 / voice 0.7": lambda f, v: fuse(f, v, 0.3, 0.7),
    "log-linear, face 0.7 / voice 0.3": lambda f, v: fuse(f, v, 0.7, 0.3),
    "log-linear, weights x confidence (entropy)": entropy_weighted,
    "log-linear, equal weights (the daemon's)": fuse,
}


@torch.no_grad()
def voice_out_of_fold(root: Path, runs: Path) -> tuple[np.ndarray, np.ndarray]:
    """[N,7] speaker-independent voice probabilities of every RAVDESS clip, and their 7-class labels."""
    data = load_ravdess(root)
    offsets = data["offsets"]
    probs = np.zeros((len(offsets) - 1, len(LABELS)), np.float32)
    for k, actors in enumerate(FOLDS):
        state = torch.load(runs / f"fold{k}" / "final.pt", map_location="cpu", weights_only=False)
        model = build_model(state["config"])
        model.load_state_dict(state["model"])
        model.eval()
        front = AudioFrontEnd.from_card(state["audio"])
        fold = np.zeros((len(state["config"]["labels"]), len(LABELS)), np.float32)
        fold[np.arange(fold.shape[0]), fold7(np.arange(fold.shape[0]))] = 1
        for i in np.flatnonzero(np.isin(data["speakers"], actors)):
            clip = data["audio"][offsets[i]:offsets[i + 1]].astype(np.float32) / 32768.0
            logits = model(torch.from_numpy(front.features(clip))[None])[0].numpy().astype(np.float64)
            p = np.exp(logits - logits.max())
            probs[i] = (p / p.sum()) @ fold
        print(f"voice fold {k}: actors {actors} done", file=sys.stderr, flush=True)
    return probs, fold7(data["labels"])


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", help="data directory (default: $EDGEEMO_DATA or ../shared/data)")
    p.add_argument("--voice-runs", type=Path, default=REPO / "runs" / "voice60")
    p.add_argument("--face-card", type=Path, default=REPO / "models" / "edgeemo-face-int8.json")
    p.add_argument("--pairings", type=int, default=20)
    p.add_argument("--json", type=Path)
    args = p.parse_args()
    root = data_root(args.data)

    voice, labels = voice_out_of_fold(root, args.voice_runs)
    card = load_card(args.face_card)
    images, face_labels = load_fer(root, "PublicTest")
    face = predict(ort_session(card.path), card, images, card.flip_margin)  # as the daemon reads them
    print(f"faces: {len(face)} PublicTest images read (mirror pass below margin {card.flip_margin})",
          file=sys.stderr, flush=True)
    by_label = {k: np.flatnonzero(face_labels == k) for k in range(len(LABELS))}

    rng = np.random.default_rng(0)
    right = {name: [] for name in RULES}
    for _ in range(args.pairings):
        partner = np.array([rng.choice(by_label[y]) for y in labels])
        for name, rule in RULES.items():
            fused = np.stack([rule(face[j], voice[i]) for i, j in enumerate(partner)])
            right[name].append(float((fused.argmax(1) == labels).mean()))
    table = {name: {"acc_mean": round(float(np.mean(a)), 4), "acc_std": round(float(np.std(a)), 4)}
             for name, a in right.items()}
    print(f"| rule | accuracy on {len(labels)} face+voice pairs (mean ± sd of {args.pairings} pairings) |")
    print("| --- | --- |")
    for name, r in table.items():
        print(f"| {name} | {100 * r['acc_mean']:.1f} % ± {100 * r['acc_std']:.1f} |")
    if args.json:
        args.json.write_text(json.dumps({"pairs": len(labels), "pairings": args.pairings, "rules": table}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
