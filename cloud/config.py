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
```
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

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
    if extra or set(doc) - {"cloud"}:
        raise ConfigError(f"{path}: unknown setting(s) {sorted(extra | (set(doc) - {'cloud'}))}")
    cfg = CloudConfig(d, **section)
    if not is_valid_key_name(cfg.witness_name):
        raise ConfigError(f"{path}: witness_name {cfg.witness_name!r} is not a key name")
    if type(cfg.quorum) is not int or cfg.quorum < 0:
        raise ConfigError(f"{path}: quorum must be an integer >= 0")
    if type(cfg.public_rate) is not int or cfg.public_rate < 1:
        raise ConfigError(f"{path}: public_rate must be an integer >= 1")
    return cfg
