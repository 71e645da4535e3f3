"""Waiting on a condition in tests: poll it, fail with what was awaited, never a bare sleep."""

from __future__ import annotations

import time
from collections.abc import Callable


def wait_until(predicate: Callable[[], bool], timeout: float = 5.0, what: str = "the condition") -> float:
    """Poll until true; returns when it became true (monotonic), or fails naming `what`."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.02)
    return time.monotonic()
