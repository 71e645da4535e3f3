"""`edgeemo events list | follow | export`: the journal for people and scripts."""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import sys
import time
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path

from edgeemo.config.schema import Config, ConfigError
from edgeemo.core.events import CSV_COLUMNS, csv_row
from edgeemo.journal.store import Journal, journal_path

FOLLOW_POLL_S = 0.5
RELATIVE = re.compile(r"^(\d+(?:\.\d+)?)([smhd])$")
UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def add_events_parser(sub: argparse._SubParsersAction) -> None:
    events = sub.add_parser("events", help="list, follow or export the events in the journal")
    actions = events.add_subparsers(dest="action", required=True)
    for name, text in (("list", "print matching events, oldest first"),
                       ("follow", "print new events as they come, until Ctrl-C (with --since: older ones first)"),
                       ("export", "write matching events to a file (or stdout) as JSONL or CSV")):
        action = actions.add_parser(name, help=text)
        action.add_argument("--config", type=Path, help="YAML config (its journal.path says where the journal is)")
        action.add_argument("--since", help="ISO-8601 time, or an age such as 90s, 10m, 2h, 7d")
        action.add_argument("--until", help="ISO-8601 time, or an age such as 10m")
        action.add_argument("--source", help="only this source")
        action.add_argument("--modality", choices=["face", "voice", "fused"])
        action.add_argument("--track", type=int, help="only this face track or speech stream")
        action.add_argument("--format", choices=["jsonl", "csv"], default="jsonl")
        if name == "list":
            action.add_argument("--limit", type=int, default=None, help="at most this many (the newest)")
        if name == "export":
            action.add_argument("--out", type=Path, help="file to write (default: stdout); created mode 0600")


def parse_time(text: str | None, key: str, now: float | None = None) -> float | None:
    """Unix seconds from an ISO-8601 time (naive = local time) or an age like `10m`."""
    if text is None:
        return None
    match = RELATIVE.match(text.strip())
    if match:
        return (time.time() if now is None else now) - float(match[1]) * UNIT_S[match[2]]
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ConfigError(f"{key} {text!r}: not an ISO-8601 time (2026-12-01T14:00) or an age (10m, 2h, 7d)") from None
    return moment.timestamp()


def events_main(cfg: Config, args: argparse.Namespace) -> int:
    path = journal_path(cfg.journal)
    if not path.is_file():
        raise ConfigError(f"no journal at {path} (the daemon creates it when it first runs; see journal.path)")
    journal = Journal.open(cfg.journal, repair=False)  # read-only: never moves it aside, works on a full disk
    try:
        since, until = parse_time(args.since, "--since"), parse_time(args.until, "--until")
        filters = {"since": since, "until": until, "source": args.source, "modality": args.modality,
                   "track": args.track}
        if args.action == "follow":
            return follow(journal, filters, args.format, from_start=args.since is not None)
        rows = journal.iter_payloads(**filters)
        if args.action == "list" and args.limit is not None:
            rows = iter(list(rows)[-args.limit:])
        if args.action == "export" and args.out is not None:
            return export_file(rows, args.out, args.format)
        write(rows, sys.stdout, args.format)
        return 0
    except BrokenPipeError:  # `edgeemo events list | head`: the reader has all it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    finally:
        journal.close()


def follow(journal: Journal, filters: dict, fmt: str, from_start: bool) -> int:
    """Poll for new rows (the journal has one writer, the daemon) and print what matches. From the
    end of the journal, like `tail -f`, unless --since asks for older ones (`from_start`)."""
    last = 0 if from_start else journal.last_seq
    print(f"following {journal.path}" + ("" if from_start else f" from seq {last} (new events only; "
                                          "--since for older ones)"), file=sys.stderr, flush=True)
    header = True
    try:
        while True:
            batch = [json.loads(text) for text in journal.iter_payloads(**filters, after_seq=last)]
            if batch:
                last = batch[-1]["seq"]
                write((json.dumps(p, separators=(",", ":")) for p in batch), sys.stdout, fmt, header)
                header = False
                sys.stdout.flush()
            time.sleep(FOLLOW_POLL_S)
    except KeyboardInterrupt:
        return 0


def export_file(rows: Iterable[str], out: Path, fmt: str) -> int:
    try:
        fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # it holds people's emotions
        os.fchmod(fd, 0o600)
    except OSError as exc:
        raise ConfigError(f"--out {out}: {exc.strerror}") from None
    with os.fdopen(fd, "w", newline="") as file:
        count = write(rows, file, fmt)
    print(f"wrote {count} event(s) to {out}", file=sys.stderr)
    return 0


def write(rows: Iterable[str], out, fmt: str, header: bool = True) -> int:
    """Rows of payload JSON as JSONL (verbatim) or CSV (one column per field and label); returns the count."""
    count = 0
    if fmt == "jsonl":
        for text in rows:
            out.write(text + "\n")
            count += 1
        return count
    writer = csv.writer(out)
    if header:
        writer.writerow(CSV_COLUMNS)
    for text in rows:
        writer.writerow(csv_row(json.loads(text)))
        count += 1
    return count

