"""Where the per-frame CPU goes: the daemon's steps on every frame of a video, in one thread, under cProfile.

    python -m tools.bench.profile_frame [--video samples/demo.mp4] [--set detector.full_frame_every=1 ...] [--top 25]

Builds the real pipeline (edgeemo.service.daemon.Daemon, events to a scratch log, no broker) and calls its
detect, classify, track and publish steps frame after frame in this thread, so cProfile, which sees
one thread only, sees all of the analysis; decoding is done first and left out. After a warm-up
pass (the first inference at each input size allocates and plans), it prints the step totals per
frame (CPU time, without the profiler), then profiles a third pass, sorted by own time.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import sys
import tempfile
import time
from pathlib import Path


from edgeemo.sources.reader import FrameReader
from edgeemo.sources.spec import parse_source
from edgeemo.config.load import load_config
from edgeemo.service.daemon import Daemon
from edgeemo.core.types import Frame, Work

REPO = Path(__file__).resolve().parents[2]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--video", default=str(REPO / "samples" / "demo.mp4"))
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=JSON", help="config overrides")
    p.add_argument("--top", type=int, default=25)
    args = p.parse_args()
    overrides = {k: json.loads(v) for k, _, v in (s.partition("=") for s in args.set)}
    with tempfile.TemporaryDirectory() as tmp:
        cfg = load_config(None, {"metrics.enabled": False, "event_log.path": f"{tmp}/events.jsonl",
                                 "event_log.stdout": False, "voice.enabled": False, **overrides})
        cfg.sources = [cfg.sources[0].model_copy(update={"name": "profile", "url": args.video})]
        pipeline = Daemon(cfg, lossless=True).pipeline
        reader, frames = FrameReader(parse_source(args.video)), []
        while (item := reader.read()) is not None:
            frames.append(item)
        reader.close()
        steps = (pipeline.detect, pipeline.classify, pipeline.track, pipeline.publish)
        seconds = dict.fromkeys((s.__name__ for s in steps), 0.0)

        def run(timed: bool) -> None:
            pipeline.analysis.forget("profile")
            for i, (image, pts) in enumerate(frames):
                work = Work(Frame(image, "profile", i, pts, time.monotonic()))
                for step in steps:
                    started = time.process_time()
                    work = step(work)
                    if timed:
                        seconds[step.__name__] += time.process_time() - started

        run(timed=False)  # warm-up: first inferences at each input size allocate and plan
        run(timed=True)
        print("CPU ms per frame: " + ", ".join(f"{k} {v / len(frames) * 1000:.2f}" for k, v in seconds.items()))
        profile = cProfile.Profile()
        profile.runcall(run, False)
        pstats.Stats(profile).sort_stats("tottime").print_stats(args.top)
    return 0


if __name__ == "__main__":
    sys.exit(main())
