"""How much sound around the speech should the voice model hear? Chosen on the CV folds' held-out actors.

    python -m tools.eval.voice_context runs/voice-ens [--json bench/results/voice_context.json]

`runs/voice-ens` is the folder of `python -m tools.train.voice --folds 0-5` (or of
`tools.train.voice_ensemble`, which writes the same folds). Each fold's model reads
its 4 held-out actors' clips the way `edgeemo detect` reads a file: the speech segments its VAD finds
(edgeemo.voice.features.speech_segments at the default voice.vad_threshold_db, segments shorter than
voice.min_speech_s dropped), each segment widened by the candidate context on both sides within the
clip, the readings averaged weighted by the segments' durations. A net trained on 3 s crops of whole
clips (silence included) reads speech cut tight worse than whole clips; the context that reads the
1440 held-out clips best (8 classes; the smaller on a tie) goes into the voice card as ``context_s``
(tools.export.voice reads it from this file) and the daemon and `edgeemo detect` widen what the
model hears by it. The temperature is then fitted on the speech segments read at that context, by
tools.eval.voice_calibration's rule (kept only where, cross-fitted over the folds, it lowers the
ECE): each segment is one reading `edgeemo detect` prints, so the percentages people see are the
ones calibrated. Actors 01 and 04 are among the 1440 clips (fold 0), read by a model that never
trained on them, as in the CV figures; the shipped model is not read here.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from edgeemo.config.schema import VoiceConfig
from edgeemo.voice.classifier import heard
from edgeemo.voice.features import speech_segments
from tools.common.calibration import softmax
from tools.common.datasets import REPO, data_root, load_ravdess
from tools.eval.voice_calibration import calibrate, folds_acc8
from tools.export.voice import clip_audio, load_checkpoint
from tools.train.voice import FOLD_MATRIX, FOLDS, fold7, split

CONTEXTS_S = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.7, 1.0)


@dataclass
class Clip:
    """One held-out clip read as `edgeemo detect` reads it: per context, its speech segments' logits."""
    fold: int
    label: int
    whole: np.ndarray                 # [8] logits of the whole clip
    segments: list[np.ndarray]        # per context: [segments, 8] logits
    durations: np.ndarray             # [segments] seconds of speech each (what detect weights by)

    def reading(self, k: int, temperature: float = 1.0) -> np.ndarray:
        """Context k's probabilities [8]: the segments' weighted by duration; zeros (scored wrong) without
        speech."""
        if not len(self.durations):
            return np.zeros(8)
        return self.durations @ softmax(self.segments[k], temperature) / self.durations.sum()


def read_clip(logits_of, audio: np.ndarray, sr: int, fold: int, label: int) -> Clip:
    """One clip's speech segments, as `edgeemo detect` finds them, read at every context."""
    cfg = VoiceConfig()
    spans = [slice(round(s * sr), round(e * sr)) for s, e in
             speech_segments(audio, sr, threshold_db=cfg.vad_threshold_db) if e - s >= cfg.min_speech_s]
    segments = [np.array([logits_of(audio[heard(span, round(c * sr))]) for span in spans]).reshape(-1, 8)
                for c in CONTEXTS_S]
    return Clip(fold, label, logits_of(audio), segments, np.array([(span.stop - span.start) / sr for span in spans]))


def read_folds(cv_dir: Path, data: dict) -> list[Clip]:
    """Every fold's held-out clips, read by that fold's model (PyTorch fp32, as the CV report)."""
    clips = []
    for fold in range(len(FOLDS)):
        model, _, front = load_checkpoint(cv_dir / f"fold{fold}" / "final.pt")

        @torch.no_grad()
        def logits_of(audio: np.ndarray) -> np.ndarray:
            return model(torch.from_numpy(front.features(audio))[None])[0].numpy().astype(np.float64)

        test = split(data["speakers"], str(fold))[1]
        clips += [read_clip(logits_of, clip_audio(data, int(i)), front.sample_rate, fold, int(data["labels"][i]))
                  for i in test]
        print(f"fold {fold}: {len(test)} clips read", flush=True)
    return clips


def scores(probs: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Accuracy over 8 classes and folded to 7; a clip without speech (no probabilities) is wrong."""
    heard_speech = probs.sum(1) > 0
    return {"acc8": round(float(np.mean((probs.argmax(1) == labels) & heard_speech)), 4),
            "acc7": round(float(np.mean(((probs @ FOLD_MATRIX).argmax(1) == fold7(labels)) & heard_speech)), 4)}


def segment_folds(clips: list[Clip], k: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """(logits, labels) of every speech segment at context k, per fold: each segment is one reading
    `edgeemo detect` prints, so it is what calibrates."""
    return [(np.concatenate([c.segments[k] for c in clips if c.fold == f]),
             np.concatenate([np.full(len(c.durations), c.label) for c in clips if c.fold == f]))
            for f in range(len(FOLDS))]


def plot(result: dict, path: Path) -> None:
    """Held-out accuracy against the context, whole clips as a line, the chosen context marked."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    xs = [float(c) for c in result["contexts"]]
    fig, ax = plt.subplots(figsize=(6, 3.8))
    for key, style in (("acc8", "o-"), ("acc7", "s--")):
        ax.plot(xs, [100 * result["contexts"][c][key] for c in result["contexts"]], style, label=f"speech segments, {key}")
        ax.axhline(100 * result["whole_clip"][key], color="grey", lw=0.8, ls=":" if key == "acc7" else "-",
                   label=f"whole clips, {key}")
    ax.axvline(result["chosen_s"], color="k", lw=0.8)
    ax.set_xlabel("context heard on each side of the speech (s)"), ax.set_ylabel("held-out accuracy (%)")
    ax.set_title(f"{result['clips']} held-out clips, 6 speaker-independent folds: chosen {result['chosen_s']:g} s",
                 fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def relative(path: Path) -> str:
    """``path`` as the result file records it: relative to the repository where it lies inside."""
    path = path.resolve()
    return str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("cv", type=Path, help="folder of python -m tools.train.voice --folds 0-5")
    p.add_argument("--data", help="data directory (default: $EDGEEMO_DATA or ../shared/data)")
    p.add_argument("--json", type=Path, default=REPO / "bench" / "results" / "voice_context.json")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    clips = read_folds(args.cv, load_ravdess(data_root(args.data)))
    labels = np.array([c.label for c in clips])
    contexts = {f"{c:g}": scores(np.array([clip.reading(k) for clip in clips]), labels)
                for k, c in enumerate(CONTEXTS_S)}
    best = max(s["acc8"] for s in contexts.values())
    chosen = min(c for c in CONTEXTS_S if contexts[f"{c:g}"]["acc8"] == best)
    calibration = calibrate(segment_folds(clips, CONTEXTS_S.index(chosen)))
    calibration.pop("reliability8")
    t = calibration["temperature"] if calibration["kept"] else 1.0
    result = {"cv": relative(args.cv), "clips": len(clips), "contexts": contexts,
              "whole_clip": scores(np.array([softmax(c.whole[None])[0] for c in clips]), labels),
              "no_speech_clips": int(sum(not len(c.durations) for c in clips)), "folds_acc8": folds_acc8(args.cv),
              "chosen_s": chosen, "rule": "highest 8-class accuracy over all folds' held-out clips, the smaller "
                                          "context on a tie",
              "calibration": calibration,
              "reading_at_chosen": scores(np.array([c.reading(CONTEXTS_S.index(chosen), t) for c in clips]), labels),
              "command": "python -m tools.eval.voice_context " + " ".join(sys.argv[1:] if argv is None else argv)}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=1) + "\n")
    plot(result, args.json.with_suffix(".png"))
    for c, s in contexts.items():
        print(f"context {c} s: acc8 {s['acc8']:.4f} acc7 {s['acc7']:.4f}")
    print(f"whole clips: {result['whole_clip']}; chosen {chosen:g} s; per segment: temperature {t:g} "
          f"({'kept' if calibration['kept'] else 'not kept'}), ECE 8 classes {calibration['raw']['ece8']:.4f} raw, "
          f"{calibration['cross_fitted']['ece8']:.4f} cross-fitted -> {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
