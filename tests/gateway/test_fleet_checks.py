"""The fleet's shared checks, ingest to store, without MQTT (docs/decisions.md D28).

Two instances (tests/gateway/core.py) with their own schemas share one fleet
schema on a real PostgreSQL: what one stored is a duplicate or a conflict for
the other, a gap one left is filled by the other, and either acks a device
with the fleet's settled seq and chain hash.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from protocol.record import chain_hash
from tests.gateway.core import Core, rec
from tests.gateway.devices import SimDevice, open_ack


@pytest.fixture
def pair(tmp_path: Path, pg_url: str):
    a = Core(tmp_path / "a", store_url=pg_url, schema="gw_a", fleet="fleet")
    b = Core(
        tmp_path / "b",
        store_url=pg_url,
        schema="gw_b",
        fleet="fleet",
        registry_key=a.registry_key,
    )
    yield a, b
    a.close()
    b.close()


def register(a: Core, b: Core, dev: SimDevice) -> None:
    """Register ``dev`` on ``a``; ``b`` logs the same signed record from the fleet's outbox."""
    a.register(dev)
    pending = dict((raw, i) for i, raw in b.store.outbox_pending())
    assert len(pending) == 1, "the registration reaches the other instance"
    ((raw, oid),) = pending.items()
    b._outbox[raw] = oid
    out = b.send(raw)
    assert len(out.accepted) == 1
    assert b.store.ack_keys()[dev.id] == dev.ack_key  # the ack key is shared too
    b.ingestor.ack_keys = b.store.ack_keys()  # as the ingestor rereads them (once a second)


def ack(core: Core, dev: SimDevice) -> tuple[int, bytes]:
    seq, _t, head = open_ack(core.ingestor.ack_for(dev.id, int(time.time())), dev.ack_key)
    return seq, head


def test_a_record_the_other_instance_stored_is_a_duplicate_and_acked(pair) -> None:
    a, b = pair
    dev = SimDevice("tl-dup")
    register(a, b, dev)
    raws = [dev.reading() for _ in range(3)]
    a.send(*(rec(dev, r) for r in raws))
    out = b.send(rec(dev, raws[1]))  # the device resends; the broker hands it to b
    assert out.duplicates == 1 and not out.accepted and out.rejected == 0
    assert b.store.records_of(dev.id, 0, 9) == []  # in a's log only
    assert ack(b, dev) == (2, chain_hash(raws[2]))  # b acks what the fleet stored
    assert [(s, q, o) for s, q, o, _leaf in a.store.claims_of()] == [
        (dev.id, 0, "gw_a"),
        (dev.id, 1, "gw_a"),
        (dev.id, 2, "gw_a"),
    ]


def test_a_gap_left_on_one_instance_is_filled_by_the_other(pair) -> None:
    a, b = pair
    dev = SimDevice("tl-gap")
    register(a, b, dev)
    raws = [dev.reading() for _ in range(5)]
    a.send(rec(dev, raws[0]), rec(dev, raws[1]))
    b.send(rec(dev, raws[3]), rec(dev, raws[4]))
    assert [(e.kind, e.seq_from, e.seq_to) for e in b.store.chain_events(dev.id)] == [("gap", 2, 2)]
    assert ack(b, dev) == (1, chain_hash(raws[1]))  # the ack waits for seq 2
    a.send(rec(dev, raws[2]))
    assert [(e.kind, e.seq_from) for e in a.store.chain_events(dev.id)] == [("gap_filled", 2)]
    assert ack(a, dev) == (4, chain_hash(raws[4]))  # over b's seqs 3 and 4
    assert [r.seq for r in a.store.records_of(dev.id, 0, 9)] == [0, 1, 2]
    assert [r.seq for r in b.store.records_of(dev.id, 0, 9)] == [3, 4]


def test_another_record_for_a_seq_the_other_instance_stored_is_a_conflict(pair) -> None:
    a, b = pair
    dev = SimDevice("tl-fork")
    register(a, b, dev)
    first = dev.reading(temp=100)
    a.send(rec(dev, first))
    dev.seq, dev.prev = 0, bytes(16)  # the device signs seq 0 again, other content
    other = dev.reading(temp=900)
    out = b.send(rec(dev, other))
    assert out.rejected == 1 and not out.accepted
    assert [r.reason for r in b.store.rejects()] == ["conflict"]
    assert b.store.leaf_count() == 1  # only the registration


def test_a_chain_break_across_instances_is_seen(pair) -> None:
    a, b = pair
    dev = SimDevice("tl-break")
    register(a, b, dev)
    r0 = dev.reading()
    a.send(rec(dev, r0))
    dev.prev = bytes([7]) * 16  # seq 1 does not link to seq 0
    b.send(rec(dev, dev.reading()))
    assert [(e.kind, e.seq_from, e.seq_to) for e in b.store.chain_events(dev.id)] == [
        ("break", 0, 1)
    ]


def test_a_gateway_that_ran_alone_brings_its_records_when_it_joins(
    tmp_path: Path, pg_url: str
) -> None:
    alone = Core(tmp_path / "a", store_url=pg_url, schema="gw_a")  # no fleet yet
    dev = SimDevice("tl-old")
    alone.register(dev)
    raws = [dev.reading() for _ in range(3)]
    alone.send(*(rec(dev, r) for r in raws))
    alone.close()
    a = Core(
        tmp_path / "a",
        store_url=pg_url,
        schema="gw_a",
        fleet="fleet",
        signer=alone.signer,
        ledger_key=alone.ledger_key,
        registry_key=alone.registry_key,
    )
    b = Core(
        tmp_path / "b", store_url=pg_url, schema="gw_b", fleet="fleet", registry_key=a.registry_key
    )
    try:
        assert [q for _s, q, _o, _leaf in a.store.claims_of("gw_a")] == [0, 1, 2]
        pending = b.store.outbox_pending()  # the registration, from a's outbox
        b._outbox[pending[0][1]] = pending[0][0]
        b.send(pending[0][1])
        b.ingestor.ack_keys = b.store.ack_keys()
        out = b.send(rec(dev, raws[2]))  # an old record, resent: b knows it is stored
        assert out.duplicates == 1 and not out.accepted
        assert ack(b, dev) == (2, chain_hash(raws[2]))
        b.send(rec(dev, dev.reading()))
        assert [r.seq for r in b.store.records_of(dev.id, 0, 9)] == [3]
        assert not any(e.kind == "gap" for e in b.store.chain_events(dev.id))
    finally:
        a.close()
        b.close()
