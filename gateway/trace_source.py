"""The gateway's log as a :class:`protocol.assemble.Source`, and its registry's authorities.

``coldtrace gateway trace`` plans with :func:`protocol.assemble.plan` (the one
copy of the choosing logic, also used by the cloud over several logs) from
:class:`StoreSource`: the store's records below leaf ``upto`` (an anchored
checkpoint's size, so everything chosen can be proven), as entries of the
log ``origin``. :func:`gateway_authorities` answers who speaks for a place or
a GTIN as the gateway always has: its own registry for the places of
``[registry] places``, and for a GTIN the most specific ``gtins`` pattern of
``[registry]`` and ``[[registry.authorities]]``.
"""

from __future__ import annotations

from gateway.evidence.registry import Scopes
from gateway.evidence.store import SqlStore, StoredRecord
from protocol.assemble import Authorities, Entry, Loss

__all__ = ["StoreSource", "gateway_authorities"]


class StoreSource:
    """The gateway store's records of log ``origin`` with leaf < ``upto`` (None: all)."""

    name = "this gateway's log"

    def __init__(self, store: SqlStore, origin: str, upto: int | None = None) -> None:
        self.store, self.origin, self.upto = store, origin, upto

    def _entry(self, r: StoredRecord) -> Entry:
        return Entry(self.origin, r.leaf, r.raw, r.signer, r.seq, r.tq, r.time, r.kind)

    def _below(self, leaf: int) -> bool:
        return self.upto is None or leaf < self.upto

    def scans_of(self, *, uid: bytes | None = None, item: str | None = None) -> list[Entry]:
        return [self._entry(r) for r in self.store.scans_of(uid=uid, item=item, upto=self.upto)]

    def statements(self, kind: int, chain: str, signer: str) -> list[Entry]:
        rows = self.store.statement_records(kind, chain, signer, upto=self.upto)
        return [self._entry(r) for r in rows]

    def records_of(self, device: str, seq_lo: int, seq_hi: int) -> list[Entry]:
        rows = self.store.records_of(device, seq_lo, seq_hi, upto=self.upto)
        return [self._entry(r) for r in rows]

    def seq_window(self, device: str, t0: int, t1: int) -> tuple[int, int] | None:
        return self.store.seq_window(device, t0, t1, upto=self.upto)

    def declared_losses(self, device: str) -> list[Loss]:
        out = []
        for loss in self.store.declared_losses(device, limit=1_000_000):
            if self._below(loss.status_leaf):
                status = self.store.record(loss.status_leaf)
                if status is not None:
                    out.append(Loss(loss.seq_from, loss.seq_to, self._entry(status)))
        return out

    def registrations(self, device: str) -> list[Entry]:
        out = []
        for leaf, *_ in self.store.placements(device):
            if self._below(leaf):
                rec = self.store.record(leaf)
                if rec is not None:
                    out.append(self._entry(rec))
        return out


def gateway_authorities(registry: str, scopes: Scopes) -> Authorities:
    """The registry ``registry`` speaks for the places in its scope; a GTIN's authority
    is the registry or another of ``[[registry.authorities]]`` (§10)."""

    def place(p: str) -> str | None:
        return registry if scopes.matches("places", p) else None

    def gtin(g: str) -> str | None:
        owner = scopes.authority_for(g)
        return None if owner is None else (owner or registry)  # SELF ("") is the registry

    return Authorities(
        place,
        gtin,
        home=registry,
        no_place="{place} is outside this registry's places scope",
        no_gtin=(
            "GTIN {gtin} has no authority here (outside every gtins scope of "
            "[registry] and [[registry.authorities]])"
        ),
    )
