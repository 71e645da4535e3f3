"""The voice card's temperature, fitted on the CV folds' held-out actors, with honest ECE figures.

    python -m tools.eval.voice_calibration runs/voice-cv [--card models/edgeemo-voice.json ...]
                                           [--json bench/results/voice_calibration.json]

`runs/voice-cv` is the folder of `python -m tools.train.voice --folds 0-5` for the shipped recipe:
each fold's `result.json` holds the logits of its 4 held-out actors. The temperature for the card
is fitted on all six folds' held-out logits together (negative log-likelihood). Its ECE is reported
three ways, 15 bins, top class, 8 classes and folded to edgeemo's 7: raw (T = 1); in-sample (the
one T, scored on the logits it was fitted on); and cross-fitted, the figure to quote: each fold
scored with a T fitted on the other five folds only. The temperature is kept only where that
cross-fitted ECE beats the raw one, on the 8 classes and on the 7 published labels (a model already
calibrated keeps T = 1: a fitted T would only fit noise). A reliability diagram of what is kept goes beside the JSON. With `--card`, the choice
and the ECE figures are written into those cards.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from tools.common.calibration import ece, fit_temperature, plot_reliability, reliability, softmax
from tools.common.datasets import data_root, load_ravdess
from tools.train.voice import FOLD_MATRIX, FOLDS, fold7, split



def held_out(cv_dir: Path, data: str | None) -> list[tuple[np.ndarray, np.ndarray]]:
    """(logits, labels) of each fold's held-out actors, folds in order; a missing fold is an error.

    A result written before tools.train.voice kept the labels (the shipped model's CV) has them
    taken from RAVDESS: its logits are in the order of the fold's held-out clips."""
    folds, ravdess = [], None
    for k in range(len(FOLDS)):
        path = cv_dir / f"fold{k}" / "result.json"
        if not path.exists():
            raise SystemExit(f"{path}: missing (run python -m tools.train.voice --folds 0-5 --out {cv_dir} first)")
        result = json.loads(path.read_text())
        test = result["test"]
        if "labels" not in test:
            ravdess = ravdess or load_ravdess(data_root(data))
            clips = result.get("test_clips") or split(ravdess["speakers"], str(k))[1]
            test["labels"] = ravdess["labels"][np.asarray(clips)]
        if len(test["labels"]) != len(test["logits"]):
            raise SystemExit(f"{path}: {len(test['logits'])} logits but {len(test['labels'])} labels")
        folds.append((np.array(test["logits"], np.float64), np.array(test["labels"], np.int64)))
    return folds


def folds_acc8(cv_dir: Path) -> list[float]:
    """Each fold's held-out accuracy as its result.json has it: which models a figure was measured on."""
    return [round(json.loads((cv_dir / f"fold{k}" / "result.json").read_text())["test"]["acc8"], 4)
            for k in range(len(FOLDS))]


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
    raw, cross_fitted = scores(softmax(logits), labels), scores(crossed_probs, labels)
    keep = cross_fitted["ece8"] < raw["ece8"] and cross_fitted["ece7"] < raw["ece7"]  # the 7 are what people see
    return {"temperature": round(temperature, 4), "kept": keep, "utterances": int(len(labels)),
            "accuracy8": round(float(np.mean(logits.argmax(1) == labels)), 4),
            "raw": raw, "in_sample": scores(softmax(logits, temperature), labels), "cross_fitted": cross_fitted,
            "cross_fitted_temperatures": [round(t, 4) for t, _ in crossed],
            "reliability8": reliability(crossed_probs if keep else softmax(logits), labels)}


def cv_figures(folds: list[tuple[np.ndarray, np.ndarray]]) -> dict:
    """calibrate()'s temperature, whether it is kept, and the ECE without it and cross-fitted with it, as the
    flat keys of a CV report (tools.train.voice) and of the export (tools.export.voice)."""
    return cv_calibration_keys(calibrate(folds))


def cv_calibration_keys(cal: dict) -> dict:
    """A calibrate() result as the flat keys of a CV report."""
    return {"temperature": cal["temperature"], "temperature_kept": cal["kept"],
            "ece8_raw": cal["raw"]["ece8"], "ece7_raw": cal["raw"]["ece7"],
            "ece8_calibrated": cal["cross_fitted"]["ece8"], "ece7_calibrated": cal["cross_fitted"]["ece7"]}


def write_cards(cards: list[Path], result: dict) -> None:
    """The kept temperature (or none) and the ECE figures into each card, its other keys as they were.

    The metric keys are those tools.export.voice writes: `_raw` without a temperature, `_calibrated`
    cross-fitted with it."""
    note = (f"temperature {result['temperature']} fitted on the 6 CV folds' held-out actors (fp32 fold models), "
            + ("kept" if result["kept"] else "not kept") + ": cross-fitted (each fold scored with a T fitted on "
            "the other five) it " + ("lowers" if result["kept"] else "does not lower") + " the ECE of T = 1; "
            "15 bins, top class")
    for path in cards:
        card = json.loads(path.read_text())
        if "context_s" in card:  # its temperature belongs to the readings with context (tools.eval.voice_context)
            raise SystemExit(f"{path}: calibrated on speech read with context_s by tools.eval.voice_context; "
                             "re-export it (tools.export.voice --cv) instead of writing a whole-clip temperature")
        card.pop("temperature", None)
        if result["kept"]:
            card["temperature"] = result["temperature"]
        metrics = card.setdefault("metrics", {})
        for key in ("ravdess_cv_ece8", "ravdess_cv_ece7", "ravdess_cv_ece8_uncalibrated"):
            metrics.pop(key, None)
        metrics.update({f"ravdess_cv_{k}_{how}": result[where][k] for k in ("ece8", "ece7")
                        for how, where in (("raw", "raw"), ("calibrated", "cross_fitted"))})
        metrics.update({"ravdess_cv_temperature_kept": result["kept"], "ravdess_cv_calibration_note": note})
        path.write_text(json.dumps(card, indent=1) + "\n")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("cv_dir", type=Path, help="the folder of tools.train.voice --folds 0-5")
    p.add_argument("--card", type=Path, nargs="*", default=[], help="voice cards to write the temperature into")
    p.add_argument("--data", help="data directory, for results without labels (default: $EDGEEMO_DATA or ../shared/data)")
    p.add_argument("--json", type=Path, help="write the figures here; the reliability diagram goes beside it (.png)")
    args = p.parse_args(argv)
    result = calibrate(held_out(args.cv_dir, args.data))
    result["command"] = "python -m tools.eval.voice_calibration " + " ".join(sys.argv[1:] if argv is None else argv)
    print(f"temperature {result['temperature']:.3f} over {result['utterances']} held-out utterances; ECE 8 classes "
          f"raw {result['raw']['ece8']:.3f}, in-sample {result['in_sample']['ece8']:.3f}, cross-fitted "
          f"{result['cross_fitted']['ece8']:.3f}; folded to 7: raw {result['raw']['ece7']:.3f}, cross-fitted "
          f"{result['cross_fitted']['ece7']:.3f}; temperature {'kept' if result['kept'] else 'not kept (T = 1)'}")
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1) + "\n")
        cal = result["reliability8"]
        how = "cross-fitted temperature" if result["kept"] else "as shipped (T = 1)"
        plot_reliability(args.json.with_suffix(".png"), cal, "voice model, RAVDESS held-out actors, 8 classes\n"
                         f"{how}: ECE {cal['ece']:.4f} over {cal['bins']} bins", "utterances")
    write_cards(args.card, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
