"""Durable storage of the gateway: the ``Store`` interface on SQLite or PostgreSQL.

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

**One store, two engines** (docs/decisions.md D27). The tables are
described once (gateway/evidence/schema.py) and created and upgraded by
Alembic (gateway/evidence/migrations; gateway/evidence/migrate.py also brings
databases made before Alembic, ``meta.schema`` 1-4, to revision 0001).
:class:`SqlStore` runs the same SQLAlchemy statements on a SQLite file (WAL,
``synchronous=FULL``) and on a PostgreSQL schema (``[store] url``, ``schema``;
several gateways can share one database, each in its own schema).

Ingest writes through :meth:`Store.commit`, one transaction per batch, so a
returned commit survives a crash. Nothing in ``gateway.evidence.ingest``
knows SQL. Records, checkpoints and the audit log are append-only: triggers
refuse UPDATE and DELETE on both engines.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy import URL, Connection, TextClause, create_engine, event, make_url, text
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.pool import NullPool

from gateway.evidence.diskfull import limit_growth

__all__ = [
    "Anchor",
    "ChainEvent",
    "CheckpointRow",
    "DeclaredLoss",
    "DeviceRow",
    "DroppedRow",
    "RejectRow",
    "SignerState",
    "SqlStore",
    "StatementRow",
    "Store",
    "StoreError",
    "StoreUnavailable",
    "StoredRecord",
    "WriteBatch",
    "connection_lost",
    "open_store",
    "postgres_url",
    "sqlite_url",
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


log = logging.getLogger("coldtrace.gateway.store")
SCHEMA_VERSION = "5"  # ``meta.schema`` at the head revision (0002; pre-Alembic: 1 to 5)
_NAME_RE = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


class StoreError(RuntimeError):
    """The gateway database cannot be opened or used; the message says why, in a sentence."""


class StoreUnavailable(StoreError):
    """The PostgreSQL server of the store cannot be reached now (it is restarting, the
    network is cut): worth trying again later (docs/decisions.md D38)."""


def connection_lost(exc: BaseException) -> bool:
    """Whether ``exc`` (or an exception it was raised from) says the connection to the
    store's PostgreSQL server is lost or refused: a server restart or shutdown, a
    network cut. SQLite errors never are (a file does not go away and come back)."""
    seen: set[int] = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, StoreUnavailable):
            return True
        if isinstance(e, DBAPIError) and (
            e.connection_invalidated or _is_psycopg_operational(e.orig)
        ):
            return True
        if _is_psycopg_operational(e):
            return True
        e = e.__cause__ or (None if e.__suppress_context__ else e.__context__)
    return False


def _is_psycopg_operational(e: BaseException | None) -> bool:
    """A psycopg ``OperationalError`` (the server went away, refused or is shutting down)."""
    if e is None or not type(e).__module__.startswith("psycopg"):
        return False
    import psycopg

    return isinstance(e, psycopg.OperationalError)


def sqlite_url(path: str | Path, *, readonly: bool = False) -> URL:
    """The SQLAlchemy URL of the SQLite file ``path``."""
    p = Path(path).resolve()
    if readonly:
        return make_url(f"sqlite+pysqlite:///file:{p}?mode=ro&uri=true")
    return make_url(f"sqlite+pysqlite:///{p}")


def postgres_url(url: str, password_file: Path | None = None) -> URL:
    """``url`` (``postgresql://...``) for psycopg 3, with the password from ``password_file``."""
    u = make_url(url)
    if u.get_backend_name() != "postgresql":
        raise StoreError(f"[store] url must be a postgresql:// URL, not {u.drivername}://")
    u = u.set(drivername="postgresql+psycopg")
    if password_file is not None:
        try:
            lines = password_file.read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            raise StoreError(f"[store] password_file {password_file}: {exc.strerror}") from None
        if not lines or not lines[0].strip():
            raise StoreError(f"[store] password_file {password_file} is empty")
        u = u.set(password=lines[0].strip())
    return u


def _sqlite_pragmas(path: Path) -> Callable[[Any, Any], None]:
    """WAL and synchronous=FULL: a returned commit survives power loss (as before D27)."""

    def on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None
        dbapi_conn.execute("PRAGMA busy_timeout = 30000")
        _wal(dbapi_conn)
        dbapi_conn.execute("PRAGMA synchronous = FULL")
        dbapi_conn.execute("PRAGMA cache_size = -65536")
        limit_growth(dbapi_conn, path)  # a test hook (gateway/evidence/diskfull.py)

    return on_connect


def _wal(dbapi_conn: Any, wait: float = 30.0) -> None:
    """Switch a new file to WAL. The switch needs the file to itself and SQLite
    does not wait for it (no busy handler): retry while another process opens it."""
    import sqlite3

    deadline = time.monotonic() + wait
    while True:
        try:
            dbapi_conn.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def _sqlite_readonly(dbapi_conn: Any, _record: Any) -> None:
    dbapi_conn.isolation_level = None
    dbapi_conn.execute("PRAGMA busy_timeout = 10000")


class SqlStore:
    """The gateway's store on SQLite (one file, WAL) or PostgreSQL (one schema).

    One connection, guarded by a lock, serves the gateway's threads; other
    processes (the CLI, ``status``) open their own. Reads run in autocommit;
    every write batch is one explicit transaction: ``BEGIN IMMEDIATE`` on
    SQLite (one writer at a time, as before), ``BEGIN`` on PostgreSQL. On
    SQLite, ``synchronous=FULL`` makes a committed batch durable before
    ``commit`` returns; on PostgreSQL the server's ``synchronous_commit`` does.
    Statements are SQLAlchemy ``text()`` shared by both engines; the hot
    inserts of a batch go to the driver as multi-row ``VALUES`` (D27).
    """

    def __init__(
        self,
        url: URL | str | Path,
        *,
        readonly: bool = False,
        schema: str | None = None,
        migrate: bool = True,
    ) -> None:
        """``url``: a SQLAlchemy URL (SQLite or PostgreSQL), or a SQLite file's path."""
        if isinstance(url, Path):
            url = sqlite_url(url, readonly=readonly)
        url = make_url(url) if isinstance(url, str) else url
        self.url = url
        self.display = url.render_as_string(hide_password=True)
        self.path = Path(url.database or "") if url.get_backend_name() == "sqlite" else None
        self.schema = schema
        self._lock = threading.RLock()
        self._text: dict[str, TextClause] = {}
        self._driver_sql: dict[tuple[str, int], str] = {}
        self.dialect = url.get_backend_name()
        if self.dialect not in ("sqlite", "postgresql"):
            raise StoreError(f"the gateway store runs on SQLite or PostgreSQL, not {self.dialect}")
        if schema is not None and not _NAME_RE.fullmatch(schema):
            raise StoreError(f"[store] schema {schema!r} is not a plain lower-case SQL name")
        try:
            if self.dialect == "sqlite":
                if not readonly:
                    assert self.path is not None
                    self.path.parent.mkdir(parents=True, exist_ok=True)
                    if migrate:
                        self._migrate(url)
                self.engine = create_engine(
                    url,
                    connect_args={"check_same_thread": False, "timeout": 30},
                    poolclass=NullPool,
                )
                event.listen(
                    self.engine,
                    "connect",
                    _sqlite_readonly if readonly else _sqlite_pragmas(self.path),
                )
                self._begin_sql = "BEGIN IMMEDIATE"
                self._max_vars = 32766
            else:
                args = {"options": f"-c search_path={schema}"} if schema else {}
                if readonly:
                    args["options"] = (
                        args.get("options", "") + " -c default_transaction_read_only=on"
                    ).strip()
                if migrate and not readonly:
                    self._migrate(url, connect_args=args)
                self.engine = create_engine(url, connect_args=args, poolclass=NullPool)
                self._begin_sql = "BEGIN"
                self._max_vars = 65535
            self._connection = self._connect()
        except OperationalError as exc:
            error = StoreError if self.dialect == "sqlite" else StoreUnavailable
            raise error(f"cannot open the gateway database {self.display}: {_why(exc)}") from None

    def _connect(self) -> Connection:
        return self.engine.connect().execution_options(isolation_level="AUTOCOMMIT")

    @property
    def _conn(self) -> Connection:
        """The store's connection; a new one after the old was lost (PostgreSQL
        restarted, a network cut). The statement that met the loss failed and
        its transaction with it, so nothing is half-written; the next starts
        afresh. The gateway itself drops the failed batch (its messages are not
        acknowledged), waits for the server and starts again (docs/decisions.md
        D38, :func:`gateway.service.run`)."""
        c = self._connection
        if c.invalidated or c.closed:
            log.warning("reconnecting to the gateway database %s", self.display)
            c = self._connection = self._connect()
        return c

    def _migrate(self, url: URL, connect_args: dict[str, Any] | None = None) -> None:
        from gateway.evidence.migrate import SchemaError, _sqlite_immediate, upgrade

        if self.dialect == "sqlite":
            engine = create_engine(url, connect_args={"timeout": 30}, poolclass=NullPool)
            assert self.path is not None
            event.listen(engine, "connect", _sqlite_pragmas(self.path))
            _sqlite_immediate(engine)
        else:
            engine = create_engine(url, connect_args=connect_args or {}, poolclass=NullPool)
        try:
            upgrade(engine, schema=self.schema)
        except SchemaError as exc:
            raise StoreError(f"{self.display}: {exc}") from None
        finally:
            engine.dispose()

    # --- statements -----------------------------------------------------------

    def _sql(self, sql: str) -> TextClause:
        """``sql`` with ``?`` placeholders as a cached ``text()`` with named binds."""
        t = self._text.get(sql)
        if t is None:
            parts = sql.split("?")
            named = parts[0] + "".join(f":p{i}{part}" for i, part in enumerate(parts[1:]))
            t = self._text[sql] = text(named)
        return t

    def _exec(self, sql: str, args: Iterable[Any] = ()) -> Any:
        with self._lock:
            return self._conn.execute(self._sql(sql), {f"p{i}": v for i, v in enumerate(args)})

    def _one(self, sql: str, args: Iterable[Any] = ()) -> Any:
        return self._exec(sql, args).fetchone()

    def _all(self, sql: str, args: Iterable[Any] = ()) -> list[Any]:
        return self._exec(sql, args).fetchall()

    def _driver(self, sql: str, params: Any) -> Any:
        """Run ``sql`` (``?`` placeholders) on the driver directly: one tuple of
        parameters, or a list of tuples (executemany). For the batch's hot inserts."""
        key = (sql, 0)
        native = self._driver_sql.get(key)
        if native is None:
            native = sql if self.dialect == "sqlite" else sql.replace("?", "%s")
            self._driver_sql[key] = native
        return self._conn.exec_driver_sql(native, params)

    @contextmanager
    def _tx(self) -> Iterator[Any]:
        """One write transaction on the store's connection (holding the lock)."""
        with self._lock:
            c = self._conn
            c.exec_driver_sql(self._begin_sql)
            try:
                yield c
            except BaseException:
                with suppress(DBAPIError):
                    c.exec_driver_sql("ROLLBACK")
                raise
            c.exec_driver_sql("COMMIT")

    @staticmethod
    def _upsert(table: str, cols: tuple[str, ...], keys: tuple[str, ...]) -> str:
        """An INSERT that replaces the row of the same ``keys`` (both engines' ON CONFLICT)."""
        sets = ", ".join(f"{c} = excluded.{c}" for c in cols if c not in keys)
        return (
            f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({','.join('?' * len(cols))})"
            f" ON CONFLICT ({', '.join(keys)}) DO " + (f"UPDATE SET {sets}" if sets else "NOTHING")
        )

    # --- batches ------------------------------------------------------------

    def commit(self, batch: WriteBatch) -> None:
        """Write ``batch`` in one durable transaction (all or nothing)."""
        if not batch:
            return
        with self._tx():
            self._write(batch)

    def _insert(self, head: str, ncols: int, rows: list[Any], tail: str = "") -> None:
        """Insert ``rows`` with multi-row ``VALUES`` statements, a few hundred rows each.

        ``executemany`` runs one ``sqlite3_step`` per row and CPython's sqlite3
        releases and re-takes the GIL around each step; with the signature
        threads busy that costs a GIL hand-over per row (measured: 2.5-3x the
        wall time of the insert). One statement per chunk hands it over once;
        on PostgreSQL it is one round trip per chunk.
        """
        if self.dialect == "postgresql":
            # psycopg parses a long statement anew each time (it caches short ones):
            # one row's statement, sent for all rows at once (executemany, pipelined).
            self._driver(head + " VALUES (" + ",".join("?" * ncols) + ")" + tail, rows)
            return
        per = max(1, min(500, self._max_vars // ncols))
        mark = "?"
        one = "(" + ",".join([mark] * ncols) + ")"
        for i in range(0, len(rows), per):
            part = rows[i : i + per]
            key = (head + tail, len(part))
            sql = self._driver_sql.get(key)
            if sql is None:
                sql = head + " VALUES " + ",".join([one] * len(part)) + tail
                self._driver_sql[key] = sql
            self._conn.exec_driver_sql(sql, tuple(v for row in part for v in row))

    def _append(self, table: str, cols: tuple[str, ...], rows: list[tuple[Any, ...]]) -> None:
        """Insert many rows: PostgreSQL's COPY (psycopg writes the rows in C, about a
        tenth of the CPU of executemany), multi-row VALUES on SQLite (:meth:`_insert`).
        A refused row (a key taken) fails the batch with SQLAlchemy's IntegrityError."""
        if self.dialect != "postgresql":
            self._insert(f"INSERT INTO {table} ({', '.join(cols)})", len(cols), rows)
            return
        import psycopg

        sql = f"COPY {table} ({', '.join(cols)}) FROM STDIN"
        try:
            pg = self._conn.connection.driver_connection  # the psycopg connection
            with pg.cursor() as cur, cur.copy(sql) as copy:  # type: ignore[union-attr]
                for row in rows:
                    copy.write_row(row)
        except psycopg.Error as exc:
            raise DBAPIError.instance(sql, None, exc, psycopg.Error) from exc

    def _write(self, b: WriteBatch) -> None:
        if b.records:
            self._append(
                "records",
                _RECORD_COLUMNS,
                [
                    (r.leaf, r.signer, r.seq, r.boot, r.kind, r.time, r.tq, r.received, r.raw)
                    for r in b.records
                ],
            )
        if b.rejects:
            from hashlib import sha256

            self._driver(
                "INSERT INTO quarantine (received, last_seen, topic, signer, seq, reason, detail,"
                " digest, raw, size) VALUES (?,?,?,?,?,?,?,?,?,?) ON CONFLICT (digest, reason)"
                " DO UPDATE SET count = quarantine.count + 1, last_seen = excluded.last_seen",
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
            self._write_dropped(b.dropped)
        if b.release_done:
            self._driver(
                "UPDATE released SET done = 1 WHERE id = ?", [(i,) for i in b.release_done]
            )
        if b.states:
            latest = {s.signer: s for s in b.states}  # one row per signer per statement
            self._insert(
                "INSERT INTO signer_state (signer, contig, contig_hash, max_seq, max_hash,"
                " max_boot, count, last_seen)",
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
                    for s in latest.values()
                ],
                " ON CONFLICT (signer) DO UPDATE SET contig = excluded.contig,"
                " contig_hash = excluded.contig_hash, max_seq = excluded.max_seq,"
                " max_hash = excluded.max_hash, max_boot = excluded.max_boot,"
                " count = excluded.count, last_seen = excluded.last_seen",
            )
        if b.events:
            self._driver(
                "INSERT INTO chain_events (signer, kind, seq_from, seq_to, time, detail)"
                " VALUES (?,?,?,?,?,?)",
                [(e.signer, e.kind, e.seq_from, e.seq_to, e.time, e.detail) for e in b.events],
            )
        if b.losses:
            self._driver(
                "INSERT INTO declared_lost (signer, seq_from, seq_to, status_seq, status_leaf,"
                " time) VALUES (?,?,?,?,?,?)",
                [
                    (x.signer, x.seq_from, x.seq_to, x.status_seq, x.status_leaf, x.time)
                    for x in b.losses
                ],
            )
        if b.devices:
            self._driver(
                self._upsert("devices", _DEVICE_COLUMNS, ("id",)),
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
            self._driver(
                "INSERT INTO placements (device, leaf, time, place, cal) VALUES (?,?,?,?,?)"
                " ON CONFLICT DO NOTHING",
                list(b.placements),
            )
        if b.statements:
            self._driver(
                "INSERT INTO statements (leaf, signer, kind, chain, cseq, time, chash, devices)"
                " VALUES (?,?,?,?,?,?,?,?)",
                [
                    (x.leaf, x.signer, x.kind, x.chain, x.cseq, x.time, x.chash, x.devices)
                    for x in b.statements
                ],
            )
        if b.scans:
            self._driver(
                "INSERT INTO scans (leaf, uid, action, item) VALUES (?,?,?,?)", list(b.scans)
            )
        if b.outbox_done:
            self._driver("UPDATE outbox SET done = 1 WHERE id = ?", [(i,) for i in b.outbox_done])
        if b.presence:
            self._driver(
                self._upsert("presence", ("device", "state", "since"), ("device",)),
                list(b.presence),
            )
        if b.counters:
            self._driver(
                "INSERT INTO counters (name, value) VALUES (?, ?) ON CONFLICT (name) DO UPDATE"
                " SET value = counters.value + excluded.value",
                list(b.counters.items()),
            )
        if b.meta:
            self._driver(self._upsert("meta", ("key", "value"), ("key",)), list(b.meta.items()))

    # --- records --------------------------------------------------------------

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
        """Seqs (lo, hi) of ``signer`` around the time [start, end], from set clocks
        only (tq >= 1), as :func:`protocol.assemble.seq_bounds` chooses them: lo the
        highest seq dated at or before ``start`` (a reading if one is) below every
        record dated inside, hi the lowest seq dated at or after ``end`` above every
        record dated inside. None when the signer has no records."""
        top = _upto(upto)
        first, last = self._one(
            "SELECT min(seq), max(seq) FROM records WHERE signer = ? AND leaf < ?", (signer, top)
        )
        if first is None:
            return None
        mine = "FROM records WHERE signer = ? AND tq >= 1 AND leaf < ?"
        in_lo, in_hi = self._one(
            f"SELECT min(seq), max(seq) {mine} AND time > ? AND time < ?",
            (signer, top, start, end),
        )
        below = int(last) + 1 if in_lo is None else int(in_lo)
        above = int(first) - 1 if in_hi is None else int(in_hi)
        lo = self._one(
            f"SELECT max(seq) {mine} AND time <= ? AND seq < ? AND kind IN (1, 7)",
            (signer, top, start, below),
        )[0]
        if lo is None:
            lo = self._one(
                f"SELECT max(seq) {mine} AND time <= ? AND seq < ?", (signer, top, start, below)
            )[0]
        lo = int(first) if lo is None else int(lo)
        hi = self._one(
            f"SELECT min(seq) {mine} AND seq >= ? AND seq > ? AND time >= ?",
            (signer, top, lo, above, end),
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
            self._exec(self._upsert("ack_keys", ("device", "key"), ("device",)), (device, key))

    def outbox_add(self, signer: str, seq: int, raw: bytes) -> int:
        with self._lock:
            row = self._one(
                "INSERT INTO outbox (signer, seq, raw, created) VALUES (?,?,?,?) RETURNING id",
                (signer, seq, raw, int(time.time())),
            )
            return int(row[0])

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
            self._exec("UPDATE outbox SET done = 0 WHERE signer = ? AND seq = ?", (signer, seq))

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
        """Serialise writers from other processes (the registry CLI) until ``end``:
        SQLite's write lock; on PostgreSQL a transaction-scoped advisory lock."""
        self._lock.acquire()
        try:
            self._conn.exec_driver_sql(self._begin_sql)
            if self.dialect == "postgresql":
                self._exec("SELECT pg_advisory_xact_lock(?)", (_REGISTRY_LOCK,))
        except BaseException:
            with suppress(DBAPIError):
                self._conn.exec_driver_sql("ROLLBACK")
            self._lock.release()
            raise

    def end(self, ok: bool = True) -> None:
        try:
            self._conn.exec_driver_sql("COMMIT" if ok else "ROLLBACK")
        finally:
            self._lock.release()

    # --- checkpoints and anchors ------------------------------------------------

    def add_checkpoint(self, cp: CheckpointRow) -> None:
        with self._lock:
            self._exec(
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
            row = self._one("SELECT note FROM checkpoints WHERE size = ?", (size,))
            if row is None or row[0] == note:
                return False
            if _note_body(row[0]) != _note_body(note):
                raise ValueError(f"checkpoint {size}: the new note's body differs from the stored")
            self._exec("UPDATE checkpoints SET note = ? WHERE size = ?", (note, size))
            return True

    def add_anchor(self, anchor: Anchor) -> None:
        with self._lock:
            self._exec(
                "INSERT INTO anchors (size, backend, receipt, time) VALUES (?,?,?,?)",
                (anchor.size, anchor.backend, json.dumps(anchor.receipt), anchor.time),
            )

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
            self._exec(self._upsert("meta", ("key", "value"), ("key",)), (key, value))

    # --- alerts and the audit log (version 4) -------------------------------------

    def record_alert(self, event: dict[str, Any], *, ended: int | None = None) -> None:
        """Keep an alert event (AlertEvent.to_dict()): the first makes the row, later
        ones (``active``, ``end``) update its event and, for ``end``, when it ended
        (``ended``: an alarm that is over when raised, e.g. the gateway's own)."""
        now = int(time.time())
        if ended is None and event.get("phase") == "end":
            ended = event.get("end") if event.get("end") is not None else event.get("time")
        with self._lock:
            self._exec(
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
        with self._tx():
            rows = self._all(
                f"SELECT id, event FROM alerts WHERE ended IS NULL AND kind IN ({marks})", kinds
            )
            for alert_id, raw in rows:
                event = json.loads(raw)
                event["cause"] = cause
                self._exec(
                    "UPDATE alerts SET ended = ?, updated = ?, event = ? WHERE id = ?",
                    (now, now, json.dumps(event, sort_keys=True), alert_id),
                )
                self._audit(now, "gateway", "close", alert_id, cause, {})
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
        with self._tx():
            row = self._one("SELECT acked FROM alerts WHERE id = ?", (alert_id,))
            if row is None:
                return False
            if row[0] is None:
                self._exec(
                    "UPDATE alerts SET acked = ?, acked_by = ?, comment = ? WHERE id = ?",
                    (now, actor, comment, alert_id),
                )
            self._audit(now, actor, "acknowledge", alert_id, comment, {})
        return True

    def alerts_to_escalate(self, raised_before: int) -> list[dict[str, Any]]:
        """Unacknowledged, never escalated alerts raised at or before ``raised_before``."""
        return self._alert_rows(
            "WHERE acked IS NULL AND escalated IS NULL AND raised <= ?", (raised_before,), 1000
        )

    def mark_escalated(self, alert_id: str, targets: list[str], *, now: int | None = None) -> bool:
        """Record that ``alert_id`` was escalated (once): False if it already was."""
        now = int(time.time()) if now is None else int(now)
        with self._tx():
            cur = self._exec(
                "UPDATE alerts SET escalated = ? WHERE id = ? AND escalated IS NULL",
                (now, alert_id),
            )
            if cur.rowcount:
                self._audit(now, "gateway", "escalate", alert_id, "", {"to": list(targets)})
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
            self._audit(int(time.time()), actor, action, target, comment, detail or {})

    def _audit(
        self,
        now: int,
        actor: str,
        action: str,
        target: str,
        comment: str,
        detail: dict[str, Any],
    ) -> None:
        self._exec(
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
        concat = (
            "group_concat(device || state)"
            if self.dialect == "sqlite"
            else "string_agg(device || state, ',' ORDER BY device)"
        )
        return tuple(
            self._one(
                "SELECT (SELECT max(leaf) FROM records), (SELECT max(updated) FROM alerts),"
                " (SELECT count(*) FROM alerts WHERE acked IS NOT NULL),"
                " (SELECT max(id) FROM audit), (SELECT max(size) FROM checkpoints),"
                " (SELECT max(id) FROM anchors), (SELECT sum(count) FROM quarantine),"
                f" (SELECT {concat} FROM presence),"
                " (SELECT length(note) FROM checkpoints ORDER BY size DESC LIMIT 1)"
            )
        )

    def close(self) -> None:
        with self._lock:
            with suppress(DBAPIError):
                self._connection.close()
            self.engine.dispose()

    # --- the quarantine's caps, purge and release (revision 0002, docs/decisions.md D29) --

    def _write_dropped(self, rows: list[DroppedRow]) -> None:
        """Add counted-not-stored refusals to their (cause, reason, device) summary,
        folding each message's SHA-256 into the summary's running digest."""
        from hashlib import sha256

        low, high = ("min", "max") if self.dialect == "sqlite" else ("least", "greatest")
        for d in rows:
            got = self._one(
                "SELECT digest FROM quarantine_dropped WHERE cause = ? AND reason = ?"
                " AND device = ?",
                (d.cause, d.reason, d.device),
            )
            chain = bytes(got[0]) if got is not None else bytes(32)
            for h in d.digests:
                chain = sha256(chain + h).digest()
            self._exec(
                "INSERT INTO quarantine_dropped (cause, reason, device, count, bytes, first_seen,"
                " last_seen, digest) VALUES (?,?,?,?,?,?,?,?)"
                " ON CONFLICT (cause, reason, device) DO UPDATE SET"
                " count = quarantine_dropped.count + excluded.count,"
                " bytes = quarantine_dropped.bytes + excluded.bytes,"
                f" first_seen = {low}(quarantine_dropped.first_seen, excluded.first_seen),"
                f" last_seen = {high}(quarantine_dropped.last_seen, excluded.last_seen),"
                " digest = excluded.digest",
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
        with self._tx():
            rows = self._all(
                "SELECT id, topic, reason, digest, count, coalesce(size, length(raw)),"
                f" received, last_seen FROM quarantine{where} ORDER BY id",
                args,
            )
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
            self._write_dropped(list(groups.values()))
            self._exec(f"DELETE FROM quarantine{where}", args)
            total = {
                "rows": len(rows),
                "messages": sum(g.count for g in groups.values()),
                "bytes": sum(g.bytes for g in groups.values()),
            }
            filters = {"reason": reason, "device": device, "before": before}
            self._audit(
                now,
                actor,
                "purge",
                "quarantine",
                "",
                {**total, "filters": {k: v for k, v in filters.items() if v is not None}},
            )
            digest = sha256(b"".join(bytes(r[3]) for r in rows)).hexdigest()
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
        with self._tx():
            rows = self._all(
                f"SELECT id, topic, raw, reason, size FROM quarantine{where} ORDER BY id", args
            )
            whole = [r for r in rows if r[4] is None]
            if whole:
                self._driver(
                    "INSERT INTO released (topic, raw, reason, created) VALUES (?,?,?,?)",
                    [(t, bytes(raw), why, now) for _i, t, raw, why, _s in whole],
                )
                self._driver("DELETE FROM quarantine WHERE id = ?", [(r[0],) for r in whole])
            filters = {"reason": reason, "device": device}
            self._audit(
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
        return len(whole), len(rows) - len(whole)

    def released_pending(self, limit: int = 500) -> list[tuple[int, str, bytes]]:
        """Released messages not yet checked again: (id, topic, raw), oldest first."""
        return [
            (int(i), t, bytes(raw))
            for i, t, raw in self._all(
                "SELECT id, topic, raw FROM released WHERE done = 0 ORDER BY id LIMIT ?", (limit,)
            )
        ]

    def replace_anchor(self, anchor: Anchor) -> None:
        """Replace the receipt(s) of checkpoint ``anchor.size`` on ``anchor.backend`` by
        ``anchor.receipt``: a chain reorganisation moved or re-made the EVM anchor
        (gateway/evidence/evm.py). The cloud gets the new receipt on the next push."""
        with self._tx():
            self._exec(
                "DELETE FROM anchors WHERE size = ? AND backend = ?",
                (anchor.size, anchor.backend),
            )
            self._exec(
                "INSERT INTO anchors (size, backend, receipt, time) VALUES (?,?,?,?)",
                (anchor.size, anchor.backend, json.dumps(anchor.receipt), anchor.time),
            )
            self._exec(
                "UPDATE meta SET value = ? WHERE key = 'cloud.receipt' AND CAST(value AS"
                " INTEGER) >= ?",
                (str(anchor.size - 1), anchor.size),
            )


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


def open_store(target: Any, *, readonly: bool = False) -> SqlStore:
    """Open the gateway database: ``target`` is the gateway's configuration (its
    ``[store]``: PostgreSQL when ``url`` is set, else SQLite ``<data_dir>/gateway.db``)
    or the path of a SQLite file."""
    if isinstance(target, (str, Path)):
        return SqlStore(sqlite_url(target, readonly=readonly), readonly=readonly)
    sc = target.store
    if sc.url is None:
        return SqlStore(sqlite_url(target.db_path, readonly=readonly), readonly=readonly)
    url = postgres_url(sc.url, sc.password_file)
    if target.fleet.shared_schema:  # an instance of a gateway fleet (D28)
        from gateway.evidence.fleet import FleetStore

        return FleetStore(
            url,
            schema=sc.schema,
            shared_schema=target.fleet.shared_schema,
            origin=target.log.origin,
            readonly=readonly,
        )
    return SqlStore(url, readonly=readonly, schema=sc.schema)


def _why(exc: DBAPIError) -> str:
    """The first line of the driver's message (no SQL, no parameters)."""
    msg = str(exc.orig) if exc.orig is not None else str(exc)
    return (msg.strip().splitlines() or ["unknown error"])[0]


_RECORD_COLUMNS = ("leaf", "signer", "seq", "boot", "kind", "time", "tq", "received", "raw")
_DEVICE_COLUMNS = (
    "id",
    "role",
    "key",
    "org",
    "state",
    "registry",
    "registered_leaf",
    "place",
    "cal",
    "revoked_leaf",
    "updated",
)
_REGISTRY_LOCK = 0x436F6C6452  # pg_advisory_xact_lock key of registry signing: "ColdR"
