"""The demo's world: one pallet's day, replayed on the devices' own firmware.

Seven simulated devices run the firmware under CPython (demo/sim.py): four
temperature loggers (a DS18B20 probe and an SHT4x each) - at the packhouse
dock, in the truck, at the DC's dock and in its cold room, so every leg of
the pallet's custody is monitored - and three handover readers with a PN532
and the pallet's NTAG 424 DNA tag. They belong to three organisations
(:data:`ORGS`), each with its own broker, gateway, log and registry:

    packhouse  Westland Fresh       tl-packhouse-1, rd-packhouse-1   packhouse-westland:*
               (its registry signs the product's profile: its gtins scope holds the GTIN;
               it is also the brand owner of a spare part, a GTIN with no profile)
    carrier    Rijn Transport       tl-truck-07                      truck:*
    dc         Acme Cold Logistics  tl-coldroom-2, tl-dock-3,        dc-rotterdam:*
                                    rd-dock-3, rd-coldroom-2

Each device talks to its own organisation's broker. The day (the spare part,
with its own NTAG 424 DNA tag, travels beside the pallet):

    00:20  packhouse dock reader   commission the pallet (the item from its tag)
    00:25  packhouse dock reader   commission the spare part
    00:50  packhouse dock reader   load the pallet (and at 00:52 the part) onto
                                   truck NL-47-BXT
    ~04:40 truck logger            door open at a cross-dock stop: 9 °C, ~45 min
    08:40  DC dock reader          unload (the part at 08:42)
    08:50  DC cold-room reader     receive the pallet into cold room 2
    12:00  DC dock reader          sell the part (the DC as its distributor)
    21:30  DC dock reader          ship the pallet to the shop

Time. The devices' clocks follow a :class:`ReplayClock`: it starts ``DAY``
seconds in the past and jumps from one device wake to the next, paced at
``speed`` times the wall clock, so the replayed day ends about ``LEAD``
seconds before the replay does. While it runs in the past the devices'
radios are out of range: a gateway's ack would set their clocks to the
present (ct_clock steps any difference above 2 s), so the records stay on
their flash, as on a truck without coverage. At the end the clock becomes
the wall clock (the devices slept through the last ``LEAD`` seconds, longer
than a logger's 60 s retry wait after a failed upload), the radios come in
range, and every device wakes and uploads what it recorded; the gateway's
acks then agree with the devices' clocks.
"""

from __future__ import annotations

import heapq
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from demo import sim

DAY = 22 * 3600  # the replayed day, s
INTERVAL = 300  # a reading every 5 minutes
LEAD = 120  # s between the replayed day's end and the present
TRUCK = "truck:NL-47-BXT"
COLD_ROOM = "dc-rotterdam:cold-room-2"
PACKHOUSE_DOCK = "packhouse-westland:dock-1"
DC_DOCK = "dc-rotterdam:dock-3"
GTIN = "09506000134352"
STEADY = {"setpoint": 250, "door_every": 10**9, "exc_start": 10**9}  # 2-3 °C, no doors

COMMISSION, LOAD, UNLOAD, RECEIVE, SHIP, SELL = 1, 2, 3, 4, 5, 6
ACTIONS = {1: "commission", 2: "load", 3: "unload", 4: "receive", 5: "ship", 6: "sell"}
ALARM_EVENTS = {7: "alarm start", 8: "alarm end"}  # ct_app's status events (§2.4)

# id, place, seed, the sim_world.ColdRoom curve it measures (0.01 °C, s)
LOGGERS: list[tuple[str, str, int, dict[str, int]]] = [
    (
        "tl-truck-07",
        TRUCK,
        7,
        {
            "setpoint": 250,
            "door_every": 10**9,
            "exc_start": 4 * 3600 + 1500,
            "exc_len": 3000,
            "exc_peak": 900,
        },
    ),
    ("tl-coldroom-2", COLD_ROOM, 2, {"setpoint": 160, "exc_start": 10**9}),
    ("tl-packhouse-1", PACKHOUSE_DOCK, 11, STEADY),
    ("tl-dock-3", DC_DOCK, 13, STEADY),
]
READERS: list[tuple[str, str]] = [
    ("rd-packhouse-1", PACKHOUSE_DOCK),
    ("rd-dock-3", DC_DOCK),
    ("rd-coldroom-2", COLD_ROOM),
]
TAG_UID = bytes.fromhex("04a23c5a1b6f80")  # the pallet's NTAG 424 DNA, 7-byte UID
TAG_URL = f"https://id.example.com/01/{GTIN}/10/L2611-42/21/000731"
# The spare part beside the pallet: a GTIN with no temperature profile, whose brand
# owner is the packhouse's registry (its gtins scope holds the part's GTIN too); it
# rides the same truck, is unloaded at the DC (the distributor) and sold there.
PART_GTIN = "09506000134819"
PART_UID = bytes.fromhex("04b7e1c2d3a480")
PART_URL = f"https://id.example.com/01/{PART_GTIN}/10/SP-2611/21/A0042"
PART_NAME = "spare part (reefer fan)"
PALLET, PART = 0, 1  # the readers' tags
TAG_NAMES = {PALLET: "the pallet's tag", PART: "the spare part's tag"}
# s into the day, reader, action, the operator's reference (load: the vehicle), which tag
TAPS: list[tuple[int, str, int, str | None, int]] = [
    (20 * 60, "rd-packhouse-1", COMMISSION, None, PALLET),
    (25 * 60, "rd-packhouse-1", COMMISSION, None, PART),
    (50 * 60, "rd-packhouse-1", LOAD, TRUCK, PALLET),
    (52 * 60, "rd-packhouse-1", LOAD, TRUCK, PART),
    (8 * 3600 + 40 * 60, "rd-dock-3", UNLOAD, None, PALLET),
    (8 * 3600 + 42 * 60, "rd-dock-3", UNLOAD, None, PART),
    (8 * 3600 + 50 * 60, "rd-coldroom-2", RECEIVE, None, PALLET),
    (12 * 3600, "rd-dock-3", SELL, "SO-2611-0007", PART),
    (21 * 3600 + 30 * 60, "rd-dock-3", SHIP, "SH-2611-0042", PALLET),
]
DEVICE_IDS = [d[0] for d in LOGGERS] + [r[0] for r in READERS]


@dataclass(frozen=True)
class Org:
    """An organisation of the scenario: its gateway, log and registry, and the scopes
    the cloud's operator pins for its registry (docs/protocol.md §10; no two
    organisations' patterns tie, so every device, place and GTIN has one authority)."""

    name: str  # the cloud's organisation name, also the demo's directory for it
    company: str
    gateway: str  # gateway id (a protocol id)
    origin: str  # its log's origin
    registry: str  # its registry id
    devices: tuple[str, ...]  # its devices (the scenario's)
    device_scope: tuple[str, ...]  # registry scopes: device ids, places, GTINs
    places: tuple[str, ...]
    gtins: tuple[str, ...]

    @property
    def display(self) -> str:
        return f"{self.company} ({self.name})"


ORGS: list[Org] = [
    Org(
        "packhouse",
        "Westland Fresh",
        "westland-packhouse",
        "coldtrace.example/westland-fresh/packhouse",
        "reg-westland",
        ("tl-packhouse-1", "rd-packhouse-1"),
        ("tl-packhouse-*", "rd-packhouse-*"),
        ("packhouse-westland:*",),
        (GTIN, PART_GTIN),
    ),
    Org(
        "carrier",
        "Rijn Transport",
        "rijn-trucks",
        "coldtrace.example/rijn-transport/trucks",
        "reg-rijn",
        ("tl-truck-07",),
        ("tl-truck-*",),
        ("truck:*",),
        (),
    ),
    Org(
        "dc",
        "Acme Cold Logistics",
        "dc-rotterdam",
        "coldtrace.example/acme/dc-rotterdam",
        "reg-acme",
        ("tl-coldroom-2", "tl-dock-3", "rd-dock-3", "rd-coldroom-2"),
        ("tl-coldroom-*", "tl-dock-*", "rd-dock-*", "rd-coldroom-*"),
        ("dc-rotterdam:*",),
        (),
    ),
]
ORG_OF = {dev: org for org in ORGS for dev in org.devices}
assert sorted(ORG_OF) == sorted(DEVICE_IDS)


class ReplayClock:
    """The devices' time: ``t`` (set by the replay, event by event) until
    :meth:`go_live`, the wall clock after."""

    def __init__(self, start: float) -> None:
        self.t = start
        self.live = False

    def __call__(self) -> float:
        return time.time() if self.live else self.t

    def go_live(self) -> None:
        self.live = True


@dataclass
class Upload:
    device: str
    sent: int
    acked: int
    left: int
    seconds: float


@dataclass(frozen=True)
class Broker:
    """Where a device connects: its organisation's broker, and its own password."""

    host: str
    port: int
    password: str


class World:
    """The devices of the scenario, provisioned under ``root``; each talks to its
    organisation's broker, ``brokers[device id]``."""

    def __init__(self, root: Path, brokers: dict[str, Broker], speed: float) -> None:
        self.root = root
        self.speed = speed
        self.start = int(time.time() + DAY / speed) - DAY - LEAD
        self.end = self.start + DAY
        self.clock = ReplayClock(self.start)
        self.wifi = sim.SimWifi(in_range=False)
        self.tag = sim.SunTag(TAG_UID, TAG_URL)
        self.part_tag = sim.SunTag(PART_UID, PART_URL)
        self.entries: list[dict[str, Any]] = []
        self.loggers: dict[str, sim.SimLogger] = {}
        self.readers: dict[str, sim.SimReader] = {}
        root.mkdir(parents=True, exist_ok=True)
        for dev, place, seed, curve in LOGGERS:
            b = brokers[dev]
            cfg = sim.logger_config(
                dev,
                ORG_OF[dev].company,
                b.host,
                b.port,
                INTERVAL,
                0,
                root / dev,
                place=place,
                heartbeat=6 * 3600,
                upload_ms=20000,
                alarm={"high": 400, "low": 0, "delay": 1800, "cum": 0, "ignore": 0, "channel": 0},
            )
            # A day's records go up in one session: let 64 be in flight past the ack
            # (they stay on flash until acked; the default 16 waits for more acks).
            cfg["mqtt"]["window"] = 64
            self.entries.append(sim.provision_sim_device(root / dev, cfg))
            lg = sim.SimLogger(
                cfg,
                root / dev,
                sim.client_factory(dev, b.host, b.port, b.password),
                seed=seed,
                scale=1,
                world=curve,
                clock=self.clock,
                wifi=self.wifi,
            )
            lg.set_clock(self.start)
            self.loggers[dev] = lg
        for dev, place in READERS:
            b = brokers[dev]
            cfg = sim.reader_config(dev, ORG_OF[dev].company, b.host, b.port, root / dev, place)
            cfg["upload_ms"] = 20000
            self.entries.append(sim.provision_sim_device(root / dev, cfg))
            rd = sim.SimReader(
                cfg,
                root / dev,
                sim.client_factory(dev, b.host, b.port, b.password),
                [self.tag, self.part_tag],
                clock=self.clock,
                wifi=self.wifi,
            )
            rd.set_clock(self.start)
            self.readers[dev] = rd
        # One provisioning file per organisation: each registers its own devices.
        self.provisioned: dict[str, Path] = {}
        for org in ORGS:
            path = root / f"provisioned-{org.name}.json"
            mine = [e for e in self.entries if e["device"] in org.devices]
            path.write_text(json.dumps({"devices": mine}, indent=1) + "\n")
            path.chmod(0o600)
            self.provisioned[org.name] = path
        tags = [
            {
                "uid": t.uid.hex(),
                "k_sdm_meta_read": t.k_meta.hex(),  # for a cloud's SUN check
                "k_sdm_file_read": t.k_file.hex(),
                "url": t.base,
                "item": t.base[t.base.index("/01/") :],
            }
            for t in (self.tag, self.part_tag)
        ]
        (root / "tags.json").write_text(json.dumps({"tags": tags}, indent=1) + "\n")
        (root / "tags.json").chmod(0o600)
        self.scans: list[tuple[int, str, int]] = []

    def replay(
        self, report: Callable[[int], None], note: Callable[[int, str], None], every: int = 2 * 3600
    ) -> None:
        """Run the day: logger wakes and reader taps in time order, paced at
        ``speed``; ``report(t)`` every ``every`` simulated seconds, ``note(t,
        text)`` for each scan and each alarm a logger raises on the device."""
        events: list[tuple[int, int, str, Any]] = []
        for k, dev in enumerate(self.loggers):
            events.append((self.start + 11 * k, k, "wake", dev))
        for k, (at, dev, action, ref, tag) in enumerate(TAPS):
            events.append((self.start + at, 100 + k, "tap", (dev, action, ref, tag)))
        heapq.heapify(events)
        wall0 = time.time()
        next_report = self.start + every
        while events:
            t, order, kind, what = heapq.heappop(events)
            if t >= self.end:
                break
            wait = wall0 + (t - self.start) / self.speed - time.time()
            if wait > 0:
                time.sleep(wait)
            while next_report <= t:
                report(next_report)
                next_report += every
            self.clock.t = t
            if kind == "wake":
                lg = self.loggers[what]
                seen = len(lg.events)
                dt = lg.wake()
                heapq.heappush(events, (t + max(1, round(dt)), order, kind, what))
                for ev, detail in lg.events[seen:]:
                    if ev in ALARM_EVENTS and detail is not None:
                        note(
                            t,
                            f"{what}: {ALARM_EVENTS[ev]} on the device (status event {ev}, "
                            f"peak {detail / 100:.2f} °C); its upload attempt: no network",
                        )
            else:
                dev, action, ref, tag = what
                rd = self.readers[dev]
                if rd.tap(tag, action, ref) is not None:
                    self.scans.append((t, dev, action))
                    where = f"onto {ref}" if action == LOAD else f"at {rd.cfg['place']}"
                    note(t, f"{dev}: {ACTIONS[action]} scan of {TAG_NAMES[tag]} {where}")
                rd.upload()  # out of range: the scan waits on the reader's flash
        report(self.end)

    def queued(self) -> dict[str, int]:
        """Records on each device's flash that no ack has covered yet."""
        out = {dev: lg.queued for dev, lg in self.loggers.items()}
        out.update({dev: rd.queued for dev, rd in self.readers.items()})
        return out

    def go_live(self) -> None:
        """The replay reached the present: real time, radios in range."""
        self.clock.go_live()
        self.wifi.in_range = True

    def _counts(self, dev: str) -> tuple[int, int]:
        """(records sent, records acked) by ``dev`` so far."""
        lg = self.loggers.get(dev)
        if lg is not None:
            return lg.sent, lg.acked
        up = self.readers[dev].core.uplink
        return (0, 0) if up is None else (up.sent, up.acked)

    def upload(self, dev: str, tries: int = 3) -> Upload:
        """Wake ``dev`` (a logger makes a reading, then uploads; a reader
        uploads) until its flash holds nothing unacknowledged, or ``tries`` times."""
        t0 = time.monotonic()
        sent0, acked0 = self._counts(dev)
        for _ in range(tries):
            if dev in self.loggers:
                self.loggers[dev].wake()
            else:
                self.readers[dev].upload()
            if self.queued()[dev] == 0:
                break
        sent, acked = self._counts(dev)
        return Upload(dev, sent - sent0, acked - acked0, self.queued()[dev], time.monotonic() - t0)

    def close(self) -> None:
        """Close the readers' cores (a logger's core lives one wake); idempotent."""
        readers, self.readers = self.readers, {}
        for rd in readers.values():
            rd.core.close()
