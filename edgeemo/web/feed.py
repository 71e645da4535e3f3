"""The dashboard's live sink: keeps the faces in view now and fans events and state out to SSE clients.

The pipeline thread only stores a reference and, when someone listens, wakes each client's loop
once; it never blocks: a slow client's bounded queue drops its oldest item. Each client loop sends
the state at most `state_hz` times a second and only when it changed, so an open dashboard costs
little at 30 frames/s, and nothing is done per frame while nobody is connected.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from dataclasses import dataclass, field

VOICE_MODALITIES = ("voice", "fused")


@dataclass
class Subscriber:
    """One SSE client: its event loop, a bounded queue of events, and a wake-up flag."""

    loop: asyncio.AbstractEventLoop
    queue_size: int
    events: deque = field(init=False)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    dropped: int = 0
    _pending: bool = False

    def __post_init__(self) -> None:
        self.events = deque(maxlen=self.queue_size)

    def push(self, event: dict | None) -> None:
        """From any thread. `None` only signals that the state changed."""
        if event is not None:
            if len(self.events) == self.queue_size:
                self.dropped += 1
            self.events.append(event)
        if not self._pending:
            self._pending = True
            try:
                self.loop.call_soon_threadsafe(self._set)
            except RuntimeError:  # the web server's loop has closed: this client is gone
                pass

    def _set(self) -> None:
        self._pending = False
        self.wake.set()


class LiveFeed:
    """Sink interface: publish(events), state(faces), stop()."""

    wants_state = True

    def __init__(self, queue_size: int = 256) -> None:
        self.queue_size = queue_size
        self.faces: list[dict] = []
        self.state_at = 0.0                     # time.time() of the latest state
        self.state_version = 0
        self.voice: dict[tuple[str, str], dict] = {}   # (source, modality) -> latest voice/fused event
        self._subscribers: list[Subscriber] = []
        self._lock = threading.Lock()
        self.stopped = False

    # --- the sink interface (pipeline thread) -------------------------------------------------
    def publish(self, events: list[dict]) -> None:
        for event in events:
            if event.get("modality") in VOICE_MODALITIES:
                self.voice[(event["source"], event["modality"])] = event
        subscribers = self._subscribers
        for sub in subscribers:
            for event in events:
                sub.push(event)

    def state(self, faces: list[dict]) -> None:
        self.faces = faces
        self.state_at = time.time()
        self.state_version += 1
        for sub in self._subscribers:
            sub.push(None)

    def stop(self) -> None:
        self.stopped = True
        for sub in self._subscribers:
            sub.push(None)

    # --- readers (web server) -------------------------------------------------------------------
    def snapshot(self) -> dict:
        """What /api/state answers: the faces in view now and the latest voice/fused readings."""
        return {"ts": self.state_at or None, "faces": list(self.faces),
                "voice": list(self.voice.values())}

    def subscribe(self, loop: asyncio.AbstractEventLoop) -> Subscriber:
        sub = Subscriber(loop, self.queue_size)
        with self._lock:  # copy-on-write: the pipeline iterates the old list without a lock
            self._subscribers = [*self._subscribers, sub]
        return sub

    def unsubscribe(self, sub: Subscriber) -> None:
        with self._lock:
            self._subscribers = [s for s in self._subscribers if s is not sub]

    @property
    def listeners(self) -> int:
        return len(self._subscribers)
