"""The gateway's parts wired without MQTT, for fast unit tests of ingest and the log."""

from __future__ import annotations

import time
from pathlib import Path

from gateway.ingest import BatchOutcome, Ingestor, IngestSettings, Pipeline
from gateway.ledger import LocalLedger
from gateway.log import GatewayLog
from gateway.mqtt import Inbound
from gateway.registry import Registry
from gateway.store import SQLiteStore
from protocol.keys import generate_ed25519, generate_p256
from protocol.note import NoteSigner
from protocol.record import Registration, chain_hash, make_record
from tests.gateway.devices import SimDevice

ORIGIN = "coldtrace.test/core"
REGISTRY = "test-registry"


class Core:
    """store + log + ledger + registry + ingestor + pipeline in one directory."""

    def __init__(
        self, d: Path, *, signer: NoteSigner | None = None, ledger_key=None, registry_key=None
    ) -> None:
        self.dir = d
        self.signer = signer or NoteSigner.generate(ORIGIN)
        self.ledger_key = ledger_key or generate_ed25519()
        self.registry_key = registry_key or generate_p256()
        self.open()

    def open(self) -> None:
        d = self.dir
        self.store = SQLiteStore(d / "gateway.db")
        self.ledger = LocalLedger(d / "ledger.db", f"{ORIGIN}/ledger", self.ledger_key)
        self.log = GatewayLog(
            self.store,
            d / "tree",
            self.signer,
            ledger=self.ledger,
            checkpoint_interval=3600,
            checkpoint_leaves=10**9,
        )
        self.registry = Registry({REGISTRY: self.registry_key.public_key()}, self.store.devices())
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
        place: str | None = "room-1",
        key: bytes | None = None,
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
            role=1,
            org="acme",
            state=state,
            place=place,
        )
        raw = make_record(reg, REGISTRY, self.registry_key)
        # Keep the registry chain in the store's view: the outbox is where it lives.
        self._outbox[raw] = self.store.outbox_add(REGISTRY, seq, raw)
        return raw

    def register(self, *devs: SimDevice) -> None:
        for dev in devs:
            dev.ack_key = bytes(range(32))
            self.store.set_ack_key(dev.id, dev.ack_key)
            self.send(self.registration(dev))
        self.ingestor.ack_keys = self.store.ack_keys()


def rec(dev: SimDevice, raw: bytes) -> tuple[str, bytes]:
    return (f"ct/v1/{dev.id}/rec", raw)
