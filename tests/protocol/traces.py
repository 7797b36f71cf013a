"""Small traces of real records for the verdict's tests (docs/protocol.md §12).

Records are signed with :func:`protocol.record.make_record` (RFC 6979, so the
same script gives the same bytes; ``fast=True`` uses pyca's nonces for big
traces) and opened with :func:`protocol.record.open_record`. :class:`Scopes`
stands in for the trust file's two look-ups the verdict uses.

    w = standard()                 # commission, truck, store, sale: PASS
    w.drop(record); w.doc()        # the verdict document (§13.1) of what is left
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec

from protocol.record import (
    ZERO_PREV,
    Binding,
    ProductProfile,
    Reading,
    Record,
    Scan,
    chain_hash,
    gtin_check_digit,
    make_record,
    open_record,
)
from protocol.verdict import judge

T0 = 1_790_000_000  # 2026-09-21T14:13:20Z
H = 3600
GTIN = "0950600013435" + str(gtin_check_digit("0950600013435"))  # 09506000134352
LOT = "L2611-42"
ITEM = f"/01/{GTIN}/10/{LOT}/21/000731"
UID = bytes.fromhex("04a23c5a1b6f80")
REG = "acme-reg"
DOCK, TRUCK, STORE = "dc:dock-1", "fleet:truck-1", "shop:store-1"
COMMISSION, LOAD, UNLOAD, RECEIVE, SHIP, SELL = 1, 2, 3, 4, 5, 6
PROFILE = {"low": 0, "high": 400, "delay": 1800, "cumul": 7200, "gap": 1800}


@functools.cache
def key_for(name: str) -> ec.EllipticCurvePrivateKey:
    return ec.derive_private_key(int.from_bytes(name.encode(), "big") % 2**200 + 7, ec.SECP256R1())


@dataclass
class Signer:
    """A device or a registry with its signer chain; a registry also keeps statement chains."""

    id: str
    boot: int = 1
    seq: int = 0
    prev: bytes = ZERO_PREV
    fast: bool = False  # pyca's random nonces instead of RFC 6979 (for the big traces)
    chains: dict[tuple[Any, ...], tuple[int, bytes]] = field(default_factory=dict)

    def sign(self, cls: type, t: int, tq: int = 2, **kw: Any) -> Record:
        payload = cls(boot=self.boot, seq=self.seq, time=t, tq=tq, prev=self.prev, **kw)
        raw = make_record(payload, self.id, key_for(self.id), deterministic=not self.fast)
        self.seq += 1
        self.prev = chain_hash(raw)
        return open_record(raw)

    def statement(self, cls: type, key: tuple[Any, ...], t: int, **kw: Any) -> Record:
        cseq, cprev = self.chains.get(key, (0, ZERO_PREV))
        r = self.sign(cls, t, cseq=cseq, cprev=cprev, **kw)
        self.chains[key] = (cseq + 1, chain_hash(r.raw))
        return r

    def bind(self, target: str, t: int, devices: str | None) -> Record:
        return self.statement(Binding, ("b", target), t, target=target, devices=devices)

    def profile(self, t: int, gtin: str = GTIN, lot: str | None = None, **kw: Any) -> Record:
        return self.statement(ProductProfile, ("p", gtin, lot), t, gtin=gtin, lot=lot, **kw)

    def readings(self, start: int, end: int, step: int = 600, temp: Any = 300) -> list[Record]:
        """Readings at start, start + step, … ≤ end; ``temp`` a value or a function of t."""
        return [
            self.sign(Reading, t, temp=temp(t) if callable(temp) else temp)
            for t in range(start, end + 1, step)
        ]


@dataclass
class Tag:
    """The tag: the custody link it holds (§4.3)."""

    uid: bytes = UID
    link: bytes | None = None

    def scan(self, reader: Signer, t: int, action: int, place: str, **kw: Any) -> Record:
        write = kw.pop("write", True)
        if action != COMMISSION and "link" not in kw:
            kw["link"] = self.link
        r = reader.sign(Scan, t, uid=self.uid, action=action, place=place, **kw)
        if write:
            self.link = chain_hash(r.raw)
        return r


@dataclass
class Scopes:
    """The two trust-file look-ups the verdict needs (§10), as plain maps."""

    places: dict[str, str] = field(default_factory=lambda: {DOCK: REG, TRUCK: REG, STORE: REG})
    gtins: dict[str, str] = field(default_factory=lambda: {GTIN: REG})

    def place_authority(self, place: str) -> str | None:
        return self.places.get(place)

    def gtin_authority(self, gtin: str) -> str | None:
        return self.gtins.get(gtin)


@dataclass
class World:
    reg: Signer = field(default_factory=lambda: Signer(REG, boot=0))
    rd1: Signer = field(default_factory=lambda: Signer("rd-1"))
    rd2: Signer = field(default_factory=lambda: Signer("rd-2"))
    dock: Signer = field(default_factory=lambda: Signer("tl-dock"))
    truck: Signer = field(default_factory=lambda: Signer("tl-truck"))
    store: Signer = field(default_factory=lambda: Signer("tl-store"))
    tag: Tag = field(default_factory=Tag)
    scopes: Scopes = field(default_factory=Scopes)
    records: list[Record] = field(default_factory=list)

    def add(self, *items: Record | list[Record]) -> None:
        for r in items:
            self.records.extend(r if isinstance(r, list) else [r])

    def drop(self, *items: Record) -> None:
        gone = {r.raw for r in items}
        self.records = [r for r in self.records if r.raw not in gone]

    def judge(self) -> Any:
        return judge(self.records, self.scopes, UID)

    def doc(self) -> dict[str, Any]:
        return self.judge().to_json()


def profile_chain(w: World, **kw: Any) -> None:
    """A profile in force from a day before T0, restated a day after (so it is shown)."""
    fields = {**PROFILE, **kw}
    w.add(w.reg.profile(T0 - 86400, **fields), w.reg.profile(T0 + 86400, **fields))


def binding_chain(w: World, place: str, devices: str | None) -> None:
    w.add(w.reg.bind(place, T0 - 86400, devices), w.reg.bind(place, T0 + 86400, devices))


def custody_scans(w: World, *, load_ref: str | None = TRUCK) -> None:
    """Commission at the dock at T0, load onto the truck at T0+1h, unload at the store at T0+4h,
    sell at T0+6h: legs 0 (dock), 1 (truck), 2 (store) and 3 (zero length)."""
    w.add(w.tag.scan(w.rd1, T0, COMMISSION, DOCK, item=ITEM))
    w.add(w.tag.scan(w.rd1, T0 + H, LOAD, DOCK, **({"ref": load_ref} if load_ref else {})))
    w.add(w.tag.scan(w.rd2, T0 + 4 * H, UNLOAD, STORE))
    w.add(w.tag.scan(w.rd2, T0 + 6 * H, SELL, STORE))


def standard(truck_temp: Any = 300, *, truck: bool = True, **profile: Any) -> World:
    """The honest trace: one logger per place, readings every 10 min from exactly the start of
    its leg to exactly its end (so that every reading is needed)."""
    w = World()
    profile_chain(w, **profile)
    binding_chain(w, DOCK, "tl-dock")
    binding_chain(w, TRUCK, "tl-truck")
    binding_chain(w, STORE, "tl-store")
    custody_scans(w)
    w.add(w.dock.readings(T0, T0 + H))
    if truck:
        w.add(w.truck.readings(T0 + H, T0 + 4 * H, temp=truck_temp))
    w.add(w.store.readings(T0 + 4 * H, T0 + 6 * H))
    return w


def reasons(doc: dict[str, Any], code: str | None = None) -> list[dict[str, Any]]:
    return [r for r in doc["reasons"] if code is None or r["code"] == code]


def codes(doc: dict[str, Any]) -> list[str]:
    return [r["code"] for r in doc["reasons"]]


def warm(start: int, end: int, value: int = 900, base: int = 300) -> Any:
    return lambda t: value if start <= t < end else base
