"""How tests/gateway/data/gateway-v4.db was made: by the SQLite store before Alembic.

    git show 9f8210b:gateway/evidence/store.py > /tmp/oldstore.py
    PYTHONPATH=$PWD python tests/gateway/data/make_gateway_v4_db.py tests/gateway/data/gateway-v4.db

The store of commit 9f8210b (``meta.schema`` 4, no ``alembic_version``) writes a
scan record, its scan row, a signer state, a reject, a checkpoint, an alert and
an audit line; tests/gateway/test_store.py opens it with today's store.
"""

# ruff: noqa
import importlib.util, sys
from pathlib import Path

spec = importlib.util.spec_from_file_location("oldstore", "/tmp/oldstore.py")
old = importlib.util.module_from_spec(spec)
sys.modules["oldstore"] = old
spec.loader.exec_module(old)
from protocol.keys import generate_p256
from protocol.record import Scan, make_record

out = Path(sys.argv[1])
out.unlink(missing_ok=True)
raw = make_record(
    Scan(
        boot=1,
        seq=0,
        time=1790000000,
        tq=2,
        prev=bytes(16),
        uid=bytes(7),
        action=1,
        place="dock",
        item="/01/09506000134352",
    ),
    "rd-1",
    generate_p256(),
)
s = old.SQLiteStore(out)
s.commit(
    old.WriteBatch(
        records=[old.StoredRecord(0, "rd-1", 0, 1, 2, 1790000000, 2, 1790000001, raw)],
        scans=[(0, bytes(7), 1, "/01/09506000134352")],
        states=[old.SignerState("rd-1", 0, b"h" * 16, 0, b"h" * 16, 1, 1, 1790000001)],
        rejects=[old.RejectRow(1790000002, "ct/v1/x/rec", "bad_cose", "not tagged", b"junk")],
        counters={"accepted": 1},
    )
)
s.add_checkpoint(old.CheckpointRow(1, bytes(32), "origin\n1\nroot\n", 1790000003))
s.record_alert(
    {"id": "a1", "kind": "temp_high", "device": "rd-1", "start": 1790000000, "phase": "start"}
)
s.add_audit("op", "acknowledge", "a1")
print(s.get_meta("schema"))
s.close()
import sqlite3

db = sqlite3.connect(out)
db.execute("PRAGMA journal_mode=DELETE")
db.execute("PRAGMA page_size=512")
db.execute("VACUUM")
db.close()
