"""The cloud's configuration: ``cloud.toml`` in its data directory.

```toml
[cloud]
database = "cloud.db"          # a SQLite file (relative to the directory) or a URL:
                                # postgresql+psycopg://user@host/db
witness_name = "witness.cloud.example"   # the cloud's witness key name (origin syntax)
public_url = "http://127.0.0.1:8600"     # how clients reach it (printed in trace URLs)
quorum = 1                     # witness quorum written into the served trust file
public_rate = 60               # requests per minute per client on public endpoints
listen = "127.0.0.1:8600"

[[evm]]                        # optional, one per chain: where EVM anchors are checked
chain_id = 31337
rpc_url = "http://127.0.0.1:8545"
```

Without an ``[[evm]]`` entry for a receipt's chain, a pushed EVM receipt is kept
but not verified (the batch is not refused for it), and a trace's EVM anchors
are reported unverifiable.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from protocol.note import is_valid_key_name

__all__ = ["CloudConfig", "ConfigError", "load_config"]

FILE = "cloud.toml"
WITNESS_KEY = "witness.key"


class ConfigError(ValueError):
    pass


@dataclass
class CloudConfig:
    directory: Path
    database: str = "cloud.db"
    witness_name: str = "witness.cloud.example"
    public_url: str = "http://127.0.0.1:8600"
    quorum: int = 1
    public_rate: int = 60
    listen: str = "127.0.0.1:8600"
    evm: dict[int, str] = field(default_factory=dict)  # chain id -> JSON-RPC URL ([[evm]])

    def evm_rpc(self) -> Any:
        """A JSON-RPC call for the one configured EVM chain (None when there is none).
        ``protocol.verify`` takes one endpoint: with several chains configured, the
        first is used and receipts of the others are reported unverifiable."""
        if not self.evm:
            return None
        from protocol.rpc import json_rpc

        return json_rpc(next(iter(self.evm.values())))

    @property
    def database_url(self) -> str:
        if "://" in self.database:
            return self.database
        path = Path(self.database)
        return str(path if path.is_absolute() else self.directory / path)

    @property
    def witness_key(self) -> Path:
        return self.directory / WITNESS_KEY

    def text(self) -> str:
        return (
            "[cloud]\n"
            f'database = "{self.database}"\n'
            f'witness_name = "{self.witness_name}"\n'
            f'public_url = "{self.public_url}"\n'
            f"quorum = {self.quorum}\n"
            f"public_rate = {self.public_rate}\n"
            f'listen = "{self.listen}"\n'
        ) + "".join(
            f'\n[[evm]]\nchain_id = {cid}\nrpc_url = "{url}"\n' for cid, url in self.evm.items()
        )


def load_config(directory: str | Path) -> CloudConfig:
    d = Path(directory)
    path = d / FILE
    try:
        doc = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path} does not exist: run `coldtrace cloud init --dir {d}`") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: {e}") from None
    section = doc.get("cloud", {})
    known = {"database", "witness_name", "public_url", "quorum", "public_rate", "listen"}
    extra = set(section) - known
    if extra or set(doc) - {"cloud", "evm"}:
        unknown = sorted(extra | (set(doc) - {"cloud", "evm"}))
        raise ConfigError(f"{path}: unknown setting(s) {unknown}")
    cfg = CloudConfig(d, **section)
    cfg.evm = _evm_entries(doc.get("evm", []), path)
    if not is_valid_key_name(cfg.witness_name):
        raise ConfigError(f"{path}: witness_name {cfg.witness_name!r} is not a key name")
    if type(cfg.quorum) is not int or cfg.quorum < 0:
        raise ConfigError(f"{path}: quorum must be an integer >= 0")
    if type(cfg.public_rate) is not int or cfg.public_rate < 1:
        raise ConfigError(f"{path}: public_rate must be an integer >= 1")
    return cfg


def _evm_entries(raw: Any, path: Path) -> dict[int, str]:
    """``[[evm]]`` chain_id, rpc_url: one JSON-RPC endpoint per chain."""
    if not isinstance(raw, list):
        raise ConfigError(f"{path}: [[evm]] must be an array of tables")
    out: dict[int, str] = {}
    for e in raw:
        if not isinstance(e, dict) or set(e) != {"chain_id", "rpc_url"}:
            raise ConfigError(f"{path}: each [[evm]] has exactly chain_id and rpc_url")
        cid, url = e["chain_id"], e["rpc_url"]
        if type(cid) is not int or cid < 1 or cid in out:
            raise ConfigError(f"{path}: [[evm]] chain_id {cid!r} must be a distinct integer >= 1")
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise ConfigError(f"{path}: [[evm]] rpc_url must be http(s)://, not {url!r}")
        out[cid] = url
    return out
