"""Per-segment check of the daemon on labelled videos: face, voice and fused, and fusion rules compared.

    python -m tools.eval.sample [--video samples/demo.mp4 --labels samples/demo_labels.csv] [--config FILE]
    python -m tools.eval.sample --clips ../shared/data/av_clips --markdown models/fusion.md

Runs the real daemon (`--once`, no broker) on each video with a heartbeat shorter than a frame, so
that every face reading and every voice window becomes an event. Then, for each labelled segment
(each clip of `--clips` is one segment) and each modality, it averages the probabilities of the
events published inside it and compares the dominant emotion with the label. Fused events carry
their face and voice components, so the fusion rule of the daemon can be compared with others on
the same readings (accuracy per voice window). `--json` writes everything for the model card.
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
from edgeemo.config.load import load_config
from edgeemo.service.daemon import Daemon
from edgeemo.core.resources import sample_video

RAVDESS_TO_LABEL = {"fearful": "fear", "surprised": "surprise", "calm": "neutral"}


MODALITIES = ("face", "voice", "fused")
EVERY_READING_S = 1e-3  # heartbeat: shorter than a frame or a voice hop, so every reading is an event


def run_daemon(video: Path, config: Path | None, log_path: Path, every_reading: bool = False) -> list[dict]:
    overrides = {"event_log.path": str(log_path), "event_log.stdout": False, "metrics.enabled": False,
                 "mqtt.url": None}
    if every_reading:
        overrides["tracker.heartbeat_s"] = EVERY_READING_S
    cfg = load_config(config, overrides)
    cfg.sources = [cfg.sources[0].model_copy(update={"url": str(video)})]
    if Daemon(cfg, lossless=True).run() != 0:
        raise SystemExit("the daemon did not finish cleanly")
    return [json.loads(line) for line in log_path.read_text().splitlines()]


def segment_results(events: list[dict], segments: list[dict], modality: str = "face") -> list[dict]:
    rows = []
    for seg in segments:
        start, end = float(seg["start_s"]), float(seg["end_s"])
        inside = [e for e in events if start <= e["pts"] < end and e["type"] != "end"
                  and e.get("modality", "face") == modality]
        expected = RAVDESS_TO_LABEL.get(seg["emotion"], seg["emotion"])
        probs = np.mean([[e["probs"][k] for k in LABELS] for e in inside], axis=0) if inside else None
        predicted = LABELS[int(np.argmax(probs))] if probs is not None else None
        rows.append({"segment": int(seg["segment"]), "start_s": start, "end_s": end, "label": expected,
                     "events": len(inside), "predicted": predicted, "correct": predicted == expected,
                     "probs": None if probs is None else {k: round(float(p), 3) for k, p in zip(LABELS, probs)}})
    return rows


def as_vector(probs: dict) -> np.ndarray:
    return np.array([probs[k] for k in LABELS])


def fusion_rules() -> dict:
    """The daemon's rule and the usual alternatives, each (face probs, voice probs) -> probs."""
    from edgeemo.tracking.fusion import fuse

    from tools.eval.fusion import entropy_weighted, more_confident

    return {"face only": lambda f, v: f, "voice only": lambda f, v: v,
            "mean of probabilities": lambda f, v: (f + v) / 2, "more confident side only": more_confident,
            "log-linear, weights x confidence (entropy)": entropy_weighted,
            "log-linear, equal weights (the daemon's)": fuse}


def compare_rules(events: list[dict], label_at: "callable") -> dict:
    """Accuracy of each rule over the fused readings (every voice window with one face in view)."""
    fused = [e for e in events if e.get("modality") == "fused" and e["type"] != "end"]
    result = {}
    for name, rule in fusion_rules().items():
        right = [LABELS[int(np.argmax(rule(as_vector(e["components"]["face"]), as_vector(e["components"]["voice"]))))]
                 == label_at(e["pts"]) for e in fused]
        result[name] = {"right": int(sum(right)), "readings": len(right)}
    return result


def evaluate_video(video: Path, segments: list[dict], config: Path | None) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        events = run_daemon(video, config, Path(tmp) / "events.jsonl", every_reading=True)
    rows = {m: segment_results(events, segments, m) for m in MODALITIES}

    def label_at(pts: float) -> str | None:
        for seg in segments:
            if float(seg["start_s"]) <= pts < float(seg["end_s"]):
                return RAVDESS_TO_LABEL.get(seg["emotion"], seg["emotion"])
        return None

    return {"video": video.name, "segments": rows, "rules": compare_rules(events, label_at), "events": len(events)}


def clip_segments(folder: Path) -> list[tuple[Path, list[dict]]]:
    """Every clip of an av_clips-style folder (labels.csv: file, emotion, duration_s) as one segment."""
    out = []
    for row in csv.DictReader((folder / "labels.csv").open()):
        seg = {"segment": 0, "start_s": 0.0, "end_s": float(row["duration_s"]) + 1.0, "emotion": row["emotion"]}
        out.append((folder / row["file"], [seg]))
    return out


def report(results: list[dict]) -> str:
    lines = ["| video | segment | label | face | voice | fused |", "| --- | --- | --- | --- | --- | --- |"]
    verdicts: dict[str, dict[str, bool]] = {}  # per source clip, counted once (the sample joins the clips)
    for res in results:
        for i, face_row in enumerate(res["segments"]["face"]):
            cells = []
            clip = res.get("sources", [])[i] if i < len(res.get("sources", [])) else f"{res['video']}#{i}"
            verdicts[clip] = {}
            for m in MODALITIES:
                row = res["segments"][m][i]
                verdicts[clip][m] = bool(row["correct"])
                mark = "OK" if row["correct"] else "wrong"
                p = row["probs"][row["predicted"]] if row["predicted"] else 0
                cells.append(f"{row['predicted']} {p:.2f} ({row['events']}) {mark}" if row["predicted"] else "none")
            lines.append(f"| {res['video']} | {face_row['segment']} | {face_row['label']} | " + " | ".join(cells) + " |")
    right = {m: sum(v[m] for v in verdicts.values()) for m in MODALITIES}
    count = len(verdicts)
    lines.append(f"| **right, each clip once** | | | **{right['face']}/{count}** | **{right['voice']}/{count}** | "
                 f"**{right['fused']}/{count}** |")
    lines += ["", "Fusion rules on the same fused readings (one per voice window with one face in view):", "",
              "| rule | readings right |", "| --- | --- |"]
    totals: dict[str, list[int]] = {}
    for res in results:
        for name, r in res["rules"].items():
            totals.setdefault(name, [0, 0])
            totals[name][0] += r["right"]
            totals[name][1] += r["readings"]
    for name, (ok, n) in totals.items():
        lines.append(f"| {name} | {ok}/{n} ({100 * ok / max(n, 1):.0f} %) |")
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--video", type=Path, default=sample_video())
    p.add_argument("--labels", type=Path, default=sample_video().with_name("demo_labels.csv"))
    p.add_argument("--clips", type=Path, help="also every clip of this folder (RAVDESS av_clips: labels.csv)")
    p.add_argument("--config", type=Path)
    p.add_argument("--json", type=Path, help="write the per-segment result here")
    p.add_argument("--markdown", type=Path, help="write the tables here")
    args = p.parse_args()
    videos = [(args.video, list(csv.DictReader(args.labels.open())))]
    if args.clips:
        videos += clip_segments(args.clips)
    results = []
    for i, (video, segments) in enumerate(videos, 1):
        print(f"[{i}/{len(videos)}] {video.name} ...", file=sys.stderr, flush=True)
        result = evaluate_video(video, segments, args.config)
        result["sources"] = [seg.get("source_file") or video.name for seg in segments]  # the clip each segment is
        results.append(result)
    table = report(results)
    print(table)
    if args.markdown:
        args.markdown.write_text(table + "\n")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
