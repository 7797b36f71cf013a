"""The demo's running parts: three organisations' brokers and gateways, the cloud.

Each organisation of the scenario (demo/world.py :data:`ORGS`) is a
:class:`Site` under ``<out>/<name>/``:

- its broker is the project's configuration (gateway/transport/broker.py) on a free
  loopback port, with an account and ACL per device of that organisation, its
  gateway and a monitor (``ops@...``, which may only read alerts and device
  states);
- its gateway is ``coldtrace gateway run`` in its own process (and session,
  so a Ctrl-C reaches only the demo, which then stops it with SIGTERM: the
  gateway's own orderly shutdown), pushing its log to the cloud ([cloud]);
  the DC's also serves the operator's dashboard ([dashboard], loopback);
- its monitor is an MQTT client subscribed to the gateway's alert topic.

The cloud is ``coldtrace cloud serve`` in its own process (SQLite in
``<out>/cloud/``, a free loopback port), set up with ``coldtrace cloud
init``.

:meth:`System.stop` stops all of them and is safe to call at any point;
:meth:`System.leftovers` names any process the demo started that is still
alive (the brokers, the gateways and their verification workers, the cloud).
"""

from __future__ import annotations

import contextlib
import io
import json
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from demo.world import ORGS, Broker, Org
from gateway.transport.broker import (
    BrokerProcess,
    BrokerUser,
    free_port,
    read_credentials,
    start_broker,
    write_config,
)
from protocol import cli

# Temperature profiles for the places the loggers watch (docs/operations.md §2);
# each gateway alerts on its own organisation's places.
ALERT_CONFIG = """
[alerts]
offline_grace = 300

[alerts.places]
{places}
"""
WITNESS_NAME = "witness.cloud.example"
# Every client of the demo's cloud is on 127.0.0.1 (three gateways and the demo): the
# public endpoints' rate limit, per client address, is raised to match.
PUBLIC_RATE = 100_000
# coldtrace demo --ledger evm: Anvil's chain, and the gateways' anchoring settings (a
# block a second, 3 confirmations, at most one anchor every 5 s per gateway).
EVM_CHAIN = 31337
EVM_CONFIRMATIONS = 3
EVM_INTERVAL = 5.0


class DemoError(Exception):
    """Something the demo needs did not happen."""


def wait_for(cond: Callable[[], bool], timeout: float, what: str, every: float = 0.1) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise DemoError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(every)


def _proc_table() -> dict[int, tuple[int, str]]:
    """pid -> (parent pid, state) for every process (Linux /proc)."""
    table = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
        except OSError:
            continue
        state, ppid = stat.rsplit(")", 1)[1].split()[:2]
        table[int(d.name)] = (int(ppid), state)
    return table


def descendants(pid: int) -> set[int]:
    """Live (non-zombie) descendants of ``pid``."""
    table = _proc_table()
    kids: dict[int, list[int]] = {}
    for p, (pp, state) in table.items():
        if state != "Z":
            kids.setdefault(pp, []).append(p)
    out: set[int] = set()
    todo = [pid]
    while todo:
        for k in kids.get(todo.pop(), []):
            if k not in out:
                out.add(k)
                todo.append(k)
    return out


def alive(pid: int) -> bool:
    entry = _proc_table().get(pid)
    return entry is not None and entry[1] != "Z"


def quiet_cli(argv: list[str]) -> tuple[int, str]:
    """``coldtrace ARGV`` in this process, its output captured: (status, stdout+stderr)."""
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(buf):
        try:
            status = cli.main(argv)
        except SystemExit as exc:  # a command's configuration error
            status = exc.code if isinstance(exc.code, int) else 2
    return status, buf.getvalue()


def _toml_list(items: tuple[str, ...] | list[str]) -> str:
    return "[" + ", ".join(json.dumps(i) for i in items) + "]"


class Site:
    """One organisation's running parts on this machine: its broker, gateway and monitor."""

    def __init__(self, org: Org, out: Path) -> None:
        self.org = org
        self.dir = out / org.name
        self.broker_dir = self.dir / "broker"
        self.gw_dir = self.dir / "gateway"
        self.config = self.gw_dir / "gateway.toml"
        self.trust = self.gw_dir / "trust.json"
        self.db = self.gw_dir / "var" / "gateway.db"
        self.broker: BrokerProcess | None = None
        self.port = 0
        self.passwords: dict[str, str] = {}
        self.gateway: subprocess.Popen[bytes] | None = None
        self.dashboard_port = 0  # with [dashboard]: the gateway serves its web page here
        self.monitor: Any = None
        self._subscribed = threading.Event()

    @property
    def name(self) -> str:
        return self.org.name

    @property
    def gw_user(self) -> str:
        return f"gw@{self.org.gateway}"

    @property
    def ops_user(self) -> str:
        return f"ops@{self.org.gateway}"

    @property
    def alerts_topic(self) -> str:
        return f"ct/v1/gw/{self.org.gateway}/alerts"

    def log_vkey(self) -> str:
        from gateway.config import load_config
        from gateway.service import load_log_signer

        return load_log_signer(load_config(self.config)).vkey

    def figures(self) -> dict[str, Any]:
        """What the gateway's store says now (read-only, as ``gateway status`` does)."""
        from sqlalchemy.exc import SQLAlchemyError

        from gateway.evidence.store import StoreError, open_store

        if not self.db.exists():
            return {}
        try:
            store = open_store(self.db, readonly=True)
        except (sqlite3.Error, SQLAlchemyError, StoreError):  # still being created
            return {}
        try:
            return self._figures(store)
        except (sqlite3.Error, SQLAlchemyError):  # tables still being created
            return {}
        finally:
            store.close()

    @staticmethod
    def _figures(store: Any) -> dict[str, Any]:
        live = json.loads(store.get_meta("status") or "{}")
        cp, anchor = store.latest_checkpoint(), store.latest_anchor()
        return {
            "records": store.leaf_count(),
            "connected": bool(live.get("connected")),
            "acks": live.get("acks_sent", 0),
            "pending": len(store.outbox_pending()),
            "checkpoint": None if cp is None else cp.size,
            "anchor": None if anchor is None else anchor.size,
            "anchor_index": None if anchor is None else anchor.receipt.get("index"),
            "anchor_where": _anchor_where(None if anchor is None else anchor.receipt),
            "rejects": sum(store.reject_counts().values()),
            "cloud": int(store.get_meta("cloud.size") or 0),
        }

    @property
    def dashboard_url(self) -> str | None:
        return f"http://127.0.0.1:{self.dashboard_port}/" if self.dashboard_port else None

    def caught_up(self) -> bool:
        """Every record logged and anchored: nothing in the outbox, the latest anchored
        checkpoint covers the whole log."""
        f = self.figures()
        return bool(f) and f["pending"] == 0 and f["records"] > 0 and f["anchor"] == f["records"]


def _anchor_where(receipt: dict[str, Any] | None) -> str:
    """Where a receipt puts its checkpoint: a local ledger entry, or an EVM block."""
    if receipt is None:
        return "not anchored"
    if receipt.get("type") == "evm":
        return f"EVM block {receipt['block_number']}"
    return f"local ledger entry {receipt.get('index')}"


class System:
    def __init__(self, out: Path, ledger: str = "local") -> None:
        self.out = out
        self.ledger = ledger  # "local" (each gateway's own) or "evm" (Anvil, docs/evm.md)
        self.chain: Any = None  # demo/anvil.py's Anvil, with ledger = "evm"
        self.sites = {org.name: Site(org, out) for org in ORGS}
        self.cloud_dir = out / "cloud"
        self.cloud: subprocess.Popen[bytes] | None = None
        self.cloud_port = 0
        self.started: dict[int, str] = {}  # pid -> what, for leftovers()
        self.world: Any = None  # the devices (demo/world.py), closed before stop()
        self.alerts: list[dict[str, Any]] = []
        self._alerts_lock = threading.Lock()

    def __iter__(self) -> Iterator[Site]:
        return iter(self.sites.values())

    @property
    def cloud_url(self) -> str:
        return f"http://127.0.0.1:{self.cloud_port}"

    # --- the cloud ------------------------------------------------------------------

    def init_cloud(self) -> str:
        """``coldtrace cloud init`` on a free port; the output of the command."""
        self.cloud_port = free_port()
        status, text = quiet_cli(
            [
                "cloud",
                "init",
                "--dir",
                str(self.cloud_dir),
                "--witness-name",
                WITNESS_NAME,
                "--public-url",
                self.cloud_url,
                "--listen",
                f"127.0.0.1:{self.cloud_port}",
            ]
        )
        if status != 0:
            raise DemoError(f"coldtrace cloud init failed:\n{text}")
        toml = self.cloud_dir / "cloud.toml"
        body = toml.read_text()
        toml.write_text(body.replace("public_rate = 60\n", f"public_rate = {PUBLIC_RATE}\n"))
        return text

    def start_cloud(self) -> int:
        with open(self.cloud_dir / "cloud.log", "ab") as log:
            self.cloud = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "protocol.cli",
                    "cloud",
                    "serve",
                    "--dir",
                    str(self.cloud_dir),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        self.started[self.cloud.pid] = "coldtrace cloud serve"
        return self.cloud.pid

    def wait_cloud(self, timeout: float = 30) -> None:
        import httpx

        def up() -> bool:
            self.check_processes()
            try:
                return httpx.get(f"{self.cloud_url}/healthz", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(up, timeout, "the cloud to answer", every=0.2)

    def cloud_cli(self, *args: str) -> str:
        """``coldtrace cloud CMD [SUB] --dir D ARGS``: its output; DemoError if it fails."""
        argv = ["cloud", args[0]]
        rest = list(args[1:])
        if args[0] not in ("init", "trust", "serve"):
            argv.append(rest.pop(0))
        status, text = quiet_cli([*argv, "--dir", str(self.cloud_dir), *rest])
        if status != 0:
            raise DemoError(f"coldtrace {' '.join(argv)} failed: {text.strip()}")
        return text.strip()

    # --- the organisations' brokers and gateways --------------------------------------

    def start_brokers(self) -> None:
        for site in self:
            site.port = free_port()
            users = [BrokerUser(site.gw_user, "gateway"), BrokerUser(site.ops_user, "monitor")]
            users += [BrokerUser(dev, "device") for dev in site.org.devices]
            conf = write_config(
                site.broker_dir, port=site.port, users=users, gateway_id=site.org.gateway
            )
            site.passwords = read_credentials(site.broker_dir)
            site.broker = start_broker(conf)
            if site.broker.pid is not None:
                self.started[site.broker.pid] = f"mosquitto ({site.name})"

    def brokers(self) -> dict[str, Broker]:
        """Device id -> its organisation's broker and its password there."""
        return {
            dev: Broker("127.0.0.1", site.port, site.passwords[dev])
            for site in self
            for dev in site.org.devices
        }

    def init_gateway(self, site: Site) -> None:
        site.gw_dir.mkdir(parents=True, exist_ok=True)
        pw = site.gw_dir / "mqtt.pw"
        pw.write_text(site.passwords[site.gw_user] + "\n")
        pw.chmod(0o600)
        org = site.org
        status, text = quiet_cli(
            [
                "gateway",
                "init",
                "--dir",
                str(site.gw_dir),
                "--id",
                org.gateway,
                "--origin",
                org.origin,
                "--registry-id",
                org.registry,
                "--mqtt-port",
                str(site.port),
                "--mqtt-username",
                site.gw_user,
                "--mqtt-password-file",
                "mqtt.pw",
                "--profile",  # alarms only for the organisation's places (ALERT_CONFIG)
                "none",
            ]
        )
        if status != 0:
            raise DemoError(f"coldtrace gateway init ({site.name}) failed:\n{text}")
        body = site.config.read_text(encoding="utf-8")
        # Checkpoints every 2 s (default 10 s): the demo waits for one that covers
        # the restatements it signs at the end of the day.
        body = body.replace("checkpoint_interval = 10.0", "checkpoint_interval = 2.0")
        # The registry's scopes, as the cloud's operator pins them (no ties, §10).
        for scope, values in (
            ("devices", org.device_scope),
            ("places", org.places),
            ("gtins", org.gtins),
        ):
            body = body.replace(f'{scope} = ["*"]', f"{scope} = {_toml_list(values)}", 1)
        places = "\n".join(f'"{p}" = "chilled"' for p in org.places)
        site.config.write_text(body + ALERT_CONFIG.format(places=places), encoding="utf-8")
        self._refresh_trust(site)

    def _refresh_trust(self, site: Site) -> None:
        from gateway.config import load_config
        from gateway.service import trust_document

        doc = trust_document(load_config(site.config))
        site.trust.write_text(json.dumps(doc, indent=1) + "\n")

    def configure_cloud(self, site: Site, peers: list[Site]) -> None:
        """Point the gateway at the cloud ([cloud]) and at the peers it witnesses."""
        text = (
            "\n# Push the log to the cloud (gateway/push.py): at once after each checkpoint.\n"
            f'[cloud]\nurl = "{self.cloud_url}"\ninterval = 1.0\n'
        )
        if peers:
            # The demo runs one witness round itself (`coldtrace gateway witness --once`)
            # when the peers' logs are complete; the running gateway's own rounds are
            # every 10 minutes.
            text += "\n[witness]\ninterval = 600.0\n"
            for peer in peers:
                text += (
                    f'\n[[witness.peers]]\norigin = "{peer.org.origin}"\n'
                    f'vkey = "{peer.log_vkey()}"\n'
                )
        with open(site.config, "a", encoding="utf-8") as f:
            f.write(text)

    def configure_dashboard(self, site: Site) -> str:
        """Have ``coldtrace gateway run`` serve the operator's dashboard ([dashboard], on a
        free loopback port: no token needed there); its URL."""
        site.dashboard_port = free_port()
        with open(site.config, "a", encoding="utf-8") as f:
            f.write(
                "\n# The operator's web page (gateway/dashboard.py), served by `gateway run`.\n"
                f'[dashboard]\nlisten = "127.0.0.1:{site.dashboard_port}"\n'
            )
        assert site.dashboard_url is not None
        return site.dashboard_url

    def start_gateway(self, site: Site) -> int:
        with open(site.gw_dir / "gateway.log", "ab") as log:
            site.gateway = subprocess.Popen(
                [sys.executable, "-m", "protocol.cli", "gateway", "run", "-c", str(site.config)],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        self.started[site.gateway.pid] = f"coldtrace gateway run ({site.name})"
        return site.gateway.pid

    def check_processes(self) -> None:
        """DemoError if a gateway or the cloud exited on its own."""
        for site in self:
            gw = site.gateway
            if gw is not None and gw.poll() is not None:
                tail = (site.gw_dir / "gateway.log").read_text(errors="replace")[-1500:]
                raise DemoError(
                    f"the {site.name} gateway exited with status {gw.returncode}:\n{tail}"
                )
        if self.cloud is not None and self.cloud.poll() is not None:
            tail = (self.cloud_dir / "cloud.log").read_text(errors="replace")[-1500:]
            raise DemoError(f"the cloud exited with status {self.cloud.returncode}:\n{tail}")

    def note_workers(self) -> None:
        """Remember the gateways' children (verification workers) for leftovers()."""
        for site in self:
            if site.gateway is not None:
                for pid in descendants(site.gateway.pid):
                    self.started.setdefault(pid, f"gateway worker ({site.name})")

    def start_monitors(self) -> None:
        import paho.mqtt.client as mqtt

        for site in self:
            c = mqtt.Client(
                mqtt.CallbackAPIVersion.VERSION2, client_id=site.ops_user, protocol=mqtt.MQTTv311
            )
            c.username_pw_set(site.ops_user, site.passwords[site.ops_user])
            topic, ready = site.alerts_topic, site._subscribed
            c.on_connect = lambda cl, u, flags, rc, props, t=topic: cl.subscribe(t, 1)
            c.on_subscribe = lambda cl, u, mid, rcs, props, ev=ready: ev.set()
            c.on_message = lambda cl, u, msg, s=site: self._alert(s, msg.payload)
            c.connect("127.0.0.1", site.port, 30)
            c.loop_start()
            site.monitor = c
        for site in self:
            wait_for(site._subscribed.is_set, 10, f"the {site.name} alert monitor's subscription")

    def _alert(self, site: Site, payload: bytes) -> None:
        ev = json.loads(payload)
        ev.setdefault("gateway", site.org.gateway)
        with self._alerts_lock:
            self.alerts.append(ev)

    # --- stop ----------------------------------------------------------------------

    def stop(self) -> None:
        for site in self:
            if site.monitor is not None:
                with contextlib.suppress(Exception):
                    site.monitor.disconnect()
                site.monitor.loop_stop()
                site.monitor = None
        self.note_workers()
        running = [s.gateway for s in self if s.gateway is not None and s.gateway.poll() is None]
        for gw in running:
            gw.terminate()  # SIGTERM: flush acks, checkpoint, close - all three at once
        if self.cloud is not None and self.cloud.poll() is None:
            self.cloud.terminate()  # uvicorn's graceful shutdown
        for proc in [*running, self.cloud]:
            if proc is None:
                continue
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        for site in self:
            if site.broker is not None:
                site.broker.stop()

    # --- the EVM ledger (coldtrace demo --ledger evm) ---------------------------------

    def start_chain(self) -> str:
        """Anvil on loopback (a block every second) for the gateways' EVM ledger; the
        cloud checks anchors there too (``[[evm]]`` in cloud.toml). Its URL."""
        from demo.anvil import Anvil, AnvilError

        self.chain = Anvil(chain_id=EVM_CHAIN, block_time=1, log_file=self.out / "anvil.log")
        try:
            self.chain.start()
        except AnvilError as exc:
            raise DemoError(f"the EVM node: {exc}") from None
        with open(self.cloud_dir / "cloud.toml", "a", encoding="utf-8") as f:
            f.write(f'\n[[evm]]\nchain_id = {EVM_CHAIN}\nrpc_url = "{self.chain.url}"\n')
        return str(self.chain.url)

    def configure_evm(self, site: Site) -> str:
        """The gateway's anchoring account (a fresh key, funded on the dev chain),
        ``[ledger.evm]``, and ``coldtrace gateway ledger deploy``; the contract."""
        import secrets

        from eth_account import Account

        from gateway.config import set_toml_keys

        key = "0x" + secrets.token_hex(32)
        key_file = site.gw_dir / "keys" / "anchor.hex"
        key_file.write_text(key + "\n", encoding="utf-8")
        key_file.chmod(0o600)
        self.chain.set_balance(Account.from_key(key).address, 10**19)
        text = set_toml_keys(site.config.read_text(encoding="utf-8"), "ledger", {"backend": "evm"})
        text = set_toml_keys(
            text,
            "ledger.evm",
            {
                "rpc_url": self.chain.url,
                "chain_id": EVM_CHAIN,
                "key_file": "keys/anchor.hex",
                "confirmations": EVM_CONFIRMATIONS,
                "interval": EVM_INTERVAL,
                "poll": 0.5,
            },
        )
        site.config.write_text(text, encoding="utf-8")
        status, out = quiet_cli(["gateway", "ledger", "deploy", "-c", str(site.config)])
        if status != 0:
            raise DemoError(f"gateway ledger deploy ({site.name}) failed: {out.strip()}")
        from gateway.config import load_config

        evm = load_config(site.config).ledger.evm
        assert evm is not None
        return evm.contract

    def stop_chain(self) -> None:
        if self.chain is not None:
            self.chain.stop()
            self.chain = None

    def leftovers(self, grace: float = 5.0) -> list[str]:
        """Processes the demo started that are still alive (after ``grace`` s)."""
        deadline = time.monotonic() + grace
        while True:
            left = [f"{what} (pid {pid})" for pid, what in self.started.items() if alive(pid)]
            if not left or time.monotonic() > deadline:
                return left
            time.sleep(0.1)


class Progress:
    """Prints the gateways' figures every ``every`` seconds while they change."""

    def __init__(self, system: System, every: float = 2.0) -> None:
        self.system = system
        self.every = every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="demo-progress", daemon=True)
        self.last: tuple[Any, ...] = ()

    def __enter__(self) -> Progress:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            try:
                figs = {s.name: s.figures() for s in self.system}
            except Exception:  # a store is busy: next time
                continue
            now = tuple((f.get("records"), f.get("anchor"), f.get("cloud")) for f in figs.values())
            if all(figs.values()) and now != self.last:
                self.last = now
                parts = [
                    f"{name} {f['records']}/{f['anchor'] or 0}/{f['cloud']}"
                    for name, f in figs.items()
                ]
                print(f"     logged/anchored/in the cloud: {', '.join(parts)}", flush=True)


def sigterm_as_interrupt() -> Callable[[], None]:
    """Turn SIGTERM/SIGHUP into KeyboardInterrupt (the demo's cleanup runs);
    returns a function restoring the previous handlers."""
    import signal

    if threading.current_thread() is not threading.main_thread():
        return lambda: None

    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    old = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGHUP)}

    def restore() -> None:
        for s, h in old.items():
            signal.signal(s, h)

    return restore
