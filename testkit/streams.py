"""A live stream on loopback for fault tests: ffmpeg serving the sample as MPEG-TS over HTTP.

`ffmpeg -listen 1` serves a single reader and exits when that reader goes away, so the server is
started again for each connection while it is meant to be up. Tests unplug it (`kill`), plug it
back (`start`), freeze it (`pause`: SIGSTOP) and thaw it (`resume`: SIGCONT).
"""

from __future__ import annotations

import signal
import subprocess
import threading
import time
from pathlib import Path

from edgeemo.core.resources import sample_video


class StreamServer:
    """The sample looped in real time at http://127.0.0.1:PORT/cam.ts, one reader at a time."""

    def __init__(self, port: int, log: Path, video: bool = True, serve: bool = True) -> None:
        """`video=False`: the sample's sound only, like a network microphone; `serve=False`: not up yet."""
        self.url = f"http://127.0.0.1:{port}/cam.ts"
        self.media = sample_video()
        self.video = video
        self.log = log
        self.up = False
        self.started_at = 0.0            # monotonic time of the latest start()
        self.process: subprocess.Popen | None = None
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._keeper = threading.Thread(target=self._keep_serving, daemon=True)
        self._keeper.start()
        if serve:
            self.start()

    def _spawn(self) -> subprocess.Popen:
        args = ["ffmpeg", "-nostdin", "-loglevel", "error", "-re", "-stream_loop", "-1", "-i", str(self.media),
                "-c", "copy", *([] if self.video else ["-vn"]), "-f", "mpegts", "-listen", "1", self.url]
        with self.log.open("ab") as out:
            return subprocess.Popen(args, stdout=out, stderr=out)

    def _keep_serving(self) -> None:
        while not self._closed.wait(0.05):
            with self._lock:
                if self.up and (self.process is None or self.process.poll() is not None):
                    self.process = self._spawn()

    def start(self) -> None:
        with self._lock:
            self.up, self.started_at = True, time.monotonic()
            if self.process is None or self.process.poll() is not None:
                self.process = self._spawn()
        time.sleep(0.2)  # ffmpeg listens within this

    def kill(self) -> None:
        """Unplug: the server is gone and stays gone until start()."""
        with self._lock:
            self.up = False
            if self.process is not None:
                self.process.kill()
                self.process.wait()
                self.process = None

    def pause(self) -> None:
        """Freeze the stream: the connection stays open, nothing more arrives."""
        with self._lock:
            self.up = False  # a stopped process is not replaced
            assert self.process is not None and self.process.poll() is None
            self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        with self._lock:
            if self.process is not None:
                self.process.send_signal(signal.SIGCONT)
            self.up, self.started_at = True, time.monotonic()

    def close(self) -> None:
        self.kill()
        self._closed.set()
        self._keeper.join(5)
