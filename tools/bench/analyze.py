#!/usr/bin/env python3
"""Analyse-page benchmark (not a test): POST /api/analyze latency while the sample plays live.

`edgeemo run --source sample` (the sample played like a camera at 30 frames/s, dashboard on) runs
in a subprocess. A 640x480 photo with one face (a frame of the sample, letterboxed) is posted to
/api/analyze --rate times a second (0: back to back, the worst case) for --seconds, and the live pipeline's frames and dropped frames
(edgeemo_frames_total, edgeemo_frames_dropped_total{reason="backlog"}) are counted over the same
time; then for --seconds without uploads. Repeats --runs times, the two modes interleaved. The first
upload (the models loading) is left out of the latencies.

    python -m tools.bench.analyze --rate 2 --json bench/results/analyze.json
    python -m tools.bench.analyze --rate 0 --json bench/results/analyze_flood.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "bench password 123"


def photo() -> bytes:
    """A 640x480 JPEG with one face: the sample's frame at 1 s, letterboxed from 640x360."""
    from edgeemo.core.resources import sample_video
    cap = cv2.VideoCapture(str(sample_video()))
    cap.set(cv2.CAP_PROP_POS_MSEC, 1000)
    ok, frame = cap.read()
    cap.release()
    assert ok, "cannot read the sample"
    canvas = np.zeros((480, 640, 3), np.uint8)
    canvas[60:420] = frame
    return cv2.imencode(".jpg", canvas, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes()


def counters(port: int) -> dict[str, float]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    out = {"read": 0.0, "analysed": 0.0, "dropped": 0.0}
    for line in text.splitlines():
        if line.startswith("edgeemo_frames_total{"):
            out["read"] += float(line.split()[-1])
        elif line.startswith("edgeemo_frames_processed_total{"):
            out["analysed"] += float(line.split()[-1])
        elif line.startswith("edgeemo_frames_dropped_total{") and 'reason="backlog"' in line:
            out["dropped"] += float(line.split()[-1])
    return out


def window(metrics_port: int, seconds: float, work=None) -> tuple[dict[str, float], list[float]]:
    """Counter deltas over `seconds`, with `work()` (one upload, returning its seconds) repeated meanwhile."""
    latencies: list[float] = []
    before, t0 = counters(metrics_port), time.monotonic()
    while time.monotonic() - t0 < seconds:
        if work is None:
            time.sleep(0.1)
        else:
            latencies.append(work())
    after = counters(metrics_port)
    return {k: after[k] - before[k] for k in before}, latencies


def run(args: argparse.Namespace) -> dict:
    from edgeemo.web.users import UserStore
    from testkit.net import free_port
    from testkit.webclient import Client
    image = photo()
    with tempfile.TemporaryDirectory() as tmp:
        store = UserStore(Path(tmp) / "users.db")
        store.add("bench", "viewer", PASSWORD)
        store.close()
        port, metrics_port = free_port(), free_port()
        cfg = Path(tmp) / "bench.yaml"
        cfg.write_text(f"web:\n  port: {port}\n  users_path: {Path(tmp) / 'users.db'}\njournal:\n  path: {tmp}/j.db\n"
                       f"event_log:\n  path: {tmp}/e.jsonl\n  stdout: false\nmetrics:\n  port: {metrics_port}\n")
        proc = subprocess.Popen([sys.executable, "-m", "edgeemo.cli", "run", "--source", "sample", "--config", str(cfg)],
                                stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
        try:
            for line in proc.stderr:
                if "edgeemo running" in line:
                    break
            threading.Thread(target=lambda: [None for _ in proc.stderr], daemon=True).start()
            client = Client(port)
            assert client.login("bench", PASSWORD).status == 200

            def upload() -> float:
                t0 = time.perf_counter()
                reply = client.upload(image, "photo.jpg", "image/jpeg")
                took = time.perf_counter() - t0
                assert reply.status == 200 and len(reply.json()["frames"][0]["faces"]) == 1, reply.body[:200]
                if args.rate > 0:  # paced like people using the page, not back to back
                    time.sleep(max(0.0, 1 / args.rate - took))
                return took

            warm = upload()  # the models load on the first upload
            time.sleep(2)
            without, with_, latencies = [], [], []
            for _ in range(args.runs):
                counts, _ = window(metrics_port, args.seconds)
                without.append(counts)
                counts, lat = window(metrics_port, args.seconds, upload)
                with_.append(counts)
                latencies += lat
        finally:
            proc.terminate()
            proc.wait(30)
    lat_ms = sorted(1000 * x for x in latencies)
    total = lambda runs, key: sum(r[key] for r in runs)  # noqa: E731
    result = {
        "uploads": len(lat_ms), "photo": "640x480 JPEG, one face (the sample at 1 s, letterboxed)",
        "first_upload_ms": round(1000 * warm, 1),
        "median_ms": round(statistics.median(lat_ms), 1), "p95_ms": round(lat_ms[int(0.95 * (len(lat_ms) - 1))], 1),
        "max_ms": round(lat_ms[-1], 1), "seconds_per_window": args.seconds, "runs": args.runs,
        "rate_per_s": args.rate or "back to back",
        "live_without_uploads": {k: total(without, k) for k in ("read", "analysed", "dropped")},
        "live_with_uploads": {k: total(with_, k) for k in ("read", "analysed", "dropped")},
        "cpu_count": os.cpu_count(),
    }
    a, b = result["live_without_uploads"], result["live_with_uploads"]
    pace = f"{args.rate:g}/s" if args.rate else "back to back"
    print(f"POST /api/analyze, 640x480 photo with one face, {len(lat_ms)} uploads ({pace}) while the sample plays live: "
          f"median {result['median_ms']} ms, p95 {result['p95_ms']} ms, max {result['max_ms']} ms "
          f"(first upload with model loading {result['first_upload_ms']} ms)")
    print(f"live pipeline over {args.runs} x {args.seconds:g} s: without uploads {a['dropped']:.0f} dropped of "
          f"{a['read']:.0f} frames read ({a['analysed']:.0f} analysed); with uploads {b['dropped']:.0f} dropped of "
          f"{b['read']:.0f} ({b['analysed']:.0f} analysed)")
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=10, help="length of each window, with and without uploads")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--rate", type=float, default=2, help="uploads per second (0: back to back)")
    p.add_argument("--json", type=Path, metavar="OUT", help="write the figures as JSON here")
    args = p.parse_args()
    figures = run(args)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(figures, indent=1) + "\n")


if __name__ == "__main__":
    main()
