"""Freed memory stays in the process (core.memory): a frame's arrays do not fault their pages in anew."""

import subprocess
import sys

# What a voice window or a frame does: several arrays of some hundred KiB made, used and freed together.
# The work runs in a thread of its own, as the daemon's analysis does (glibc gives threads arenas of their own).
WORK = """
import resource, sys, threading
import numpy as np
from edgeemo.core.memory import keep_freed_memory

if sys.argv[1] == "keep" and not keep_freed_memory():
    sys.exit("keep_freed_memory() did not take")

def window_of_work():
    arrays = [np.ones((300, 512), np.float32) for _ in range(8)]
    return sum(float(a[-1, -1]) for a in arrays)

def windows():
    window_of_work()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(50):
        window_of_work()
    print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)

worker = threading.Thread(target=windows)
worker.start()
worker.join()
"""


def page_faults(mode: str) -> int:
    """Minor page faults over 50 windows of work, in a fresh interpreter (the allocator's own state)."""
    done = subprocess.run([sys.executable, "-c", WORK, mode], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return int(done.stdout)


def test_arrays_freed_and_made_again_reuse_their_pages():
    pages_per_window = 8 * 300 * 512 * 4 // 4096
    assert page_faults("default") > 10 * pages_per_window  # glibc's defaults: given back, faulted in again
    assert page_faults("keep") < pages_per_window          # kept: not even one window's worth over 50
