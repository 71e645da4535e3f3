"""Ending the real processes the tests start (broker, audio server)."""

from __future__ import annotations

import subprocess


def end(process: subprocess.Popen, grace_s: float = 5.0) -> None:
    """SIGTERM, then SIGKILL if it has not exited after `grace_s`; always reaped."""
    process.terminate()
    try:
        process.wait(grace_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
