"""The voice card's temperature, fitted on the CV folds' held-out actors, with honest ECE figures.

    python -m tools.eval.voice_calibration runs/voice-cv [--card models/edgeemo-voice.json ...]
                                           [--json bench/results/voice_calibration.json]

`runs/voice-cv` is the folder of `python -m tools.train.voice --folds 0-5` for the shipped recipe:
each fold's `result.json` holds the logits of its 4 held-out actors. The temperature for the card
is fitted on all six folds' held-out logits together (negative log-likelihood). Its ECE is reported
three ways, 15 bins, top class, 8 classes and folded to edgeemo's 7: raw (T = 1); in-sample (the
one T, scored on the logits it was fitted on); and cross-fitted, the figure to quote: each fold
scored with a T fitted on the other five folds only. A reliability diagram (cross-fitted) goes
beside the JSON. With `--card`, the temperature and the ECE figures are written into those cards.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from tools.common.calibration import ece, fit_temperature, plot_reliability, reliability, softmax
from tools.train.voice import FOLD_TO_FACE, LABELS7, LABELS8, fold7

FOLD_MATRIX = np.array([[LABELS7.index(FOLD_TO_FACE[name]) == j for j in range(7)] for name in LABELS8], np.float64)


def held_out(cv_dir: Path) -> list[tuple[np.ndarray, np.ndarray]]:
    """(logits, labels) of each fold's held-out actors, folds in order; a missing fold is an error."""
    folds = []
    for k in range(6):
        path = cv_dir / f"fold{k}" / "result.json"
        if not path.exists():
            raise SystemExit(f"{path}: missing (run python -m tools.train.voice --folds 0-5 --out {cv_dir} first)")
        test = json.loads(path.read_text())["test"]
        folds.append((np.array(test["logits"], np.float64), np.array(test["labels"], np.int64)))
    return folds


def scores(probs: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    return {"ece8": round(ece(probs, labels), 4), "ece7": round(ece(probs @ FOLD_MATRIX, fold7(labels)), 4)}


def calibrate(folds: list[tuple[np.ndarray, np.ndarray]]) -> dict:
    """The card's temperature and the ECE figures (see the module's docstring)."""
    logits = np.concatenate([z for z, _ in folds])
    labels = np.concatenate([y for _, y in folds])
    temperature = fit_temperature(logits, labels)
    crossed = []
    for k in range(len(folds)):
        others = [f for j, f in enumerate(folds) if j != k]
        t_k = fit_temperature(np.concatenate([z for z, _ in others]), np.concatenate([y for _, y in others]))
        crossed.append((t_k, softmax(folds[k][0], t_k)))
    crossed_probs = np.concatenate([p for _, p in crossed])
    return {"temperature": round(temperature, 4), "utterances": int(len(labels)),
            "accuracy8": round(float(np.mean(logits.argmax(1) == labels)), 4),
            "raw": scores(softmax(logits), labels), "in_sample": scores(softmax(logits, temperature), labels),
            "cross_fitted": scores(crossed_probs, labels),
            "cross_fitted_temperatures": [round(t, 4) for t, _ in crossed],
            "reliability8_raw": reliability(softmax(logits), labels),
            "reliability8_cross_fitted": reliability(crossed_probs, labels)}


def write_cards(cards: list[Path], result: dict) -> None:
    """The temperature and the cross-fitted ECE into each card (its other keys as they were)."""
    for path in cards:
        card = json.loads(path.read_text())
        card["temperature"] = result["temperature"]
        card.setdefault("metrics", {}).update({
            "ravdess_cv_ece8_raw": result["raw"]["ece8"], "ravdess_cv_ece8_calibrated": result["cross_fitted"]["ece8"],
            "ravdess_cv_ece7_raw": result["raw"]["ece7"], "ravdess_cv_ece7_calibrated": result["cross_fitted"]["ece7"],
            "ravdess_cv_calibration_note": "temperature fitted on the 6 CV folds' held-out actors (fp32 fold models); "
                                           "calibrated ECE cross-fitted: each fold scored with a T fitted on the "
                                           "other five; 15 bins, top class"})
        path.write_text(json.dumps(card, indent=1) + "\n")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("cv_dir", type=Path, help="the folder of tools.train.voice --folds 0-5")
    p.add_argument("--card", type=Path, nargs="*", default=[], help="voice cards to write the temperature into")
    p.add_argument("--json", type=Path, help="write the figures here; the reliability diagram goes beside it (.png)")
    args = p.parse_args(argv)
    result = calibrate(held_out(args.cv_dir))
    result["command"] = "python -m tools.eval.voice_calibration " + " ".join(sys.argv[1:] if argv is None else argv)
    print(f"temperature {result['temperature']:.3f} over {result['utterances']} held-out utterances; ECE 8 classes "
          f"raw {result['raw']['ece8']:.3f}, in-sample {result['in_sample']['ece8']:.3f}, cross-fitted "
          f"{result['cross_fitted']['ece8']:.3f}; folded to 7: raw {result['raw']['ece7']:.3f}, cross-fitted "
          f"{result['cross_fitted']['ece7']:.3f}")
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1) + "\n")
        cal = result["reliability8_cross_fitted"]
        plot_reliability(args.json.with_suffix(".png"), cal, "voice model, RAVDESS held-out actors, 8 classes\n"
                         f"cross-fitted temperature: ECE {cal['ece']:.4f} over {cal['bins']} bins", "utterances")
    write_cards(args.card, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
