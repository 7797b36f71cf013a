"""``gateway.toml``: everything a gateway needs to know, read with tomllib.

Relative paths are relative to the directory of the configuration file.
``coldtrace gateway init`` writes a complete file with fresh keys; the
sections are::

    [gateway]   id (the kid of acks, a protocol id §1), data_dir
    [mqtt]      host, port, username, password | password_file, client_id,
                keepalive, tls_ca, tls_cert, tls_key, share_group
    [ingest]    batch_size, batch_wait, verify_mode, verify_workers, future_skew,
                holdover_skew, min_time, ack_interval, max_backlog, device_rate
                (messages/s per registered topic device, and for all others together;
                0: no limit; default 200), device_burst (default 1000)
    [quarantine] max_bytes (default 64 MiB), max_rows (default 100000), keep_bytes
                (of a longer message only the first keep_bytes are kept; default
                2048): beyond the caps refusals are counted with a digest, not stored
    [log]       origin, key_file (the log's Ed25519 note key, skey text),
                checkpoint_interval (s), checkpoint_leaves
    [ledger]    backend ("local" | "evm"), id, key_file, path
    [ledger.evm]  rpc_url, chain_id, contract, key_file | key_env, confirmations,
                max_fee_gwei, priority_fee_gwei, gas_limit, timeout, interval,
                poll: the EVM backend (gateway/evidence/evm.py, docs/evm.md)
    [registry]  id, key_file (P-256, only needed to sign registry records),
                public_key (base64 SEC1; read from key_file when absent),
                devices, places, gtins (the registry's scopes, docs/protocol.md
                §10: lists of patterns, ``*`` any characters; default ["*"]),
                restate_interval (s; restate every binding and profile chain
                whose last statement is older, when key_file is there;
                0 = never; default 86400)
    [[registry.authorities]]  id, key (base64 SEC1 P-256), gtins: another
                registry whose product profiles (kind 6) this gateway logs, e.g.
                a brand owner signing with its own key (``coldtrace profile``);
                listed in the trust file with its gtins scope. Where its gtins
                and [registry] gtins (or another authority's) could tie - equal
                specificity, both matching one GTIN - the file is refused; else
                the more specific pattern wins (docs/protocol.md §10)
    [metrics]   port (Prometheus endpoint; absent or 0: off), host
    [alerts]    profiles, places, webhook, email ([alerts.email] host, port, from,
                to, starttls, user, password_file), escalate_after, escalate_to:
                read by gateway/alerts.py, kept as is
    [dashboard] listen ("host:port"; absent: no dashboard), token | token_file
                (required unless listen is a loopback address), upload_interval
                (s; a device is offline when nothing came for its interval plus
                offline_grace; default 3600, the firmware's), offline_grace (s;
                default 300), [dashboard.upload_intervals] "device-id" = s
                (per device, as provisioned). gateway/dashboard.py
    [cloud]     url (the cloud service, http(s)://host[:port]), interval (s between
                push rounds when idle; default 10), timeout (s per request;
                default 30), retry_max (s; longest backoff between retries, from
                1 s; default 60). Absent: the gateway pushes nowhere. gateway/push.py
    [witness]   name (the witness key's name, origin syntax; default
                "<origin>/witness"), key_file (Ed25519 PEM; default
                keys/witness.key, made on first use), interval (s; default 30)
    [[witness.peers]]  origin, vkey: a peer gateway's log this gateway witnesses
                through the cloud (needs [cloud]). gateway/witness.py
    [influx]    url, org, bucket, token | token_file (exactly one), batch_size
                (points per write; default 500), flush_interval (s; default 5),
                queue_size (points held while InfluxDB is slow or away, the
                oldest dropped beyond; default 10000). Absent: no InfluxDB
                sink. Optional copy for dashboards (gateway/influx.py); needs
                the ``influx`` extra

Unknown keys are refused, so a typo is an error rather than a silent default.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

__all__ = [
    "Authority",
    "ConfigError",
    "DashboardConfig",
    "EvmLedgerConfig",
    "GatewayConfig",
    "InfluxConfig",
    "IngestConfig",
    "LedgerConfig",
    "LogConfig",
    "MetricsConfig",
    "MqttConfig",
    "Peer",
    "PushConfig",
    "QuarantineConfig",
    "RegistryConfig",
    "WitnessConfig",
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
    verify_mode: str = "processes"  # or "threads" (see gateway/evidence/ingest.py ProcessVerifier)
    verify_workers: int = 2  # signature checks in parallel: one per core
    future_skew: int = 300  # s a synced clock (tq 2, 3) may be ahead of the gateway's
    holdover_skew: int = 86400  # s a clock in holdover (tq 1) may be ahead
    min_time: int = 1577836800  # 2020-01-01: a set clock (tq >= 1) earlier than this is wrong
    ack_interval: float = 0.2  # s between two acks to one device (acks coalesce)
    max_backlog: int = 20000  # messages read from the broker but not yet committed
    device_rate: float = 200.0  # messages/s per topic device (gateway/evidence/ratelimit.py)
    device_burst: int = 1000  # the bucket's depth: messages a device may send at once


@dataclass
class QuarantineConfig:
    """``[quarantine]``: the caps of the refused messages kept (gateway/evidence/quarantine.py)."""

    max_bytes: int = 64 << 20
    max_rows: int = 100_000
    keep_bytes: int = 2048


@dataclass
class StoreConfig:
    url: str | None = None  # None: SQLite <data_dir>/gateway.db; or postgresql://user@host/db
    schema: str | None = None  # PostgreSQL: this gateway's schema (one per gateway)
    password_file: Path | None = None  # PostgreSQL password (first line), kept out of the url

    @property
    def backend(self) -> str:
        return "sqlite" if self.url is None else "postgresql"


@dataclass
class FleetConfig:
    shared_schema: str | None = None  # PostgreSQL schema the fleet's instances share (D28)


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
    path: Path | None = None  # default: <data_dir>/ledger.db (evm: <data_dir>/evm-ledger.db)
    evm: EvmLedgerConfig | None = None  # [ledger.evm], with backend = "evm"


@dataclass
class EvmLedgerConfig:
    """``[ledger.evm]``: the chain, contract and account the EVM backend anchors with."""

    rpc_url: str = ""
    chain_id: int = 0
    contract: str = ""  # written by `coldtrace gateway ledger deploy`
    key_file: Path | None = None  # the account key, hex; mode 0600
    key_env: str | None = None  # or: the environment variable holding it
    confirmations: int = 12  # blocks on top before a receipt is final (0: dev only)
    max_fee_gwei: float = 100.0  # never pay more per gas than this
    priority_fee_gwei: float = 1.0  # the tip
    gas_limit: int = 0  # 0: estimate (+25 %)
    timeout: float = 30.0  # s per RPC request
    interval: float = 60.0  # s: at most one anchor per interval (the newest checkpoint)
    poll: float = 2.0  # s between two looks at the chain


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
    # [[registry.authorities]]: other registries (a brand owner) whose profiles
    # this gateway logs; read into Authority by load_config.
    authorities: list[Any] = field(default_factory=list)


@dataclass(frozen=True)
class Authority:
    """Another registry whose product profiles this gateway logs (a brand owner)."""

    id: str
    key: str  # base64 SEC1 P-256
    gtins: tuple[str, ...]


@dataclass
class MetricsConfig:
    port: int = 0  # 0: no metrics endpoint
    host: str = "127.0.0.1"


@dataclass
class InfluxConfig:
    url: str = ""
    org: str = ""
    bucket: str = ""
    token: str | None = field(default=None, repr=False)
    token_file: Path | None = None
    batch_size: int = 500
    flush_interval: float = 5.0
    queue_size: int = 10000

    def secret(self) -> str:
        """The API token, from ``token`` or the first line of ``token_file``."""
        if self.token is not None:
            return self.token
        if self.token_file is None:
            raise ConfigError("[influx] needs token or token_file")
        try:
            lines = self.token_file.read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            raise ConfigError(f"[influx] token_file {self.token_file}: {exc.strerror}") from None
        if not lines or not lines[0].strip():
            raise ConfigError(f"[influx] token_file {self.token_file} is empty")
        return lines[0].strip()


@dataclass
class PushConfig:
    """``[cloud]``: where and how often the gateway pushes its log (gateway/push.py)."""

    url: str = ""
    interval: float = 10.0  # s between rounds when there is nothing to push
    timeout: float = 30.0  # s per HTTP request
    retry_max: float = 60.0  # s: the longest wait between two retries (backoff from 1 s)


@dataclass(frozen=True)
class Peer:
    """A peer gateway's log this gateway witnesses (``[[witness.peers]]``)."""

    origin: str
    vkey: str


@dataclass
class WitnessConfig:
    """``[witness]``: this gateway as a witness of its peers' logs (gateway/witness.py)."""

    name: str | None = None  # default "<log origin>/witness"
    key_file: Path = Path("keys/witness.key")
    interval: float = 30.0
    peers: list[Any] = field(default_factory=list)  # read into Peer by load_config


@dataclass
class DashboardConfig:
    """``[dashboard]``: the operator's web page (gateway/dashboard.py)."""

    listen: str = "127.0.0.1:8700"
    token: str | None = field(default=None, repr=False)
    token_file: Path | None = None
    upload_interval: int = 3600  # s: firmware/config.json "upload", the provisioned default
    offline_grace: int = 300  # s beyond the interval before a device counts as offline
    upload_intervals: dict[str, int] = field(default_factory=dict)  # device id -> s

    @property
    def host(self) -> str:
        return self.listen.rpartition(":")[0].strip("[]")

    @property
    def port(self) -> int:
        return int(self.listen.rpartition(":")[2])

    def secret(self) -> str | None:
        """The access token, from ``token`` or the first line of ``token_file``."""
        if self.token is not None:
            return self.token
        if self.token_file is None:
            return None
        try:
            lines = self.token_file.read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            raise ConfigError(f"[dashboard] token_file {self.token_file}: {exc.strerror}") from None
        if not lines or not lines[0].strip():
            raise ConfigError(f"[dashboard] token_file {self.token_file} is empty")
        return lines[0].strip()

    def interval_of(self, device: str) -> int:
        return int(self.upload_intervals.get(device, self.upload_interval))


@dataclass
class GatewayConfig:
    id: str = "gateway"
    data_dir: Path = Path("var/gateway")
    mqtt: MqttConfig = field(default_factory=MqttConfig)
    ingest: IngestConfig = field(default_factory=IngestConfig)
    store: StoreConfig = field(default_factory=StoreConfig)
    fleet: FleetConfig = field(default_factory=FleetConfig)
    log: LogConfig = field(default_factory=LogConfig)
    ledger: LedgerConfig = field(default_factory=LedgerConfig)
    registry: RegistryConfig = field(default_factory=RegistryConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    alerts: dict[str, Any] = field(default_factory=dict)  # gateway/alerts.py reads it
    influx: InfluxConfig | None = None  # None: no [influx] section, no InfluxDB sink
    cloud: PushConfig | None = None  # None: no [cloud] section, nothing pushed
    witness: WitnessConfig = field(default_factory=WitnessConfig)
    dashboard: DashboardConfig | None = None  # None: no [dashboard] section, no web page
    path: Path | None = None  # the file this was read from
    quarantine: QuarantineConfig = field(default_factory=QuarantineConfig)

    @property
    def db_path(self) -> Path:
        return self.data_dir / "gateway.db"

    @property
    def tree_dir(self) -> Path:
        return self.data_dir / "tree"

    @property
    def ledger_path(self) -> Path:
        return self.ledger.path if self.ledger.path is not None else self.data_dir / "ledger.db"


_PATH_FIELDS = {
    "token_file",
    "password_file",
    "tls_ca",
    "tls_cert",
    "tls_key",
    "key_file",
    "path",
    "data_dir",
}


def _section(cls: type, raw: Any, where: str, base: Path) -> Any:
    if not isinstance(raw, dict):
        raise ConfigError(f"[{where}] must be a table")
    known = {f.name: f for f in fields(cls)}
    values: dict[str, Any] = {}
    for key, value in raw.items():
        if key not in known or (
            key in ("path", "alerts", "influx", "cloud", "witness", "dashboard", "quarantine")
            and cls is GatewayConfig
        ):
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
        "store": StoreConfig,
        "fleet": FleetConfig,
        "log": LogConfig,
        "ledger": LedgerConfig,
        "registry": RegistryConfig,
        "metrics": MetricsConfig,
        "quarantine": QuarantineConfig,
    }
    top = raw.pop("gateway", {})
    ledger_evm = raw["ledger"].pop("evm", None) if isinstance(raw.get("ledger"), dict) else None
    alerts = raw.pop("alerts", {})
    if not isinstance(alerts, dict):
        raise ConfigError("[alerts] must be a table")
    influx = raw.pop("influx", None)
    cloud = raw.pop("cloud", None)
    witness = raw.pop("witness", {})
    dashboard = raw.pop("dashboard", None)
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
    if ledger_evm is not None:
        cfg.ledger.evm = _section(EvmLedgerConfig, ledger_evm, "ledger.evm", base)
    if influx is not None:
        cfg.influx = _section(InfluxConfig, influx, "influx", base)
    if cloud is not None:
        cfg.cloud = _section(PushConfig, cloud, "cloud", base)
    cfg.witness = _section(WitnessConfig, witness, "witness", base)
    if dashboard is not None:
        cfg.dashboard = _section(DashboardConfig, dashboard, "dashboard", base)
    if not cfg.witness.key_file.is_absolute():
        cfg.witness.key_file = base / cfg.witness.key_file
    cfg.path = path
    _check(cfg)
    return cfg


def _check(cfg: GatewayConfig) -> None:
    from protocol.checkpoint import check_origin
    from protocol.cose import ID_PATTERN
    from protocol.errors import VerificationError

    _check_store(cfg)
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
    cfg.registry.authorities = _authorities(cfg.registry)
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
    if cfg.ledger.backend not in ("local", "evm"):
        raise ConfigError(
            f"[ledger] backend {cfg.ledger.backend!r} is not available (local or evm)"
        )
    if cfg.ledger.backend == "evm":
        _check_ledger_evm(cfg.ledger.evm)
    if cfg.log.checkpoint_interval <= 0 or cfg.log.checkpoint_leaves < 1:
        raise ConfigError("[log] checkpoint_interval and checkpoint_leaves must be positive")
    _check_limits(cfg)
    if cfg.influx is not None:
        _check_influx(cfg.influx)
    if cfg.cloud is not None:
        _check_cloud(cfg.cloud)
    _check_witness(cfg)
    if cfg.dashboard is not None:
        _check_dashboard(cfg.dashboard)
    _check_alert_channels(cfg)


def _check_store(cfg: GatewayConfig) -> None:
    """``[store]`` and ``[fleet]`` (docs/operations.md "The gateway database")."""
    import re

    from sqlalchemy import make_url
    from sqlalchemy.exc import ArgumentError

    name = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
    s = cfg.store
    if s.url is not None:
        try:
            url = make_url(s.url) if isinstance(s.url, str) else None
        except ArgumentError:
            url = None
        if url is None or url.get_backend_name() != "postgresql":
            raise ConfigError("[store] url must be a postgresql:// URL (leave it out for SQLite)")
        if url.password is not None:
            raise ConfigError("[store] url must not hold the password: use [store] password_file")
    elif s.schema is not None or s.password_file is not None:
        raise ConfigError("[store] schema and password_file need a PostgreSQL [store] url")
    for where, value in (
        ("[store] schema", s.schema),
        ("[fleet] shared_schema", cfg.fleet.shared_schema),
    ):
        if value is not None and not (isinstance(value, str) and name.fullmatch(value)):
            raise ConfigError(f"{where} {value!r} must be a lower-case SQL name ([a-z0-9_])")
    shared = cfg.fleet.shared_schema
    if shared is not None:
        if s.url is None:
            raise ConfigError(
                "[fleet] needs the store on PostgreSQL: set [store] url (SQLite cannot be shared)"
            )
        if s.schema is None or s.schema == shared:
            raise ConfigError(
                "[fleet] needs each instance's own [store] schema, other than the shared one"
            )
        if not cfg.mqtt.share_group:
            raise ConfigError("[fleet] needs [mqtt] share_group (the instances share the stream)")


def _check_limits(cfg: GatewayConfig) -> None:
    """``[ingest] device_rate, device_burst`` and ``[quarantine]``."""
    ing, q = cfg.ingest, cfg.quarantine
    if ing.device_rate < 0 or (ing.device_rate > 0 and ing.device_burst < 1):
        raise ConfigError(
            "[ingest] device_rate must be >= 0 messages/s (0: no limit) and device_burst >= 1"
        )
    if q.max_rows < 1 or q.max_bytes < 1 or q.keep_bytes < 64:
        raise ConfigError(
            "[quarantine] max_rows and max_bytes must be >= 1, keep_bytes >= 64 (bytes kept "
            "of a longer refused message)"
        )


def _check_alert_channels(cfg: GatewayConfig) -> None:
    """``[alerts.email]`` and escalation settings, checked at load (gateway/alerts.py)."""
    if "email" not in cfg.alerts:
        return
    from gateway.alerts import AlertConfigError, email_settings

    try:
        email_settings(cfg.alerts["email"], cfg.path.resolve().parent if cfg.path else None)
    except AlertConfigError as exc:
        raise ConfigError(str(exc)) from None


def _check_dashboard(d: DashboardConfig) -> None:
    import ipaddress

    if not isinstance(d.listen, str) or ":" not in d.listen:
        raise ConfigError(f'[dashboard] listen must be "host:port", not {d.listen!r}')
    try:
        port = d.port
    except ValueError:
        raise ConfigError(f"[dashboard] listen {d.listen!r}: the port is not a number") from None
    if not 0 <= port < 65536 or not d.host:
        raise ConfigError(f"[dashboard] listen {d.listen!r}: give a host and a port 0 … 65535")
    if d.token is not None and (not isinstance(d.token, str) or len(d.token) < 16):
        raise ConfigError("[dashboard] token must be a string of at least 16 characters")
    if d.token is not None and d.token_file is not None:
        raise ConfigError("[dashboard] give token or token_file, not both")
    try:
        loopback = d.host == "localhost" or ipaddress.ip_address(d.host).is_loopback
    except ValueError:
        loopback = False
    if not loopback and d.token is None and d.token_file is None:
        raise ConfigError(
            f"[dashboard] listen {d.listen!r} is not a loopback address: set token or "
            "token_file (anyone who reaches it could acknowledge alerts)"
        )
    if d.upload_interval < 1 or d.offline_grace < 0:
        raise ConfigError("[dashboard] upload_interval must be >= 1 s, offline_grace >= 0")
    if not isinstance(d.upload_intervals, dict) or not all(
        isinstance(v, int) and not isinstance(v, bool) and v >= 1
        for v in d.upload_intervals.values()
    ):
        raise ConfigError("[dashboard.upload_intervals] must map device ids to seconds >= 1")


def _check_ledger_evm(e: EvmLedgerConfig | None) -> None:
    """``[ledger.evm]``: required with backend = "evm"; the contract may be empty
    until ``coldtrace gateway ledger deploy`` writes it."""
    import re

    if e is None:
        raise ConfigError('[ledger] backend = "evm" needs a [ledger.evm] section (docs/evm.md)')
    if not isinstance(e.rpc_url, str) or not re.match(r"^(https?|wss?)://[^\s]+$", e.rpc_url):
        raise ConfigError(f"[ledger.evm] rpc_url must be http(s):// or ws(s)://, not {e.rpc_url!r}")
    if e.chain_id < 1:
        raise ConfigError("[ledger.evm] chain_id is required (the chain's id, e.g. 1, 10, 31337)")
    if e.contract and not re.fullmatch(r"0x[0-9a-fA-F]{40}", e.contract):
        raise ConfigError(f"[ledger.evm] contract must be 0x and 40 hex digits, not {e.contract!r}")
    if (e.key_file is None) == (not e.key_env):
        raise ConfigError("[ledger.evm] needs exactly one of key_file and key_env")
    if e.confirmations < 0 or e.gas_limit < 0:
        raise ConfigError("[ledger.evm] confirmations and gas_limit must be >= 0")
    if not 0 <= e.priority_fee_gwei <= e.max_fee_gwei:
        raise ConfigError("[ledger.evm] need 0 <= priority_fee_gwei <= max_fee_gwei")
    if e.timeout <= 0 or e.interval < 0 or e.poll <= 0:
        raise ConfigError("[ledger.evm] timeout and poll must be > 0, interval >= 0")


def _check_cloud(c: PushConfig) -> None:
    from urllib.parse import urlsplit

    if not isinstance(c.url, str) or not c.url:
        raise ConfigError('[cloud] url is required, e.g. url = "https://cloud.example.com"')
    parts = urlsplit(c.url)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.query:
        raise ConfigError(f"[cloud] url must be http(s)://host[:port][/prefix], not {c.url!r}")
    c.url = c.url.rstrip("/")
    if not 0 < c.interval <= 86400:
        raise ConfigError(f"[cloud] interval must be > 0 and <= 86400 seconds, got {c.interval!r}")
    if not 0 < c.timeout <= 3600:
        raise ConfigError(f"[cloud] timeout must be > 0 and <= 3600 seconds, got {c.timeout!r}")
    if not 1 <= c.retry_max <= 3600:
        raise ConfigError(f"[cloud] retry_max must be 1 … 3600 seconds, got {c.retry_max!r}")


def _check_witness(cfg: GatewayConfig) -> None:
    from protocol.checkpoint import check_origin
    from protocol.errors import VerificationError
    from protocol.note import NoteVerifier

    w = cfg.witness
    if w.name is None:
        w.name = f"{cfg.log.origin}/witness"
    try:
        if not isinstance(w.name, str):
            raise ConfigError(f"[witness] name must be a string, got {w.name!r}")
        check_origin(w.name)
    except VerificationError as exc:
        raise ConfigError(f"[witness] name {w.name!r} is not a key name: {exc}") from None
    if w.name == cfg.log.origin:
        raise ConfigError("[witness] name must differ from [log] origin (one key, one name)")
    if not 0 < w.interval <= 86400:
        raise ConfigError(
            f"[witness] interval must be > 0 and <= 86400 seconds, got {w.interval!r}"
        )
    if not isinstance(w.peers, list):
        raise ConfigError("[[witness.peers]] must be an array of tables")
    peers: list[Peer] = []
    for n, e in enumerate(w.peers, 1):
        if isinstance(e, Peer):
            peers.append(e)
            continue
        where = f"[[witness.peers]] #{n}"
        if not isinstance(e, dict) or set(e) != {"origin", "vkey"}:
            have = sorted(e) if isinstance(e, dict) else e
            raise ConfigError(f"{where} must have exactly origin and vkey, got {have!r}")
        origin, vkey = e["origin"], e["vkey"]
        try:
            if not isinstance(origin, str) or not isinstance(vkey, str):
                raise ConfigError(f"{where}: origin and vkey must be strings")
            check_origin(origin)
            v = NoteVerifier.from_vkey(vkey)
        except (VerificationError, ValueError) as exc:
            raise ConfigError(f"{where}: {exc}") from None
        if v.name != origin:
            raise ConfigError(
                f"{where}: vkey is named {v.name!r}, not the peer's origin {origin!r} "
                "(give the peer log's verifier key: `coldtrace gateway trust` on the peer)"
            )
        if origin == cfg.log.origin or any(p.origin == origin for p in peers):
            raise ConfigError(f"{where}: origin {origin!r} is this log's or listed twice")
        peers.append(Peer(origin, vkey))
    if peers and cfg.cloud is None:
        raise ConfigError("[[witness.peers]] needs [cloud] url: peers' checkpoints come from it")
    w.peers = peers


def _check_influx(ic: InfluxConfig) -> None:
    from urllib.parse import urlsplit

    for key in ("url", "org", "bucket"):
        value = getattr(ic, key)
        if not isinstance(value, str) or not value:
            raise ConfigError(f"[influx] {key} is required (a non-empty string)")
    parts = urlsplit(ic.url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(f"[influx] url must be http(s)://host:port, not {ic.url!r}")
    if (ic.token is None) == (ic.token_file is None):
        raise ConfigError("[influx] needs exactly one of token and token_file")
    if ic.token is not None and (not isinstance(ic.token, str) or not ic.token):
        raise ConfigError("[influx] token must be a non-empty string")
    if ic.batch_size < 1 or ic.queue_size < ic.batch_size or ic.flush_interval <= 0:
        raise ConfigError(
            "[influx] batch_size must be >= 1, queue_size >= batch_size, flush_interval > 0"
        )


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


_HEADER = re.compile(r"^\s*\[([^\[\]]+)\]\s*(#.*)?$")


def set_toml_keys(text: str, section: str, values: dict[str, Any]) -> str:
    """``text`` (TOML) with ``key = value`` set in table ``[section]``: existing lines
    replaced, missing ones added at the table's end, the table added if absent. Other
    lines, comments included, are kept as they are."""
    lines = text.splitlines()
    start = next(
        (
            i
            for i, line in enumerate(lines)
            if (m := _HEADER.match(line)) and m[1].strip() == section
        ),
        None,
    )
    if start is None:
        return (
            text.rstrip("\n")
            + f"\n\n[{section}]\n"
            + "".join(f"{k} = {_toml_value(v)}\n" for k, v in values.items())
        )
    end = next(
        (i for i in range(start + 1, len(lines)) if lines[i].lstrip().startswith("[")),
        len(lines),
    )
    todo = dict(values)
    for i in range(start + 1, end):
        m = re.match(r"^\s*([A-Za-z0-9_-]+)\s*=", lines[i])
        if m and m[1] in todo:
            lines[i] = f"{m[1]} = {_toml_value(todo.pop(m[1]))}"
    last = end
    while last > start + 1 and not lines[last - 1].strip():
        last -= 1
    lines[last:last] = [f"{k} = {_toml_value(v)}" for k, v in todo.items()]
    return "\n".join(lines) + "\n"


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


def _authorities(r: RegistryConfig) -> list[Authority]:
    """Check ``[[registry.authorities]]`` and read it into :class:`Authority` entries."""
    from protocol.cose import ID_PATTERN
    from protocol.errors import VerificationError
    from protocol.keys import b64d, p256_public_from_sec1

    raw = r.authorities
    if not isinstance(raw, list):
        raise ConfigError("[[registry.authorities]] must be an array of tables")
    out: list[Authority] = []
    for n, e in enumerate(raw, 1):
        where = f"[[registry.authorities]] #{n}"
        if isinstance(e, Authority):
            out.append(e)
            continue
        if not isinstance(e, dict) or set(e) != {"id", "key", "gtins"}:
            have = sorted(e) if isinstance(e, dict) else e
            raise ConfigError(f"{where} must have exactly id, key and gtins, got {have!r}")
        aid, key, gtins = e["id"], e["key"], e["gtins"]
        if not isinstance(aid, str) or not ID_PATTERN.fullmatch(aid):
            raise ConfigError(f"{where}: id {aid!r} is not a protocol id (1-32 of [a-z0-9._-])")
        where = f"[[registry.authorities]] {aid}"
        if aid == r.id or any(a.id == aid for a in out):
            raise ConfigError(f"{where}: the id is taken (by [registry] or another authority)")
        try:
            p256_public_from_sec1(b64d(key if isinstance(key, str) else ""))
        except (ValueError, VerificationError) as exc:
            raise ConfigError(f"{where}: key is not a base64 SEC1 P-256 point ({exc})") from None
        if (
            not isinstance(gtins, list)
            or not gtins
            or not all(isinstance(g, str) and g for g in gtins)
        ):
            raise ConfigError(f"{where}: gtins must be a non-empty list of patterns")
        out.append(Authority(aid, key, tuple(gtins)))
    owners = [(f"[registry] {r.id}", tuple(r.gtins))] + [
        (f"authority {a.id}", a.gtins) for a in out
    ]
    for i, (who_a, pats_a) in enumerate(owners):
        for who_b, pats_b in owners[i + 1 :]:
            for a in pats_a:
                for b in pats_b:
                    if _specificity(a) == _specificity(b) and _overlap(a, b):
                        raise ConfigError(
                            f"gtins: {who_a} {a!r} and {who_b} {b!r} are equally specific and "
                            "both match some GTIN: a verifier would find no authority for it "
                            "(docs/protocol.md §10). Make one pattern more specific (the more "
                            "specific pattern wins), e.g. narrow [registry] gtins"
                        )
    return out


def _specificity(pattern: str) -> int:
    return len(pattern) - pattern.count("*")


def _overlap(a: str, b: str) -> bool:
    """Whether some text matches both patterns (``*``: any run of characters)."""
    seen: set[tuple[int, int]] = set()
    todo = [(0, 0)]
    while todo:
        i, j = todo.pop()
        if (i, j) in seen:
            continue
        seen.add((i, j))
        if i == len(a) and j == len(b):
            return True
        ca = a[i] if i < len(a) else None
        cb = b[j] if j < len(b) else None
        if ca == "*":
            todo.append((i + 1, j))  # the star ends
            if cb is not None and cb != "*":
                todo.append((i, j + 1))  # the star takes b's character
        if cb == "*":
            todo.append((i, j + 1))
            if ca is not None and ca != "*":
                todo.append((i + 1, j))
        if ca is not None and ca != "*" and ca == cb:
            todo.append((i + 1, j + 1))
    return False
