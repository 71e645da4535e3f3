#!/usr/bin/env python3
"""Dashboard benchmark (not a test): event-to-bar latency in headless Chromium, and the daemon's CPU.

latency: a real WebServer on a real journal; events are published into its LiveFeed at --rate per
  second while Chromium shows the Live page; a script the benchmark adds stamps the animation frame
  that drew each event's bars (window.__shown); latency = that stamp - the publish time. Prints p50 / p95 / max.
cpu: `edgeemo run --source sample` (30 frames/s, played like a camera) three ways: web.enabled false,
  the dashboard on but nobody connected, and the Live page open in Chromium; the daemon's own CPU
  (utime + stime from /proc) over 8 s in the middle of the clip, scaled to 30 analysed frames/s
  (edgeemo_frames_processed_total), in cores. Repeats --runs times each, modes interleaved.

    python -m tools.bench.dashboard latency --seconds 20
    python -m tools.bench.dashboard cpu --runs 3
    python -m tools.bench.dashboard feed-cpu --seconds 15

feed-cpu: the dashboard's own share without the pipeline's run-to-run noise (see feed_cpu).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "bench password 123"


def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(arg)
    return webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)


def open_live(driver, port: int, user: str, password: str) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait
    driver.get(f"http://127.0.0.1:{port}/login")
    driver.find_element(By.ID, "username").send_keys(user)
    driver.find_element(By.ID, "password").send_keys(password)
    driver.find_element(By.ID, "submit").click()
    WebDriverWait(driver, 20).until(lambda d: d.current_url.endswith("/live"))
    WebDriverWait(driver, 20).until(lambda d: "live" in d.find_element(By.ID, "conn").text)


# The stamp of the animation frame that drew each event's bars, put in by the benchmark (the shipped
# live.js has no hook): EventSource "event" handlers are wrapped to record {seq, ts, at} one frame later.
STAMP_EVENTS = """
window.__shown = [];
const add = EventSource.prototype.addEventListener;
EventSource.prototype.addEventListener = function (kind, handler, ...rest) {
  if (kind !== "event") return add.call(this, kind, handler, ...rest);
  return add.call(this, kind, (m) => {
    handler(m);
    const e = JSON.parse(m.data);
    requestAnimationFrame(() => window.__shown.push({seq: e.seq, ts: e.ts, at: Date.now()}));
  }, ...rest);
};
"""


def latency(args: argparse.Namespace) -> dict:
    from testkit.webclient import make_event, start_server
    with tempfile.TemporaryDirectory() as tmp:
        server, journal = start_server(Path(tmp))
        driver = browser()
        driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": STAMP_EVENTS})
        try:
            open_live(driver, server.port, "admin", "correct horse battery")
            sent: dict[int, float] = {}
            seq, end = 0, time.time() + args.seconds
            while time.time() < end:
                seq += 1
                now = time.time()
                sent[seq] = now
                server.feed.publish([make_event(seq, now, ("happy", "sad", "angry")[seq % 3], track=1)])
                server.feed.state([])  # a frame's state too, as the pipeline sends after each frame
                time.sleep(1 / args.rate)
            time.sleep(1)
            shown = driver.execute_script("return window.__shown")
        finally:
            driver.quit()
            server.stop()
            journal.close()
    lat = sorted(1000 * (s["at"] / 1000 - sent[s["seq"]]) for s in shown if s["seq"] in sent)
    p95 = lat[int(0.95 * (len(lat) - 1))]
    print(f"event to bar on screen: {len(lat)} of {seq} events drawn, p50 {statistics.median(lat):.1f} ms, "
          f"p95 {p95:.1f} ms, max {lat[-1]:.1f} ms ({args.rate:g} events/s for {args.seconds:g} s)")
    return {"events_sent": seq, "events_drawn": len(lat), "rate": args.rate, "seconds": args.seconds,
            "p50_ms": round(statistics.median(lat), 1), "p95_ms": round(p95, 1), "max_ms": round(lat[-1], 1)}


def feed_cpu(args: argparse.Namespace) -> dict:
    """The dashboard's own cost, without the pipeline's noise: this process feeds the LiveFeed as the
    pipeline would at 30 frames/s (one face, an event a second) and measures its own CPU with the Live
    page closed, then open (Chromium is another process)."""
    import math

    from edgeemo import LABELS
    from testkit.webclient import make_event, start_server

    def play(server, seconds: float) -> float:
        c0, t0, seq = time.process_time(), time.monotonic(), 0
        while time.monotonic() - t0 < seconds:
            now = time.time()
            happy = 0.5 + 0.4 * math.sin(now)
            probs = {k: round((1 - happy) / 6, 4) for k in LABELS} | {"happy": round(happy, 4)}
            server.feed.state([{"track": 1, "source": "default", "emotion": "happy", "confidence": probs["happy"],
                                "probs": probs, "box": [10, 10, 90, 90]}])
            if int(now * 30) % 30 == 0:
                seq += 1
                server.feed.publish([make_event(seq, now, "happy", track=1)])
            time.sleep(1 / 30)
        return (time.process_time() - c0) / (time.monotonic() - t0)

    with tempfile.TemporaryDirectory() as tmp:
        server, journal = start_server(Path(tmp))
        try:
            closed = play(server, args.seconds)
            driver = browser()
            try:
                open_live(driver, server.port, "admin", "correct horse battery")
                opened = play(server, args.seconds)
            finally:
                driver.quit()
        finally:
            server.stop()
            journal.close()
    print(f"feeding 30 states/s: {closed:.4f} cores with the Live page closed, {opened:.4f} open: "
          f"the open page costs {opened - closed:+.4f} cores ({args.seconds:g} s each)")
    return {"seconds": args.seconds, "cores_page_closed": round(closed, 4), "cores_page_open": round(opened, 4),
            "open_page_costs_cores": round(opened - closed, 4)}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def frames_done(port: int) -> float:
    import urllib.request
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    return sum(float(line.split()[-1]) for line in text.splitlines()
               if line.startswith("edgeemo_frames_processed_total{"))


def one_cpu_run(mode: str, tmp: Path) -> tuple[float, float]:
    """(daemon cores, frames analysed per second) over 8 s in the middle of the sample."""
    port, metrics_port = free_port(), free_port()
    cfg = tmp / f"{mode}.yaml"
    cfg.write_text(f"web:\n  enabled: {str(mode != 'off').lower()}\n  port: {port}\n  users_path: {tmp / 'users.db'}\n"
                   f"journal:\n  path: {tmp / mode}.db\nevent_log:\n  path: {tmp / mode}.jsonl\n  stdout: false\n"
                   f"metrics:\n  port: {metrics_port}\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "edgeemo.cli", "run", "--source", "sample", "--config", str(cfg)],
                            stderr=subprocess.PIPE, text=True, env=env)
    driver = None
    try:
        for line in proc.stderr:
            if "edgeemo running" in line:
                break
        started = time.monotonic()
        threading.Thread(target=lambda: [None for _ in proc.stderr], daemon=True).start()
        if mode == "live":
            driver = browser()
            open_live(driver, port, "bench", PASSWORD)
        time.sleep(max(0.0, 4 - (time.monotonic() - started)))  # past start-up and the page's first load
        c0, f0, t0 = cpu_seconds(proc.pid), frames_done(metrics_port), time.monotonic()
        time.sleep(8)  # inside the 14 s clip
        c1, f1, t1 = cpu_seconds(proc.pid), frames_done(metrics_port), time.monotonic()
        return (c1 - c0) / (t1 - t0), (f1 - f0) / (t1 - t0)
    finally:
        if driver is not None:
            driver.quit()
        proc.terminate()
        proc.wait(30)


def cpu(args: argparse.Namespace) -> dict:
    from edgeemo.web.users import UserStore
    with tempfile.TemporaryDirectory() as tmp:
        store = UserStore(Path(tmp) / "users.db")
        store.add("bench", "admin", PASSWORD)
        store.close()
        results: dict[str, list[tuple[float, float]]] = {"off": [], "on": [], "live": []}
        for _ in range(args.runs):
            for mode in results:
                results[mode].append(one_cpu_run(mode, Path(tmp)))
    names = {"off": "web.enabled false", "on": "dashboard on, nobody connected", "live": "Live page open"}
    at30 = {}
    for mode, runs in results.items():
        at30[mode] = statistics.median(cores / fps * 30 for cores, fps in runs)
        print(f"daemon CPU, {names[mode]}: {at30[mode]:.3f} cores at 30 frames/s (median; runs: "
              + ", ".join(f"{cores:.3f} cores at {fps:.1f} frames/s" for cores, fps in runs) + ")")
    print(f"Live page open minus nobody connected: {at30['live'] - at30['on']:+.3f} cores; "
          f"dashboard on minus off: {at30['on'] - at30['off']:+.3f} cores")
    return {"cores_at_30fps": {mode: round(v, 3) for mode, v in at30.items()}, "runs": results}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="what", required=True)
    lat = sub.add_parser("latency")
    lat.add_argument("--seconds", type=float, default=20)
    lat.add_argument("--rate", type=float, default=30, help="events per second")
    c = sub.add_parser("cpu")
    c.add_argument("--runs", type=int, default=3)
    f = sub.add_parser("feed-cpu")
    f.add_argument("--seconds", type=float, default=15)
    for action in (lat, c, f):
        action.add_argument("--json", type=Path, metavar="OUT", help="write the figures as JSON here")
    args = p.parse_args()
    figures = {"latency": latency, "cpu": cpu, "feed-cpu": feed_cpu}[args.what](args)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(figures, indent=1) + "\n")


if __name__ == "__main__":
    main()
