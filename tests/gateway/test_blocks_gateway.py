"""A reading block (kind 7, docs/protocol.md §2.8) in the gateway's live paths: the
alert engine and the InfluxDB sink see each of its readings at its own time
``time + i x ivl`` (the dashboard: tests/gateway/test_blocks_e2e.py)."""

from __future__ import annotations

from types import SimpleNamespace

from gateway.alerts import DEVICE_KINDS, AlertEngine, AlertEvent, AlertListener
from gateway.profiles import Profile
from protocol.record import Reading, ReadingBlock, pack_block
from tests.gateway.test_influx import T0, Endpoint, endpoint, sink

__all__ = ["endpoint"]  # the fixture, from test_influx

PLACE = "wh-7/room"


def block(time: int, temps: list[int | None], *, faults: list[int | None] | None = None,
          rhs: list[int | None] | None = None, seq: int = 3, tq: int = 2,
          batt: int | None = None) -> ReadingBlock:
    t, r = pack_block(temps, faults, rhs)
    return ReadingBlock(boot=1, seq=seq, time=time, tq=tq, prev=bytes(16), ivl=300, temps=t,
                        rhs=r, batt=batt)


def test_the_alert_engine_judges_each_reading_of_a_block_at_its_own_time() -> None:
    clock = SimpleNamespace(now=T0 + 5000)
    published: list[AlertEvent] = []
    engine = AlertEngine({PLACE: Profile("p", 200, 800, delay=600)}, lambda: clock.now)
    listener = AlertListener(engine, published.append, place_of=lambda d: PLACE)
    rec = SimpleNamespace(signer="tl-1", received=T0 + 4000)
    # a block whose readings leave the range at its second slot (a device that
    # does not send out-of-band readings at once: the gateway still judges them)
    listener(SimpleNamespace(accepted=[(rec, block(T0, [450, 950, 960, 970, 980]))],
                             presence={}))
    (start,) = published
    assert (start.kind, start.phase, start.start, start.time) == (
        "excursion", "start", T0 + 300, T0 + 900)  # 600 s after the first reading above
    reading = Reading(boot=1, seq=4, time=T0 + 1500, tq=2, prev=bytes(16), temp=450)
    listener(SimpleNamespace(accepted=[(rec, reading)], presence={}))
    end = published[-1]
    assert (end.phase, end.time, end.peak_centi, end.readings) == ("end", T0 + 1500, 980, 4)
    assert 7 in DEVICE_KINDS  # a block says its device is alive


def test_a_faulted_slot_is_a_fault_never_a_temperature() -> None:
    clock = SimpleNamespace(now=T0 + 5000)
    published: list[AlertEvent] = []
    engine = AlertEngine({PLACE: Profile("p", 200, 800, delay=0, fault_delay=0)},
                         lambda: clock.now)
    listener = AlertListener(engine, published.append, place_of=lambda d: PLACE)
    rec = SimpleNamespace(signer="tl-1", received=T0 + 4000)
    b = block(T0, [450, None, 460], faults=[None, 2, None])
    listener(SimpleNamespace(accepted=[(rec, b)], presence={}))
    assert [(e.kind, e.phase, e.time, e.fault) for e in published] == [
        ("sensor_fault", "start", T0 + 300, 2),
        ("sensor_fault", "end", T0 + 600, 2),
    ]


def test_influx_writes_a_point_per_reading_of_a_block(endpoint: Endpoint) -> None:
    s = sink(endpoint)
    stored = SimpleNamespace(kind=7, signer="tl-1")
    b = block(T0, [250, None, 260], faults=[None, 6, None], rhs=[4501, None, 4600], batt=3300)
    unset = block(T0, [250], tq=0)
    s(SimpleNamespace(accepted=[(stored, b), (stored, unset)], presence={}))
    s.close()
    assert s.stats()["written"] == 3 and s.stats()["skipped"] == 1
    assert endpoint.lines() == [
        f"coldtrace_reading,channel=0,device=tl-1,gateway=wh-7 "
        f"rh_pct=45.01,seq=3i,temp_c=2.5,tq=2i {T0}",
        f"coldtrace_reading,channel=0,device=tl-1,gateway=wh-7 fault=6i,seq=3i,tq=2i {T0 + 300}",
        f"coldtrace_reading,channel=0,device=tl-1,gateway=wh-7 "
        f"batt_mv=3300i,rh_pct=46,seq=3i,temp_c=2.6,tq=2i {T0 + 600}",
    ]


def test_ingest_judges_a_blocks_time_by_its_last_reading(tmp_path) -> None:
    import time as _time

    from gateway.evidence.checks import IngestSettings, check_message
    from gateway.transport.mqtt import Inbound
    from protocol.record import make_record
    from tests.gateway.core import Core
    from tests.gateway.devices import SimDevice

    core = Core(tmp_path)
    try:
        dev = SimDevice("tl-blk")
        core.register(dev)
        now = int(_time.time())
        s = IngestSettings(future_skew=300, holdover_skew=86400)

        def reason(start: int, n: int) -> str | None:
            b = block(start, [450] * n, seq=dev.seq)
            raw = make_record(
                ReadingBlock(**{**b.__dict__, "prev": dev.prev, "boot": dev.boot}),
                dev.id, dev.key,
            )
            r = check_message(Inbound(f"ct/v1/{dev.id}/rec", raw), core.registry, now, s)
            return getattr(r, "reason", None)

        assert reason(now - 3300, 12) is None  # signed as its last reading was taken
        assert reason(now - 300, 3) is None  # ends 300 s ahead: inside the skew
        assert reason(now - 300, 12) == "bad_time"  # its last reading ~an hour ahead
    finally:
        core.close()
