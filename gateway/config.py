"""``gateway.toml``: everything a gateway needs to know, read with tomllib.

Relative paths are relative to the directory of the configuration file.
``coldtrace gateway init`` writes a complete file with fresh keys; the
sections are::

    [gateway]   id (the kid of acks, a protocol id §1), data_dir
    [mqtt]      host, port, username, password | password_file, client_id,
                keepalive, tls_ca, tls_cert, tls_key, share_group
    [ingest]    batch_size, batch_wait, verify_mode, verify_workers, future_skew,
                holdover_skew, min_time, ack_interval, max_backlog
    [log]       origin, key_file (the log's Ed25519 note key, skey text),
                checkpoint_interval (s), checkpoint_leaves
    [ledger]    backend ("local"), id, key_file, path
    [registry]  id, key_file (P-256, only needed to sign registry records),
                public_key (base64 SEC1; read from key_file when absent),
                devices, places, gtins (the registry's scopes, docs/protocol.md
                §10: lists of patterns, ``*`` any characters; default ["*"]),
                restate_interval (s; restate every binding and profile chain
                whose last statement is older, when key_file is there;
                0 = never; default 86400)
    [metrics]   port (Prometheus endpoint; absent or 0: off), host
    [alerts]    profiles, places, webhook...: read by gateway/alerts.py, kept as is

Unknown keys are refused, so a typo is an error rather than a silent default.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

__all__ = [
    "ConfigError",
    "GatewayConfig",
    "IngestConfig",
    "LedgerConfig",
    "LogConfig",
    "MetricsConfig",
    "MqttConfig",
    "RegistryConfig",
    "load_config",
    "render_config",
]


class ConfigError(Exception):
    """The configuration file is missing, malformed or inconsistent."""


@dataclass
class MqttConfig:
    host: str = "127.0.0.1"
    port: int = 1883
    username: str | None = None
    password: str | None = None
    password_file: Path | None = None
    client_id: str | None = None  # defaults to the user name (the broker may force that)
    keepalive: int = 30
    tls_ca: Path | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None
    share_group: str | None = None  # subscribe as $share/<group>/... (several gateways)

    def secret(self) -> str | None:
        """The password, from ``password`` or the first line of ``password_file``."""
        if self.password is not None:
            return self.password
        if self.password_file is not None:
            return self.password_file.read_text(encoding="utf-8").splitlines()[0].strip()
        return None


@dataclass
class IngestConfig:
    batch_size: int = 500  # records per commit; keep <= the broker's max_inflight_messages
    batch_wait: float = 0.02  # s to wait for a batch to fill before committing it anyway
    verify_mode: str = "processes"  # or "threads" (see gateway/ingest.py ProcessVerifier)
    verify_workers: int = 2  # signature checks in parallel: one per core
    future_skew: int = 300  # s a synced clock (tq 2, 3) may be ahead of the gateway's
    holdover_skew: int = 86400  # s a clock in holdover (tq 1) may be ahead
    min_time: int = 1577836800  # 2020-01-01: a set clock (tq >= 1) earlier than this is wrong
    ack_interval: float = 0.2  # s between two acks to one device (acks coalesce)
    max_backlog: int = 20000  # messages read from the broker but not yet committed


@dataclass
class LogConfig:
    origin: str = "coldtrace.local/gateway"
    key_file: Path = Path("keys/log.skey")
    checkpoint_interval: float = 10.0
    checkpoint_leaves: int = 10000


@dataclass
class LedgerConfig:
    backend: str = "local"
    id: str = "coldtrace.local/gateway/ledger"
    key_file: Path = Path("keys/ledger.pem")
    path: Path | None = None  # default: <data_dir>/ledger.db


@dataclass
class RegistryConfig:
    id: str = "registry"
    key_file: Path | None = None
    public_key: str | None = None  # base64 SEC1 P-256
    # Scopes (docs/protocol.md §10): the device ids, places and GTINs this
    # registry speaks for, as patterns; the trust file pins them.
    devices: list[str] = field(default_factory=lambda: ["*"])
    places: list[str] = field(default_factory=lambda: ["*"])
    gtins: list[str] = field(default_factory=lambda: ["*"])
    restate_interval: int = 86400  # s; 0: the gateway never restates on its own


@dataclass
class MetricsConfig:
    port: int = 0  # 0: no metrics endpoint
    host: str = "127.0.0.1"


@dataclass
class GatewayConfig:
    id: str = "gateway"
    data_dir: Path = Path("var/gateway")
    mqtt: MqttConfig = field(default_factory=MqttConfig)
    ingest: IngestConfig = field(default_factory=IngestConfig)
    log: LogConfig = field(default_factory=LogConfig)
    ledger: LedgerConfig = field(default_factory=LedgerConfig)
    registry: RegistryConfig = field(default_factory=RegistryConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    alerts: dict[str, Any] = field(default_factory=dict)  # gateway/alerts.py reads it
    path: Path | None = None  # the file this was read from

    @property
    def db_path(self) -> Path:
        return self.data_dir / "gateway.db"

    @property
    def tree_dir(self) -> Path:
        return self.data_dir / "tree"

    @property
    def ledger_path(self) -> Path:
        return self.ledger.path if self.ledger.path is not None else self.data_dir / "ledger.db"


_PATH_FIELDS = {"password_file", "tls_ca", "tls_cert", "tls_key", "key_file", "path", "data_dir"}


def _section(cls: type, raw: Any, where: str, base: Path) -> Any:
    if not isinstance(raw, dict):
        raise ConfigError(f"[{where}] must be a table")
    known = {f.name: f for f in fields(cls)}
    values: dict[str, Any] = {}
    for key, value in raw.items():
        if key not in known or (key in ("path", "alerts") and cls is GatewayConfig):
            raise ConfigError(f"[{where}] has an unknown key {key!r}")
        if key in _PATH_FIELDS and value is not None:
            if not isinstance(value, str):
                raise ConfigError(f"[{where}] {key} must be a path string")
            p = Path(value).expanduser()
            value = p if p.is_absolute() else base / p
        values[key] = value
    try:
        obj = cls(**values)
    except TypeError as exc:
        raise ConfigError(f"[{where}]: {exc}") from None
    for f in fields(cls):
        want = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", "")
        value = getattr(obj, f.name)
        if want in ("int",) and (not isinstance(value, int) or isinstance(value, bool)):
            raise ConfigError(f"[{where}] {f.name} must be an integer, got {value!r}")
        if want == "float" and (not isinstance(value, (int, float)) or isinstance(value, bool)):
            raise ConfigError(f"[{where}] {f.name} must be a number, got {value!r}")
    return obj


def load_config(path: str | Path) -> GatewayConfig:
    """Read and check ``gateway.toml``; raise ConfigError with the reason."""
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"no configuration file {path}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    base = path.resolve().parent
    sections = {
        "mqtt": MqttConfig,
        "ingest": IngestConfig,
        "log": LogConfig,
        "ledger": LedgerConfig,
        "registry": RegistryConfig,
        "metrics": MetricsConfig,
    }
    top = raw.pop("gateway", {})
    alerts = raw.pop("alerts", {})
    if not isinstance(alerts, dict):
        raise ConfigError("[alerts] must be a table")
    unknown = set(raw) - set(sections)
    if unknown:
        raise ConfigError(f"{path}: unknown sections {sorted(unknown)}")
    cfg = _section(GatewayConfig, top, "gateway", base)
    for name, cls in sections.items():
        setattr(cfg, name, _section(cls, raw.get(name, {}), name, base))
    # Defaults that are paths are relative to the file as well.
    for obj, attr in ((cfg.log, "key_file"), (cfg.ledger, "key_file")):
        p = getattr(obj, attr)
        if not p.is_absolute():
            setattr(obj, attr, base / p)
    if not cfg.data_dir.is_absolute():
        cfg.data_dir = base / cfg.data_dir
    cfg.alerts = alerts
    cfg.path = path
    _check(cfg)
    return cfg


def _check(cfg: GatewayConfig) -> None:
    from protocol.checkpoint import check_origin
    from protocol.cose import ID_PATTERN
    from protocol.errors import VerificationError

    if not ID_PATTERN.fullmatch(cfg.id):
        raise ConfigError(f"[gateway] id {cfg.id!r} is not a protocol id (1-32 of [a-z0-9._-])")
    if not ID_PATTERN.fullmatch(cfg.registry.id):
        raise ConfigError(f"[registry] id {cfg.registry.id!r} is not a protocol id")
    for scope in ("devices", "places", "gtins"):
        value = getattr(cfg.registry, scope)
        if not isinstance(value, list) or not all(isinstance(p, str) and p for p in value):
            raise ConfigError(
                f"[registry] {scope} must be a list of non-empty patterns, got {value!r}"
            )
    if cfg.registry.restate_interval < 0:
        raise ConfigError("[registry] restate_interval must be >= 0 (0: off)")
    try:
        check_origin(cfg.log.origin)
        check_origin(cfg.ledger.id)
    except VerificationError as exc:
        raise ConfigError(f"log origin or ledger id: {exc}") from None
    ing = cfg.ingest
    if ing.verify_mode not in ("processes", "threads"):
        raise ConfigError(
            f"[ingest] verify_mode must be processes or threads, not {ing.verify_mode!r}"
        )
    if ing.batch_size < 1 or ing.verify_workers < 1 or ing.max_backlog < ing.batch_size:
        raise ConfigError(
            "[ingest] batch_size and verify_workers must be >= 1, max_backlog >= batch_size"
        )
    if cfg.ledger.backend != "local":
        raise ConfigError(
            f"[ledger] backend {cfg.ledger.backend!r} is not available (this gateway has: local)"
        )
    if cfg.log.checkpoint_interval <= 0 or cfg.log.checkpoint_leaves < 1:
        raise ConfigError("[log] checkpoint_interval and checkpoint_leaves must be positive")


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, Path):
        value = str(value)
    escaped = str(value).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def render_config(sections: dict[str, dict[str, Any]]) -> str:
    """TOML text for ``{section: {key: value}}`` (None values are left out)."""
    out = ["# ColdTrace gateway configuration (gateway/config.py documents every key).", ""]
    for name, values in sections.items():
        out.append(f"[{name}]")
        for key, value in values.items():
            if value is not None:
                out.append(f"{key} = {_toml_value(value)}")
        out.append("")
    return "\n".join(out)
