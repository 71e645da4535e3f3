"""Reading the journal for the dashboard: paging, exports and the share of each emotion per bucket.

Everything here reads `Journal.query` (the one store of events): no second copy of the events.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from typing import Protocol

from edgeemo import LABELS
from edgeemo.core.events import CSV_COLUMNS, csv_row, unix_time

EXPORT_MAX = 200_000
PAGE = 5000
BUCKETS = {"minute": 60, "hour": 3600, "day": 86400}


class EventQuery(Protocol):
    def query(self, since: float | None = None, until: float | None = None, source: str | None = None,
              modality: str | None = None, track: int | None = None, after_seq: int = 0,
              limit: int = 1000) -> list[dict]: ...


def page(journal: EventQuery, limit: int, after_seq: int = 0, **filters) -> tuple[list[dict], int | None]:
    """One page oldest first and the cursor of the next (None when this was the last)."""
    events = journal.query(after_seq=after_seq, limit=limit, **filters)
    return events, (events[-1]["seq"] if len(events) == limit else None)


def select(journal: EventQuery, cap: int = EXPORT_MAX, **filters) -> Iterator[dict]:
    """Every event of a selection, page by page, at most `cap`."""
    cursor, sent = 0, 0
    while sent < cap:
        events, cursor = page(journal, min(PAGE, cap - sent), cursor, **filters)
        yield from events
        sent += len(events)
        if cursor is None:
            return


def csv_rows(events: Iterator[dict]) -> Iterator[str]:
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(CSV_COLUMNS)
    for e in events:
        writer.writerow(csv_row(e))
        if buf.tell() > 64_000:
            yield buf.getvalue()
            buf.seek(0)
            buf.truncate()
    yield buf.getvalue()


def shares(events: Iterator[dict], bucket: str) -> dict:
    """Share of the events in each bucket whose dominant emotion is each label (`end` events left out)."""
    width = BUCKETS[bucket]
    counts: dict[int, list[int]] = {}
    for e in events:
        if e["type"] == "end":
            continue
        start = int(unix_time(e["ts"]) // width * width)
        counts.setdefault(start, [0] * len(LABELS))[LABELS.index(e["emotion"])] += 1
    starts = sorted(counts)
    totals = [sum(counts[t]) for t in starts]
    return {"bucket": bucket, "bucket_s": width, "t": starts, "count": totals,
            "share": {label: [round(counts[t][i] / n, 4) for t, n in zip(starts, totals)]
                      for i, label in enumerate(LABELS)}}
