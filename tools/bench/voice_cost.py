"""What one voice window costs the voice stage (VAD, features, model; one thread), now and as it was.

    python -m tools.bench.voice_cost [--card models/edgeemo-voice-int8.json] [--runs 300] [--repeat 3]
                                     [--json bench/results/voice_cost.json]

Each variant runs in a fresh interpreter pinned to one CPU (`taskset`), so the allocator starts from
its own defaults; the variants go round-robin, `repeat` rounds, and the figures are medians over them:

* now: the VAD band-passes only each window's new second, carrying its filter over; freed memory is
  kept in the process (edgeemo.core.memory), as `edgeemo run` does;
* whole-window VAD: the VAD band-passes the whole 3 s window each time (as before);
* glibc defaults: freed arrays go back to the OS and are faulted in again each window (as before);
* as before: both.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

from tools.bench.pipeline import machine_info

REPO = Path(__file__).resolve().parents[2]
VARIANTS = {"now": (True, True), "whole-window VAD": (False, True), "glibc defaults": (True, False),
            "as before": (False, False)}   # name: (follow_on, keep_memory)


def measure(card: Path, runs: int, follow_on: bool, keep_memory: bool, cpu: int) -> dict:
    """tools.eval.voice.cost_ms in a fresh interpreter on `cpu`."""
    code = ("import json, sys; from pathlib import Path; from tools.eval.voice import cost_ms; "
            f"print(json.dumps(cost_ms(Path({str(card)!r}), {runs}, {follow_on}, {keep_memory})))")
    done = subprocess.run(["taskset", "-c", str(cpu), sys.executable, "-c", code], cwd=REPO,
                          capture_output=True, text=True, env=os.environ | {"PYTHONPATH": str(REPO)})
    if done.returncode != 0:
        raise SystemExit(f"timing {card} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def table(results: dict) -> str:
    """Markdown, a row per variant: medians, each round's median, and each against now."""
    now = results["now"]["median_ms"]
    lines = ["| voice stage | ms per 3 s window, median | rounds | min | VAD alone, median | against now |",
             "|---|---|---|---|---|---|"]
    for name, r in results.items():
        rounds = " / ".join(f"{x['median_ms']:.2f}" for x in r["rounds"])
        lines.append(f"| {name} | {r['median_ms']:.2f} | {rounds} | {r['min_ms']:.2f} | {r['vad_median_ms']:.2f} "
                     f"| {r['median_ms'] / now:.2f}x |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--card", type=Path, default=REPO / "models" / "edgeemo-voice-int8.json")
    p.add_argument("--runs", type=int, default=300, help="windows timed per variant and round")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--json", type=Path, metavar="OUT")
    args = p.parse_args(argv)
    cpu = max(os.sched_getaffinity(0))
    rounds: dict[str, list[dict]] = {name: [] for name in VARIANTS}
    for k in range(args.repeat):
        for name, (follow_on, keep_memory) in VARIANTS.items():
            print(f"[round {k + 1}/{args.repeat}] {name}", file=sys.stderr, flush=True)
            rounds[name].append(measure(args.card, args.runs, follow_on, keep_memory, cpu))
    results = {name: {key: round(statistics.median(r[key] for r in runs), 3) for key in runs[0] if key != "runs"}
                     | {"rounds": runs} for name, runs in rounds.items()}
    print(table(results))
    if args.json is not None:
        card = args.card.resolve().relative_to(REPO) if args.card.resolve().is_relative_to(REPO) else args.card
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({
            "machine": machine_info(), "card": str(card), "cpu": cpu, "runs": args.runs, "repeat": args.repeat,
            "acceptance_ms": 2.0, "results": results,
            "command": "python -m tools.bench.voice_cost " + " ".join(argv if argv is not None else sys.argv[1:]),
        }, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
