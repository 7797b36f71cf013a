"""`coldtrace demo`: the whole system end to end, on the embedded defaults.

One pallet of chilled produce is commissioned at a packhouse, travels eight
hours by truck (with a door-open excursion), is received into a distribution
centre's cold room and shipped. Everything runs for real on this machine:

1. Mosquitto runs the project's broker configuration (gateway/broker.py),
   one account and ACL per device;
2. ``coldtrace gateway init`` makes the gateway's keys, gateway.toml and
   trust.json, and ``coldtrace gateway run`` runs in its own process;
3. seven simulated devices - the firmware under CPython (gateway/sim.py) -
   are provisioned and registered, each logger bound to its place from the
   day's start (``coldtrace gateway registry import --at``: binding
   statements), and the product's profile is signed (``registry profile
   set``: chilled 0-4 °C, 30 min delay, 2 h cumulative, 30 min gap); an MQTT
   monitor subscribes to the gateway's alerts;
4. the day is replayed on the devices at high speed (demo/world.py);
5. every device uploads; the gateway verifies, stores, logs and acks each
   record, signs checkpoints and anchors them on its local ledger;
6. the alerts the gateway raised are listed (and kept in alerts.json);
7. ``coldtrace gateway trace`` writes the pallet's bundle (gateway/trace.py):
   its custody, the bindings and profile that span it (restated, since the
   day's statements do not close it yet), the loggers' records; its
   temperature curves go to the terminal and temperature.svg;
8. everything is stopped;
9. ``coldtrace verify`` checks the bundle with nothing but the trust file and
   gives the verdict: FAIL, the truck's excursion outlasted the alarm delay;
10. two tampered copies: one reading edited (signature kept) is not
    verified; the truck logger's records cut out (proof recomputed) verify,
    but the verdict is INCOMPLETE (records_missing), never PASS.

The exit status is 0 only if every step did what it should; Ctrl-C (or
SIGTERM) stops everything started so far and exits 130.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import time
from pathlib import Path
from typing import Any

from demo import show
from demo.system import (
    ALERTS,
    OPS_USER,
    DemoError,
    Progress,
    System,
    sigterm_as_interrupt,
    wait_for,
)
from demo.world import ACTIONS, DEVICE_IDS, GTIN, TAG_UID, World
from gateway.broker import BrokerError
from gateway.profiles import CHILLED
from protocol import cli

# The product profile the brand signs for its GTIN (docs/protocol.md §2.7).
PROFILE = [
    "--low",
    "0",
    "--high",
    "4.00",
    "--delay",
    "30m",
    "--cumul",
    "2h",
    "--gap",
    "30m",
    "--name",
    "chilled 0-4 °C",
]

MARKER = ".coldtrace-demo"


def register(sub: Any) -> None:
    p = sub.add_parser(
        "demo",
        help="run the whole system end to end on the embedded defaults",
        description="Broker, gateway and simulated devices (the real firmware) on this "
        "machine: a pallet's day, its trace bundle, verification and a tampered copy.",
    )
    p.add_argument(
        "--out",
        type=Path,
        default=Path("demo-out"),
        help="output directory (default: ./demo-out; replaced on each run)",
    )
    p.add_argument(
        "--speed",
        type=float,
        default=6000,
        help="how much faster than real time the day is replayed (default 6000: "
        "22 hours in about 13 s)",
    )
    p.set_defaults(func=run)


def _prepare(out: Path, speed: float) -> Path:
    if not 1 <= speed <= 100_000:
        raise DemoError("--speed must be between 1 and 100000")
    out = out.resolve()
    if out.exists() and any(out.iterdir()):
        if not (out / MARKER).exists():
            raise DemoError(f"{out} exists and is not a demo directory: choose another --out")
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / MARKER).write_text("made by coldtrace demo; replaced on each run\n")
    return out


def _replay(system: System, world: World) -> None:
    def report(t: int) -> None:
        temps = " ".join(f"{lg.probe.temp / 100:5.2f}" for lg in world.loggers.values())
        flash = sum(world.queued().values())
        print(f"     {show.clock(t)}  {temps}   on the devices' flash: {flash} records", flush=True)
        system.check_gateway()

    def note(t: int, text: str) -> None:
        print(f"     {show.clock(t)}  {text}", flush=True)

    print(f"     probe °C of {', '.join(world.loggers)}, in that order", flush=True)
    world.replay(report, note)


def _upload(system: System, world: World) -> int:
    sent = 0
    with Progress(system):
        for dev in DEVICE_IDS:
            up = world.upload(dev)
            sent += up.sent
            print(
                f"     {dev:<15} {up.sent:4d} records sent, {up.acked:4d} acked by the gateway, "
                f"{up.left} left on its flash ({up.seconds:.1f} s)",
                flush=True,
            )
            if up.left:
                raise DemoError(f"{dev} still holds {up.left} unacknowledged records")
        n = system.figures()["records"]
        wait_for(
            lambda: system.figures().get("anchor") == n,
            30,
            "a checkpoint covering every record, anchored on the ledger",
        )
    return sent


def _registry(system: System, world: World) -> None:
    conf = str(system.config)
    at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(world.start))
    print(f"   $ coldtrace gateway registry import {world.provisioned} --at {at}")
    if (
        cli.main(["gateway", "registry", "import", "-c", conf, str(world.provisioned), "--at", at])
        != 0
    ):
        raise DemoError("registry import failed")
    print(
        f"   $ coldtrace gateway registry profile set {GTIN} {' '.join(PROFILE[:-1])} "
        f"'{PROFILE[-1]}' --at {at}"
    )
    if (
        cli.main(["gateway", "registry", "profile", "set", GTIN, "-c", conf, *PROFILE, "--at", at])
        != 0
    ):
        raise DemoError("registry profile set failed")


def _trace(system: System, out: Path) -> Path:
    from gateway.config import load_config
    from gateway.trace import TraceError, run_trace

    cfg = load_config(system.config)
    path = out / "bundle.json"
    print(f"$ coldtrace gateway trace {TAG_UID.hex()} -o {path}")
    t0 = time.monotonic()
    try:
        bundle, plan = run_trace(cfg, TAG_UID.hex(), path, say=lambda text: print(f"   {text}"))
    except TraceError as exc:
        raise DemoError(f"gateway trace: {exc}") from None
    system.figures_trace = {"seconds": time.monotonic() - t0, "bytes": path.stat().st_size}
    series = show.probe_series(bundle)
    limits = (CHILLED.low or 0, CHILLED.high or 0)
    band = f"{limits[0] / 100:.2f}–{limits[1] / 100:.2f} °C"
    print(f"   probe curves in the bundle (each logger while it watched the pallet; band {band}):")
    for dev, s in series.items():
        temps = [v for _, v in s]
        print(
            f"     {dev:<14} {show.spark(temps, limits[0] - 200, limits[1] + 600)}  "
            f"{min(temps) / 100:.2f} … {max(temps) / 100:.2f} °C"
        )
        line = show.marks(temps, limits)
        if line.strip():
            print(f"     {'':<14} {line}  ^ outside {band}")
    svg = out / "temperature.svg"
    handovers = [(lp.leg.start, ACTIONS.get(lp.leg.scan.payload.action, "?")) for lp in plan.legs]
    show.svg_chart({f"{d} (probe)": s for d, s in series.items()}, limits, svg, handovers)
    print(f"   temperature chart (excursions in red): {svg}")
    return path


def _verify_brief(path: Path, trust: Path) -> int:
    """What ``coldtrace verify`` finds, one line per kind of failure (an edited record
    fails the one proof, and so every record the proof lists); its exit status."""
    from collections import Counter

    from protocol.bundle import load_bundle
    from protocol.trust import load_trust
    from protocol.verify import verify_bundle
    from protocol.verify_cli import exit_status

    report = verify_bundle(load_bundle(path), load_trust(trust))
    counts = Counter(f.code for f in report.failures)
    first = {}
    for f in report.failures:
        first.setdefault(f.code, f)
    print(
        f"   {len(report.failures)} checks failed: "
        + ", ".join(f"{code} x{n}" for code, n in counts.most_common())
    )
    for code, f in first.items():
        print(f"     {code:<16} {f.subject}: {f.message}"[:160])
    print("   NOT VERIFIED: no verdict" if not report.verified else "   verified")
    return exit_status(report)


def _verify(bundle: Path, trust: Path, out: Path) -> tuple[int, int, int]:
    print(f"$ coldtrace verify {bundle} --trust {trust}")
    good = cli.main(["verify", str(bundle), "--trust", str(trust)])
    print(f"   exit status {good}: verified, verdict FAIL" if good == 4 else f"   exit {good}")
    print("10. two tampered copies")
    print("   a) one reading edited (the excursion's peak, signature kept)")
    bad_path = show.tamper(bundle, out)
    print(f"$ coldtrace verify {bad_path} --trust {trust}   (shortened)")
    bad = _verify_brief(bad_path, trust)
    print(f"   exit status {bad}: not verified" if bad == 3 else f"   exit {bad}")
    print("   b) the truck logger's records cut out, the proof recomputed for what is left")
    cut_path = show.cut_logger(bundle, out, "tl-truck-07")
    print(f"$ coldtrace verify {cut_path} --trust {trust}")
    cut = cli.main(["verify", str(cut_path), "--trust", str(trust)])
    print(f"   exit status {cut}: verified, verdict INCOMPLETE" if cut == 5 else f"   exit {cut}")
    return good, bad, cut


def _run(system: System, out: Path, speed: float) -> int:
    t_start = time.monotonic()
    print(f"ColdTrace demo: a pallet's day through the whole system. Output in {out}\n")
    print("1. broker: Mosquitto, the project's configuration, an account and ACL per device")
    system.start_broker(DEVICE_IDS)
    print(f"   listening on 127.0.0.1:{system.port} ({system.broker_dir}/mosquitto.conf)")
    print("2. $ coldtrace gateway init   (log, ledger and registry keys, gateway.toml, trust.json)")
    system.init_gateway()
    gw = system.start_gateway()
    print(f"   $ coldtrace gateway run   (pid {gw}, log {system.gw_dir}/gateway.log)")
    print("3. devices: the ESP32 firmware under CPython, keys made by its own ct_provision")
    world = system.world = World(out / "devices", "127.0.0.1", system.port, system.passwords, speed)
    for e in world.entries:
        print(f"     {e['device']:<15} {e['role']:<7} {e.get('place', '')}")
    _registry(system, world)
    system.start_monitor()
    print(f"   alert monitor ({OPS_USER}, a read-only account) subscribed to {ALERTS}")
    wait_for(lambda: system.figures().get("connected") is True, 20, "the gateway to connect")
    system.note_workers()

    print(
        f"4. the day (times in UTC), replayed at {speed:g}x: the devices measure, sign and "
        "keep every record\n   on flash; radios off until the replay reaches the present"
    )
    _replay(system, world)
    wait_for(lambda: system.figures().get("pending") == 0, 10, "the registry records to be logged")

    print(
        "5. the present: radios in range; each device uploads, the gateway verifies, stores, "
        "logs and acks"
    )
    world.go_live()
    sent = _upload(system, world)
    f = system.figures()
    print(
        f"   every device's records are acked ({sent} sent); checkpoint {f['checkpoint']} "
        f"signed and anchored on the local ledger (entry {f['anchor_index']})"
    )
    print(f"$ coldtrace gateway status -c {system.config}")
    cli.main(["gateway", "status", "-c", str(system.config)])

    print(
        f"6. alerts the gateway raised (profile chilled: {(CHILLED.low or 0) / 100:.2f}–"
        f"{(CHILLED.high or 0) / 100:.2f} °C, alarm after {CHILLED.delay // 60} min outside)"
    )
    with contextlib.suppress(DemoError):
        wait_for(lambda: any(a.get("phase") == "end" for a in system.alerts), 10, "alerts")
    alarms = show.show_alerts(system.alerts)
    (out / "alerts.json").write_text(json.dumps(system.alerts, indent=1) + "\n")
    print(f"   the events as published: {out / 'alerts.json'}")
    raised = [
        a
        for a in alarms
        if a.get("kind") == "excursion"
        and a.get("side") == "high"
        and a.get("device") == "tl-truck-07"
    ]

    print("7. the pallet's trace, from the gateway's store")
    bundle = _trace(system, out)

    print("8. stopping the devices, the gateway (SIGTERM: acks, checkpoint, close) and Mosquitto")
    world.close()
    system.stop()
    left = system.leftovers()
    print("   no processes left" if not left else f"   STILL RUNNING: {', '.join(left)}")

    print("9. the bundle, checked by the independent verifier with nothing else running")
    good, bad, cut = _verify(bundle, system.trust, out)

    problems = []
    if f["rejects"]:
        problems.append(f"the gateway refused {f['rejects']} message(s)")
    if not raised:
        problems.append("no alert for the truck's excursion")
    if left:
        problems.append("processes left running")
    if good != 4:
        problems.append(f"the genuine bundle's verdict is not FAIL (exit {good}, want 4)")
    if bad != 3:
        problems.append(f"the edited bundle was not refused (exit {bad}, want 3)")
    if cut != 5:
        problems.append(f"the cut bundle is not INCOMPLETE (exit {cut}, want 5)")
    took = time.monotonic() - t_start
    if problems:
        print(f"\ndemo: FAILED after {took:.0f} s: " + "; ".join(problems))
        return 1
    tr = system.figures_trace
    print(
        f"\ndemo: done in {took:.0f} s. The genuine bundle verified and FAILs the profile (the "
        "truck's excursion);\n  the edited reading was refused; the cut logger made it "
        f"INCOMPLETE, not PASS.\n  bundle  {bundle} ({tr['bytes'] // 1024} KiB, written in "
        f"{tr['seconds']:.1f} s)\n  trust   {system.trust}\n  chart   {out / 'temperature.svg'}"
    )
    return 0


def run(args: argparse.Namespace) -> int:
    restore = sigterm_as_interrupt()
    system: System | None = None
    try:
        out = _prepare(args.out, args.speed)
        system = System(out)
        return _run(system, out, args.speed)
    except KeyboardInterrupt:
        print("\ndemo: interrupted; stopping everything", flush=True)
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
