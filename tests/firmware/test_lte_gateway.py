"""A truck logger uploads over LTE-M to a real Mosquitto and the real gateway.

The firmware's core (ct_core, ct_queue, ct_state, ct_uplink) and ct_lte
run under CPython. The SIM7080G is the fake of tests/firmware/fakes (AT
commands on simulated time); PPP is faked at the socket level: the MQTT
client (demo.sim.PahoClient, umqtt.simple's API on paho) can reach the
broker only while the fake PPP link is up, and its connection is cut when
the network drops the PDN connection. The broker is the shipped
configuration (passwords, per-device ACLs); the gateway verifies, stores and
acks (docs/protocol.md §5). Unproven here: lwIP's PPP negotiation with the
real modem, and TLS over it (see docs/decisions.md D33).
"""

from __future__ import annotations

import contextlib
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from demo.sim import PahoClient
from tests.gateway.devices import PycaSigner, SimDevice
from tests.gateway.env import (
    cleanup_gateway,
    create_gateway_dir,
    mosquitto_missing,
    start_test_broker,
)

ROOT = Path(__file__).resolve().parents[2]
for _p in (ROOT / "firmware" / "lib", ROOT / "tests" / "firmware" / "fakes"):
    if str(_p) not in sys.path:
        sys.path.append(str(_p))

import ct_lte  # noqa: E402
import ct_record  # noqa: E402
from ct_core import Core  # noqa: E402
from ct_queue import Queue  # noqa: E402
from ct_state import State  # noqa: E402
from ct_uplink import Uplink  # noqa: E402
from fake_sim7080 import FakePPP, FakeSim7080  # noqa: E402
from fakeclock import FakeTicks  # noqa: E402
from fakefs import FakeFs  # noqa: E402


class Link:
    """The socket level of the PPP link: up, down, and the clients on it."""

    def __init__(self) -> None:
        self.up = False
        self.clients: list[PahoClient] = []

    def ppp(self, uart: Any) -> FakePPP:
        p = FakePPP(uart)
        p.on_up = self.on_up
        p.on_down = self.on_down
        return p

    def on_up(self) -> None:
        self.up = True

    def on_down(self) -> None:
        # the cell is gone: every TCP connection over it dies, no DISCONNECT
        # (paho would reconnect by itself: the client is cut off from it first)
        self.up = False
        for c in self.clients:
            inner, c._c = c._c, None
            if inner is None:
                continue
            s = inner.socket()
            if s is not None:
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
            inner.loop_stop()
            s = inner.socket()
            if s is not None:
                with contextlib.suppress(OSError):
                    s.close()


class Truck:
    def __init__(self, dev: SimDevice, port: int, password: str) -> None:
        self.dev = dev
        self.link = Link()
        self.clock = FakeTicks(1000)  # the modem's AT side runs on simulated time
        self.modem = FakeSim7080(self.clock)
        self.lte = ct_lte.Lte(
            self.modem.uart,
            self.modem.pin,
            self.link.ppp,
            {"apn": "iot.example", "psm_tau": 3600, "psm_active": 4},
            ticks=self.clock,
        )
        self.fs = FakeFs()
        self.state = State(self.fs, "st")
        self.state.begin()
        self.queue = Queue(self.fs, "q", segments=8, seg_size=4096, reserve=0, low_water=0)
        self.lose_after: int | None = None
        self.published = 0
        self.port = port
        self.password = password
        assert dev.ack_key is not None
        self.up = Uplink(
            self.client,
            dev.id,
            dev.ack_key,
            self.queue,
            self.state,
            window=8,
            timeout_ms=3000,
            ack_wait_ms=3000,
            backoff_ms=200,
            backoff_max_ms=1000,
        )
        self.core = Core(dev.id, PycaSigner(dev.key), self.state, self.queue, self.up, self.lte)
        self.core.start()

    def client(self) -> PahoClient:
        if not self.link.up:
            raise OSError(113, "no route: the PPP link is down")
        truck = self

        class Counting(PahoClient):
            def publish(self, topic: Any, msg: bytes, retain: bool = False, qos: int = 0) -> None:
                super().publish(topic, msg, retain, qos)
                if bytes(topic).endswith(b"/rec"):
                    truck.published += 1
                    if truck.lose_after is not None and truck.published == truck.lose_after:
                        truck.modem.lose_network()  # right after this record left

        c = Counting(
            self.dev.id, "127.0.0.1", self.port, self.dev.id, self.password, keepalive=30, timeout=3
        )
        self.link.clients.append(c)
        return c

    def add(self, n: int) -> None:
        for _ in range(n):
            rec = self.core.record({1: 1, 4: int(time.time()), 5: 2, 10: 450})
            assert self.core.enqueue(rec)

    def queued(self) -> list[int]:
        out = []
        c = self.queue.head()
        while c is not None:
            rec, nxt = self.queue.read(c)
            if rec is None:
                break
            out.append(ct_record.record_seq(rec))
            c = nxt
        return out


@pytest.fixture
def env(tmp_path: Path) -> Iterator[tuple[Any, Truck]]:
    if mosquitto_missing():
        pytest.fail("mosquitto is not installed: run `make system`")
    from gateway.service import Gateway

    dev = SimDevice("tl-truck-1")
    broker = start_test_broker(tmp_path / "broker", [dev.id])
    gwdir = create_gateway_dir(tmp_path / "gw", broker)
    gwdir.register(dev)
    dev.disconnect = lambda: None  # type: ignore[method-assign]  # never connected itself
    gateway = Gateway(gwdir.cfg)
    gateway.start()
    try:
        assert gateway.mqtt.subscribed.wait(15)
        yield gateway, Truck(dev, broker.port, broker.password(dev.id))
    finally:
        gateway.stop()
        cleanup_gateway(gwdir)
        broker.process.stop()


def stored(gateway: Any, dev: str, upto: int) -> list[int]:
    return [s for s in range(upto) if gateway.store.record_by_seq(dev, s) is not None]


def test_lte_upload_is_stored_and_acked_by_the_real_gateway(env: tuple[Any, Truck]) -> None:
    gateway, tr = env
    tr.add(10)
    ev = tr.core.upload(30000)
    assert tr.queue.count() == 0, ev
    assert stored(gateway, tr.dev.id, 10) == list(range(10))
    assert [e[1] for e in ev if e[0] == "ack"][-1] == 9
    assert not tr.lte.connected() and not tr.link.up  # PPP closed after the upload
    assert "ATD*99***1#" in tr.modem.log and tr.modem.boots == 1


def test_lte_network_lost_mid_upload_then_the_next_wake_delivers(
    env: tuple[Any, Truck],
) -> None:
    gateway, tr = env
    tr.add(24)
    tr.lose_after = 12
    tr.core.upload(8000)  # the cell goes after the 12th record left
    assert tr.modem.stat == 2 and not tr.link.up
    left = tr.queued()
    assert left, "the link died mid-upload: something must be left"
    assert left == list(range(24 - len(left), 24))  # only a contiguous acked head went
    have = stored(gateway, tr.dev.id, 24)
    # nothing left the queue that the gateway had not stored and acked
    assert all(s in have for s in range(24 - len(left)))
    assert len(have) <= 12
    # coverage comes back; the next wake wakes the modem from PSM and delivers all
    tr.lose_after = None
    tr.modem.restore_network(0)
    tr.clock.advance(5000)
    tr.add(2)
    ev = tr.core.upload(30000)
    assert tr.queue.count() == 0, ev
    assert stored(gateway, tr.dev.id, 26) == list(range(26))
    assert tr.modem.boots == 1  # no second boot: PSM kept the registration
