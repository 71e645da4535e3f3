"""Tell systemd how the daemon is doing (sd_notify(3)): ready, status, watchdog pings, stopping.

The unit runs with ``Type=notify`` and ``WatchdogSec=``, so systemd waits for ``READY=1`` before it
calls the service started, and restarts it when ``WATCHDOG=1`` stops arriving. Outside systemd
(``$NOTIFY_SOCKET`` unset: a shell, a container, the tests) every call is a no-op, so callers never
need to check where they run. A failed send is logged at debug level and otherwise ignored: losing
a status line must never take the pipeline down.

systemd-python (the ``systemd`` extra) is used when installed; otherwise the datagram is written to
the socket directly, which is all sd_notify does and needs no compiled dependency.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable

log = logging.getLogger(__name__)


def _systemd_python_notify() -> Callable[[str], object] | None:
    """`systemd.daemon.notify` when systemd-python is importable, else None."""
    try:
        from systemd import daemon  # type: ignore[import-not-found]
    except ImportError:
        return None
    return getattr(daemon, "notify", None)


def socket_address(value: str) -> str:
    """The address to send to: `@name` is an abstract socket, spelled with a leading NUL byte."""
    return "\0" + value[1:] if value.startswith("@") else value


class SystemdNotifier:
    """Sends sd_notify messages to the service manager; every method is safe to call anywhere."""

    def __init__(self, use_systemd_python: bool = True) -> None:
        """`use_systemd_python=False` forces the built-in socket path (used by the tests)."""
        self._library_notify = _systemd_python_notify() if use_systemd_python else None

    def ready(self) -> None:
        """The pipeline runs: systemd now reports the unit as started."""
        self.notify("READY=1")

    def status(self, text: str) -> None:
        """A one-line state in words, shown by `systemctl status`."""
        # A newline would start a new KEY=VALUE assignment in the message, so keep it to one line.
        self.notify("STATUS=" + " ".join(text.splitlines()))

    def watchdog(self) -> None:
        """Proof of life; send only while frames flow, so a stalled pipeline gets restarted."""
        self.notify("WATCHDOG=1")

    def stopping(self) -> None:
        """Shutdown has begun: systemd stops expecting watchdog pings."""
        self.notify("STOPPING=1")

    def watchdog_interval(self) -> float | None:
        """Seconds between pings (half of WatchdogSec, as sd_watchdog_enabled(3) advises), or None.

        None when no watchdog is configured, or when it is meant for another process
        (WATCHDOG_PID set to a different pid, e.g. a child that inherited the environment).
        """
        usec = os.environ.get("WATCHDOG_USEC")
        pid = os.environ.get("WATCHDOG_PID")
        if not usec or (pid and pid != str(os.getpid())):
            return None
        try:
            value = int(usec)
        except ValueError:
            log.debug("ignoring WATCHDOG_USEC=%r: not an integer", usec)
            return None
        return value / 2_000_000 if value > 0 else None

    def notify(self, message: str) -> bool:
        """Send one message; True when it was handed to systemd, False when skipped or failed."""
        address = os.environ.get("NOTIFY_SOCKET")
        if not address:
            return False
        try:
            if self._library_notify is not None:
                return bool(self._library_notify(message))
            return self._send(address, message)
        except Exception as exc:  # noqa: BLE001 - a status message must never crash the daemon
            log.debug("sd_notify %r to %s failed: %s", message, address, exc)
            return False

    @staticmethod
    def _send(address: str, message: str) -> bool:
        """What sd_notify(3) does: one datagram to the unix socket named in $NOTIFY_SOCKET."""
        if not address.startswith(("/", "@")):
            # systemd also knows vsock: addresses (for VMs); this daemon does not run there.
            log.debug("sd_notify: unsupported NOTIFY_SOCKET %r", address)
            return False
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.sendto(message.encode(), socket_address(address))
        return True
