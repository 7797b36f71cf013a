"""``coldtrace gateway rejects --release`` and ``--purge``, run as an operator runs them.

Release: a device publishes before it is registered, so its records are
quarantined as unknown_device; the operator registers it and releases them;
the running gateway checks them again, stores and acks them, and a released
message that is still bad is quarantined again with its reason. Purge:
matching rows go, a count and digest chain per (reason, device) and an
audit line stay.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys

from gateway.evidence.store import open_store
from tests.gateway.devices import SimDevice, wait_for
from tests.gateway.env import GatewayDir


def coldtrace(env: GatewayDir, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "protocol.cli",
            "gateway",
            "rejects",
            "-c",
            str(env.config_path),
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_released_records_of_a_device_registered_late_are_stored_and_acked(
    make_broker, make_gateway
) -> None:
    late, other = SimDevice("tl-late"), SimDevice("tl-other")
    broker = make_broker([late.id, other.id])
    env = make_gateway(broker)
    env.register(other)
    gw = env.start_gateway()
    try:
        late.ack_key = bytes(32)  # not registered yet: no real key
        env.connect(late, other)
        raws = [late.reading() for _ in range(5)]
        junk = b"\xa1\x01\x02 not a record of tl-late"
        for raw in raws:
            late.publish(raw)
        late.publish(junk)
        other.publish(other.reading())
        wait_for(lambda: len(gw.store.rejects()) == 6, 20, "6 refusals")
        assert {r.reason for r in gw.store.rejects()} == {"unknown_device", "bad_cose"}
        env.register(late)  # signs the registration; the gateway logs it within a second
        wait_for(lambda: late.id in gw.registry.keys, 20, "tl-late registered")
        done = coldtrace(env, "--release", "--device", late.id)
        assert done.returncode == 0, done.stderr
        assert "released 6 quarantined message(s)" in done.stdout
        wait_for(lambda: len(gw.store.records_of(late.id, 0, 99)) == 5, 20, "released stored")
        assert [r.raw for r in gw.store.records_of(late.id, 0, 99)] == raws
        wait_for(lambda: late.acked == 4, 20, "tl-late acked")
        (again,) = gw.store.rejects()  # the junk, quarantined again with its reason
        assert again.raw == junk and again.reason == "bad_cose"
        assert gw.store.released_pending() == []
        (line,) = [a for a in gw.store.audit_log(target="quarantine") if a["action"] == "release"]
        assert line["detail"]["released"] == 6 and line["actor"].startswith("cli:")
        assert coldtrace(env, "--release", "--before", "1").returncode == 2  # not with release
    finally:
        gw.stop()


def test_purge_by_reason_and_device_keeps_a_count_a_digest_and_an_audit_line(
    make_broker, make_gateway
) -> None:
    a, b = SimDevice("tl-pa"), SimDevice("tl-pb")
    broker = make_broker([a.id, b.id])
    env = make_gateway(broker)
    gw = env.start_gateway()
    try:
        a.ack_key = b.ack_key = bytes(32)
        env.connect(a, b)
        ra = [a.reading() for _ in range(3)]  # unknown_device
        for raw in ra:
            a.publish(raw)
        b.publish(b.reading())
        b.publish(b"\xa0 junk of b")  # bad_cose
        wait_for(lambda: len(gw.store.rejects()) == 5, 20, "5 refusals")
        start = {r.id for r in gw.store.rejects()}
    finally:
        gw.stop()
    bad = coldtrace(env, "--purge", "--before", "yesterday")
    assert bad.returncode == 2 and "neither unix seconds nor an ISO 8601" in bad.stderr
    nothing = coldtrace(env, "--purge", "--before", "2020-01-01")  # everything is newer
    assert nothing.returncode == 0 and "purged 0" in nothing.stdout
    done = coldtrace(env, "--purge", "--reason", "unknown_device", "--device", a.id)
    assert done.returncode == 0, done.stderr
    assert "purged 3 quarantined message(s)" in done.stdout
    store = open_store(env.cfg)
    try:
        left = store.rejects()
        assert len(left) == 2 and {r.id for r in left} < start
        assert {r.topic for r in left} == {f"ct/v1/{b.id}/rec"}
        (p,) = [d for d in store.quarantine_dropped() if d.cause == "purged"]
        assert (p.reason, p.device, p.count, p.bytes) == (
            "unknown_device",
            a.id,
            3,
            sum(map(len, ra)),
        )
        chain = bytes(32)
        for raw in ra:  # in the order they were quarantined
            chain = hashlib.sha256(chain + hashlib.sha256(raw).digest()).digest()
        assert p.digest == chain
        audit = [x for x in store.audit_log(target="quarantine") if x["action"] == "purge"]
        assert audit[0]["detail"]["rows"] == 3
        assert audit[0]["detail"]["filters"] == {"reason": "unknown_device", "device": a.id}
    finally:
        store.close()
    listing = coldtrace(env)
    assert listing.returncode == 0 and "purged by an operator" in listing.stdout
    assert p.digest.hex() in listing.stdout
    status = subprocess.run(
        [
            sys.executable,
            "-m",
            "protocol.cli",
            "gateway",
            "status",
            "-c",
            str(env.config_path),
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    q = json.loads(status.stdout)["quarantine"]
    assert q["rows"] == 2 and q["dropped"] == {"purged": 3}
