"""A real cloud for the gateway tests: ``coldtrace cloud init`` and the administration
commands on a SQLite database, served by uvicorn on a loopback port from a thread
(stopped and started again on the same port to simulate an outage or a restart)."""

from __future__ import annotations

import asyncio
import base64
import threading
import time
from pathlib import Path
from typing import Any

import uvicorn
from sqlalchemy import func, select

from cloud import db
from cloud.app import create_app
from cloud.config import load_config
from gateway.config import GatewayConfig
from gateway.transport.broker import free_port
from protocol.cli import main as coldtrace
from protocol.keys import load_ed25519_private_key, load_p256_private_key, p256_public_to_sec1
from protocol.note import NoteSigner, WitnessVerifier


class CloudServer:
    def __init__(self, directory: Path, port: int | None = None) -> None:
        self.dir = directory
        self.port = port or free_port()
        assert self.cli("init", "--witness-name", "witness.cloud.test") == 0
        toml = self.dir / "cloud.toml"
        text = toml.read_text().replace("public_rate = 60", "public_rate = 100000")
        toml.write_text(text)
        self.cfg = load_config(self.dir)
        self.engine = db.connect(self.cfg.database_url)
        self.server: uvicorn.Server | None = None
        self.thread: threading.Thread | None = None
        self._orgs: set[str] = set()
        self.push_delay = 0.0  # s each push request waits before the app sees it
        self.answer_delay = 0.0  # s each push's answer waits after the cloud handled it
        self.in_flight = 0  # push requests received and not yet answered
        self.app: Any = None
        # push requests as received, (path, body, Authorization), when a list
        self.recorded: list[tuple[str, bytes, str]] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def cli(self, *args: str) -> int:
        cmd, rest = args[0], list(args[1:])
        if cmd in ("init", "trust"):
            return coldtrace(["cloud", cmd, "--dir", str(self.dir), *rest])
        sub = rest.pop(0)
        return coldtrace(["cloud", cmd, sub, "--dir", str(self.dir), *rest])

    def witness(self) -> WitnessVerifier:
        from cloud.witness import load_or_create_witness

        return load_or_create_witness(self.cfg.witness_key, self.cfg.witness_name).verifier()

    def join(
        self,
        org: str,
        cfg: GatewayConfig,
        devices: str = "*",
        places: str = "*",
        gtins: str = "*",
    ) -> None:
        """Register a gateway's log, registry (with scopes: one pattern each; the
        default, every scope) and local ledger under ``org``."""
        if org not in self._orgs:
            assert self.cli("org", "add", org) == 0
            self._orgs.add(org)
        log = NoteSigner.from_skey(cfg.log.key_file.read_text().strip())
        assert self.cli("log", "add", org, log.vkey) == 0
        reg = load_p256_private_key(cfg.registry.key_file).public_key()
        key = base64.b64encode(p256_public_to_sec1(reg)).decode()
        assert (
            self.cli(
                "registry",
                "add",
                org,
                "--id",
                cfg.registry.id,
                "--key",
                key,
                "--devices",
                devices,
                "--places",
                places,
                "--gtins",
                gtins,
            )
            == 0
        )
        led = load_ed25519_private_key(cfg.ledger.key_file).public_key().public_bytes_raw()
        assert (
            self.cli(
                "ledger", "add", org, "--id", cfg.ledger.id, "--key", base64.b64encode(led).decode()
            )
            == 0
        )

    def start(self) -> None:
        app = self.app = create_app(self.cfg, self.engine)

        async def slow(scope: Any, receive: Any, send: Any) -> None:
            if scope["type"] != "http" or not scope["path"].endswith("/push"):
                await app(scope, receive, send)
                return
            self.in_flight += 1
            try:
                if self.push_delay:
                    await asyncio.sleep(self.push_delay)
                if self.recorded is not None:
                    receive = self._recorder(scope, receive)
                await app(scope, receive, self._delayed(send) if self.answer_delay else send)
            finally:
                self.in_flight -= 1

        config = uvicorn.Config(
            slow, host="127.0.0.1", port=self.port, log_level="warning", lifespan="off"
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            assert time.monotonic() < deadline, "the cloud did not start"
            time.sleep(0.02)

    def _delayed(self, send: Any) -> Any:
        async def delayed(msg: Any) -> None:
            if msg["type"] == "http.response.start":
                await asyncio.sleep(self.answer_delay)
            await send(msg)

        return delayed

    def _recorder(self, scope: Any, receive: Any) -> Any:
        """``receive`` that keeps a copy of the request (a push to replay later)."""
        chunks: list[bytes] = []
        auth = dict(scope["headers"]).get(b"authorization", b"").decode()

        async def recv() -> Any:
            msg = await receive()
            if msg["type"] == "http.request":
                chunks.append(msg.get("body", b""))
                if not msg.get("more_body") and self.recorded is not None:
                    self.recorded.append((scope["path"], b"".join(chunks), auth))
            return msg

        return recv

    def stop(self) -> None:
        """Stop serving (requests in flight are answered first)."""
        if self.server is not None and self.thread is not None:
            self.server.should_exit = True
            self.thread.join(10)
            self.server = self.thread = None

    # --- what the cloud holds (read from its database) ---------------------------------

    def log_row(self, origin: str) -> Any:
        with self.engine.connect() as conn:
            return conn.execute(select(db.logs).where(db.logs.c.origin == origin)).first()

    def size(self, origin: str) -> int:
        row = self.log_row(origin)
        return 0 if row is None else int(row.size)

    def count(self, table: Any, origin: str) -> int:
        row = self.log_row(origin)
        with self.engine.connect() as conn:
            return int(
                conn.execute(
                    select(func.count()).select_from(table).where(table.c.log_id == row.id)
                ).scalar_one()
            )
