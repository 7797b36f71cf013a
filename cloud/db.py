"""The cloud's storage: one schema, SQLAlchemy 2 Core, SQLite or PostgreSQL.

The same statements run on both engines (docs/decisions.md D20). The schema
is created and upgraded by Alembic (cloud/migrations/); :func:`connect`
upgrades a database to the head revision before the service uses it.

What is kept, per table:

- ``orgs``, ``tokens`` (SHA-256 of each API token, never the token), ``audit``;
- ``logs``: each gateway log the cloud mirrors - its origin, its note key
  (vkey), the size verified so far, and whether it is frozen (a fork);
- ``registries``, ``ledgers``, ``witness_keys``: the keys the operator pinned
  for an organisation, which make the cloud's trust (:mod:`cloud.trustdb`);
- ``records``: every leaf of every mirrored log, with the fields the trace
  queries use (signer, seq, kind, time, uid, item, statement chain);
- ``checkpoints``, ``cosignatures``, ``anchors``: the signed checkpoints each
  log pushed, the witnesses' cosignature lines on them, and their receipts;
- ``alarms``: forks and other events an operator must see;
- ``rejected``: every refused push with its reason (nothing refused is lost);
- ``tags``: NTAG 424 DNA tags commissioned here (cloud/tags.py): UID, item,
  organisation, the per-tag keys wrapped with AES-GCM, the highest read
  counter seen (replay), last seen and commissioned times (revision 0002).
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Engine,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    SmallInteger,
    String,
    Table,
    Text,
    UniqueConstraint,
    create_engine,
    event,
)

__all__ = ["connect", "metadata", "upgrade"]

metadata = MetaData()

orgs = Table(
    "orgs",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(64), nullable=False, unique=True),
    Column("display", String(128), nullable=False, default=""),
    Column("operator", Boolean, nullable=False, default=False),
    Column("created", BigInteger, nullable=False),
)

tokens = Table(
    "tokens",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("org_id", Integer, ForeignKey("orgs.id"), nullable=False),
    Column("hash", LargeBinary(32), nullable=False, unique=True),
    Column("scopes", String(64), nullable=False),  # space-separated: read push admin
    Column("label", String(128), nullable=False, default=""),
    Column("created", BigInteger, nullable=False),
    Column("revoked", BigInteger, nullable=True),
)

logs = Table(
    "logs",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("org_id", Integer, ForeignKey("orgs.id"), nullable=False),
    Column("origin", String(255), nullable=False, unique=True),
    Column("vkey", Text, nullable=False),
    Column("size", BigInteger, nullable=False, default=0),
    Column("frozen", Boolean, nullable=False, default=False),
    Column("frozen_reason", Text, nullable=True),
    Column("last_push", BigInteger, nullable=True),
    Column("created", BigInteger, nullable=False),
)

registries = Table(
    "registries",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("org_id", Integer, ForeignKey("orgs.id"), nullable=False),
    Column("registry", String(64), nullable=False, unique=True),
    Column("key", Text, nullable=False),  # base64 SEC1 P-256
    Column(
        "scopes", Text, nullable=False
    ),  # JSON {"devices": [...], "places": [...], "gtins": [...]}
)

ledgers = Table(
    "ledgers",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("org_id", Integer, ForeignKey("orgs.id"), nullable=False),
    Column("ledger", String(255), nullable=False, unique=True),
    Column("key", Text, nullable=False),  # base64 Ed25519
)

evm_ledgers = Table(  # EVM anchor contracts an org anchors with (docs/evm.md)
    "evm_ledgers",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("org_id", Integer, ForeignKey("orgs.id"), nullable=False),
    Column("chain_id", BigInteger, nullable=False),
    Column("contract", String(42), nullable=False),  # 0x and 40 lowercase hex digits
    UniqueConstraint("chain_id", "contract"),
)

witness_keys = Table(
    "witness_keys",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("org_id", Integer, ForeignKey("orgs.id"), nullable=False),
    Column("vkey", Text, nullable=False, unique=True),
)

records = Table(
    "records",
    metadata,
    Column("log_id", Integer, ForeignKey("logs.id"), primary_key=True),
    Column("idx", BigInteger, primary_key=True, autoincrement=False),
    Column("raw", LargeBinary, nullable=False),
    Column("kind", SmallInteger, nullable=False),
    Column("signer", String(64), nullable=False),
    Column("seq", BigInteger, nullable=False),
    Column("time", BigInteger, nullable=False),
    Column("tq", SmallInteger, nullable=False),
    Column("uid", LargeBinary, nullable=True),  # scans
    Column("item", String(128), nullable=True),  # commission scans
    Column("chain", String(160), nullable=True),  # statements: chain name
    Column("cseq", BigInteger, nullable=True),  # statements
    Column("lost_from", BigInteger, nullable=True),  # status records declaring a loss
    Column("lost_to", BigInteger, nullable=True),
)
Index("records_signer_seq", records.c.signer, records.c.seq)
Index("records_uid", records.c.uid)
Index("records_item", records.c.item)
Index("records_chain", records.c.kind, records.c.chain, records.c.cseq)

checkpoints = Table(
    "checkpoints",
    metadata,
    Column("log_id", Integer, ForeignKey("logs.id"), primary_key=True),
    Column("size", BigInteger, primary_key=True, autoincrement=False),
    Column("root", LargeBinary(32), nullable=False),
    Column("note", Text, nullable=False),  # as the log signed it
    Column("received", BigInteger, nullable=False),
)

cosignatures = Table(
    "cosignatures",
    metadata,
    Column("log_id", Integer, ForeignKey("logs.id"), primary_key=True),
    Column("size", BigInteger, primary_key=True, autoincrement=False),
    Column("witness", String(300), primary_key=True),  # "<name>+<key id hex>"
    Column("line", Text, nullable=False),  # the signature line, as in the note
    Column("time", BigInteger, nullable=False),
)

anchors = Table(
    "anchors",
    metadata,
    Column("log_id", Integer, ForeignKey("logs.id"), primary_key=True),
    Column("size", BigInteger, primary_key=True, autoincrement=False),
    Column("receipt", Text, nullable=False),  # JSON, as pushed (verified)
)

alarms = Table(
    "alarms",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("org_id", Integer, ForeignKey("orgs.id"), nullable=True),
    Column("log_id", Integer, ForeignKey("logs.id"), nullable=True),
    Column("kind", String(64), nullable=False),
    Column("message", Text, nullable=False),
    Column("detail", Text, nullable=False),  # JSON evidence
    Column("created", BigInteger, nullable=False),
)

rejected = Table(
    "rejected",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("log_id", Integer, ForeignKey("logs.id"), nullable=True),
    Column("origin", String(255), nullable=True),
    Column("reason", String(64), nullable=False),
    Column("message", Text, nullable=False),
    Column("body", LargeBinary, nullable=True),  # the refused request, kept
    Column("received", BigInteger, nullable=False),
)

audit = Table(
    "audit",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("org_id", Integer, ForeignKey("orgs.id"), nullable=True),
    Column("token_id", Integer, nullable=True),
    Column("action", String(64), nullable=False),
    Column("target", String(255), nullable=False, default=""),
    Column("detail", Text, nullable=False, default="{}"),
    Column("time", BigInteger, nullable=False),
)

tags = Table(
    "tags",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("uid", LargeBinary(10), nullable=False, unique=True),
    Column("org_id", Integer, ForeignKey("orgs.id"), nullable=False),
    Column("item", String(128), nullable=False),  # GS1 Digital Link path (as commissioned)
    Column("sealed_keys", LargeBinary, nullable=False),  # AES-GCM wrapped keys (cloud/tags.py)
    Column("counter", BigInteger, nullable=True),  # highest SDMReadCtr seen; NULL: never read
    Column("last_seen", BigInteger, nullable=True),
    Column("commissioned", BigInteger, nullable=False),
)

_MIGRATIONS = Path(__file__).parent / "migrations"
_upgraded: set[str] = set()
_upgrade_lock = threading.Lock()


def database_url(url_or_path: str | Path) -> str:
    """A SQLAlchemy URL: a URL as given, or a SQLite file path."""
    text = str(url_or_path)
    if "://" in text:
        return text
    return f"sqlite+pysqlite:///{Path(text).resolve()}"


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=10000")
    cur.close()


_growth_base: dict[str, int] = {}  # the test hook: each file's page count when first seen


def _test_growth(path: Path) -> Any:
    """Test hook (gateway/evidence/diskfull.py ``COLDTRACE_TEST_SQLITE_GROWTH``, here
    ``cloud.db=N``): at every checkout of a connection, the database may have grown by
    at most N pages past its size when the hook first named it, so a push meets a
    genuine SQLITE_FULL; with the variable gone, the limit is lifted on the next
    checkout (space came back) without a restart. Operators never set it."""
    from gateway.evidence.diskfull import growth_pages

    def checkout(dbapi_conn: Any, _record: Any, _proxy: Any) -> None:
        pages = growth_pages(path.name)
        if pages is None and not _growth_base:
            return
        cur = dbapi_conn.cursor()
        try:
            if pages is None:
                cur.execute("PRAGMA max_page_count = 4294967294")  # SQLite's maximum
            else:
                have = int(cur.execute("PRAGMA page_count").fetchone()[0])
                base = _growth_base.setdefault(str(path), have)
                cur.execute(f"PRAGMA max_page_count = {base + pages}")
        finally:
            cur.close()

    return checkout


def upgrade(engine: Engine) -> None:
    """Bring the database to Alembic's head revision (idempotent)."""
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(_MIGRATIONS))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")


def connect(url_or_path: str | Path, *, migrate: bool = True) -> Engine:
    """An engine on the cloud database, upgraded to the current schema."""
    url = database_url(url_or_path)
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 10})
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "checkout", _test_growth(Path(url.partition(":///")[2])))
    else:
        engine = create_engine(url, pool_pre_ping=True, pool_size=8, max_overflow=8)
    if migrate:
        with _upgrade_lock:
            if url not in _upgraded:
                upgrade(engine)
                _upgraded.add(url)
    return engine
