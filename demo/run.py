"""`coldtrace demo`: the whole system end to end, on the embedded defaults.

One pallet of chilled produce is commissioned at a packhouse, travels eight
hours by truck (with a door-open excursion), is received into a distribution
centre's cold room and shipped; a spare part (a GTIN without a temperature
profile, whose brand owner is the packhouse) rides beside it and is sold by
the DC. Three organisations handle them - the packhouse, the carrier and the
distribution centre (demo/world.py :data:`ORGS`) - each with its own broker,
gateway, log and registry, and all three push to one cloud service.
Everything runs for real on this machine:

1. the cloud: ``coldtrace cloud init`` (SQLite, witness key, operator token)
   and ``coldtrace cloud serve`` on a free loopback port, in its own process;
2. per organisation, Mosquitto runs the project's broker configuration
   (gateway/transport/broker.py), one account and ACL per device of that organisation,
   and ``coldtrace gateway init`` makes the gateway's keys, gateway.toml
   (its registry's scopes; ``[cloud] url``; the peers it witnesses; for the
   DC ``[dashboard]`` on a free loopback port) and trust.json;
3. the cloud's operator registers each organisation: its log vkey, its
   registry key with scopes that do not tie (docs/protocol.md §10), its
   ledger key, its gateway's witness key (``coldtrace cloud org|log|registry|
   ledger|witness add``), and makes a read token for the DC;
4. seven simulated devices - the firmware under CPython (demo/sim.py) -
   are provisioned, each connecting to its own organisation's broker; each
   organisation registers its devices, binding its loggers to their places
   from the day's start (``registry import --at``), and the packhouse signs
   the product's profile (``registry profile set``); then ``coldtrace gateway
   run`` runs for each organisation in its own process, logging what waits in
   its outbox and pushing its log to the cloud as it goes (the DC's serves
   its dashboard, whose URL is printed: live only while the demo runs); MQTT
   monitors subscribe to the three gateways' alerts;
5. the day is replayed on the devices at high speed (demo/world.py);
6. every device uploads to its organisation's gateway, which verifies,
   stores, logs and acks each record, signs checkpoints and anchors them;
7. the alerts the gateways raised are listed (and kept in alerts.json);
8. closing the day: each gateway restates its open binding and profile
   chains (``registry restate --all``) and anchors them, ``coldtrace gateway
   push --wait`` makes sure the cloud holds its whole log, and the gateways
   witness each other's logs through the cloud (``gateway witness --once``);
9. the pallet's trace from the cloud, read with the DC's token: the custody
   across the three organisations, the witnessed checkpoints, the verdict,
   the bundle and the cloud's trust file; temperature curves to the terminal
   and temperature.svg;
10. the tags: ``coldtrace tag commission`` records the pallet's and the
    part's NTAG 424 DNA tags with the cloud (per-tag keys); the pallet's
    consumer URL (GS1 Digital Link path, a valid SUN message for the tag's
    next read, cloud/sun.make_sun_url) opened as a phone would: the page says
    genuine, then replayed for the same URL again; the part's trace and
    bundle from the cloud, its tap (genuine) and a counterfeit carrying a
    copy of that URL (replayed); the DC gateway's dashboard answers;
11. everything is stopped;
12. ``coldtrace verify`` checks the cloud's bundle with nothing but the
    cloud's trust file (witness quorum 1): verified, FAIL - the truck's
    excursion outlasted the alarm delay; ``coldtrace report`` writes the
    shipment release report (report.pdf) with the cloud's verification URL;
13. two tampered copies: one reading edited (signature kept) is not
    verified; the truck logger's records cut out (proof recomputed) verify,
    but the verdict is INCOMPLETE (records_missing), never PASS;
14. the part's provenance verdict from its bundle and each tap's status
    (``verify --tag``): GENUINE for the genuine tap, SUSPECT for the
    counterfeit's replayed one.

The exit status is 0 only if every step did what it should; Ctrl-C (or
SIGTERM) stops everything started so far and exits 130.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import shutil
import time
from pathlib import Path
from typing import Any

from demo import show
from demo.system import (
    DemoError,
    Progress,
    System,
    quiet_cli,
    sigterm_as_interrupt,
    wait_for,
)
from demo.world import (
    ACTIONS,
    GTIN,
    PART_GTIN,
    PART_NAME,
    PART_UID,
    PART_URL,
    TAG_UID,
    TAG_URL,
    TRUCK,
    World,
)
from gateway.profiles import CHILLED
from gateway.transport.broker import BrokerError
from protocol import cli

# The product profile the packhouse's registry signs for its GTIN (docs/protocol.md §2.7).
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
# Who witnesses whom, through the cloud ([[witness.peers]]): a ring, so every log
# is cosigned by a peer as well as by the cloud.
WITNESSES = {"dc": "carrier", "carrier": "packhouse", "packhouse": "dc"}
READER = "dc"  # whose token reads the trace
DASHBOARD = "dc"  # whose gateway serves its operator's dashboard ([dashboard])

MARKER = ".coldtrace-demo"


def register(sub: Any) -> None:
    p = sub.add_parser(
        "demo",
        help="run the whole system end to end on the embedded defaults",
        description="Three organisations' brokers and gateways, simulated devices (the real "
        "firmware) and the cloud on this machine: a pallet's day, its trace across the "
        "organisations, verification and tampered copies.",
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
    p.add_argument(
        "--ledger",
        choices=("local", "evm"),
        default="local",
        help="where the gateways anchor their checkpoints: each its own local ledger "
        "(default), or an anchor contract on an EVM chain (Anvil started on loopback; "
        "docs/evm.md)",
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


def _short(key: str, n: int = 24) -> str:
    return key if len(key) <= n else key[:n] + "…"


def _vkey(vkey: str) -> str:
    """``name+keyid+…``: a note vkey with its key left out."""
    name, kid, _ = vkey.split("+", 2)
    return f"{name}+{kid}+…"


def _q(items: Any) -> str:
    return " ".join(f"'{i}'" if "*" in i else i for i in items)


# --- the cloud and the organisations --------------------------------------------------------


def _cloud(system: System) -> None:
    d = system.cloud_dir
    text = system.init_cloud()
    print(f"   $ coldtrace cloud init --dir {d} --public-url {system.cloud_url}")
    for line in text.splitlines():
        print(f"     {line.strip()}")
    if system.ledger == "evm":
        url = system.start_chain()
        print(
            f"   the EVM chain: Anvil on {url} (chain {system.chain.chain_id}, a block a "
            f"second; log {system.out}/anvil.log);\n   cloud.toml [[evm]] rpc_url: the cloud "
            "checks EVM anchors there"
        )
    pid = system.start_cloud()
    print(f"   $ coldtrace cloud serve --dir {d}   (pid {pid}, log {d}/cloud.log)")
    system.wait_cloud()
    print(f"   answering at {system.cloud_url} (SQLite {d}/cloud.db)")


def _organisations(system: System) -> None:
    system.start_brokers()
    for site in system:
        system.init_gateway(site)
    if system.ledger == "evm":
        for site in system:
            contract = system.configure_evm(site)
            print(
                f'   {site.name}: [ledger] backend = "evm", a funded anchoring key; '
                f"$ coldtrace gateway ledger deploy -c {site.config}\n"
                f"     -> contract {contract} written into [ledger.evm] and trust.json"
            )
    for site in system:
        peer = WITNESSES.get(site.name)
        system.configure_cloud(site, [system.sites[peer]] if peer else [])
    system.configure_dashboard(system.sites[DASHBOARD])
    print(f"   {'':<10} {'company':<20} {'broker':<16} {'gateway':<19} log origin")
    for site in system:
        o = site.org
        print(
            f"   {o.name:<10} {o.company:<20} 127.0.0.1:{site.port:<6} {o.gateway:<19} {o.origin}"
        )
    print(
        "   each: an account and ACL per device of its own, $ coldtrace gateway init --dir "
        f"{system.out}/<org>/gateway\n"
        f"   (keys, trust.json; gateway.toml: its registry's scopes, [cloud] url = "
        f'"{system.cloud_url}",'
    )
    ring = ", ".join(f"{a} witnesses {b}" for a, b in WITNESSES.items())
    dash = system.sites[DASHBOARD]
    print(
        f"   and [[witness.peers]]: {ring};\n   the {DASHBOARD}'s also [dashboard] listen = "
        f'"127.0.0.1:{dash.dashboard_port}")'
    )


def _operator(system: System) -> str:
    """The operator pins each organisation's keys; returns the reader's token."""
    d = system.cloud_dir
    print(f"   (D={d}; keys shortened)")
    token = ""
    for site in system:
        o = site.org
        trust = json.loads(site.trust.read_text())
        (log,) = trust["logs"]
        (reg,) = trust["registries"]
        (led,) = trust["ledgers"]
        status, witness = quiet_cli(["gateway", "witness-key", "-c", str(site.config)])
        if status != 0:
            raise DemoError(f"gateway witness-key ({site.name}) failed: {witness}")
        witness = witness.strip()
        system.cloud_cli("org", "add", o.name, "--display", o.display)
        system.cloud_cli("log", "add", o.name, log["vkey"])
        system.cloud_cli(
            "registry",
            "add",
            o.name,
            "--id",
            reg["id"],
            "--key",
            reg["key"],
            "--devices",
            *o.device_scope,
            "--places",
            *o.places,
            "--gtins",
            *o.gtins,
        )
        if led["type"] == "evm":
            system.cloud_cli(
                "ledger",
                "add-evm",
                o.name,
                "--chain-id",
                str(led["chain_id"]),
                "--contract",
                led["contract"],
            )
        else:
            system.cloud_cli("ledger", "add", o.name, "--id", led["id"], "--key", led["key"])
        system.cloud_cli("witness", "add", o.name, witness)
        print(f"   $ coldtrace cloud org add --dir $D {o.name} --display '{o.display}'")
        print(f"     coldtrace cloud log add --dir $D {o.name} {_vkey(log['vkey'])}")
        print(
            f"     coldtrace cloud registry add --dir $D {o.name} --id {reg['id']} --key "
            f"{_short(reg['key'], 12)} --devices {_q(o.device_scope)} --places {_q(o.places)}"
            + (f" --gtins {_q(o.gtins)}" if o.gtins else " (no GTIN)")
        )
        if led["type"] == "evm":
            print(
                f"     coldtrace cloud ledger add-evm --dir $D {o.name} --chain-id "
                f"{led['chain_id']} --contract {led['contract']}"
            )
        else:
            print(
                f"     coldtrace cloud ledger add --dir $D {o.name} --id {led['id']} --key "
                f"{_short(led['key'], 12)}"
            )
        print(
            f"     coldtrace cloud witness add --dir $D {o.name} {_vkey(witness)}"
            "   (gateway witness-key)"
        )
        if o.name == READER:
            token = system.cloud_cli("token", "add", o.name, "--scopes", "read", "--label", "demo")
    tok = system.cloud_dir / f"{READER}.token"
    tok.write_text(token + "\n")
    tok.chmod(0o600)
    print(f"   $ coldtrace cloud token add --dir $D {READER} --scopes read   -> {tok}")
    return token


def _registry(system: System, world: World) -> None:
    at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(world.start))
    for site in system:
        conf = str(site.config)
        path = world.provisioned[site.name]
        print(f"   {site.name}: $ coldtrace gateway registry import {path.name} --at {at}")
        status, text = quiet_cli(
            ["gateway", "registry", "import", "-c", conf, str(path), "--at", at]
        )
        print(f"     {text.strip()}")
        if status != 0:
            raise DemoError(f"registry import ({site.name}) failed")
        if GTIN in site.org.gtins:
            print(
                f"   {site.name}: $ coldtrace gateway registry profile set {GTIN} "
                f"{' '.join(PROFILE[:-1])} '{PROFILE[-1]}' --at {at}"
            )
            status, text = quiet_cli(
                ["gateway", "registry", "profile", "set", GTIN, "-c", conf, *PROFILE, "--at", at]
            )
            print(f"     {text.strip()}")
            if status != 0:
                raise DemoError("registry profile set failed")


# --- the day -----------------------------------------------------------------------------


def _replay(system: System, world: World) -> None:
    def report(t: int) -> None:
        temps = " ".join(f"{lg.probe.temp / 100:5.2f}" for lg in world.loggers.values())
        flash = sum(world.queued().values())
        print(f"     {show.clock(t)}  {temps}   on the devices' flash: {flash} records", flush=True)
        system.check_processes()

    def note(t: int, text: str) -> None:
        print(f"     {show.clock(t)}  {text}", flush=True)

    print(f"     probe °C of {', '.join(world.loggers)}, in that order", flush=True)
    world.replay(report, note)


def _upload(system: System, world: World) -> int:
    sent = 0
    with Progress(system):
        for site in system:
            for dev in site.org.devices:
                up = world.upload(dev)
                sent += up.sent
                print(
                    f"     {site.name:<9} {dev:<15} {up.sent:4d} records sent, {up.acked:4d} "
                    f"acked by the gateway, {up.left} left on its flash ({up.seconds:.1f} s)",
                    flush=True,
                )
                if up.left:
                    raise DemoError(f"{dev} still holds {up.left} unacknowledged records")
        for site in system:
            wait_for(
                site.caught_up,
                30,
                f"a checkpoint of the {site.name} gateway covering every record, anchored",
            )
    return sent


# --- closing the day: restate, anchor, push, witness ------------------------------------


def _close_day(system: System) -> None:
    for site in system:
        print(f"   {site.name}: $ coldtrace gateway registry restate --all -c {site.config}")
        status, text = quiet_cli(
            ["gateway", "registry", "restate", "--all", "-c", str(site.config)]
        )
        for line in text.splitlines():
            if line.endswith(": restated"):
                print(f"     {line}")
        if status != 0:
            raise DemoError(f"registry restate ({site.name}) failed: {text.strip()}")
    t0 = time.monotonic()
    for site in system:
        wait_for(site.caught_up, 30, f"the {site.name} gateway to log and anchor its restatements")
    figs = {s.name: s.figures() for s in system}
    print(
        "   logged and anchored: "
        + ", ".join(f"{n} checkpoint {f['anchor']} ({f['anchor_where']})" for n, f in figs.items())
        + f" ({time.monotonic() - t0:.1f} s)"
    )
    for site in system:
        print(f"   {site.name}: $ coldtrace gateway push -c {site.config} --wait 30")
        status, text = quiet_cli(["gateway", "push", "-c", str(site.config), "--wait", "30"])
        for line in text.strip().splitlines():
            print(f"     {line}")
        if status != 0:
            raise DemoError(f"gateway push ({site.name}) failed (exit {status})")
    for site in system:
        print(f"   {site.name}: $ coldtrace gateway witness --once -c {site.config}")
        status, text = quiet_cli(["gateway", "witness", "--once", "-c", str(site.config)])
        for line in text.strip().splitlines():
            print(f"     {line}")
        if status != 0:
            raise DemoError(f"gateway witness ({site.name}) failed (exit {status})")


# --- the trace from the cloud ------------------------------------------------------------------


def _get(system: System, path: str, token: str | None = None, **params: str) -> Any:
    import httpx

    headers = {"Authorization": f"Bearer {token}"} if token else {}
    r = httpx.get(system.cloud_url + path, headers=headers, params=params or None, timeout=60)
    if r.status_code != 200:
        raise DemoError(f"GET {path}: {r.status_code} {r.text[:500]}")
    return r


def _trace(system: System, token: str, out: Path) -> tuple[Path, Path, dict[str, Any]]:
    from protocol.bundle import loads_bundle

    uid = TAG_UID.hex()
    url = f"{system.cloud_url}/v1/traces/{uid}"
    print(f"   GET {url}   (the {READER}'s read token)")
    t0 = time.monotonic()
    trace = _get(system, f"/v1/traces/{uid}", token).json()
    took = time.monotonic() - t0
    (out / "trace.json").write_text(json.dumps(trace, indent=1) + "\n")
    print(
        f"   assembled and verified by the cloud in {took:.1f} s (kept in {out / 'trace.json'}); "
        f"item {trace['item']}"
    )
    print("   custody across the organisations (UTC):")
    show.custody(trace)
    if trace["awaiting"]:
        print(f"   awaiting: {', '.join(str(a['log']) for a in trace['awaiting'])}")

    b = _get(system, trace["bundle_url"], token)
    bundle_path = out / "bundle.json"
    bundle_path.write_bytes(b.content)
    bundle = loads_bundle(b.content)
    orgs = {s.org.origin: s.name for s in system}
    print("   witnessed checkpoints in the bundle (one per log, the latest anchored):")
    show.checkpoints(bundle, orgs, trace)

    v = trace["verdict"] or {}
    print(f"   verdict: {v.get('verdict', 'none (not verified)')}")
    for r in v.get("reasons", []):
        print(f"     {r['severity']:<10} {r['text']}")

    public = f"/v1/public/trace?dl={TAG_URL}"
    pub = _get(system, "/v1/public/trace", dl=TAG_URL).json()
    pub_verdict = (pub.get("verdict") or {}).get("verdict")
    print(f"   the product's trace:  {url}")
    print(f"   for consumers:        {system.cloud_url}{public}   (public: {pub_verdict})")
    size = trace["bundle"]
    print(
        f"   the bundle:           {system.cloud_url}{trace['bundle_url']}\n"
        f"     {size['bytes'] // 1024} KiB for {size['records']} records of "
        f"{size['record_bytes'] // 1024} KiB: {size['ratio']:.2f}x the raw records; "
        f"saved as {bundle_path}"
    )
    trust_path = out / "cloud-trust.json"
    trust_path.write_bytes(_get(system, "/v1/trust").content)
    doc = json.loads(trust_path.read_text())
    print(
        f"   GET {system.cloud_url}/v1/trust -> {trust_path}: {len(doc['logs'])} logs, "
        f"{len(doc['registries'])} registries, {len(doc['ledgers'])} ledgers, "
        f"{len(doc['witnesses'])} witness (the cloud's: a gateway's own witness must not "
        f"vouch for its own log), quorum {doc['quorum']}"
    )

    # each logger's curve, in the order the pallet met them
    series = dict(sorted(show.probe_series(bundle).items(), key=lambda kv: kv[1][0][0]))
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
    handovers = [(leg["start"], ACTIONS.get(leg["action"], "?")) for leg in trace["legs"]]
    show.svg_chart({f"{d} (probe)": s for d, s in series.items()}, limits, svg, handovers)
    print(f"   temperature chart (excursions in red): {svg}")
    return bundle_path, trust_path, trace


# --- the tags and the consumer page -------------------------------------------------------------


def _item(url: str) -> str:
    """The GS1 Digital Link path of a tag's URL."""
    return url[url.index("/01/") :]


def _commission_tag(system: System, org: str, uid: bytes, item: str) -> Any:
    """``coldtrace tag commission`` on the cloud's directory: the tag's keys (TagKeys)."""
    from cloud.sun import TagKeys

    argv = ["--org", org, "--uid", uid.hex().upper(), "--item", item]
    print(f"   $ coldtrace tag commission --dir $D {' '.join(argv)}")
    status, text = quiet_cli(["tag", "commission", "--dir", str(system.cloud_dir), *argv, "--json"])
    if status != 0:
        raise DemoError(f"coldtrace tag commission failed: {text.strip()}")
    doc = json.loads(text[text.index("{") :])
    held = "holds" if doc["commission_scan"] else "does not hold yet"
    print(
        "     keys 0-4 diversified from the cloud's tags.key (AN10922), to write to the tag "
        f"with its SDM settings;\n     the cloud {held} the signed scan that binds it to its item"
    )
    k = {n: bytes.fromhex(v) for n, v in doc["keys"].items() if n != "derivation"}
    return TagKeys(
        k["key0_app_master"], k["key1_sdm_meta_read"], k["key2_sdm_file_read"], k["key3"], k["key4"]
    )


def _tap(system: System, url: str) -> dict[str, Any]:
    """Open ``url`` as a phone would (the consumer page): its status code, the tag's
    status and the verdict the page shows."""
    import re

    import httpx

    r = httpx.get(url, timeout=60)
    m = re.search(r'<script type="application/json" id="ct-data">(.*?)</script>', r.text, re.S)
    data = json.loads(m.group(1)) if m else {}
    tag = data.get("tag") or {}
    verdict = ((data.get("server") or {}).get("verdict") or {}).get("verdict")
    return {
        "url": url,
        "code": r.status_code,
        "status": tag.get("status"),
        "counter": tag.get("counter"),
        "verdict": verdict,
    }


def _tap_line(what: str, tap: dict[str, Any], verdict: bool = True) -> None:
    read = f" (read {tap['counter']})" if tap.get("counter") is not None else ""
    shown = f"; the page's verdict {tap['verdict'] or '-'}" if verdict else ""
    print(f"   {what}: {tap['code']}, tag {tap['status']}{read}{shown}")


def _dashboard(site: Any) -> int:
    """The gateway's dashboard, while it runs: the page's status code (and what its
    snapshot shows, in a line)."""
    from collections import Counter

    import httpx

    url = site.dashboard_url
    try:
        page = httpx.get(url, timeout=10)
        snap = httpx.get(url + "api/snapshot", timeout=10).json()
    except (httpx.HTTPError, ValueError) as exc:
        print(f"   the {site.name} gateway's dashboard {url}: no answer ({exc})")
        return 0
    states = Counter(d["state"] for d in snap.get("devices", []))
    print(
        f"   the {site.name} gateway's dashboard, live until step 11: GET {url} -> "
        f"{page.status_code}; devices "
        + ", ".join(f"{n} {state}" for state, n in sorted(states.items()))
        + f"; {len(snap.get('in_transit', []))} tagged item(s) in transit"
    )
    return page.status_code


def _tags(system: System, world: World, token: str, out: Path) -> dict[str, Any]:
    """Commission the pallet's and the part's tags with the cloud; tap each as a phone
    would with the URL its tag mirrors on its next read, then the same URL again."""
    from cloud.sun import make_sun_url

    keys = _commission_tag(system, "packhouse", TAG_UID, _item(TAG_URL))
    counter = world.tag.counter + 1
    url = make_sun_url(keys, TAG_UID, counter, system.cloud_url, _item(TAG_URL))
    print(f"   the pallet's consumer URL, as its tag mirrors it on its next read ({counter}):")
    print(f"     {url}")
    first = _tap(system, url)
    _tap_line("a phone opens it", first)
    again = _tap(system, url)
    _tap_line("the same URL again (a copy)", again)

    print(
        f"   the {PART_NAME} beside the pallet, GTIN {PART_GTIN}: no temperature profile; its "
        "brand owner is\n   the packhouse (its registry's gtins scope); the DC sold it"
    )
    part_keys = _commission_tag(system, "packhouse", PART_UID, _item(PART_URL))
    uid = PART_UID.hex()
    trace = _get(system, f"/v1/traces/{uid}", token).json()
    (out / "part-trace.json").write_text(json.dumps(trace, indent=1) + "\n")
    legs = " -> ".join(
        f"{ACTIONS.get(leg['action'], '?')} {leg['location'] or leg['place']} "
        f"({leg['organisation'] or '-'})"
        for leg in trace["legs"]
    )
    print(f"   its custody, from the cloud (GET /v1/traces/{uid}):\n     {legs}")
    part_bundle = out / "part-bundle.json"
    part_bundle.write_bytes(_get(system, trace["bundle_url"], token).content)
    counter = world.part_tag.counter + 1
    part_url = make_sun_url(part_keys, PART_UID, counter, system.cloud_url, _item(PART_URL))
    print(f"   its consumer URL (read {counter}):\n     {part_url}")
    part = _tap(system, part_url)
    _tap_line("the buyer taps the part", part)
    fake = _tap(system, part_url)
    _tap_line("a counterfeit carrying a copy of that URL, tapped in another shop", fake)
    taps = {"pallet": first, "pallet_again": again, "part": part, "counterfeit": fake}
    (out / "taps.json").write_text(json.dumps(taps, indent=1) + "\n")
    return {**taps, "part_bundle": part_bundle}


# --- verification ---------------------------------------------------------------------------


def _verify_brief(path: Path, trust: Path, rpc_url: str | None = None) -> int:
    """What ``coldtrace verify`` finds, one line per kind of failure (an edited record
    fails the one proof, and so every record the proof lists); its exit status."""
    from collections import Counter

    from protocol.bundle import load_bundle
    from protocol.rpc import json_rpc
    from protocol.trust import load_trust
    from protocol.verify import verify_bundle
    from protocol.verify_cli import exit_status

    rpc = json_rpc(rpc_url) if rpc_url else None
    report = verify_bundle(load_bundle(path), load_trust(trust), rpc=rpc)
    counts = Counter(f.code for f in report.failures)
    first = {}
    for f in report.failures:
        first.setdefault(f.code, f)
    if report.failures:
        print(
            f"   {len(report.failures)} checks failed: "
            + ", ".join(f"{code} x{n}" for code, n in counts.most_common())
        )
    for code, f in first.items():
        print(f"     {code:<16} {f.subject}: {f.message}"[:160])
    if not report.verified:
        print("   NOT VERIFIED: no verdict")
    else:
        doc = report.verdict_document()
        print(f"   verified; VERDICT: {doc['verdict']}")
        for r in doc["reasons"]:
            print(f"     {r['severity']:<10} {r['text']}"[:160])
    return exit_status(report)


def _verify(
    bundle: Path, trust: Path, out: Path, rpc_url: str | None = None
) -> tuple[int, int, int]:
    rpc = ["--evm-rpc", rpc_url] if rpc_url else []
    print(f"$ coldtrace verify {bundle} --trust {trust} {' '.join(rpc)}".rstrip())
    good = cli.main(["verify", str(bundle), "--trust", str(trust), *rpc])
    print(f"   exit status {good}: verified, verdict FAIL" if good == 4 else f"   exit {good}")
    print("13. two tampered copies")
    print("   a) one reading edited (the excursion's peak, signature kept)")
    bad_path = show.tamper(bundle, out)
    print(f"$ coldtrace verify {bad_path} --trust {trust} {' '.join(rpc)}  (shortened)")
    bad = _verify_brief(bad_path, trust, rpc_url)
    print(f"   exit status {bad}: not verified" if bad == 3 else f"   exit {bad}")
    print("   b) the truck logger's records cut out, the proof recomputed for what is left")
    cut_path = show.cut_logger(bundle, out, "tl-truck-07")
    print(f"$ coldtrace verify {cut_path} --trust {trust} {' '.join(rpc)}  (shortened)")
    cut = _verify_brief(cut_path, trust, rpc_url)
    print(f"   exit status {cut}: verified, verdict INCOMPLETE" if cut == 5 else f"   exit {cut}")
    return good, bad, cut


def _report(
    bundle: Path, trust: Path, out: Path, url: str, rpc_url: str | None = None
) -> Path | None:
    """``coldtrace report``: the shipment release report of the verified bundle."""
    pdf = out / "report.pdf"
    rpc = ["--evm-rpc", rpc_url] if rpc_url else []
    print(
        f"$ coldtrace report {bundle.name} --trust {trust.name} -o {pdf.name} --url {url} "
        + " ".join(rpc)
    )
    status, text = quiet_cli(
        ["report", str(bundle), "--trust", str(trust), "-o", str(pdf), "--url", url, *rpc]
    )
    if status != 0 or not pdf.exists():
        print(f"   exit {status}: {text.strip()}")
        return None
    print(
        f"   the shipment release report: {pdf} ({pdf.stat().st_size // 1024} KiB; the verdict, "
        "custody, charts, proofs,\n   the cloud's verification URL as text and QR code, a "
        "signature block)"
    )
    return pdf


def _provenance(
    bundle: Path, trust: Path, taps: dict[str, Any], rpc_url: str | None = None
) -> tuple[str, str]:
    """``coldtrace verify --tag``: the part's verdict with the tag's status at the genuine
    tap and at the counterfeit's (shortened to the verdict and its reasons)."""
    out = []
    for who, tap in (("the buyer's tap", taps["part"]), ("the counterfeit's", taps["counterfeit"])):
        argv = ["verify", str(bundle), "--trust", str(trust), "--tag", str(tap["status"])]
        if rpc_url:
            argv += ["--evm-rpc", rpc_url]
        print(f"$ coldtrace {' '.join(argv)}   ({who}; shortened)")
        status, text = quiet_cli(argv)
        lines = text.splitlines()
        verdict = next((ln for ln in lines if ln.startswith("VERDICT:")), None)
        if verdict is None:
            print(f"   exit status {status}: no verdict")
            out.append("none")
            continue
        word = verdict.split()[1]
        print(f"   {verdict}"[:160])
        for ln in lines[lines.index(verdict) + 1 :]:
            if ln.strip().startswith(("suspect", "unconfirmed")):
                print(f"   {ln}"[:160])
        print(f"   exit status {status}: {word}")
        out.append(word)
    return out[0], out[1]


def _evm_anchors(bundle: Path) -> int:
    """How many of the bundle's anchors are EVM receipts (``--ledger evm``)."""
    from protocol.bundle import load_bundle

    return sum(1 for a in load_bundle(bundle).anchors if a.receipt.get("type") == "evm")


# --- the whole run ---------------------------------------------------------------------------


def _run(system: System, out: Path, speed: float) -> int:
    t_start = time.monotonic()
    print(
        "ColdTrace demo: a pallet's day across three organisations - a packhouse, a carrier "
        f"and a distribution centre -\nand the cloud they push to. Output in {out}\n"
    )
    print("1. the cloud")
    _cloud(system)
    print(
        "2. three organisations, each with its own Mosquitto (the project's configuration) "
        "and gateway"
    )
    _organisations(system)
    print(
        "3. the cloud's operator registers each organisation: log, registry with scopes that "
        "do not tie, ledger, witness"
    )
    token = _operator(system)

    print(
        "4. devices: the ESP32 firmware under CPython, keys made by its own ct_provision; each "
        "connects to its\n   organisation's broker. Each organisation registers its own "
        "devices (the records wait in its\n   gateway's outbox until the gateway runs)"
    )
    world = system.world = World(out / "devices", system.brokers(), speed)
    for e in world.entries:
        site = next(s for s in system if e["device"] in s.org.devices)
        print(
            f"     {e['device']:<15} {e['role']:<7} {e.get('place', ''):<26} "
            f"{site.name} (127.0.0.1:{site.port})"
        )
    # Registered before the gateways start: a running gateway reads the devices' ack keys
    # when it starts, so a device registered later would not be acked until a restart.
    _registry(system, world)
    pids = ", ".join(f"{s.name} pid {system.start_gateway(s)}" for s in system)
    print(f"   $ coldtrace gateway run   x3 ({pids}; logs in <org>/gateway/gateway.log)")
    dash = system.sites[DASHBOARD]
    print(
        f"   the {DASHBOARD} gateway's dashboard: {dash.dashboard_url}   (live only while the "
        "demo runs)"
    )
    system.start_monitors()
    print(
        "   alert monitors (ops@<gateway>, read-only accounts) subscribed to "
        + ", ".join(s.alerts_topic for s in system)
    )
    for site in system:
        wait_for(
            lambda s=site: s.figures().get("connected") is True,
            30,
            f"the {site.name} gateway to connect",
        )
    system.note_workers()

    print(
        f"5. the day (times in UTC), replayed at {speed:g}x: the devices measure, sign and "
        "keep every record\n   on flash; radios off until the replay reaches the present"
    )
    _replay(system, world)
    for site in system:
        wait_for(
            lambda s=site: s.figures().get("pending") == 0,
            10,
            f"the {site.name} registry records to be logged",
        )

    print(
        "6. the present: radios in range; each device uploads to its organisation's gateway, "
        "which verifies,\n   stores, logs and acks, and pushes its log to the cloud"
    )
    world.go_live()
    sent = _upload(system, world)
    print(
        f"   every device's records are acked ({sent} sent); the checkpoints signed and anchored:"
    )
    rejects = 0
    for site in system:
        f = site.figures()
        rejects += f["rejects"]
        print(
            f"     {site.name:<10} checkpoint {f['checkpoint']:>5}, {f['anchor_where']}; "
            f"the cloud holds {f['cloud']} records"
        )

    print(
        f"7. alerts the gateways raised (profile chilled: {(CHILLED.low or 0) / 100:.2f}–"
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

    print(
        "8. closing the day: each gateway restates its open chains and anchors them, pushes, "
        "and witnesses its peer"
    )
    _close_day(system)

    print("9. the pallet's trace, from the cloud")
    bundle, trust, trace = _trace(system, token, out)

    print(
        f"10. the tags, commissioned with the cloud (D={system.cloud_dir}), and the consumer page"
    )
    taps = _tags(system, world, token, out)
    dashboard = _dashboard(system.sites[DASHBOARD])

    cloud_url = system.cloud_url
    print(
        "11. stopping the devices, the gateways (SIGTERM: acks, checkpoint, close), the cloud "
        "and Mosquitto"
    )
    world.close()
    system.stop()
    left = system.leftovers()
    print("   no processes left" if not left else f"   STILL RUNNING: {', '.join(left)}")
    rpc_url = None if system.chain is None else system.chain.url
    if rpc_url:
        print(f"   (the EVM node stays up: the verifier checks the anchors on it, {rpc_url})")

    print(
        "12. the cloud's bundle, checked by the independent verifier with nothing but the "
        "cloud's trust file\n    (witness quorum 1) and nothing else running"
    )
    good, bad, cut = _verify(bundle, trust, out, rpc_url)
    report = _report(bundle, trust, out, f"{cloud_url}/v1/public/trace?dl={trace['item']}", rpc_url)
    print("14. the spare part's provenance verdict, from its bundle and each tap's status")
    part_genuine, part_fake = _provenance(taps["part_bundle"], trust, taps, rpc_url)
    evm_anchors = _evm_anchors(bundle) if rpc_url else None
    system.stop_chain()

    problems = []
    if rejects:
        problems.append(f"the gateways refused {rejects} message(s)")
    if not raised:
        problems.append("no alert for the truck's excursion")
    if left:
        problems.append("processes left running")
    if trace["awaiting"]:
        problems.append("the cloud's trace awaits logs")
    if {leg["organisation"] for leg in trace["legs"]} != {s.name for s in system}:
        problems.append("the cloud's trace does not span the three organisations")
    if good != 4:
        problems.append(f"the genuine bundle's verdict is not FAIL (exit {good}, want 4)")
    if bad != 3:
        problems.append(f"the edited bundle was not refused (exit {bad}, want 3)")
    if cut != 5:
        problems.append(f"the cut bundle is not INCOMPLETE (exit {cut}, want 5)")
    if report is None:
        problems.append("no shipment release report")
    if evm_anchors is not None and evm_anchors == 0:
        problems.append("the bundle holds no EVM anchor")
    if dashboard != 200:
        problems.append(f"the {DASHBOARD} gateway's dashboard answered {dashboard}, not 200")
    for name, want in (
        ("pallet", "genuine"),
        ("pallet_again", "replayed"),
        ("part", "genuine"),
        ("counterfeit", "replayed"),
    ):
        tap = taps[name]
        if tap["code"] != 200 or tap["status"] != want:
            problems.append(f"the {name} tap: {tap['code']} {tap['status']}, want 200 {want}")
    if (taps["part"]["verdict"], taps["counterfeit"]["verdict"]) != ("GENUINE", "SUSPECT"):
        problems.append("the page's verdicts for the part's taps are not GENUINE and SUSPECT")
    if part_genuine != "GENUINE":
        problems.append(f"the part's verdict with a genuine tap is {part_genuine}, not GENUINE")
    if part_fake != "SUSPECT":
        problems.append(f"the counterfeit's verdict is {part_fake}, not SUSPECT")
    took = time.monotonic() - t_start
    if problems:
        print(f"\ndemo: FAILED after {took:.0f} s: " + "; ".join(problems))
        return 1
    print(
        f"\ndemo: done in {took:.0f} s. Three organisations' logs, pushed to the cloud and "
        "witnessed; the cloud's bundle\n  verified with the cloud's trust file and FAILs the "
        f"profile ({TRUCK}'s excursion); the edited reading\n  was refused; the cut logger "
        "made it INCOMPLETE, not PASS. The pallet's tag: genuine, then replayed;\n  the spare "
        "part GENUINE, its counterfeit (a copied URL) SUSPECT.\n"
        f"  trace   {out / 'trace.json'}\n"
        f"  bundle  {bundle} ({bundle.stat().st_size // 1024} KiB)\n  trust   {trust}\n"
        f"  chart   {out / 'temperature.svg'}\n  report  {report}\n"
        f"  part    {taps['part_bundle']}, taps in {out / 'taps.json'}"
    )
    return 0


def run(args: argparse.Namespace) -> int:
    restore = sigterm_as_interrupt()
    # The gateway and cloud commands run in this process log at INFO when nothing is
    # configured: warnings only (a retried push says why), on stderr.
    root = logging.getLogger()
    handler: logging.Handler | None = None
    if not root.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("   [%(name)s] %(message)s"))
        root.addHandler(handler)
        root.setLevel(logging.WARNING)
    system: System | None = None
    try:
        out = _prepare(args.out, args.speed)
        system = System(out, ledger=args.ledger)
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
            system.stop_chain()
            left = system.leftovers()
            if left:
                print(f"demo: could not stop {', '.join(left)}")
        if handler is not None:
            root.removeHandler(handler)
        restore()
