"""Accuracy guard: the scheduled analysis (keyframes, regions, motion gating, classification cadence)
must find what every-frame analysis finds.

    python -m tools.eval.accuracy_guard [--video samples/demo.mp4 data/busy_1280x720.mp4] [--set detector.full_frame_every=10 ...]
                                   [--entry data/entry_1280x720.mp4] [--json OUT]

Each video is analysed twice with the daemon's own steps (vision.analysis.FrameAnalysis, then the
FaceTracker, frame by frame in order, as the lossless pipeline does): once with the configuration
given (the defaults), once with every frame analysed in full (`detector.full_frame_every: 1`,
`classifier.every_frames: 1`, no motion gating: the behaviour before the schedule). It compares
faces per frame, the number of tracks, and the dominant emotion of each segment's face events, a
segment being a stretch of the video (the sample's demo_labels.csv; else the whole video) in one
tile of the picture (2x2 for the busy clip, tools/clips/busy.py; else the whole picture).
With --entry (a clip where faces enter and leave, tools/clips/entry.py) it also reports the
entry delay, the clip read as a live source reads it (frames skipped while idle): for each face
that appears in a tile of the picture with every frame analysed, the frames until the schedule
finds it; at most `detector.full_frame_every` is required.
Exit code 1 when any of them differ.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np


from edgeemo import LABELS
from edgeemo.sources.reader import FrameReader
from edgeemo.sources.spec import parse_source
from edgeemo.config.load import load_config
from edgeemo.config.schema import Config
from edgeemo.tracking.tracker import FaceTracker
from edgeemo.vision.analysis import FrameAnalysis

REPO = Path(__file__).resolve().parents[2]

EVERY_FRAME = {"detector.full_frame_every": 1, "classifier.every_frames": 1, "detector.motion.enabled": False}


@dataclass
class Analysed:
    """What one pass over a video found."""

    faces: list[int] = field(default_factory=list)        # faces per frame
    tiles: list[set] = field(default_factory=list)        # per frame: the tiles (2x2) with a face in them
    events: list[dict] = field(default_factory=list)      # face events: type, track, pts, emotion, box
    counts: dict = field(default_factory=dict)            # how the scheduler handled the frames
    width: int = 0
    height: int = 0
    duration: float = 0.0


def analyse(video: str, cfg: Config, live: bool = False) -> Analysed:
    """The daemon's detect, classify and track steps over every frame of `video`, in order.

    `live`: as a camera's capture reads it. Frames the scheduler does not need while the source is
    idle (all but the one in `detector.full_frame_every` that motion is looked for on) are skipped
    undecoded and count as frames without faces.
    """
    analysis = FrameAnalysis(cfg)
    tracker = FaceTracker(cfg.tracker, "guard")
    reader = FrameReader(parse_source(video))
    out = Analysed()
    pts = 0.0
    try:
        while True:
            if live and not analysis.scheduler.needs("guard", reader.index):
                if reader.skip() is None:
                    break
                out.faces.append(0)
                out.tiles.append(set())
                continue
            if (item := reader.read()) is None:
                break
            image, pts = item
            out.height, out.width = image.shape[:2]
            faces = analysis.analyse(image, "guard", reader.index - 1)
            out.faces.append(len(faces))
            centres = faces.boxes[:, :2] + faces.boxes[:, 2:] / 2
            out.tiles.append({(int(y * 2 // out.height), int(x * 2 // out.width)) for x, y in centres})
            out.events += [event_record(e) for e in tracker.update(faces, pts)]
    finally:
        reader.close()
    out.events += [event_record(e) for e in tracker.finish()]
    out.counts, out.duration = asdict(analysis.scheduler.counts), pts
    return out


def event_record(event) -> dict:
    return {"type": event.type, "track": event.track, "pts": round(event.pts, 4),
            "emotion": LABELS[int(np.argmax(event.probs))], "box": list(event.box)}


def segments_of(video: str) -> list[tuple[float, float]]:
    """Time segments: the rows of <video stem>_labels.csv beside the video, else the whole video."""
    labels = Path(video).with_name(Path(video).stem + "_labels.csv")
    if not labels.exists():
        return [(0.0, float("inf"))]
    with labels.open() as fh:
        return [(float(row["start_s"]), float(row["end_s"])) for row in csv.DictReader(fh)]


def tiles_of(video: str) -> int:
    """Tiles per side: 2 for the busy clip (four clips tiled 2x2), else 1."""
    return 2 if Path(video).name.startswith("busy") else 1


def held_spans(result: Analysed, tiles: int) -> Iterator[tuple[str, dict, float]]:
    """(tile, event, pts of its track's next event): each face event holds its emotion until then."""
    by_track: dict[int, list[dict]] = {}
    for event in result.events:
        by_track.setdefault(event["track"], []).append(event)
    for events in by_track.values():
        for event, nxt in zip(events, events[1:]):
            if event["type"] == "end":
                continue
            x, y, w, h = event["box"]
            tile = f"{int((y + h / 2) * tiles // max(result.height, 1))},{int((x + w / 2) * tiles // max(result.width, 1))}"
            yield tile, event, nxt["pts"]


def dominant_emotions(result: Analysed, segments: list[tuple[float, float]], tiles: int) -> dict[str, str | None]:
    """Per (segment, tile): the emotion the face events held longest."""
    held: dict[str, dict[str, float]] = {}
    for tile, event, until in held_spans(result, tiles):
        for k, (start, end) in enumerate(segments):
            overlap = min(end, until) - max(start, event["pts"])
            if overlap > 0:
                cell = held.setdefault(f"segment {k} tile {tile}", {})
                cell[event["emotion"]] = cell.get(event["emotion"], 0.0) + overlap
    return {key: max(cell, key=cell.get) for key, cell in sorted(held.items())}


def held_labels(result: Analysed, tiles: int, step: float = 0.1) -> dict[tuple[str, int], str]:
    """(tile, time step) -> the emotion a face event holds there: a timeline to compare finely."""
    out = {}
    for tile, event, until in held_spans(result, tiles):
        for k in range(int(np.ceil(event["pts"] / step)), int(np.ceil(until / step))):
            out[(tile, k)] = event["emotion"]
    return out


def agreement(scheduled: Analysed, reference: Analysed, tiles: int) -> float:
    """Share of the reference's face timeline (0.1 s steps, per tile) where the scheduled run holds the same emotion."""
    ours, theirs = held_labels(scheduled, tiles), held_labels(reference, tiles)
    return round(sum(ours.get(key) == label for key, label in theirs.items()) / max(len(theirs), 1), 4)


def compare(video: str, overrides: dict) -> dict:
    """Scheduled against every-frame analysis of one video; `same` is True when the guard holds."""
    cfg = load_config(None, overrides)
    scheduled = analyse(video, cfg)
    reference = analyse(video, load_config(None, {**overrides, **EVERY_FRAME}))
    segments, tiles = segments_of(video), tiles_of(video)
    ours, theirs = dominant_emotions(scheduled, segments, tiles), dominant_emotions(reference, segments, tiles)
    tracks = [len({e["track"] for e in r.events}) for r in (scheduled, reference)]
    differing = [i for i, (a, b) in enumerate(zip(scheduled.faces, reference.faces)) if a != b]
    schedule = {"full_frame_every": cfg.detector.full_frame_every, "classify_every": cfg.classifier.every_frames,
                "locate_every": cfg.detector.locate_every, "motion": cfg.detector.motion.enabled}
    return {"video": video, "overrides": overrides, "schedule": schedule, "frames": len(reference.faces),
            "faces_per_frame": [round(float(np.mean(r.faces)), 4) for r in (scheduled, reference)],
            "frames_with_other_face_count": len(differing), "first_differing_frames": differing[:10],
            "tracks": tracks, "dominant": {"scheduled": ours, "every_frame": theirs},
            "counts": scheduled.counts, "label_agreement": agreement(scheduled, reference, tiles),
            "events": [len(r.events) for r in (scheduled, reference)],
            "same": not differing and tracks[0] == tracks[1] and ours == theirs}


def entry_delays(scheduled: Analysed, reference: Analysed) -> list[dict]:
    """Per face entering a tile (no face there in the frame before, with every frame analysed):
    frames until the schedule finds a face there too."""
    delays = []
    for i, tiles in enumerate(reference.tiles):
        for tile in sorted(tiles - (reference.tiles[i - 1] if i else set())):
            found = next((j for j in range(i, len(scheduled.tiles)) if tile in scheduled.tiles[j]), None)
            delays.append({"frame": i, "tile": list(tile), "delay": None if found is None else found - i})
    return delays


def entry(video: str, overrides: dict) -> dict:
    """Entry delays on a clip where faces enter and leave (tools/clips/entry.py), read as a live
    source reads it (frames skipped while idle), against every frame analysed in full."""
    cfg = load_config(None, overrides)
    scheduled = analyse(video, cfg, live=True)
    reference = analyse(video, load_config(None, {**overrides, **EVERY_FRAME}))
    delays = entry_delays(scheduled, reference)
    known = [d["delay"] for d in delays if d["delay"] is not None]
    return {"video": video, "overrides": overrides, "full_frame_every": cfg.detector.full_frame_every,
            "entries": delays, "max_delay": max(known) if known else None, "counts": scheduled.counts,
            "same": len(known) == len(delays) and max(known, default=0) <= cfg.detector.full_frame_every}


def parse_set(text: str) -> tuple[str, object]:
    key, _, value = text.partition("=")
    return key, json.loads(value) if value not in ("", None) else value


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--video", nargs="*", default=[str(REPO / "samples" / "demo.mp4")])
    p.add_argument("--set", nargs="*", default=[], type=parse_set, metavar="KEY=JSON", help="config overrides")
    p.add_argument("--entry", nargs="*", default=[], metavar="VIDEO",
                   help="clips where faces enter and leave (tools/clips/entry.py): report the entry delay")
    p.add_argument("--json", type=Path, metavar="OUT")
    args = p.parse_args()
    results = [compare(video, dict(args.set)) for video in args.video]
    entries = [entry(video, dict(args.set)) for video in args.entry]
    for r in entries:
        print(f"{r['video']}: {len(r['entries'])} entries, delays {[d['delay'] for d in r['entries']]} frames "
              f"(max {r['max_delay']}, allowed {r['full_frame_every']}) -> {'OK' if r['same'] else 'TOO LATE'}")
    for r in results:
        print(f"{r['video']}: faces/frame {r['faces_per_frame'][0]} vs {r['faces_per_frame'][1]} every frame, "
              f"{r['frames_with_other_face_count']} frames differ; tracks {r['tracks'][0]} vs {r['tracks'][1]}; "
              f"dominant emotions {'equal' if r['dominant']['scheduled'] == r['dominant']['every_frame'] else 'DIFFER'}; "
              f"emotion timeline agreement {r['label_agreement']}, events {r['events']}; "
              f"{r['counts']} -> {'OK' if r['same'] else 'DIFFERENT'}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"guard": results, "entry": entries}, indent=1) + "\n")
    return 0 if all(r["same"] for r in results + entries) else 1


if __name__ == "__main__":
    sys.exit(main())
