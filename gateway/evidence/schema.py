"""The gateway database's tables, one description for SQLite and PostgreSQL.

SQLAlchemy Core tables (``metadata``) in the column order the SQLite schema
had up to version 4, so that ``SELECT *`` reads the same on a database made
by the old code and on a new one. Integers are BIGINT on PostgreSQL and
INTEGER on SQLite (where ``INTEGER PRIMARY KEY`` is the rowid, which numbers
``id`` columns); bytes are BLOB / BYTEA.

What the engines cannot share is here as DDL per dialect: the triggers that
keep records, checkpoints and the audit log append-only (docs/decisions.md
D27). Alembic (gateway/evidence/migrations) creates and upgrades the schema.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    Table,
    Text,
    UniqueConstraint,
    text,
)

__all__ = ["V4_TABLES", "V5_TABLES", "append_only_ddl", "metadata"]

metadata = MetaData()

Int = BigInteger().with_variant(Integer(), "sqlite")


def _pk(name: str, *, auto: bool = False) -> Column:  # type: ignore[type-arg]
    return Column(name, Int, primary_key=True, autoincrement=auto)


meta = Table(
    "meta",
    metadata,
    Column("key", Text, primary_key=True),
    Column("value", Text, nullable=False),
)
counters = Table(
    "counters",
    metadata,
    Column("name", Text, primary_key=True),
    Column("value", Int, nullable=False),
)
records = Table(
    "records",
    metadata,
    _pk("leaf"),
    Column("signer", Text, nullable=False),
    Column("seq", Int, nullable=False),
    Column("boot", Int, nullable=False),
    Column("kind", Int, nullable=False),
    Column("time", Int, nullable=False),
    Column("tq", Int, nullable=False),
    Column("received", Int, nullable=False),
    Column("raw", LargeBinary, nullable=False),
)
Index("records_by_seq", records.c.signer, records.c.seq, unique=True)
quarantine = Table(
    "quarantine",
    metadata,
    _pk("id", auto=True),
    Column("received", Int, nullable=False),
    Column("last_seen", Int, nullable=False),
    Column("count", Int, nullable=False, server_default=text("1")),
    Column("topic", Text, nullable=False),
    Column("signer", Text),
    Column("seq", Int),
    Column("reason", Text, nullable=False),
    Column("detail", Text, nullable=False),
    Column("digest", LargeBinary, nullable=False),
    Column("raw", LargeBinary, nullable=False),
    Column("size", Int),  # revision 0002: the full length when raw was cut (NULL: whole)
    UniqueConstraint("digest", "reason"),
)
Index("quarantine_by_reason", quarantine.c.reason)
signer_state = Table(
    "signer_state",
    metadata,
    Column("signer", Text, primary_key=True),
    Column("contig", Int, nullable=False),
    Column("contig_hash", LargeBinary, nullable=False),
    Column("max_seq", Int, nullable=False),
    Column("max_hash", LargeBinary, nullable=False),
    Column("max_boot", Int, nullable=False),
    Column("count", Int, nullable=False),
    Column("last_seen", Int, nullable=False),
)
chain_events = Table(
    "chain_events",
    metadata,
    _pk("id", auto=True),
    Column("signer", Text, nullable=False),
    Column("kind", Text, nullable=False),
    Column("seq_from", Int, nullable=False),
    Column("seq_to", Int, nullable=False),
    Column("time", Int, nullable=False),
    Column("detail", Text, nullable=False),
)
Index("chain_events_by_signer", chain_events.c.signer)
declared_lost = Table(
    "declared_lost",
    metadata,
    Column("signer", Text, primary_key=True),
    Column("seq_from", Int, nullable=False),
    Column("seq_to", Int, nullable=False),
    Column("status_seq", Int, primary_key=True, autoincrement=False),
    Column("status_leaf", Int, nullable=False),
    Column("time", Int, nullable=False),
)
devices = Table(
    "devices",
    metadata,
    Column("id", Text, primary_key=True),
    Column("role", Int, nullable=False),
    Column("key", LargeBinary, nullable=False),
    Column("org", Text, nullable=False),
    Column("state", Int, nullable=False),
    Column("registry", Text, nullable=False),
    Column("registered_leaf", Int, nullable=False),
    Column("place", Text),
    Column("cal", Int),
    Column("revoked_leaf", Int),
    Column("updated", Int, nullable=False),
)
placements = Table(
    "placements",
    metadata,
    Column("device", Text, primary_key=True),
    Column("leaf", Int, primary_key=True, autoincrement=False),
    Column("time", Int, nullable=False),
    Column("place", Text),
    Column("cal", Int),
)
statements = Table(
    "statements",
    metadata,
    _pk("leaf"),
    Column("signer", Text, nullable=False),
    Column("kind", Int, nullable=False),
    Column("chain", Text, nullable=False),
    Column("cseq", Int, nullable=False),
    Column("time", Int, nullable=False),
    Column("chash", LargeBinary, nullable=False),
    Column("devices", Text),
    UniqueConstraint("signer", "kind", "chain", "cseq"),
)
scans = Table(
    "scans",
    metadata,
    _pk("leaf"),
    Column("uid", LargeBinary, nullable=False),
    Column("action", Int, nullable=False),
    Column("item", Text),
)
Index("scans_by_uid", scans.c.uid)
Index(
    "scans_by_item",
    scans.c.item,
    sqlite_where=scans.c.item.isnot(None),
    postgresql_where=scans.c.item.isnot(None),
)
ack_keys = Table(
    "ack_keys",
    metadata,
    Column("device", Text, primary_key=True),
    Column("key", LargeBinary, nullable=False),
)
outbox = Table(
    "outbox",
    metadata,
    _pk("id", auto=True),
    Column("signer", Text, nullable=False),
    Column("seq", Int, nullable=False),
    Column("raw", LargeBinary, nullable=False),
    Column("created", Int, nullable=False),
    Column("done", Int, nullable=False, server_default=text("0")),
    UniqueConstraint("signer", "seq"),
)
checkpoints = Table(
    "checkpoints",
    metadata,
    _pk("size"),
    Column("root", LargeBinary, nullable=False),
    Column("note", Text, nullable=False),
    Column("time", Int, nullable=False),
)
anchors = Table(
    "anchors",
    metadata,
    _pk("id", auto=True),
    Column("size", Int, nullable=False),
    Column("backend", Text, nullable=False),
    Column("receipt", Text, nullable=False),
    Column("time", Int, nullable=False),
)
presence = Table(
    "presence",
    metadata,
    Column("device", Text, primary_key=True),
    Column("state", Text, nullable=False),
    Column("since", Int, nullable=False),
)
alerts = Table(
    "alerts",
    metadata,
    Column("id", Text, primary_key=True),
    Column("kind", Text, nullable=False),
    Column("device", Text, nullable=False),
    Column("place", Text),
    Column("start", Int, nullable=False),
    Column("ended", Int),
    Column("raised", Int, nullable=False),
    Column("updated", Int, nullable=False),
    Column("event", Text, nullable=False),
    Column("acked", Int),
    Column("acked_by", Text),
    Column("comment", Text),
    Column("escalated", Int),
)
Index("alerts_by_raised", alerts.c.raised)
audit = Table(
    "audit",
    metadata,
    _pk("id", auto=True),
    Column("time", Int, nullable=False),
    Column("actor", Text, nullable=False),
    Column("action", Text, nullable=False),
    Column("target", Text, nullable=False),
    Column("comment", Text, nullable=False, server_default=text("''")),
    Column("detail", Text, nullable=False, server_default=text("'{}'")),
)

# Revision 0002 (schema version 5, the quarantine's caps, docs/decisions.md D29):
# what was counted and not stored, and messages an operator released to ingest.
quarantine_dropped = Table(
    "quarantine_dropped",
    metadata,
    Column("cause", Text, primary_key=True),
    Column("reason", Text, primary_key=True),
    Column("device", Text, primary_key=True),
    Column("count", Int, nullable=False),
    Column("bytes", Int, nullable=False),
    Column("first_seen", Int, nullable=False),
    Column("last_seen", Int, nullable=False),
    Column("digest", LargeBinary, nullable=False),
)
released = Table(
    "released",
    metadata,
    _pk("id", auto=True),
    Column("topic", Text, nullable=False),
    Column("raw", LargeBinary, nullable=False),
    Column("reason", Text, nullable=False),
    Column("created", Int, nullable=False),
    Column("done", Int, nullable=False, server_default=text("0")),
)
V5_TABLES = ("quarantine_dropped", "released")

# The tables of schema version 4, which Alembic revision 0001 creates.
V4_TABLES = (
    "meta",
    "counters",
    "records",
    "quarantine",
    "signer_state",
    "chain_events",
    "declared_lost",
    "devices",
    "placements",
    "statements",
    "scans",
    "ack_keys",
    "outbox",
    "checkpoints",
    "anchors",
    "presence",
    "alerts",
    "audit",
)

# --- append-only, per dialect -----------------------------------------------------

_SQLITE_TRIGGERS = {
    "records_no_update": "CREATE TRIGGER records_no_update BEFORE UPDATE ON records"
    " BEGIN SELECT RAISE(ABORT, 'records are append-only'); END",
    "records_no_delete": "CREATE TRIGGER records_no_delete BEFORE DELETE ON records"
    " BEGIN SELECT RAISE(ABORT, 'records are append-only'); END",
    # A stored note may gain witness cosignature lines: same size, root, time, body.
    "checkpoints_no_update": "CREATE TRIGGER checkpoints_no_update BEFORE UPDATE ON checkpoints"
    " WHEN NEW.size IS NOT OLD.size OR NEW.root IS NOT OLD.root OR NEW.time IS NOT OLD.time"
    " OR substr(NEW.note, 1, instr(NEW.note, char(10) || char(10)))"
    " IS NOT substr(OLD.note, 1, instr(OLD.note, char(10) || char(10)))"
    " BEGIN SELECT RAISE(ABORT, 'checkpoints are append-only (notes may gain cosignatures)');"
    " END",
    "checkpoints_no_delete": "CREATE TRIGGER checkpoints_no_delete BEFORE DELETE ON checkpoints"
    " BEGIN SELECT RAISE(ABORT, 'checkpoints are append-only'); END",
    "audit_no_update": "CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit"
    " BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END",
    "audit_no_delete": "CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit"
    " BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END",
}

# PostgreSQL: one trigger function per rule; the error is an integrity violation
# (SQLSTATE 23000), as SQLite's RAISE(ABORT) is, so both surface as IntegrityError.
_PG_FUNCTIONS = [
    """CREATE OR REPLACE FUNCTION coldtrace_append_only() RETURNS trigger
LANGUAGE plpgsql AS $fn$
BEGIN
    RAISE EXCEPTION '% are append-only', TG_ARGV[0]
        USING ERRCODE = 'integrity_constraint_violation';
END
$fn$""",
    """CREATE OR REPLACE FUNCTION coldtrace_note_body(note text) RETURNS text
LANGUAGE sql IMMUTABLE AS $fn$
    SELECT CASE WHEN strpos(note, E'\\n\\n') > 0
        THEN substr(note, 1, strpos(note, E'\\n\\n')) ELSE note END
$fn$""",
    """CREATE OR REPLACE FUNCTION coldtrace_checkpoint_update() RETURNS trigger
LANGUAGE plpgsql AS $fn$
BEGIN
    IF NEW.size IS DISTINCT FROM OLD.size OR NEW.root IS DISTINCT FROM OLD.root
        OR NEW.time IS DISTINCT FROM OLD.time
        OR coldtrace_note_body(NEW.note) IS DISTINCT FROM coldtrace_note_body(OLD.note) THEN
        RAISE EXCEPTION 'checkpoints are append-only (notes may gain cosignatures)'
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NEW;
END
$fn$""",
]
_PG_TRIGGERS = [
    "CREATE TRIGGER records_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON records"
    " FOR EACH STATEMENT EXECUTE FUNCTION coldtrace_append_only('records')",
    "CREATE TRIGGER checkpoints_no_update BEFORE UPDATE ON checkpoints"
    " FOR EACH ROW EXECUTE FUNCTION coldtrace_checkpoint_update()",
    "CREATE TRIGGER checkpoints_append_only BEFORE DELETE OR TRUNCATE ON checkpoints"
    " FOR EACH STATEMENT EXECUTE FUNCTION coldtrace_append_only('checkpoints')",
    "CREATE TRIGGER audit_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON audit"
    " FOR EACH STATEMENT EXECUTE FUNCTION coldtrace_append_only('audit log entries')",
]


def append_only_ddl(dialect: str, *, replace: bool = False) -> list[str]:
    """The statements that make records, checkpoints and audit append-only on
    ``dialect`` ("sqlite" or "postgresql"). ``replace`` (SQLite): drop the
    triggers of the same name first (a database made by older code)."""
    if dialect == "sqlite":
        out = []
        for name, ddl in _SQLITE_TRIGGERS.items():
            if replace:
                out.append(f"DROP TRIGGER IF EXISTS {name}")
            out.append(ddl)
        return out
    if dialect == "postgresql":
        return [*_PG_FUNCTIONS, *_PG_TRIGGERS]
    raise ValueError(f"no append-only triggers for the {dialect} dialect")
