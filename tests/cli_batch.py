"""Run several edgeemo command lines in one Python process, each through `edgeemo.cli.main.main` as
`python -m edgeemo.cli` runs it, with its own stdout and stderr: the bad-input corpus pays Python's
and the libraries' start-up once per batch instead of once per case.

stdin: a JSON list of argv lists; stdout: a JSON list of {"code", "output", "seconds"}.
"""

from __future__ import annotations

import contextlib
import io
import json
import sys
import time
import traceback

from edgeemo.cli.main import main


def run_one(argv: list[str]) -> dict:
    out = io.StringIO()
    started = time.monotonic()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        try:
            code = main(argv)
        except SystemExit as exc:  # argparse's usage errors
            code = exc.code if isinstance(exc.code, int) else 1
        except BaseException:  # what the interpreter would print as a traceback, exit 1
            traceback.print_exc()
            code = 1
    return {"code": code, "output": out.getvalue(), "seconds": time.monotonic() - started}


if __name__ == "__main__":
    results = [run_one(argv) for argv in json.load(sys.stdin)]
    sys.__stdout__.write(json.dumps(results))
