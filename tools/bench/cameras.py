"""How many cameras a device carries: frames offered vs analysed, and CPU, for N cameras at 30 frames/s.

    python -m tools.bench.cameras [--cameras 1 2 4 8 12 16 24] [--cpus all 1] [--repeat 3]
                                  [--warmup-s 3] [--seconds 10] [--workers N] [--daemons K]
                                  [--json bench/results/cameras.json]

Each run starts the real daemon (`python -m edgeemo run`, faces only: voice, dashboard and MQTT
off) with N copies of the sample as sources, each played at its own 29.97 frames/s like a camera,
and reads the daemon's own metrics page twice, `warmup-s` after every camera's first analysed frame
and `seconds` later. Between the two readings:

* offered: frames the cameras delivered to the analysis (`edgeemo_frames_total`);
* analysed: frames that went through detection and tracking (`edgeemo_frames_processed_total`);
* dropped: frames a camera overwrote before the analysis took them (`edgeemo_frames_dropped_total{reason="backlog"}`);
* cores: the daemon's CPU time (/proc/PID/stat, every thread; all daemons together) per second of wall time.

`--cpus 1` runs the daemon under `taskset -c 0`: a single-core device. The runs go round-robin
over the settings, `repeat` rounds, so a change of the machine's load hits every setting alike;
the figures are medians over the rounds, every single run kept.

`--daemons K` deals the cameras to K daemons of one worker each instead: what worker processes
could at best do on the same CPUs, with no interpreter lock shared between workers.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import yaml
from prometheus_client.parser import text_string_to_metric_families

from tools.bench.pipeline import machine_info

REPO = Path(__file__).resolve().parents[2]
CAMERAS = [1, 2, 4, 8, 12, 16, 24]
NOMINAL_FPS = 29.97            # the sample's frame rate
START_TIMEOUT_S = 120.0        # 24 cameras on one CPU start slowly
TICKS = os.sysconf("SC_CLK_TCK")


def daemon_config(cameras: int, folder: Path, port: int, workers: int | None) -> dict:
    """The default config, faces only, `cameras` copies of the sample, metrics on `port`."""
    cfg: dict = {
        "device_id": "bench", "log_level": "WARNING",
        "sources": [{"name": f"cam{k:02d}", "url": "sample"} for k in range(cameras)],
        "voice": {"enabled": False}, "web": {"enabled": False},
        "metrics": {"enabled": True, "host": "127.0.0.1", "port": port},
        "event_log": {"path": str(folder / "events.jsonl"), "stdout": False},
        "journal": {"path": str(folder / "journal.db")},
    }
    if workers is not None:
        cfg["analysis"] = {"workers": workers}
    return cfg


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def scrape(port: int) -> dict[str, float]:
    """Sums over sources of the counters read here, from the daemon's metrics page."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    sums = {"offered": 0.0, "analysed": 0.0, "dropped": 0.0, "idle": 0.0, "sources_analysing": 0.0}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "edgeemo_frames_total":
                sums["offered"] += sample.value
            elif sample.name == "edgeemo_frames_processed_total":
                sums["analysed"] += sample.value
                sums["sources_analysing"] += sample.value > 0
            elif sample.name == "edgeemo_frames_dropped_total":
                sums["dropped" if sample.labels["reason"] == "backlog" else "idle"] += sample.value
    return sums


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of every thread of the process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def wait_analysing(proc: subprocess.Popen, port: int, cameras: int) -> None:
    """Until every camera has had a frame analysed (models loaded, every capture running)."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the daemon exited with code {proc.returncode}:\n{proc.stderr.read()[-3000:]}")
        with contextlib.suppress(OSError):
            if scrape(port)["sources_analysing"] >= cameras:
                return
        time.sleep(0.2)
    raise SystemExit(f"the daemon did not analyse every camera within {START_TIMEOUT_S:.0f} s")


def start_daemon(names: list[str], folder: Path, cpus: str, workers: int | None) -> tuple[subprocess.Popen, int]:
    """`python -m edgeemo run` with the sample as each of `names`, on all CPUs or one; (process, metrics port)."""
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    cfg = daemon_config(len(names), folder, port, workers)
    cfg["sources"] = [{"name": name, "url": "sample"} for name in names]
    config = folder / "edgeemo.yaml"
    config.write_text(yaml.safe_dump(cfg))
    pin = ["taskset", "-c", "0"] if cpus == "1" else []
    env = os.environ | {"PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([*pin, sys.executable, "-m", "edgeemo", "run", "--config", str(config)],
                            cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    return proc, port


def stop_daemon(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def run_once(cameras: int, cpus: str, warmup_s: float, seconds: float, workers: int | None,
             daemons: int = 1) -> dict:
    """`cameras` cameras on all CPUs or one (`cpus`), measured over `seconds`: one daemon, or the
    cameras dealt round-robin to `daemons` daemons with one worker each (processes, no shared GIL)."""
    names = [f"cam{k:02d}" for k in range(cameras)]
    shares = [names[k::daemons] for k in range(daemons)]
    with tempfile.TemporaryDirectory() as tmp:
        procs: list[tuple[subprocess.Popen, int]] = []
        try:
            for k, share in enumerate(shares):  # started inside the try: one that fails stops the others
                procs.append(start_daemon(share, Path(tmp) / f"d{k}", cpus, 1 if daemons > 1 else workers))
            for (proc, port), share in zip(procs, shares):
                wait_analysing(proc, port, len(share))
            time.sleep(warmup_s)
            before, cpu0, t0 = pages(procs), sum(cpu_seconds(p.pid) for p, _ in procs), time.monotonic()
            time.sleep(seconds)
            after, cpu1, t1 = pages(procs), sum(cpu_seconds(p.pid) for p, _ in procs), time.monotonic()
        finally:
            for proc, _ in procs:
                stop_daemon(proc)
    wall = t1 - t0
    per_daemon = [int(a["analysed"] - b["analysed"]) for a, b in zip(after, before)]
    delta = {key: sum(a[key] - b[key] for a, b in zip(after, before))
             for key in ("offered", "analysed", "dropped", "idle")}
    return {"cameras": cameras, "cpus": cpus, "daemons": daemons, "analysed_per_daemon": per_daemon,
            "wall_s": round(wall, 3), "cpu_s": round(cpu1 - cpu0, 3), "cores": round((cpu1 - cpu0) / wall, 3),
            **{k: int(v) for k, v in delta.items()},
            "analysed_share": round(delta["analysed"] / delta["offered"], 4) if delta["offered"] else 0.0,
            "offered_fps_per_camera": round(delta["offered"] / wall / cameras, 2),
            "loadavg_at_start": [round(x, 2) for x in os.getloadavg()]}


def pages(procs: list[tuple[subprocess.Popen, int]]) -> list[dict[str, float]]:
    """The counters of each daemon's metrics page."""
    return [scrape(port) for _, port in procs]


def medians(runs: list[dict]) -> dict:
    """Median of every number over the runs (counts: the lower median, a value really observed)."""
    merged = dict(runs[0])
    for key, value in runs[0].items():
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            values = [r[key] for r in runs]
            merged[key] = statistics.median_low(values) if isinstance(value, int) else round(statistics.median(values), 4)
    return merged


def table(results: list[dict]) -> str:
    """Markdown, a row per setting; a daemons column where some setting split the cameras."""
    split = any(r.get("daemons", 1) > 1 for r in results)
    lines = [f"| CPUs | cameras |{' daemons |' if split else ''} offered frames/s per camera | analysed / offered "
             "| dropped | cores | cores per camera |", "|---|---|---|---|---|---|---|" + ("---|" if split else "")]
    for r in results:
        daemons = f" {r.get('daemons', 1)} |" if split else ""
        lines.append(f"| {r['cpus']} | {r['cameras']} |{daemons} {r['offered_fps_per_camera']:.2f} "
                     f"| {100 * r['analysed_share']:.2f} % ({r['analysed']}/{r['offered']}) | {r['dropped']} "
                     f"| {r['cores']:.3f} | {r['cores'] / r['cameras']:.3f} |")
    return "\n".join(lines)


def plot(results: list[dict], path: Path) -> None:
    """Frames analysed (share of those offered) and CPU against cameras, all CPUs and one, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (share, cores) = plt.subplots(1, 2, figsize=(10, 4))
    for cpus, style in (("all", "o-"), ("1", "s--")):
        rows = sorted((r for r in results if r["cpus"] == cpus), key=lambda r: r["cameras"])
        if not rows:
            continue
        label = "all CPUs" if cpus == "all" else "one CPU (taskset -c 0)"
        x = [r["cameras"] for r in rows]
        share.plot(x, [100 * r["analysed_share"] for r in rows], style, label=label)
        cores.plot(x, [r["cores"] for r in rows], style, label=label)
    share.axhline(99, color="grey", lw=0.8, ls=":")
    share.set(xlabel="cameras at 30 frames/s", ylabel="frames analysed, % of offered", ylim=(0, 102),
              title="Frames analysed")
    cores.set(xlabel="cameras at 30 frames/s", ylabel="CPU cores used", title="CPU", ylim=(0, None))
    for axis in (share, cores):
        axis.grid(alpha=0.3)
        axis.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90, metadata={"Software": None})
    plt.close(fig)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cameras", nargs="+", type=int, default=CAMERAS, help="camera counts (default: %(default)s)")
    p.add_argument("--cpus", nargs="+", choices=["all", "1"], default=["all", "1"],
                   help="all the CPUs the process may use, or one (taskset -c 0)")
    p.add_argument("--repeat", type=int, default=3, help="rounds; figures are medians over them")
    p.add_argument("--warmup-s", type=float, default=3.0, help="after every camera's first frame, before measuring")
    p.add_argument("--seconds", type=float, default=10.0, help="how long each run is measured")
    p.add_argument("--workers", type=int, help="analysis.workers (default: the daemon's own default)")
    p.add_argument("--daemons", nargs="+", type=int, default=[1],
                   help="deal the cameras to this many daemons of one worker each: the ceiling of worker "
                        "processes, with no GIL shared between workers (default: one daemon)")
    p.add_argument("--json", type=Path, metavar="OUT", help="write every figure as JSON here")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if min(args.daemons) < 1 or max(args.daemons) > min(args.cameras):
        raise SystemExit(f"--daemons must be 1 to {min(args.cameras)} (each daemon needs a camera)")
    if args.workers is not None and max(args.daemons) > 1:
        raise SystemExit("--workers applies to one daemon; split over several, each has one worker")
    settings = [(cpus, n, k) for cpus in args.cpus for n in args.cameras for k in args.daemons]
    machine = machine_info()
    runs: dict[tuple[str, int, int], list[dict]] = {s: [] for s in settings}
    for round_ in range(1, args.repeat + 1):
        for k, (cpus, n, daemons) in enumerate(settings, 1):
            print(f"[round {round_}/{args.repeat}, {k}/{len(settings)}] {n} cameras, CPUs: {cpus}, daemons: {daemons}",
                  file=sys.stderr, flush=True)
            runs[(cpus, n, daemons)].append(run_once(n, cpus, args.warmup_s, args.seconds, args.workers, daemons))
    results = [medians(r) | {"repeat": args.repeat, "runs": r} for r in runs.values()]
    print(table(results))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        settings_used = {"warmup_s": args.warmup_s, "seconds": args.seconds, "workers": args.workers,
                         "daemons": args.daemons,
                         "nominal_fps": NOMINAL_FPS}
        args.json.write_text(json.dumps({"machine": machine, "settings": settings_used, "results": results},
                                        indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
