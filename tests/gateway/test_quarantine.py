"""The quarantine's caps and the per-device rate limit, on the real store and pipeline.

No broker here (tests/gateway/test_flood.py floods a real one): messages go
through :class:`tests.gateway.core.Core`'s pipeline, so every refusal takes
the path a received message takes, up to the SQLite commit.
"""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

import pytest

from gateway.evidence.quarantine import Quarantine, QuarantineLimits, disk_bytes
from gateway.evidence.ratelimit import DeviceRateLimiter
from gateway.evidence.store import SCHEMA_VERSION, RejectRow, SqlStore, WriteBatch
from gateway.transport.mqtt import Inbound
from tests.gateway.core import Core, rec
from tests.gateway.devices import SimDevice, open_ack


def chain(digests: list[bytes]) -> bytes:
    d = bytes(32)
    for h in digests:
        d = hashlib.sha256(d + h).digest()
    return d


def garbage(n: int, size: int, tag: bytes = b"") -> list[bytes]:
    return [tag + i.to_bytes(4, "big") + bytes([i % 251]) * (size - 4 - len(tag)) for i in range(n)]


@pytest.fixture
def core(tmp_path: Path):
    c = Core(tmp_path)
    yield c
    c.close()


def test_a_long_refusal_is_kept_cut_with_its_length_and_digest(core: Core) -> None:
    core.ingestor.quarantine = Quarantine(core.store, QuarantineLimits(keep_bytes=100))
    big, small = garbage(1, 16384)[0], b"\xa0" * 50
    core.send(("ct/v1/tl-x/rec", big), ("ct/v1/tl-x/rec", small))
    rows = {r.reason: r for r in core.store.rejects()}
    cut = rows["oversized"]
    assert cut.raw == big[:100] and cut.size == 16384 and cut.truncated
    whole = rows["bad_cose"]
    assert whole.raw == small and whole.size is None and not whole.truncated
    db = sqlite3.connect(core.store.path)
    (digest,) = db.execute("SELECT digest FROM quarantine WHERE size = 16384").fetchone()
    db.close()
    assert digest == hashlib.sha256(big).digest()  # of the whole message, not of the cut


def test_a_full_quarantine_counts_new_refusals_with_a_digest_chain(core: Core) -> None:
    q = Quarantine(core.store, QuarantineLimits(max_rows=5, keep_bytes=1024))
    core.ingestor.quarantine = q
    a, b = garbage(12, 2000, b"A"), garbage(8, 300, b"B")
    core.send(*[("ct/v1/tl-a/rec", m) for m in a[:4]])  # 4 stored
    first = [(r.id, r.raw) for r in core.store.rejects(limit=100)]
    core.send(*[("ct/v1/tl-a/rec", m) for m in a[4:]], *[("ct/v1/tl-b/rec", m) for m in b])
    stored = core.store.rejects(limit=100)
    assert len(stored) == 5 and q.full
    assert set(first) <= {(r.id, r.raw) for r in stored}  # nothing stored is deleted
    # The 5th row is a[4] (cut to 1024 bytes); everything after it is counted.
    assert a[4][:1024] in {r.raw for r in stored}
    dropped = {(d.cause, d.reason, d.device): d for d in core.store.quarantine_dropped()}
    assert set(dropped) == {("full", "oversized", "tl-a"), ("full", "bad_cose", "tl-b")}
    da = dropped[("full", "oversized", "tl-a")]
    assert da.count == 7 and da.bytes == 7 * 2000
    assert da.digest == chain([hashlib.sha256(m).digest() for m in a[5:]])
    db_ = dropped[("full", "bad_cose", "tl-b")]
    assert db_.count == 8 and db_.digest == chain([hashlib.sha256(m).digest() for m in b])
    # More of the same folds into the same chain, in order.
    more = garbage(3, 300, b"C")
    core.send(*[("ct/v1/tl-b/rec", m) for m in more])
    db2 = next(d for d in core.store.quarantine_dropped() if d.device == "tl-b")
    assert db2.count == 11
    assert db2.digest == chain([hashlib.sha256(m).digest() for m in b + more])
    assert q.stats()["dropped"] == {"full": 18, "rate": 0}
    assert core.store.quarantine_usage()[0] == 5


def test_the_byte_cap_holds_and_a_purge_makes_room(core: Core) -> None:
    q = Quarantine(core.store, QuarantineLimits(max_bytes=10_000, keep_bytes=1000), refresh=0)
    core.ingestor.quarantine = q
    core.send(*[("ct/v1/tl-a/rec", m) for m in garbage(30, 4000)])
    rows, content = core.store.quarantine_usage()
    per_row = disk_bytes(1, content // rows)  # 1.25 x (1000 raw + detail + topic) + 160
    assert rows == 10_000 // per_row == 6 and q.bytes == disk_bytes(rows, content) <= 10_000
    assert sum(d.count for d in core.store.quarantine_dropped()) == 24
    done = core.store.purge_rejects(actor="test")
    assert done["rows"] == 6 and done["messages"] == 6 and done["bytes"] == 6 * 4000
    assert core.store.quarantine_usage() == (0, 0)
    core.send(("ct/v1/tl-a/rec", garbage(1, 4000, b"Z")[0]))  # room again (re-read)
    assert core.store.quarantine_usage()[0] == 1 and not q.full
    purged = [d for d in core.store.quarantine_dropped() if d.cause == "purged"]
    assert sum(d.count for d in purged) == 6
    audit = core.store.audit_log(target="quarantine")
    assert audit[0]["action"] == "purge" and audit[0]["detail"]["rows"] == 6


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_over_the_rate_a_record_is_counted_not_stored_and_not_acked(core: Core) -> None:
    dev, other = SimDevice("tl-r1"), SimDevice("tl-r2")
    core.register(dev, other)
    clock = Clock()
    core.pipeline.limiter = DeviceRateLimiter(2, 3, clock=clock)
    raws = [dev.reading() for _ in range(6)]
    out = core.send(*[rec(dev, r) for r in raws], rec(other, other.reading()))
    assert len(out.accepted) == 4 and out.rejected == 3  # 3 of dev's, 1 of other's bucket
    assert sorted(out.mids[1]) == sorted(range(core.mid - 6, core.mid + 1))  # all PUBACKed
    assert [r.seq for r in core.store.records_of(dev.id, 0, 99)] == [0, 1, 2]
    ack = core.ingestor.ack_for(dev.id, 0)
    assert ack is not None and open_ack(ack, dev.ack_key)[0] == 2  # not past what is stored
    (d,) = [d for d in core.store.quarantine_dropped() if d.cause == "rate"]
    assert (d.reason, d.device, d.count) == ("rate_limited", dev.id, 3)
    assert d.digest == chain([hashlib.sha256(r).digest() for r in raws[3:]])
    assert core.store.rejects() == []  # never stored one by one
    clock.t += 1.5  # 3 tokens again: the device's resend gets through
    out = core.send(*[rec(dev, r) for r in raws[3:]])
    assert len(out.accepted) == 3
    assert [r.raw for r in core.store.records_of(dev.id, 0, 99)] == raws
    assert open_ack(core.ingestor.ack_for(dev.id, 0), dev.ack_key)[0] == 5


def test_registered_devices_have_their_own_buckets_the_rest_share_one() -> None:
    clock = Clock()
    lim = DeviceRateLimiter(1, 2, clock=clock)

    def msg(topic: str) -> Inbound:
        return Inbound(topic, b"x", 1, 1, 0.0)

    known = {"tl-a", "tl-b"}
    ok, over = lim.split([msg("ct/v1/tl-a/rec")] * 3 + [msg("ct/v1/tl-b/state")] * 2, known)
    assert len(ok) == 4 and len(over) == 1
    strangers = [msg(f"ct/v1/x{i}/rec") for i in range(3)] + [msg("bogus")]
    ok, over = lim.split(strangers, known)
    assert len(ok) == 2 and len(over) == 2  # one bucket for every unknown topic
    ok, over = lim.split([Inbound("outbox/r", b"x", 0, 0, 0.0, outbox_id=1)] * 5, known)
    assert len(ok) == 5  # the outboxes are not charged
    assert lim.limited == {"tl-a": 1, "*": 2}
    assert DeviceRateLimiter(0, 0).split([msg("ct/v1/tl-a/rec")] * 100, known)[1] == []


def test_a_version_4_database_gains_the_quarantine_tables(tmp_path: Path) -> None:
    s = SqlStore(tmp_path / "g.db")
    s.commit(WriteBatch(rejects=[RejectRow(1790000000, "ct/v1/tl-1/rec", "bad_cose", "x", b"j")]))
    s.close()
    db = sqlite3.connect(tmp_path / "g.db", isolation_level=None)
    db.execute("DROP TABLE quarantine_dropped")
    db.execute("DROP TABLE released")
    db.execute("ALTER TABLE quarantine DROP COLUMN size")
    db.execute("UPDATE meta SET value = '4' WHERE key = 'schema'")
    db.execute("DROP TABLE alembic_version")  # as the store before Alembic left it (D27)
    db.close()
    s = SqlStore(tmp_path / "g.db")
    assert s.get_meta("schema") == SCHEMA_VERSION == "5"
    assert [r.raw for r in s.rejects()] == [b"j"] and s.quarantine_dropped() == []
    assert s.release_rejects() == (1, 0) and s.released_pending()[0][1:] == ("ct/v1/tl-1/rec", b"j")
    s.close()


def test_metrics_show_the_quarantine_and_worker_restarts() -> None:
    from gateway.metrics import render

    text = render(
        {
            "quarantine": {
                "rows": 7,
                "bytes": 9000,
                "max_rows": 100,
                "max_bytes": 10000,
                "full": True,
                "dropped": {"full": 3, "rate": 40},
            },
            "verify_restarts": 2,
        }
    )
    for line in (
        "coldtrace_quarantine_rows 7",
        "coldtrace_quarantine_bytes 9000",
        "coldtrace_quarantine_limit_bytes 10000",
        "coldtrace_quarantine_full 1",
        'coldtrace_quarantine_dropped_total{cause="rate"} 40',
        "coldtrace_verify_worker_restarts_total 2",
    ):
        assert line in text.splitlines(), line


@pytest.mark.parametrize(
    ("section", "why"),
    [
        ("[ingest]\ndevice_rate = -1\n", "device_rate must be >= 0"),
        ("[ingest]\ndevice_rate = 5\ndevice_burst = 0\n", "device_burst >= 1"),
        ("[quarantine]\nkeep_bytes = 10\n", "keep_bytes >= 64"),
        ("[quarantine]\nmax_rows = 0\n", "max_rows and max_bytes must be >= 1"),
        ("[quarantine]\nmax_rowz = 5\n", "unknown key 'max_rowz'"),
    ],
)
def test_bad_limits_are_refused_with_the_reason(tmp_path: Path, section: str, why: str) -> None:
    from gateway.config import ConfigError, load_config

    (tmp_path / "gateway.toml").write_text(section)
    with pytest.raises(ConfigError, match=why):
        load_config(tmp_path / "gateway.toml")
    (tmp_path / "gateway.toml").write_text("[quarantine]\nmax_bytes = 1048576\n")
    cfg = load_config(tmp_path / "gateway.toml")
    assert (cfg.quarantine.max_bytes, cfg.quarantine.keep_bytes) == (1 << 20, 2048)
    assert (cfg.ingest.device_rate, cfg.ingest.device_burst) == (200.0, 1000)
