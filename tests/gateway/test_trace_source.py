"""gateway/trace_source.py: the gateway's store as a protocol.assemble Source answers as a
MemorySource of the same log does, so ``coldtrace gateway trace`` and a cloud planning
over the gateway's log choose the same records (docs/protocol.md §9)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from gateway.evidence.registry import Scopes
from gateway.trace import plan as gateway_plan
from gateway.trace_source import StoreSource, gateway_authorities
from protocol.assemble import Entry, MemorySource, Plan, plan
from tests.gateway.core import ORIGIN, REGISTRY, Core, rec
from tests.gateway.devices import SimDevice, chain_link

GTIN = "09506000134352"
ITEM = f"/01/{GTIN}/10/L1/21/0001"
UID = bytes.fromhex("04a23c5a1b6f80")
ROOM, TRUCK, SHOP = "acme:room-2", "acme:truck-1", "acme:shop"
CHILLED = dict(low=0, high=400, delay=1800, gap=1800, name="chilled 0-4 °C")
MIN = 60


@pytest.fixture
def core(tmp_path: Path):
    c = Core(tmp_path)
    yield c
    c.close()


def _summary(p: Plan) -> tuple[object, ...]:
    return (
        p.item,
        [(lp.leg.location, lp.why_none, lp.monitors) for lp in p.legs],
        [(r.signer, r.key, r.closed, [e.at for e in r.records]) for r in p.runs],
        p.profile_note,
        {d: [e.at for e in recs] for d, recs in p.devices.items()},
        p.entries(),
    )


def test_the_store_source_and_a_memory_source_of_the_log_agree(core: Core) -> None:
    rd, room, truck = SimDevice("rd-a"), SimDevice("tl-room"), SimDevice("tl-truck")
    core.register(rd, room, truck)
    t0 = int(time.time()) - 3 * 3600
    core.send(core.statement(target=ROOM, devices="tl-room", time_=t0))
    core.send(core.statement(target=TRUCK, devices="tl-truck", time_=t0))
    core.send(core.statement(gtin=GTIN, time_=t0, **CHILLED))
    for k in range(33):
        t = t0 + k * 5 * MIN
        core.send(rec(room, room.reading(280, time_=t)))
        raw = truck.reading(280, time_=t)
        if k not in (12, 13):  # lost on the truck logger, then declared lost
            core.send(rec(truck, raw))
    core.send(rec(truck, truck.declare_lost(12, 2)))
    link = None
    for action, place, at, extra in (
        (1, ROOM, t0 + 10 * MIN, {"item": ITEM}),
        (2, ROOM, t0 + 20 * MIN, {"ref": TRUCK}),
        (3, SHOP, t0 + 100 * MIN, {}),
    ):
        raw = rd.scan(UID, action, place, time_=at, link=link, **extra)  # type: ignore[arg-type]
        core.send(rec(rd, raw))
        link = chain_link(raw)
    half = core.store.leaf_count()
    core.send(core.statement(target=ROOM, devices="tl-room", time_=t0 + 150 * MIN))
    core.send(core.statement(target=TRUCK, devices="tl-truck", time_=t0 + 150 * MIN))
    core.send(core.statement(gtin=GTIN, time_=t0 + 150 * MIN, **CHILLED))
    assert [r.reason for r in core.store.rejects()] == []
    n = core.store.leaf_count()
    entries = [Entry.of(ORIGIN, i, raw) for i, raw in enumerate(core.store.raw_between(0, n))]
    auth = gateway_authorities(REGISTRY, Scopes())

    for upto in (half, n):
        mine = gateway_plan(
            core.store, UID, registry=REGISTRY, scopes=Scopes(), upto=upto, origin=ORIGIN
        )
        theirs = plan(MemorySource(entries[:upto]), UID, auth)
        assert _summary(mine) == _summary(theirs)
        assert _summary(mine) == _summary(plan(StoreSource(core.store, ORIGIN, upto), UID, auth))
        assert all(i < upto for _, i in mine.entries())
        closed = [r.closed for r in mine.runs]
        assert closed == ([False] * 3 if upto == half else [True] * 3)

    # The truck's records over its leg, with the status record declaring the loss.
    p = plan(MemorySource(entries), UID, auth)
    seqs = [e.seq for e in p.devices["tl-truck"]]
    assert seqs == [4, 5, 6, 7, 8, 9, 10, 11, 14, 15, 16, 17, 18, 19, 20, 33]
    assert [lp.monitors for lp in p.legs] == [
        [("tl-room", t0 + 10 * MIN, t0 + 20 * MIN)],
        [("tl-truck", t0 + 20 * MIN, t0 + 100 * MIN)],
        [],
    ]
