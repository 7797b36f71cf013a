"""Ingest of registry statements (bindings, kind 5; profiles, kind 6; docs/protocol.md
§2.6, §2.7, §4.2): chains checked and applied, violations quarantined with reasons."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from gateway.evidence.registry import Registry, Scopes
from protocol.record import Binding, make_record
from tests.gateway.core import REGISTRY, Core, rec
from tests.gateway.devices import SimDevice

GTIN = "09506000134352"
CHILLED = dict(low=0, high=400, delay=1800, gap=1800, cumul=7200, name="chilled 0-4 °C")


@pytest.fixture(params=["sqlite", "postgresql"])
def core(tmp_path: Path, request: pytest.FixtureRequest):
    """The parts on SQLite, or on a real PostgreSQL (same behaviour expected)."""
    url = request.getfixturevalue("pg_url") if request.param == "postgresql" else None
    c = Core(tmp_path, store_url=url)
    yield c
    c.close()


def reasons(core: Core) -> list[str]:
    return [r.reason for r in core.store.rejects()]


def test_bindings_are_logged_and_move_the_current_bindings(core: Core) -> None:
    a, b = SimDevice("tl-a"), SimDevice("tl-b")
    core.register(a, b)
    t = int(time.time()) - 3600
    core.send(core.statement(target="room-1", devices="tl-a tl-b", time_=t))
    core.send(core.statement(target="truck-9", devices="tl-b", time_=t + 60))
    assert reasons(core) == []
    assert core.registry.place_of("tl-a") == "room-1"
    assert core.registry.place_of("tl-b") == "truck-9"  # the latest binding naming it
    core.send(core.statement(target="truck-9", time_=t + 120))  # nobody monitors it now
    assert core.registry.place_of("tl-b") == "room-1"
    rows = core.store.statements(kind=5)
    assert [(r.chain, r.cseq, r.devices) for r in rows] == [
        ("room-1", 0, "tl-a tl-b"),
        ("truck-9", 0, "tl-b"),
        ("truck-9", 1, None),
    ]
    # A restart rebuilds the same state from the store.
    core.reopen()
    assert core.registry.places_of() == {"tl-a": "room-1", "tl-b": "room-1"}


def test_profiles_are_logged_per_gtin_and_lot_chain(core: Core) -> None:
    t = int(time.time()) - 600
    core.send(core.statement(gtin=GTIN, time_=t, lots=1, **CHILLED))
    core.send(core.statement(gtin=GTIN, time_=t, lot="L1", **CHILLED))  # its own chain: cseq 0
    core.send(core.statement(gtin=GTIN, time_=t + 1, **CHILLED))  # the GTIN chain's cseq 1
    assert reasons(core) == []
    assert [(r.chain, r.cseq) for r in core.store.statements(kind=6)] == [
        (GTIN, 0),
        (f"{GTIN} L1", 0),
        (GTIN, 1),
    ]


def test_a_second_statement_for_a_taken_cseq_is_a_fork(core: Core) -> None:
    core.send(core.statement(target="room-1", time_=int(time.time()) - 60))
    fork = core.statement(target="room-1", cseq=0, devices=None)
    core.send(fork)
    (r,) = core.store.rejects()
    assert r.reason == "statement_fork" and "cseq 0 is taken" in r.detail


def test_a_cseq_gap_is_refused(core: Core) -> None:
    core.send(core.statement(target="room-1"))
    core.send(core.statement(target="room-1", cseq=2, cprev=bytes(range(16))))
    core.send(core.statement(target="dock-2", cseq=1, cprev=bytes(16)))
    details = [r.detail for r in core.store.rejects()]
    assert reasons(core) == ["statement_gap", "statement_gap"]
    assert any("1..1 are missing" in d for d in details)
    assert any("no statement of the chain is logged" in d for d in details)


def test_a_statement_that_does_not_link_is_refused(core: Core) -> None:
    core.send(core.statement(target="room-1"))
    core.send(core.statement(target="room-1", cprev=bytes(range(16))))
    assert reasons(core) == ["statement_unlinked"]


def test_time_going_back_along_a_chain_is_refused(core: Core) -> None:
    t = int(time.time()) - 100
    core.send(core.statement(target="room-1", time_=t))
    core.send(core.statement(target="room-1", time_=t - 1))
    (r,) = core.store.rejects()
    assert r.reason == "statement_backdated" and "before the time" in r.detail
    core.send(core.statement(target="room-1", time_=t))  # equal is fine
    assert len(core.store.statements(kind=5)) == 2


def test_statements_only_from_registry_keys(core: Core) -> None:
    dev = SimDevice("tl-x")
    core.register(dev)
    p = Binding(
        boot=0,
        seq=dev.seq,
        time=int(time.time()),
        tq=2,
        prev=dev.prev,
        cseq=0,
        cprev=bytes(16),
        target="room-1",
        devices="tl-x",
    )
    raw = make_record(p, dev.id, dev.key)
    core.send(rec(dev, raw))
    (r,) = core.store.rejects()
    assert r.reason == "bad_payload" and "registry key" in r.detail


def test_statements_outside_the_registry_scope_are_refused(core: Core) -> None:
    core.registry.scopes = Scopes(places=("acme:*",), gtins=("0950600013435*",))
    core.send(core.statement(target="other:room"))
    core.send(core.statement(gtin="04012345000016", **CHILLED))
    core.send(core.statement(target="acme:room"))
    assert reasons(core) == ["out_of_scope", "out_of_scope"]
    assert [r.chain for r in core.store.statements()] == ["acme:room"]


def test_registry_state_loads_the_highest_cseq_per_chain() -> None:
    from gateway.evidence.store import StatementRow

    rows = [
        StatementRow(3, REGISTRY, 5, "room", 0, 10, b"a" * 16, "tl-1"),
        StatementRow(9, REGISTRY, 5, "room", 1, 20, b"b" * 16, None),
    ]
    reg = Registry({}, {}, rows)
    assert reg.bindings() == {} and reg.place_of("tl-1") is None
