"""Shared fixtures: real mosquitto brokers on loopback ports (plain, and TLS with a password file),
and an MQTT subscriber that records (their classes live in testkit.broker, which the benchmarks use too)."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from testkit.broker import Broker, Subscriber, TlsBroker, mosquitto_binary


@pytest.fixture(autouse=True)
def own_journal(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Each test (and every daemon it starts) gets a journal of its own, away from the user's data dir."""
    data = tmp_path_factory.mktemp("xdg-data")
    monkeypatch.setenv("XDG_DATA_HOME", str(data))
    monkeypatch.delenv("STATE_DIRECTORY", raising=False)
    return data / "edgeemo" / "journal.db"


@pytest.fixture(scope="session")
def mqtt_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    broker = Broker(mosquitto_binary(), tmp_path_factory.mktemp("mosquitto"))
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()



@pytest.fixture(scope="session")
def tls_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsBroker]:
    if shutil.which("mosquitto_passwd") is None:
        pytest.fail("the TLS tests need mosquitto_passwd (Debian's mosquitto package)", pytrace=False)
    broker = TlsBroker(mosquitto_binary(), tmp_path_factory.mktemp("mosquitto-tls"))
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture
def subscribe(mqtt_broker: Broker) -> Iterator[Callable[[str], Subscriber]]:
    """Factory: `sub = subscribe("edgeemo/dev/#")`; every subscriber is closed after the test."""
    subscribers: list[Subscriber] = []

    def make(topic: str) -> Subscriber:
        subscribers.append(Subscriber(mqtt_broker, topic))
        return subscribers[-1]

    yield make
    for sub in subscribers:
        sub.close()
