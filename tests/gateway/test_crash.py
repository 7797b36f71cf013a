"""Nothing is lost, nothing is stored twice: reconnects, resends, duplicates, gaps.

Devices behave like the firmware: they keep every record until an ack covers
it (seq and chain hash), and resend what is not acked. The checks at the end
are the same for every scenario (:func:`check_exactly_once`, the fault
suite's invariants on one gateway): every published record stored exactly
once with its exact bytes, every device acked up to its last record, every
checkpoint consistent with the one before it, every checkpoint anchored on a
ledger that verifies. ``kill -9`` mid-stream and broker restarts are
scenarios of the fault suite (tests/reliability/test_gateway_faults.py),
under 200 devices.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

from gateway.config import GatewayConfig
from tests.gateway.devices import SimDevice, wait_for
from tests.reliability.invariants import check_invariants


def publish_stream(
    devs: list[SimDevice], count: int, pause: float, stop: threading.Event
) -> dict[str, list[bytes]]:
    sent: dict[str, list[bytes]] = {d.id: [] for d in devs}
    for k in range(count):
        if stop.is_set():
            break
        for d in devs:
            raw = d.reading(temp=200 + k % 500)
            sent[d.id].append(raw)
            d.publish(raw)
        time.sleep(pause)
    return sent


def resend_until_acked(devs: list[SimDevice], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while any(d.unacked for d in devs):
        if time.monotonic() > deadline:
            left = {d.id: list(d.unacked)[:5] for d in devs if d.unacked}
            raise AssertionError(f"records never acked: {left}")
        for d in devs:
            if d.unacked:
                d.resend_unacked()
        time.sleep(1.0)


def check_exactly_once(
    cfg: GatewayConfig, sent: dict[str, list[bytes]], devs: list[SimDevice]
) -> None:
    """The fault suite's invariants (tests/reliability/invariants.py) on one gateway:
    every record stored once with its exact bytes and in the log, every device acked
    up to its last record, every checkpoint verified, consistent and anchored."""
    published = {dev: dict(enumerate(raws)) for dev, raws in sent.items()}
    check_invariants(None, [cfg], published, {d.id: d.acked for d in devs})
    assert all(d.bad_acks == 0 for d in devs), {d.id: d.bad_acks for d in devs}


def children(pid: int) -> list[int]:
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


def test_device_reconnects_and_resends_everything_unacked(make_broker, make_gateway) -> None:
    dev = SimDevice("tl-resend")
    broker = make_broker([dev.id])
    env = make_gateway(broker)
    env.register(dev)
    gw = env.start_gateway()
    try:
        env.connect(dev)
        sent = []
        for k in range(100):
            raw = dev.reading(temp=k)
            sent.append(raw)
            dev.publish(raw)
            if k == 60:
                dev.drop()  # the radio goes away mid-upload
                dev.connect(broker.port, broker.password(dev.id))
        # The firmware resends from its oldest unacked record, duplicates included.
        resend_until_acked([dev])
    finally:
        gw.stop()
    check_exactly_once(env.cfg, {dev.id: sent}, [dev])


def test_duplicate_delivery_is_stored_once_and_acked(make_broker, make_gateway) -> None:
    dev = SimDevice("tl-dup")
    broker = make_broker([dev.id])
    env = make_gateway(broker)
    env.register(dev)
    gw = env.start_gateway()
    try:
        env.connect(dev)
        sent = [dev.reading(temp=k) for k in range(20)]
        for raw in sent + sent[5:15] + sent:  # every record at least twice
            dev.publish(raw)
        wait_for(lambda: dev.acked == 19, 20, "acks")
        wait_for(lambda: gw.ingestor.totals["duplicates"] == 30, 20, "duplicates counted")
    finally:
        gw.stop()
    check_exactly_once(env.cfg, {dev.id: sent}, [dev])


def test_gap_is_recorded_until_the_device_fills_it(make_broker, make_gateway) -> None:
    dev = SimDevice("tl-gap")
    broker = make_broker([dev.id])
    env = make_gateway(broker)
    env.register(dev)
    gw = env.start_gateway()
    try:
        env.connect(dev)
        sent = [dev.reading(temp=k) for k in range(10)]
        for raw in sent[:3] + sent[6:]:  # 3, 4, 5 do not arrive
            dev.publish(raw)
        wait_for(lambda: gw.store.record_by_seq(dev.id, 9) is not None, 15, "records after the gap")
        wait_for(lambda: dev.acked == 2, 15, "ack below the hole")
        time.sleep(0.3)
        assert dev.acked == 2  # and it stays there
        events = gw.store.chain_events(dev.id)
        assert any(e.kind == "gap" and (e.seq_from, e.seq_to) == (3, 5) for e in events)
        resend_until_acked([dev])
        assert dev.acked == 9
        kinds = [(e.kind, e.seq_from) for e in gw.store.chain_events(dev.id)]
        assert ("gap_filled", 3) in kinds and ("gap_filled", 5) in kinds
        assert not any(e.kind == "break" for e in gw.store.chain_events(dev.id))
    finally:
        gw.stop()
    check_exactly_once(env.cfg, {dev.id: sent}, [dev])
