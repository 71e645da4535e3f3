"""The schema-v1 event payload (``edgeemo/event.schema.json``) and its one-line JSON form."""

from __future__ import annotations

import json
import time
from datetime import datetime, timezone
from typing import Any

import numpy as np

from edgeemo import LABELS
from edgeemo.core.types import TrackEvent

SCHEMA_VERSION = 1


def iso_utc(now: float | None = None) -> str:
    """Unix time as ISO-8601 UTC with milliseconds and a `Z`, the form the schema requires."""
    moment = datetime.fromtimestamp(time.time() if now is None else now, tz=timezone.utc)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


CSV_COLUMNS = ["seq", "ts", "device", "source", "pts", "type", "track", "modality", "emotion", "confidence",
               *LABELS, "box"]


def csv_row(payload: dict) -> list:
    """A payload as one CSV row under CSV_COLUMNS (a probability column per label, the box as "x y w h")."""
    p = payload
    box = "" if p["box"] is None else " ".join(str(v) for v in p["box"])
    return [p["seq"], p["ts"], p["device"], p["source"], p["pts"], p["type"], p["track"], p["modality"],
            p["emotion"], p["confidence"], *(p["probs"][label] for label in LABELS), box]


def unix_time(iso: str) -> float:
    """The inverse of iso_utc: a payload's `ts` as Unix seconds."""
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def rounded_probs(probs: Any) -> list[float]:
    """Probabilities rounded to 4 decimals that still sum to 1: the largest absorbs the rounding error.

    Subscribers check `sum == 1`; plain rounding of 7 values can miss that by up to 3.5e-4.
    """
    p = np.asarray(probs, dtype=np.float64).reshape(-1)
    if p.shape != (len(LABELS),):
        raise ValueError(f"expected {len(LABELS)} probabilities, got {p.shape[0]}")
    p = np.where(p > 0, p, 0.0)  # NaN and negatives count as 0 (NaN > 0 is false); +inf is caught below
    total = float(p.sum())
    p = p / total if 0 < total < np.inf else np.full(len(LABELS), 1.0 / len(LABELS))
    out = [round(x, 4) for x in p.tolist()]
    top = int(np.argmax(p))
    out[top] = round(1.0 - (sum(out) - out[top]), 4)
    return out


def labelled(probs: Any) -> dict:
    """The winning label, its confidence and every probability, rounded as in events (rounded_probs)."""
    rounded = dict(zip(LABELS, rounded_probs(probs)))
    best = LABELS[int(np.argmax(np.asarray(probs, dtype=np.float64).reshape(-1)))]
    return {"emotion": best, "confidence": rounded[best], "probs": rounded}


def event_payload(event: TrackEvent, seq: int, device: str, now: float | None = None) -> dict:
    """The schema-v1 dict for one event; `now` (Unix time) only to make tests deterministic."""
    probs = rounded_probs(event.probs)
    top = int(np.argmax(probs))
    payload = {
        "v": SCHEMA_VERSION,
        "seq": seq,
        "ts": iso_utc(now),
        "device": device,
        "source": event.source,
        "pts": round(max(0.0, float(event.pts)), 3),
        "type": event.type,
        "track": int(event.track),
        "modality": event.modality,
        "emotion": LABELS[top],
        "confidence": probs[top],
        "probs": dict(zip(LABELS, probs)),
        "box": None if event.box is None else [int(v) for v in event.box],
    }
    if event.components:
        payload["components"] = {name: dict(zip(LABELS, rounded_probs(p))) for name, p in event.components.items()}
    return payload


def _jsonable(value: Any) -> Any:
    """json.dumps fallback for numpy scalars and arrays that callers may leave in state dicts."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def to_json(payload: Any) -> str:
    """Compact JSON, one line (the event log is JSONL)."""
    return json.dumps(payload, separators=(",", ":"), default=_jsonable)
