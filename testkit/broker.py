"""Real mosquitto brokers on loopback ports (plain, and TLS with a password file), and an MQTT
subscriber that records: what the tests and the benchmarks both start."""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from testkit.net import free_port
from testkit.process import end

Message = tuple[str, bytes, bool]  # topic, payload, retain flag


def mosquitto_binary() -> str:
    found = shutil.which("mosquitto") or ("/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None)
    if found is None:
        pytest.fail("the MQTT tests need a real broker: install Debian's mosquitto package "
                    "(apt-get install mosquitto); it does not need to run as a service", pytrace=False)
    return found


class Broker:
    """A mosquitto process that tests can stop and start again on the same port (reconnect tests)."""

    host = "127.0.0.1"

    def __init__(self, binary: str, workdir: Path, persistent: bool = False) -> None:
        self.binary = binary
        self.port = free_port()
        self.conf = workdir / "mosquitto.conf"
        # persistent: sessions and their queued messages survive a restart of the broker
        # mosquitto started as root drops to user `mosquitto`, which could not save its database here
        persistence = (f"persistence true\npersistence_location {workdir}/\nuser {pwd.getpwuid(os.getuid()).pw_name}\n"
                       if persistent else "persistence false\n")
        self.conf.write_text(f"listener {self.port} {self.host}\nallow_anonymous true\n{persistence}")
        self.log = workdir / "mosquitto.log"
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    def start(self, timeout: float = 10.0) -> None:
        with self.log.open("ab") as out:
            self.process = subprocess.Popen([self.binary, "-c", str(self.conf)], stdout=out, stderr=out)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"mosquitto exited with {self.process.returncode}:\n{self.log.read_text()}")
            try:
                socket.create_connection((self.host, self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"mosquitto did not listen on port {self.port} within {timeout} s")

    def stop(self) -> None:
        if self.process is None:
            return
        end(self.process)
        self.process = None


class Subscriber:
    """Records every message on a topic filter; resubscribes after a broker restart."""

    def __init__(self, broker: Broker, topic: str, timeout: float = 5.0, persistent: bool = False,
                 configure: Callable[[mqtt.Client], None] | None = None) -> None:
        """`persistent`: a fixed client id and a persistent QoS 1 session, so the broker queues
        what arrives while this subscriber is away (and keeps it across its own restart)."""
        self.topic = topic
        self._messages: list[Message] = []
        self._cond = threading.Condition()
        self._subscribed = threading.Event()
        client_id = f"test-sub-{uuid.uuid5(uuid.NAMESPACE_URL, topic).hex[:8] if persistent else uuid.uuid4().hex[:8]}"
        self.client = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2, client_id=client_id,
                                  clean_session=not persistent)
        self.client.reconnect_delay_set(1, 2)
        self.client.on_connect = lambda client, *_: client.subscribe(topic, qos=1)
        self.client.on_subscribe = lambda *_: self._subscribed.set()
        self.client.on_message = self._on_message
        if configure is not None:  # TLS and login for a TlsBroker
            configure(self.client)
        self.client.connect(broker.host, broker.port, keepalive=10)
        self.client.loop_start()
        if not self._subscribed.wait(timeout):
            self.close()
            raise TimeoutError(f"could not subscribe to {topic} on {broker.url}")

    def _on_message(self, _client: mqtt.Client, _userdata: object, msg: mqtt.MQTTMessage) -> None:
        with self._cond:
            self._messages.append((msg.topic, msg.payload, bool(msg.retain)))
            self._cond.notify_all()

    @property
    def messages(self) -> list[Message]:
        with self._cond:
            return list(self._messages)

    def payloads(self, topic: str | None = None) -> list[bytes]:
        return [payload for t, payload, _ in self.messages if topic is None or t == topic]

    def wait_for(self, predicate: Callable[[list[Message]], bool], timeout: float = 5.0) -> list[Message]:
        """Wait until predicate(all messages so far) is true; returns them, or fails showing what came."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not predicate(list(self._messages)):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"timed out after {timeout} s on {self.topic}; got {self._messages}")
                self._cond.wait(remaining)
            return list(self._messages)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def openssl(*args: str | Path) -> None:
    subprocess.run(["openssl", *map(str, args)], check=True, capture_output=True, timeout=30)


def make_ca(folder: Path, name: str) -> tuple[Path, Path]:
    """A self-signed CA (EC P-256, two days): (certificate, key)."""
    cert, key = folder / f"{name}.pem", folder / f"{name}.key"
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2",
            "-subj", f"/CN={name}", "-keyout", key, "-out", cert)
    return cert, key


def make_server_cert(folder: Path, ca: tuple[Path, Path], name: str, san: str) -> tuple[Path, Path]:
    """A server certificate signed by `ca` for the subjectAltName `san` (e.g. IP:127.0.0.1,DNS:localhost)."""
    cert, key, csr, ext = (folder / f"{name}.{suffix}" for suffix in ("pem", "key", "csr", "ext"))
    ext.write_text(f"subjectAltName={san}\n")
    openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-subj", f"/CN={name}",
            "-keyout", key, "-out", csr)
    openssl("x509", "-req", "-in", csr, "-CA", ca[0], "-CAkey", ca[1], "-CAcreateserial", "-days", "2",
            "-extfile", ext, "-out", cert)
    return cert, key


class TlsBroker(Broker):
    """mosquitto with only a TLS listener and a password file (no anonymous clients).

    `ca` signed the server certificate (made for `san`); `wrong_ca` signed nothing this broker shows.
    """

    user = "edgeemo"
    password = "s3cret-mqtt-Pa55"

    def __init__(self, binary: str, workdir: Path, san: str = "IP:127.0.0.1,DNS:localhost") -> None:
        super().__init__(binary, workdir)
        self.ca = make_ca(workdir, "test-ca")
        self.wrong_ca = make_ca(workdir, "wrong-ca")
        self.server = make_server_cert(workdir, self.ca, "server", san)
        passwd = workdir / "passwd"
        subprocess.run(["mosquitto_passwd", "-b", "-c", str(passwd), self.user, self.password], check=True,
                       capture_output=True, timeout=30)
        self.conf.write_text(f"listener {self.port} {self.host}\ncafile {self.ca[0]}\ncertfile {self.server[0]}\n"
                             f"keyfile {self.server[1]}\nallow_anonymous false\npassword_file {passwd}\n"
                             # Run as root (CI), mosquitto would drop to its own user, who cannot read tmp_path.
                             f"user {pwd.getpwuid(os.getuid()).pw_name}\npersistence false\n")

    @property
    def url(self) -> str:
        return f"mqtts://{self.user}@{self.host}:{self.port}"

    def configure(self, client: mqtt.Client) -> None:
        """TLS with the right CA and the right password, for the tests' own clients."""
        client.tls_set(ca_certs=str(self.ca[0]))
        client.username_pw_set(self.user, self.password)

