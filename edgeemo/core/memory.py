"""Keep freed memory in the process, so each frame's and each window's arrays do not fault their pages in anew.

glibc's malloc hands a large block (over its adaptive threshold, at first 128 KiB) back to the OS
when it is freed, and trims the free top of its heaps over a threshold. The analysis makes and frees
arrays of that size on every frame and every voice window (a frame's planes, a window's
spectrogram), so with the defaults the kernel maps fresh zero-filled pages for them each time, a
minor page fault per 4 KiB page (BENCHMARKS.md, section 11). Raising both thresholds keeps the
memory a frame freed for the next frame; the process keeps, at most, what it used at its peak.
"""

from __future__ import annotations

import ctypes
import logging

log = logging.getLogger(__name__)

M_TRIM_THRESHOLD = -1          # mallopt parameters, from glibc's malloc.h
M_MMAP_THRESHOLD = -3
# The largest mmap threshold glibc accepts is half its heap size: 32 MiB on 64-bit, 512 KiB on 32-bit
# (armhf, as on a Raspberry Pi's 32-bit OS). Blocks larger than it still come straight from the OS.
MMAP_THRESHOLD = 32 * 2**20 if ctypes.sizeof(ctypes.c_void_p) == 8 else 512 * 2**10
TRIM_THRESHOLD = 128 * 2**20   # free memory at the top of a heap beyond this goes back to the OS


def keep_freed_memory() -> bool:
    """Raise glibc's mmap and trim thresholds for this process; False where the C library is not glibc
    or refused either (said in the log)."""
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the C library the interpreter runs on
    except (OSError, AttributeError):  # musl, macOS, Windows: their allocators are left alone
        log.debug("no mallopt in this C library: memory thresholds left as they are")
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    refused = [name for name, param, value in (("mmap", M_MMAP_THRESHOLD, MMAP_THRESHOLD),
                                               ("trim", M_TRIM_THRESHOLD, TRIM_THRESHOLD))
               if not mallopt(param, value)]
    if refused:
        log.info("the C library refused the %s threshold: freed arrays may go back to the OS", " and ".join(refused))
    return not refused
