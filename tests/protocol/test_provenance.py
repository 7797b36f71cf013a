"""The provenance verdict (docs/protocol.md §12.10): one test per rule and edge, over the
spare part of the provenance vectors (tests/protocol/vectors/make_verdict_vectors.py)."""

from __future__ import annotations

from typing import Any

import pytest

from protocol.custody import custody, date_records
from protocol.record import Record, Registration, Scan, open_record
from protocol.verdict import judge
from protocol.verify import verify_bundle
from protocol.verify_cli import EXIT_PASS, EXIT_SUSPECT, EXIT_UNCONFIRMED, exit_status
from tests.protocol.scenario import COMMISSION, INSTALL, LOAD, RECEIVE, SELL, SHIP, T0, UID, UNLOAD
from tests.protocol.vectors.make_verdict_vectors import (
    DAY,
    DIST_A,
    DIST_B,
    GTIN,
    OTHER_UID,
    PART,
    Parts,
    build_day,
    build_parts,
    p_genuine,
)

BRAND_SCOPES: dict[str, Any] = {
    "devices": ["rd-brand-*"],
    "places": ["brand:*"],
    "gtins": [GTIN[:-1] + "*"],
}


def records_of(w: Parts) -> list[Record]:
    return [open_record(raw) for raw in w.s.records]


def doc(w: Parts, tag: str = "genuine", keep: Any = None) -> dict[str, Any]:
    recs = [r for r in records_of(w) if keep is None or keep(r)]
    return judge(recs, w.s.trust(**BRAND_SCOPES), UID, tag).to_json()


def codes(d: dict[str, Any]) -> list[tuple[str, str]]:
    return [(r["code"], r["severity"]) for r in d["reasons"] if r["code"] != "provenance_only"]


def start(w: Parts) -> None:
    w.s.scan(w.brand, COMMISSION, T0, item=PART)
    w.s.scan(w.brand, SHIP, T0 + 3600)


def test_genuine_part_shows_its_custody_and_where_its_life_closed():
    d = doc(p_genuine())
    assert d["verdict"] == "GENUINE" and codes(d) == []
    [note] = d["reasons"]
    assert (note["code"], note["severity"]) == ("provenance_only", "note")
    assert d["profile"] is None and d["legs"] == [] and d["totals"] is None
    assert d["subject"]["commissioned"] == T0 and d["subject"]["serial"] == "P-000731"
    p = d["provenance"]
    assert (p["tag"], p["brand"]) == ("genuine", "reg-brand")
    assert [(e["action"], e["registry"], e["org"]) for e in p["custody"]] == [
        ("commission", "reg-brand", "Brand Parts"),
        ("ship", "reg-brand", "Brand Parts"),
        ("receive", "reg-dista", "Distributor A"),
        ("ship", "reg-dista", "Distributor A"),
        ("receive", "reg-distb", "Distributor B"),
        ("sell", "reg-distb", "Distributor B"),
    ]
    assert p["closed"] == {
        "index": 5,
        "action": "sell",
        "device": "rd-distb-1",
        "seq": 1,
        "place": DIST_B,
        "at": T0 + 6 * DAY,
    }


@pytest.mark.parametrize(
    ("tag", "verdict", "code"),
    [
        ("genuine", "GENUINE", None),
        ("unknown", "UNCONFIRMED", ("tag_not_checked", "unconfirmed")),
        ("replayed", "SUSPECT", ("tag_replayed", "suspect")),
        ("unauthenticated", "SUSPECT", ("tag_unauthenticated", "suspect")),
    ],
)
def test_the_tag_input(tag, verdict, code):
    d = doc(p_genuine(), tag)
    assert d["verdict"] == verdict and d["provenance"]["tag"] == tag
    assert codes(d) == ([code] if code else [])
    if code:
        assert d["reasons"][0]["text"].startswith(f"tag {UID.hex()} ")


def test_an_unknown_tag_value_is_refused():
    with pytest.raises(ValueError, match="tag must be one of"):
        judge(records_of(p_genuine()), p_genuine().s.trust(**BRAND_SCOPES), UID, "maybe")


def test_suspect_wins_over_unconfirmed():
    d = doc(p_genuine(), "unknown", keep=lambda r: not _is(r, COMMISSION))
    # without the commission there is no item: the cold-chain verdict, INCOMPLETE
    assert d["verdict"] == "INCOMPLETE" and "provenance" not in d
    w = build_parts()
    w.s.scan(w.dist_a, COMMISSION, T0, item=PART)
    d = doc(w, "unknown")
    assert d["verdict"] == "SUSPECT"
    assert codes(d) == [("tag_not_checked", "unconfirmed"), ("foreign_commission", "suspect")]


def _is(r: Record, action: int) -> bool:
    return isinstance(r.payload, Scan) and r.payload.action == action


def test_a_commission_reader_without_the_brands_registration_is_foreign():
    # the same reader, but its registration is not in V (e.g. its key is pinned directly)
    d = doc(p_genuine(), keep=lambda r: not isinstance(r.payload, Registration))
    [r] = [r for r in d["reasons"] if r["code"] == "foreign_commission"]
    assert (r["device"], r["from"], r["value"], r["detail"]) == ("rd-brand-1", T0, 0, "reg-brand")
    assert r["text"] == (
        "scan #0 by rd-brand-1 at 2026-09-21T14:13:20Z commissions the item, but rd-brand-1 "
        "is not registered by reg-brand, the brand owner of GTIN 09506000134352"
    )
    assert d["provenance"]["custody"][0]["registry"] is None


def test_a_scan_before_the_commission_is_suspect():
    w = build_parts()
    w.s.scan(w.dist_a, RECEIVE, T0 - 60)
    start(w)
    d = doc(w)
    assert codes(d) == [("custody_conflict", "suspect")]
    assert d["reasons"][0]["detail"] == "before_commission"


@pytest.mark.parametrize(("dt", "suspect"), [(0, True), (10, True), (11, False)])
def test_two_places_within_ten_seconds(dt, suspect):
    w = build_parts()
    start(w)
    w.s.scan(w.dist_a, RECEIVE, T0 + DAY)
    w.s.scan(w.dist_b, RECEIVE, T0 + DAY + dt)
    d = doc(w)
    assert d["verdict"] == ("SUSPECT" if suspect else "GENUINE")
    if suspect:
        [r] = d["reasons"][:1]
        assert (r["code"], r["from"], r["to"], r["detail"]) == (
            "two_places",
            T0 + DAY,
            T0 + DAY + dt,
            DIST_A,
        )
        assert f"finds the tag {dt} s after a scan of it at another place, {DIST_A}," in r["text"]


def test_two_scans_at_one_place_within_seconds_are_fine():
    w = build_parts()
    start(w)
    w.s.scan(w.dist_a, RECEIVE, T0 + DAY)
    w.s.scan(w.dist_a, SHIP, T0 + DAY + 2, place=DIST_A)
    assert doc(w)["verdict"] == "GENUINE"


def test_unload_without_load_is_unconfirmed_and_a_double_load_suspect():
    w = build_parts()
    start(w)
    w.s.scan(w.dist_a, UNLOAD, T0 + DAY)
    d = doc(w)
    assert d["verdict"] == "UNCONFIRMED" and codes(d) == [("custody_conflict", "unconfirmed")]
    w = build_parts()
    start(w)
    w.s.scan(w.dist_a, LOAD, T0 + DAY, ref="fleet:truck-1")
    w.s.scan(w.dist_b, LOAD, T0 + 2 * DAY, ref="fleet:truck-2")
    d = doc(w)
    assert d["verdict"] == "SUSPECT" and d["reasons"][0]["detail"] == "load_while_loaded"


def test_a_missing_scan_is_unconfirmed_and_no_custody_is_no_reason():
    w = p_genuine()
    d = doc(w, keep=lambda r: not (_is(r, RECEIVE) and r.signer == "rd-dista-1"))
    assert d["verdict"] == "UNCONFIRMED" and codes(d) == [("custody_gap", "unconfirmed")]
    w = build_parts()
    w.s.scan(w.brand, COMMISSION, T0, item=PART)
    d = doc(w)
    assert d["verdict"] == "GENUINE" and d["provenance"]["closed"] is None


def test_install_closes_the_life_and_a_sale_after_it_is_suspect():
    w = build_parts()
    start(w)
    w.s.scan(w.plant, INSTALL, T0 + DAY)
    w.s.scan(w.dist_b, SELL, T0 + 2 * DAY)
    d = doc(w)
    assert d["provenance"]["closed"]["action"] == "install"
    [r] = [r for r in d["reasons"] if r["code"] == "custody_conflict"]
    assert (r["detail"], r["severity"]) == ("after_install", "suspect")
    assert r["text"].endswith("comes after the item's installation")


def test_duplicate_serial_compares_gtin_and_serial_not_the_lot():
    w = p_genuine()
    w.s.scan(w.dist_b, COMMISSION, T0 + DAY, uid=OTHER_UID, item=f"/01/{GTIN}/10/X1/21/P-000731")
    w.s.scan(w.dist_b, COMMISSION, T0 + DAY + 1, uid=OTHER_UID[::-1], item=f"/01/{GTIN}/21/P-9")
    d = doc(w)
    [r] = [r for r in d["reasons"] if r["code"] == "duplicate_serial"]
    assert (r["device"], r["detail"], r["from"]) == ("rd-distb-1", OTHER_UID.hex(), T0 + DAY)
    assert r["text"] == (
        f"GTIN {GTIN} serial P-000731 was also commissioned on tag {OTHER_UID.hex()} "
        "by rd-distb-1 at 2026-09-22T14:13:20Z (scan #2)"
    )


def test_an_item_without_serial_has_no_duplicates():
    w = build_parts()
    item = f"/01/{GTIN}/10/B7"
    w.s.scan(w.brand, COMMISSION, T0, item=item)
    w.s.scan(w.brand, COMMISSION, T0 + 60, uid=OTHER_UID, item=item)
    assert doc(w)["verdict"] == "GENUINE"


def test_a_profile_statement_of_the_gtin_keeps_the_cold_chain_verdict():
    w = p_genuine()
    w.s.profile(GTIN, T0 - DAY, low=0, high=400, delay=1800, gap=1800)
    d = doc(w, "replayed")
    assert d["verdict"] == "INCOMPLETE" and "provenance" not in d


def test_a_gtin_without_a_brand_owner_keeps_the_cold_chain_verdict():
    w = p_genuine()
    recs = records_of(w)
    d = judge(recs, w.s.trust(devices=["rd-brand-*"], gtins=[]), UID, "genuine").to_json()
    assert d["verdict"] == "INCOMPLETE" and "provenance" not in d
    assert ("no_profile", "no_authority") in {(r["code"], r["detail"]) for r in d["reasons"]}


def test_the_cold_chain_document_ignores_the_tag():
    day = build_day(deterministic=False)
    bundle, trust = day.s.bundle(), day.s.trust()
    plain = verify_bundle(bundle, trust)
    assert exit_status(plain) == EXIT_PASS
    for tag in ("genuine", "replayed", "unauthenticated"):
        report = verify_bundle(bundle, trust, tag=tag)
        assert report.verdict_document() == plain.verdict_document()
        assert "provenance" not in report.verdict_document()


def test_cold_chain_custody_knows_install():
    day = build_day(deterministic=False)
    s = day.s
    reader = day.readers[DIST_A] if DIST_A in day.readers else next(iter(day.readers.values()))
    s.scan(reader, INSTALL, T0 + 11 * 3600)
    s.scan(reader, RECEIVE, T0 + 12 * 3600)
    recs = [open_record(raw) for raw in s.records]
    c = custody(recs, date_records(recs), UID)
    assert [g.scan_json()["action"] for g in c.legs][-2:] == ["install", "receive"]
    assert [(r.detail, r.severity) for r in c.reasons if r.code == "custody_conflict"] == [
        ("after_install", "incomplete")
    ]


def test_exit_status_of_provenance_verdicts():
    w = p_genuine()
    bundle, trust = w.s.bundle(item=PART), w.s.trust(**BRAND_SCOPES)
    assert exit_status(verify_bundle(bundle, trust, tag="genuine")) == EXIT_PASS
    assert exit_status(verify_bundle(bundle, trust, tag="replayed")) == EXIT_SUSPECT
    assert exit_status(verify_bundle(bundle, trust)) == EXIT_UNCONFIRMED
