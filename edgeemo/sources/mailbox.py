"""The hand-off from the capture threads to the analysis: one slot per source, newest frame wins (lossless: a short queue)."""

from __future__ import annotations

import threading
import time
from collections import deque

from edgeemo.core.types import Frame
from edgeemo.core.metrics import Metrics

LOSSLESS_DEPTH = 8   # frames a lossless reader may decode ahead (see Mailbox)


class Mailbox:
    """One slot per source; the analysis side takes frames round-robin across sources.

    A live source's slot holds one frame, the newest. A lossless reader fills its slot up to
    LOSSLESS_DEPTH frames and, once it is full, waits until the analysis has taken half of them: on
    one CPU the two threads then take turns in bursts of frames, not at every frame.
    """

    def __init__(self, sources: list[str], metrics: Metrics | None = None) -> None:
        self.sources = list(sources)
        self._slots: dict[str, deque[Frame]] = {name: deque() for name in sources}
        self._open = set(sources)
        self._cond = threading.Condition()
        self._metrics = metrics
        self._turn = 0

    def put(self, frame: Frame, lossless: bool, stop: threading.Event) -> None:
        with self._cond:
            slot = self._slots[frame.source]
            if lossless:
                if len(slot) >= LOSSLESS_DEPTH:
                    while len(slot) > LOSSLESS_DEPTH // 2 and not stop.is_set():
                        self._cond.wait(0.1)
            elif slot:
                slot.clear()
                if self._metrics:
                    self._metrics.frames_dropped.labels(source=frame.source, reason="backlog").inc()
            slot.append(frame)
            if len(slot) == 1:  # the analysis may be waiting for a frame
                self._cond.notify_all()

    def close(self, source: str) -> None:
        with self._cond:
            self._open.discard(source)
            self._cond.notify_all()

    def get(self, timeout: float = 0.5) -> Frame | None | bool:
        """The next frame; None when every source has ended and been drained; False on timeout."""
        names = list(self._slots)
        with self._cond:
            deadline = time.monotonic() + timeout
            while True:
                for k in range(len(names)):
                    name = names[(self._turn + k) % len(names)]
                    slot = self._slots[name]
                    if slot:
                        frame = slot.popleft()
                        self._turn = (self._turn + k + 1) % len(names)
                        if len(slot) == LOSSLESS_DEPTH // 2:  # a lossless reader may be waiting for room
                            self._cond.notify_all()
                        return frame
                if not self._open:
                    return None
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(remaining)
