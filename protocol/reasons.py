"""The reasons of a verdict and their texts (docs/protocol.md §12.9).

One constructor per row of §12.9's table, so every text the verdict can say
is in this file; :func:`fmt_time`, :func:`fmt_centi` and :func:`fmt_duration`
are the formatters T, C and D. :meth:`Reason.sort_key` is the order of the
verdict's reasons and :func:`verdict_of` turns severities into the verdict.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

__all__ = [
    "FAIL",
    "GENUINE",
    "INCOMPLETE",
    "PASS",
    "STAGES",
    "SUSPECT",
    "UNCONFIRMED",
    "Reason",
    "fmt_centi",
    "fmt_duration",
    "fmt_time",
    "provenance_of",
    "verdict_of",
]

PASS, FAIL, INCOMPLETE = "PASS", "FAIL", "INCOMPLETE"
SEV_FAIL, SEV_INCOMPLETE, SEV_NOTE = "fail", "incomplete", "note"
#: The provenance verdict (§12.10) and its severities.
GENUINE, SUSPECT, UNCONFIRMED = "GENUINE", "SUSPECT", "UNCONFIRMED"
SEV_SUSPECT, SEV_UNCONFIRMED = "suspect", "unconfirmed"

#: The stage of each code: the first key of the order of reasons.
STAGES = {
    "no_commission": 1,
    "undated_scan": 1,
    "wrong_role": 1,
    "custody_conflict": 1,
    "custody_gap": 1,
    "custody_branch": 1,
    "custody_unlinked": 1,
    "no_custody": 1,
    "no_profile": 2,
    "unmonitored": 3,
    "binding_unproven": 3,
    "records_missing": 4,
    "lost": 4,
    "no_readings": 5,
    "clock_dated": 6,
    "undated": 6,
    "block_overlap": 6,
    "excursion": 7,
    "cumulative": 8,
    "mkt": 8,
    # the provenance verdict (§12.10)
    "tag_unauthenticated": 0,
    "tag_replayed": 0,
    "tag_not_checked": 0,
    "foreign_commission": 1,
    "duplicate_serial": 1,
    "two_places": 1,
    "provenance_only": 2,
}

_CONFLICT = {
    "before_commission": "comes before the item's commission",
    "recommissioned": "commissions the item again",
    "load_while_loaded": "loads the item while it is still loaded (no unload)",
    "unload_not_loaded": "unloads the item, but it was not loaded",
    "place_while_loaded": "finds the item at a place while it is still loaded (no unload)",
    "after_sale": "comes after the item's sale",
    "after_install": "comes after the item's installation",
}
_SCAN_TAIL = {
    "custody_gap": "follows a scan of the item that is not in the bundle",
    "custody_branch": "follows an earlier scan, not the one before it (the tag was not updated)",
    "custody_unlinked": "carries no custody link: a scan left out before it could not be detected",
}


@dataclass(frozen=True)
class Reason:
    """One reason (§12.9). ``start`` and ``end`` are the document's ``from`` and ``to``."""

    code: str
    severity: str  # "fail" | "incomplete" | "note"
    text: str
    leg: int | None = None
    device: str | None = None
    start: int | None = None
    end: int | None = None
    value: int | None = None
    detail: str | None = None

    def sort_key(self) -> tuple[Any, ...]:
        """(stage, leg, from, device, code, detail, to, value); a null number sorts as −1,
        a null string as ""; strings compare as UTF-8 bytes."""
        return (
            STAGES[self.code],
            _num(self.leg),
            _num(self.start),
            _text(self.device),
            _text(self.code),
            _text(self.detail),
            _num(self.end),
            _num(self.value),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "severity": self.severity,
            "leg": self.leg,
            "device": self.device,
            "from": self.start,
            "to": self.end,
            "value": self.value,
            "detail": self.detail,
            "text": self.text,
        }


def _num(v: int | None) -> int:
    return -1 if v is None else v


def _text(v: str | None) -> bytes:
    return b"" if v is None else v.encode()


def verdict_of(reasons: Iterable[Reason]) -> str:
    """FAIL if a reason fails, else INCOMPLETE if one is incomplete, else PASS."""
    severities = {r.severity for r in reasons}
    if SEV_FAIL in severities:
        return FAIL
    return INCOMPLETE if SEV_INCOMPLETE in severities else PASS


def provenance_of(reasons: Iterable[Reason]) -> str:
    """SUSPECT if a reason is suspect, else UNCONFIRMED if one is unconfirmed, else GENUINE."""
    severities = {r.severity for r in reasons}
    if SEV_SUSPECT in severities:
        return SUSPECT
    return UNCONFIRMED if SEV_UNCONFIRMED in severities else GENUINE


# --- the formatters T, C, D ---------------------------------------------------------------

_EPOCH = datetime(1970, 1, 1)


def fmt_time(t: int) -> str:
    """T(t) = ``YYYY-MM-DDTHH:MM:SSZ`` (UTC)."""
    return (_EPOCH + timedelta(seconds=t)).strftime("%Y-%m-%dT%H:%M:%SZ")


def fmt_centi(c: int) -> str:
    """C(c): the sign, whole degrees, two decimals and `` °C`` (``-0.05 °C``)."""
    return f"{'-' if c < 0 else ''}{abs(c) // 100}.{abs(c) % 100:02d} °C"


def fmt_duration(s: int) -> str:
    """D(s): ``1 h 5 min``, ``45 min``, ``0 min 30 s``."""
    h, n, r = s // 3600, s % 3600 // 60, s % 60
    text = f"{h} h {n} min" if h > 0 else f"{n} min"
    return f"{text} {r} s" if r > 0 else text


# --- the rows of §12.9 -------------------------------------------------------------------------


def no_commission(uid: bytes) -> Reason:
    text = f"no signed commission scan of tag {uid.hex()}: the item is unknown"
    return Reason("no_commission", SEV_INCOMPLETE, text)


def undated_scan(device: str, seq: int) -> Reason:
    text = (
        f"scan #{seq} by {device} cannot be dated (clock never set) and is left out of the custody"
    )
    return Reason("undated_scan", SEV_INCOMPLETE, text, device=device, value=seq)


def wrong_role_scan(device: str, seq: int, date: int | None) -> Reason:
    """A scan whose signer is not registered as a reader (§12.1 "Roles", §12.3 step 1)."""
    text = (
        f"scan #{seq} by {device} is left out of the custody: {device} is registered as "
        "a temperature logger, not a handover reader"
    )
    return Reason(
        "wrong_role", SEV_INCOMPLETE, text, device=device, start=date, value=seq, detail="scan"
    )


def wrong_role_readings(device: str, count: int) -> Reason:
    """The readings of a bound device not registered as a logger (§12.1, §12.6 step 3)."""
    text = (
        f"{device}: {count} readings are not used: {device} is registered as "
        "a handover reader, not a temperature logger"
    )
    return Reason("wrong_role", SEV_INCOMPLETE, text, device=device, value=count, detail="reading")


def custody_conflict(device: str, seq: int, date: int, detail: str) -> Reason:
    text = f"scan #{seq} by {device} at {fmt_time(date)} {_CONFLICT[detail]}"
    return Reason(
        "custody_conflict", SEV_INCOMPLETE, text, device=device, start=date, value=seq,
        detail=detail,
    )  # fmt: skip


def custody_link(code: str, device: str, seq: int, date: int, *, note: bool = False) -> Reason:
    """``custody_gap``, ``custody_branch`` or ``custody_unlinked`` (a note when ``note``)."""
    text = f"scan #{seq} by {device} at {fmt_time(date)} {_SCAN_TAIL[code]}"
    severity = SEV_NOTE if note else SEV_INCOMPLETE
    return Reason(code, severity, text, device=device, start=date, value=seq)


def no_custody() -> Reason:
    text = "the trace ends at its commission: there is no custody to judge"
    return Reason("no_custody", SEV_INCOMPLETE, text)


def no_profile(detail: str, gtin: str | None = None, lot: str | None = None) -> Reason:
    if detail == "no_gtin":
        text = "the item has no GTIN: no product profile applies"
    elif detail == "no_authority":
        text = f"no pinned registry speaks for GTIN {gtin}"
    elif detail == "unproven":
        text = "the product profile in force at commissioning is not shown"
    elif detail == "none_in_force":
        text = f"no product profile for GTIN {gtin} was in force at commissioning"
    elif lot is not None:  # lot_required
        text = (
            f"GTIN {gtin} has lot-specific profiles, but the one for lot {lot} is not in the bundle"
        )
    else:
        text = f"GTIN {gtin} has lot-specific profiles, but the item has no lot"
    return Reason("no_profile", SEV_INCOMPLETE, text, detail=detail)


def unmonitored(leg: int, start: int, end: int, detail: str, location: str | None) -> Reason:
    if detail == "no_location":
        what = "the vehicle is unknown (a load without a reference)"
    elif detail == "no_authority":
        what = f"no pinned registry speaks for {location}"
    else:  # no_devices
        what = f"no device monitored {location}"
    text = f"leg {leg}: {what} from {fmt_time(start)} to {fmt_time(end)}"
    return Reason("unmonitored", SEV_INCOMPLETE, text, leg, start=start, end=end, detail=detail)


def binding_unproven(leg: int, start: int, end: int, location: str) -> Reason:
    text = (
        f"leg {leg}: which devices monitored {location} from {fmt_time(start)} "
        f"to {fmt_time(end)} is not shown"
    )
    return Reason("binding_unproven", SEV_INCOMPLETE, text, leg, start=start, end=end)


def records_missing(leg: int, device: str, start: int, end: int) -> Reason:
    text = f"leg {leg}: records of {device} from {fmt_time(start)} to {fmt_time(end)} are missing"
    return Reason("records_missing", SEV_INCOMPLETE, text, leg, device=device, start=start, end=end)


def lost(leg: int, device: str, start: int, end: int, first: int, last: int) -> Reason:
    count = last - first + 1
    text = (
        f"leg {leg}: {device} lost {count} records (seqs {first}..{last}) "
        f"between {fmt_time(start)} and {fmt_time(end)}, as it declared"
    )
    return Reason(
        "lost", SEV_NOTE, text, leg, device=device, start=start, end=end, value=count,
        detail=f"{first}..{last}",
    )  # fmt: skip


def no_readings(leg: int, start: int, end: int) -> Reason:
    text = f"leg {leg}: no temperature reading covers {fmt_time(start)} to {fmt_time(end)}"
    return Reason("no_readings", SEV_INCOMPLETE, text, leg, start=start, end=end)


def clock_dated(device: str, count: int) -> Reason:
    text = (
        f"{device}: {count} readings taken before its clock was set "
        "are dated from its clock-set record"
    )
    return Reason("clock_dated", SEV_NOTE, text, device=device, value=count)


def undated(device: str, count: int) -> Reason:
    text = f"{device}: {count} readings cannot be dated (clock never set) and are not used"
    return Reason("undated", SEV_NOTE, text, device=device, value=count)


def block_overlap(device: str, seq: int, start: int, end: int) -> Reason:
    text = (
        f"{device}: reading block #{seq} ({fmt_time(start)} to {fmt_time(end)}) overlaps "
        "readings signed before or after it: the later-signed readings stand"
    )
    return Reason("block_overlap", SEV_NOTE, text, device=device, start=start, end=end, value=seq)


def excursion(side: str, start: int, end: int, peak: int, delay: int) -> Reason:
    alarm = end - start >= delay
    exc = "reaching" if alarm else "shorter than"
    text = (
        f"{side.capitalize()} excursion from {fmt_time(start)} to {fmt_time(end)} "
        f"({fmt_duration(end - start)}), peak {fmt_centi(peak)}, "
        f"{exc} the alarm delay of {fmt_duration(delay)}"
    )
    severity = SEV_FAIL if alarm else SEV_NOTE
    return Reason("excursion", severity, text, start=start, end=end, value=peak, detail=side)


def cumulative(tor: int, cumul: int) -> Reason:
    text = f"{fmt_duration(tor)} out of range in all, reaching the limit of {fmt_duration(cumul)}"
    return Reason("cumulative", SEV_FAIL, text, value=tor)


def mkt(value: int, limit: int) -> Reason:
    text = f"mean kinetic temperature {fmt_centi(value)} is above the limit of {fmt_centi(limit)}"
    return Reason("mkt", SEV_FAIL, text, value=value)


# --- the rows of §12.10 (the provenance verdict) ---------------------------------------------

_TAG = {
    "unauthenticated": (
        "tag_unauthenticated",
        SEV_SUSPECT,
        "did not authenticate (its SUN message does not verify): it is not a tag the brand "
        "owner commissioned",
    ),
    "replayed": (
        "tag_replayed",
        SEV_SUSPECT,
        "sent an authentication message that was already used (a replayed SUN): a copy of the tag",
    ),
    "unknown": (
        "tag_not_checked",
        SEV_UNCONFIRMED,
        "was not authenticated (no tap was checked): the records show that a genuine item "
        "with this identity exists, not that this tag is it",
    ),
}


def tag_reason(uid: bytes, tag: str) -> Reason | None:
    """``tag_unauthenticated``, ``tag_replayed`` or ``tag_not_checked``; None for ``genuine``."""
    if tag not in _TAG:
        return None
    code, severity, tail = _TAG[tag]
    return Reason(code, severity, f"tag {uid.hex()} {tail}")


def provenance_only(gtin: str) -> Reason:
    text = (
        f"no product profile of GTIN {gtin} is in the bundle: this is a provenance verdict, "
        "temperatures are not judged"
    )
    return Reason("provenance_only", SEV_NOTE, text)


def foreign_commission(device: str, seq: int, date: int, brand: str, gtin: str) -> Reason:
    text = (
        f"scan #{seq} by {device} at {fmt_time(date)} commissions the item, but {device} "
        f"is not registered by {brand}, the brand owner of GTIN {gtin}"
    )
    return Reason(
        "foreign_commission", SEV_SUSPECT, text, device=device, start=date, value=seq,
        detail=brand,
    )  # fmt: skip


def duplicate_serial(
    device: str, seq: int, date: int, other_uid: bytes, gtin: str, serial: str
) -> Reason:
    text = (
        f"GTIN {gtin} serial {serial} was also commissioned on tag {other_uid.hex()} "
        f"by {device} at {fmt_time(date)} (scan #{seq})"
    )
    return Reason(
        "duplicate_serial", SEV_SUSPECT, text, device=device, start=date, value=seq,
        detail=other_uid.hex(),
    )  # fmt: skip


def two_places(device: str, seq: int, earlier: int, date: int, place: str) -> Reason:
    text = (
        f"scan #{seq} by {device} at {fmt_time(date)} finds the tag {date - earlier} s after "
        f"a scan of it at another place, {place}, at {fmt_time(earlier)}: one tag cannot be "
        "in two places at once"
    )
    return Reason(
        "two_places", SEV_SUSPECT, text, device=device, start=earlier, end=date, value=seq,
        detail=place,
    )  # fmt: skip
