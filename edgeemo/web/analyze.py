"""POST /api/analyze: a picture, video or sound file from the browser, analysed once and forgotten.

The analysis is pipeline.fileanalysis.FileAnalyzer, the one `edgeemo detect` runs, so the readings are the
same. It runs on one worker thread beside the live pipeline (never on the event loop); at most
`web.analyze.queue` uploads wait behind it, the next is answered 429. The upload lives in memory and,
for the decoders, in a private temporary file (mkstemp: mode 0600) that is deleted as soon as the
analysis ends; nothing goes to the journal.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from starlette.requests import Request

from edgeemo.config.schema import Config
from edgeemo.pipeline.fileanalysis import FileAnalyzer, TooLong
from edgeemo.sources.media import media_duration
from edgeemo.sources.spec import AUDIO_SUFFIXES, IMAGE_SUFFIXES, SourceError

log = logging.getLogger(__name__)
FORM_OVERHEAD = 64 * 1024   # multipart headers and boundaries around the file


class Refused(Exception):
    """An upload the API answers with `status` and a message naming the limit or the problem."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class UploadAnalyzer:
    """One worker thread and a bounded number of uploads in the house (reading, waiting, analysed)."""

    def __init__(self, cfg: Config) -> None:
        self.limits = cfg.web.analyze
        self.files = FileAnalyzer(cfg, limit_s=self.limits.max_seconds)
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="analyze", initializer=lower_priority)
        self._lock = threading.Lock()
        self.inside = 0

    def enter(self) -> bool:
        """Take a place, False when the worker and its queue are full (the caller answers 429)."""
        with self._lock:
            if self.inside > self.limits.queue:
                return False
            self.inside += 1
            return True

    def leave(self) -> None:
        with self._lock:
            self.inside -= 1

    async def read(self, request: Request) -> tuple[bytes, str, str]:
        """(data, file name, content type) of the multipart field `file`, at most max_bytes."""
        limit = self.limits.max_bytes
        too_big = Refused(413, f"the file is larger than web.analyze.max_bytes ({limit} bytes)")
        if int(request.headers.get("content-length") or 0) > limit + FORM_OVERHEAD:
            raise too_big
        form = await bounded(request, limit + FORM_OVERHEAD, too_big).form(max_files=1, max_fields=4)
        try:
            upload = form.get("file")
            if upload is None or isinstance(upload, str):
                raise Refused(400, "send the file as multipart/form-data in the field 'file'")
            data = await upload.read()
            name, kind = upload.filename or "", upload.content_type or ""
        finally:
            await form.close()
        if len(data) > limit:
            raise too_big
        if not data:
            raise Refused(422, "the file is empty")
        return data, name, kind

    async def analyse(self, data: bytes, name: str, content_type: str) -> dict:
        return await asyncio.get_running_loop().run_in_executor(self._pool, self._analyse, data, name, content_type)

    def _analyse(self, data: bytes, name: str, content_type: str) -> dict:
        kind = kind_of(name, content_type)
        fd, path = tempfile.mkstemp(prefix="edgeemo-upload-", suffix=safe_suffix(name))  # 0600
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            if kind != "image":
                self._check_duration(path, kind)
            try:
                result = self.files.analyse(Path(path), kind)
            except SourceError:
                result = None
            except TooLong:
                raise self._too_long("") from None
            if result is None:
                what = {"image": "an image", "video": "a video", "audio": "a sound file"}[kind]
                raise Refused(422, f"{name or 'the file'}: not {what} that can be read (damaged, or another kind)")
            return result
        finally:
            os.unlink(path)

    def _check_duration(self, path: str, kind: str) -> None:
        try:
            seconds = media_duration(path)
        except Exception:  # noqa: BLE001 - PyAV raises its own errors for anything it cannot open
            what = "a video" if kind == "video" else "a sound file"
            raise Refused(422, f"not {what} that can be read (damaged, or another kind)") from None
        if seconds > self.limits.max_seconds:
            raise self._too_long(f"{seconds:.1f} s, ")

    def _too_long(self, how_long: str) -> Refused:
        """A file past the limit, as its header says (`12.0 s, `) or as decoding found (``)."""
        limit = self.limits.max_seconds
        return Refused(422, f"the file lasts {how_long}more than web.analyze.max_seconds ({limit:g} s)")

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


def lower_priority() -> None:
    """The worker yields the CPU to the live pipeline when both want it (Linux nice is per thread)."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)
    except (AttributeError, OSError):  # not Linux, or not allowed: same priority, still one worker
        pass


def kind_of(name: str, content_type: str) -> str:
    """image, video or audio: by the file name's suffix, else by the browser's content type."""
    suffix = Path(name).suffix.lower()
    if suffix in IMAGE_SUFFIXES or (not suffix and content_type.startswith("image/")):
        return "image"
    if suffix in AUDIO_SUFFIXES or (not suffix and content_type.startswith("audio/")):
        return "audio"
    return "video"


def safe_suffix(name: str) -> str:
    suffix = Path(name).suffix.lower()
    return suffix if re.fullmatch(r"\.[a-z0-9]{1,5}", suffix) else ""


def bounded(request: Request, limit: int, error: Exception) -> Request:
    """The request with a body that raises `error` once more than `limit` bytes came (chunked uploads too)."""
    seen = 0

    async def receive():
        nonlocal seen
        message = await request.receive()
        seen += len(message.get("body", b""))
        if seen > limit:
            raise error
        return message

    return Request(request.scope, receive)
