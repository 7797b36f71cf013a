"""protocol/assemble.py: one item's trace chosen across several logs (docs/protocol.md §9
"What an honest bundle holds", §12), over an in-memory source.

Two organisations, each with its own gateway log and registry: a packhouse
(commissions the item in its cold room, watched by its room logger, and
signs the product profile) and a carrier (loads the item onto its truck,
watched by the truck's logger, and unloads it at the shop). The plan must
take the right entries from both logs; the bundle of exactly those entries
verifies under a trust file that pins both logs and both registries, and
gets the verdict the story deserves.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import pytest

from protocol import anchor
from protocol.assemble import (
    Authorities,
    Entry,
    MemorySource,
    Plan,
    TraceError,
    find_uid,
    plan,
    seq_bounds,
)
from protocol.bundle import AnchorRef, Bundle, BundleRecord, MultiProof, Subject
from protocol.checkpoint import Checkpoint, checkpoint_hash, sign_checkpoint
from protocol.merkle import MerkleTree, multiproof_ranges
from protocol.merkle.proof import subtree_nodes
from protocol.record import Binding, ProductProfile, Reading, Registration, Scan, open_record
from protocol.trust import Scopes, Trust, parse_trust, trust_document
from protocol.verify import verify_bundle
from tests.protocol.scenario import (
    COMMISSION,
    GTIN,
    ITEM,
    LEDGER,
    LOAD,
    T0,
    UID,
    UNLOAD,
    Scenario,
)
from tests.schemas import assert_bundle, assert_trust

PACK, CARRIER = "pack.example/gateway-1", "carrier.example/gateway-7"
ROOM, OTHER, TRUCK, SHOP = "pack:room-2", "pack:room-9", "carrier:truck-1", "shop:store-9"
COMMISSIONED, LOADED, UNLOADED = T0 + 600, T0 + 3600, T0 + 9000
HOUR = 3600


class Trace:
    """The two logs and what happened in them."""

    def __init__(self, *, truck_temp: Callable[[int], int] = lambda t: 300) -> None:
        self.pack = Scenario(registry_id="reg-pack", origin=PACK, deterministic=False)
        self.carrier = Scenario(registry_id="reg-carrier", origin=CARRIER, deterministic=False)
        self.carrier.tags = self.pack.tags  # one tag: its custody link passes between them
        pack, carrier = self.pack, self.carrier

        pack.profile(GTIN, T0 - 2 * HOUR, low=0, high=800, delay=1800, gap=1800)
        self.reader = pack.reader("pk-rd", ROOM)
        self.room = pack.logger("pk-room")
        self.other = pack.logger("pk-other")
        pack.bind(ROOM, ["pk-room"], T0 - HOUR)
        pack.bind(OTHER, ["pk-other"], T0 - HOUR)
        self.hand = carrier.reader("cr-rd", "carrier:depot")
        self.truck = carrier.logger("cr-truck")
        self.spare = carrier.logger("cr-spare")  # registered, never bound
        carrier.bind(TRUCK, ["cr-truck"], T0 - HOUR)

        pack.readings(self.room, T0 - HOUR, T0 + 3 * HOUR, 300, lambda t: 300)
        pack.readings(self.other, T0 - HOUR, T0 + 3 * HOUR, 300, lambda t: 900)
        carrier.readings(self.truck, T0 - HOUR, T0 + 3 * HOUR, 300, truck_temp)
        self.commission = pack.scan(self.reader, COMMISSION, COMMISSIONED, item=ITEM)
        self.other_tag = pack.scan(
            self.reader,
            COMMISSION,
            T0 + 700,
            uid=bytes.fromhex("04000000000001"),
            item=f"/01/{GTIN}/10/L42/21/8",
        )
        self.load = carrier.scan(self.hand, LOAD, LOADED, ref=TRUCK)
        self.unload = carrier.scan(self.hand, UNLOAD, UNLOADED, place=SHOP)
        # Each chain restated after the interval it must span (§12.5: closed).
        self.pack_size_before_restating = len(pack.records)
        self.carrier_size_before_restating = len(carrier.records)
        pack.bind(ROOM, ["pk-room"], T0 + 2 * HOUR)
        pack.profile(GTIN, T0 + 2 * HOUR, low=0, high=800, delay=1800, gap=1800)
        carrier.bind(TRUCK, ["cr-truck"], T0 + 3 * HOUR)

    @property
    def logs(self) -> dict[str, Scenario]:
        return {PACK: self.pack, CARRIER: self.carrier}

    def entries(self, sizes: Mapping[str, int] | None = None) -> list[Entry]:
        """Every entry of both logs below their checkpoint sizes (default: all)."""
        out = []
        for origin, s in self.logs.items():
            size = len(s.records) if sizes is None else sizes[origin]
            out += [Entry.of(origin, i, raw) for i, raw in enumerate(s.records[:size])]
        return out

    def trust(self) -> Trust:
        doc = trust_document(
            logs=[(PACK, self.pack.log.vkey), (CARRIER, self.carrier.log.vkey)],
            registries={
                "reg-pack": (self.pack.registry.sec1, Scopes(("pk-*",), ("pack:*",), (GTIN,))),
                "reg-carrier": (
                    self.carrier.registry.sec1,
                    Scopes(("cr-*",), ("carrier:*",), ("99*",)),
                ),
            },
            ledgers={LEDGER: self.pack.ledger.public_key().public_bytes_raw()},
        )
        assert_trust(doc)
        return parse_trust(doc)

    def bundle(self, p: Plan, sizes: Mapping[str, int] | None = None) -> Bundle:
        """The bundle of the plan's entries: per log, a checkpoint of its size, one
        multiproof and an anchor on one local ledger."""
        b = Bundle(created=T0, subject=Subject(p.uid, p.item))
        chosen = p.entries()
        prev = bytes(32)
        for n, (origin, s) in enumerate(self.logs.items()):
            size = len(s.records) if sizes is None else sizes[origin]
            tree = MerkleTree()
            for raw in s.records[:size]:
                tree.append(raw)
            cp = Checkpoint(origin, size, tree.root(size))
            b.checkpoints.append(sign_checkpoint(cp, s.log))
            leaves = [i for log, i in chosen if log == origin]
            assert all(i < size for i in leaves)
            b.records += [BundleRecord(origin, i, s.records[i]) for i in leaves]
            if leaves:
                nodes = tuple(
                    tree._hash_of(subtree_nodes(lo, hi))
                    for lo, hi in multiproof_ranges(size, leaves)
                )
                b.proofs.append(MultiProof(origin, size, tuple(leaves), nodes))
            receipt = anchor.sign_local_entry(
                s.ledger, LEDGER, n, prev, T0 + n, checkpoint_hash(cp)
            )
            prev = anchor.entry_hash(receipt)
            b.anchors.append(AnchorRef(origin, size, receipt.to_json()))
        assert_bundle(b.to_json())
        return b


def _at(s: Scenario, origin: str, raws: list[bytes]) -> set[tuple[str, int]]:
    return {(origin, s.records.index(raw)) for raw in raws}


def _verdict(t: Trace, p: Plan, sizes: Mapping[str, int] | None = None) -> dict:
    report = verify_bundle(t.bundle(p, sizes), t.trust())
    assert report.verified, [(f.code, f.message) for f in report.failures]
    return report.verdict_document()


@pytest.fixture(scope="module")
def trace() -> Trace:
    return Trace()


def test_the_plan_takes_the_right_entries_from_both_logs(trace: Trace) -> None:
    t = trace
    source = MemorySource(t.entries())
    p = plan(source, UID, Authorities.of_trust(t.trust()))

    assert p.item == ITEM
    assert [(lp.leg.location, lp.why_none) for lp in p.legs] == [
        (ROOM, None),
        (TRUCK, None),
        (SHOP, "no duration"),
    ]
    assert [lp.monitors for lp in p.legs] == [
        [("pk-room", COMMISSIONED, LOADED)],
        [("cr-truck", LOADED, UNLOADED)],
        [],
    ]
    assert all(run.closed for run in p.runs) and p.open_runs == []
    assert {(run.signer, run.key) for run in p.runs} == {
        ("reg-pack", (5, ROOM)),
        ("reg-carrier", (5, TRUCK)),
        ("reg-pack", (6, GTIN)),
    }
    assert p.profile is not None and p.profile_note is None

    chosen = set(p.entries())
    assert len(chosen) == len(p.entries())  # each once
    by_log: dict[str, list] = {PACK: [], CARRIER: []}
    for log, i in chosen:
        by_log[log].append(open_record(t.logs[log].records[i]).payload)
    pack = by_log[PACK]
    carrier = by_log[CARRIER]

    # The scans: the commission from the packhouse, the load and unload from the carrier.
    assert _at(t.pack, PACK, [t.commission]) | _at(t.carrier, CARRIER, [t.load, t.unload]) == {
        e for e in chosen if isinstance(_payload(t, e), Scan)
    }
    # The room logger from the reading at the commission to the one at the load; the
    # truck logger from the load to the unload; nothing of the other room's logger.
    room = sorted(r.time for r in pack if isinstance(r, Reading))
    truck = sorted(r.time for r in carrier if isinstance(r, Reading))
    assert room == list(range(COMMISSIONED, LOADED + 1, 300))
    assert truck == list(range(LOADED, UNLOADED + 1, 300))
    # Each binding chain and the profile chain from the statement in force at the
    # start to the restatement after the end; not the other room's binding.
    assert sorted((b.target, b.cseq) for b in pack if isinstance(b, Binding)) == [
        (ROOM, 0),
        (ROOM, 1),
    ]
    assert sorted((b.target, b.cseq) for b in carrier if isinstance(b, Binding)) == [
        (TRUCK, 0),
        (TRUCK, 1),
    ]
    assert sorted(pp.cseq for pp in pack if isinstance(pp, ProductProfile)) == [0, 1]
    assert not any(isinstance(pp, ProductProfile) for pp in carrier)
    # The registrations of every device in the bundle, each from its own log.
    assert sorted(r.device for r in pack if isinstance(r, Registration)) == ["pk-rd", "pk-room"]
    assert sorted(r.device for r in carrier if isinstance(r, Registration)) == [
        "cr-rd",
        "cr-truck",
    ]
    assert p.entries() == sorted(chosen)
    assert [e.at for e in p.records()] == p.entries()


def _payload(t: Trace, at: tuple[str, int]) -> object:
    log, i = at
    return open_record(t.logs[log].records[i]).payload


def test_the_bundle_of_those_entries_verifies_and_passes(trace: Trace) -> None:
    p = plan(MemorySource(trace.entries()), UID, Authorities.of_trust(trace.trust()))
    doc = _verdict(trace, p)
    assert doc["verdict"] == "PASS", doc["reasons"]
    assert doc["subject"]["item"] == ITEM
    assert [leg["location"] for leg in doc["legs"]] == [ROOM, TRUCK, SHOP]
    assert [[m["device"] for m in leg["monitors"]] for leg in doc["legs"]] == [
        ["pk-room"],
        ["cr-truck"],
        [],
    ]


def test_an_excursion_on_the_truck_fails() -> None:
    hot = Trace(truck_temp=lambda t: 1200 if T0 + 2 * HOUR <= t < T0 + 2 * HOUR + 2400 else 300)
    p = plan(MemorySource(hot.entries()), UID, Authorities.of_trust(hot.trust()))
    doc = _verdict(hot, p)
    assert doc["verdict"] == "FAIL"
    (exc,) = doc["excursions"]
    assert (exc["side"], exc["peak"], exc["devices"]) == ("high", 1200, ["cr-truck"])


def test_a_source_answers_only_below_each_logs_checkpoint(trace: Trace) -> None:
    """The carrier's checkpoint does not cover its restatement yet: the truck's binding
    run is open, and the bundle says so (binding_unproven) - it still verifies."""
    t = trace
    sizes = {PACK: len(t.pack.records), CARRIER: t.carrier_size_before_restating}
    p = plan(MemorySource(t.entries(sizes)), UID, Authorities.of_trust(t.trust()))
    (still,) = p.open_runs
    assert (still.signer, still.key, still.open) == ("reg-carrier", (5, TRUCK), True)
    assert still.until == UNLOADED and still.last_time == T0 - HOUR
    assert all(i < sizes[log] for log, i in p.entries())
    doc = _verdict(t, p, sizes)
    assert doc["verdict"] == "INCOMPLETE"
    assert "binding_unproven" in {r["code"] for r in doc["reasons"]}


def test_a_record_in_two_logs_counts_once(trace: Trace) -> None:
    t = trace
    entries = t.entries()
    copies = [
        Entry(PACK, 10_000 + e.index, e.raw, e.signer, e.seq, e.tq, e.time, e.kind)
        for e in entries
        if e.log == CARRIER
    ]
    source = MemorySource(entries + copies)
    assert len(source) == len(entries)
    p = plan(source, UID, Authorities.of_trust(t.trust()))
    assert all(i < 10_000 for _, i in p.entries())
    assert (
        p.entries() == plan(MemorySource(entries), UID, Authorities.of_trust(t.trust())).entries()
    )


def test_authorities_decide_which_chains_count(trace: Trace) -> None:
    """No authority for the truck: no binding run for that leg, with the note; the
    profile is looked for under the GTIN's authority only."""
    t = trace
    trust = t.trust()
    auth = Authorities(
        place=lambda p: None if p == TRUCK else trust.place_authority(p),
        gtin=lambda g: "reg-carrier",
    )
    p = plan(MemorySource(t.entries()), UID, auth)
    assert p.legs[1].run is None
    assert p.legs[1].why_none == f"{TRUCK} has no authority (outside every places scope)"
    assert p.devices.keys() == {"pk-room"}
    assert p.profile is not None and p.profile.records == []
    assert p.profile_note == f"no profile for GTIN {GTIN} was ever signed by reg-carrier"


def test_find_uid_by_tag_or_digital_link(trace: Trace) -> None:
    source = MemorySource(trace.entries())
    assert find_uid(source, UID.hex()) == (UID, None)
    assert find_uid(source, f"https://id.example.com{ITEM}?x=1") == (UID, ITEM)
    with pytest.raises(TraceError, match="no commission scan in the logs"):
        find_uid(source, f"/01/{GTIN}/21/99")
    with pytest.raises(TraceError, match="neither a tag UID"):
        find_uid(source, "not-a-tag")
    with pytest.raises(TraceError, match="no scans of tag 04000000000009 in the logs"):
        plan(source, bytes.fromhex("04000000000009"), Authorities.of_trust(trace.trust()))


# --- which seqs show an interval (seq_bounds): dates that go back ------------------------


def test_seq_bounds_start_at_the_last_reading_not_a_later_status() -> None:
    # a reading at 100, then (same wake) a heartbeat at 100, the next reading at 400:
    # the reading at 100 stands over a leg starting at 200, the heartbeat does not
    dated = [(0, 1, 100), (1, 3, 100), (2, 1, 400), (3, 1, 700)]
    assert seq_bounds(dated, 200, 650, 0, 3) == (0, 3)
    # without a reading at or before the start: the last record of any kind
    assert seq_bounds([(0, 3, 100), (1, 1, 400)], 200, 650, 0, 1) == (0, 1)


def test_seq_bounds_keep_a_record_dated_inside_before_a_clock_set_back() -> None:
    # a clock 240 s fast: a reading at 340 (really 100), the gateway's ack sets the
    # clock back (a clock-set record at 100), the next reading at 400. A leg from 340
    # must hold the reading at 340 although a later seq is dated before it
    dated = [(0, 3, 340), (1, 1, 340), (2, 3, 100), (3, 7, 400), (4, 7, 4000)]
    lo, hi = seq_bounds(dated, 340, 3900, 0, 4)
    assert lo <= 1 and hi == 4
    # and at the end: a reading dated inside after a record dated past the end
    dated = [(0, 1, 100), (1, 1, 1000), (2, 3, 900), (3, 1, 950), (4, 1, 1300)]
    assert seq_bounds(dated, 200, 960, 0, 4) == (0, 4)
    # with dates that only grow, the window is the classic one
    dated = [(s, 1, 100 * s) for s in range(10)]
    assert seq_bounds(dated, 250, 650, 0, 9) == (2, 7)
