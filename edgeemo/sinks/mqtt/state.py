"""What the retained state topic says: the faces in view, each source's current voice and fused reading,
and the share of the faces in view per emotion. Home Assistant's sensors read it (sinks.mqtt.discovery)."""

from __future__ import annotations

from edgeemo import LABELS

READING_KEYS = ("emotion", "confidence")


class StateBook:
    """Kept up to date from the events (voice, fused) and the faces in view; `body()` is the state to publish."""

    def __init__(self, sources: list[str]) -> None:
        self.faces: list[dict] = []
        self.readings: dict[str, dict[str, dict | None]] = {s: {"voice": None, "fused": None} for s in sources}

    def see_events(self, events: list[dict]) -> bool:
        """Take the voice and fused events' readings (an `end` clears one); True when something changed."""
        changed = False
        for event in events:
            if event["modality"] == "face":
                continue
            reading = None if event["type"] == "end" else {key: event[key] for key in READING_KEYS}
            streams = self.readings.setdefault(event["source"], {"voice": None, "fused": None})
            changed |= streams[event["modality"]] != reading
            streams[event["modality"]] = reading
        return changed

    def body(self) -> dict:
        """`sources`: {name: {"voice", "fused"}} (null while there is none); `share`: 0-1 per emotion."""
        counts = {label: 0 for label in LABELS}
        for face in self.faces:
            if face.get("emotion") in counts:
                counts[face["emotion"]] += 1
        share = {label: round(n / len(self.faces), 4) if self.faces else 0.0 for label, n in counts.items()}
        return {"sources": {name: dict(streams) for name, streams in self.readings.items()}, "share": share}
