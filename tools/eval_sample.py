"""Per-segment check of the daemon on a labelled video (by default the bundled RAVDESS sample).

    python tools/eval_sample.py [--video samples/demo.mp4 --labels samples/demo_labels.csv] [--config FILE]

Runs the real daemon (`--once`, no broker) on the video, then, for each labelled segment, averages
the probabilities of the face events published inside it and compares the dominant emotion with the
label. Prints one row per segment and the number right; `--json` writes the result for the model card.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

from edgeemo import LABELS
from edgeemo.config import load_config
from edgeemo.daemon import Daemon
from edgeemo.resources import sample_video

RAVDESS_TO_LABEL = {"fearful": "fear", "surprised": "surprise", "calm": "neutral"}


def run_daemon(video: Path, config: Path | None, log_path: Path) -> list[dict]:
    cfg = load_config(config, {"event_log.path": str(log_path), "event_log.stdout": False,
                               "metrics.enabled": False, "mqtt.url": None})
    cfg.sources = [cfg.sources[0].model_copy(update={"url": str(video)})]
    if Daemon(cfg, lossless=True).run() != 0:
        raise SystemExit("the daemon did not finish cleanly")
    return [json.loads(line) for line in log_path.read_text().splitlines()]


def segment_results(events: list[dict], segments: list[dict]) -> list[dict]:
    rows = []
    for seg in segments:
        start, end = float(seg["start_s"]), float(seg["end_s"])
        inside = [e for e in events if start <= e["pts"] < end and e["type"] != "end"]
        expected = RAVDESS_TO_LABEL.get(seg["emotion"], seg["emotion"])
        probs = np.mean([[e["probs"][k] for k in LABELS] for e in inside], axis=0) if inside else None
        predicted = LABELS[int(np.argmax(probs))] if probs is not None else None
        rows.append({"segment": int(seg["segment"]), "start_s": start, "end_s": end, "label": expected,
                     "events": len(inside), "predicted": predicted, "correct": predicted == expected,
                     "probs": None if probs is None else {k: round(float(p), 3) for k, p in zip(LABELS, probs)}})
    return rows


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--video", type=Path, default=sample_video())
    p.add_argument("--labels", type=Path, default=sample_video().with_name("demo_labels.csv"))
    p.add_argument("--config", type=Path)
    p.add_argument("--json", type=Path, help="write the per-segment result here")
    args = p.parse_args()
    segments = list(csv.DictReader(args.labels.open()))
    with tempfile.TemporaryDirectory() as tmp:
        events = run_daemon(args.video, args.config, Path(tmp) / "events.jsonl")
    rows = segment_results(events, segments)
    for r in rows:
        print(f"segment {r['segment']} {r['start_s']:6.2f}-{r['end_s']:6.2f} s  label {r['label']:8s} "
              f"predicted {str(r['predicted']):8s} from {r['events']:2d} events  {'OK' if r['correct'] else 'WRONG'}")
    right = sum(r["correct"] for r in rows)
    print(f"{right} of {len(rows)} segments right; {len(events)} events in all")
    if args.json:
        args.json.write_text(json.dumps({"video": str(args.video), "segments": rows, "right": right}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
