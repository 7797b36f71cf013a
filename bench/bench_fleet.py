"""Gateway fleet ingest: two instances against one, on one Mosquitto and one PostgreSQL.

Setup (not timed), per run: the shipped broker configuration on a free
loopback port (queue limits raised so that nothing is dropped), a fresh
database on a throwaway PostgreSQL server (tests/pgserver.py: loopback,
fsync off), and one or two ``coldtrace gateway run`` processes, each an
instance of one fleet (gateway/evidence/fleet.py, docs/decisions.md D28):
its own schema, log and origin, a shared MQTT subscription and the shared
``fleet`` schema. ``DEVICES`` devices are registered once; every instance
has logged the registrations and subscribed before the clock starts.

Timed: from the first publish (one raw pipelined MQTT connection per device,
all records, QoS 1) until the fleet has claimed every record (each claim is
committed with its instance's batch). Zero loss is counted: claims, and the
union of the instances' logs, must be the published set.

Baselines: raw pyca ES256 verification of the same records with two threads
(bench_gateway's baseline, before and after the fleet runs, averaged), for
one instance and for two; and for two, the same fleet with one instance,
same records, same machine. The
ratio is the gain of the second instance on these two cores, where both
share the CPU with PostgreSQL and Mosquitto; CPU per record of the
instances (with their verification processes) and of PostgreSQL is printed
too, and the projection to more cores is computed from it (see ``run``).

    COLDTRACE_BENCH_FLEET_RECORDS=20000 python -m bench fleet
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

DEVICES = 50
USERS = ("gw-a@bench", "gw-b@bench")
_RUN = [sys.executable, "-m", "protocol.cli", "gateway", "run", "-c"]


def _tree_cpu(pid: int) -> float:
    """CPU seconds of ``pid`` and its descendants (live ones)."""
    from bench.bench_gateway import _proc_cpu

    kids: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        kids.setdefault(ppid, []).append(int(stat.parent.name))
    total, todo = 0.0, [pid]
    while todo:
        p = todo.pop()
        total += _proc_cpu(p) or 0.0
        todo.extend(kids.get(p, []))
    return total


def _fleet_run(
    n: int, pg: Any, records: dict[str, list[bytes]], keys: dict[str, Any], tmp: Path
) -> dict[str, float]:
    from bench.bench_gateway import publish_pipelined
    from gateway.evidence.registry import RegistrySigner
    from gateway.evidence.store import SqlStore, open_store
    from gateway.transport.broker import QueueLimits
    from protocol.keys import load_p256_private_key, p256_public_to_sec1
    from tests.gateway.env import create_gateway_dir, start_test_broker

    total = sum(len(r) for r in records.values())
    d = tmp / f"run{n}"
    url = pg.new_database(f"fleet{n}")
    broker = start_test_broker(
        d / "broker",
        list(records),
        gateways=USERS,
        queue=QueueLimits(
            max_queued_messages=total + 10_000,
            max_queued_bytes=512 * 1024 * 1024,
            max_inflight_messages=4000,
        ),
    )
    procs: list[subprocess.Popen[bytes]] = []
    try:
        envs = []
        for i in range(n):
            name = "ab"[i]
            env = create_gateway_dir(
                d / f"gw-{name}",
                broker,
                sections={
                    "store": {"url": url, "schema": f"gw_{name}"},
                    "fleet": {"shared_schema": "fleet"},
                    "mqtt": {"share_group": "bench"},
                    "log": {"checkpoint_interval": 2.0},
                },
                gw_user=USERS[i],
                origin=f"coldtrace.bench/gw-{name}",
                batch_size=1000,
                batch_wait=0.02,
                ack_interval=0.5,
            )
            if envs:
                shutil.copy(envs[0].dir / "keys" / "registry.pem", env.dir / "keys")
            envs.append(env)
        store = open_store(envs[0].cfg)
        signer = RegistrySigner(
            store, envs[0].cfg.registry.id, load_p256_private_key(envs[0].cfg.registry.key_file)
        )
        for dev, key in keys.items():
            signer.add(dev, p256_public_to_sec1(key.public_key()), role=1, org="bench")
        store.close()
        for env in envs:
            with open(env.dir / "gateway.log", "ab") as log:
                procs.append(
                    subprocess.Popen(
                        [*_RUN, str(env.config_path)],
                        stdout=log,
                        stderr=subprocess.STDOUT,
                    )
                )
        watch = [SqlStore(url, schema=f"gw_{'ab'[i]}", migrate=False) for i in range(n)]
        deadline = time.monotonic() + 120
        for env, w in zip(envs, watch, strict=True):
            while "subscribed to" not in (
                env.dir / "gateway.log"
            ).read_text() or w.leaf_count() < len(keys):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{env.dir.name} did not start: see its gateway.log")
                time.sleep(0.1)
        fleet = watch[0]
        pg_pid = int((pg.datadir / "postmaster.pid").read_text().split()[0])
        cpu0 = [_tree_cpu(p.pid) for p in procs]
        pg0 = _tree_cpu(pg_pid)

        t0 = time.perf_counter()
        with ThreadPoolExecutor(8) as pool:
            acked = sum(
                pool.map(
                    lambda dev: publish_pipelined(
                        broker.port, dev, broker.password(dev), f"ct/v1/{dev}/rec", records[dev]
                    ),
                    list(records),
                )
            )
        if acked != total:
            raise RuntimeError(f"broker acked {acked} of {total} publishes")
        deadline = time.monotonic() + 600
        while (claimed := fleet._one("SELECT count(*) FROM fleet.claims")[0]) < total:
            if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
                raise RuntimeError(f"fleet stalled at {claimed} of {total} records")
            time.sleep(0.01)
        elapsed = time.perf_counter() - t0
        cpu = sum(_tree_cpu(p.pid) for p in procs) - sum(cpu0)
        pg_cpu = _tree_cpu(pg_pid) - pg0
        logged = [w.leaf_count() - len(keys) for w in watch]
        if claimed != total or sum(logged) != total:
            raise RuntimeError(f"loss: claimed {claimed}, logged {logged} of {total}")
        for w in watch:
            w.close()
        return {
            "rate": total / elapsed,
            "cpu_us": cpu / total * 1e6,
            "pg_cpu_us": pg_cpu / total * 1e6,
            "split": min(logged) / total,
        }
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(10)
        broker.process.stop()


def _verify_items(records: dict[str, list[bytes]], keys: dict[str, Any]) -> list[Any]:
    """(public key, DER signature, Sig_structure) of every record: raw pyca's input."""
    from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

    from protocol.cose import parse_sign1, sig_structure

    items = []
    for dev, raws in records.items():
        pk = keys[dev].public_key()
        for raw in raws:
            m = parse_sign1(raw)
            der = encode_dss_signature(
                int.from_bytes(m.signature[:32], "big"), int.from_bytes(m.signature[32:], "big")
            )
            items.append((pk, der, sig_structure(m.protected, m.payload)))
    return items


def run(rec: Any) -> None:
    from bench.bench_gateway import _baseline, signed_streams
    from protocol.keys import generate_p256
    from tests.pgserver import PgServer, PgServerError

    if shutil.which("mosquitto") is None:
        print("   mosquitto not installed: skipped (make system)")
        return
    total = int(os.environ.get("COLDTRACE_BENCH_FLEET_RECORDS", "20000"))
    per_device = max(1, total // DEVICES)
    total = per_device * DEVICES
    keys = {f"tl-{i:04d}": generate_p256() for i in range(DEVICES)}
    now = int(time.time())
    records = signed_streams(keys, per_device, now)
    print(f"   signed {total:,} records from {DEVICES} devices", flush=True)
    pg = PgServer()
    try:
        pg.start()
    except PgServerError as e:
        print(f"   PostgreSQL unavailable: skipped ({e})")
        return
    tmp = Path(tempfile.mkdtemp(prefix="ct-bench-fleet-"))
    items = _verify_items(records, keys)
    try:
        raw_before = _baseline(items, 2)
        one = _fleet_run(1, pg, records, keys, tmp)
        two = _fleet_run(2, pg, records, keys, tmp)
        raw = (raw_before + _baseline(items, 2)) / 2
    finally:
        pg.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    cores = os.cpu_count() or 2
    rec.add(
        "gateway.fleet.two_instances_records_per_s",
        two["rate"],
        "records/s",
        baseline="one instance, same fleet configuration",
        baseline_value=one["rate"],
        note=f"{total} records, {DEVICES} devices, zero loss, PostgreSQL store and shared "
        f"checks, {cores} cores shared by everything; the smaller instance took "
        f"{two['split']:.0%} of the records",
    )
    rec.add(
        "gateway.fleet.one_instance_records_per_s",
        one["rate"],
        "records/s",
        baseline="pyca ES256 verify, 2 threads, same records",
        baseline_value=raw,
        note="one gateway instance, PostgreSQL store; baseline = mean of before and after "
        "the fleet runs",
    )
    rec.add(
        "gateway.fleet.two_instances_vs_raw_verify",
        two["rate"],
        "records/s",
        baseline="pyca ES256 verify, 2 threads, same records",
        baseline_value=raw,
        note="the two-instance rate against the same raw verification baseline",
    )
    rec.add(
        "gateway.fleet.instance_cpu_us_per_record",
        two["cpu_us"],
        "us",
        baseline="one instance",
        baseline_value=one["cpu_us"],
        note="gateway processes and their verification processes, two instances",
    )
    rec.add(
        "gateway.fleet.postgresql_cpu_us_per_record",
        two["pg_cpu_us"],
        "us",
        baseline="one instance",
        baseline_value=one["pg_cpu_us"],
        note="all PostgreSQL processes (fsync off), two instances",
    )
    # Projection (an assumption, not a measurement): instances on their own cores
    # scale until the shared PostgreSQL is busy. One core gives an instance about
    # 1e6 / instance-CPU-per-record records/s; PostgreSQL, on P cores of its own,
    # takes about P * 1e6 / its-CPU-per-record. Locks are per device, so
    # instances wait on each other only for the same device's batch.
    per_core = 1e6 / two["cpu_us"]
    pg_ceiling = 1e6 / max(two["pg_cpu_us"], 1e-9)
    for n in (4, 8):
        rec.add(
            f"gateway.fleet.projected_{n}_cores_records_per_s",
            min(n * per_core, 2 * pg_ceiling),
            "records/s",
            note=f"assumption: {n} cores of instances at {per_core:,.0f} records/s per core "
            f"(measured CPU), capped by PostgreSQL on 2 cores of its own at "
            f"{pg_ceiling:,.0f} records/s per core (measured CPU, fsync off)",
        )
