"""A real PulseAudio server for the microphone tests: a null sink whose monitor is the microphone.

Sound played into the sink (``paplay``) comes out of its monitor source, which is what a PortAudio
client (the daemon's MicReader, through ALSA's pulse plugin) records: a microphone in a room where
the test decides what is said. The server runs as the current user (root in CI), without D-Bus or
a session, on a socket of its own, and can be killed and started again like an unplugged device.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from testkit.process import end

SINK = "room"
RATE = 16000   # the sink's (and so the microphone's) rate: the daemon's, so nothing is resampled


def pulseaudio_binaries() -> tuple[str, str, str]:
    found = tuple(shutil.which(name) for name in ("pulseaudio", "paplay", "pactl"))
    if None in found:
        pytest.fail("the microphone tests need a real audio server: install Debian's pulseaudio, "
                    "pulseaudio-utils and libasound2-plugins (see .ci/run)", pytrace=False)
    return found  # type: ignore[return-value]


class AudioServer:
    """A pulseaudio process with one null sink, ``room``, whose monitor is the default source.

    ``env`` points clients at it (PULSE_SERVER); set it before a client opens the microphone.
    """

    def __init__(self, workdir: Path) -> None:
        self.pulseaudio, self.paplay, self.pactl = pulseaudio_binaries()
        self.workdir = workdir
        self.socket = workdir / "native"
        self.script = workdir / "server.pa"
        self.script.write_text(
            f"load-module module-null-sink sink_name={SINK} rate={RATE} channels=1\n"
            f"load-module module-native-protocol-unix auth-anonymous=1 socket={self.socket}\n"
            f"set-default-sink {SINK}\nset-default-source {SINK}.monitor\n")
        self.log = workdir / "pulseaudio.log"
        self.env = {"PULSE_SERVER": f"unix:{self.socket}"}
        self.process: subprocess.Popen | None = None
        self.started_at = 0.0

    def _child_env(self) -> dict[str, str]:
        # HOME and XDG_RUNTIME_DIR in the work folder: no cookie, state or lock in the user's home
        return {**os.environ, **self.env, "HOME": str(self.workdir), "XDG_RUNTIME_DIR": str(self.workdir)}

    def start(self, timeout: float = 15.0) -> None:
        self.socket.unlink(missing_ok=True)  # a killed server leaves its socket behind
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [self.pulseaudio, "-n", "-F", str(self.script), "--daemonize=no", "--exit-idle-time=-1",
                 "--use-pid-file=no", "--log-target=stderr"], stdout=out, stderr=out, env=self._child_env())
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"pulseaudio exited with {self.process.returncode}:\n{self.log.read_text()}")
            if self.socket.exists() and subprocess.run([self.pactl, "info"], env=self._child_env(),
                                                       capture_output=True, timeout=5).returncode == 0:
                self.started_at = time.monotonic()
                return
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"pulseaudio did not answer within {timeout} s:\n{self.log.read_text()}")

    def play(self, path: Path) -> subprocess.Popen:
        """Start playing a sound file into the sink; the caller waits for it."""
        return subprocess.Popen([self.paplay, f"--device={SINK}", str(path)], env=self._child_env(),
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def kill(self) -> None:
        """The microphone's server dies at once (SIGKILL), as when a device is pulled."""
        if self.process is not None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)
            self.process = None

    def stop(self) -> None:
        if self.process is None:
            return
        end(self.process)
        self.process = None
