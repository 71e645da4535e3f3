"""The CPUs this process may use, and a thread kept on one of them."""

from __future__ import annotations

import logging
import os

log = logging.getLogger(__name__)


def usable_cpus() -> list[int]:
    """CPUs this process may run on (its affinity where the OS has one, else all), in order."""
    if hasattr(os, "sched_getaffinity"):
        return sorted(os.sched_getaffinity(0))
    return list(range(os.cpu_count() or 1))


def pin_this_thread(cpu: int) -> bool:
    """Keep the calling thread on `cpu`; False, said once in the log, where the OS refuses or cannot."""
    if not hasattr(os, "sched_setaffinity"):
        return False
    try:
        os.sched_setaffinity(0, {cpu})  # 0: the calling thread, on Linux
    except OSError as exc:  # the CPU went offline, or a cgroup took it away since start-up
        log.warning("cannot keep a thread on CPU %d (%s): the OS places it", cpu, exc.strerror)
        return False
    return True
