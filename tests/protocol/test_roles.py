"""Roles (docs/protocol.md §12.1 "Roles", §2.5): only a handover reader's scans are
custody, only a temperature logger's readings are temperatures; the role is the one of
the signer's registration in force at the record's date (``wrong_role``).

The traces of tests/protocol/traces.py, with registrations added: without any, a device
is treated as pinned directly and refused nothing (so the other verdict tests, which
register no device, judge as before).
"""

from __future__ import annotations

from protocol.custody import date_records, wrong_role
from protocol.keys import p256_public_to_sec1
from protocol.record import Reading, Record, Registration, Scan, Status
from protocol.verdict import judge
from tests.protocol.traces import (
    COMMISSION,
    DOCK,
    ITEM,
    STORE,
    T0,
    UID,
    UNLOAD,
    H,
    Signer,
    World,
    binding_chain,
    codes,
    key_for,
    profile_chain,
    reasons,
    standard,
)

LOGGER, READER = 1, 2


def register(w: World, dev: Signer, role: int, t: int = T0 - 86400) -> Record:
    r = w.reg.sign(
        Registration,
        t,
        device=dev.id,
        key=p256_public_to_sec1(key_for(dev.id).public_key()),
        role=role,
        org="Acme",
        state=1,
    )
    w.add(r)
    return r


def registered(w: World) -> World:
    """Every device of the world registered in the role it plays."""
    for dev in (w.rd1, w.rd2):
        register(w, dev, READER)
    for dev in (w.dock, w.truck, w.store):
        register(w, dev, LOGGER)
    return w


def test_devices_in_their_roles_judge_as_without_registrations():
    plain = standard().doc()
    assert plain["verdict"] == "PASS"
    assert registered(standard()).doc() == plain


def test_a_scan_signed_by_a_logger_is_no_custody():
    w = registered(World())
    profile_chain(w)
    binding_chain(w, DOCK, "tl-dock")
    binding_chain(w, STORE, "tl-store")
    w.add(w.tag.scan(w.rd1, T0, COMMISSION, DOCK, item=ITEM))
    forged = w.tag.scan(w.dock, T0 + H, UNLOAD, STORE)  # the dock logger's key
    w.add(forged)
    w.add(w.tag.scan(w.rd2, T0 + 2 * H, 4, STORE))  # receive: links to the forged scan
    w.add(w.dock.readings(T0, T0 + 2 * H), w.store.readings(T0 + 2 * H, T0 + 3 * H))
    d = w.doc()
    assert d["verdict"] == "INCOMPLETE"
    [r] = reasons(d, "wrong_role")
    assert (r["device"], r["value"], r["from"], r["detail"], r["severity"]) == (
        "tl-dock",
        forged.payload.seq,
        T0 + H,
        "scan",
        "incomplete",
    )
    assert r["text"] == (
        f"scan #{forged.payload.seq} by tl-dock is left out of the custody: tl-dock is "
        "registered as a temperature logger, not a handover reader"
    )
    assert [g["scan"]["device"] for g in d["legs"]] == ["rd-1", "rd-2"]
    assert "custody_gap" in codes(d)


def test_the_same_scan_counts_when_the_logger_has_no_registration():
    # a device pinned directly (no registration in V) has no role to check
    w = World()
    profile_chain(w)
    w.add(w.tag.scan(w.rd1, T0, COMMISSION, DOCK, item=ITEM))
    w.add(w.tag.scan(w.dock, T0 + H, UNLOAD, STORE))
    d = w.doc()
    assert "wrong_role" not in codes(d)
    assert [g["scan"]["device"] for g in d["legs"]] == ["rd-1", "tl-dock"]


def test_an_undated_logger_scan_is_wrong_role_not_undated():
    w = registered(World())
    w.add(w.tag.scan(w.rd1, T0, COMMISSION, DOCK, item=ITEM))
    undated = w.tag.scan(w.store, 5, UNLOAD, STORE, tq=0)
    w.add(undated)
    d = w.doc()
    [r] = reasons(d, "wrong_role")
    assert (r["device"], r["from"], r["value"]) == ("tl-store", None, undated.payload.seq)
    assert "undated_scan" not in codes(d)


def test_a_readers_readings_count_for_nothing_beside_a_logger():
    w = registered(standard())
    # the store is bound to its logger and to rd-2, whose warm readings would be an excursion
    w.add(
        w.reg.bind(STORE, T0 - 86400 + 1, "rd-2 tl-store"),
        w.reg.bind(STORE, T0 + 86400 + 1, "rd-2 tl-store"),
    )
    warm = w.rd2.readings(T0 + 4 * H, T0 + 6 * H, temp=900)
    w.add(warm)
    d = w.doc()
    assert d["excursions"] == [] and d["verdict"] == "INCOMPLETE"
    [r] = reasons(d, "wrong_role")
    assert (r["device"], r["value"], r["detail"], r["from"]) == ("rd-2", len(warm), "reading", None)
    assert r["text"] == (
        f"rd-2: {len(warm)} readings are not used: rd-2 is registered as a handover reader, "
        "not a temperature logger"
    )
    store = [g for g in d["legs"] if g["location"] == STORE and g["to"] > g["from"]]
    assert store and all(g["max"] == 300 for g in store)


def test_the_role_in_force_at_the_records_date():
    w = World()
    register(w, w.rd1, READER)
    register(w, w.rd1, LOGGER, t=T0 + H)  # the same device, re-registered as a logger
    before = w.rd1.sign(Scan, T0, uid=UID, action=COMMISSION, place=DOCK, item=ITEM)
    after = w.rd1.sign(Scan, T0 + 2 * H, uid=UID, action=UNLOAD, place=STORE)
    at = w.rd1.sign(Scan, T0 + H, uid=UID, action=UNLOAD, place=STORE)  # the change's time
    undated = w.rd1.sign(Scan, 7, tq=0, uid=UID, action=UNLOAD, place=STORE)
    reading_before = w.rd1.sign(Reading, T0 + 60, temp=300)
    reading_after = w.rd1.sign(Reading, T0 + 3 * H, temp=300)
    status = w.rd1.sign(Status, T0 + 3 * H, event=2)
    w.add(before, after, at, undated, reading_before, reading_after, status)
    refused = wrong_role(w.records, date_records(w.records))
    # in force: the highest seq with time <= date; undated (or before all): the lowest seq
    assert refused == {after.raw, at.raw, reading_before.raw}


def test_a_role_is_read_from_the_registrations_given():
    w = World()
    register(w, w.dock, LOGGER)
    scan = w.dock.sign(Scan, T0, uid=UID, action=COMMISSION, place=DOCK, item=ITEM)
    w.add(scan)
    assert wrong_role(w.records, date_records(w.records)) == {scan.raw}
    assert wrong_role([scan], date_records([scan])) == set()
    # and the verdict drops it: no commission is left
    d = judge(w.records, w.scopes, UID).to_json()
    assert codes(d) == ["no_commission", "wrong_role"]
