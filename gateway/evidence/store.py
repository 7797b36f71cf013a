"""Durable storage of the gateway: the ``Store`` interface and its SQLite backend.

What is kept:

- **records**: every accepted record, keyed by its log leaf index (the order
  of the Merkle log is the order of this table), with signer, seq, boot,
  kind, time, tq, receive time and the exact bytes received;
- **quarantine**: every refused message, raw bytes with reason, detail,
  topic and time (identical refusals are counted, not stored twice);
- **signer state**: per device (and registry) the highest contiguous stored
  seq and its chain hash, the highest seq seen, and counts;
- **chain events**: gaps (and when they were filled), chain breaks, and
  seqs a device declared lost (docs/protocol.md §5.2 "Declared losses");
- **declared losses**: per device the seq ranges its signed status records
  (event 11 with ``lost``) declared lost for good, with the declaring
  record's seq and leaf: the ack counts them as settled, so they are part
  of the signer state and survive a restart;
- **devices**: the registry as the registration records left it (key, role,
  org, calibration, state, the leaves that registered and revoked it), the
  registration history (``placements``: each registration's leaf; the
  ``place`` column is from protocol version 1 and stays empty), and the
  secret per-device ack keys;
- **scans**: the tag UID, action and item of every logged scan, so that an
  item's trace finds its scans by tag or by Digital Link without reading
  every record;
- **statements**: every logged binding (kind 5) and profile (kind 6) with
  its statement chain (docs/protocol.md §4.2), position (``cseq``), effective
  time, chain hash and, for a binding, its devices: what ingest checks the
  next statement of a chain against, and what the trace command walks;
- **checkpoints** and **anchors** (receipts from the ledger);
- a **registry outbox**: signed registry records (registrations, bindings,
  profiles) waiting for the running gateway to log them; and small **meta**
  values (counters, live status, the schema version);
- **alerts** and the **audit** log (schema version 4): every alert the
  gateway raised (its latest event, when it ended, who acknowledged it with
  what comment, when it was escalated) and the operator's actions on them
  (acknowledge, escalate), append-only, for the dashboard (gateway/dashboard.py).

**Schema versions.** ``meta.schema`` holds the version a database was made
or last migrated to. Opening a database applies ``_SCHEMA`` (tables that do
not exist yet) and then every step of ``_MIGRATIONS`` above the stored
version, in order, in one transaction, and records the new version.

Ingest writes through :meth:`Store.commit`, one transaction per batch
(SQLite: WAL, ``synchronous=FULL``, so a returned commit survives power
loss). Nothing in ``gateway.evidence.ingest`` knows SQL: a PostgreSQL backend
implements the same methods. Records and checkpoints are append-only; the
SQLite backend enforces it with triggers.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from gateway.evidence.diskfull import limit_growth

__all__ = [
    "Anchor",
    "ChainEvent",
    "CheckpointRow",
    "DeclaredLoss",
    "DeviceRow",
    "DroppedRow",
    "RejectRow",
    "SQLiteStore",
    "SignerState",
    "StatementRow",
    "Store",
    "StoredRecord",
    "WriteBatch",
    "open_store",
]


@dataclass(slots=True)
class StoredRecord:
    leaf: int
    signer: str
    seq: int
    boot: int
    kind: int
    time: int
    tq: int
    received: int
    raw: bytes


@dataclass(slots=True)
class RejectRow:
    received: int
    topic: str
    reason: str
    detail: str
    raw: bytes
    signer: str | None = None
    seq: int | None = None
    id: int | None = None
    count: int = 1
    last_seen: int | None = None
    size: int | None = None  # the full message's length when raw was cut to keep_bytes
    digest: bytes | None = None  # SHA-256 of the full message (None: of raw)

    @property
    def truncated(self) -> bool:
        """Whether only the first bytes of the message are kept."""
        return self.size is not None and self.size > len(self.raw)


@dataclass(slots=True)
class DroppedRow:
    """Refused messages that were counted, not stored (docs/decisions.md D29).

    ``cause``: ``rate`` (over the device's rate limit), ``full`` (the quarantine
    was at its cap) or ``purged`` (deleted by ``rejects --purge``). One row per
    (cause, reason, topic device) with the count, the bytes, first and last
    seen, and ``digest``: the running SHA-256 chain over the messages in the
    order they were dropped, ``d = SHA-256(d || SHA-256(message))`` from 32
    zero bytes. In a :class:`WriteBatch`, ``digests`` lists the SHA-256 of each
    message to fold in, in order; the store folds them into the stored chain.
    """

    cause: str
    reason: str
    device: str
    count: int
    bytes: int
    first_seen: int
    last_seen: int
    digest: bytes = b""
    digests: list[bytes] = field(default_factory=list)


@dataclass(slots=True)
class SignerState:
    """What the gateway knows of one signer's sequence (docs/protocol.md §4, §5.2).

    ``contig`` is the settled point: every seq 0..contig is stored or declared
    lost. The ack names ``ack_seq``, the highest *stored* seq at or below it
    (the two differ only while the settled point is a declared-lost seq),
    with ``contig_hash``, the chain hash of that record.
    """

    signer: str
    contig: int = -1  # every seq 0..contig is stored or declared lost (-1: not seq 0)
    contig_hash: bytes = b""  # chain hash of record ``ack_seq`` (the ack's head)
    max_seq: int = -1
    max_hash: bytes = b""
    max_boot: int = 0
    count: int = 0
    last_seen: int = 0
    above: set[int] = field(default_factory=set)  # stored seqs > contig (not persisted)
    # Declared-lost ranges (first, last, seq of the declaring status record),
    # from the ``declared_lost`` table, not from ``signer_state``.
    lost: list[tuple[int, int, int]] = field(default_factory=list)
    # When ``contig`` is a declared-lost seq: the highest stored seq below it
    # (-1: none), which the ack names instead. None: ``contig`` itself is stored.
    head_below: int | None = None

    @property
    def ack_seq(self) -> int:
        """The seq the ack names: the highest stored seq at or below ``contig``."""
        return self.contig if self.head_below is None else self.head_below

    def declared_by(self, seq: int) -> int | None:
        """The seq of the status record that declared ``seq`` lost, or None."""
        for first, last, by in self.lost:
            if first <= seq <= last:
                return by
        return None

    def lost_end(self, seq: int) -> int | None:
        """The highest seq of the declared-lost ranges that contain ``seq``, or None."""
        end = None
        for first, last, _by in self.lost:
            if first <= seq <= last and (end is None or last > end):
                end = last
        return end


@dataclass(slots=True)
class ChainEvent:
    signer: str
    kind: str  # "gap", "gap_filled", "break", "conflict", "replayed_seq", "boot_regressed",
    # "declared_lost" (a status record declared seq_from..seq_to lost), "lost_arrived"
    # (a record under a declared-lost seq arrived after all and was stored)
    seq_from: int
    seq_to: int
    time: int
    detail: str = ""


@dataclass(slots=True)
class DeclaredLoss:
    """Seqs ``seq_from``..``seq_to`` of ``signer`` declared lost (§5.2) by its status
    record ``status_seq`` (event 11, detail = the count, lost = ``seq_from``)."""

    signer: str
    seq_from: int
    seq_to: int
    status_seq: int
    status_leaf: int
    time: int


@dataclass(slots=True)
class DeviceRow:
    id: str
    role: int
    key: bytes  # SEC1 uncompressed P-256
    org: str
    state: int  # 1 active, 2 revoked
    registry: str
    registered_leaf: int
    place: str | None = None
    cal: int | None = None
    revoked_leaf: int | None = None
    updated: int = 0


@dataclass(slots=True)
class StatementRow:
    """A logged binding or profile statement (docs/protocol.md §2.6, §2.7, §4.2).

    ``chain`` names the statement chain within (``signer``, ``kind``): the
    target of a binding; the GTIN of a GTIN-wide profile, or ``"{gtin} {lot}"``
    for a lot's profile (a lot holds no space). ``devices`` is a binding's
    field 51 (None: no device).
    """

    leaf: int
    signer: str
    kind: int  # 5 binding, 6 profile
    chain: str
    cseq: int
    time: int
    chash: bytes
    devices: str | None = None


@dataclass(slots=True)
class CheckpointRow:
    size: int
    root: bytes
    note: str
    time: int


@dataclass(slots=True)
class Anchor:
    size: int
    backend: str
    receipt: dict[str, Any]
    time: int


@dataclass
class WriteBatch:
    """Everything one ingest batch changes, committed in one transaction."""

    records: list[StoredRecord] = field(default_factory=list)
    rejects: list[RejectRow] = field(default_factory=list)
    states: list[SignerState] = field(default_factory=list)
    events: list[ChainEvent] = field(default_factory=list)
    losses: list[DeclaredLoss] = field(default_factory=list)
    devices: list[DeviceRow] = field(default_factory=list)
    placements: list[tuple[str, int, int, str | None, int | None]] = field(default_factory=list)
    statements: list[StatementRow] = field(default_factory=list)
    scans: list[tuple[int, bytes, int, str | None]] = field(default_factory=list)  # leaf, uid..
    outbox_done: list[int] = field(default_factory=list)
    presence: list[tuple[str, str, int]] = field(default_factory=list)
    counters: dict[str, int] = field(default_factory=dict)  # increments
    meta: dict[str, str] = field(default_factory=dict)
    dropped: list[DroppedRow] = field(default_factory=list)  # refusals counted, not stored
    release_done: list[int] = field(default_factory=list)  # ids of released messages handled

    def __bool__(self) -> bool:
        return bool(
            self.dropped
            or self.release_done
            or self.records
            or self.rejects
            or self.states
            or self.events
            or self.losses
            or self.devices
            or self.placements
            or self.statements
            or self.scans
            or self.outbox_done
            or self.presence
            or self.counters
            or self.meta
        )


class Store(Protocol):
    """The storage interface ingest, log, registry and proofs use."""

    def leaf_count(self) -> int: ...
    def commit(self, batch: WriteBatch) -> None: ...
    def record(self, leaf: int) -> StoredRecord | None: ...
    def record_by_seq(self, signer: str, seq: int) -> StoredRecord | None: ...
    def records_of(
        self, signer: str, seq_from: int, seq_to: int, *, upto: int | None = None
    ) -> list[StoredRecord]: ...
    def scans_of(
        self, *, uid: bytes | None = None, item: str | None = None, upto: int | None = None
    ) -> list[StoredRecord]: ...
    def seq_window(
        self, signer: str, start: int, end: int, *, upto: int | None = None
    ) -> tuple[int, int] | None: ...
    def raw_between(self, start: int, end: int) -> Iterator[bytes]: ...
    def signer_states(self) -> dict[str, SignerState]: ...
    def devices(self) -> dict[str, DeviceRow]: ...
    def placements(self, device: str) -> list[tuple[int, int, str | None, int | None]]: ...
    def statements(
        self, *, kind: int | None = None, chain: str | None = None
    ) -> list[StatementRow]: ...
    def statement_records(
        self, kind: int, chain: str, signer: str, *, upto: int | None = None
    ) -> list[StoredRecord]: ...
    def statement_heads(self) -> list[StatementRow]: ...
    def ack_keys(self) -> dict[str, bytes]: ...
    def set_ack_key(self, device: str, key: bytes) -> None: ...
    def outbox_add(self, signer: str, seq: int, raw: bytes) -> int: ...
    def outbox_pending(self) -> list[tuple[int, bytes]]: ...
    def outbox_entry(self, signer: str, seq: int) -> tuple[bytes, bool] | None: ...
    def outbox_requeue(self, signer: str, seq: int) -> None: ...
    def last_signed(self, signer: str) -> tuple[int, bytes] | None: ...
    def add_checkpoint(self, cp: CheckpointRow) -> None: ...
    def replace_checkpoint_note(self, size: int, note: str) -> bool: ...
    def checkpoints(self) -> list[CheckpointRow]: ...
    def latest_checkpoint(self) -> CheckpointRow | None: ...
    def checkpoint_at(self, size: int) -> CheckpointRow | None: ...
    def add_anchor(self, anchor: Anchor) -> None: ...
    def anchors(self) -> list[Anchor]: ...
    def latest_anchor(self) -> Anchor | None: ...
    def rejects(self, *, limit: int = 100, reason: str | None = None) -> list[RejectRow]: ...
    def reject_counts(self) -> dict[str, int]: ...
    def chain_events(self, signer: str | None = None, limit: int = 100) -> list[ChainEvent]: ...
    def declared_losses(
        self, signer: str | None = None, limit: int = 100
    ) -> list[DeclaredLoss]: ...
    def presence(self) -> dict[str, tuple[str, int]]: ...
    def counters(self) -> dict[str, int]: ...
    def get_meta(self, key: str) -> str | None: ...
    def set_meta(self, key: str, value: str) -> None: ...
    def close(self) -> None: ...


_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS records (
    leaf INTEGER PRIMARY KEY,
    signer TEXT NOT NULL,
    seq INTEGER NOT NULL,
    boot INTEGER NOT NULL,
    kind INTEGER NOT NULL,
    time INTEGER NOT NULL,
    tq INTEGER NOT NULL,
    received INTEGER NOT NULL,
    raw BLOB NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS records_by_seq ON records (signer, seq);
CREATE TRIGGER IF NOT EXISTS records_no_update BEFORE UPDATE ON records
    BEGIN SELECT RAISE(ABORT, 'records are append-only'); END;
CREATE TRIGGER IF NOT EXISTS records_no_delete BEFORE DELETE ON records
    BEGIN SELECT RAISE(ABORT, 'records are append-only'); END;
CREATE TABLE IF NOT EXISTS quarantine (
    id INTEGER PRIMARY KEY,
    received INTEGER NOT NULL,
    last_seen INTEGER NOT NULL,
    count INTEGER NOT NULL DEFAULT 1,
    topic TEXT NOT NULL,
    signer TEXT,
    seq INTEGER,
    reason TEXT NOT NULL,
    detail TEXT NOT NULL,
    digest BLOB NOT NULL,
    raw BLOB NOT NULL,
    size INTEGER,
    UNIQUE (digest, reason)
);
CREATE INDEX IF NOT EXISTS quarantine_by_reason ON quarantine (reason);
CREATE TABLE IF NOT EXISTS signer_state (
    signer TEXT PRIMARY KEY,
    contig INTEGER NOT NULL,
    contig_hash BLOB NOT NULL,
    max_seq INTEGER NOT NULL,
    max_hash BLOB NOT NULL,
    max_boot INTEGER NOT NULL,
    count INTEGER NOT NULL,
    last_seen INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS chain_events (
    id INTEGER PRIMARY KEY,
    signer TEXT NOT NULL,
    kind TEXT NOT NULL,
    seq_from INTEGER NOT NULL,
    seq_to INTEGER NOT NULL,
    time INTEGER NOT NULL,
    detail TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS chain_events_by_signer ON chain_events (signer);
CREATE TABLE IF NOT EXISTS declared_lost (
    signer TEXT NOT NULL,
    seq_from INTEGER NOT NULL,
    seq_to INTEGER NOT NULL,
    status_seq INTEGER NOT NULL,
    status_leaf INTEGER NOT NULL,
    time INTEGER NOT NULL,
    PRIMARY KEY (signer, status_seq)
);
CREATE TABLE IF NOT EXISTS devices (
    id TEXT PRIMARY KEY,
    role INTEGER NOT NULL,
    key BLOB NOT NULL,
    org TEXT NOT NULL,
    state INTEGER NOT NULL,
    registry TEXT NOT NULL,
    registered_leaf INTEGER NOT NULL,
    place TEXT,
    cal INTEGER,
    revoked_leaf INTEGER,
    updated INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS placements (
    device TEXT NOT NULL,
    leaf INTEGER NOT NULL,
    time INTEGER NOT NULL,
    place TEXT,
    cal INTEGER,
    PRIMARY KEY (device, leaf)
);
CREATE TABLE IF NOT EXISTS statements (
    leaf INTEGER PRIMARY KEY,
    signer TEXT NOT NULL,
    kind INTEGER NOT NULL,
    chain TEXT NOT NULL,
    cseq INTEGER NOT NULL,
    time INTEGER NOT NULL,
    chash BLOB NOT NULL,
    devices TEXT,
    UNIQUE (signer, kind, chain, cseq)
);
CREATE TABLE IF NOT EXISTS scans (
    leaf INTEGER PRIMARY KEY,
    uid BLOB NOT NULL,
    action INTEGER NOT NULL,
    item TEXT
);
CREATE INDEX IF NOT EXISTS scans_by_uid ON scans (uid);
CREATE INDEX IF NOT EXISTS scans_by_item ON scans (item) WHERE item IS NOT NULL;
CREATE TABLE IF NOT EXISTS ack_keys (device TEXT PRIMARY KEY, key BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY,
    signer TEXT NOT NULL,
    seq INTEGER NOT NULL,
    raw BLOB NOT NULL,
    created INTEGER NOT NULL,
    done INTEGER NOT NULL DEFAULT 0,
    UNIQUE (signer, seq)
);
CREATE TABLE IF NOT EXISTS checkpoints (
    size INTEGER PRIMARY KEY,
    root BLOB NOT NULL,
    note TEXT NOT NULL,
    time INTEGER NOT NULL
);
CREATE TRIGGER IF NOT EXISTS checkpoints_no_update BEFORE UPDATE ON checkpoints
    WHEN NEW.size IS NOT OLD.size OR NEW.root IS NOT OLD.root OR NEW.time IS NOT OLD.time
        OR substr(NEW.note, 1, instr(NEW.note, char(10) || char(10)))
        IS NOT substr(OLD.note, 1, instr(OLD.note, char(10) || char(10)))
    BEGIN SELECT RAISE(ABORT, 'checkpoints are append-only (notes may gain cosignatures)'); END;
CREATE TRIGGER IF NOT EXISTS checkpoints_no_delete BEFORE DELETE ON checkpoints
    BEGIN SELECT RAISE(ABORT, 'checkpoints are append-only'); END;
CREATE TABLE IF NOT EXISTS anchors (
    id INTEGER PRIMARY KEY,
    size INTEGER NOT NULL,
    backend TEXT NOT NULL,
    receipt TEXT NOT NULL,
    time INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS presence (
    device TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    since INTEGER NOT NULL
);
"""

# Version 4: alerts as the gateway raised them, and the operator's audit log.
_SCHEMA_ALERTS = """
CREATE TABLE IF NOT EXISTS alerts (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    device TEXT NOT NULL,
    place TEXT,
    start INTEGER NOT NULL,
    ended INTEGER,
    raised INTEGER NOT NULL,
    updated INTEGER NOT NULL,
    event TEXT NOT NULL,
    acked INTEGER,
    acked_by TEXT,
    comment TEXT,
    escalated INTEGER
);
CREATE INDEX IF NOT EXISTS alerts_by_raised ON alerts (raised);
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY,
    time INTEGER NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT NOT NULL,
    comment TEXT NOT NULL DEFAULT '',
    detail TEXT NOT NULL DEFAULT '{}'
);
CREATE TRIGGER IF NOT EXISTS audit_no_update BEFORE UPDATE ON audit
    BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_no_delete BEFORE DELETE ON audit
    BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
"""
_SCHEMA += _SCHEMA_ALERTS

# Version 5: the quarantine's caps (docs/decisions.md D29). ``quarantine.size`` is
# the full length of a message whose ``raw`` was cut to ``keep_bytes`` (NULL:
# raw is whole; ``digest`` is always the SHA-256 of the full message);
# ``quarantine_dropped`` counts what was not stored (DroppedRow); ``released``
# holds quarantined messages an operator sent back to ingest (``rejects --release``).
_SCHEMA_QUARANTINE = """
CREATE TABLE IF NOT EXISTS quarantine_dropped (
    cause TEXT NOT NULL,
    reason TEXT NOT NULL,
    device TEXT NOT NULL,
    count INTEGER NOT NULL,
    bytes INTEGER NOT NULL,
    first_seen INTEGER NOT NULL,
    last_seen INTEGER NOT NULL,
    digest BLOB NOT NULL,
    PRIMARY KEY (cause, reason, device)
);
CREATE TABLE IF NOT EXISTS released (
    id INTEGER PRIMARY KEY,
    topic TEXT NOT NULL,
    raw BLOB NOT NULL,
    reason TEXT NOT NULL,
    created INTEGER NOT NULL,
    done INTEGER NOT NULL DEFAULT 0
);
"""
_SCHEMA += _SCHEMA_QUARANTINE

SCHEMA_VERSION = "5"


def _index_scans(db: sqlite3.Connection) -> None:
    """Version 2: the tables ``statements`` and ``scans`` (made by _SCHEMA) and the
    scans of the records already stored. Version-1 registrations carried a
    place (field 44), which version 2 refuses; the column is emptied (where a
    device watches is a binding now). Nothing was deployed with version 1."""
    from protocol.cose import parse_sign1
    from protocol.errors import VerificationError
    from protocol.record import Scan, decode_payload

    db.execute("UPDATE devices SET place = NULL")
    for leaf, raw in db.execute("SELECT leaf, raw FROM records WHERE kind = 2").fetchall():
        try:
            p = decode_payload(parse_sign1(bytes(raw)).payload)
        except VerificationError:
            continue
        if isinstance(p, Scan):
            db.execute(
                "INSERT OR IGNORE INTO scans VALUES (?,?,?,?)", (leaf, p.uid, p.action, p.item)
            )


def _cosignable_checkpoints(db: sqlite3.Connection) -> None:
    """Version 3: a stored checkpoint note may gain witness cosignature lines (the cloud's,
    peers', gateway/push.py) - same size, root, time and note body; nothing else changes."""
    db.execute("DROP TRIGGER IF EXISTS checkpoints_no_update")
    start = _SCHEMA.index("CREATE TRIGGER IF NOT EXISTS checkpoints_no_update")
    end = _SCHEMA.index("CREATE TRIGGER IF NOT EXISTS checkpoints_no_delete")
    db.execute(_SCHEMA[start:end])


def _alerts_and_audit(db: sqlite3.Connection) -> None:
    """Version 4: the tables ``alerts`` and ``audit`` (the dashboard's acknowledgements
    and escalations). _SCHEMA makes them on open; the step makes sure, in the
    migration's transaction. Nothing older changes."""
    for statement in _SCHEMA_ALERTS.split(";\n"):
        if statement.strip():
            db.execute(statement)  # a trigger's "...; END" keeps its inner semicolon


def _quarantine_caps(db: sqlite3.Connection) -> None:
    """Version 5: ``quarantine.size`` and the tables ``quarantine_dropped`` and
    ``released`` (the quarantine's caps, purge and release). Stored rows keep
    their bytes (size NULL: whole)."""
    columns = {row[1] for row in db.execute("PRAGMA table_info(quarantine)")}
    if "size" not in columns:
        db.execute("ALTER TABLE quarantine ADD COLUMN size INTEGER")
    for statement in _SCHEMA_QUARANTINE.split(";\n"):
        if statement.strip():
            db.execute(statement)


# Steps from one schema version to the next: (version reached, step).
_MIGRATIONS: list[tuple[str, Callable[[sqlite3.Connection], None]]] = [
    ("2", _index_scans),
    ("3", _cosignable_checkpoints),
    ("4", _alerts_and_audit),
    ("5", _quarantine_caps),
]


class SQLiteStore:
    """The embedded backend: one SQLite file in WAL mode.

    One connection, guarded by a lock, serves the gateway's threads; other
    processes (the CLI, ``status``) open their own. ``synchronous=FULL``
    makes every committed batch durable before ``commit`` returns.
    """

    def __init__(self, path: str | Path, *, readonly: bool = False) -> None:
        self.path = Path(path)
        self._lock = threading.RLock()
        if readonly:
            uri = f"file:{self.path}?mode=ro"
            self._db = sqlite3.connect(
                uri, uri=True, isolation_level=None, check_same_thread=False, timeout=10
            )
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(
                self.path, isolation_level=None, check_same_thread=False, timeout=30
            )
        db = self._db
        self._max_vars = db.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
        self._sql_cache: dict[tuple[str, int], str] = {}
        db.execute("PRAGMA busy_timeout = 30000")
        if not readonly:
            db.execute("PRAGMA journal_mode = WAL")
            db.execute("PRAGMA synchronous = FULL")
            db.execute("PRAGMA cache_size = -65536")
            limit_growth(db, self.path)  # a test hook (gateway/evidence/diskfull.py)
            db.executescript(_SCHEMA)
            self._migrate(db)

    def _migrate(self, db: sqlite3.Connection) -> None:
        """Bring the schema to ``SCHEMA_VERSION`` (see the module docstring)."""
        row = db.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
        if row is None:  # a new database: made at the current version
            db.execute("INSERT INTO meta (key, value) VALUES ('schema', ?)", (SCHEMA_VERSION,))
            return
        have = int(row[0])
        if have > int(SCHEMA_VERSION):
            raise RuntimeError(
                f"{self.path}: schema version {have} is newer than this gateway's "
                f"({SCHEMA_VERSION}); upgrade the gateway"
            )
        steps = [(v, sql) for v, sql in _MIGRATIONS if int(v) > have]
        if not steps:
            return
        db.execute("BEGIN IMMEDIATE")
        try:
            for version, step in steps:
                step(db)
                db.execute("UPDATE meta SET value = ? WHERE key = 'schema'", (version,))
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    # --- batches ------------------------------------------------------------

    def commit(self, batch: WriteBatch) -> None:
        """Write ``batch`` in one durable transaction (all or nothing)."""
        if not batch:
            return
        with self._lock:
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                self._write(db, batch)
            except BaseException:
                if db.in_transaction:  # SQLITE_FULL may have rolled it back already
                    db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    def _insert(self, db: sqlite3.Connection, head: str, ncols: int, rows: list[Any]) -> None:
        """Insert ``rows`` with multi-row ``VALUES`` statements, a few hundred rows each.

        ``executemany`` runs one ``sqlite3_step`` per row and CPython's sqlite3
        releases and re-takes the GIL around each step; with the signature
        threads busy that costs a GIL hand-over per row (measured: 2.5-3x the
        wall time of the insert). One statement per chunk hands it over once.
        """
        per = max(1, min(500, self._max_vars // ncols))
        one = "(" + ",".join("?" * ncols) + ")"
        for i in range(0, len(rows), per):
            part = rows[i : i + per]
            sql = self._sql_cache.get((head, len(part)))
            if sql is None:
                sql = head + " VALUES " + ",".join([one] * len(part))
                self._sql_cache[(head, len(part))] = sql
            db.execute(sql, [v for row in part for v in row])

    def _write(self, db: sqlite3.Connection, b: WriteBatch) -> None:
        if b.records:
            self._insert(
                db,
                "INSERT INTO records",
                9,
                [
                    (r.leaf, r.signer, r.seq, r.boot, r.kind, r.time, r.tq, r.received, r.raw)
                    for r in b.records
                ],
            )
        if b.rejects:
            from hashlib import sha256

            db.executemany(
                "INSERT INTO quarantine (received, last_seen, topic, signer, seq, reason, detail,"
                " digest, raw, size) VALUES (?,?,?,?,?,?,?,?,?,?) ON CONFLICT (digest, reason)"
                " DO UPDATE SET count = count + 1, last_seen = excluded.last_seen",
                [
                    (
                        r.received,
                        r.received,
                        r.topic,
                        r.signer,
                        r.seq,
                        r.reason,
                        r.detail[:500],
                        r.digest or sha256(r.raw).digest(),
                        r.raw,
                        r.size if r.truncated else None,
                    )
                    for r in b.rejects
                ],
            )
        if b.dropped:
            self._write_dropped(db, b.dropped)
        if b.release_done:
            db.executemany(
                "UPDATE released SET done = 1 WHERE id = ?", [(i,) for i in b.release_done]
            )
        if b.states:
            self._insert(
                db,
                "INSERT OR REPLACE INTO signer_state",
                8,
                [
                    (
                        s.signer,
                        s.contig,
                        s.contig_hash,
                        s.max_seq,
                        s.max_hash,
                        s.max_boot,
                        s.count,
                        s.last_seen,
                    )
                    for s in b.states
                ],
            )
        if b.events:
            db.executemany(
                "INSERT INTO chain_events (signer, kind, seq_from, seq_to, time, detail)"
                " VALUES (?,?,?,?,?,?)",
                [(e.signer, e.kind, e.seq_from, e.seq_to, e.time, e.detail) for e in b.events],
            )
        if b.losses:
            db.executemany(
                "INSERT INTO declared_lost (signer, seq_from, seq_to, status_seq, status_leaf,"
                " time) VALUES (?,?,?,?,?,?)",
                [
                    (x.signer, x.seq_from, x.seq_to, x.status_seq, x.status_leaf, x.time)
                    for x in b.losses
                ],
            )
        if b.devices:
            db.executemany(
                "INSERT OR REPLACE INTO devices VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                [
                    (
                        d.id,
                        d.role,
                        d.key,
                        d.org,
                        d.state,
                        d.registry,
                        d.registered_leaf,
                        d.place,
                        d.cal,
                        d.revoked_leaf,
                        d.updated,
                    )
                    for d in b.devices
                ],
            )
        if b.placements:
            db.executemany("INSERT OR IGNORE INTO placements VALUES (?,?,?,?,?)", b.placements)
        if b.statements:
            db.executemany(
                "INSERT INTO statements VALUES (?,?,?,?,?,?,?,?)",
                [
                    (x.leaf, x.signer, x.kind, x.chain, x.cseq, x.time, x.chash, x.devices)
                    for x in b.statements
                ],
            )
        if b.scans:
            db.executemany("INSERT INTO scans VALUES (?,?,?,?)", b.scans)
        if b.outbox_done:
            db.executemany("UPDATE outbox SET done = 1 WHERE id = ?", [(i,) for i in b.outbox_done])
        if b.presence:
            db.executemany("INSERT OR REPLACE INTO presence VALUES (?,?,?)", b.presence)
        if b.counters:
            db.executemany(
                "INSERT INTO counters VALUES (?, ?) ON CONFLICT (name) DO UPDATE"
                " SET value = value + excluded.value",
                list(b.counters.items()),
            )
        if b.meta:
            db.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)", list(b.meta.items()))

    # --- records --------------------------------------------------------------

    def _one(self, sql: str, args: Iterable[Any] = ()) -> Any:
        with self._lock:
            return self._db.execute(sql, tuple(args)).fetchone()

    def _all(self, sql: str, args: Iterable[Any] = ()) -> list[Any]:
        with self._lock:
            return self._db.execute(sql, tuple(args)).fetchall()

    def leaf_count(self) -> int:
        row = self._one("SELECT max(leaf) FROM records")
        return 0 if row[0] is None else int(row[0]) + 1

    def record(self, leaf: int) -> StoredRecord | None:
        row = self._one("SELECT * FROM records WHERE leaf = ?", (leaf,))
        return None if row is None else StoredRecord(*row)

    def record_by_seq(self, signer: str, seq: int) -> StoredRecord | None:
        row = self._one("SELECT * FROM records WHERE signer = ? AND seq = ?", (signer, seq))
        return None if row is None else StoredRecord(*row)

    def records_of(
        self, signer: str, seq_from: int, seq_to: int, *, upto: int | None = None
    ) -> list[StoredRecord]:
        """``signer``'s stored records with seq in [seq_from, seq_to] (leaf < ``upto``)."""
        rows = self._all(
            "SELECT * FROM records WHERE signer = ? AND seq BETWEEN ? AND ? AND leaf < ?"
            " ORDER BY seq",
            (signer, seq_from, seq_to, _upto(upto)),
        )
        return [StoredRecord(*r) for r in rows]

    def scans_of(
        self, *, uid: bytes | None = None, item: str | None = None, upto: int | None = None
    ) -> list[StoredRecord]:
        """Stored scan records of tag ``uid``, or commission scans naming ``item``
        (leaf < ``upto``), in log order."""
        if (uid is None) == (item is None):
            raise ValueError("give uid or item")
        where, arg = ("s.uid = ?", uid) if uid is not None else ("s.item = ?", item)
        rows = self._all(
            "SELECT r.* FROM scans s JOIN records r ON r.leaf = s.leaf"
            f" WHERE {where} AND s.leaf < ? ORDER BY s.leaf",
            (arg, _upto(upto)),
        )
        return [StoredRecord(*r) for r in rows]

    def seq_window(
        self, signer: str, start: int, end: int, *, upto: int | None = None
    ) -> tuple[int, int] | None:
        """Seqs (lo, hi) of ``signer`` around the time [start, end], from set clocks only:
        lo is the highest seq with tq >= 1 and time <= start (else the lowest seq),
        hi the lowest seq >= lo with tq >= 1 and time >= end (else the highest seq).
        None when the signer has no records."""
        top = _upto(upto)
        first, last = self._one(
            "SELECT min(seq), max(seq) FROM records WHERE signer = ? AND leaf < ?", (signer, top)
        )
        if first is None:
            return None
        lo = self._one(
            "SELECT max(seq) FROM records WHERE signer = ? AND tq >= 1 AND time <= ? AND leaf < ?",
            (signer, start, top),
        )[0]
        lo = first if lo is None else int(lo)
        hi = self._one(
            "SELECT min(seq) FROM records WHERE signer = ? AND seq >= ? AND tq >= 1"
            " AND time >= ? AND leaf < ?",
            (signer, lo, end, top),
        )[0]
        return lo, int(last) if hi is None else int(hi)

    def raw_between(self, start: int, end: int) -> Iterator[bytes]:
        """Raw bytes of leaves ``start <= leaf < end`` in leaf order (for the log)."""
        pos = start
        while pos < end:
            rows = self._all(
                "SELECT leaf, raw FROM records WHERE leaf >= ? AND leaf < ?"
                " ORDER BY leaf LIMIT 5000",
                (pos, end),
            )
            if not rows:
                raise RuntimeError(f"records table has no leaf {pos}")
            for leaf, raw in rows:
                if leaf != pos:
                    raise RuntimeError(f"records table lacks leaf {pos} (next is {leaf})")
                yield bytes(raw)
                pos += 1

    def signer_states(self) -> dict[str, SignerState]:
        lost: dict[str, list[tuple[int, int, int]]] = {}
        for signer, first, last, by in self._all(
            "SELECT signer, seq_from, seq_to, status_seq FROM declared_lost ORDER BY status_seq"
        ):
            lost.setdefault(signer, []).append((int(first), int(last), int(by)))
        out: dict[str, SignerState] = {}
        for row in self._all(
            "SELECT signer, contig, contig_hash, max_seq, max_hash, max_boot, count, last_seen"
            " FROM signer_state"
        ):
            st = SignerState(*row)
            st.contig_hash = bytes(st.contig_hash)
            st.max_hash = bytes(st.max_hash)
            if st.max_seq > st.contig:
                st.above = {
                    r[0]
                    for r in self._all(
                        "SELECT seq FROM records WHERE signer = ? AND seq > ?",
                        (st.signer, st.contig),
                    )
                }
            st.lost = lost.get(st.signer, [])
            if st.contig >= 0 and st.declared_by(st.contig) is not None:
                # The settled point may be a declared-lost seq: the ack names the
                # highest stored seq at or below it (contig_hash is that record's).
                top = self._one(
                    "SELECT max(seq) FROM records WHERE signer = ? AND seq <= ?",
                    (st.signer, st.contig),
                )[0]
                head = -1 if top is None else int(top)
                st.head_below = None if head == st.contig else head
            out[st.signer] = st
        return out

    # --- registry -------------------------------------------------------------

    def devices(self) -> dict[str, DeviceRow]:
        out = {}
        for row in self._all("SELECT * FROM devices"):
            d = DeviceRow(*row)
            d.key = bytes(d.key)
            out[d.id] = d
        return out

    def placements(self, device: str) -> list[tuple[int, int, str | None, int | None]]:
        return [
            tuple(r)  # type: ignore[misc]
            for r in self._all(
                "SELECT leaf, time, place, cal FROM placements WHERE device = ? ORDER BY leaf",
                (device,),
            )
        ]

    def statements(
        self, *, kind: int | None = None, chain: str | None = None
    ) -> list[StatementRow]:
        """Logged statements (of one kind, one chain name), in log order."""
        sql = "SELECT leaf, signer, kind, chain, cseq, time, chash, devices FROM statements"
        where, args = [], []
        if kind is not None:
            where.append("kind = ?")
            args.append(kind)
        if chain is not None:
            where.append("chain = ?")
            args.append(chain)
        if where:
            sql += " WHERE " + " AND ".join(where)
        rows = self._all(sql + " ORDER BY leaf", args)
        return [StatementRow(*r[:6], bytes(r[6]), r[7]) for r in rows]

    def statement_records(
        self, kind: int, chain: str, signer: str, *, upto: int | None = None
    ) -> list[StoredRecord]:
        """The records of ``signer``'s statements of one chain (leaf < ``upto``), by cseq."""
        rows = self._all(
            "SELECT r.* FROM statements s JOIN records r ON r.leaf = s.leaf"
            " WHERE s.kind = ? AND s.chain = ? AND s.signer = ? AND s.leaf < ? ORDER BY s.cseq",
            (kind, chain, signer, _upto(upto)),
        )
        return [StoredRecord(*r) for r in rows]

    def statement_heads(self) -> list[StatementRow]:
        """The last statement (highest cseq) of every chain, in log order."""
        rows = self._all(
            "SELECT s.leaf, s.signer, s.kind, s.chain, s.cseq, s.time, s.chash, s.devices"
            " FROM statements s JOIN (SELECT signer, kind, chain, max(cseq) AS top"
            " FROM statements GROUP BY signer, kind, chain) h"
            " ON s.signer = h.signer AND s.kind = h.kind AND s.chain = h.chain"
            " AND s.cseq = h.top ORDER BY s.leaf"
        )
        return [StatementRow(*r[:6], bytes(r[6]), r[7]) for r in rows]

    def ack_keys(self) -> dict[str, bytes]:
        return {d: bytes(k) for d, k in self._all("SELECT device, key FROM ack_keys")}

    def set_ack_key(self, device: str, key: bytes) -> None:
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO ack_keys VALUES (?, ?)", (device, key))

    def outbox_add(self, signer: str, seq: int, raw: bytes) -> int:
        with self._lock:
            cur = self._db.execute(
                "INSERT INTO outbox (signer, seq, raw, created) VALUES (?,?,?,?)",
                (signer, seq, raw, int(time.time())),
            )
            return int(cur.lastrowid or 0)

    def outbox_pending(self) -> list[tuple[int, bytes]]:
        return [
            (i, bytes(raw))
            for i, raw in self._all("SELECT id, raw FROM outbox WHERE done = 0 ORDER BY id")
        ]

    def outbox_entry(self, signer: str, seq: int) -> tuple[bytes, bool] | None:
        """The outbox's record of (``signer``, ``seq``) and whether it was handled."""
        row = self._one("SELECT raw, done FROM outbox WHERE signer = ? AND seq = ?", (signer, seq))
        return None if row is None else (bytes(row[0]), bool(row[1]))

    def outbox_requeue(self, signer: str, seq: int) -> None:
        """Offer a handled (refused) outbox record to ingest again."""
        with self._lock:
            self._db.execute(
                "UPDATE outbox SET done = 0 WHERE signer = ? AND seq = ?", (signer, seq)
            )

    def last_signed(self, signer: str) -> tuple[int, bytes] | None:
        """Highest seq ``signer`` has used, in the log or waiting in the outbox."""
        a = self._one(
            "SELECT seq, raw FROM records WHERE signer = ? ORDER BY seq DESC LIMIT 1", (signer,)
        )
        b = self._one(
            "SELECT seq, raw FROM outbox WHERE signer = ? ORDER BY seq DESC LIMIT 1", (signer,)
        )
        best = max((r for r in (a, b) if r is not None), key=lambda r: r[0], default=None)
        return None if best is None else (int(best[0]), bytes(best[1]))

    def begin_exclusive(self) -> None:
        """Serialise writers from other processes (the registry CLI) until ``end``."""
        self._lock.acquire()
        self._db.execute("BEGIN IMMEDIATE")

    def end(self, ok: bool = True) -> None:
        try:
            self._db.execute("COMMIT" if ok else "ROLLBACK")
        finally:
            self._lock.release()

    # --- checkpoints and anchors ------------------------------------------------

    def add_checkpoint(self, cp: CheckpointRow) -> None:
        with self._lock:
            self._db.execute(
                "INSERT INTO checkpoints VALUES (?,?,?,?)", (cp.size, cp.root, cp.note, cp.time)
            )

    def checkpoints(self) -> list[CheckpointRow]:
        return [
            CheckpointRow(s, bytes(r), n, t)
            for s, r, n, t in self._all("SELECT * FROM checkpoints ORDER BY size")
        ]

    def checkpoints_after(self, size: int, limit: int = 1000) -> list[CheckpointRow]:
        """Checkpoints of more than ``size`` leaves, smallest first (at most ``limit``)."""
        return [
            CheckpointRow(s, bytes(r), n, t)
            for s, r, n, t in self._all(
                "SELECT * FROM checkpoints WHERE size > ? ORDER BY size LIMIT ?", (size, limit)
            )
        ]

    def latest_checkpoint(self) -> CheckpointRow | None:
        row = self._one("SELECT * FROM checkpoints ORDER BY size DESC LIMIT 1")
        return None if row is None else CheckpointRow(row[0], bytes(row[1]), row[2], row[3])

    def checkpoint_at(self, size: int) -> CheckpointRow | None:
        row = self._one("SELECT * FROM checkpoints WHERE size = ?", (size,))
        return None if row is None else CheckpointRow(row[0], bytes(row[1]), row[2], row[3])

    def replace_checkpoint_note(self, size: int, note: str) -> bool:
        """Replace the note of checkpoint ``size`` by ``note``: the same body with more
        signature lines (witness cosignatures). The caller verifies the signatures;
        this checks the body is identical. False if there is no such checkpoint or
        the note is already stored; ValueError if the body differs."""
        with self._lock:
            row = self._db.execute(
                "SELECT note FROM checkpoints WHERE size = ?", (size,)
            ).fetchone()
            if row is None or row[0] == note:
                return False
            if _note_body(row[0]) != _note_body(note):
                raise ValueError(f"checkpoint {size}: the new note's body differs from the stored")
            self._db.execute("UPDATE checkpoints SET note = ? WHERE size = ?", (note, size))
            return True

    def add_anchor(self, anchor: Anchor) -> None:
        with self._lock:
            self._db.execute(
                "INSERT INTO anchors (size, backend, receipt, time) VALUES (?,?,?,?)",
                (anchor.size, anchor.backend, json.dumps(anchor.receipt), anchor.time),
            )

    def replace_anchor(self, anchor: Anchor) -> None:
        """Replace the receipt(s) of checkpoint ``anchor.size`` on ``anchor.backend`` by
        ``anchor.receipt``: a chain reorganisation moved or re-made the EVM anchor
        (gateway/evidence/evm.py). The cloud gets the new receipt on the next push."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.execute(
                    "DELETE FROM anchors WHERE size = ? AND backend = ?",
                    (anchor.size, anchor.backend),
                )
                self._db.execute(
                    "INSERT INTO anchors (size, backend, receipt, time) VALUES (?,?,?,?)",
                    (anchor.size, anchor.backend, json.dumps(anchor.receipt), anchor.time),
                )
                self._db.execute(
                    "UPDATE meta SET value = ? WHERE key = 'cloud.receipt' AND CAST(value AS"
                    " INTEGER) >= ?",
                    (str(anchor.size - 1), anchor.size),
                )
            except BaseException:
                if self._db.in_transaction:  # SQLITE_FULL may have rolled it back already
                    self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def latest_anchor(self) -> Anchor | None:
        row = self._one("SELECT size, backend, receipt, time FROM anchors ORDER BY id DESC LIMIT 1")
        return None if row is None else Anchor(row[0], row[1], json.loads(row[2]), row[3])

    def anchors_after(self, size: int, upto: int | None = None) -> list[Anchor]:
        """Receipts of checkpoints of more than ``size`` and at most ``upto`` leaves, by size."""
        return [
            Anchor(s, b, json.loads(r), t)
            for s, b, r, t in self._all(
                "SELECT size, backend, receipt, time FROM anchors WHERE size > ? AND size <= ?"
                " ORDER BY size, id",
                (size, _upto(upto)),
            )
        ]

    def anchors(self) -> list[Anchor]:
        return [
            Anchor(s, b, json.loads(r), t)
            for s, b, r, t in self._all(
                "SELECT size, backend, receipt, time FROM anchors ORDER BY size, id"
            )
        ]

    # --- reports ------------------------------------------------------------------

    def rejects(self, *, limit: int = 100, reason: str | None = None) -> list[RejectRow]:
        sql = (
            "SELECT received, topic, reason, detail, raw, signer, seq, id, count, last_seen,"
            " size FROM quarantine"
        )
        args: tuple[Any, ...] = ()
        if reason is not None:
            sql += " WHERE reason = ?"
            args = (reason,)
        sql += " ORDER BY id DESC LIMIT ?"
        rows = self._all(sql, (*args, limit))
        return [RejectRow(r[0], r[1], r[2], r[3], bytes(r[4]), *r[5:]) for r in rows]

    def reject_counts(self) -> dict[str, int]:
        return {
            reason: int(n)
            for reason, n in self._all("SELECT reason, sum(count) FROM quarantine GROUP BY reason")
        }

    def chain_events(self, signer: str | None = None, limit: int = 100) -> list[ChainEvent]:
        sql = "SELECT signer, kind, seq_from, seq_to, time, detail FROM chain_events"
        args: tuple[Any, ...] = ()
        if signer is not None:
            sql += " WHERE signer = ?"
            args = (signer,)
        rows = self._all(sql + " ORDER BY id DESC LIMIT ?", (*args, limit))
        return [ChainEvent(*r) for r in rows]

    def declared_losses(self, signer: str | None = None, limit: int = 100) -> list[DeclaredLoss]:
        """Declared-lost ranges (§5.2), newest declaring record first."""
        sql = "SELECT signer, seq_from, seq_to, status_seq, status_leaf, time FROM declared_lost"
        args: tuple[Any, ...] = ()
        if signer is not None:
            sql += " WHERE signer = ?"
            args = (signer,)
        rows = self._all(sql + " ORDER BY status_leaf DESC LIMIT ?", (*args, limit))
        return [DeclaredLoss(*r) for r in rows]

    def presence(self) -> dict[str, tuple[str, int]]:
        return {d: (s, t) for d, s, t in self._all("SELECT device, state, since FROM presence")}

    def counters(self) -> dict[str, int]:
        return {n: int(v) for n, v in self._all("SELECT name, value FROM counters")}

    def get_meta(self, key: str) -> str | None:
        row = self._one("SELECT value FROM meta WHERE key = ?", (key,))
        return None if row is None else str(row[0])

    def set_meta(self, key: str, value: str) -> None:
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))

    # --- alerts and the audit log (version 4) -------------------------------------

    def record_alert(self, event: dict[str, Any], *, ended: int | None = None) -> None:
        """Keep an alert event (AlertEvent.to_dict()): the first makes the row, later
        ones (``active``, ``end``) update its event and, for ``end``, when it ended
        (``ended``: an alarm that is over when raised, e.g. the gateway's own)."""
        now = int(time.time())
        if ended is None and event.get("phase") == "end":
            ended = event.get("end") if event.get("end") is not None else event.get("time")
        with self._lock:
            self._db.execute(
                "INSERT INTO alerts (id, kind, device, place, start, ended, raised, updated,"
                " event) VALUES (?,?,?,?,?,?,?,?,?) ON CONFLICT (id) DO UPDATE SET"
                " event = excluded.event, updated = excluded.updated,"
                " ended = coalesce(excluded.ended, alerts.ended),"
                " place = coalesce(excluded.place, alerts.place)",
                (
                    str(event["id"]),
                    str(event["kind"]),
                    str(event["device"]),
                    event.get("place"),
                    int(event["start"]),
                    None if ended is None else int(ended),
                    int(event.get("raised") or now),
                    now,
                    json.dumps(event, sort_keys=True),
                ),
            )

    _ALERT_COLUMNS = (
        "id",
        "kind",
        "device",
        "place",
        "start",
        "ended",
        "raised",
        "updated",
        "event",
        "acked",
        "acked_by",
        "comment",
        "escalated",
    )

    def _alert_rows(self, where: str, args: tuple[Any, ...], limit: int) -> list[dict[str, Any]]:
        rows = self._all(
            f"SELECT {', '.join(self._ALERT_COLUMNS)} FROM alerts {where}"
            " ORDER BY raised DESC, id LIMIT ?",
            (*args, limit),
        )
        out = []
        for r in rows:
            d = dict(zip(self._ALERT_COLUMNS, r, strict=True))
            d["event"] = json.loads(d["event"])
            out.append(d)
        return out

    def alerts(self, *, limit: int = 100, open_only: bool = False) -> list[dict[str, Any]]:
        """Alerts, newest first: the row's columns and ``event`` (the latest event).
        ``open_only``: those still open or not yet acknowledged."""
        where = "WHERE ended IS NULL OR acked IS NULL" if open_only else ""
        return self._alert_rows(where, (), limit)

    def end_open_alerts(self, cause: str, kinds: Iterable[str], *, now: int | None = None) -> int:
        """Mark the open alerts of ``kinds`` ended at ``now`` with ``cause`` (the alert
        engine starts empty after a restart: their end event will never come). Their
        acknowledgements stay. The number ended; each gets an audit line."""
        now = int(time.time()) if now is None else int(now)
        kinds = list(kinds)
        marks = ",".join("?" * len(kinds))
        with self._lock:
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                rows = db.execute(
                    f"SELECT id, event FROM alerts WHERE ended IS NULL AND kind IN ({marks})",
                    kinds,
                ).fetchall()
                for alert_id, raw in rows:
                    event = json.loads(raw)
                    event["cause"] = cause
                    db.execute(
                        "UPDATE alerts SET ended = ?, updated = ?, event = ? WHERE id = ?",
                        (now, now, json.dumps(event, sort_keys=True), alert_id),
                    )
                    self._audit(db, now, "gateway", "close", alert_id, cause, {})
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
            return len(rows)

    def alert(self, alert_id: str) -> dict[str, Any] | None:
        rows = self._alert_rows("WHERE id = ?", (alert_id,), 1)
        return rows[0] if rows else None

    def acknowledge_alert(
        self, alert_id: str, actor: str, comment: str, *, now: int | None = None
    ) -> bool:
        """Acknowledge an alert and write it to the audit log, in one transaction.
        False when there is no such alert. Acknowledging again adds an audit line
        and keeps the first acknowledgement's time."""
        now = int(time.time()) if now is None else int(now)
        with self._lock:
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                row = db.execute("SELECT acked FROM alerts WHERE id = ?", (alert_id,)).fetchone()
                if row is None:
                    db.execute("ROLLBACK")
                    return False
                if row[0] is None:
                    db.execute(
                        "UPDATE alerts SET acked = ?, acked_by = ?, comment = ? WHERE id = ?",
                        (now, actor, comment, alert_id),
                    )
                self._audit(db, now, actor, "acknowledge", alert_id, comment, {})
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
            return True

    def alerts_to_escalate(self, raised_before: int) -> list[dict[str, Any]]:
        """Unacknowledged, never escalated alerts raised at or before ``raised_before``."""
        return self._alert_rows(
            "WHERE acked IS NULL AND escalated IS NULL AND raised <= ?", (raised_before,), 1000
        )

    def mark_escalated(self, alert_id: str, targets: list[str], *, now: int | None = None) -> bool:
        """Record that ``alert_id`` was escalated (once): False if it already was."""
        now = int(time.time()) if now is None else int(now)
        with self._lock:
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                cur = db.execute(
                    "UPDATE alerts SET escalated = ? WHERE id = ? AND escalated IS NULL",
                    (now, alert_id),
                )
                if cur.rowcount:
                    self._audit(db, now, "gateway", "escalate", alert_id, "", {"to": list(targets)})
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
            return bool(cur.rowcount)

    def add_audit(
        self,
        actor: str,
        action: str,
        target: str,
        comment: str = "",
        detail: dict[str, Any] | None = None,
    ) -> None:
        with self._lock:
            self._audit(self._db, int(time.time()), actor, action, target, comment, detail or {})

    @staticmethod
    def _audit(
        db: sqlite3.Connection,
        now: int,
        actor: str,
        action: str,
        target: str,
        comment: str,
        detail: dict[str, Any],
    ) -> None:
        db.execute(
            "INSERT INTO audit (time, actor, action, target, comment, detail) VALUES (?,?,?,?,?,?)",
            (now, actor[:100], action, target, comment[:2000], json.dumps(detail, sort_keys=True)),
        )

    def audit_log(self, *, limit: int = 100, target: str | None = None) -> list[dict[str, Any]]:
        """The audit log, newest first."""
        sql = "SELECT id, time, actor, action, target, comment, detail FROM audit"
        args: tuple[Any, ...] = ()
        if target is not None:
            sql += " WHERE target = ?"
            args = (target,)
        rows = self._all(sql + " ORDER BY id DESC LIMIT ?", (*args, limit))
        return [
            {
                "id": r[0],
                "time": r[1],
                "actor": r[2],
                "action": r[3],
                "target": r[4],
                "comment": r[5],
                "detail": json.loads(r[6]),
            }
            for r in rows
        ]

    # --- the dashboard's views ----------------------------------------------------

    def newest_of(self, signer: str, kinds: tuple[int, ...], limit: int = 20) -> list[StoredRecord]:
        """``signer``'s newest records of ``kinds`` (by seq, newest first)."""
        marks = ",".join("?" * len(kinds))
        rows = self._all(
            f"SELECT * FROM records WHERE signer = ? AND kind IN ({marks})"
            " ORDER BY seq DESC LIMIT ?",
            (signer, *kinds, limit),
        )
        return [StoredRecord(*r) for r in rows]

    def scan_mark(self) -> tuple[Any, ...]:
        """Changes when a scan is stored (the lots-in-transit view caches on it)."""
        return tuple(self._one("SELECT max(leaf), count(*) FROM scans"))

    def recent_records(self, kind: int, *, after: int = -1, limit: int = 50) -> list[StoredRecord]:
        """Records of ``kind`` with leaf > ``after``: the newest ``limit``, oldest first."""
        rows = self._all(
            "SELECT * FROM records WHERE kind = ? AND leaf > ? ORDER BY leaf DESC LIMIT ?",
            (kind, after, limit),
        )
        return [StoredRecord(*r) for r in reversed(rows)]

    def recent_checkpoints(self, limit: int = 10) -> list[CheckpointRow]:
        return [
            CheckpointRow(s, bytes(r), n, t)
            for s, r, n, t in self._all(
                "SELECT * FROM checkpoints ORDER BY size DESC LIMIT ?", (limit,)
            )
        ]

    def recent_anchors(self, limit: int = 10) -> list[Anchor]:
        return [
            Anchor(s, b, json.loads(r), t)
            for s, b, r, t in self._all(
                "SELECT size, backend, receipt, time FROM anchors ORDER BY id DESC LIMIT ?",
                (limit,),
            )
        ]

    def last_scans(self) -> list[tuple[bytes, int, StoredRecord, str | None]]:
        """Per tag UID its latest custody scan (by scan time, then leaf): (uid, action,
        the scan record, the item its commission scan named)."""
        rows = self._all(
            "SELECT s.uid, s.action, r.*, (SELECT c.item FROM scans c WHERE c.uid = s.uid"
            " AND c.item IS NOT NULL ORDER BY c.leaf DESC LIMIT 1)"
            " FROM scans s JOIN records r ON r.leaf = s.leaf"
            " WHERE s.leaf = (SELECT s2.leaf FROM scans s2 JOIN records r2 ON r2.leaf = s2.leaf"
            " WHERE s2.uid = s.uid ORDER BY r2.time DESC, s2.leaf DESC LIMIT 1)"
        )
        return [(bytes(r[0]), int(r[1]), StoredRecord(*r[2:11]), r[11]) for r in rows]

    def changes(self) -> tuple[Any, ...]:
        """A cheap fingerprint that changes when anything the dashboard shows changes."""
        return tuple(
            self._one(
                "SELECT (SELECT max(leaf) FROM records), (SELECT max(updated) FROM alerts),"
                " (SELECT count(*) FROM alerts WHERE acked IS NOT NULL),"
                " (SELECT max(id) FROM audit), (SELECT max(size) FROM checkpoints),"
                " (SELECT max(id) FROM anchors), (SELECT sum(count) FROM quarantine),"
                " (SELECT group_concat(device || state) FROM presence),"
                " (SELECT length(note) FROM checkpoints ORDER BY size DESC LIMIT 1)"
            )
        )

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # --- the quarantine's caps, purge and release (version 5, docs/decisions.md D29) ----

    @staticmethod
    def _write_dropped(db: sqlite3.Connection, rows: list[DroppedRow]) -> None:
        """Add counted-not-stored refusals to their (cause, reason, device) summary,
        folding each message's SHA-256 into the summary's running digest."""
        from hashlib import sha256

        for d in rows:
            got = db.execute(
                "SELECT digest FROM quarantine_dropped WHERE cause = ? AND reason = ?"
                " AND device = ?",
                (d.cause, d.reason, d.device),
            ).fetchone()
            chain = bytes(got[0]) if got is not None else bytes(32)
            for h in d.digests:
                chain = sha256(chain + h).digest()
            db.execute(
                "INSERT INTO quarantine_dropped VALUES (?,?,?,?,?,?,?,?)"
                " ON CONFLICT (cause, reason, device) DO UPDATE SET"
                " count = count + excluded.count, bytes = bytes + excluded.bytes,"
                " first_seen = min(first_seen, excluded.first_seen),"
                " last_seen = max(last_seen, excluded.last_seen), digest = excluded.digest",
                (d.cause, d.reason, d.device, d.count, d.bytes, d.first_seen, d.last_seen, chain),
            )

    def quarantine_usage(self) -> tuple[int, int]:
        """(rows, bytes of raw, detail and topic) the quarantine holds."""
        rows, size = self._one(
            "SELECT count(*), coalesce(sum(length(raw) + length(detail) + length(topic)), 0)"
            " FROM quarantine"
        )
        return int(rows), int(size)

    def quarantine_dropped(self) -> list[DroppedRow]:
        """What was counted and not stored (or purged), per (cause, reason, device)."""
        return [
            DroppedRow(c, r, d, int(n), int(b), int(f), int(t), bytes(h))
            for c, r, d, n, b, f, t, h in self._all(
                "SELECT cause, reason, device, count, bytes, first_seen, last_seen, digest"
                " FROM quarantine_dropped ORDER BY cause, reason, device"
            )
        ]

    @staticmethod
    def _reject_filter(
        reason: str | None, device: str | None, before: int | None
    ) -> tuple[str, list[Any]]:
        where, args = [], []
        if reason is not None:
            where.append("reason = ?")
            args.append(reason)
        if device is not None:
            where.append("(signer = ? OR topic = ? OR topic = ?)")
            args += [device, f"ct/v1/{device}/rec", f"ct/v1/{device}/state"]
        if before is not None:
            where.append("last_seen < ?")
            args.append(before)
        return (" WHERE " + " AND ".join(where)) if where else "", args

    def purge_rejects(
        self,
        *,
        reason: str | None = None,
        device: str | None = None,
        before: int | None = None,
        actor: str = "operator",
    ) -> dict[str, int]:
        """Delete quarantined messages (all, or those matching the filters), leaving
        per (reason, device) a ``purged`` summary (count, bytes, digest chain over the
        rows' digests in id order) and an audit line, in one transaction. Returns
        rows, messages and bytes purged."""
        from hashlib import sha256

        where, args = self._reject_filter(reason, device, before)
        now = int(time.time())
        with self._lock:
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                rows = db.execute(
                    "SELECT id, topic, reason, digest, count, coalesce(size, length(raw)),"
                    f" received, last_seen FROM quarantine{where} ORDER BY id",
                    args,
                ).fetchall()
                groups: dict[tuple[str, str], DroppedRow] = {}
                for _id, topic, why, digest, count, size, first, last in rows:
                    dev = _topic_device(topic)
                    g = groups.get((why, dev))
                    if g is None:
                        g = groups[(why, dev)] = DroppedRow("purged", why, dev, 0, 0, first, last)
                    g.count += int(count)
                    g.bytes += int(size) * int(count)
                    g.first_seen = min(g.first_seen, int(first))
                    g.last_seen = max(g.last_seen, int(last))
                    g.digests.append(bytes(digest))
                self._write_dropped(db, list(groups.values()))
                db.execute(f"DELETE FROM quarantine{where}", args)
                total = {
                    "rows": len(rows),
                    "messages": sum(g.count for g in groups.values()),
                    "bytes": sum(g.bytes for g in groups.values()),
                }
                filters = {"reason": reason, "device": device, "before": before}
                self._audit(
                    db,
                    now,
                    actor,
                    "purge",
                    "quarantine",
                    "",
                    {**total, "filters": {k: v for k, v in filters.items() if v is not None}},
                )
                digest = sha256(b"".join(bytes(r[3]) for r in rows)).hexdigest()
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
        return {**total, "digest": digest}  # type: ignore[dict-item]

    def release_rejects(
        self, *, reason: str | None = None, device: str | None = None, actor: str = "operator"
    ) -> tuple[int, int]:
        """Move quarantined messages (matching the filters) to the ``released`` outbox,
        which the running gateway checks again as if they had just arrived; one audit
        line. Messages kept only in part (cut to keep_bytes) stay. Returns (released,
        left because cut)."""
        where, args = self._reject_filter(reason, device, None)
        now = int(time.time())
        with self._lock:
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                rows = db.execute(
                    f"SELECT id, topic, raw, reason, size FROM quarantine{where} ORDER BY id",
                    args,
                ).fetchall()
                whole = [r for r in rows if r[4] is None]
                db.executemany(
                    "INSERT INTO released (topic, raw, reason, created) VALUES (?,?,?,?)",
                    [(t, raw, why, now) for _i, t, raw, why, _s in whole],
                )
                db.executemany("DELETE FROM quarantine WHERE id = ?", [(r[0],) for r in whole])
                filters = {"reason": reason, "device": device}
                self._audit(
                    db,
                    now,
                    actor,
                    "release",
                    "quarantine",
                    "",
                    {
                        "released": len(whole),
                        "cut": len(rows) - len(whole),
                        "filters": {k: v for k, v in filters.items() if v is not None},
                    },
                )
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
        return len(whole), len(rows) - len(whole)

    def released_pending(self, limit: int = 500) -> list[tuple[int, str, bytes]]:
        """Released messages not yet checked again: (id, topic, raw), oldest first."""
        return [
            (int(i), t, bytes(raw))
            for i, t, raw in self._all(
                "SELECT id, topic, raw FROM released WHERE done = 0 ORDER BY id LIMIT ?", (limit,)
            )
        ]


def _topic_device(topic: str) -> str:
    """The device of a ``ct/v1/{dev}/{kind}`` topic, else "" (the quarantine summaries' key)."""
    parts = topic.split("/")
    if len(parts) == 4 and parts[0] == "ct" and parts[1] == "v1" and parts[2]:
        return parts[2][:64]
    return ""


def _note_body(note: str) -> str:
    """A signed note's text up to its first empty line (a checkpoint body has none)."""
    cut = note.find("\n\n")
    return note if cut < 0 else note[: cut + 1]


def _upto(upto: int | None) -> int:
    return 1 << 62 if upto is None else upto


def open_store(path: str | Path, *, readonly: bool = False) -> SQLiteStore:
    """Open the gateway database (the only backend today is SQLite)."""
    return SQLiteStore(path, readonly=readonly)
