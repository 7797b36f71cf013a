"""The demo's running parts: Mosquitto, the gateway process, an alert monitor.

- the broker is the project's configuration (gateway/broker.py) on a free
  loopback port, with an account and ACL per device, the gateway and a
  monitor (``ops@...``, which may only read alerts and device states);
- the gateway is ``coldtrace gateway run`` in its own process (and session,
  so a Ctrl-C reaches only the demo, which then stops it with SIGTERM: the
  gateway's own orderly shutdown);
- the monitor is an MQTT client subscribed to the gateway's alert topic.

:meth:`System.stop` stops all of them and is safe to call at any point;
:meth:`System.leftovers` names any process the demo started that is still
alive (the broker, the gateway, the gateway's verification workers).
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gateway.broker import (
    BrokerProcess,
    BrokerUser,
    free_port,
    read_credentials,
    start_broker,
    write_config,
)
from protocol import cli

GATEWAY_ID = "dc-rotterdam"
GW_USER = f"gw@{GATEWAY_ID}"
OPS_USER = f"ops@{GATEWAY_ID}"
ORIGIN = "coldtrace.example/acme/dc-rotterdam"
REGISTRY = "reg-acme"
ALERTS = f"ct/v1/gw/{GATEWAY_ID}/alerts"
# Temperature profiles for the places the loggers watch (docs/operations.md §2).
ALERT_CONFIG = """
[alerts]
offline_delay = 900

[alerts.places]
"truck:*" = "chilled"
"dc-rotterdam:*" = "chilled"
"packhouse-westland:*" = "chilled"
"""


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


class System:
    def __init__(self, out: Path) -> None:
        self.out = out
        self.broker_dir = out / "broker"
        self.gw_dir = out / "gateway"
        self.config = self.gw_dir / "gateway.toml"
        self.trust = self.gw_dir / "trust.json"
        self.db = self.gw_dir / "var" / "gateway.db"
        self.broker: BrokerProcess | None = None
        self.port = 0
        self.passwords: dict[str, str] = {}
        self.gateway: subprocess.Popen[bytes] | None = None
        self.started: dict[int, str] = {}  # pid -> what, for leftovers()
        self.monitor: Any = None
        self.world: Any = None  # the devices (demo/world.py), closed before stop()
        self.alerts: list[dict[str, Any]] = []
        self.figures_trace: dict[str, float] = {}
        self._subscribed = threading.Event()

    # --- start ---------------------------------------------------------------------

    def start_broker(self, devices: list[str]) -> None:
        self.port = free_port()
        users = [BrokerUser(GW_USER, "gateway"), BrokerUser(OPS_USER, "monitor")]
        users += [BrokerUser(dev, "device") for dev in devices]
        conf = write_config(self.broker_dir, port=self.port, users=users, gateway_id=GATEWAY_ID)
        self.passwords = read_credentials(self.broker_dir)
        self.broker = start_broker(conf)
        if self.broker.pid is not None:
            self.started[self.broker.pid] = "mosquitto"

    def init_gateway(self) -> None:
        self.gw_dir.mkdir(parents=True, exist_ok=True)
        pw = self.gw_dir / "mqtt.pw"
        pw.write_text(self.passwords[GW_USER] + "\n")
        pw.chmod(0o600)
        status = cli.main(
            [
                "gateway",
                "init",
                "--dir",
                str(self.gw_dir),
                "--id",
                GATEWAY_ID,
                "--origin",
                ORIGIN,
                "--registry-id",
                REGISTRY,
                "--mqtt-port",
                str(self.port),
                "--mqtt-username",
                GW_USER,
                "--mqtt-password-file",
                "mqtt.pw",
            ]
        )
        if status != 0:
            raise DemoError("coldtrace gateway init failed")
        text = self.config.read_text(encoding="utf-8")
        # Checkpoints every 2 s (default 10 s): the trace waits for one that
        # covers its restatements.
        text = text.replace("checkpoint_interval = 10.0", "checkpoint_interval = 2.0")
        self.config.write_text(text + ALERT_CONFIG, encoding="utf-8")

    def start_gateway(self) -> int:
        with open(self.gw_dir / "gateway.log", "ab") as log:
            self.gateway = subprocess.Popen(
                [sys.executable, "-m", "protocol.cli", "gateway", "run", "-c", str(self.config)],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        self.started[self.gateway.pid] = "coldtrace gateway run"
        return self.gateway.pid

    def check_gateway(self) -> None:
        if self.gateway is not None and self.gateway.poll() is not None:
            tail = (self.gw_dir / "gateway.log").read_text(errors="replace")[-1500:]
            raise DemoError(f"the gateway exited with status {self.gateway.returncode}:\n{tail}")

    def note_workers(self) -> None:
        """Remember the gateway's children (verification workers) for leftovers()."""
        if self.gateway is not None:
            for pid in descendants(self.gateway.pid):
                self.started.setdefault(pid, "gateway worker")

    def start_monitor(self) -> None:
        import paho.mqtt.client as mqtt

        c = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=OPS_USER, protocol=mqtt.MQTTv311
        )
        c.username_pw_set(OPS_USER, self.passwords[OPS_USER])
        c.on_connect = lambda cl, u, flags, rc, props: cl.subscribe(ALERTS, 1)
        c.on_subscribe = lambda cl, u, mid, rcs, props: self._subscribed.set()
        c.on_message = lambda cl, u, msg: self.alerts.append(json.loads(msg.payload))
        c.connect("127.0.0.1", self.port, 30)
        c.loop_start()
        self.monitor = c
        wait_for(self._subscribed.is_set, 10, "the alert monitor's subscription")

    # --- look ----------------------------------------------------------------------

    def figures(self) -> dict[str, Any]:
        """What the gateway's store says now (read-only, as ``gateway status`` does)."""
        from gateway.store import open_store

        if not self.db.exists():
            return {}
        try:
            store = open_store(self.db, readonly=True)
        except sqlite3.Error:  # still being created
            return {}
        try:
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
                "rejects": sum(store.reject_counts().values()),
            }
        finally:
            store.close()

    # --- stop ----------------------------------------------------------------------

    def stop(self) -> None:
        if self.monitor is not None:
            with contextlib.suppress(Exception):
                self.monitor.disconnect()
            self.monitor.loop_stop()
            self.monitor = None
        if self.gateway is not None:
            self.note_workers()
            if self.gateway.poll() is None:
                self.gateway.terminate()  # SIGTERM: flush acks, checkpoint, close
                try:
                    self.gateway.wait(30)
                except subprocess.TimeoutExpired:
                    self.gateway.kill()
                    self.gateway.wait(10)
        if self.broker is not None:
            self.broker.stop()

    def leftovers(self, grace: float = 5.0) -> list[str]:
        """Processes the demo started that are still alive (after ``grace`` s)."""
        deadline = time.monotonic() + grace
        while True:
            left = [f"{what} (pid {pid})" for pid, what in self.started.items() if alive(pid)]
            if not left or time.monotonic() > deadline:
                return left
            time.sleep(0.1)


class Progress:
    """Prints the gateway's figures every ``every`` seconds while they change."""

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
                f = self.system.figures()
            except Exception:  # the store is busy: next time
                continue
            now = (f.get("records"), f.get("acks"), f.get("checkpoint"), f.get("anchor"))
            if f and now != self.last:
                self.last = now
                cp = "none" if f["checkpoint"] is None else f"{f['checkpoint']} leaves"
                anchored = (
                    f", anchored (ledger entry {f['anchor_index']})"
                    if f["anchor"] is not None and f["anchor"] == f["checkpoint"]
                    else ""
                )
                print(
                    f"     gateway: {f['records']} records logged, {f['acks']} acks sent, "
                    f"checkpoint {cp}{anchored}",
                    flush=True,
                )


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
