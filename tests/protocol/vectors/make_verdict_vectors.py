"""Make the verdict vectors of docs/protocol.md §13.4, and the provenance vectors.

    python -m tests.protocol.vectors.make_verdict_vectors   # rewrites vectors/verdict/
                                                            # and vectors/provenance/

Each vector is a directory with ``bundle.json``, ``trust.json`` and
``expected.json`` (the verdict document of §13.1). Keys are derived from
fixed labels and every signature is deterministic (RFC 6979 for P-256,
Ed25519), so running this script again gives the same bytes.

The scenario is one pallet's day: commissioned at a packhouse dock, loaded
onto a truck, unloaded at a distribution centre's dock, received into a cold
room, shipped. Each place has its own logger, bound to it by the registry;
the product profile is "chilled 0-4 °C, alarm delay 30 min, cumulative 2 h,
readings stand at most 30 min". Each vector changes one thing.

``expected.json`` is the output of this repository's verifier, but the
script does not take it on trust: each vector declares the verdict and the
reason codes it is built to produce (``WANT``), and the script refuses to
write a vector whose output differs. A second implementation checks itself
against the files.

The provenance vectors (§12.10, ``vectors/provenance/<name>/``, with
``input.json`` giving the tag's authentication) follow a spare part without a
temperature profile: commissioned by its brand owner, shipped to distributor
A, then to distributor B, sold (or installed at a customer's plant). Each
vector changes one thing: where custody starts, a second sale, one tag in two
places, a scan after the installation, the same serial on a second tag, the
tag's authentication.
"""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from protocol.bundle import loads_bundle
from protocol.record import KIND_BLOCK, Reading, ReadingBlock, Scan, open_record
from protocol.trust import parse_trust
from protocol.verify import verify_bundle
from tests.protocol.scenario import (
    COMMISSION,
    GTIN,
    INSTALL,
    ITEM,
    LOAD,
    RECEIVE,
    SELL,
    SHIP,
    T0,
    UNLOAD,
    Scenario,
    Signer,
)

HERE = Path(__file__).resolve().parent / "verdict"
PROVENANCE_HERE = Path(__file__).resolve().parent / "provenance"

EVERY = 600  # a reading every 10 minutes
PACK, TRUCK, DOCK, COLD = "pack:dock-1", "fleet:truck-1", "dc:dock-3", "dc:cold-room-2"
# The day (seconds after T0): commission, load, unload, receive, ship.
T_COMMISSION, T_LOAD, T_UNLOAD, T_RECEIVE, T_SHIP = (
    0,
    1800,
    1800 + 4 * 3600,
    1800 + 4 * 3600 + 1200,
    10 * 3600,
)
T_END = T_SHIP
PROFILE = dict(low=0, high=400, delay=1800, cumul=7200, gap=1800, name="chilled 0-4 °C")


@dataclass
class Day:
    """The scenario's parties, and the hooks a vector uses to change one thing."""

    s: Scenario
    loggers: dict[str, Signer]
    readers: dict[str, Signer]


def steady(t: int) -> int:
    return 250 + (t // EVERY) % 5 * 10  # 2.50 .. 2.90 °C


def build_day(
    *,
    profile: dict[str, object] | None = None,
    temps: dict[str, Callable[[int], int | None]] | None = None,
    restate: bool = True,
    unbound: tuple[str, ...] = (),
    hook: Callable[[Day, str, int], bool] | None = None,
    deterministic: bool = True,
    scans: dict[int, dict[str, object]] | None = None,
    extra: dict[str, Callable[[int], int | None]] | None = None,
    lot_profile: dict[str, object] | None = None,
    scanned_by_logger: tuple[int, ...] = (),
    read_by_reader: tuple[str, ...] = (),
) -> Day:
    """The day, with per-place temperature curves and optional changes.

    ``hook(day, place, t)`` is called before each reading; returning True
    skips the standard reading (the hook made its own records). ``scans``
    changes the keyword arguments of the n-th custody scan (0 = commission);
    ``extra`` adds a second logger to a place, with its own curve;
    ``lot_profile`` adds a profile for the item's lot (the GTIN's then says
    ``lots``); ``scanned_by_logger`` lists the custody scans (by n) that the
    logger of the scan's reader's place signs instead of the reader (a stolen
    logger key); ``read_by_reader`` the places whose reader is bound in place
    of the logger and signs the readings (§12.1 "Roles")."""
    s = Scenario(deterministic=deterministic)
    profile = profile or PROFILE
    gtin_profile = dict(profile, lots=1) if lot_profile else profile
    s.profile(GTIN, T0 - 86400, **gtin_profile)
    if lot_profile:
        s.profile(GTIN, T0 - 86400, lot="L42", **lot_profile)
    places = [PACK, TRUCK, DOCK, COLD]
    loggers = {p: s.logger(f"tl-{p.split(':')[1]}") for p in places}
    seconds = {p: s.logger(f"tl-{p.split(':')[1]}-b") for p in (extra or {})}
    readers = {
        PACK: s.reader("rd-pack", PACK),
        DOCK: s.reader("rd-dock", DOCK),
        COLD: s.reader("rd-cold", COLD),
    }

    def watching(p: str) -> list[str]:
        if p in unbound:
            return []
        if p in read_by_reader:
            return [readers[p].id]
        return [loggers[p].id] + ([seconds[p].id] if p in seconds else [])

    for p in places:
        s.bind(p, watching(p), T0 - 3600)
    day = Day(s, loggers, readers)
    temps = temps or {}
    events = [
        (T_COMMISSION, readers[PACK], COMMISSION, {"item": ITEM}),
        (T_LOAD, readers[PACK], LOAD, {"ref": TRUCK}),
        (T_UNLOAD, readers[DOCK], UNLOAD, {}),
        (T_RECEIVE, readers[COLD], RECEIVE, {}),
        (T_SHIP, readers[DOCK], SHIP, {"ref": "SH-42"}),
    ]
    # Records in time order, as the gateway would log them.
    timeline: list[tuple[int, int, Callable[[], None]]] = []
    by_reader = {r.id: p for p, r in readers.items()}
    for n, (t, reader, action, kw) in enumerate(events):
        if n in scanned_by_logger:  # at the reader's place, signed by that place's logger
            kw = {**kw, "place": reader.place}
            reader = loggers[by_reader[reader.id]]
        kw = {**kw, **(scans or {}).get(n, {})}
        kw = {k: v for k, v in kw.items() if v is not None}
        timeline.append(
            (T0 + t, 0, lambda r=reader, a=action, t=t, kw=kw: s.scan(r, a, T0 + t, **kw))
        )
    for p in places:
        curve = temps.get(p, steady)
        for t in range(T0 - EVERY, T0 + T_END + EVERY + 1, EVERY):

            def read(p: str = p, t: int = t, curve: Callable[[int], int | None] = curve) -> None:
                if hook is not None and hook(day, p, t):
                    return
                signer = readers[p] if p in read_by_reader else loggers[p]
                s.reading(signer, t, curve(t - T0))

            timeline.append((t, 1, read))
    for p, curve2 in (extra or {}).items():
        for t in range(T0 - EVERY, T0 + T_END + EVERY + 1, EVERY):
            timeline.append((t, 2, lambda p=p, t=t, c=curve2: s.reading(seconds[p], t, c(t - T0))))
    timeline.sort(key=lambda x: (x[0], x[1]))
    for _, _, make in timeline:
        make()
    if restate:  # the registry restates its chains, closing every interval (§4.2)
        s.profile(GTIN, T0 + T_END + 3600, **gtin_profile)
        if lot_profile:
            s.profile(GTIN, T0 + T_END + 3600, lot="L42", **lot_profile)
        for p in places:
            s.bind(p, watching(p), T0 + T_END + 3600)
    return day


def excursion(place: str, start: int, end: int, temp: int) -> dict[str, Callable[[int], int]]:
    return {place: lambda t: temp if start <= t < end else steady(t)}


def is_reading_of(dev: str, pred: Callable[[Reading], bool]) -> Callable[[bytes], bool]:
    def test(raw: bytes) -> bool:
        rec = open_record(raw)
        return rec.signer == dev and isinstance(rec.payload, Reading) and pred(rec.payload)

    return test


def is_scan(action: int) -> Callable[[bytes], bool]:
    def test(raw: bytes) -> bool:
        p = open_record(raw).payload
        return isinstance(p, Scan) and p.action == action

    return test


# --- the vectors ---------------------------------------------------------------------


def v_pass() -> tuple[Day, Callable[[bytes], bool] | None]:
    return build_day(), None


def v_fail_excursion():
    t = T_LOAD + 2 * 3600
    return build_day(temps=excursion(TRUCK, t, t + 3000, 900)), None


def v_pass_short_excursion():
    t = T_LOAD + 2 * 3600
    return build_day(temps=excursion(TRUCK, t, t + 1200, 600)), None


def v_fail_cumulative():
    def curve(t: int) -> int:
        # four 20-minute excursions an hour apart: each shorter than the delay
        k = (t - T_LOAD - 1800) // 3600
        inside = 0 <= k < 4 and (t - T_LOAD - 1800) % 3600 < 1200
        return 500 if inside else steady(t)

    prof = dict(PROFILE, cumul=3600)
    return build_day(profile=prof, temps={TRUCK: curve}), None


def v_fail_mkt():
    prof = dict(low=0, high=800, delay=1800, gap=1800, mkt=500, name="2-8 °C, MKT 5 °C")
    return build_day(
        profile=prof, temps={p: (lambda t: 650) for p in (PACK, TRUCK, DOCK, COLD)}
    ), None


def v_incomplete_gap():
    lo, hi = T0 + T_LOAD + 3600, T0 + T_LOAD + 3600 + 3 * EVERY
    return (
        build_day(),
        lambda raw: not is_reading_of("tl-truck-1", lambda p: lo <= p.time < hi)(raw),
    )


def v_incomplete_unmonitored():
    return build_day(unbound=(DOCK,)), None


def v_incomplete_cut_tail():
    t = T_LOAD + 2 * 3600
    day = build_day(temps=excursion(TRUCK, t, t + 3000, 900))
    cut = T0 + t  # the first reading above 4 °C, and everything of that logger after it
    return (
        day,
        lambda raw: (
            not (open_record(raw).signer == "tl-truck-1" and open_record(raw).payload.time >= cut)
        ),
    )


def v_incomplete_binding_unproven():
    return build_day(restate=False), None


def v_incomplete_custody_gap():
    prof = dict(PROFILE, links=1)
    return build_day(profile=prof), lambda raw: not is_scan(UNLOAD)(raw)


def v_incomplete_logger_signs_scan():
    # the unload at the dock is signed by the dock's logger (a logger key taken from it):
    # no custody; the receive that follows links to it, a scan not in the custody
    prof = dict(PROFILE, links=1)
    return build_day(profile=prof, scanned_by_logger=(2,)), None


def v_incomplete_reader_reads():
    # the cold room is bound to its handover reader, which signs the readings there
    return build_day(read_by_reader=(COLD,)), None


def v_incomplete_no_commission():
    return build_day(), lambda raw: not is_scan(COMMISSION)(raw)


def _clock_lost(sync: bool) -> Callable[[Day, str, int], bool]:
    """The cold room's logger loses power just before the receive and restarts
    with its clock unset; with ``sync`` the gateway sets it an hour later."""
    lost_at, synced_at = T0 + T_RECEIVE - 300, T0 + T_RECEIVE + 3600
    state = {"boot_t": None}

    def hook(day: Day, place: str, t: int) -> bool:
        if place != COLD or t < lost_at:
            return False
        dev = day.loggers[COLD]
        if state["boot_t"] is None:
            state["boot_t"] = t
            dev.boot += 1
            day.s.status(dev, 5, 1, tq=0, uptime=0)  # boot, time counts from power-on
        rel = t - state["boot_t"] + 5
        if sync and t >= synced_at:
            if dev.tq == 0:
                day.s.status(dev, t, 6, tq=3, detail=rel)  # clock set: detail = the old time
            dev.tq = 3
            return False
        dev.tq = 0
        day.s.reading(dev, rel, 260, tq=0)
        return True

    return hook


def v_pass_clock_unset_dated():
    return build_day(hook=_clock_lost(True)), None


def v_incomplete_clock_never_set():
    return build_day(hook=_clock_lost(False)), None


def v_incomplete_declared_loss():
    state = {"done": False}

    def hook(day: Day, place: str, t: int) -> bool:
        if place == TRUCK and t == T0 + T_LOAD + 3600 and not state["done"]:
            state["done"] = True
            dev = day.loggers[TRUCK]
            first = dev.seq
            day.s.skip(dev, 2)  # two readings lost on the device
            day.s.status(dev, t, 11, detail=2, lost=first)
            return True
        return False

    return build_day(hook=hook), None


def v_incomplete_unlinked_required():
    prof = dict(PROFILE, links=1)  # the brand requires custody links; these tags carry none
    no_links = {n: {"link": False} for n in range(1, 5)}
    return build_day(profile=prof, scans=no_links), None


def v_incomplete_load_without_ref():
    return build_day(scans={1: {"ref": None}}), None


def v_fail_two_loggers_one_warm():
    t = T_LOAD + 3600
    warm = {TRUCK: lambda x: 700 if t <= x < t + 2400 else steady(x)}  # the second logger only
    return build_day(extra=warm), None


def v_fail_low_excursion():
    t = T_RECEIVE + 3600
    return build_day(temps=excursion(COLD, t, t + 2700, -150)), None


def v_incomplete_custody_branch():
    # the unload reader's write to the tag fails: the receive links to the load
    return build_day(scans={2: {"write": False}}), None


def v_pass_lot_profile_checkpoints():
    # The GTIN (0-4 °C) says lots exist; the lot's own profile (2-8 °C)
    # decides, so 5 °C passes. The log has three checkpoints, linked by
    # consistency proofs, the last one anchored.
    lot = dict(low=200, high=800, delay=1800, gap=1800, name="lot L42: 2-8 °C")
    temps = {p: (lambda t: 500 + (t // EVERY) % 4 * 10) for p in (PACK, TRUCK, DOCK, COLD)}
    return build_day(lot_profile=lot, temps=temps), None


# --- reading blocks (kind 7, §2.8) ------------------------------------------------------------

BLOCK = 6  # readings per block: an hour at EVERY
T_LAST = T_END + EVERY  # the day's last reading (seconds after T0)
_OnReading = Callable[
    [Day, str, int, int | None, Callable[[], None], list[tuple[int, int | None]]], bool
]


def _blocks(
    places: tuple[str, ...] = (PACK, TRUCK, DOCK, COLD),
    curves: dict[str, Callable[[int], int]] | None = None,
    on: _OnReading | None = None,
) -> Callable[[Day, str, int], bool]:
    """A hook: the loggers at ``places`` sign their readings in blocks of BLOCK, each block
    when it is full, when the next reading does not follow it at EVERY, or at the day's last
    reading. ``on(day, place, t, temp, flush, open)`` runs first and may change what happens
    (True: it handled the reading; ``flush()`` signs the open block, cut short)."""
    held: dict[str, list[tuple[int, int | None]]] = {p: [] for p in places}

    def hook(day: Day, place: str, t: int) -> bool:
        if place not in places:
            return False
        items = held[place]

        def flush() -> None:
            if items:
                day.s.block(day.loggers[place], items[0][0], EVERY, [v for _, v in items])
                items.clear()

        if items and items[-1][0] + EVERY != t:
            flush()
        temp = (curves or {}).get(place, steady)(t - T0)
        if on is not None and on(day, place, t, temp, flush, items):
            return True
        items.append((t, temp))
        if len(items) == BLOCK or t == T0 + T_LAST:
            flush()
        return True

    return hook


def is_block_of(dev: str, pred: Callable[[ReadingBlock], bool]) -> Callable[[bytes], bool]:
    def test(raw: bytes) -> bool:
        rec = open_record(raw)
        return rec.signer == dev and isinstance(rec.payload, ReadingBlock) and pred(rec.payload)

    return test


def v_pass_blocks():
    # every logger signs an hour of readings (6 at 10 minutes) under one signature; the
    # verdict document is pass's, exactly
    return build_day(hook=_blocks()), None


def v_fail_excursion_in_block():
    # fail_excursion's 9 °C for 50 minutes on the truck, inside the logger's own alarm band
    # (say 0-10 °C), so the readings wait in blocks; the product's profile (0-4 °C) fails
    # them. The verdict document is fail_excursion's, exactly.
    t = T_LOAD + 2 * 3600
    return build_day(hook=_blocks(curves=excursion(TRUCK, t, t + 3000, 900))), None


def v_fail_alarm_closes_block():
    # 9 °C on the truck, outside the logger's band: it signs its open block, cut short, and
    # each out-of-band reading at once as a kind-1 record (§2.8); blocks resume after. The
    # verdict document is fail_excursion's, exactly.
    t = T_LOAD + 2 * 3600  # mid-block

    def on(day: Day, place: str, at: int, temp: int | None, flush: Any, items: Any) -> bool:
        if place == TRUCK and temp is not None and temp > 800:
            flush()
            day.s.reading(day.loggers[TRUCK], at, temp, alarm=1)
            return True
        return False

    return build_day(hook=_blocks(curves=excursion(TRUCK, t, t + 3000, 900), on=on)), None


def v_incomplete_gap_between_blocks():
    # the truck's logger takes no readings for 40 minutes (a sensor asleep): no seq is
    # missing, but the last reading before stands for 30 minutes at most (the profile's gap)
    lo = T0 + T_LOAD + 3600

    def on(day: Day, place: str, at: int, temp: int | None, flush: Any, items: Any) -> bool:
        return place == TRUCK and lo <= at < lo + 4 * EVERY

    return build_day(hook=_blocks(on=on)), None


def v_incomplete_block_cut():
    # the bundle holder leaves out one of the truck's blocks: its seq is missing
    cut = T0 + T_LOAD + 3600
    day = build_day(hook=_blocks())
    drop = is_block_of("tl-truck-1", lambda p: p.time <= cut <= p.end_time)
    return day, lambda raw: not drop(raw)


def _alarm_inside_block(block_temp: int) -> _OnReading:
    """The truck's logger signs a 6 °C reading at once as kind 1 but, against §2.8, keeps
    its open block and puts the same instant in it too, with ``block_temp``."""
    at_t = T0 + T_LOAD + 2 * 3600 + 2 * EVERY

    def on(day: Day, place: str, at: int, temp: int | None, flush: Any, items: Any) -> bool:
        if place == TRUCK and at == at_t:
            day.s.reading(day.loggers[TRUCK], at, 600, alarm=1)
            items.append((at, block_temp))
            return True
        return False

    return on


def v_pass_block_alarm_overlap():
    # the block repeats the alarm reading's 6 °C: the instant counts once (a 10-minute
    # excursion, a note), and block_overlap says the device signed out of time order
    return build_day(hook=_blocks(on=_alarm_inside_block(600))), None


def v_pass_block_contradicts_alarm():
    # the block, signed later, says 2.8 °C for the alarm reading's instant: the later-signed
    # reading stands (no excursion), and block_overlap says so
    return build_day(hook=_blocks(on=_alarm_inside_block(280))), None


def v_pass_block_overruns_reading():
    # a block whose derived times run past the next record's time: the truck's logger signs
    # a full block, then a kind-1 reading dated inside that block's span (25 minutes before
    # its last reading). The later-signed reading stands: the block's readings end at it.
    # The blocks start at T0 - EVERY; the third one (seq 2) is signed at its last reading,
    # so the reading before the fourth block's first is signed right after it.
    fourth = T0 - EVERY + 3 * BLOCK * EVERY

    def on(day: Day, place: str, at: int, temp: int | None, flush: Any, items: Any) -> bool:
        if place == TRUCK and at == fourth:
            assert not items  # the third block is signed
            day.s.reading(day.loggers[TRUCK], at - 3 * EVERY + 300, 300)
        return False

    return build_day(hook=_blocks(on=on)), None


def _bad_block(fields: dict[int, Any]) -> _OnReading:
    """The truck's logger signs one malformed block (a verifier refuses it) in its chain."""
    at_t = T0 + T_LOAD + 3600

    def on(day: Day, place: str, at: int, temp: int | None, flush: Any, items: Any) -> bool:
        if place == TRUCK and at == at_t:
            flush()
            day.s.raw_record(day.loggers[TRUCK], {1: KIND_BLOCK, 4: at, **fields})
            return True
        return False

    return on


def v_unverified_block_zero_interval():
    return build_day(hook=_blocks(on=_bad_block({17: 0, 18: bytes.fromhex("00fa00fa")}))), None


def v_unverified_block_unequal_arrays():
    bad = {17: EVERY, 18: bytes.fromhex("00fa00fa"), 19: bytes.fromhex("1770")}
    return build_day(hook=_blocks(on=_bad_block(bad))), None


WANT: dict[
    str, tuple[Callable[[], tuple[Day, Callable[[bytes], bool] | None]], str | None, set[str]]
] = {
    "pass": (v_pass, "PASS", set()),
    "fail_excursion": (v_fail_excursion, "FAIL", {"excursion"}),
    "pass_short_excursion": (v_pass_short_excursion, "PASS", {"excursion"}),
    "fail_cumulative": (v_fail_cumulative, "FAIL", {"cumulative", "excursion"}),
    "fail_mkt": (v_fail_mkt, "FAIL", {"mkt"}),
    "incomplete_gap": (v_incomplete_gap, "INCOMPLETE", {"records_missing", "no_readings"}),
    "incomplete_unmonitored": (v_incomplete_unmonitored, "INCOMPLETE", {"unmonitored"}),
    "incomplete_cut_tail": (
        v_incomplete_cut_tail,
        "INCOMPLETE",
        {"records_missing", "no_readings"},
    ),
    "incomplete_binding_unproven": (
        v_incomplete_binding_unproven,
        "INCOMPLETE",
        {"binding_unproven"},
    ),
    "incomplete_custody_gap": (v_incomplete_custody_gap, "INCOMPLETE", {"custody_gap"}),
    "incomplete_no_commission": (v_incomplete_no_commission, "INCOMPLETE", {"no_commission"}),
    "incomplete_logger_signs_scan": (
        v_incomplete_logger_signs_scan,
        "INCOMPLETE",
        {"wrong_role", "custody_gap", "custody_conflict"},
    ),
    "incomplete_reader_reads": (
        v_incomplete_reader_reads,
        "INCOMPLETE",
        {"wrong_role", "no_readings"},
    ),
    "pass_clock_unset_dated": (v_pass_clock_unset_dated, "PASS", {"clock_dated"}),
    "incomplete_clock_never_set": (
        v_incomplete_clock_never_set,
        "INCOMPLETE",
        {"undated", "no_readings"},
    ),
    "incomplete_declared_loss": (v_incomplete_declared_loss, "INCOMPLETE", {"lost", "no_readings"}),
    "incomplete_unlinked_required": (
        v_incomplete_unlinked_required,
        "INCOMPLETE",
        {"custody_unlinked"},
    ),
    "incomplete_load_without_ref": (v_incomplete_load_without_ref, "INCOMPLETE", {"unmonitored"}),
    "fail_two_loggers_one_warm": (v_fail_two_loggers_one_warm, "FAIL", {"excursion"}),
    "fail_low_excursion": (v_fail_low_excursion, "FAIL", {"excursion"}),
    "incomplete_custody_branch": (v_incomplete_custody_branch, "INCOMPLETE", {"custody_branch"}),
    "pass_lot_profile_checkpoints": (v_pass_lot_profile_checkpoints, "PASS", set()),
    "pass_blocks": (v_pass_blocks, "PASS", set()),
    "fail_excursion_in_block": (v_fail_excursion_in_block, "FAIL", {"excursion"}),
    "fail_alarm_closes_block": (v_fail_alarm_closes_block, "FAIL", {"excursion"}),
    "incomplete_gap_between_blocks": (
        v_incomplete_gap_between_blocks,
        "INCOMPLETE",
        {"no_readings"},
    ),
    "incomplete_block_cut": (
        v_incomplete_block_cut,
        "INCOMPLETE",
        {"records_missing", "no_readings"},
    ),
    "pass_block_alarm_overlap": (
        v_pass_block_alarm_overlap,
        "PASS",
        {"excursion", "block_overlap"},
    ),
    "pass_block_contradicts_alarm": (v_pass_block_contradicts_alarm, "PASS", {"block_overlap"}),
    "pass_block_overruns_reading": (v_pass_block_overruns_reading, "PASS", {"block_overlap"}),
    "unverified_block_zero_interval": (v_unverified_block_zero_interval, None, set()),
    "unverified_block_unequal_arrays": (v_unverified_block_unequal_arrays, None, set()),
}

# Vectors whose log is checkpointed more than once (thirds of the log).
SPLIT = {"pass_lot_profile_checkpoints"}


def make(name: str, root: Path = HERE) -> dict[str, object]:
    build, verdict, codes = WANT[name]
    day, keep = build()
    n = len(day.s.records)
    sizes = (n // 3, 2 * n // 3) if name in SPLIT else ()
    bundle = day.s.bundle(keep, item=ITEM, sizes=sizes)
    trust_doc = day.s.trust_doc()
    # Version 2: its bytes depend on nothing but the records (a DEFLATE stream can differ
    # between zlib builds); test_bundle_v3.py checks each vector reads the same in v3.
    text = bundle.dumps(version=2)
    report = verify_bundle(loads_bundle(text), parse_trust(trust_doc))
    doc = report.verdict_document()
    got = {r["code"] for r in doc["reasons"]}
    if verdict is None:  # built to be refused: a malformed record (its proof fails with it)
        got = {f.code or "" for f in report.failures}
        codes = {"malformed_record"}
    if (
        doc["verdict"] != verdict
        or not codes <= got
        or (verdict == "PASS" and got - codes - {"custody_unlinked"})
    ):
        raise SystemExit(
            f"vector {name}: built to give {verdict} with {sorted(codes)}, "
            f"got {doc['verdict']} with {sorted(got)}; failures {report.failures[:3]}"
        )
    out = root / name
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    (out / "bundle.json").write_text(text)
    (out / "trust.json").write_text(json.dumps(trust_doc, indent=1) + "\n")
    (out / "expected.json").write_text(json.dumps(doc, indent=1, ensure_ascii=False) + "\n")
    return doc


# --- the provenance vectors (§12.10) ---------------------------------------------------------

PART = f"/01/{GTIN}/21/P-000731"  # a spare part: a serial, no lot
OTHER_UID = bytes.fromhex("04c7e1a25b6f81")
BRAND_FACTORY, DIST_A, DIST_B, DIST_B2, PLANT = (
    "brand:factory-1",
    "dista:warehouse-1",
    "distb:store-1",
    "distb:store-2",
    "plant:line-4",
)
DAY = 86400


@dataclass
class Parts:
    """The brand owner, two distributors and a customer's plant, each with its registry
    (the brand's speaks for the GTIN) and a reader."""

    s: Scenario
    brand: Signer
    dist_a: Signer
    dist_b: Signer
    plant: Signer

    def path(self, *, sold: bool = True) -> None:
        """The genuine path: commissioned and shipped by the brand, received and shipped by
        distributor A, received by distributor B, then sold there (``sold``)."""
        s = self.s
        s.scan(self.brand, COMMISSION, T0, item=PART)
        s.scan(self.brand, SHIP, T0 + 2 * 3600, ref="PO-1001")
        s.scan(self.dist_a, RECEIVE, T0 + DAY)
        s.scan(self.dist_a, SHIP, T0 + 3 * DAY, ref="PO-2002")
        s.scan(self.dist_b, RECEIVE, T0 + 4 * DAY)
        if sold:
            s.scan(self.dist_b, SELL, T0 + 6 * DAY, ref="INV-3003")


def build_parts() -> Parts:
    s = Scenario(registry_id="reg-brand", org="Brand Parts")
    reg_a = s.other_registry(
        "reg-dista", "Distributor A", devices=["rd-dista-*"], places=["dista:*"]
    )
    reg_b = s.other_registry(
        "reg-distb", "Distributor B", devices=["rd-distb-*"], places=["distb:*"]
    )
    reg_p = s.other_registry(
        "reg-plant", "Plant Operator", devices=["rd-plant-*"], places=["plant:*"]
    )
    return Parts(
        s,
        s.reader("rd-brand-1", BRAND_FACTORY),
        s.reader("rd-dista-1", DIST_A, reg_a),
        s.reader("rd-distb-1", DIST_B, reg_b),
        s.reader("rd-plant-1", PLANT, reg_p),
    )


def p_genuine() -> Parts:
    w = build_parts()
    w.path()
    return w


def p_installed() -> Parts:
    w = build_parts()
    w.path(sold=False)
    w.s.scan(w.dist_b, SHIP, T0 + 6 * DAY, ref="PO-4004")
    w.s.scan(w.plant, RECEIVE, T0 + 7 * DAY)
    w.s.scan(w.plant, INSTALL, T0 + 7 * DAY + 3600, ref="WO-5005")
    return w


def p_starts_at_distributor() -> Parts:
    # a copied label, commissioned by distributor A's reader: not the brand owner's
    w = build_parts()
    s = w.s
    s.scan(w.dist_a, COMMISSION, T0 + DAY, item=PART)
    s.scan(w.dist_a, SHIP, T0 + 3 * DAY, ref="PO-2002")
    s.scan(w.dist_b, RECEIVE, T0 + 4 * DAY)
    s.scan(w.dist_b, SELL, T0 + 6 * DAY, ref="INV-3003")
    return w


def p_sold_twice() -> Parts:
    w = p_genuine()  # sold by distributor B on day 6 ...
    w.s.scan(w.dist_b, SELL, T0 + 9 * DAY, place=DIST_B2, ref="INV-3999")  # ... and again on day 9
    return w


def p_two_places() -> Parts:
    w = build_parts()
    s = w.s
    s.scan(w.brand, COMMISSION, T0, item=PART)
    s.scan(w.brand, SHIP, T0 + 2 * 3600, ref="PO-1001")
    s.scan(w.dist_a, RECEIVE, T0 + DAY)
    s.scan(w.dist_b, RECEIVE, T0 + DAY + 4)  # the same tag, 4 s later, at distributor B
    s.scan(w.dist_b, SELL, T0 + 2 * DAY, ref="INV-3003")
    return w


def p_installed_scanned_again() -> Parts:
    w = p_installed()
    w.s.scan(w.dist_a, RECEIVE, T0 + 20 * DAY)  # the installed part's label turns up again
    return w


def p_serial_on_two_tags() -> Parts:
    w = p_genuine()
    # a second tag, commissioned with the same GTIN and serial at distributor B
    w.s.scan(w.dist_b, COMMISSION, T0 + 5 * DAY, uid=OTHER_UID, item=PART)
    return w


PWANT: dict[str, tuple[Callable[[], Parts], str, str, set[str]]] = {
    "genuine_two_distributors": (p_genuine, "genuine", "GENUINE", set()),
    "genuine_installed": (p_installed, "genuine", "GENUINE", set()),
    "unconfirmed_tag_not_checked": (p_genuine, "unknown", "UNCONFIRMED", {"tag_not_checked"}),
    "suspect_starts_at_distributor": (
        p_starts_at_distributor,
        "genuine",
        "SUSPECT",
        {"foreign_commission"},
    ),
    "suspect_sold_twice": (p_sold_twice, "genuine", "SUSPECT", {"custody_conflict"}),
    "suspect_two_places_at_once": (p_two_places, "genuine", "SUSPECT", {"two_places"}),
    "suspect_installed_scanned_again": (
        p_installed_scanned_again,
        "genuine",
        "SUSPECT",
        {"custody_conflict"},
    ),
    "suspect_serial_on_two_tags": (
        p_serial_on_two_tags,
        "genuine",
        "SUSPECT",
        {"duplicate_serial"},
    ),
    "suspect_replayed_tag": (p_genuine, "replayed", "SUSPECT", {"tag_replayed"}),
    "suspect_unauthenticated_tag": (
        p_genuine,
        "unauthenticated",
        "SUSPECT",
        {"tag_unauthenticated"},
    ),
}


def make_provenance(name: str, root: Path = PROVENANCE_HERE) -> dict[str, object]:
    build, tag, verdict, codes = PWANT[name]
    w = build()
    text = w.s.bundle(item=PART).dumps(version=2)
    trust_doc = w.s.trust_doc(devices=["rd-brand-*"], places=["brand:*"], gtins=[GTIN[:-1] + "*"])
    report = verify_bundle(loads_bundle(text), parse_trust(trust_doc), tag=tag)
    doc = report.verdict_document()
    got = {r["code"] for r in doc["reasons"]}
    if verdict is None:  # built to be refused: a malformed record (its proof fails with it)
        got = {f.code or "" for f in report.failures}
        codes = {"malformed_record"}
    if (
        doc["verdict"] != verdict
        or "provenance" not in doc
        or got != codes | {"provenance_only"}  # each vector changes one thing
    ):
        raise SystemExit(
            f"vector {name}: built to give {verdict} with {sorted(codes)}, "
            f"got {doc['verdict']} with {sorted(got)}; failures {report.failures[:3]}"
        )
    out = root / name
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    (out / "bundle.json").write_text(text)
    (out / "trust.json").write_text(json.dumps(trust_doc, indent=1) + "\n")
    (out / "input.json").write_text(json.dumps({"tag": tag}) + "\n")
    (out / "expected.json").write_text(json.dumps(doc, indent=1, ensure_ascii=False) + "\n")
    return doc


def main(argv: list[str]) -> int:
    names = argv[1:] or sorted(WANT) + sorted(PWANT)
    for name in names:
        doc = make_provenance(name) if name in PWANT else make(name)
        print(f"{name:<32} {doc['verdict']!s:<11} {sorted({r['code'] for r in doc['reasons']})}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
