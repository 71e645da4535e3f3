"""Keep freed memory in the process, so each frame's and each window's arrays do not fault their pages in anew.

glibc's malloc hands a large block (over its adaptive threshold, at first 128 KiB) to the OS when
it is freed, and trims the free top of its heaps over a threshold. The analysis allocates and
frees arrays of that size on every frame and every voice window (a frame's planes, a window's
spectrogram), so with the defaults the kernel maps fresh zero-filled pages for them each time: a
minor page fault per 4 KiB page, hundreds per window, which cost as much CPU as the computation
(BENCHMARKS.md, "Memory kept"). Raising both thresholds keeps the memory that a frame freed for the
next frame. The process keeps, at most, what it used at its peak.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

log = logging.getLogger(__name__)

M_TRIM_THRESHOLD = -1          # mallopt parameters, from glibc's malloc.h
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 * 2**20    # the most glibc takes: blocks this large still come straight from the OS
TRIM_THRESHOLD = 128 * 2**20   # free memory at the top of a heap beyond this goes back to the OS


def keep_freed_memory() -> bool:
    """Raise glibc's mmap and trim thresholds for this process; False where the C library is not glibc."""
    libc_name = ctypes.util.find_library("c")
    try:
        mallopt = ctypes.CDLL(libc_name).mallopt
    except (OSError, AttributeError, TypeError):  # musl, macOS, Windows: their allocators are left alone
        log.debug("no mallopt in the C library (%s): memory thresholds left as they are", libc_name)
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
