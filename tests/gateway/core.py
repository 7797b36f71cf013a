"""The gateway's parts wired without MQTT, for fast unit tests of ingest and the log."""

from __future__ import annotations

import time
from pathlib import Path

from gateway.evidence.checks import IngestSettings
from gateway.evidence.fleet import FleetStore
from gateway.evidence.ingest import BatchOutcome, Ingestor, Pipeline
from gateway.evidence.ledger import Ledger, LocalLedger
from gateway.evidence.log import GatewayLog
from gateway.evidence.registry import Registry, statement_history
from gateway.evidence.store import SqlStore
from gateway.transport.mqtt import Inbound
from protocol.keys import generate_ed25519, generate_p256
from protocol.note import NoteSigner
from protocol.record import (
    KIND_BINDING,
    KIND_PROFILE,
    Binding,
    ProductProfile,
    Registration,
    chain_hash,
    make_record,
    open_record,
)
from tests.gateway.devices import SimDevice

ORIGIN = "coldtrace.test/core"
REGISTRY = "test-registry"


class Core:
    """store + log + ledger + registry + ingestor + pipeline in one directory."""

    def __init__(
        self,
        d: Path,
        *,
        signer: NoteSigner | None = None,
        ledger_key=None,
        registry_key=None,
        store_url: str | None = None,
        schema: str = "gw_core",
        fleet: str | None = None,
    ) -> None:
        """``store_url``: a PostgreSQL database for the store (``schema``); None:
        SQLite ``d/gateway.db``. ``fleet``: the shared schema of a gateway fleet
        (gateway/evidence/fleet.py) this core is an instance of."""
        self.dir = d
        self.store_url = store_url
        self.schema = schema
        self.fleet = fleet
        self.signer = signer or NoteSigner.generate(ORIGIN)
        self.ledger_key = ledger_key or generate_ed25519()
        self.registry_key = registry_key or generate_p256()
        self.open()

    def open(self) -> None:
        d = self.dir
        if self.store_url is None:
            self.store = SqlStore(d / "gateway.db")
        elif self.fleet is None:
            self.store = SqlStore(self.store_url, schema=self.schema)
        else:
            self.store = FleetStore(
                self.store_url, schema=self.schema, shared_schema=self.fleet, origin=self.schema
            )
        self.ledger = self.open_ledger()
        self.log = GatewayLog(
            self.store,
            d / "tree",
            self.signer,
            ledger=self.ledger,
            checkpoint_interval=3600,
            checkpoint_leaves=10**9,
        )
        self.registry = Registry(
            {REGISTRY: self.registry_key.public_key()},
            self.store.devices(),
            self.store.statement_heads(),
        )
        self.ingestor = Ingestor(
            self.store,
            self.registry,
            gateway_id="gw-core",
            settings=IngestSettings(),
            append_to_log=self.log.append,
        )
        self.pipeline = Pipeline(self.ingestor, threads=2, batch_size=100)
        self.mid = 0
        self._outbox: dict[bytes, int] = {}

    def open_ledger(self) -> Ledger:
        """The ledger the log anchors on (a subclass may give another backend)."""
        return LocalLedger(self.dir / "ledger.db", f"{ORIGIN}/ledger", self.ledger_key)

    def close(self) -> None:
        self.pipeline.stop()
        self.log.close()
        self.ledger.close()
        self.store.close()

    def reopen(self) -> None:
        self.close()
        self.open()

    def send(self, *items: tuple[str, bytes] | bytes) -> BatchOutcome:
        """Ingest (topic, raw) pairs or raw registry records as one batch."""
        msgs = []
        for item in items:
            self.mid += 1
            if isinstance(item, bytes):
                oid = self._outbox.get(item, self.mid)
                msgs.append(Inbound(f"outbox/{REGISTRY}", item, 0, 0, time.time(), outbox_id=oid))
            else:
                topic, raw = item
                msgs.append(Inbound(topic, raw, self.mid, 1, time.time()))
        return self.pipeline.run_once(msgs)

    def registration(
        self,
        dev: SimDevice,
        *,
        state: int = 1,
        key: bytes | None = None,
        cal: int | None = None,
    ) -> bytes:
        last = self.store.last_signed(REGISTRY)
        seq, prev = (0, bytes(16)) if last is None else (last[0] + 1, chain_hash(last[1]))
        reg = Registration(
            boot=0,
            seq=seq,
            time=int(time.time()),
            tq=2,
            prev=prev,
            device=dev.id,
            key=key or dev.public_sec1,
            role=dev.role,
            org="acme",
            state=state,
            cal=cal,
        )
        raw = make_record(reg, REGISTRY, self.registry_key)
        # Keep the registry chain in the store's view: the outbox is where it lives.
        self._outbox[raw] = self.store.outbox_add(REGISTRY, seq, raw)
        return raw

    def statement(
        self,
        *,
        target: str | None = None,
        devices: str | None = None,
        gtin: str | None = None,
        cseq: int | None = None,
        cprev: bytes | None = None,
        time_: int | None = None,
        **profile: object,
    ) -> bytes:
        """A binding (``target``) or profile (``gtin``) statement signed by the
        registry, queued in the outbox; cseq/cprev default to the next in the
        chain as logged and queued so far, ``time_`` to now."""
        last = self.store.last_signed(REGISTRY)
        seq, prev = (0, bytes(16)) if last is None else (last[0] + 1, chain_hash(last[1]))
        lot = profile.get("lot")
        if gtin is None:
            chain = (KIND_BINDING, target)
        else:
            chain = (KIND_PROFILE, gtin if lot is None else f"{gtin} {lot}")
        mine = [e for e in statement_history(self.store) if e.key == chain]
        if cseq is None:
            cseq = mine[-1].cseq + 1 if mine else 0
        if cprev is None:
            before = [e for e in mine if e.cseq == cseq - 1]
            cprev = bytes(16) if not before else chain_hash(self._raw_of(before[0]))
        common = dict(
            boot=0, seq=seq, time=time_ or int(time.time()), tq=2, prev=prev, cseq=cseq, cprev=cprev
        )
        if gtin is None:
            p: Binding | ProductProfile = Binding(**common, target=target, devices=devices)
        else:
            p = ProductProfile(**common, gtin=gtin, **profile)  # type: ignore[arg-type]
        raw = make_record(p, REGISTRY, self.registry_key)
        self._outbox[raw] = self.store.outbox_add(REGISTRY, seq, raw)
        return raw

    def _raw_of(self, entry: object) -> bytes:
        leaf = getattr(entry, "leaf", None)
        if leaf is not None:
            rec = self.store.record(leaf)
            assert rec is not None
            return rec.raw
        for raw in self._outbox:
            p = open_record(raw).payload
            if getattr(p, "cseq", None) == entry.cseq and p == entry.payload:  # type: ignore[attr-defined]
                return raw
        raise AssertionError("statement not found")

    def register(self, *devs: SimDevice) -> None:
        for dev in devs:
            dev.ack_key = bytes(range(32))
            self.store.set_ack_key(dev.id, dev.ack_key)
            self.send(self.registration(dev))
        self.ingestor.ack_keys = self.store.ack_keys()


def rec(dev: SimDevice, raw: bytes) -> tuple[str, bytes]:
    return (f"ct/v1/{dev.id}/rec", raw)
