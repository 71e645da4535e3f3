"""The rotating JSONL event log and stdout: a line per event, written after the journal commit.

Scripts and monitoring read these files; the journal (edgeemo.journal) is the record.
"""

from __future__ import annotations

import logging
import os
import sys
from logging.handlers import RotatingFileHandler
from pathlib import Path

from edgeemo.config.schema import ConfigError, EventLogConfig
from edgeemo.core.events import to_json
from edgeemo.core.metrics import Metrics

log = logging.getLogger(__name__)


def default_event_log_path() -> Path:
    """Under systemd's LogsDirectory= when the unit sets one, else the working directory."""
    logs = os.environ.get("LOGS_DIRECTORY")
    if logs:
        return Path(logs.split(":")[0]) / "events.jsonl"
    return Path("edgeemo-events.jsonl")


class _EventFileHandler(RotatingFileHandler):
    """RotatingFileHandler that counts write errors instead of printing a traceback per event."""

    def __init__(self, path: Path, cfg: EventLogConfig, metrics: Metrics | None) -> None:
        super().__init__(path, maxBytes=cfg.max_bytes, backupCount=cfg.backups, encoding="utf-8")
        self.setFormatter(logging.Formatter("%(message)s"))
        self._metrics = metrics

    def _open(self):  # type: ignore[no-untyped-def]
        """Owner-only (0600), whatever the umask or an older file's mode: the lines hold emotions.

        Called for the file and again after every rotation (the rotated copies keep this mode).
        """
        stream = super()._open()
        os.chmod(self.baseFilename, 0o600)
        return stream

    def handleError(self, record: logging.LogRecord) -> None:
        if self._metrics is not None:
            self._metrics.errors.labels(where="event_log").inc()
        log.warning("cannot write the event log %s: %s", self.baseFilename, sys.exc_info()[1])


class EventLog:
    """Every event payload as one JSON line in a size-rotated file, and optionally on stdout.

    The journal is the record; the file is for scripts that tail it; stdout is the CLI's output.
    The rotating handler is used directly (not through a logger) so events never mix with diagnostic logging.
    """

    wants_state = False

    def __init__(self, cfg: EventLogConfig, metrics: Metrics | None = None) -> None:
        self.path = Path(cfg.path) if cfg.path is not None else default_event_log_path()
        self._handler: _EventFileHandler | None = None
        if cfg.enabled:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._handler = _EventFileHandler(self.path, cfg, metrics)
            except OSError as exc:
                raise ConfigError(f"event_log.path: cannot write {self.path}: {exc.strerror or exc}") from None
        self._stdout = cfg.stdout
        self._metrics = metrics

    def publish(self, events: list[dict]) -> None:
        for payload in events:
            self.write(payload)

    def state(self, faces: list[dict]) -> None:
        """The log holds events only."""

    def stop(self) -> None:
        self.close()

    def write(self, payload: dict) -> None:
        line = to_json(payload)
        if self._handler is not None:
            self._handler.handle(logging.makeLogRecord({"msg": line, "levelno": logging.INFO}))
        if self._stdout:
            self._print(line)

    def _print(self, line: str) -> None:
        try:
            sys.stdout.write(line + "\n")
            sys.stdout.flush()
        except (OSError, ValueError) as exc:  # a closed pipe (`edgeemo | head`) must not stop the daemon
            self._stdout = False
            log.warning("stdout is gone (%s); events are no longer printed (the journal keeps them)", exc)

    def close(self) -> None:
        if self._handler is not None:
            self._handler.close()
