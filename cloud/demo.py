"""`coldtrace demo`: the whole system end to end, on the embedded defaults.

One pallet of chilled produce is commissioned at a packhouse, travels eight
hours by truck (with a door-open excursion), is received into a distribution
centre's cold room and shipped. Everything runs for real on this machine:

1. ``coldtrace gateway init`` makes the gateway's keys and configuration;
2. Mosquitto runs the project's broker configuration, one account and ACL
   per device;
3. five simulated devices - the firmware under CPython (gateway/sim.py) -
   are provisioned and registered with the gateway;
4. ``coldtrace gateway run`` runs in its own process;
5. the day is replayed on the devices at high speed (cloud/demo_world.py),
   then every device uploads; the gateway verifies, stores, logs, acks,
   raises alerts, signs checkpoints and anchors them on its local ledger;
6. the pallet's trace bundle is written (cloud/trace.py), with its custody,
   temperature curves and the alerts;
7. everything is stopped, and ``coldtrace verify`` checks the bundle with
   nothing but the trust file; then one reading is edited and the verifier
   refuses it.

The exit status is 0 only if every step did what it should.
"""

from __future__ import annotations

import argparse
import shutil
import threading
import time
from pathlib import Path
from typing import Any

from cloud import demo_show as show
from cloud import demo_world as world_mod
from cloud.demo_system import (
    ALERTS,
    OPS_USER,
    DemoError,
    System,
    sigterm_as_interrupt,
    wait_for,
)
from gateway.broker import BrokerError
from gateway.profiles import CHILLED
from protocol import cli

MARKER = ".coldtrace-demo"


def register(sub: Any) -> None:
    p = sub.add_parser(
        "demo",
        help="run the whole system end to end on the embedded defaults",
        description="Broker, gateway and simulated devices (the real firmware) on this "
        "machine: a pallet's day, its trace bundle, verification and a tampered copy.",
    )
    p.add_argument("--out", type=Path, default=Path("demo-out"),
                   help="output directory (default: ./demo-out; replaced on each run)")
    p.add_argument("--speed", type=float, default=6000,
                   help="how much faster than real time the day is replayed (default 6000: "
                   "22 hours in about 13 s)")
    p.set_defaults(func=run)


def _prepare(out: Path) -> Path:
    out = out.resolve()
    if out.exists() and any(out.iterdir()):
        if not (out / MARKER).exists():
            raise DemoError(f"{out} exists and is not a demo directory: choose another --out")
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / MARKER).write_text("made by coldtrace demo; replaced on each run\n")
    return out


class Progress:
    """Prints the gateway's figures once a second while they change."""

    def __init__(self, system: System) -> None:
        self.system = system
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
        while not self._stop.wait(1.0):
            try:
                f = self.system.figures()
            except Exception:
                continue
            now = (f.get("records"), f.get("acks"), f.get("checkpoint"), f.get("anchor"))
            if f and now != self.last:
                self.last = now
                cp = "none" if f["checkpoint"] is None else f"{f['checkpoint']} leaves"
                anchored = (
                    f", anchored (ledger entry {f['anchor_index']})"
                    if f["anchor"] is not None and f["anchor"] == f["checkpoint"] else ""
                )
                print(f"     gateway: {f['records']} records logged, {f['acks']} acks sent, "
                      f"checkpoint {cp}{anchored}", flush=True)


def _replay(system: System, world: world_mod.World) -> None:
    def report(t: int) -> None:
        temps = "  ".join(f"{d} {lg.probe.temp / 100:5.2f} °C" for d, lg in world.loggers.items())
        flash = sum(world.queued().values())
        print(f"     +{(t - world.start) // 3600:02d}h  {temps}   on flash: {flash} records",
              flush=True)
        system.check_gateway()

    world.replay(report)
    for t, dev, action in world.scans:
        print(f"     {show.clock(t)}  {dev} scanned the pallet: {show.ACTIONS[action]}")


def _upload(system: System, world: world_mod.World) -> int:
    total = 0
    with Progress(system):
        for dev in world_mod.DEVICE_IDS:
            up = world.upload(dev)
            total += up.sent
            print(f"     {dev:<15} {up.sent:4d} records sent, {up.acked:4d} acked by the gateway, "
                  f"{up.left} left on its flash ({up.seconds:.1f} s)", flush=True)
            if up.left:
                raise DemoError(f"{dev} still holds {up.left} unacknowledged records")
        n = system.figures()["records"]
        wait_for(lambda: system.figures().get("anchor") == n, 30,
                 "a checkpoint covering every record, anchored")
    return total


def _trace(system: System, out: Path) -> tuple[Path, Any]:
    from cloud.trace import trace_bundle
    from gateway.config import load_config
    from gateway.proofs import TreeReader
    from gateway.store import open_store

    cfg = load_config(system.config)
    store = open_store(system.db, readonly=True)
    try:
        cp = store.latest_checkpoint()
        assert cp is not None
        tree = TreeReader(cfg.tree_dir, cp.size)
        try:
            bundle, stays = trace_bundle(store, tree, cfg.log.origin, world_mod.TAG_UID)
        finally:
            tree.close()
    finally:
        store.close()
    path = out / "bundle.json"
    path.write_text(bundle.dumps())
    series = show.probe_series(bundle)
    show.show_custody(world_mod.TAG_UID, bundle.subject.get("item"), stays,
                      {d: len(s) for d, s in series.items()})
    print(f"   wrote {path}: {len(bundle.records)} records (the scans, the loggers' records "
          f"while they held it, the registrations), each with its inclusion proof in checkpoint "
          f"{bundle.inclusion[0].tree_size}, and the checkpoint's anchor receipt")
    limits = (CHILLED.low or 0, CHILLED.high or 0)
    for dev, s in series.items():
        temps = [v for _, v in s]
        print(f"     {dev:<14} {show.spark(temps, limits[0] - 200, limits[1] + 600)}  "
              f"{min(temps) / 100:.2f} … {max(temps) / 100:.2f} °C")
        line = show.marks(temps, limits)
        if line.strip():
            print(f"     {'':<14} {line}  ^ outside {limits[0] / 100:.2f}–{limits[1] / 100:.2f} °C")
    svg = out / "temperature.svg"
    show.svg_chart({f"{d} (probe)": s for d, s in series.items()}, limits, svg)
    print(f"   temperature chart: {svg}")
    return path, bundle


def _run(system: System, out: Path, speed: float) -> int:
    t_start = time.monotonic()
    print(f"ColdTrace demo: a pallet's day through the whole system. Output in {out}\n")
    print("1. broker: Mosquitto with the project's configuration, an account and ACL per device")
    system.start_broker(world_mod.DEVICE_IDS)
    print(f"   listening on 127.0.0.1:{system.port} ({system.broker_dir}/mosquitto.conf)")
    print("2. $ coldtrace gateway init   (log key, ledger key, registry key, gateway.toml)")
    system.init_gateway()
    system.start_gateway()
    print(f"   $ coldtrace gateway run   (pid {system.gateway.pid if system.gateway else '?'}, "
          f"log {system.gw_dir}/gateway.log)")
    print("3. devices: the ESP32 firmware under CPython; keys made by its ct_provision")
    world = world_mod.World(out / "devices", "127.0.0.1", system.port, system.passwords, speed)
    system.world = world
    for e in world.entries:
        print(f"     {e['device']:<15} {e['role']:<7} {e.get('place', '')}")
    print(f"   $ coldtrace gateway registry import {world.provisioned}")
    if cli.main(["gateway", "registry", "import", "-c", str(system.config),
                 str(world.provisioned)]) != 0:
        raise DemoError("registry import failed")
    system.start_monitor()
    print(f"   alert monitor ({OPS_USER}, read-only account) subscribed to {ALERTS}")
    wait_for(lambda: system.figures().get("connected") is True, 20, "the gateway to connect")
    system.note_workers()

    print(f"4. the day, replayed at {speed:g}x: every device measures, signs and keeps its "
          "records on flash;\n   radios stay off until the replay reaches the present")
    _replay(system, world)
    wait_for(lambda: system.figures().get("pending") == 0, 10, "the registrations to be logged")

    print("5. the present: radios in range; each device uploads, the gateway verifies, stores, "
          "logs and acks")
    world.go_live()
    sent = _upload(system, world)
    f = system.figures()
    print(f"   every device's records are acked ({sent} sent); checkpoint {f['checkpoint']} "
          f"signed and anchored on the local ledger (entry {f['anchor_index']})")
    print(f"   $ coldtrace gateway status -c {system.config}")
    cli.main(["gateway", "status", "-c", str(system.config)])
    if f["rejects"]:
        raise DemoError(f"the gateway refused {f['rejects']} message(s)")

    print(f"6. alerts the gateway raised (profile chilled, {CHILLED.low}–{CHILLED.high} "
          "centi-°C, alarm after 30 min)")
    wait_for(lambda: any(a.get("phase") == "end" for a in system.alerts), 10, "the alerts")
    alarms = show.show_alerts(system.alerts)
    excursion = [a for a in alarms if a.get("kind") == "excursion" and a.get("side") == "high"
                 and a.get("device") == "tl-truck-07"]

    print("7. the pallet's trace, from the gateway's store")
    bundle_path, _ = _trace(system, out)

    print("8. stopping the devices, the gateway (SIGTERM) and Mosquitto")
    world.close()
    system.stop()
    left = system.leftovers()
    print("   no processes left" if not left else f"   STILL RUNNING: {', '.join(left)}")

    print(f"9. the bundle, verified with nothing else running:\n"
          f"$ coldtrace verify {bundle_path} --trust {system.trust}")
    good = cli.main(["verify", str(bundle_path), "--trust", str(system.trust)])
    print("10. one reading edited (signature kept), verified again")
    bad_path = show.tamper(bundle_path, out)
    print(f"$ coldtrace verify {bad_path} --trust {system.trust}")
    bad = cli.main(["verify", str(bad_path), "--trust", str(system.trust)])

    problems = []
    if good != 0:
        problems.append(f"the genuine bundle did not verify (exit {good})")
    if bad != 1:
        problems.append(f"the edited bundle was not refused (exit {bad})")
    if not excursion:
        problems.append("no alert for the truck's excursion")
    if left:
        problems.append("processes left running")
    took = time.monotonic() - t_start
    if problems:
        print(f"\ndemo: FAILED after {took:.0f} s: " + "; ".join(problems))
        return 1
    print(f"\ndemo: done in {took:.0f} s. The genuine bundle verified; the edited reading was "
          f"refused.\n  bundle  {bundle_path}\n  trust   {system.trust}\n"
          f"  chart   {out / 'temperature.svg'}")
    return 0


def run(args: argparse.Namespace) -> int:
    restore = sigterm_as_interrupt()
    system: System | None = None
    try:
        out = _prepare(args.out)
        system = System(out)
        return _run(system, out, args.speed)
    except KeyboardInterrupt:
        print("\ndemo: interrupted; stopping everything")
        return 130
    except (DemoError, BrokerError) as exc:
        print(f"\ndemo: {exc}")
        if isinstance(exc, BrokerError) and "not found" in str(exc):
            print("demo: it needs Mosquitto: `make demo` installs it (scripts/ensure-system.sh)")
        return 1
    finally:
        if system is not None:
            if system.world is not None:
                system.world.close()
            system.stop()
            left = system.leftovers()
            if left:
                print(f"demo: could not stop {', '.join(left)}")
        restore()
