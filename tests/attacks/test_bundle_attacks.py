"""Attacks on what a bundle holds (docs/protocol.md §9 "what an honest bundle holds", §12):
evidence cut out - a logger, a chain's tail, a binding, a custody scan - and a subject
swapped between products. Every record left in is genuine, so the bundle verifies; the
verdict must say the story is not whole (INCOMPLETE, with the reason named), never PASS,
and a proven FAIL must not be cut down to a PASS. Both verifiers judge each bundle
(tests/attacks/outcome.py).

The world is the verdict vectors' day (tests/protocol/vectors/make_verdict_vectors.py):
commission at the packhouse, a truck, a DC dock, a cold room, shipped; one logger bound
to each place; custody links on the tag.
"""

from __future__ import annotations

from collections.abc import Callable

from protocol.record import Binding, ProductProfile, Registration, Scan, open_record
from tests.attacks.outcome import outcome, outcomes
from tests.attacks.registry import attack
from tests.protocol.scenario import COMMISSION, GTIN, ITEM, LOAD, T0, UID, UNLOAD, Scenario
from tests.protocol.vectors.make_verdict_vectors import (
    COLD,
    DOCK,
    PACK,
    PROFILE,
    T_END,
    T_LOAD,
    T_UNLOAD,
    TRUCK,
    Day,
    build_day,
    excursion,
    is_scan,
)

GROUP = "bundle and verdict"

OTHER_UID = bytes.fromhex("04b7d1e20a4c81")
OTHER_GTIN = "09506000134369"
OTHER_ITEM = f"/01/{OTHER_GTIN}/10/L7/21/9"
WARM = T_LOAD + 2 * 3600  # the truck's 50 minutes at 9 °C start here (seconds after T0)


def day(*, warm: bool = False, **kw: object) -> Day:
    if warm:
        kw["temps"] = excursion(TRUCK, WARM, WARM + 3000, 900)
    return build_day(deterministic=False, **kw)  # type: ignore[arg-type]


def signed_by(dev: str) -> Callable[[bytes], bool]:
    return lambda raw: open_record(raw).signer == dev


def statement_of(cls: type, **fields: object) -> Callable[[bytes], bool]:
    def test(raw: bytes) -> bool:
        p = open_record(raw).payload
        return isinstance(p, cls) and all(getattr(p, k) == v for k, v in fields.items())

    return test


def drop(*preds: Callable[[bytes], bool]) -> Callable[[bytes], bool]:
    return lambda raw: not any(p(raw) for p in preds)


# --- evidence cut out --------------------------------------------------------------------------


@attack(
    "cut-logger",
    group=GROUP,
    attacker="bundle holder (or the cloud relaying bundles)",
    tries="cuts out every record of the logger that watched the warm truck (and its registration)",
    refused_by="`records_missing` over the logger's monitoring interval: INCOMPLETE, not "
    "PASS (nor the FAIL it hid)",
    recorded="the verdict's reasons (leg, device, from, to)",
)
def test_a_logger_cut_out_is_records_missing():
    d = day(warm=True)
    dev = d.loggers[TRUCK].id
    registration = statement_of(Registration, device=dev)
    full = outcome(d.s.bundle(item=ITEM), d.s.trust_doc())
    assert full.verdict == "FAIL"
    cases = [
        (d.s.bundle(drop(signed_by(dev)), item=ITEM), d.s.trust_doc()),
        (d.s.bundle(drop(signed_by(dev), registration), item=ITEM), d.s.trust_doc()),
    ]
    for out in outcomes(cases):
        assert out.verified and out.verdict == "INCOMPLETE"
        (missing,) = out.reason("records_missing")
        assert missing["device"] == dev
        assert (missing["from"], missing["to"]) == (T0 + T_LOAD, T0 + T_UNLOAD)


@attack(
    "cut-chain-tail",
    group=GROUP,
    attacker="bundle holder",
    tries="cuts the truck logger's chain at its first warm reading (the tail: nothing after "
    "it is left to show a gap)",
    refused_by="`records_missing` from the cut to the end of its monitoring: INCOMPLETE",
    recorded="the verdict's reasons",
)
def test_a_chain_tail_cut_out_is_records_missing():
    d = day(warm=True)
    dev = d.loggers[TRUCK].id

    def tail(raw: bytes) -> bool:
        rec = open_record(raw)
        return rec.signer == dev and rec.payload.time >= T0 + WARM

    out = outcome(d.s.bundle(drop(tail), item=ITEM), d.s.trust_doc())
    assert out.verified and out.verdict == "INCOMPLETE"
    (missing,) = out.reason("records_missing")
    assert missing["device"] == dev
    assert missing["from"] <= T0 + WARM and missing["to"] == T0 + T_UNLOAD
    assert not out.reason("excursion")  # the warm hour is gone, and the verdict says so


@attack(
    "cut-binding",
    group=GROUP,
    attacker="bundle holder",
    tries="cuts out the binding statements of the truck (which logger watched it), all of "
    "them or only the restatement that closes the leg",
    refused_by="`binding_unproven` over the part of the leg not shown: INCOMPLETE",
    recorded="the verdict's reasons (leg, from, to)",
)
def test_a_binding_cut_out_is_binding_unproven():
    d = day(warm=True)
    truck = statement_of(Binding, target=TRUCK)
    closing = statement_of(Binding, target=TRUCK, time=T0 + T_END + 3600)
    cases = [
        (d.s.bundle(drop(truck), item=ITEM), d.s.trust_doc()),
        (d.s.bundle(drop(closing), item=ITEM), d.s.trust_doc()),
    ]
    for out in outcomes(cases):
        assert out.verified and out.verdict == "INCOMPLETE"
        (unproven,) = out.reason("binding_unproven")
        assert (unproven["from"], unproven["to"]) == (T0 + T_LOAD, T0 + T_UNLOAD)
        assert not out.reason("excursion")  # nobody is shown to have watched the truck


@attack(
    "cut-scan",
    group=GROUP,
    attacker="bundle holder",
    tries="cuts out a custody scan (the unload at the DC, where the truck handed the pallet "
    "over), or the commission",
    refused_by="custody links: `custody_gap` (and `custody_conflict` `place_while_loaded`); "
    "the commission: `no_commission`: INCOMPLETE",
    recorded="the verdict's reasons (reader, scan)",
)
def test_a_custody_scan_cut_out_is_a_custody_gap():
    d = day()
    cases = [
        (d.s.bundle(drop(is_scan(UNLOAD)), item=ITEM), d.s.trust_doc()),
        (d.s.bundle(drop(is_scan(COMMISSION))), d.s.trust_doc()),
    ]
    unload_cut, commission_cut = outcomes(cases)
    assert unload_cut.verdict == "INCOMPLETE"
    (gap,) = unload_cut.reason("custody_gap")
    assert gap["device"] == d.readers[COLD].id  # the receive that follows the cut scan
    # and, without the unload, the receive finds the pallet still on the truck
    assert [r["detail"] for r in unload_cut.reason("custody_conflict")] == ["place_while_loaded"]
    assert commission_cut.verdict == "INCOMPLETE"
    assert commission_cut.reasons == {"no_commission"}


def test_a_scan_cut_out_of_unlinked_custody_shows_only_as_unlinked():
    """The documented limit (docs/protocol.md §14, docs/security.md): without custody links
    (a tag nobody writes), a cut scan that leaves no contradiction is not seen; the report
    says the scans were unlinked. Not in the register: it is not refused."""
    d = day(scans={n: {"link": False} for n in range(1, 5)})
    receive = statement_of(Scan, place=COLD)
    out = outcome(d.s.bundle(drop(receive), item=ITEM), d.s.trust_doc())
    assert out.verdict == "PASS" and out.reasons == {"custody_unlinked"}
    assert {r["severity"] for r in out.document["reasons"]} == {"note"}


# --- a subject swapped between products ----------------------------------------------------------


def two_products() -> Day:
    """The day, plus a second product on the same truck: tag OTHER_UID, item OTHER_ITEM of
    OTHER_GTIN, whose (laxer) profile the same registry signs."""
    d = day(warm=True)
    s: Scenario = d.s
    lax = dict(PROFILE, low=-2500, high=2500, name="ambient")
    s.profile(OTHER_GTIN, T0 - 86400, **lax)
    pack = d.readers[PACK]
    s.scan(pack, COMMISSION, T0 + 60, uid=OTHER_UID, item=OTHER_ITEM)
    s.scan(pack, LOAD, T0 + T_LOAD, uid=OTHER_UID, ref=TRUCK)
    s.scan(d.readers[DOCK], UNLOAD, T0 + T_UNLOAD, uid=OTHER_UID)
    s.profile(OTHER_GTIN, T0 + T_END + 3600, **lax)
    return d


@attack(
    "subject-swap",
    group=GROUP,
    attacker="bundle holder (a seller)",
    tries="presents product A's evidence as product B's: claims B's item for A's tag, or "
    "B's tag for A's scans",
    refused_by="`subject_mismatch` (not verified); another tag's uid: `no_commission` (INCOMPLETE)",
    recorded="the report's failures; the verdict's reasons",
)
def test_a_subject_swapped_between_products_is_refused():
    d = two_products()
    a_only = drop(statement_of(Scan, uid=OTHER_UID))
    cases = [
        (d.s.bundle(a_only, item=OTHER_ITEM), d.s.trust_doc()),
        (d.s.bundle(a_only, uid=OTHER_UID, item=OTHER_ITEM), d.s.trust_doc()),
    ]
    claimed, other_tag = outcomes(cases)
    assert claimed.failures == {"subject_mismatch"} and claimed.verdict is None
    assert other_tag.verdict == "INCOMPLETE" and other_tag.reasons == {"no_commission"}


@attack(
    "subject-swap-statements",
    group=GROUP,
    attacker="bundle holder",
    tries="backs product A's custody (a warm truck: FAIL) with another product's statements: "
    "another GTIN's laxer profile or another lot's in place of A's, another truck's binding "
    "in place of A's truck's, another tag's unload scan in place of A's",
    refused_by="another GTIN: the provenance verdict (UNCONFIRMED, `provenance_only`, D24); "
    "another lot: `no_profile` (`lot_required`); another place: `binding_unproven`; another "
    "tag: `custody_gap` - never PASS",
    recorded="the verdict's reasons",
)
def test_statements_of_another_product_do_not_stand_in():
    d = two_products()
    d.s.bind("fleet:truck-2", [d.loggers[TRUCK].id], T0 - 3600)  # a genuine binding elsewhere

    def unload_of_a(raw: bytes) -> bool:
        p = open_record(raw).payload
        return isinstance(p, Scan) and p.uid == UID and p.action == UNLOAD

    own_profile = statement_of(ProductProfile, gtin=GTIN)
    truck = statement_of(Binding, target=TRUCK)
    lots = day(warm=True, lot_profile=dict(PROFILE, name="lot L42"))
    lots.s.profile(GTIN, T0 - 86400, lot="L43", **dict(PROFILE, high=2500, name="lot L43"))
    own_lot = statement_of(ProductProfile, gtin=GTIN, lot="L42")
    cases = [
        (d.s.bundle(drop(own_profile), item=ITEM), d.s.trust_doc()),
        (lots.s.bundle(drop(own_lot), item=ITEM), lots.s.trust_doc()),
        (d.s.bundle(drop(truck), item=ITEM), d.s.trust_doc()),
        (d.s.bundle(drop(unload_of_a), item=ITEM), d.s.trust_doc()),
    ]
    other_gtin, other_lot, other_truck, other_scan = outcomes(cases)
    assert other_gtin.verdict == "UNCONFIRMED" and "provenance_only" in other_gtin.reasons
    assert other_lot.verdict == "INCOMPLETE"
    assert [r["detail"] for r in other_lot.reason("no_profile")] == ["lot_required"]
    assert other_truck.verdict == "INCOMPLETE" and other_truck.reason("binding_unproven")
    assert other_scan.verdict == "FAIL"  # the warm truck stays proven ...
    assert other_scan.reason("custody_gap")  # ... and the cut scan is seen
