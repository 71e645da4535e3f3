"""The one interface every sink implements: where committed events go (Frigate's Communicator, minus
commands: we take none yet).

The journal's writer (edgeemo.journal.writer) calls each sink after the commit, from the pipeline's
threads, so no method may block; the daemon builds the list once (edgeemo.service.event_path).
"""

from __future__ import annotations

from typing import Protocol


class Sink(Protocol):
    wants_state: bool  # False: state() does nothing, so nobody need build the faces in view for it

    def publish(self, events: list[dict]) -> None:
        """Committed schema-v1 payloads, in seq order. Must not block the pipeline."""

    def state(self, faces: list[dict]) -> None:
        """After every analysed frame: the reported face tracks in view now."""

    def stop(self) -> None:
        """Deliver what can be delivered within the sink's bound, then let go."""
