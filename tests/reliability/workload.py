"""The fault suite's workload: many loggers and one reader, a day of cold chain with two items.

:class:`ColdChain` makes ``n`` simulated loggers (tests/gateway/devices.py:
the firmware's record code, real MQTT through paho) and one reader. The
loggers are bound, a quarter each, to four places (dock, truck, room, shop);
a product profile (0-4 °C, delay a tenth of the day) covers the GTIN. The
readings are in the past, one a minute per logger (``readings`` each), so a
stream of a few seconds is a history of ``readings`` minutes; the truck's
loggers read 6.2 °C during the second quarter of it. Two items go through:

- ``PASS_UID``: commissioned at the dock, onto the truck after the hot spell,
  unloaded into the room, sold there: PASS;
- ``FAIL_UID``: onto the truck before the hot spell and off after it: FAIL.

Every statement (bindings, profile) is signed at setup with a restatement at
the day's end, so each chain is closed and the verdicts need nothing signed
later. :attr:`ColdChain.registry_records` are the registry's records as
signed (what the gateway logs from its outbox), the reference run's input
with the devices' records (tests/reliability/invariants.py).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable

from gateway.evidence.registry import RegistrySigner
from gateway.evidence.store import open_store
from protocol.keys import load_p256_private_key
from protocol.record import KIND_BINDING, KIND_PROFILE
from tests.gateway.devices import SimDevice
from tests.gateway.env import GatewayDir

GTIN = "09506000134352"
PLACES = ("rel:dock", "rel:truck", "rel:room", "rel:shop")
DOCK, TRUCK, ROOM, SHOP = PLACES
PASS_UID = bytes.fromhex("04a23c5a1b6f81")
FAIL_UID = bytes.fromhex("04a23c5a1b6f82")
STEP = 60  # s between two readings of a logger
COLD, HOT = 280, 620  # 0.01 °C
COMMISSION, LOAD, UNLOAD, SELL = 1, 2, 3, 6
BOUND = 3  # loggers bound to each place (a binding's device list holds 128 bytes)


class ColdChain:
    """``n`` loggers (``prefix``-0 ...) with ``readings`` readings each, and a reader."""

    def __init__(self, n: int, readings: int, *, prefix: str = "tl-r") -> None:
        self.loggers = [SimDevice(f"{prefix}{i}") for i in range(n)]
        self.reader = SimDevice(f"rd-{prefix}")
        self.readings = readings
        self.day = readings * STEP
        self.t0 = int(time.time()) - self.day - 600
        self.registry_records: list[bytes] = []
        self.sent: dict[str, list[bytes]] = {d.id: [] for d in self.devices}
        self._truck = {d.id for d in self.loggers[PLACES.index(TRUCK) :: len(PLACES)]}

    @property
    def devices(self) -> list[SimDevice]:
        return [*self.loggers, self.reader]

    @property
    def device_ids(self) -> list[str]:
        return [d.id for d in self.devices]

    @property
    def uids(self) -> tuple[bytes, bytes]:
        return (PASS_UID, FAIL_UID)

    def at(self, fraction: float) -> int:
        return self.t0 + int(fraction * self.day)

    # --- setup: the registry's records, in the gateway's outbox --------------------------

    def setup(self, env: GatewayDir) -> None:
        """Register every device, bind the loggers, sign the profile (each chain closed
        by a restatement at the day's end); keep the registry records as signed."""
        env.register(*self.devices)
        store = open_store(env.cfg)
        try:
            signer = RegistrySigner(
                store, env.cfg.registry.id, load_p256_private_key(env.cfg.registry.key_file)
            )
            end = self.t0 + self.day + STEP
            for at in (self.t0 - STEP, end):
                for i, place in enumerate(PLACES):
                    ids = [d.id for d in self.loggers[i :: len(PLACES)][:BOUND]]
                    if at == end:
                        signer.restate((KIND_BINDING, place), at=at)
                    else:
                        signer.bind(place, ids, at=at)
                if at == end:
                    signer.restate((KIND_PROFILE, GTIN), at=at)
                else:
                    signer.set_profile(
                        GTIN,
                        low=0,
                        high=400,
                        delay=self.day // 10,
                        gap=3 * STEP,
                        cumul=self.day,
                        name="chilled 0-4 °C",
                        at=at,
                    )
            self.registry_records = [raw for _, raw in store.outbox_pending()]
        finally:
            store.close()

    # --- the records --------------------------------------------------------------------

    def reading(self, dev: SimDevice, k: int) -> bytes:
        """Logger ``dev``'s reading ``k`` (its minute k of the day)."""
        t = self.t0 + k * STEP
        hot = dev.id in self._truck and self.at(0.25) <= t < self.at(0.5)
        return dev.reading(temp=HOT if hot else COLD, time_=t)

    def scans(self) -> list[bytes]:
        """The reader's scans of both items, in time order."""
        rd = self.reader
        journeys = {
            PASS_UID: ((0.05, 0.6, 0.8, 0.9), "/01/{}/10/L1/21/1"),
            FAIL_UID: ((0.05, 0.2, 0.55, 0.9), "/01/{}/10/L1/21/2"),
        }
        steps = []
        for uid, ((c, load, unload, sell), item) in journeys.items():
            steps += [
                (self.at(c), uid, COMMISSION, DOCK, {"item": item.format(GTIN)}),
                (self.at(load), uid, LOAD, DOCK, {"ref": TRUCK}),
                (self.at(unload), uid, UNLOAD, ROOM, {}),
                (self.at(sell), uid, SELL, ROOM, {}),
            ]
        steps.sort(key=lambda s: s[0])
        return [rd.scan(uid, action, place, time_=t, **kw) for t, uid, action, place, kw in steps]

    def publish(
        self,
        pause: float,
        stop: threading.Event | None = None,
        on_round: Callable[[int], None] | None = None,
    ) -> None:
        """Publish the scans, then the readings round by round (every logger's
        reading k, then ``pause`` s), into :attr:`sent` (per device, in seq order)."""
        for raw in self.scans():
            self.sent[self.reader.id].append(raw)
            self.reader.publish(raw)
        for k in range(self.readings):
            if stop is not None and stop.is_set():
                break
            for d in self.loggers:
                raw = self.reading(d, k)
                self.sent[d.id].append(raw)
                d.publish(raw)
            if on_round is not None:
                on_round(k)
            time.sleep(pause)

    def publisher(self, pause: float) -> threading.Thread:
        """:meth:`publish` on a started thread."""
        t = threading.Thread(target=self.publish, args=(pause,), name="workload", daemon=True)
        t.start()
        return t

    def published(self) -> dict[str, dict[int, bytes]]:
        """Per device, seq -> the exact bytes published."""
        return {dev: dict(enumerate(raws)) for dev, raws in self.sent.items()}


def acked(devices: Iterable[SimDevice]) -> dict[str, int]:
    """Per device, the highest seq a verified ack covered (-1: none)."""
    return {d.id: d.acked for d in devices}
