"""Gateway end-to-end ingest: drain a preloaded Mosquitto queue, vs raw 2-thread ES256 verify.

Setup (not timed): the shipped broker configuration (gateway/transport/broker.py) on a
free loopback port, a gateway with ``DEVICES`` registered devices, its
persistent session created, then ``DEVICES x PER_DEVICE`` signed readings
published by one raw pipelined MQTT connection per device; the publishers
finish (every PUBACK in) before the gateway starts, so they do not compete.

Timed: from ``Gateway.start()`` until every record is committed to SQLite,
appended to the Merkle log and covered by a signed, anchored checkpoint.
Zero loss is counted, not assumed: stored records, duplicates and rejects.

Baseline, same run, same records, same two cores: pyca ``cryptography``
ECDSA P-256 verification of each record's Sig_structure with two threads
(DER signatures and Sig_structures prepared beforehand, keys loaded),
measured right before and right after the drain and averaged (the machine's
speed drifts). Also printed: CPU per record of the gateway process, of its
verification processes and of Mosquitto - where the time goes.

    COLDTRACE_BENCH_RECORDS=60000 COLDTRACE_BENCH_PROFILE=1 python -m bench gateway
"""

from __future__ import annotations

import os
import shutil
import socket
import struct
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

DEVICES = 100


def _str(b: bytes) -> bytes:
    return struct.pack("!H", len(b)) + b


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _packet(first: int, body: bytes) -> bytes:
    return bytes([first]) + _varint(len(body)) + body


def _read_exact(sock: socket.socket, buf: bytearray, n: int) -> None:
    while len(buf) < n:
        chunk = sock.recv(1 << 18)
        if not chunk:
            raise ConnectionError("broker closed the connection")
        buf += chunk


def publish_pipelined(
    port: int, user: str, password: str, topic: str, payloads: list[bytes]
) -> int:
    """One MQTT 3.1.1 connection publishing ``payloads`` at QoS 1; return PUBACKs received."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=60)
    body = _str(b"MQTT") + bytes([4, 0xC2]) + struct.pack("!H", 60)
    body += _str(user.encode()) + _str(user.encode()) + _str(password.encode())
    sock.sendall(_packet(0x10, body))
    buf = bytearray()
    _read_exact(sock, buf, 4)
    if buf[0] != 0x20 or buf[3] != 0:
        raise ConnectionError(f"{user}: CONNACK refused ({bytes(buf[:4]).hex()})")
    del buf[:4]
    t = _str(topic.encode())
    packets = [
        _packet(0x32, t + struct.pack("!H", i % 65535 + 1) + p) for i, p in enumerate(payloads)
    ]
    acked = 0
    for start in range(0, len(packets), 500):
        chunk = packets[start : start + 500]
        sock.sendall(b"".join(chunk))
        want = acked + len(chunk)
        while acked < want:
            _read_exact(sock, buf, 4)
            if buf[0] == 0x40:
                acked += 1
            del buf[:4]
    sock.sendall(b"\xe0\x00")
    sock.close()
    return acked


def _baseline(items: list[tuple[Any, bytes, bytes]], threads: int) -> float:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec

    alg = ec.ECDSA(hashes.SHA256())

    def work(chunk: list[tuple[Any, bytes, bytes]]) -> None:
        for key, der, tbs in chunk:
            key.verify(der, tbs, alg)

    size = -(-len(items) // threads)
    chunks = [items[i : i + size] for i in range(0, len(items), size)]
    t0 = time.perf_counter()
    if threads == 1:
        work(items)
    else:
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(work, chunks))
    return len(items) / (time.perf_counter() - t0)


def signed_streams(keys: dict[str, Any], per_device: int, now: int) -> dict[str, list[bytes]]:
    """Per device, ``per_device`` chained readings (seq 0.., one a second up to ``now``)
    signed with its key: the stream a bench publishes."""
    from protocol.record import Reading, chain_hash, make_record

    records: dict[str, list[bytes]] = {}
    for dev, key in keys.items():
        prev, out = bytes(16), []
        for seq in range(per_device):
            reading = Reading(
                boot=1,
                seq=seq,
                time=now - per_device + seq,
                tq=2,
                prev=prev,
                temp=450 + seq % 50,
                rh=5000,
                batt=3300,
            )
            raw = make_record(reading, dev, key)
            prev = chain_hash(raw)
            out.append(raw)
        records[dev] = out
    return records


def run(rec: Any) -> None:
    from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

    from gateway.config import load_config
    from gateway.evidence.registry import RegistrySigner
    from gateway.evidence.store import open_store
    from gateway.service import Gateway
    from gateway.transport.broker import (
        BrokerUser,
        QueueLimits,
        free_port,
        read_credentials,
        start_broker,
        write_config,
    )
    from protocol.cose import parse_sign1, sig_structure
    from protocol.keys import generate_p256, load_p256_private_key, p256_public_to_sec1

    total = int(os.environ.get("COLDTRACE_BENCH_RECORDS", "60000"))
    per_device = max(1, total // DEVICES)
    total = per_device * DEVICES
    profile = os.environ.get("COLDTRACE_BENCH_PROFILE") == "1"
    if shutil.which("mosquitto") is None:
        print("   mosquitto not installed: skipped (make system)")
        return
    tmp = Path(tempfile.mkdtemp(prefix="ct-bench-gw-"))
    broker = None
    try:
        # --- records ---------------------------------------------------------------
        t0 = time.perf_counter()
        keys = {f"tl-{i:04d}": generate_p256() for i in range(DEVICES)}
        now = int(time.time())
        records = signed_streams(keys, per_device, now)
        print(
            f"   signed {total:,} records from {DEVICES} devices "
            f"({time.perf_counter() - t0:.1f} s setup)",
            flush=True,
        )

        # --- broker and gateway -----------------------------------------------------
        port = free_port()
        users = [BrokerUser("gw@bench", "gateway")] + [BrokerUser(d, "device") for d in keys]
        conf = write_config(
            tmp / "broker",
            port=port,
            users=users,
            gateway_id="bench",
            log_dest="none",
            queue=QueueLimits(
                max_queued_messages=total + 10_000,
                max_queued_bytes=512 * 1024 * 1024,
                max_inflight_messages=4000,
            ),
        )
        creds = read_credentials(tmp / "broker")
        broker = start_broker(conf)
        gwdir = tmp / "gw"
        _init_gateway(
            gwdir,
            port,
            creds["gw@bench"],
            batch=int(os.environ.get("COLDTRACE_BENCH_BATCH", "1000")),
        )
        cfg = load_config(gwdir / "gateway.toml")
        store = open_store(cfg)
        signer = RegistrySigner(
            store, cfg.registry.id, load_p256_private_key(cfg.registry.key_file)
        )
        for dev, key in keys.items():
            signer.add(dev, p256_public_to_sec1(key.public_key()), role=1, org="bench")
        store.close()
        gw = Gateway(cfg)  # logs the registrations, creates the persistent session
        gw.start()
        if not gw.mqtt.connected.wait(10):
            raise RuntimeError("gateway did not connect")
        time.sleep(0.5)
        gw.stop()
        regs = DEVICES

        t0 = time.perf_counter()
        with ThreadPoolExecutor(8) as pool:
            acked = sum(
                pool.map(
                    lambda d: publish_pipelined(port, d, creds[d], f"ct/v1/{d}/rec", records[d]),
                    list(keys),
                )
            )
        if acked != total:
            raise RuntimeError(f"broker acked {acked} of {total} publishes")
        print(
            f"   preloaded the broker queue with {total:,} records "
            f"({time.perf_counter() - t0:.1f} s)",
            flush=True,
        )

        # --- baseline: raw verification of the same records, before and after --------
        from protocol.keys import p256_public_from_sec1

        items = []
        for dev, raws in records.items():
            pk = p256_public_from_sec1(p256_public_to_sec1(keys[dev].public_key()))
            for raw in raws:
                m = parse_sign1(raw)
                der = encode_dss_signature(
                    int.from_bytes(m.signature[:32], "big"), int.from_bytes(m.signature[32:], "big")
                )
                items.append((pk, der, sig_structure(m.protected, m.payload)))
        c0 = time.process_time()
        base2_before = _baseline(items, 2)
        verify_cpu = (time.process_time() - c0) / len(items)

        # --- timed: drain ------------------------------------------------------------
        mosq_pid = broker.pid
        mosq_cpu0 = _proc_cpu(mosq_pid)
        cpu0 = time.process_time()
        gw = Gateway(cfg)
        workers = list(getattr(gw.pipeline.verifier, "pids", []))
        workers_cpu0 = sum(_proc_cpu(p) or 0.0 for p in workers)
        prof = _Profiler() if profile else None
        t0 = time.perf_counter()
        gw.start()
        want = regs + total
        deadline = time.monotonic() + 600
        while gw.ingestor.next_leaf < want and gw.pipeline.error is None:
            if time.monotonic() > deadline:
                raise RuntimeError(f"drain stalled at {gw.ingestor.next_leaf} of {want} leaves")
            time.sleep(0.005)
        drained = time.perf_counter() - t0
        workers_cpu = sum(_proc_cpu(p) or 0.0 for p in workers) - workers_cpu0
        # Logged: a signed, anchored checkpoint covering every record (taken on the
        # ingest thread's side: the pipeline is idle now).
        gw.pipeline.stop()
        cp = gw.log.checkpoint()
        elapsed = time.perf_counter() - t0
        cpu = time.process_time() - cpu0
        mosq_cpu = _proc_cpu(mosq_pid) - mosq_cpu0
        if prof is not None:
            prof.stop()
        stats = dict(gw.ingestor.totals)
        size = gw.log.size
        gw.mqtt.stop()
        gw.log.close()
        gw.ledger.close()
        store = gw.store
        stored = store.leaf_count() - regs
        rejects = store.reject_counts()
        anchored = store.anchors()[-1].size if store.anchors() else 0
        store.close()
        lost = total - stored
        if lost or rejects or cp is None or anchored != size:
            raise RuntimeError(
                f"loss: stored {stored}/{total}, rejects {rejects}, "
                f"checkpoint {cp}, anchored {anchored} of {size}"
            )

        # --- baseline, the second half (the first ran before the drain) ------------
        c0 = time.process_time()
        base2_after = _baseline(items, 2)
        verify_cpu = (verify_cpu + (time.process_time() - c0) / len(items)) / 2
        base2 = (base2_before + base2_after) / 2
        base1 = _baseline(items[: total // 3], 1)

        rate = total / elapsed
        rec.add(
            "gateway.ingest.e2e_records_per_s",
            rate,
            "records/s",
            baseline="pyca ES256 verify, 2 threads",
            baseline_value=base2,
            note=f"{total} records, {DEVICES} devices, zero loss, "
            f"duplicates {stats.get('duplicates', 0)}; baseline = mean of "
            f"{base2_before:,.0f} before and {base2_after:,.0f} after; "
            "goal >= 15000/s, ratio >= 0.6",
        )
        rec.add(
            "gateway.ingest.drain_only_records_per_s",
            total / drained,
            "records/s",
            note="until the last commit, before the final checkpoint",
        )
        rec.add("gateway.verify.pyca_es256_1_thread", base1, "verifies/s")
        rec.add("gateway.verify.pyca_es256_2_threads", base2, "verifies/s")
        rec.add(
            "gateway.ingest.cpu_us_per_record",
            cpu / total * 1e6,
            "us",
            note="gateway process CPU (all threads) per record",
        )
        if workers:
            rec.add(
                "gateway.ingest.verify_workers_cpu_us_per_record",
                workers_cpu / total * 1e6,
                "us",
                note=f"{len(workers)} verification processes",
            )
        e2e_cpu = (cpu + workers_cpu + (mosq_cpu or 0.0)) / total
        rec.add(
            "gateway.ingest.e2e_cpu_us_per_record",
            e2e_cpu * 1e6,
            "us",
            baseline="pyca ES256 verify CPU per record",
            baseline_value=verify_cpu * 1e6,
            note="gateway + verification processes + Mosquitto; the inverse ratio is the "
            "CPU efficiency, steadier than the wall-clock ratio on a shared machine",
        )
        if mosq_cpu is not None:
            rec.add("gateway.ingest.mosquitto_cpu_us_per_record", mosq_cpu / total * 1e6, "us")
        if prof is not None:
            prof.report()
    finally:
        if broker is not None:
            broker.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def _proc_cpu(pid: int | None) -> float | None:
    if pid is None:
        return None
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


def _init_gateway(d: Path, port: int, password: str, *, batch: int) -> None:
    from gateway.config import render_config
    from protocol.keys import generate_ed25519, generate_p256, save_private_key
    from protocol.note import NoteSigner

    (d / "keys").mkdir(parents=True)
    origin = "coldtrace.bench/gw"
    (d / "keys" / "log.skey").write_text(NoteSigner.generate(origin).skey + "\n")
    save_private_key(generate_ed25519(), d / "keys" / "ledger.pem")
    save_private_key(generate_p256(), d / "keys" / "registry.pem")
    (d / "pw").write_text(password + "\n")
    (d / "gateway.toml").write_text(
        render_config(
            {
                "gateway": {"id": "bench", "data_dir": "var"},
                "mqtt": {
                    "host": "127.0.0.1",
                    "port": port,
                    "username": "gw@bench",
                    "password_file": "pw",
                },
                "ingest": {
                    "batch_size": batch,
                    "verify_mode": os.environ.get("COLDTRACE_BENCH_VERIFY", "processes"),
                    "verify_workers": int(os.environ.get("COLDTRACE_BENCH_WORKERS", "2")),
                    "max_backlog": 8000,
                },
                "log": {
                    "origin": origin,
                    "key_file": "keys/log.skey",
                    "checkpoint_interval": 5.0,
                    "checkpoint_leaves": 1_000_000,
                },
                "ledger": {"id": f"{origin}/ledger", "key_file": "keys/ledger.pem"},
                "registry": {"id": "bench-registry", "key_file": "keys/registry.pem"},
            }
        )
    )


class _Profiler:
    """cProfile on every thread of the gateway (COLDTRACE_BENCH_PROFILE=1)."""

    def __init__(self) -> None:
        import cProfile

        self._profiles: list[Any] = []
        self._lock = threading.Lock()

        def start(*_: Any) -> None:
            p = cProfile.Profile()
            with self._lock:
                self._profiles.append(p)
            p.enable()

        threading.setprofile(start)
        main = cProfile.Profile()
        self._profiles.append(main)

    def stop(self) -> None:
        threading.setprofile(None)
        for p in self._profiles:
            p.disable()

    def report(self) -> None:
        import pstats

        stats = None
        for p in self._profiles:
            try:
                stats = pstats.Stats(p) if stats is None else (stats.add(p) or stats)
            except TypeError:
                continue
        if stats is not None:
            stats.sort_stats("tottime").print_stats(25)
