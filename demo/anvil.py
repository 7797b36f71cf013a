"""A local EVM node for the demo, the benchmarks and the tests: Anvil from npm.

``Anvil(chain_id=31337).start()`` runs the binary of the npm package
``@foundry-rs/anvil`` (its platform package, ``@foundry-rs/anvil-linux-amd64``
here: the npm postinstall that links it may be blocked, so the packaged binary
is run directly) on 127.0.0.1 and a free port, and waits until it answers
``eth_chainId``. ``stop()`` ends it (SIGTERM, so that ``--state`` is dumped).
With ``state=PATH`` the chain is loaded from and saved to that file, which lets
a caller stop the node and start it again on the same port with the same chain
(an outage, not a new chain).

Also :meth:`Anvil.rpc` (one JSON-RPC call) and the node's test methods that
make real chain events: ``mine``, ``snapshot``/``revert`` (a reorganisation:
blocks after the snapshot are replaced by new ones), ``set_balance``.
"""

from __future__ import annotations

import json
import os
import platform
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any

__all__ = ["Anvil", "AnvilError", "anvil_binary"]

_REPO = Path(__file__).resolve().parents[1]
_ARCH = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}


class AnvilError(RuntimeError):
    """Anvil is missing, did not start, or refused a call."""


def anvil_binary() -> Path:
    """The Anvil binary from node_modules (``$COLDTRACE_ANVIL`` overrides it)."""
    env = os.environ.get("COLDTRACE_ANVIL")
    if env:
        return Path(env)
    system = platform.system().lower()
    arch = _ARCH.get(platform.machine().lower(), platform.machine().lower())
    name = "anvil.exe" if system == "windows" else "anvil"
    path = _REPO / "node_modules" / "@foundry-rs" / f"anvil-{system}-{arch}" / "bin" / name
    if not path.exists():
        raise AnvilError(
            f"Anvil is not installed ({path} is missing): run `npm ci` "
            "(`make system`, scripts/ensure-system.sh)"
        )
    return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Anvil:
    """One Anvil process on loopback."""

    def __init__(
        self,
        *,
        chain_id: int = 31337,
        block_time: float | None = None,
        port: int | None = None,
        state: Path | None = None,
        log_file: Path | None = None,
    ) -> None:
        self.chain_id = chain_id
        self.block_time = block_time
        self.port = port or _free_port()
        self.state = state
        self.log_file = log_file
        self.proc: subprocess.Popen[bytes] | None = None
        self._id = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> Anvil:
        cmd = [
            str(anvil_binary()),
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--chain-id",
            str(self.chain_id),
            "--silent",
        ]
        if self.block_time is not None:
            cmd += ["--block-time", str(self.block_time)]
        if self.state is not None:
            cmd += ["--state", str(self.state)]
        out = open(self.log_file, "ab") if self.log_file else subprocess.DEVNULL  # noqa: SIM115
        try:
            self.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
        finally:
            if self.log_file:
                out.close()  # type: ignore[union-attr]
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise AnvilError(f"Anvil exited with status {self.proc.returncode} at start")
            try:
                if int(self.rpc("eth_chainId"), 16) == self.chain_id:
                    return self
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise AnvilError(f"Anvil did not answer on {self.url} within {timeout:.0f} s")
            time.sleep(0.05)

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def __enter__(self) -> Anvil:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- JSON-RPC ------------------------------------------------------------------

    def rpc(self, method: str, *params: Any) -> Any:
        self._id += 1
        body = json.dumps({"jsonrpc": "2.0", "id": self._id, "method": method, "params": params})
        req = urllib.request.Request(
            self.url, body.encode(), headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(req, timeout=10) as r:
            doc = json.loads(r.read())
        if "error" in doc:
            raise AnvilError(f"{method}: {doc['error'].get('message', doc['error'])}")
        return doc["result"]

    def block_number(self) -> int:
        return int(self.rpc("eth_blockNumber"), 16)

    def mine(self, blocks: int = 1) -> None:
        """Mine ``blocks`` blocks now (with whatever transactions are pending)."""
        self.rpc("anvil_mine", hex(blocks))

    def snapshot(self) -> str:
        return str(self.rpc("evm_snapshot"))

    def revert(self, snapshot_id: str) -> None:
        """Go back to a snapshot: every later block and its transactions are gone."""
        if self.rpc("evm_revert", snapshot_id) is not True:
            raise AnvilError(f"evm_revert {snapshot_id} refused")

    def set_balance(self, address: str, wei: int) -> None:
        self.rpc("anvil_setBalance", address, hex(wei))

    def balance(self, address: str) -> int:
        return int(self.rpc("eth_getBalance", address, "latest"), 16)
