"""sd_notify messages reach a real unix datagram socket, exactly as systemd would receive them."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from edgeemo.service.sdnotify import SystemdNotifier, socket_address


@pytest.fixture
def notify_socket(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[socket.socket]:
    """A bound datagram socket standing in for systemd, named in $NOTIFY_SOCKET."""
    path = tmp_path / "notify"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        sock.settimeout(2)
        monkeypatch.setenv("NOTIFY_SOCKET", str(path))
        yield sock


def notifier() -> SystemdNotifier:
    """The raw-socket path, even where systemd-python is installed."""
    return SystemdNotifier(use_systemd_python=False)


def received(sock: socket.socket) -> str:
    return sock.recv(4096).decode()


def test_messages(notify_socket: socket.socket) -> None:
    sd = notifier()
    sd.ready()
    assert received(notify_socket) == "READY=1"
    sd.status("running: 12.5 frames/s, 2 faces")
    assert received(notify_socket) == "STATUS=running: 12.5 frames/s, 2 faces"
    sd.watchdog()
    assert received(notify_socket) == "WATCHDOG=1"
    sd.stopping()
    assert received(notify_socket) == "STOPPING=1"


def test_status_stays_one_line(notify_socket: socket.socket) -> None:
    notifier().status("camera lost\nreconnecting")
    assert received(notify_socket) == "STATUS=camera lost reconnecting"


def test_notify_reports_success(notify_socket: socket.socket) -> None:
    assert notifier().notify("READY=1") is True
    assert received(notify_socket) == "READY=1"


def test_abstract_socket(monkeypatch: pytest.MonkeyPatch) -> None:
    name = f"edgeemo-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(2)
        monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
        notifier().ready()
        assert received(sock) == "READY=1"


def test_socket_address() -> None:
    assert socket_address("/run/systemd/notify") == "/run/systemd/notify"
    assert socket_address("@abstract") == "\0abstract"


def test_no_op_without_notify_socket(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    sd = notifier()
    assert sd.notify("READY=1") is False
    sd.ready(), sd.status("x"), sd.watchdog(), sd.stopping()  # nothing to send to, nothing raised


def test_send_failure_does_not_raise(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "nobody-listens"))
    sd = notifier()
    assert sd.notify("READY=1") is False
    sd.watchdog()


def test_unsupported_address_is_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", "vsock:2:1234")
    assert notifier().notify("READY=1") is False


def test_library_path_is_used_when_available(notify_socket: socket.socket) -> None:
    """With systemd-python present the library sends; without it the fallback does. Either way it arrives."""
    SystemdNotifier().ready()
    assert received(notify_socket) == "READY=1"


@pytest.mark.parametrize(
    ("usec", "pid", "expected"),
    [
        ("30000000", None, 15.0),
        ("30000000", "self", 15.0),
        ("30000000", "other", None),  # meant for another process
        ("500000", None, 0.25),
        ("0", None, None),
        ("soon", None, None),
        (None, None, None),
    ],
)
def test_watchdog_interval(monkeypatch: pytest.MonkeyPatch, usec: str | None, pid: str | None,
                           expected: float | None) -> None:
    for name, value in (("WATCHDOG_USEC", usec), ("WATCHDOG_PID", pid)):
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            pids = {"self": str(os.getpid()), "other": str(os.getpid() + 1)}
            monkeypatch.setenv(name, pids.get(value, value))
    assert notifier().watchdog_interval() == expected
