"""Test kit for the cloud: a service on a real database, organisations made from
deterministic scenarios (tests/protocol/scenario.py), and pushes signed as a gateway
signs them."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from cloud import db, orgs
from cloud.app import create_app
from cloud.config import CloudConfig
from protocol import anchor
from protocol.checkpoint import Checkpoint, checkpoint_hash, sign_checkpoint
from protocol.keys import b64e
from protocol.merkle import MerkleTree
from protocol.push import PushBatch, auth_header
from tests.protocol.scenario import Scenario


@dataclass
class Kit:
    client: TestClient
    config: CloudConfig
    operator: str  # operator token

    @property
    def engine(self) -> Any:
        return self.client.app.state.cloud.engine  # type: ignore[attr-defined]

    def admin(self, method: str, path: str, **kw: Any) -> Any:
        r = self.client.request(
            method, path, headers={"Authorization": f"Bearer {self.operator}"}, **kw
        )
        assert r.status_code < 300, (path, r.status_code, r.text)
        return r.json()

    def join(self, org: str, s: Scenario, *, ledger: bool = True, **scopes: Any) -> str:
        """Register ``org`` with the scenario's log, registry (scopes) and ledger; a read token."""
        self.admin("POST", "/v1/orgs", json={"name": org})
        self.admin("POST", f"/v1/orgs/{org}/logs", json={"vkey": s.log.vkey})
        self.admin(
            "POST",
            f"/v1/orgs/{org}/registries",
            json={
                "id": s.registry.id,
                "key": b64e(s.registry.sec1),
                **{k: scopes.get(k, ["*"]) for k in ("devices", "places", "gtins")},
            },
        )
        if ledger:
            key = b64e(s.ledger.public_key().public_bytes_raw())
            self.admin("POST", f"/v1/orgs/{org}/ledgers", json={"id": ledger_id(s), "key": key})
        return str(self.admin("POST", f"/v1/orgs/{org}/tokens", json={"scopes": ["read"]})["token"])

    def token(self, org: str, scopes: Sequence[str]) -> str:
        return str(
            self.admin("POST", f"/v1/orgs/{org}/tokens", json={"scopes": list(scopes)})["token"]
        )


OPEN: list[Any] = []  # engines to dispose after the test (tests/cloud/conftest.py)


def ledger_id(s: Scenario) -> str:
    """Each scenario's log anchors on a ledger of its own (same test key, its own id)."""
    return f"{s.origin}/ledger"


def make_kit(tmp: Path, database: str | None = None) -> Kit:
    cfg = CloudConfig(tmp, database=database or str(tmp / "cloud.db"), witness_name="witness.test")
    engine = db.connect(cfg.database_url)
    OPEN.append(engine)
    with engine.begin() as conn:
        orgs.add_org(conn, None, "operator", operator=True)
        _, token = orgs.new_token(conn, None, "operator", ["read", "admin"])
    client = TestClient(create_app(cfg, engine), raise_server_exceptions=True)
    return Kit(client, cfg, token)


class LogPusher:
    """Pushes a scenario's log the way a gateway does: batches up to signed checkpoints."""

    def __init__(self, kit: Kit, s: Scenario) -> None:
        self.kit = kit
        self.s = s
        self.tree = MerkleTree()
        self.pushed = 0
        self.receipts = 0
        self.prev = bytes(32)

    def batch(self, upto: int | None = None, *, anchor_it: bool = False) -> PushBatch:
        recs = self.s.records
        end = len(recs) if upto is None else upto
        while self.tree.size < end:
            self.tree.append(recs[self.tree.size])
        cp = Checkpoint(self.s.origin, end, self.tree.root(end))
        b = PushBatch(self.pushed, list(recs[self.pushed : end]), sign_checkpoint(cp, self.s.log))
        if anchor_it:
            receipt = anchor.sign_local_entry(
                self.s.ledger,
                ledger_id(self.s),
                self.receipts,
                self.prev,
                1_790_000_000 + self.receipts,
                checkpoint_hash(cp),
            )
            self.prev = anchor.entry_hash(receipt)
            self.receipts += 1
            b.anchors.append((end, receipt.to_json()))
        return b

    def send(self, b: PushBatch, *, signer: Any = None) -> Any:
        body = json.dumps(b.to_json()).encode()
        path = f"/v1/logs/{self.s.origin}/push"
        hdr = auth_header(signer or self.s.log, "POST", path, body)
        return self.kit.client.post(path, content=body, headers={"Authorization": hdr})

    def push(self, upto: int | None = None, *, anchor_it: bool = False) -> Any:
        b = self.batch(upto, anchor_it=anchor_it)
        r = self.send(b)
        if r.status_code == 200:
            self.pushed = b.first + len(b.records)
        return r
