"""Running gateway processes for the fault suite: start, wait until subscribed, kill -9, stop.

:class:`GatewayProcess` runs ``coldtrace gateway run`` on a gateway directory
(tests/gateway/env.py) as a separate process, as a supervisor would: started
again after each ``kill -9``, every process appending to the directory's
``gateway.log``. :func:`stream_with_faults` publishes a workload while a
fault is injected at fixed points of the stream.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from gateway.evidence.store import open_store
from tests.gateway.devices import SimDevice, wait_for
from tests.gateway.env import Broker, GatewayDir
from tests.gateway.test_crash import children
from tests.reliability.workload import ColdChain
from tests.soak import scale

#: Generous guards for a heavily loaded machine (never a speed requirement).
START_GUARD = 90.0
DRAIN_GUARD = scale(240.0, 1200.0)  # the stream's end, every record acked


class GatewayProcess:
    """``coldtrace gateway run`` on ``env``, restartable; ``starts`` counts the starts."""

    def __init__(self, env: GatewayDir) -> None:
        self.env = env
        self.log = env.dir / "gateway.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self.kills = 0

    def start(self) -> None:
        self.proc = self.env.start_process()
        self.starts += 1

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def wait_subscribed(self, timeout: float = START_GUARD) -> None:
        """Until this start (and every one before) subscribed to the broker."""
        wait_for(
            lambda: self.log_text().count("subscribed to") >= self.starts,
            timeout,
            f"gateway start {self.starts} subscribed",
        )

    def kill9(self) -> None:
        """``kill -9`` the process; wait until its verification workers are gone too."""
        assert self.proc is not None and self.proc.poll() is None, self.log_text()[-2000:]
        workers = children(self.proc.pid)
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(30)
        self.kills += 1
        wait_for(lambda: not any(Path(f"/proc/{p}").exists() for p in workers), 30, "workers gone")

    def stop(self) -> int:
        """SIGTERM; the exit status."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(60)


# --- a gateway fleet (docs/decisions.md D28) -------------------------------------------

FLEET_USERS = ("gw-a@test", "gw-b@test")


def fleet_sections(pg_url: str, name: str) -> dict[str, dict[str, object]]:
    """Instance ``name`` of a fleet on ``pg_url``: its own schema, the shared one, the
    shared subscription."""
    return {
        "store": {"url": pg_url, "schema": f"gw_{name}"},
        "fleet": {"shared_schema": "fleet"},
        "mqtt": {"share_group": "coldtrace"},
    }


def make_fleet(
    make_broker: Callable[..., Broker],
    make_gateway: Callable[..., GatewayDir],
    pg_url: str,
    device_ids: Sequence[str],
) -> tuple[GatewayDir, GatewayDir]:
    """Two instances (own broker account, log origin and key) of one fleet, with one
    registry key: both trust (and log) the registry's records."""
    broker = make_broker(list(device_ids), gateways=FLEET_USERS)
    a, b = (
        make_gateway(
            broker,
            sections=fleet_sections(pg_url, name),
            gw_user=user,
            origin=f"coldtrace.test/gw-{name}",
        )
        for name, user in zip("ab", FLEET_USERS, strict=True)
    )
    shutil.copy(a.dir / "keys" / "registry.pem", b.dir / "keys" / "registry.pem")
    return a, b


def logged_device_records(
    env: GatewayDir, device_ids: Sequence[str]
) -> dict[tuple[str, int], bytes]:
    """(signer, seq) -> bytes of the devices' records in ``env``'s log."""
    store = open_store(env.cfg)
    try:
        return {(r.signer, r.seq): r.raw for d in device_ids for r in store.records_of(d, 0, 2**62)}
    finally:
        store.close()


def drain(devices: Sequence[SimDevice], *, window: int = 16, wait: float = 4.0) -> None:
    """Until every record is acked, resend as the firmware does (firmware/lib/ct_uplink.py):
    a device whose ack has not moved for ``wait`` s sends its oldest ``window`` unacked
    records again. (Resending everything each second, as tests/gateway/test_crash.py's
    small scenarios do, floods the broker at full size.)"""
    deadline = time.monotonic() + DRAIN_GUARD
    seen: dict[str, tuple[int, float]] = {d.id: (d.acked, -wait) for d in devices}
    while any(d.unacked for d in devices):
        now = time.monotonic()
        if now > deadline:
            left = {d.id: list(d.unacked)[:5] for d in devices if d.unacked}
            raise AssertionError(f"records never acked: {left}")
        for d in devices:
            acked, since = seen[d.id]
            if d.acked != acked:
                seen[d.id] = (d.acked, now)
            elif d.unacked and now - since >= wait:
                d.resend_unacked(window)
                seen[d.id] = (acked, now)
        time.sleep(0.25)
    for d in devices:
        assert d.bad_acks == 0, d.id


def logged_leaves(env: GatewayDir) -> int:
    store = open_store(env.cfg)
    try:
        return store.leaf_count()
    finally:
        store.close()


def wait_registry_logged(env: GatewayDir, work: ColdChain) -> None:
    """Until the gateway logged the registry's records (before any device publishes)."""
    n = len(work.registry_records)
    wait_for(lambda: logged_leaves(env) >= n, START_GUARD, "registry records logged")


def stream_with_faults(
    work: ColdChain,
    pause: float,
    faults: Sequence[Callable[[], None]],
    *,
    ready: Callable[[], None] = lambda: None,
    seed: int = 12,
) -> None:
    """Publish ``work`` (``pause`` s between rounds) and run ``faults[i]`` at the
    stream's point (i+1)/(len+1), each 0.1-0.5 s after the stream resumed there.

    At each point the stream waits for ``ready()`` (e.g. the gateway subscribed
    again after the last fault), so every fault lands while the gateway is up
    and the stream is flowing; the publishing itself never waits for acks."""
    rng = random.Random(seed)
    n = len(faults)
    points = {(i + 1) * work.readings // (n + 1): i for i in range(n)}
    reached = [threading.Event() for _ in faults]
    go = [threading.Event() for _ in faults]

    def on_round(k: int) -> None:
        i = points.get(k)
        if i is not None:
            reached[i].set()
            go[i].wait(START_GUARD + 30)

    errors: list[BaseException] = []

    def publish() -> None:
        try:
            work.publish(pause, on_round=on_round)
        except BaseException as exc:  # surfaced on the test's thread
            errors.append(exc)

    t = threading.Thread(target=publish, name="workload", daemon=True)
    t.start()
    try:
        for i, fault in enumerate(faults):
            assert reached[i].wait(START_GUARD), "the stream did not reach its fault point"
            ready()
            go[i].set()
            time.sleep(rng.uniform(0.1, 0.5))
            fault()
    finally:
        for e in go:
            e.set()
        t.join(DRAIN_GUARD)
    assert not t.is_alive(), "the stream did not finish"
    if errors:
        raise errors[0]
