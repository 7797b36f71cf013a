"""Attacks that use a device's key outside its registered role (docs/protocol.md §2.5,
§12.1 "Roles"): a logger's key signing custody scans, a reader's key signing the
temperatures of a place a registry bound it to. Each bundle is judged by both verifiers
(tests/attacks/outcome.py).

The world is the verdict vectors' day (tests/protocol/vectors/make_verdict_vectors.py),
where loggers are registered with role 1 and readers with role 2; the attacker holds one
device's key and gets what it signs logged, as any registered device can.
"""

from __future__ import annotations

from tests.attacks.outcome import outcome, outcomes
from tests.attacks.registry import attack
from tests.protocol.scenario import COMMISSION, GTIN, ITEM, T0, UNLOAD
from tests.protocol.vectors.make_verdict_vectors import (
    COLD,
    DOCK,
    EVERY,
    PACK,
    T_LOAD,
    TRUCK,
    Day,
    build_day,
    excursion,
)

GROUP = "bundle and verdict"

FORGED = T0 + T_LOAD + 2 * 3600  # the forged unload, two hours into the trip
WARM = (T_LOAD + 2 * 3600 + 600, T_LOAD + 2 * 3600 + 600 + 3000)  # then 50 min warm


def _trip(forge: bool) -> Day:
    """The day with a 50-minute excursion on the truck; with ``forge``, the truck logger's
    key signs an unload at the dock just before it (and the tag is written, so the real
    unload links to the forged scan)."""

    def hook(day: Day, place: str, t: int) -> bool:
        if forge and place == TRUCK and t == FORGED:
            day.s.scan(day.loggers[TRUCK], UNLOAD, t, place=DOCK)
        return False

    return build_day(deterministic=False, temps=excursion(TRUCK, WARM[0], WARM[1], 900), hook=hook)


@attack(
    "logger-key-signs-custody",
    group=GROUP,
    attacker="thief of a logger's key (a logger rides on a truck: the easiest key to reach)",
    tries="signs a custody scan with it: an unload at a cold dock just before the truck "
    "warmed, so the excursion falls outside the pallet's custody",
    refused_by="`wrong_role`: the scan is no custody; the real unload that links to it "
    "is a `custody_gap`, the excursion stays FAIL",
    recorded="the verdict's reasons (§12.3 step 1)",
)
def test_a_logger_signed_scan_is_no_custody():
    honest_day, forged_day = _trip(False), _trip(True)
    honest = outcome(honest_day.s.bundle(item=ITEM), honest_day.s.trust_doc())
    assert honest.verdict == "FAIL" and honest.reasons == {"excursion"}
    logger = forged_day.loggers[TRUCK].id
    (out,) = outcomes([(forged_day.s.bundle(item=ITEM), forged_day.s.trust_doc())])
    assert out.verified and out.verdict == "FAIL"
    assert out.reasons == {"wrong_role", "custody_gap", "excursion"}
    (wrong,) = out.reason("wrong_role")
    assert (wrong["device"], wrong["detail"], wrong["from"], wrong["severity"]) == (
        logger,
        "scan",
        FORGED,
        "incomplete",
    )
    (gap,) = out.reason("custody_gap")
    assert gap["device"] == forged_day.readers[DOCK].id  # the real unload
    # the custody is the honest one: the forged scan opens no leg, the excursion is the truck's
    legs = [(g["scan"]["device"], g["scan"]["action"]) for g in out.document["legs"]]
    assert legs == [(g["scan"]["device"], g["scan"]["action"]) for g in honest.document["legs"]]
    assert out.document["excursions"] == honest.document["excursions"]


@attack(
    "reader-readings-stand-in",
    group=GROUP,
    attacker="holder of a reader's key, where a registry bound the reader to a place",
    tries="signs cold readings with it for the place, in place of a logger's",
    refused_by="`wrong_role`: the readings stand for nothing, and the time they would "
    "cover is `no_readings` (INCOMPLETE)",
    recorded="the verdict's reasons and the leg's figures (§12.6 step 3)",
)
def test_a_readers_readings_are_no_temperatures():
    d = build_day(deterministic=False, read_by_reader=(COLD,))
    reader = d.readers[COLD].id
    (out,) = outcomes([(d.s.bundle(item=ITEM), d.s.trust_doc())])
    assert out.verified and out.verdict == "INCOMPLETE"
    assert out.reasons == {"wrong_role", "no_readings"}
    (wrong,) = out.reason("wrong_role")
    assert (wrong["device"], wrong["detail"], wrong["severity"]) == (
        reader,
        "reading",
        "incomplete",
    )
    assert wrong["value"] > 0
    cold = [g for g in out.document["legs"] if g["location"] == COLD]
    assert cold and all(g["readings"] == 0 and g["covered"] == 0 for g in cold)
    assert all(m["device"] == reader for g in cold for m in g["monitors"])


OTHER_ITEM = f"/01/{GTIN}/10/L9/21/999999"


@attack(
    "logger-key-signs-commission",
    group=GROUP,
    attacker="thief of a logger's key, and the bundle holder",
    tries="commissions the tag with it, before the real commission, as another item, "
    "and has the bundle claim that item",
    refused_by="`wrong_role`: it is no commission; the bundle claiming its item is "
    "`subject_mismatch` (not verified)",
    recorded="the verdict's reasons; the report's failures (check `subject`)",
)
def test_a_logger_signed_commission_does_not_name_the_item():
    def hook(day: Day, place: str, t: int) -> bool:
        if place == PACK and t == T0 - EVERY:  # before the reader's commission at T0
            day.s.scan(day.loggers[PACK], COMMISSION, t, place=PACK, item=OTHER_ITEM, write=False)
        return False

    d = build_day(deterministic=False, hook=hook)
    true_claim, false_claim = outcomes(
        [(d.s.bundle(item=ITEM), d.s.trust_doc()), (d.s.bundle(item=OTHER_ITEM), d.s.trust_doc())]
    )
    assert true_claim.verified and true_claim.verdict == "INCOMPLETE"
    assert true_claim.reasons == {"wrong_role"}
    subject = true_claim.document["subject"]
    assert (subject["item"], subject["reader"]) == (ITEM, d.readers[PACK].id)
    assert false_claim.failures == {"subject_mismatch"} and false_claim.verdict is None
    assert false_claim.checks["subject_mismatch"] == {"subject"}
