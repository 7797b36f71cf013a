"""Gateways witness each other through the cloud (gateway/witness.py): gateway B checks
gateway A's checkpoints as the cloud serves them - A's log key, consistency with what
B witnessed before - cosigns them and posts the cosignature; the cloud serves A's
checkpoint with B's line and A's store gains it. A checkpoint inconsistent with what
B witnessed is not cosigned: an alert, and B's state is kept."""

from __future__ import annotations

import base64
import json
import signal
import time
from pathlib import Path

import httpx

from gateway.config import load_config
from gateway.evidence.store import open_store
from gateway.service import load_log_signer
from gateway.witness import META_PREFIX, Witness, load_or_create_witness_key
from protocol.checkpoint import open_cosigned_checkpoint
from protocol.cli import main as coldtrace
from protocol.note import NoteSigner
from tests.gateway.cloudenv import CloudServer
from tests.gateway.devices import SimDevice, wait_for
from tests.gateway.env import ORIGIN, GatewayDir
from tests.gateway.test_push import caught_up, with_cloud

B_ORIGIN = "coldtrace.test/gw-b"


def readings(dev: SimDevice, k0: int, n: int) -> None:
    t0 = int(time.time()) - 3600
    for k in range(k0, k0 + n):
        dev.publish(dev.reading(temp=300, time_=t0 + k * 60))
    wait_for(lambda: not dev.unacked, 30, "readings acked")


def meta(env: GatewayDir, key: str) -> str | None:
    store = open_store(env.cfg)
    try:
        return store.get_meta(key)
    finally:
        store.close()


def stored_note(env: GatewayDir) -> str:
    store = open_store(env.cfg)
    try:
        cp = store.latest_checkpoint()
        return "" if cp is None else cp.note
    finally:
        store.close()


def test_b_witnesses_a_through_the_cloud_and_refuses_a_fork(
    make_broker, make_gateway, tmp_path: Path, capsys
) -> None:
    dev = SimDevice("tl-a")
    broker = make_broker([dev.id])
    a = make_gateway(broker)
    a.register(dev)
    b = make_gateway(make_broker([]))  # B's own site (its own broker)
    text = b.config_path.read_text().replace(f'"{ORIGIN}"', f'"{B_ORIGIN}"')
    text = text.replace(f'"{ORIGIN}/ledger"', f'"{B_ORIGIN}/ledger"')
    text = text.replace('"acme-registry"', '"carrier-registry"')
    b.config_path.write_text(text)
    (b.dir / "keys" / "log.skey").write_text(NoteSigner.generate(B_ORIGIN).skey + "\n")
    cloud = CloudServer(tmp_path / "cloud")
    cloud.join("packhouse", a.cfg)
    with_cloud(a, cloud.url)
    with_cloud(b, cloud.url)
    cloud.join("carrier", b.cfg, "carrier-*", "carrier:*", "0950600099*")
    cloud.start()
    a_vkey = load_log_signer(a.cfg).vkey
    with open(b.config_path, "a", encoding="utf-8") as f:
        f.write(
            '\n[witness]\nname = "carrier.test/witness"\ninterval = 0.5\n'
            f'\n[[witness.peers]]\norigin = "{ORIGIN}"\nvkey = "{a_vkey}"\n'
        )
    b.cfg = load_config(b.config_path)
    proc = a.start_process()
    log_path = a.dir / "gateway.log"
    try:
        wait_for(lambda: "subscribed to" in log_path.read_text(), 30, "A subscribed")
        a.connect(dev)
        readings(dev, 0, 10)
        wait_for(lambda: caught_up(a, cloud), 30, "A pushed")

        # B's witness key, registered with the cloud by its operator.
        capsys.readouterr()
        assert coldtrace(["gateway", "witness-key", "-c", str(b.config_path)]) == 0
        vkey = capsys.readouterr().out.strip()
        assert vkey.startswith("carrier.test/witness+")
        assert cloud.cli("witness", "add", "carrier", vkey) == 0
        b_witness = load_or_create_witness_key(b.cfg).verifier()
        assert b_witness.vkey == vkey

        # B checks and cosigns A's latest checkpoint; the cloud serves it with B's line.
        once = ["gateway", "witness", "-c", str(b.config_path), "--once"]
        assert coldtrace(once) == 0
        assert f"{ORIGIN}: cosigned" in capsys.readouterr().out
        served = httpx.get(f"{cloud.url}/v1/logs/{ORIGIN}/checkpoint").text
        a_log = load_log_signer(a.cfg).verifier()
        cp, cosigs = open_cosigned_checkpoint(served, [a_log], [cloud.witness(), b_witness])
        assert {c.witness.name for c in cosigs} == {"witness.cloud.test", "carrier.test/witness"}
        assert json.loads(meta(b, META_PREFIX + ORIGIN))["size"] == cp.size
        listed = httpx.get(f"{cloud.url}/v1/witnesses").json()
        assert vkey in [w["vkey"] for w in listed]
        # the trust file pins the cloud alone: a peer does not count toward a quorum
        trust = httpx.get(f"{cloud.url}/v1/trust").json()
        assert vkey not in [w["vkey"] for w in trust["witnesses"]]
        # A's push loop fetches the cosigned note: A's own store carries B's line.
        wait_for(
            lambda: len(open_cosigned_checkpoint(stored_note(a), [a_log], [b_witness])[1]) == 1,
            15,
            "B's cosignature in A's store",
        )
        assert coldtrace(once) == 0
        assert f"{ORIGIN}: unchanged" in capsys.readouterr().out

        # A grows: B proves the new checkpoint consistent with the one it saw, cosigns.
        readings(dev, 10, 10)
        wait_for(lambda: caught_up(a, cloud), 30, "A pushed again")
        assert coldtrace(once) == 0
        grown = httpx.get(f"{cloud.url}/v1/logs/{ORIGIN}/checkpoint").text
        cp2, cosigs = open_cosigned_checkpoint(grown, [a_log], [b_witness])
        assert cp2.size > cp.size and len(cosigs) == 1
        assert json.loads(meta(b, META_PREFIX + ORIGIN))["size"] == cp2.size

        # A fork: B remembers another history of A (a different root at a size it saw).
        forged = json.dumps(
            {"size": cp.size, "root": base64.b64encode(bytes(32)).decode(), "time": 0}
        )
        store = open_store(b.cfg)
        store.set_meta(META_PREFIX + ORIGIN, forged)
        store.close()
        readings(dev, 20, 5)
        wait_for(lambda: caught_up(a, cloud), 30, "A pushed a third time")
        assert coldtrace(once) == 3
        out = capsys.readouterr()
        assert "inconsistent" in out.out and "ALARM" in out.err
        assert meta(b, META_PREFIX + ORIGIN) == forged  # the state witnessed is kept
        latest = httpx.get(f"{cloud.url}/v1/logs/{ORIGIN}/checkpoint").text
        cp3, cosigs = open_cosigned_checkpoint(latest, [a_log], [b_witness])
        assert cp3.size > cp2.size and cosigs == []  # not cosigned

        # The same, in the loop `gateway run` starts: an alert and a counter; and the
        # same size with another root is a fork as well.
        alerts: list[tuple[str, str]] = []
        store = open_store(b.cfg)
        try:
            w = Witness(b.cfg, store, alert=lambda kind, msg: alerts.append((kind, msg)))
            assert w.round()[ORIGIN].startswith("inconsistent")
            same = json.dumps(
                {"size": cp3.size, "root": base64.b64encode(bytes(32)).decode(), "time": 0}
            )
            store.set_meta(META_PREFIX + ORIGIN, same)
            assert "different roots" in w.round()[ORIGIN]
            assert store.get_meta(META_PREFIX + ORIGIN) == same
            w.stop()
        finally:
            store.close()
        assert [k for k, _ in alerts] == ["witness_inconsistent", "witness_inconsistent"]
        assert w.stats.inconsistent == 2 and w.stats.cosigned == 0

        # B's own `gateway run` witnesses on a thread: it raises the alarm too ...
        b_proc = b.start_process()
        b_log = b.dir / "gateway.log"
        wait_for(lambda: "ALARM witness_inconsistent" in b_log.read_text(), 15, "B's alarm")
        # ... and, once its state is A's real history, cosigns A's latest checkpoint.
        real = json.dumps(
            {"size": cp3.size, "root": base64.b64encode(cp3.root_hash).decode(), "time": 0}
        )
        store = open_store(b.cfg)
        store.set_meta(META_PREFIX + ORIGIN, real)
        store.close()

        def b_cosigned() -> bool:
            note = httpx.get(f"{cloud.url}/v1/logs/{ORIGIN}/checkpoint").text
            return len(open_cosigned_checkpoint(note, [a_log], [b_witness])[1]) == 1

        wait_for(b_cosigned, 15, "B's thread cosigned")
        b_proc.send_signal(signal.SIGTERM)
        assert b_proc.wait(30) == 0
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
        cloud.stop()
