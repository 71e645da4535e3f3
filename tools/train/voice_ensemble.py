"""Join voice runs trained apart into one net that averages their logits, fold by fold.

    python -m tools.train.voice_ensemble runs/voice-r200 runs/voice-r300 --out runs/voice-ens

Each run is a folder of `python -m tools.train.voice --folds 0-5` and `--fold all` with the same
audio front end. For every fold (and `all`) the members' ``final.pt`` become one checkpoint of a
tools.train.voice.Ensemble, which tools.export.voice exports as one ONNX graph (the features are
computed once). The folds' held-out logits are the members' averaged, so the CV report, the
calibration and tools.eval.voice_context read the ensemble exactly as they read a single run:
whether it beats its members is decided on the CV folds, never on actors 01 and 04 alone.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

from tools.train.voice import FOLDS, build_model, cv_report, metrics

FOLD_DIRS = [f"fold{k}" for k in range(len(FOLDS))] + ["all"]


def join_checkpoints(paths: list[Path]) -> dict:
    """One Ensemble checkpoint from the members' final.pt (same front end, same training actors)."""
    ckpts = [torch.load(p, map_location="cpu", weights_only=False) for p in paths]
    first = ckpts[0]
    for path, ckpt in zip(paths[1:], ckpts[1:]):
        if ckpt["audio"] != first["audio"] or ckpt["train_actors"] != first["train_actors"]:
            raise SystemExit(f"{path}: another front end or other training actors than {paths[0]}: not joined")
        if ckpt["args"].get("vad_cut") != first["args"].get("vad_cut"):  # their test logits read other sound
            raise SystemExit(f"{path}: tested on {'cut' if ckpt['args'].get('vad_cut') == 'True' else 'whole'} "
                             f"clips, {paths[0]} not: not joined")
    config = {"members": [c["config"] for c in ckpts]}
    model = build_model(config)
    for member, ckpt in zip(model.members, ckpts):
        member.load_state_dict(ckpt["model"])
    return {"config": config, "audio": first["audio"], "fold": first["fold"], "train_actors": first["train_actors"],
            "model": model.state_dict(), "epoch": "+".join(str(c["epoch"]) for c in ckpts),
            "args": first["args"], "members": [str(p) for p in paths], "commands": [c["command"] for c in ckpts],
            "command": "; ".join(c["command"] for c in ckpts)}


def join_results(paths: list[Path]) -> dict:
    """The fold's result with the members' held-out logits averaged (the clips must be the same)."""
    results = [json.loads(p.read_text()) for p in paths]
    if any(r["test_clips"] != results[0]["test_clips"] for r in results):
        raise SystemExit(f"{paths}: the members were tested on other clips")
    logits = np.mean([np.array(r["test"]["logits"]) for r in results], axis=0)
    labels = np.array(results[0]["test"]["labels"])
    m = metrics(logits, labels) | {"logits": logits.round(4).tolist(), "labels": labels.tolist()}
    return {"fold": results[0]["fold"], "epochs": "+".join(str(r["epochs"]) for r in results),
            "test_actors": results[0]["test_actors"], "test_clips": results[0]["test_clips"], "test": m,
            "history": [], "members": [r["test"]["acc8"] for r in results]}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", type=Path, nargs="+", help="folders of tools.train.voice runs (two or more)")
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)
    if len(args.runs) < 2:
        raise SystemExit("an ensemble needs two runs or more")
    for fold in FOLD_DIRS:
        missing = [str(r / fold / "final.pt") for r in args.runs if not (r / fold / "final.pt").is_file()]
        if missing:
            raise SystemExit(f"missing: {', '.join(missing)} (train it first)")
    joined = {fold: (join_checkpoints([r / fold / "final.pt" for r in args.runs]),
                     join_results([r / fold / "result.json" for r in args.runs])) for fold in FOLD_DIRS}
    results = []
    for fold, (ckpt, result) in joined.items():  # written only once every fold has joined
        (args.out / fold).mkdir(parents=True, exist_ok=True)
        torch.save(ckpt, args.out / fold / "final.pt")
        (args.out / fold / "result.json").write_text(json.dumps(result))
        print(f"{fold}: members acc8 {', '.join(f'{a:.3f}' for a in result['members'])} -> ensemble "
              f"{result['test']['acc8']:.3f}", flush=True)
        results += [result] if fold != "all" else []
    trained = dict.fromkeys(c for ckpt, _ in joined.values() for c in ckpt["commands"])  # the members', once each
    command = "\n".join([*trained, "python -m tools.train.voice_ensemble " + " ".join(sys.argv[1:] if argv is None else argv)])
    ckpt = joined["all"][0]
    cv_report(args.out, results, results[0]["epochs"], command, ckpt["audio"], ckpt["config"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
