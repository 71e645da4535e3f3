"""Every case of the generated bad-input corpus (tests/bad_inputs.py) through the real CLI.

Each must end with its exit code, print no traceback, finish in time, and name the bad thing. Cases
run in batches (tests/cli_batch.py: several `edgeemo.cli.main.main` calls per process) on a few parallel
processes; the failure message gives the counts.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from bad_inputs import Case, build

REPO = Path(__file__).resolve().parents[1]
CASE_LIMIT_S = 60     # one case slower than this counts as a hang
BATCH = 12
MIN_CASES = 100


def judge(case: Case, result: dict) -> str | None:
    """None when the case behaves; else what went wrong, with the output."""
    output = result["output"]
    problems = []
    if result["seconds"] > CASE_LIMIT_S:
        problems.append(f"HANG ({result['seconds']:.0f} s)")
    if "Traceback" in output:
        problems.append("traceback")
    if result["code"] != case.code:
        problems.append(f"exit {result['code']}, want {case.code}")
    if case.expect not in output:
        problems.append(f"no {case.expect!r}")
    problems += [f"leaks {secret!r}" for secret in case.forbid if secret in output]
    return f"{case.name}: {', '.join(problems)}\n{output[-1500:]}" if problems else None


def run_batch(cases: list[Case], cwd: Path) -> list[str | None]:
    # The journal's default place is $XDG_DATA_HOME/edgeemo: keep what `run` cases write in tmp.
    env = os.environ | {"PYTHONPATH": f"{REPO}{os.pathsep}{REPO / 'tests'}", "XDG_DATA_HOME": str(cwd)}
    for name in ("EDGEEMO_MQTT_PASSWORD", "STATE_DIRECTORY", "CREDENTIALS_DIRECTORY", "LOGS_DIRECTORY"):
        env.pop(name, None)
    try:
        done = subprocess.run([sys.executable, str(REPO / "tests" / "cli_batch.py")], input=json.dumps(
            [case.args for case in cases]), capture_output=True, text=True, timeout=CASE_LIMIT_S * len(cases), cwd=cwd,
            env=env)
        results = json.loads(done.stdout)
    except subprocess.TimeoutExpired:
        return [f"{case.name}: HANG (its batch did not finish)" for case in cases]
    except json.JSONDecodeError:
        return [f"{case.name}: the batch process died (exit {done.returncode}):\n{done.stderr[-1500:]}" for case in cases]
    return [judge(case, result) for case, result in zip(cases, results)]


def test_every_bad_input_is_named_without_a_traceback(tmp_path):
    folder = tmp_path / "corpus"
    folder.mkdir()
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        cases = build(folder, busy.getsockname()[1])
        assert len(cases) >= MIN_CASES
        assert len({case.name for case in cases}) == len(cases)
        batches = [cases[i::len(cases) // BATCH + 1] for i in range(len(cases) // BATCH + 1)]  # mixed kinds per batch
        with ThreadPoolExecutor(max_workers=3) as pool:
            failures = [f for batch in pool.map(lambda b: run_batch(b, tmp_path), batches) for f in batch if f]
    hangs = sum("HANG" in f.split("\n")[0] for f in failures)
    tracebacks = sum("traceback" in f.split("\n")[0] for f in failures)
    summary = f"{len(cases)} bad inputs: {len(failures)} misbehaved ({tracebacks} tracebacks, {hangs} hangs)"
    assert not failures, summary + "\n\n" + "\n\n".join(failures)
