"""Voice models side by side on held-out voices, clean and in noise, through `edgeemo detect`.

    python -m tools.eval.voice --model today=models/edgeemo-voice-int8.json \\
        --model rooms=runs/voice-rooms/edgeemo-voice-int8.json  # -> bench/results/voice_rooms.json

RAVDESS actors 01 and 04 (120 utterances; kept out of both models' training) as WAV files made by
tools.clips.noisy_speech: clean, with pink noise at 10 dB SNR, with babble of 4 other actors at
10 dB SNR. Each file goes through `edgeemo detect --json` with the model's card as ``voice.model``,
exactly as a user would run it; a file's reading is the duration-weighted mean of its speech
segments' probabilities (a file where no speech was found counts as wrong). Scored on the seven
published labels (RAVDESS labels folded: calm -> neutral, ...). The models side by side in one run,
one process each, on the same files, each recorded with its ONNX file's sha256; and what one 3 s
window costs each (VAD + features + model, 1 thread, on this machine as it is: a shared machine
makes these upper bounds).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from tools.clips.noisy_speech import held_out_clips
from tools.common.datasets import REPO, data_root, load_ravdess
from tools.train.voice import FOLD_TO_FACE, LABELS7, LABELS8

KINDS = ("clean", "pink10", "babble10")
ACCEPTANCE = {"clean": 0.67, "pink10": 0.60, "babble10": 0.55}


def detect(card: Path, files: list[Path]) -> dict[str, list[dict]]:
    """{file: its segments} from one `edgeemo detect --json` run with ``card`` as the voice model."""
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "voice.yaml"
        config.write_text(f"voice:\n  model: {card.resolve()}\n")
        result = subprocess.run([sys.executable, "-m", "edgeemo.cli", "detect", "--json", "--config", str(config),
                                 *map(str, files)], capture_output=True, text=True, timeout=3600)
    if result.returncode != 0:
        raise SystemExit(f"edgeemo detect failed ({result.returncode}): {result.stderr[-2000:]}")
    segments: dict[str, list[dict]] = {str(f): [] for f in files}
    for line in result.stdout.splitlines():
        record = json.loads(line)
        if "voice" in record:
            segments[record["path"]].append(record)
    return segments


def file_reading(segments: list[dict]) -> str | None:
    """The label of the duration-weighted mean of the segments' probabilities; None without speech."""
    if not segments:
        return None
    total: dict[str, float] = {}
    for s in segments:
        for label, p in s["voice"]["probs"].items():
            total[label] = total.get(label, 0.0) + p * (s["end"] - s["start"])
    return max(total, key=total.get)


def score(card: Path, files: list[tuple[Path, int]]) -> dict:
    segments = detect(card, [f for f, _ in files])
    truth = [FOLD_TO_FACE[LABELS8[y]] for _, y in files]
    said = [file_reading(segments[str(f)]) for f, _ in files]
    confusion = np.zeros((7, 8), int)  # last column: no speech found
    for t, s in zip(truth, said):
        confusion[LABELS7.index(t), 7 if s is None else LABELS7.index(s)] += 1
    correct = sum(t == s for t, s in zip(truth, said))
    return {"acc7": correct / len(files), "correct": correct, "files": len(files),
            "no_speech": sum(s is None for s in said), "confusion7_plus_none": confusion.tolist()}


def cost_ms(card: Path, runs: int = 200, follow_on: bool = True, keep_memory: bool = True) -> dict:
    """One 3 s window as the voice stage pays for it (VAD, features, model), 1 thread: median and min ms.

    The windows follow on from each other through a stream of noise, a new one every hop, as the
    voice stage reads a source's sound (the VAD filters only each window's new second), with freed
    memory kept as the daemon keeps it (core.memory); the first 20 are not timed. ``follow_on`` False
    makes the VAD filter every window whole, ``keep_memory`` False leaves glibc's thresholds as they
    are: the voice stage as it was before either (tools.bench.voice_cost, each in a fresh process).
    """
    import time

    from edgeemo.core.memory import keep_freed_memory
    from edgeemo.voice.classifier import VoiceClassifier, load_voice_card
    from edgeemo.voice.vad import SpeechDetector

    if keep_memory:
        keep_freed_memory()
    classifier = VoiceClassifier(load_voice_card(card), threads=1)
    vad = SpeechDetector(16000, 10.0)
    window, hop = 48000, 16000
    noise = np.random.default_rng(0)
    sound = (noise.standard_normal(window) * 0.05).astype(np.float32)
    vad_ms, total_ms = [], []
    end = window
    for i in range(runs + 20):
        sound = np.concatenate([sound[hop:], (noise.standard_normal(hop) * 0.05).astype(np.float32)])
        end += hop if follow_on else 2 * window  # a gap: the VAD cannot carry its filter over
        t0 = time.perf_counter()
        vad.speech(sound, end)
        t1 = time.perf_counter()
        classifier.classify(sound)
        if i >= 20:
            vad_ms.append((t1 - t0) * 1e3)
            total_ms.append((time.perf_counter() - t0) * 1e3)
    return {"median_ms": round(float(np.median(total_ms)), 3), "min_ms": round(float(np.min(total_ms)), 3),
            "vad_median_ms": round(float(np.median(vad_ms)), 3), "runs": runs}


def onnx_sha256(card: Path) -> str:
    """The sha256 of the model file a card names, so a result says which weights it measured."""
    return hashlib.sha256((card.parent / json.loads(card.read_text())["file"]).read_bytes()).hexdigest()


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", action="append", required=True, metavar="LABEL=CARD", help="a voice model card")
    p.add_argument("--data", help="data directory (default: $EDGEEMO_DATA or ../shared/data)")
    p.add_argument("--clips", type=Path, default=REPO / "runs" / "noisy", help="where the WAV files go")
    p.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "voice_rooms.json")
    args = p.parse_args(argv)
    models = dict(m.split("=", 1) for m in args.model)
    clips = held_out_clips(load_ravdess(data_root(args.data)), args.clips, KINDS)
    result: dict = {"actors": [1, 4], "labels": "7 (RAVDESS folded)", "models": {}}
    for label, card in models.items():
        result["models"][label] = {"card": card, "onnx_sha256": onnx_sha256(Path(card))}
        for kind in KINDS:
            result["models"][label][kind] = score(Path(card), clips[kind])
            print(f"{label} {kind}: {result['models'][label][kind]['acc7']:.3f}", flush=True)
        result["models"][label]["window_cost"] = cost_ms(Path(card))
        print(f"{label} cost per window: {result['models'][label]['window_cost']}", flush=True)
    result |= {"acceptance": ACCEPTANCE, "command": "python -m tools.eval.voice " + " ".join(sys.argv[1:])}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
