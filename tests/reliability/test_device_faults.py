"""The fault suite, part C: the devices (issue 12).

a. A logger offline for 72 simulated hours (no broker reachable), reset three
   times at random points (one of them in the middle of a queue write), and
   a flat battery: the battery reading falls, the device stops at the cutoff
   (power lost at a random filesystem step), power comes back hours later
   with the RTC unset. When the network returns every reading it stored is
   delivered once and in order, the chain is intact, the ack covers it all,
   and the item's verdict is the one an undisturbed logger reading the same
   temperatures gets, except for what the device could not measure: the
   hours without power show as ``no_readings`` (never silently covered), and
   the readings taken with the clock unset are dated from the clock-set
   record (``clock_dated``).
b. Clock faults (see test_clock_*).
c. OTA interrupted at every step (see test_ota_*).

The device is the firmware itself (demo/sim.py's SimLogger: ct_app, ct_block,
the real core, queue and uplink under CPython) on the LittleFS model of
tests/firmware/fakes/fakefs.py, which loses power on cue; the network side is
a real Mosquitto and the real gateway; the verdicts come from the protocol
package's verifier over the gateway's trace bundle. Each scenario writes its
counts to ``test-artifacts/reliability/<scenario>.json``.
"""

from __future__ import annotations

import itertools
import json
import os
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from demo import sim
from demo.world import ReplayClock
from gateway.evidence.registry import RegistrySigner
from gateway.evidence.store import open_store
from gateway.service import trust_document
from protocol.bundle import load_bundle
from protocol.cli import main as coldtrace
from protocol.keys import load_p256_private_key
from protocol.record import Reading, ReadingBlock, Status, chain_hash, open_record
from protocol.trust import parse_trust
from protocol.verify import verify_bundle
from tests.gateway.conftest import make_broker, make_gateway  # noqa: F401  (fixtures)
from tests.gateway.devices import SimDevice, wait_for
from tests.soak import SOAK, scale

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts" / "reliability"
_FAKES = ROOT / "tests" / "firmware" / "fakes"
if str(_FAKES) not in sys.path:
    sys.path.append(str(_FAKES))

from fakefs import Disk, FakeFs, PowerCut  # noqa: E402

GTIN = "09506000134352"
H = 3600
HARD_RESET, WDT_RESET, PWRON_RESET = 2, 3, 1  # machine.reset_cause() values
FULL_MV, CUTOFF_MV = 4150, 3300


def write_counts(scenario: str, counts: dict[str, Any]) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / f"{scenario}.json").write_text(json.dumps(counts, indent=1, sort_keys=True))


class Flash:
    """The device's flash as the LittleFS model: it survives power cuts; each
    wake mounts it afresh. ``arm(pick)`` makes the next wake lose power at
    the first mutating step ``pick(n, kind, path)`` accepts."""

    def __init__(self, root: Path) -> None:
        self.disk = Disk()
        for p in [root, *root.rglob("*")]:  # what provisioning wrote
            if p.is_dir():
                self.disk.dirs.add(str(p))
            else:
                self.disk.files[str(p)] = p.read_bytes()
        self.pick: Callable[[int, str, str], bool] | None = None
        self.fs: FakeFs | None = None

    def arm(self, pick: Callable[[int, str, str], bool]) -> None:
        self.pick = pick

    def mount(self) -> FakeFs:
        fs = FakeFs(self.disk)
        pick, self.pick = self.pick, None
        if pick is not None:
            step = fs._step

            def cutting(kind: str, path: str) -> None:
                if not fs.dead and pick(fs.steps + 1, kind, path):
                    fs.cut_at = fs.steps + 1
                step(kind, path)

            fs._step = cutting  # type: ignore[method-assign]
        self.fs = fs
        return fs

    def bytes_under(self, prefix: str) -> int:
        return sum(len(b) for p, b in self.disk.files.items() if p.startswith(prefix))


class Logger:
    """A provisioned SimLogger reading ``temp(t)`` on channel 0, its flash a
    :class:`Flash`; it notes what it measured, wake by wake."""

    def __init__(
        self,
        dev: str,
        root: Path,
        port: int,
        password: str,
        interval: int,
        clock: ReplayClock,
        wifi: sim.SimWifi,
        temp: Callable[[int], int],
    ) -> None:
        cfg = sim.logger_config(dev, "acme", "127.0.0.1", port, interval, 3600, root, block=12)
        del cfg["place"]  # bound by the registry below
        self.entry = sim.provision_sim_device(root, cfg)
        self.flash = Flash(root)
        self.root = root
        self.clock = clock
        self.lg = sim.SimLogger(
            cfg,
            root,
            sim.client_factory(dev, "127.0.0.1", port, password),
            clock=clock,
            wifi=wifi,
            fs=self.flash.mount,
        )
        self.id = dev
        self.measured: list[tuple[int, int, int]] = []  # (wake, time, temp)
        self.wakes = 0
        self.cut_wakes: list[int] = []
        self.events: list[tuple[int, int | None]] = []
        self.max_queued = self.max_queue_bytes = 0

        def probe() -> tuple[int, None]:
            t = int(clock())
            v = temp(t)
            self.measured.append((self.wakes, t, v))
            return v, None

        self.lg._channels = lambda: [(0, None, probe)]  # type: ignore[method-assign]

    def wake(self) -> float:
        """One wake; a power cut armed on the flash ends it (returns 0)."""
        self.wakes += 1
        try:
            dt = self.lg.wake()
        except PowerCut:
            self.cut_wakes.append(self.wakes)
            return 0.0
        self.events.extend(self.lg.events)
        self.max_queued = max(self.max_queued, self.lg.queued)
        self.max_queue_bytes = max(self.max_queue_bytes, self.flash.bytes_under(f"{self.root}/q"))
        return dt

    def reset(self, cause: int) -> None:
        """The board restarts: a hard or watchdog reset keeps the RTC (time and
        memory); a power-on after a power loss starts it from zero, unset."""
        b = self.lg.board
        if cause == PWRON_RESET:
            from fake_board import FakeRTC

            b.rtc = FakeRTC()
            b._boot = self.clock()
            b._delta = None
        b.cause = cause

    def deliver(self) -> None:
        for _ in range(10):  # a loaded machine may need a few uploads
            self.lg.wake()
            self.lg.flush()
            if self.lg.queued == 0:
                return
        raise AssertionError(f"{self.id}: {self.lg.queued} records still queued")


def _registry(env: Any) -> Any:
    store = open_store(env.cfg.db_path)
    return store, RegistrySigner(
        store, env.cfg.registry.id, load_p256_private_key(env.cfg.registry.key_file)
    )


def _trace(env: Any, uid: bytes, out: Path, capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    capsys.readouterr()
    coldtrace(
        ["gateway", "trace", "-c", str(env.config_path), uid.hex(), "--wait", "60", "-o", str(out)]
    )
    report = verify_bundle(load_bundle(out), parse_trust(trust_document(env.cfg)))
    assert report.verified, [(f.code, f.message) for f in report.failures]
    return report.verdict_document()


def _stored(env: Any, dev: str) -> list[Any]:
    store = open_store(env.cfg.db_path)
    try:
        return list(store.records_of(dev, 0, 1 << 32))
    finally:
        store.close()


def _readings(payloads: list[Any]) -> list[tuple[int, int, int, int]]:
    """(date, temp, tq, seq) of every reading, in signing order (seq, index).

    A reading taken with the clock unset (tq 0) is dated as docs/protocol.md
    §12.2 says: from the first clock-set record (event 6) after it in its boot.
    """
    sets = [p for p in payloads if isinstance(p, Status) and p.event == 6 and p.tq]
    out = []
    for p in payloads:
        rs = p.readings() if isinstance(p, ReadingBlock) else (p,) if isinstance(p, Reading) else ()
        shift = 0
        if p.tq == 0:
            later = [c for c in sets if c.boot == p.boot and c.seq > p.seq]
            assert later, (
                f"seq {p.seq} (boot {p.boot}, tq 0) has no clock-set record after it: "
                f"{[(q.seq, q.boot, q.tq, getattr(q, 'event', q.kind)) for q in payloads][-60:]}"
            )
            shift = min(later, key=lambda c: c.seq)
            shift = shift.time - shift.detail
        out.extend((r.time + shift, r.temp, p.tq, p.seq) for r in rs)
    return out


def _norm(reasons: list[dict[str, Any]], dev: str) -> list[tuple[Any, ...]]:
    """Reasons with the logger's id (and a reader's scan numbers) left out."""
    return sorted(
        (
            r["code"],
            r["severity"],
            r["leg"],
            r["device"] == dev,
            r["from"],
            r["to"],
            r["value"] if r["device"] in (dev, None) else None,
            r["detail"],
        )
        for r in reasons
    )


# --- a. offline for 72 hours, three resets and a flat battery ----------------------------


def test_offline_72h_with_resets_and_flat_battery_delivers_everything_once(
    make_broker: Any,  # noqa: F811  (the fixtures of tests/gateway/conftest.py)
    make_gateway: Any,  # noqa: F811
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    hours = 72
    interval = scale(1800, 300)  # bounded: a reading every 30 min; soak: the default 5 min
    gap = 2 * interval  # the profile: the longest a reading may stand for
    out_h = 3  # the flat battery keeps the device down this long (> gap: must show)
    seed = int(os.environ.get("COLDTRACE_SEED", int(time.time()) if SOAK else 12))
    print(f"seed {seed} (COLDTRACE_SEED={seed} repeats this run)")
    rng = random.Random(seed)
    wall = time.monotonic()

    ref_id, dut_id = "tl-ref-1", "tl-dut-1"
    rd = SimDevice("rd-rel-1")
    broker = make_broker([ref_id, dut_id, rd.id])
    env = make_gateway(broker)
    t0 = (int(time.time()) - hours * H - 600) // interval * interval
    end = t0 + hours * H
    hot = (t0 + 45 * H, t0 + 45 * H + 90 * 60)  # both see it (> delay), between the faults

    def temp(t: int) -> int:
        return 900 if hot[0] <= t < hot[1] else 450 + (t // interval) % 7

    clock = ReplayClock(t0)
    wifi = sim.SimWifi(in_range=False)  # no broker reachable until the end
    ref = Logger(
        ref_id, tmp_path / ref_id, broker.port, broker.password(ref_id), interval, clock, wifi, temp
    )
    dut = Logger(
        dut_id, tmp_path / dut_id, broker.port, broker.password(dut_id), interval, clock, wifi, temp
    )
    rooms = {ref_id: "acme:room-ref", dut_id: "acme:room-dut"}
    uids = {ref_id: bytes.fromhex("04a00000000001"), dut_id: bytes.fromhex("04d00000000001")}
    lots = {ref_id: "LREF", dut_id: "LDUT"}
    store, signer = _registry(env)
    try:
        signer.import_entries([ref.entry, dut.entry], at=t0 - 60)
        for d, room in rooms.items():
            signer.bind(room, [d], at=t0)
        signer.set_profile(
            GTIN, low=200, high=800, delay=H, gap=gap, cumul=24 * H, name="chilled 2-8 °C", at=t0
        )
    finally:
        store.close()
    env.register(rd)
    for lg in (ref, dut):
        lg.lg.set_clock(t0, 3)  # synced by its gateway just before it left

    # the faults, at random points: three resets, then the flat battery
    resets = [
        (rng.randrange(4 * H, 16 * H), WDT_RESET, "queue"),  # in the middle of a queue write
        (rng.randrange(18 * H, 30 * H), HARD_RESET, "any"),
        (rng.randrange(32 * H, 44 * H), HARD_RESET, "any"),
    ]
    drain = (48 * H, 52 * H)  # the battery reading falls from 3.70 V to the cutoff
    down_at = up_at = None
    last_steps = 20

    def batt(t: int) -> int:
        if up_at is not None and t >= up_at:
            return FULL_MV  # a charged battery
        if t - t0 < drain[0]:
            return 3700
        return 3700 - (3700 - CUTOFF_MV) * (t - t0 - drain[0]) // (drain[1] - drain[0])

    # the undisturbed logger, then the disturbed one, over the same hours
    t = float(t0)
    while t < end:
        clock.t = t
        t += ref.wake()
    t = float(t0)
    fired: list[dict[str, Any]] = []
    while t < end:
        clock.t = t
        dut.lg.board.batt = batt(int(t))
        rel = int(t) - t0
        cause = None
        if resets and rel >= resets[0][0]:  # stays due until a wake is cut
            _, cause, where = resets[0]
            if where == "queue":
                kind = rng.choice(("write", "flush"))
                dut.flash.arm(lambda n, k, p, kind=kind: k == kind and "/q/" in p)
            else:
                at = rng.randint(1, last_steps)
                dut.flash.arm(lambda n, k, p, at=at: n >= at)
        elif dut.lg.board.batt <= CUTOFF_MV:  # the brown-out: at a random step
            cause = PWRON_RESET
            at = rng.randint(1, last_steps)
            dut.flash.arm(lambda n, k, p, at=at: n >= at)
        dt = dut.wake()
        fs = dut.flash.fs
        if not dut.cut_wakes or dut.cut_wakes[-1] != dut.wakes:
            last_steps = max(2, fs.steps if fs is not None else 2)
            t += dt
            continue
        assert fs is not None and cause is not None
        fired.append({"at_s": rel, "cause": cause, "step": list(fs.trace[-1])})
        dut.reset(cause)
        if cause == PWRON_RESET:
            down_at = int(t)
            up_at = down_at + out_h * H
            t = float(up_at)  # no power, no wakes, until it comes back
        else:
            resets.pop(0)
            t += 5  # it restarts at once
    assert len(fired) == 4 and down_at is not None and up_at is not None, fired
    assert "/q/" in fired[0]["step"][2], fired  # the first cut fell on a queue write

    # the network comes back: everything goes, and the readers scan the items
    clock.go_live()
    wifi.in_range = True
    gw = env.start_gateway()
    try:
        for lg in (ref, dut):
            lg.deliver()
        env.connect(rd)
        for d in (ref_id, dut_id):
            item = f"/01/{GTIN}/10/{lots[d]}/21/0001"
            rd.publish(rd.scan(uids[d], 1, rooms[d], time_=t0 + 600, item=item))
            rd.publish(rd.scan(uids[d], 6, rooms[d], time_=end - 600))
        wait_for(lambda: not rd.unacked, 30, "the reader's scans acked")
        totals = dict(gw.ingestor.totals)
        docs = {d: _trace(env, uids[d], tmp_path / f"{d}.json", capsys) for d in (ref_id, dut_id)}
    finally:
        gw.stop()

    # the gateway stored each seq once, chained, and acked the last one
    stored: dict[str, list[Any]] = {}
    for lg in (ref, dut):
        recs = _stored(env, lg.id)
        seqs = [r.seq for r in recs]
        assert seqs == list(range(len(seqs))), f"{lg.id}: seqs {seqs[:5]}..."
        payloads = [open_record(bytes(r.raw)).payload for r in recs]
        prev = bytes(16)
        for r, p in zip(recs, payloads, strict=True):
            assert p.prev == prev, f"{lg.id}: chain broken at seq {p.seq}"
            prev = chain_hash(bytes(r.raw))
        assert lg.lg.queued == 0  # the device deleted it all: the ack covered it
        stored[lg.id] = payloads

    # every reading stored on the device went once, in order; only a reading
    # measured in a wake that lost power may be missing
    got = {d: _readings(stored[d]) for d in stored}
    cut = set(dut.cut_wakes)
    for lg in (ref, dut):
        rs = got[lg.id]
        assert len({(r[0], r[3]) for r in rs}) == len(rs), "a reading twice"
        times = [r[0] for r in rs]
        assert times == sorted(times), f"{lg.id}: readings out of order"
    ref_set = {(t_, v) for t_, v, *_ in got[ref_id]}
    assert ref_set == {(t_, v) for _, t_, v in ref.measured}
    # the disturbed logger's readings: those taken with the clock set carry
    # their times exactly; those taken with it unset (after the power came
    # back) are dated by the clock-set record, to within the ack's second
    # and its transit
    unset = [r for r in got[dut_id] if r[2] == 0]
    after = [(t_, v) for _, t_, v in dut.measured if t_ >= up_at]
    assert len(after) >= len(unset) > 0
    for (d, v, _, _), (t_, v2) in zip(unset, after, strict=False):
        assert abs(d - t_) <= 2 and v == v2, ((d, v), (t_, v2))
    synced = [(t_, v) for t_, v, tq, _ in got[dut_id] if tq and t_ >= up_at]
    assert len(synced) == len(after) - len(unset)  # the wakes after the clock was set
    for (d, v), (t_, v2) in zip(synced, after[len(unset) :], strict=True):
        assert abs(d - t_) <= 2 and v == v2, ((d, v), (t_, v2))
    have = {(t_, v) for t_, v, tq, _ in got[dut_id] if tq and t_ <= down_at}
    before = [(w, t_, v) for w, t_, v in dut.measured if t_ <= down_at]
    missing = [(w, t_, v) for w, t_, v in before if (t_, v) not in have]
    assert all(w in cut for w, _, _ in missing), missing  # only in a wake the power cut
    assert len(have) + len(missing) == len(before)  # nothing invented, nothing else lost
    # no storage trouble: 72 h fit in the queue
    for lg in (ref, dut):
        assert not {ev for ev, _ in lg.events} & {4, 5, 11}, lg.events
    status = [p for p in stored[dut_id] if isinstance(p, Status)]
    boots = [p for p in status if p.event == 1]
    assert [p.reset for p in boots][-4:] == [WDT_RESET, HARD_RESET, HARD_RESET, PWRON_RESET]
    clock_set = [p for p in status if p.event == 6]
    assert clock_set and clock_set[-1].tq == 3

    # the verdicts: the disturbed one is the undisturbed one, plus the hours
    # without power (no_readings) and the note on the readings dated late
    r_doc, d_doc = docs[ref_id], docs[dut_id]
    assert r_doc["verdict"] == "FAIL" and d_doc["verdict"] == "FAIL"
    strip = [(e["side"], e["from"], e["to"], e["peak"]) for e in r_doc["excursions"]]
    assert strip == [(e["side"], e["from"], e["to"], e["peak"]) for e in d_doc["excursions"]]
    assert strip == [("high", hot[0], hot[1], 900)]
    extra = [r for r in d_doc["reasons"] if r["code"] in ("no_readings", "clock_dated")]
    (hole,) = [r for r in extra if r["code"] == "no_readings"]
    last_before = max(t_ for t_, v, tq, _ in got[dut_id] if tq and t_ <= down_at)
    first_after = min(r[0] for r in unset)
    assert hole["from"] == last_before + gap
    assert abs(hole["to"] - first_after) <= 2 and abs(first_after - up_at) <= interval + 2
    (note,) = [r for r in extra if r["code"] == "clock_dated"]
    assert note["value"] == len(unset)
    rest = [r for r in d_doc["reasons"] if r not in extra]
    assert _norm(rest, dut_id) == _norm(r_doc["reasons"], ref_id)
    rl, dl = r_doc["legs"][0], d_doc["legs"][0]  # leg 1 starts at the sale: no duration
    assert (dl["min"], dl["max"]) == (rl["min"], rl["max"])
    assert dl["tq_min"] == 0 and rl["tq_min"] >= 1
    assert rl["covered"] == rl["to"] - rl["from"]
    assert dl["covered"] == rl["covered"] - (hole["to"] - hole["from"])

    capacity = 96 * 8188
    counts = {
        "seed": seed,
        "hours": hours,
        "interval_s": interval,
        "soak": SOAK,
        "readings_taken": len(dut.measured),
        "readings_taken_reference": len(ref.measured),
        "readings_not_taken_flat_battery": len(
            [1 for _, t_, _ in ref.measured if down_at < t_ < up_at]
        ),
        "records_stored": len(stored[dut_id]),
        "records_stored_reference": len(stored[ref_id]),
        "readings_stored": len(got[dut_id]),
        "readings_acked": len(got[dut_id]),
        "readings_lost_in_cut_wakes": len(missing),
        "readings_dated_from_clock_set": len(unset),
        "duplicates_stored": 0,
        "resends_counted_by_gateway": totals.get("duplicates", 0),
        "power_cycles": fired,
        "outage_s": [down_at - t0, up_at - t0],
        "queue_max_records": dut.max_queued,
        "queue_max_bytes": dut.max_queue_bytes,
        "queue_capacity_bytes": capacity,
        "verdict": d_doc["verdict"],
        "verdict_reference": r_doc["verdict"],
        "extra_reasons": [(r["code"], r["from"], r["to"], r["value"]) for r in extra],
        "wall_s": round(time.monotonic() - wall, 1),
    }
    write_counts("device_offline_72h", counts)
    assert dut.max_queue_bytes < capacity // 2


# --- c. an update cut at every step -------------------------------------------------------


def _scripts(name: str) -> dict[str, Any]:
    """Run firmware script ``name`` under both interpreters at once; its results."""
    from concurrent.futures import ThreadPoolExecutor

    from tests.firmware import harness

    path = harness.SCRIPTS / name
    with ThreadPoolExecutor(2) as ex:
        runs = list(ex.map(lambda i: harness.run(path, i, 600), harness.INTERPRETERS))
    for r in runs:
        assert r.ok, r.report()
    assert len({r.counts for r in runs}) == 1, [r.counts for r in runs]
    return {r.interpreter: r for r in runs}


def _lines(out: str, tag: str) -> dict[str, Any]:
    found = {}
    for line in out.splitlines():
        if line.startswith(tag + " "):
            d = json.loads(line[len(tag) + 1 :])
            found[d.pop("test")] = d
    return found


def test_ota_cut_at_every_step_boots_a_whole_release_and_loses_no_record() -> None:
    """tests/firmware/scripts/rel_ota.py: ota.py's sweep (a cut at each step of
    an update, ct_ota alone) counted, and the logger with the real core and
    queue cut at each step of an update that completes (event 12) and of a
    trial that rolls back (event 14): every boot runs the factory firmware or
    the whole release, and no record is lost or doubled."""
    wall = time.monotonic()
    runs = _scripts("rel_ota.py")
    counts: dict[str, Any] = {}
    for interp, r in runs.items():
        got = _lines(r.stdout, "REL-OTA")
        assert set(got) == {"ota_py", "ota_py_torn", "update", "rollback"}, r.stdout
        assert got["ota_py"]["finals"] == [[2, got["ota_py"]["steps"]]]
        assert got["update"]["finals"] == {"2": got["update"]["cuts"]}
        assert got["rollback"]["finals"] == {"1": got["rollback"]["cuts"]}
        got["seconds"] = round(r.seconds, 1)
        counts[interp] = got
    counts["wall_s"] = round(time.monotonic() - wall, 1)
    write_counts("ota", counts)


# --- b. clocks: fast, slow, set by NTP, never set --------------------------------------------


def test_clock_faults_are_accepted_and_named_in_the_verdict(
    make_broker: Any,  # noqa: F811
    make_gateway: Any,  # noqa: F811
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """tests/firmware/scripts/rel_clock.py runs the logger with a fast, a slow,
    an NTP-set and an unset clock under both interpreters (the same bytes:
    RFC 6979); the very records then go to a real gateway, which stores them
    all, and each item's verdict says what the clock did (§12.2)."""
    import base64

    wall = time.monotonic()
    runs = _scripts("rel_clock.py")
    out = {i: _lines(r.stdout, "REL-CLOCK") for i, r in runs.items()}
    assert out["cpython"] == out["micropython"]  # byte for byte, both interpreters
    devs = out["cpython"]
    assert set(devs) == {"fast", "slow", "ntp", "unset"}
    t_gw = 1790000000  # the scripted gateway's time at the start (rel_clock.T_GW)

    rd = SimDevice("rd-clk-1")
    broker = make_broker([d["dev"] for d in devs.values()] + [rd.id])
    env = make_gateway(broker)
    rooms = {n: f"acme:room-{n}" for n in devs}
    store, signer = _registry(env)
    try:
        signer.import_entries(
            [
                {
                    "device": d["dev"],
                    "role": "logger",
                    "org": "acme",
                    "key": base64.b64encode(bytes.fromhex(d["pub"])).decode(),
                    "ack_key": base64.b64encode(bytes.fromhex(d["ack_key"])).decode(),
                }
                for d in devs.values()
            ],
            at=t_gw - 3600,
        )
        for n, d in devs.items():
            signer.bind(rooms[n], [d["dev"]], at=t_gw - 600)
        signer.set_profile(
            GTIN, low=200, high=800, delay=H, gap=900, name="chilled 2-8 °C", at=t_gw - 600
        )
    finally:
        store.close()
    env.register(rd)
    gw = env.start_gateway()
    try:
        senders = []
        for d in devs.values():
            s = SimDevice(d["dev"])
            s.ack_key = bytes.fromhex(d["ack_key"])
            for i, h in enumerate(d["records"]):
                s.unacked[i] = bytes.fromhex(h)
            s.connect(broker.port, broker.password(d["dev"]))
            s.resend_unacked()
            senders.append(s)
        for s in senders:
            wait_for(lambda s=s: not s.unacked, 60, f"{s.id}'s records acked")
        env.connect(rd)
        uids = {n: bytes((0x04, 0xC1, 0x0C, 0x00, 0x00, 0x00, i + 1)) for i, n in enumerate(devs)}
        start = {}
        for n, d in devs.items():
            # commissioned once its logger runs: at its first reading's date
            ps = [open_record(bytes.fromhex(h)).payload for h in d["records"]]
            start[n] = min(r[0] for r in _readings(ps))
            item = f"/01/{GTIN}/10/CLK{n.upper()}/21/0001"
            rd.publish(rd.scan(uids[n], 1, rooms[n], time_=start[n], item=item))
            rd.publish(rd.scan(uids[n], 6, rooms[n], time_=t_gw + 5 * H))
        wait_for(lambda: not rd.unacked, 30, "the reader's scans acked")
        totals = dict(gw.ingestor.totals)
        docs = {n: _trace(env, uids[n], tmp_path / f"{n}.json", capsys) for n in devs}
        for s in senders:
            s.disconnect()
    finally:
        gw.stop()

    counts: dict[str, Any] = {"gateway_totals": totals}
    for n, d in devs.items():
        recs = _stored(env, d["dev"])
        # all stored, nothing refused, nothing reordered: the device's own bytes, by seq
        assert [bytes(r.raw).hex() for r in recs] == d["records"], n
        payloads = [open_record(bytes(r.raw)).payload for r in recs]
        rs = _readings(payloads)
        unset = [r for r in rs if r[2] == 0]
        doc = docs[n]
        leg = doc["legs"][0]
        codes = sorted(r["code"] for r in doc["reasons"])
        dated = [r for r in doc["reasons"] if r["code"] == "clock_dated"]
        counts[n] = {
            "records": len(recs),
            "readings": len(rs),
            "readings_tq0": len(unset),
            "clock_sets": d["clock_sets"],
            "verdict": doc["verdict"],
            "reasons": codes,
            "leg_readings": leg["readings"],
            "tq_min": leg["tq_min"],
        }
        times = [r[0] for r in rs]
        back = [a - b for a, b in itertools.pairwise(times) if b < a]
        counts[n]["date_steps_back"] = back
        if n == "ntp":
            # dated from the NTP clock-set record, the first readings carry NTP's
            # 90 s error until the gateway's ack corrects it: a date may step back
            assert back and max(back) <= 90, back
        else:
            assert not back, (n, back)  # in order, once set or dated
        assert not [r for r in doc["reasons"] if r["code"] in ("undated", "records_missing")]
        # the notes name what the clock did: readings dated from a clock-set
        # record (clock_dated), and where a clock set back made a block's readings
        # share their times with later ones, the later-signed reading stands
        # (block_overlap, §12.6 step 3); nothing else but the reader's unlinked scan
        assert (
            set(codes)
            == {
                "fast": {"custody_unlinked", "block_overlap"},
                "slow": {"custody_unlinked"},
                "ntp": {"custody_unlinked", "clock_dated", "block_overlap"},
                "unset": {"custody_unlinked", "clock_dated"},
            }[n]
        ), (n, codes)
        if n in ("ntp", "unset"):
            # readings taken before the clock was set, dated from the clock-set
            # record (§12.2): counted in a note, tq_min 0
            (note,) = dated
            assert note["value"] == len(unset) and leg["tq_min"] == 0, (n, note)
        else:
            assert not dated and leg["tq_min"] == 3, n
        assert doc["verdict"] == "PASS", (n, doc["reasons"])
        assert leg["covered"] == leg["to"] - leg["from"], n
    counts["wall_s"] = round(time.monotonic() - wall, 1)
    write_counts("device_clock", counts)


def test_clock_ahead_of_the_gateway_is_declared_and_the_ack_moves_on(
    make_broker: Any,  # noqa: F811
    make_gateway: Any,  # noqa: F811
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """D42, docs/protocol.md §5.2 "Records dated ahead": a logger synced (tq 3)
    whose RTC ran 30 minutes ahead, offline for 3 hours, comes back to the
    real gateway (Mosquitto, the gateway's own clock). Its records dated more
    than ``future_skew`` (300 s) ahead are refused as ``bad_time``; the
    gateway acks again, the device sets its clock from that ack, closes its
    block, signs the clock-set record and declares the refused run lost
    (event 11). The ack moves past it, the device's queue drains, the
    quarantine keeps the refused records with their reason, and the verdict
    shows the loss (the ``lost`` note) with the declaration, not a silent hole.
    Before the fix the ack stayed below the first refused seq for good."""
    hours, interval, ahead = 3, 300, 1800
    wall = time.monotonic()
    dev_id = "tl-fast-1"
    rd = SimDevice("rd-fast-1")
    broker = make_broker([dev_id, rd.id])
    env = make_gateway(broker)
    t0 = (int(time.time()) - hours * H - 600) // interval * interval
    end = t0 + hours * H
    clock = ReplayClock(t0)
    wifi = sim.SimWifi(in_range=False)
    dut = Logger(
        dev_id,
        tmp_path / dev_id,
        broker.port,
        broker.password(dev_id),
        interval,
        clock,
        wifi,
        lambda t: 450 + (t // interval) % 7,
    )
    room, uid = "acme:room-fast", bytes.fromhex("04f00000000001")
    store, signer = _registry(env)
    try:
        signer.import_entries([dut.entry], at=t0 - 60)
        signer.bind(room, [dev_id], at=t0)
        signer.set_profile(GTIN, low=200, high=800, delay=H, gap=900, name="chilled 2-8 °C", at=t0)
    finally:
        store.close()
    env.register(rd)
    dut.lg.set_clock(t0 + ahead, 3)  # synced (tq 3), and its RTC ran ahead since
    t = float(t0)
    while t < end:
        clock.t = t
        t += dut.wake()
    clock.go_live()
    wifi.in_range = True
    gw = env.start_gateway()
    try:
        dut.deliver()
        env.connect(rd)
        item = f"/01/{GTIN}/10/LFAST/21/0001"
        rd.publish(rd.scan(uid, 1, room, time_=t0 + ahead + 600, item=item))  # by its dates
        rd.publish(rd.scan(uid, 6, room, time_=end))
        wait_for(lambda: not rd.unacked, 30, "the reader's scans acked")
        totals = dict(gw.ingestor.totals)
        ack_seq = gw.ingestor.states[dev_id].ack_seq
        doc = _trace(env, uid, tmp_path / "fast.json", capsys)
    finally:
        gw.stop()

    assert dut.lg.queued == 0  # the device deleted it all: the ack covered it
    recs = _stored(env, dev_id)
    payloads = [open_record(bytes(r.raw)).payload for r in recs]
    seqs = [p.seq for p in payloads]
    store = open_store(env.cfg.db_path)
    try:
        rejects = [r for r in store.rejects(limit=1000) if r.signer == dev_id]
        losses = store.declared_losses(dev_id)
    finally:
        store.close()
    refused = sorted({r.seq for r in rejects})
    assert rejects and {r.reason for r in rejects} == {"bad_time"}, rejects
    (decl,) = [p for p in payloads if isinstance(p, Status) and p.event == 11]
    lost = list(range(decl.lost, decl.lost + decl.detail))
    assert set(refused) <= set(lost) and not set(lost) & set(seqs)
    assert sorted(seqs + lost) == list(range(max(seqs) + 1))  # settled, no silent hole
    assert ack_seq == max(seqs) > max(lost)  # the ack moved past the refused seqs
    assert [(x.seq_from, x.seq_to, x.status_seq) for x in losses] == [(lost[0], lost[-1], decl.seq)]
    # the clock-set record before the declaration: set back by about `ahead`
    (cs,) = [p for p in payloads if isinstance(p, Status) and p.event == 6 and p.seq < decl.seq]
    assert cs.tq == 3 and -ahead - 60 <= cs.time - cs.detail <= -ahead + 60
    assert decl.seq == cs.seq + 1 and max(lost) < cs.seq
    # the verdict names the loss with the device's declaration (a `lost` note,
    # §12.9): the readings it held leave a hole that is shown, never covered
    (note,) = [r for r in doc["reasons"] if r["code"] == "lost"]
    assert note["detail"] == f"{lost[0]}..{lost[-1]}" and note["value"] == len(lost)
    assert doc["verdict"] == "INCOMPLETE"
    assert {r["code"] for r in doc["reasons"]} <= {"lost", "no_readings", "custody_unlinked"}
    write_counts(
        "device_clock_ahead",
        {
            "refused_seqs": refused,
            "declared_lost": [lost[0], lost[-1]],
            "declaration_seq": decl.seq,
            "clock_step_s": cs.time - cs.detail,
            "records_stored": len(seqs),
            "ack_seq": ack_seq,
            "gateway_totals": totals,
            "verdict": doc["verdict"],
            "reasons": sorted(r["code"] for r in doc["reasons"]),
            "wall_s": round(time.monotonic() - wall, 1),
        },
    )
