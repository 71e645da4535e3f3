"""The one redaction helper: a camera's password never reaches a log line, an error or `check` output."""

from __future__ import annotations

import re


def redact(value: object) -> object:
    """Mask the password of every `scheme://user:password@host` URL in a text.

    The one redaction helper: log lines (edgeemo.cli.main's formatter), error messages and check output
    pass through it, because a source URL may carry a camera's password.
    """
    if isinstance(value, str):
        # `:/+`: a URL passed through pathlib (`detect rtsp://...`) has lost one of its slashes.
        return re.sub(r"(:/+[^/@:\s'\"]*):[^/@\s'\"]*@", r"\1:***@", value)
    return value
