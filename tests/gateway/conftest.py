"""Fixtures for the gateway tests: a real Mosquitto on loopback, a gateway directory.

``make_broker(devices)`` starts the project's shipped broker configuration
(see tests/gateway/env.py) on a free loopback port and stops it after the
test; ``make_gateway(broker)`` creates a gateway directory pointing at it.
Tests that need a broker fail when Mosquitto is not installed: the real
broker is part of what they test (``make system`` installs it).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway.transport.broker import BrokerProcess, QueueLimits
from tests.gateway.env import (
    Broker,
    GatewayDir,
    cleanup_gateway,
    create_gateway_dir,
    mosquitto_missing,
    start_test_broker,
)


@pytest.fixture
def make_broker(tmp_path: Path) -> Iterator[Callable[..., Broker]]:
    if mosquitto_missing():
        pytest.fail("mosquitto is not installed: run `make system` (scripts/ensure-system.sh)")
    started: list[BrokerProcess] = []

    def make(
        devices: list[str],
        *,
        queue: QueueLimits | None = None,
        port: int | None = None,
        **options: Any,
    ) -> Broker:
        broker = start_test_broker(
            tmp_path / f"broker{len(started)}", devices, queue=queue, port=port, **options
        )
        started.append(broker.process)
        return broker

    yield make
    for proc in started:
        if proc.running:
            proc.stop()


@pytest.fixture
def make_gateway(tmp_path: Path) -> Iterator[Callable[..., GatewayDir]]:
    made: list[GatewayDir] = []

    def make(broker: Broker, **options: Any) -> GatewayDir:
        gw = create_gateway_dir(tmp_path / f"gw{len(made)}", broker, **options)
        made.append(gw)
        return gw

    yield make
    for gw in made:
        cleanup_gateway(gw)
