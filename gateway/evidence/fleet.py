"""A gateway fleet: several instances behind one broker, sharing their sequence checks.

Each instance of a fleet receives part of the devices' stream (an MQTT shared
subscription, ``[mqtt] share_group``) and keeps its own log: its own origin,
log key and store schema. What must be decided across the fleet is decided
in one PostgreSQL schema the instances share (``[fleet] shared_schema``),
inside each instance's batch transaction (docs/decisions.md D28):

- ``claims``: one row per device record (signer, seq) with its chain hash,
  boot, raw bytes, and the origin and leaf of the one log that holds it. Its
  primary key is the rule "stored exactly once, in exactly one log".
- ``signers``: per device the signer state of gateway/evidence/store.py
  (settled seq and its chain hash, highest seq), fleet-wide; and
  ``declared_lost``, the ranges a device's status records declared lost.
- ``ack_keys`` and ``outbox``: the per-device ack keys and the registry's
  signed records, so that a device registered on one instance is served by
  all and every log carries the registry records its devices need.

A batch locks its devices' ``signers`` rows (``SELECT ... FOR UPDATE`` in
signer order, so two instances never deadlock), reads their state afresh,
runs the usual stateful checks against it (a record stored by another
instance is a duplicate or a conflict here too; gaps and chain links see
the other logs' records), and commits its own tables, the claims and the
new states in the same transaction. Registry records (kinds 4-6) are not
claimed: every instance logs the ones it uses, so each log stands alone.
"""

from __future__ import annotations

from collections.abc import Iterable
from contextlib import suppress
from typing import Any

from sqlalchemy import URL, make_url
from sqlalchemy.exc import DBAPIError

from gateway.evidence.store import SignerState, SqlStore, StoredRecord, StoreError, WriteBatch

__all__ = ["FLEET_VERSION", "FleetStore"]

FLEET_VERSION = "1"  # the shared schema's layout (``<shared>.meta``)
_SETUP_LOCK = 0x436F6C6446  # pg_advisory_xact_lock key of the shared schema's setup: "ColdF"
_CLAIMED_KINDS = (1, 2, 3)  # device records; registry records (4-6) are logged per instance

_TABLES = """
CREATE TABLE IF NOT EXISTS {s}.meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS {s}.claims (
    signer TEXT NOT NULL,
    seq BIGINT NOT NULL,
    boot BIGINT NOT NULL,
    kind BIGINT NOT NULL,
    chash BYTEA NOT NULL,
    raw BYTEA NOT NULL,
    origin TEXT NOT NULL,
    leaf BIGINT NOT NULL,
    PRIMARY KEY (signer, seq)
);
CREATE TABLE IF NOT EXISTS {s}.signers (
    signer TEXT PRIMARY KEY,
    contig BIGINT NOT NULL,
    contig_hash BYTEA NOT NULL,
    max_seq BIGINT NOT NULL,
    max_hash BYTEA NOT NULL,
    max_boot BIGINT NOT NULL,
    count BIGINT NOT NULL,
    last_seen BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS {s}.declared_lost (
    signer TEXT NOT NULL,
    seq_from BIGINT NOT NULL,
    seq_to BIGINT NOT NULL,
    status_seq BIGINT NOT NULL,
    PRIMARY KEY (signer, status_seq)
);
CREATE TABLE IF NOT EXISTS {s}.ack_keys (device TEXT PRIMARY KEY, key BYTEA NOT NULL);
CREATE TABLE IF NOT EXISTS {s}.outbox (
    signer TEXT NOT NULL,
    seq BIGINT NOT NULL,
    raw BYTEA NOT NULL,
    created BIGINT NOT NULL,
    PRIMARY KEY (signer, seq)
)
"""


class FleetStore(SqlStore):
    """An instance's store (its own schema) plus the fleet's shared schema."""

    def __init__(
        self,
        url: URL | str,
        *,
        schema: str,
        shared_schema: str,
        origin: str,
        readonly: bool = False,
    ) -> None:
        if make_url(url).get_backend_name() != "postgresql":
            raise StoreError("a gateway fleet shares its checks through PostgreSQL only")
        if shared_schema == schema:
            raise StoreError("[fleet] shared_schema must differ from the instance's [store] schema")
        super().__init__(url, schema=schema, readonly=readonly)
        self.shared = shared_schema
        self.origin = origin
        self._in_batch = False
        self._locked: set[str] = set()
        self._seen: dict[tuple[str, int], StoredRecord] = {}  # claims read for this batch
        if not readonly:
            self._setup()

    def _setup(self) -> None:
        """Create the shared schema once (several instances may start together)."""
        s = self.shared
        with self._tx():
            self._exec("SELECT pg_advisory_xact_lock(?)", (_SETUP_LOCK,))
            self._conn.exec_driver_sql(f'CREATE SCHEMA IF NOT EXISTS "{s}"')
            for ddl in _TABLES.format(s=s).split(";\n"):
                self._conn.exec_driver_sql(ddl)
            row = self._one(f"SELECT value FROM {s}.meta WHERE key = 'version'")
            if row is None:
                self._exec(f"INSERT INTO {s}.meta VALUES ('version', ?)", (FLEET_VERSION,))
            elif row[0] != FLEET_VERSION:
                raise StoreError(
                    f"the fleet schema {s} has version {row[0]}, this gateway knows"
                    f" {FLEET_VERSION}: run one gateway version across the fleet"
                )
            if self.get_meta("fleet.joined") != s:
                self._join()
                self.set_meta("fleet.joined", s)

    def _join(self) -> None:
        """A gateway that ran alone before joining the fleet: claim the device
        records its log already holds and share their devices' states (only for
        devices the fleet does not know yet: a device that two gateways served
        before they joined is not merged)."""
        s = self.shared
        self._exec(
            f"INSERT INTO {s}.claims (signer, seq, boot, kind, chash, raw, origin, leaf)"
            " SELECT signer, seq, boot, kind, substring(sha256(raw) from 1 for 16), raw, ?, leaf"
            " FROM records WHERE kind IN (1, 2, 3) ON CONFLICT (signer, seq) DO NOTHING",
            (self.origin,),
        )
        self._exec(
            f"INSERT INTO {s}.signers (signer, contig, contig_hash, max_seq, max_hash, max_boot,"
            " count, last_seen) SELECT signer, contig, contig_hash, max_seq, max_hash, max_boot,"
            " count, last_seen FROM signer_state WHERE signer IN"
            " (SELECT signer FROM records WHERE kind IN (1, 2, 3))"
            " ON CONFLICT (signer) DO NOTHING"
        )
        self._exec(
            f"INSERT INTO {s}.declared_lost (signer, seq_from, seq_to, status_seq)"
            " SELECT signer, seq_from, seq_to, status_seq FROM declared_lost"
            " ON CONFLICT DO NOTHING"
        )
        self._exec(
            f"INSERT INTO {s}.ack_keys (device, key) SELECT device, key FROM ack_keys"
            " ON CONFLICT (device) DO NOTHING"
        )
        self._exec(
            f"INSERT INTO {s}.outbox (signer, seq, raw, created)"
            " SELECT signer, seq, raw, created FROM outbox ON CONFLICT DO NOTHING"
        )

    # --- the batch: lock, refresh, check, commit --------------------------------

    def begin_batch(self, signers: Iterable[str]) -> dict[str, SignerState]:
        """Open the batch's transaction, lock ``signers`` fleet-wide (in order) and
        return their current states; :meth:`commit` or :meth:`abort_batch` ends it."""
        names = sorted(set(signers))
        self._lock.acquire()
        try:
            self._conn.exec_driver_sql("BEGIN")
            self._in_batch = True
            self._locked = set(names)
            states = self._lock_states(names) if names else {}
        except BaseException:
            self.abort_batch()
            raise
        return states

    def _lock_states(self, names: list[str]) -> dict[str, SignerState]:
        s = self.shared
        self._insert(
            f"INSERT INTO {s}.signers (signer, contig, contig_hash, max_seq, max_hash,"
            " max_boot, count, last_seen)",
            8,
            [(n, -1, b"", -1, b"", 0, 0, 0) for n in names],
            " ON CONFLICT (signer) DO NOTHING",
        )
        rows = self._all(
            "SELECT signer, contig, contig_hash, max_seq, max_hash, max_boot, count, last_seen"
            f" FROM {s}.signers WHERE signer = ANY(?) ORDER BY signer FOR UPDATE",
            (names,),
        )
        lost: dict[str, list[tuple[int, int, int]]] = {}
        for signer, first, last, by in self._all(
            f"SELECT signer, seq_from, seq_to, status_seq FROM {s}.declared_lost"
            " WHERE signer = ANY(?) ORDER BY status_seq",
            (names,),
        ):
            lost.setdefault(signer, []).append((int(first), int(last), int(by)))
        out: dict[str, SignerState] = {}
        gapped: list[str] = []  # devices with stored seqs above their settled point
        for row in rows:
            st = SignerState(*row)
            st.contig_hash, st.max_hash = bytes(st.contig_hash), bytes(st.max_hash)
            st.lost = lost.get(st.signer, [])
            out[st.signer] = st
            if st.max_seq > st.contig:
                gapped.append(st.signer)
        if gapped:  # the records above a gap, kept for the batch's chain checks
            for signer, seq, boot, kind, raw in self._all(
                f"SELECT c.signer, c.seq, c.boot, c.kind, c.raw FROM {s}.claims c"
                f" JOIN {s}.signers g ON g.signer = c.signer"
                " WHERE c.signer = ANY(?) AND c.seq > g.contig",
                (gapped,),
            ):
                out[signer].above.add(int(seq))
                self._seen[(signer, int(seq))] = StoredRecord(
                    -1, signer, int(seq), int(boot), int(kind), 0, 0, 0, bytes(raw)
                )
        for st in out.values():
            if st.contig >= 0 and st.declared_by(st.contig) is not None:
                top = self._one(
                    f"SELECT max(seq) FROM {s}.claims WHERE signer = ? AND seq <= ?",
                    (st.signer, st.contig),
                )[0]
                head = -1 if top is None else int(top)
                st.head_below = None if head == st.contig else head
        return out

    def commit(self, batch: WriteBatch) -> None:
        """Inside a batch: write this instance's tables, the claims and the fleet's
        signer states, and commit them together. Outside: as :class:`SqlStore`."""
        if not self._in_batch:
            super().commit(batch)
            return
        from protocol.record import chain_hash

        s = self.shared
        try:
            if batch:
                self._write(batch)
            claims = [
                (r.signer, r.seq, r.boot, r.kind, chain_hash(r.raw), r.raw, self.origin, r.leaf)
                for r in batch.records
                if r.kind in _CLAIMED_KINDS
            ]
            if claims:  # a claim already taken raises: the whole batch is undone
                self._append(
                    f"{s}.claims",
                    ("signer", "seq", "boot", "kind", "chash", "raw", "origin", "leaf"),
                    claims,
                )
            states = {st.signer: st for st in batch.states if st.signer in self._locked}
            if states:
                self._insert(
                    f"INSERT INTO {s}.signers (signer, contig, contig_hash, max_seq, max_hash,"
                    " max_boot, count, last_seen)",
                    8,
                    [
                        (
                            st.signer,
                            st.contig,
                            st.contig_hash,
                            st.max_seq,
                            st.max_hash,
                            st.max_boot,
                            st.count,
                            st.last_seen,
                        )
                        for st in states.values()
                    ],
                    " ON CONFLICT (signer) DO UPDATE SET contig = excluded.contig,"
                    " contig_hash = excluded.contig_hash, max_seq = excluded.max_seq,"
                    " max_hash = excluded.max_hash, max_boot = excluded.max_boot,"
                    " count = excluded.count, last_seen = excluded.last_seen",
                )
            losses = [x for x in batch.losses if x.signer in self._locked]
            if losses:
                self._driver(
                    f"INSERT INTO {s}.declared_lost (signer, seq_from, seq_to, status_seq)"
                    " VALUES (?,?,?,?) ON CONFLICT DO NOTHING",
                    [(x.signer, x.seq_from, x.seq_to, x.status_seq) for x in losses],
                )
            self._conn.exec_driver_sql("COMMIT")
        except BaseException:
            self.abort_batch()
            raise
        self._end_batch()

    def abort_batch(self) -> None:
        """Roll the batch's transaction back (nothing of it is stored or claimed)."""
        if not self._in_batch:
            return
        with suppress(DBAPIError):
            self._conn.exec_driver_sql("ROLLBACK")
        self._end_batch()

    def _end_batch(self) -> None:
        self._in_batch = False
        self._locked = set()
        self._seen = {}
        self._lock.release()

    # --- what the checks read: the fleet's records ---------------------------------

    def record_by_seq(self, signer: str, seq: int) -> StoredRecord | None:
        """This log's record (signer, seq), else the one another instance logged
        (``leaf`` -1: not in this log)."""
        rec = self._seen.get((signer, seq)) or super().record_by_seq(signer, seq)
        if rec is not None:
            return rec
        row = self._one(
            f"SELECT boot, kind, raw FROM {self.shared}.claims WHERE signer = ? AND seq = ?",
            (signer, seq),
        )
        if row is None:
            return None
        return StoredRecord(-1, signer, seq, int(row[0]), int(row[1]), 0, 0, 0, bytes(row[2]))

    def claims_of(self, origin: str | None = None) -> list[tuple[str, int, str, int]]:
        """(signer, seq, origin, leaf) of every claimed record (of one log), for reports."""
        sql = f"SELECT signer, seq, origin, leaf FROM {self.shared}.claims"
        args: tuple[Any, ...] = ()
        if origin is not None:
            sql += " WHERE origin = ?"
            args = (origin,)
        return [(r[0], int(r[1]), r[2], int(r[3])) for r in self._all(sql + " ORDER BY 1, 2", args)]

    # --- shared registry state: ack keys, signed registry records --------------------

    def ack_keys(self) -> dict[str, bytes]:
        keys = super().ack_keys()
        keys.update(
            {d: bytes(k) for d, k in self._all(f"SELECT device, key FROM {self.shared}.ack_keys")}
        )
        return keys

    def set_ack_key(self, device: str, key: bytes) -> None:
        with self._lock:
            super().set_ack_key(device, key)
            self._exec(
                self._upsert(f"{self.shared}.ack_keys", ("device", "key"), ("device",)),
                (device, key),
            )

    def outbox_add(self, signer: str, seq: int, raw: bytes) -> int:
        with self._lock:
            self._exec(
                f"INSERT INTO {self.shared}.outbox (signer, seq, raw, created)"
                " VALUES (?,?,?,?) ON CONFLICT DO NOTHING",
                (signer, seq, raw, 0),
            )
            return super().outbox_add(signer, seq, raw)

    def outbox_pending(self) -> list[tuple[int, bytes]]:
        """Registry records any instance signed and this one has not logged yet."""
        with self._lock:
            self._exec(
                "INSERT INTO outbox (signer, seq, raw, created) SELECT signer, seq, raw, created"
                f" FROM {self.shared}.outbox ON CONFLICT (signer, seq) DO NOTHING"
            )
            return super().outbox_pending()

    def last_signed(self, signer: str) -> tuple[int, bytes] | None:
        """The registry's highest seq across the fleet (signing holds a database-wide lock)."""
        mine = super().last_signed(signer)
        row = self._one(
            f"SELECT seq, raw FROM {self.shared}.outbox WHERE signer = ? ORDER BY seq DESC LIMIT 1",
            (signer,),
        )
        if row is None or (mine is not None and mine[0] >= int(row[0])):
            return mine
        return int(row[0]), bytes(row[1])
